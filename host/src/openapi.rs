//! The OpenAPI 3.1 document of every endpoint, built from the JSON Schemas in
//! `schemas/` (the same files the validator compiles), and the settings of the
//! running gateway (the default tenant, the routes of tenant traffic).

use crate::tenants::Directory;
use serde_json::{Map, Value, json};

const CONFIG_SCHEMA: &str = include_str!("../../schemas/tenant-config.schema.json");
const PATCH_SCHEMA: &str = include_str!("../../schemas/tenant-config-patch.schema.json");
const SETTINGS_SCHEMA: &str = include_str!("../../schemas/gateway-settings.schema.json");

fn pascal(name: &str) -> String {
    name.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Points `$ref`s at `#/components/schemas/...` and drops the keywords that only
/// make sense in a standalone schema file.
/// `prefix` goes before the names of the file's `$defs`.
fn rewrite(value: &mut Value, prefix: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref")
                && let Some((_, def)) = r.split_once("#/$defs/")
            {
                *r = format!("#/components/schemas/{prefix}{}", pascal(def));
            }
            map.remove("$schema");
            map.remove("$id");
            map.values_mut().for_each(|v| rewrite(v, prefix));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite(v, prefix)),
        _ => {}
    }
}

fn schemas() -> Map<String, Value> {
    let mut out = Map::new();
    let mut config: Value = serde_json::from_str(CONFIG_SCHEMA).expect("schema is JSON");
    if let Some(Value::Object(defs)) = config.as_object_mut().and_then(|m| m.remove("$defs")) {
        for (name, mut def) in defs {
            rewrite(&mut def, "");
            out.insert(pascal(&name), def);
        }
    }
    rewrite(&mut config, "");
    out.insert("TenantConfig".into(), config);
    let mut patch: Value = serde_json::from_str(PATCH_SCHEMA).expect("schema is JSON");
    rewrite(&mut patch, "");
    out.insert("TenantConfigPatch".into(), patch);
    let mut settings: Value = serde_json::from_str(SETTINGS_SCHEMA).expect("schema is JSON");
    if let Some(Value::Object(defs)) = settings.as_object_mut().and_then(|m| m.remove("$defs")) {
        for (name, mut def) in defs {
            rewrite(&mut def, "Settings");
            out.insert(format!("Settings{}", pascal(&name)), def);
        }
    }
    rewrite(&mut settings, "Settings");
    out.insert("Settings".into(), settings);
    out.insert(
        "TenantConfigDocument".into(),
        json!({
            "description": "A tenant's configuration as stored: every section with defaults filled in.",
            "allOf": [{"$ref": "#/components/schemas/TenantConfig"}],
            "properties": {
                "tenant_id": {"type": "string", "format": "uuid"},
                "updated_at": {"type": ["string", "null"], "format": "date-time"}
            },
            "required": ["tenant_id"]
        }),
    );
    out.insert(
        "UpdateResult".into(),
        json!({
            "type": "object",
            "required": ["tenant_id", "message", "updated_fields", "updated_at"],
            "properties": {
                "tenant_id": {"type": "string", "format": "uuid"},
                "message": {"type": "string", "examples": ["Successfully updated 2 configuration field(s)"]},
                "updated_fields": {"type": "array", "items": {"type": "string"}},
                "updated_at": {"type": "string", "format": "date-time"}
            }
        }),
    );
    out.insert(
        "FeatureList".into(),
        json!({
            "type": "object",
            "required": ["tenant_id", "features", "total_enabled", "total_available"],
            "properties": {
                "tenant_id": {"type": "string", "format": "uuid"},
                "features": {"type": "array", "items": {
                    "type": "object",
                    "required": ["name", "enabled", "available", "description", "tier_required"],
                    "properties": {
                        "name": {"type": "string"},
                        "enabled": {"type": "boolean"},
                        "available": {"type": "boolean"},
                        "description": {"type": "string"},
                        "tier_required": {"type": "string", "enum": ["Basic", "Pro", "Enterprise"]}
                    }
                }},
                "total_enabled": {"type": "integer"},
                "total_available": {"type": "integer"}
            }
        }),
    );
    out.insert(
        "Error".into(),
        json!({
            "type": "object",
            "description": "The error format of every gateway answer that is not a success.",
            "required": ["error", "message", "code"],
            "properties": {
                "error": {"type": "string", "examples": ["Bad Request"]},
                "message": {"type": "string"},
                "code": {"type": "integer"},
                "tenant_id": {"type": ["string", "null"]},
                "details": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"path": {"type": "string"}, "message": {"type": "string"}}
                }}
            }
        }),
    );
    out.insert(
        "Problem".into(),
        json!({
            "type": "object",
            "description": "Errors of /connect/register (RFC 9457 problem details).",
            "properties": {
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}
            }
        }),
    );
    out.insert(
        "TokenResponse".into(),
        json!({
            "type": "object",
            "required": ["access_token", "token_type", "expires_in"],
            "properties": {
                "access_token": {"type": "string"},
                "token_type": {"type": "string", "const": "Bearer"},
                "expires_in": {"type": "integer"},
                "scope": {"type": "string"}
            }
        }),
    );
    out.insert(
        "TokenError".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "enum": ["invalid_request", "invalid_client", "unsupported_grant_type", "invalid_scope"]},
                "error_description": {"type": "string"}
            }
        }),
    );
    out
}

fn error_responses(codes: &[(&str, &str)]) -> Map<String, Value> {
    codes
        .iter()
        .map(|(code, description)| {
            (
                (*code).to_owned(),
                json!({
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
                }),
            )
        })
        .collect()
}

const API_ERRORS: [(&str, &str); 5] = [
    (
        "401",
        "Missing or invalid credentials (see WWW-Authenticate)",
    ),
    ("403", "The token belongs to another tenant"),
    ("404", "No such tenant"),
    ("429", "Over the tenant's rate limit (see Retry-After)"),
    ("500", "A component failed"),
];

fn ok_json(schema: &str, description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

fn with_errors(ok: Value, extra: &[(&str, &str)]) -> Value {
    let mut responses = Map::new();
    responses.insert("200".into(), ok);
    responses.extend(error_responses(&API_ERRORS));
    responses.extend(error_responses(extra));
    Value::Object(responses)
}

/// The document for the running settings.
pub fn document(dir: &Directory) -> Value {
    let default_tenant = dir.default_tenant.as_ref().map(|t| t.as_str().to_owned());
    let tenant_id_param = {
        let mut schema = json!({"type": "string", "description": "Tenant UUID or name (any case)"});
        if let Some(d) = &default_tenant {
            schema["default"] = json!(d);
        }
        json!({"name": "id", "in": "path", "required": true, "schema": schema})
    };
    let mut tenant_header = json!({
        "name": "Tenant",
        "in": "header",
        "required": false,
        "description": "The tenant of the request (Ed-Fi style). Without it, Swagger UI requests use SwaggerSettings.DefaultTenant and single-tenant mode its one tenant; otherwise 400.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": 50}
    });
    if let Some(d) = &default_tenant {
        tenant_header["schema"]["default"] = json!(d);
    }
    let secured = json!([{"bearerAuth": []}, {"clientCredentials": []}, {"superUser": []}]);

    let mut paths = Map::new();
    paths.insert(
        "/api/v1/tenants/{id}/config".into(),
        json!({
            "parameters": [tenant_id_param],
            "get": {
                "tags": ["Configuration"],
                "operationId": "getTenantConfig",
                "summary": "The tenant's complete configuration (defaults filled in)",
                "security": secured,
                "responses": with_errors(ok_json("TenantConfigDocument", "The configuration"), &[])
            },
            "put": {
                "tags": ["Configuration"],
                "operationId": "updateTenantConfig",
                "summary": "Partial update: only the fields given change; validated by the validator component",
                "security": secured,
                "requestBody": {"required": true, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/TenantConfigPatch"},
                    "example": {"performance": {"cache_size_mb": 2048}}
                }}},
                "responses": with_errors(ok_json("UpdateResult", "Updated"), &[
                    ("400", "Invalid configuration: every violation with its JSONPath in details"),
                    ("409", "Concurrent updates kept conflicting"),
                    ("413", "Body over TenantGateway.Limits.MaxBodyBytes"),
                    ("415", "Not application/json")
                ])
            }
        }),
    );
    paths.insert(
        "/api/v1/tenants/{id}/features".into(),
        json!({
            "parameters": [tenant_id_param],
            "get": {
                "tags": ["Configuration"],
                "operationId": "getTenantFeatures",
                "summary": "Features by tier and configuration, with totals",
                "security": secured,
                "responses": with_errors(ok_json("FeatureList", "The features"), &[])
            }
        }),
    );
    let form = |props: Value, required: Value| {
        json!({"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "properties": props, "required": required
        }}}})
    };
    paths.insert(
        "/connect/register".into(),
        json!({"post": {
            "tags": ["Auth"],
            "operationId": "registerClient",
            "summary": "Registers client credentials for the request's tenant (Authentication.AllowRegistration, or the super-user)",
            "parameters": [tenant_header],
            "security": [{}, {"superUser": []}],
            "requestBody": form(
                json!({"ClientId": {"type": "string"}, "ClientSecret": {"type": "string", "minLength": 32, "maxLength": 128}, "DisplayName": {"type": "string"}}),
                json!(["ClientId", "ClientSecret", "DisplayName"])
            ),
            "responses": {
                "200": {"description": "Registered", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
                "400": {"description": "Validation failed, or unknown tenant", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
                "403": {"description": "Registration is disabled", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            }
        }}),
    );
    paths.insert(
        "/connect/token".into(),
        json!({"post": {
            "tags": ["Auth"],
            "operationId": "issueToken",
            "summary": "OAuth2 client credentials: a Bearer token bound to the client's tenant",
            "parameters": [tenant_header],
            "security": [{}],
            "requestBody": form(
                json!({"grant_type": {"type": "string", "const": "client_credentials"}, "client_id": {"type": "string"}, "client_secret": {"type": "string"}, "scope": {"type": "string", "enum": crate::auth::SCOPES}}),
                json!(["grant_type"])
            ),
            "responses": {
                "200": ok_json("TokenResponse", "A token"),
                "400": {"description": "Bad request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TokenError"}}}},
                "401": {"description": "Client authentication failed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TokenError"}}}}
            }
        }}),
    );
    for (path, summary) in [
        ("/healthz", "Liveness: the process answers"),
        (
            "/readyz",
            "Readiness: components loaded, store reachable, not draining",
        ),
    ] {
        paths.insert(
            path.into(),
            json!({"get": {"tags": ["Operations"], "summary": summary, "security": [{}],
                "responses": {"200": {"description": "Yes"}, "503": {"description": "No"}}}}),
        );
    }
    paths.insert(
        "/metrics".into(),
        json!({"get": {"tags": ["Operations"], "summary": "Prometheus metrics", "security": [{}],
            "responses": {"200": {"description": "Text exposition format", "content": {"text/plain": {}}}}}}),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({"get": {"tags": ["Operations"], "summary": "This document", "security": [{}],
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}}}}),
    );
    let mut routes: Vec<&str> = dir.routes.iter().map(|r| r.path.as_str()).collect();
    routes.extend(
        dir.iter()
            .flat_map(|t| t.routes.iter().map(|r| r.path.as_str())),
    );
    routes.sort_unstable();
    routes.dedup();
    for path in routes {
        paths.insert(
            path.into(),
            json!({"get": {
                "tags": ["Tenant traffic"],
                "operationId": format!("tenantTraffic{}", path.replace(|c: char| !c.is_ascii_alphanumeric(), "_")),
                "summary": "Tenant traffic: served by the tenant app or upstream routed here, for the tenant named by the Tenant header",
                "parameters": [tenant_header],
                "security": [{}],
                "responses": error_responses(&[
                    ("200", "The app's or upstream's answer"),
                    ("400", "Tenant header missing, invalid or naming no tenant"),
                    ("502", "The upstream could not be reached"),
                    ("504", "The upstream did not answer in time")
                ])
            }}),
        );
    }

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tenant-gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tenant router and configuration gateway. Tenant traffic is routed by the Tenant header; the configuration API validates every update in a Wasm component.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "parameters": {"Tenant": tenant_header},
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "A token from /connect/token"},
                "clientCredentials": {"type": "oauth2", "flows": {"clientCredentials": {
                    "tokenUrl": "/connect/token",
                    "scopes": {"edfi_admin_api/full_access": "Full access to the client's tenant"}
                }}},
                "superUser": {"type": "http", "scheme": "basic", "description": "The super-user of TenantGateway.Auth.SuperUser"}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_ref_resolves_and_the_schemas_come_from_schemas_dir() {
        let doc = document(&Directory::default());
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 10);
        for r in all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected ref {r}"));
            assert!(schemas.contains_key(name), "{r} does not resolve");
        }
        // The config schema's sections, with their ranges, are in the document.
        assert_eq!(
            schemas["Performance"]["properties"]["cache_size_mb"]["maximum"],
            json!(100000)
        );
        assert!(schemas["TenantConfigPatch"]["properties"]["security"].is_object());
        for path in ["/api/v1/tenants/{id}/config", "/connect/token", "/metrics"] {
            assert!(doc["paths"][path].is_object(), "{path}");
        }
    }
}
