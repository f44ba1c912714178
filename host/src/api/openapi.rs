//! The OpenAPI 3.1 document of every endpoint, built from the JSON Schemas in
//! `schemas/` (the same files the validator compiles), and the settings of the
//! running gateway (the default tenant, the routes of tenant traffic).

use crate::tenancy::Directory;
use serde_json::{Map, Value, json};
use std::sync::Arc;

const CONFIG_SCHEMA: &str = include_str!("../../../schemas/tenant-config.schema.json");
const PATCH_SCHEMA: &str = include_str!("../../../schemas/tenant-config-patch.schema.json");
const SETTINGS_SCHEMA: &str = include_str!("../../../schemas/gateway-settings.schema.json");
const HONO_SCHEMA: &str = include_str!("../../../schemas/hono-tenant.schema.json");

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

/// Adds a schema file as `name`, its `$defs` as `prefix` + their names.
fn add_schema_file(out: &mut Map<String, Value>, text: &str, name: &str, prefix: &str) {
    let mut schema: Value = serde_json::from_str(text).expect("schema is JSON");
    if let Some(Value::Object(defs)) = schema.as_object_mut().and_then(|m| m.remove("$defs")) {
        for (def_name, mut def) in defs {
            rewrite(&mut def, prefix);
            out.insert(format!("{prefix}{}", pascal(&def_name)), def);
        }
    }
    rewrite(&mut schema, prefix);
    out.insert(name.into(), schema);
}

fn schemas() -> Map<String, Value> {
    let mut out = Map::new();
    add_schema_file(&mut out, CONFIG_SCHEMA, "TenantConfig", "");
    add_schema_file(&mut out, PATCH_SCHEMA, "TenantConfigPatch", "");
    add_schema_file(&mut out, SETTINGS_SCHEMA, "Settings", "Settings");
    add_schema_file(&mut out, HONO_SCHEMA, "HonoTenant", "Hono");
    out.extend(management_schemas());
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

/// The bodies of the tenant management APIs (Doradus, Vespa, Hono) and history.
fn management_schemas() -> Map<String, Value> {
    let mut out = Map::new();
    let object = |props: Value, required: Value| json!({"type": "object", "properties": props, "required": required});
    out.insert(
        "DoradusTenant".into(),
        json!({
            "description": "One member named after the tenant (XML: <tenant name=\"...\"><users><user name password/></users><options><option name>value</option></options></tenant>). Passwords appear only in requests and in the create response of a generated user.",
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": {
                "type": ["object", "null"],
                "additionalProperties": false,
                "properties": {
                    "users": {"type": "object", "additionalProperties": {
                        "type": "object", "properties": {"password": {"type": "string", "minLength": 1, "maxLength": 256}}
                    }},
                    "options": {"type": "object", "properties": {
                        "ReplicationFactor": {"type": ["string", "integer"], "description": "1-100"},
                        "Tier": {"enum": ["Basic", "Pro", "Enterprise"]}
                    }, "additionalProperties": false}
                }
            },
            "example": {"HelloKitty": {"users": {"Katniss": {"password": "Everdeen-1"}}, "options": {"ReplicationFactor": "3"}}}
        }),
    );
    out.insert(
        "DoradusTenantList".into(),
        object(
            json!({"tenants": {"type": "object", "additionalProperties":
                object(json!({"applications": {"type": "array", "items": {"type": "string"}}}), json!(["applications"]))
            }}),
            json!(["tenants"]),
        ),
    );
    out.insert(
        "DoradusError".into(),
        json!({"description": "XML: <error>message</error>", "type": "object",
            "required": ["error"], "properties": {"error": {"type": "string"}}}),
    );
    out.insert(
        "VespaMessage".into(),
        object(
            json!({"message": {"type": "string", "examples": ["Tenant 'mytenant' exists."]}}),
            json!(["message"]),
        ),
    );
    out.insert(
        "VespaError".into(),
        object(
            json!({"error-code": {"type": "string", "examples": ["NOT_FOUND"]}, "message": {"type": "string"}}),
            json!(["error-code", "message"]),
        ),
    );
    let version = json!({"type": "object", "properties": {
        "sha256": {"type": "string"}, "size": {"type": "integer"},
        "source": {"type": "string"}, "loaded_at": {"type": "string", "format": "date-time"}
    }});
    out.insert(
        "Component".into(),
        object(
            json!({
                "name": {"type": "string", "examples": ["validator", "validator@tenant1"]},
                "kind": {"enum": ["validator", "feature-gate", "config-api"]},
                "tenant": {"type": ["string", "null"]},
                "sha256": {"type": "string"},
                "size": {"type": "integer"},
                "loaded_at": {"type": "string", "format": "date-time"},
                "source": {"type": "string", "examples": ["builtin", "api", "directory:validator.wasm"]},
                "exports": {"type": "array", "items": {"type": "string"}},
                "compiled": {"type": "boolean", "description": "false: loaded from a verified precompiled artifact"},
                "tenants": {"type": "array", "items": {"type": "string"}, "description": "The tenants it serves"},
                "previous": {"oneOf": [version, {"type": "null"}], "description": "The rollback target"}
            }),
            json!(["name", "kind", "sha256", "size", "loaded_at", "source", "exports", "tenants"]),
        ),
    );
    out.insert(
        "ComponentError".into(),
        object(
            json!({"error": {"type": "string"}, "component": {"type": ["string", "null"]}}),
            json!(["error"]),
        ),
    );
    out.insert(
        "HonoError".into(),
        object(json!({"error": {"type": "string"}}), json!(["error"])),
    );
    out.insert(
        "History".into(),
        object(
            json!({
                "tenant_id": {"type": "string", "format": "uuid"},
                "tenant": {"type": "string"},
                "history": {"type": "array", "description": "Newest first", "items": object(json!({
                    "seq": {"type": "integer"},
                    "at": {"type": "string", "format": "date-time"},
                    "principal": {"type": "string", "examples": ["super-user", "client:my-client", "user:Tenant1/ops", "settings"]},
                    "subject": {"enum": ["tenant", "config"]},
                    "action": {"type": "string", "examples": ["created", "updated", "deleted", "restored", "purged", "rolled-back"]},
                    "fields": {"type": "array", "items": {"type": "string"}},
                    "version": {"type": "integer", "description": "The configuration version written (config changes)"}
                }), json!(["seq", "at", "principal", "subject", "action", "fields"]))}
            }),
            json!(["tenant_id", "tenant", "history"]),
        ),
    );
    out.insert(
        "RollbackResult".into(),
        object(
            json!({
                "tenant_id": {"type": "string", "format": "uuid"},
                "message": {"type": "string"},
                "version": {"type": "integer", "description": "The new configuration version"},
                "updated_fields": {"type": "array", "items": {"type": "string"}},
                "updated_at": {"type": "string", "format": "date-time"}
            }),
            json!([
                "tenant_id",
                "message",
                "version",
                "updated_fields",
                "updated_at"
            ]),
        ),
    );
    out
}

/// Responses with a body of schema `schema` in each of `media` types.
fn responses(codes: &[(&str, &str)], schema: &str, media: &[&str]) -> Map<String, Value> {
    let content: Map<String, Value> = media
        .iter()
        .map(|m| {
            (
                (*m).to_owned(),
                json!({"schema": {"$ref": format!("#/components/schemas/{schema}")}}),
            )
        })
        .collect();
    codes
        .iter()
        .map(|(code, description)| {
            (
                (*code).to_owned(),
                json!({"description": description, "content": content}),
            )
        })
        .collect()
}

/// The paths of tenant management: Doradus `/_tenants`, Vespa, Hono, history.
fn management_paths(paths: &mut Map<String, Value>, tenant_id_param: &Value, secured: &Value) {
    let su = json!([{"superUser": []}]);
    let both = ["application/xml", "application/json"];
    let doradus_errors = |codes: &[(&str, &str)]| {
        let mut all = vec![
            (
                "401",
                "Not the super-user's Basic credentials (see WWW-Authenticate)",
            ),
            ("403", "Valid credentials, but not the super-user's"),
        ];
        all.extend_from_slice(codes);
        responses(&all, "DoradusError", &both)
    };
    let doradus_ok = |code: &str, description: &str, schema: &str| {
        responses(&[(code, description)], schema, &both)
    };
    let format_param = json!({"name": "format", "in": "query", "required": false,
        "description": "Answer format; without it, Accept decides, else XML",
        "schema": {"enum": ["xml", "json"]}});
    let doradus_name = json!({"name": "tenant", "in": "path", "required": true,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,50}$"}});
    let body = json!({"required": true, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/DoradusTenant"}},
        "application/xml": {"schema": {"type": "string"},
            "example": "<tenant name=\"HelloKitty\"><users><user name=\"Katniss\" password=\"Everdeen-1\"/></users></tenant>"}
    }});
    let mut create = doradus_ok(
        "201",
        "Created: the definition, with the generated user's password when none was given (shown this once)",
        "DoradusTenant",
    );
    create.extend(doradus_errors(&[
        ("400", "Invalid definition"),
        (
            "409",
            "The tenant exists, or was deleted and can still be restored",
        ),
        ("415", "Neither XML nor JSON"),
    ]));
    let mut list = doradus_ok(
        "200",
        "Every tenant with its applications",
        "DoradusTenantList",
    );
    list.extend(doradus_errors(&[]));
    paths.insert(
        "/_tenants".into(),
        json!({
            "parameters": [format_param],
            "get": {"tags": ["Tenants (Doradus)"], "operationId": "doradusListTenants",
                "summary": "Every tenant with its applications (the apps its routes lead to, and upstream)",
                "security": su, "responses": list},
            "post": {"tags": ["Tenants (Doradus)"], "operationId": "doradusCreateTenant",
                "summary": "Creates a tenant; with no users given, makes one up and returns its password once",
                "security": su, "requestBody": body, "responses": create}
        }),
    );
    let mut one = doradus_ok(
        "200",
        "Name, user names (never passwords), options",
        "DoradusTenant",
    );
    one.extend(doradus_errors(&[("404", "No such tenant")]));
    let mut update = one.clone();
    update.extend(doradus_errors(&[
        ("400", "Invalid definition"),
        ("415", "Neither XML nor JSON"),
    ]));
    let mut delete = doradus_errors(&[("404", "No such tenant")]);
    delete.insert(
        "204".into(),
        json!({"description": "Deleted (restorable for 72 hours unless purge=true)"}),
    );
    paths.insert(
        "/_tenants/{tenant}".into(),
        json!({
            "parameters": [doradus_name, format_param],
            "get": {"tags": ["Tenants (Doradus)"], "operationId": "doradusGetTenant",
                "summary": "One tenant", "security": su, "responses": one},
            "put": {"tags": ["Tenants (Doradus)"], "operationId": "doradusUpdateTenant",
                "summary": "Adds users, changes passwords, sets options",
                "security": su, "requestBody": body, "responses": update},
            "delete": {"tags": ["Tenants (Doradus)"], "operationId": "doradusDeleteTenant",
                "summary": "Stops serving the tenant; restorable with its configuration for 72 hours",
                "security": su,
                "parameters": [{"name": "purge", "in": "query", "required": false,
                    "description": "Remove it and its configuration for good now",
                    "schema": {"type": "boolean"}}],
                "responses": delete}
        }),
    );
    let mut restore = one.clone();
    restore.insert(
        "404".into(),
        json!({"description": "No deleted tenant of that name"}),
    );
    paths.insert(
        "/_tenants/{tenant}/_restore".into(),
        json!({
            "parameters": [doradus_name, format_param],
            "post": {"tags": ["Tenants (Doradus)"], "operationId": "doradusRestoreTenant",
                "summary": "Brings a deleted tenant back with its users, options and configuration",
                "security": su, "responses": restore}
        }),
    );

    let json_only = ["application/json"];
    let vespa_errors = |codes: &[(&str, &str)]| {
        let mut all = vec![
            ("401", "Not the super-user's Basic credentials"),
            ("403", "Not the super-user"),
            ("405", "Method not supported"),
        ];
        all.extend_from_slice(codes);
        responses(&all, "VespaError", &json_only)
    };
    let mut names = vespa_errors(&[]);
    names.insert("200".into(), json!({"description": "Tenant names",
        "content": {"application/json": {"schema": {"type": "array", "items": {"type": "string"}}}}}));
    paths.insert(
        "/application/v2/tenant/".into(),
        json!({"get": {"tags": ["Tenants (Vespa)"], "operationId": "vespaListTenants",
            "summary": "Tenant names", "security": su, "responses": names}}),
    );
    let vespa_op = |id: &str, summary: &str, example: &str, errors: &[(&str, &str)]| {
        let mut r = responses(&[("200", example)], "VespaMessage", &json_only);
        r.extend(vespa_errors(errors));
        json!({"tags": ["Tenants (Vespa)"], "operationId": id, "summary": summary, "security": su, "responses": r})
    };
    paths.insert(
        "/application/v2/tenant/{name}".into(),
        json!({
            "parameters": [{"name": "name", "in": "path", "required": true,
                "schema": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,50}$"}}],
            "get": vespa_op("vespaGetTenant", "Whether the tenant exists", "Tenant 'name' exists.", &[("400", "Illegal name"), ("404", "No such tenant")]),
            "put": vespa_op("vespaCreateTenant", "Creates a tenant", "Tenant name created.", &[("400", "Illegal name, or the tenant exists")]),
            "delete": vespa_op("vespaDeleteTenant", "Deletes a tenant (restorable through /_tenants/{tenant}/_restore)", "Tenant name deleted.", &[("400", "Illegal name"), ("404", "No such tenant")])
        }),
    );

    let hono_read = |id: &str, summary: &str, params: Value| {
        let mut r = responses(
            &[(
                "200",
                "The tenant's information (Cache-Control: max-age=60)",
            )],
            "HonoTenant",
            &json_only,
        );
        r.extend(responses(
            &[
                (
                    "400",
                    "Not exactly one of tenant-id and subject-dn, or a malformed DN",
                ),
                ("401", "Missing or invalid credentials"),
                ("403", "The caller may not read this tenant's information"),
                ("404", "No tenant matches"),
            ],
            "HonoError",
            &json_only,
        ));
        json!({"tags": ["Tenants (Hono)"], "operationId": id, "summary": summary,
            "parameters": params, "security": secured, "responses": r})
    };
    paths.insert(
        "/hono/v1/tenants".into(),
        json!({"get": hono_read("honoFindTenant",
            "Tenant information by tenant-id or by the subject DN of a trusted CA (RFC 2253 comparison): exactly one",
            json!([
                {"name": "tenant-id", "in": "query", "required": false, "schema": {"type": "string"}},
                {"name": "subject-dn", "in": "query", "required": false, "schema": {"type": "string"},
                    "example": "CN=devices,O=ACME Corporation"}
            ]))}),
    );
    let mut put = responses(
        &[
            ("200", "Replaced"),
            ("201", "Created the tenant with this information"),
        ],
        "HonoTenant",
        &json_only,
    );
    put.extend(responses(&[
        ("400", "Breaks the schema or its rules (one adapter per type, tenant-id matching the path)"),
        ("401", "Not the super-user's Basic credentials"),
        ("403", "Not the super-user"),
        ("409", "A trusted CA's subject DN belongs to another tenant"),
        ("415", "Not application/json"),
    ], "HonoError", &json_only));
    paths.insert(
        "/hono/v1/tenants/{id}".into(),
        json!({
            "get": hono_read("honoGetTenant", "Tenant information by tenant-id",
                json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}])),
            "put": {"tags": ["Tenants (Hono)"], "operationId": "honoSetTenant",
                "summary": "Sets a tenant's information, creating the tenant when new; validated by the validator component",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,50}$"}}],
                "security": su,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HonoTenant"}}}},
                "responses": put}
        }),
    );

    let component_errors = |codes: &[(&str, &str)]| {
        let mut all = vec![
            ("401", "Not the super-user's Basic credentials"),
            ("403", "Not the super-user"),
            ("404", "No such slot, or no such tenant"),
        ];
        all.extend_from_slice(codes);
        responses(&all, "ComponentError", &json_only)
    };
    let component_ok = |description: &str| {
        let mut r = responses(&[("200", description)], "Component", &json_only);
        r.extend(component_errors(&[]));
        r
    };
    let mut list = component_errors(&[]);
    list.insert("200".into(), json!({"description": "Every slot with a component",
        "content": {"application/json": {"schema": {"type": "object", "properties": {
            "components": {"type": "array", "items": {"$ref": "#/components/schemas/Component"}}}}}}}));
    paths.insert(
        "/_components".into(),
        json!({"get": {"tags": ["Components"], "operationId": "listComponents",
            "summary": "The component registry: what serves each slot", "security": su, "responses": list}}),
    );
    let mut put_component = component_ok("Loaded, self-tested and swapped in");
    put_component.extend(component_errors(&[
        ("400", "Refused (not a component, does not compile, wrong exports or imports, failed its self-test); the running one stays"),
        ("413", "Over TenantGateway.Limits.MaxComponentBytes"),
        ("415", "Not application/wasm"),
    ]));
    let slot_param = json!({"name": "name", "in": "path", "required": true,
        "description": "validator, feature-gate, config-api, validator@{tenant} or feature-gate@{tenant}",
        "schema": {"type": "string"}});
    paths.insert(
        "/_components/{name}".into(),
        json!({
            "parameters": [slot_param],
            "get": {"tags": ["Components"], "operationId": "getComponent", "summary": "One slot",
                "security": su, "responses": component_ok("The slot")},
            "put": {"tags": ["Components"], "operationId": "putComponent",
                "summary": "Loads a component into the slot while traffic is served",
                "security": su,
                "requestBody": {"required": true, "content": {"application/wasm": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": put_component},
            "delete": {"tags": ["Components"], "operationId": "deleteComponent",
                "summary": "Back to the built-in component (a tenant's: back to everyone's)",
                "security": su, "responses": component_ok("What serves the slot now")}
        }),
    );
    let mut rollback = component_ok("The previous version serves again");
    rollback.extend(component_errors(&[("409", "No previous version")]));
    paths.insert(
        "/_components/{name}/rollback".into(),
        json!({
            "parameters": [slot_param],
            "post": {"tags": ["Components"], "operationId": "rollbackComponent",
                "summary": "Back to the version before", "security": su, "responses": rollback}
        }),
    );

    paths.insert(
        "/api/v1/tenants/{id}/history".into(),
        json!({
            "parameters": [tenant_id_param],
            "get": {"tags": ["Configuration"], "operationId": "getTenantHistory",
                "summary": "Changes of the tenant and its configuration, newest first",
                "parameters": [{"name": "limit", "in": "query", "required": false,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
                "security": secured,
                "responses": with_errors(ok_json("History", "The history"), &[("400", "Bad limit")])}
        }),
    );
    paths.insert(
        "/api/v1/tenants/{id}/config/rollback".into(),
        json!({
            "parameters": [tenant_id_param],
            "post": {"tags": ["Configuration"], "operationId": "rollbackTenantConfig",
                "summary": "Restores the configuration of an earlier version (validated again, recorded in history)",
                "security": secured,
                "requestBody": {"required": true, "content": {"application/json": {"schema":
                    {"type": "object", "required": ["version"], "properties": {"version": {"type": "integer", "minimum": 1}}}}}},
                "responses": with_errors(ok_json("RollbackResult", "Rolled back"), &[
                    ("400", "Bad body, or the old configuration breaks today's rules"),
                    ("409", "Concurrent updates kept conflicting")
                ])}
        }),
    );
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
                json!({"grant_type": {"type": "string", "const": "client_credentials"}, "client_id": {"type": "string"}, "client_secret": {"type": "string"}, "scope": {"type": "string", "enum": crate::security::auth::SCOPES}}),
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
        json!({"get": {"tags": ["Operations"], "summary": "Prometheus metrics (super-user; or without credentials on TenantGateway.AdminListen, and then not here)", "security": [{"superUser": []}],
            "responses": {"200": {"description": "Text exposition format", "content": {"text/plain": {}}}}}}),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({"get": {"tags": ["Operations"], "summary": "This document", "security": [{}],
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}}}}),
    );
    management_paths(&mut paths, &tenant_id_param, &secured);
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

/// Swagger UI's settings: the document at `/openapi.json`, "try it out" on.
static SWAGGER: std::sync::LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> =
    std::sync::LazyLock::new(|| {
        Arc::new(
            utoipa_swagger_ui::Config::from("/openapi.json")
                .try_it_out_enabled(true)
                .persist_authorization(true),
        )
    });

/// The document made for one directory snapshot: made again only when the
/// directory is replaced (settings reloaded, tenants changed), not per request.
#[derive(Default)]
struct Cached(arc_swap::ArcSwapOption<(Arc<Directory>, bytes::Bytes)>);

impl Cached {
    /// The document of `dir`, made now if this snapshot has none yet.
    fn of(&self, dir: Arc<Directory>) -> bytes::Bytes {
        if let Some(hit) = &*self.0.load()
            && Arc::ptr_eq(&hit.0, &dir)
        {
            return hit.1.clone();
        }
        let text = bytes::Bytes::from(document(&dir).to_string());
        self.0.store(Some(Arc::new((dir, text.clone()))));
        text
    }
}

/// `/openapi.json`, and Swagger UI under `/swagger/` (when
/// `SwaggerSettings.EnableSwagger`).
pub fn routes() -> crate::http::Routes {
    use axum::extract::State;
    use axum::routing::any;
    let cached = Arc::new(Cached::default());
    crate::http::Routes::new()
        .route(
            "/openapi.json",
            any(move |State(gw): State<Arc<crate::http::Gateway>>| {
                let cached = cached.clone();
                async move {
                    let doc = cached.of(gw.runtime.shared().directory.load_full());
                    crate::http::served(
                        crate::http::json(http::StatusCode::OK, doc),
                        "openapi",
                        None,
                    )
                }
            }),
        )
        .route("/swagger", any(swagger))
        .route("/swagger/", any(swagger))
        .route("/swagger/{*file}", any(swagger))
}

async fn swagger(
    axum::extract::State(gw): axum::extract::State<Arc<crate::http::Gateway>>,
    uri: http::Uri,
) -> http::Response<crate::http::Body> {
    crate::http::served(swagger_file(&gw, uri.path()), "swagger", None)
}

fn swagger_file(gw: &crate::http::Gateway, path: &str) -> http::Response<crate::http::Body> {
    use crate::http::{Body, error};
    use http::header::{CONTENT_TYPE, HeaderValue};
    use http::{Response, StatusCode};
    if !gw.runtime.shared().directory.load().swagger_enabled {
        return error(
            StatusCode::NOT_FOUND,
            "Swagger UI is disabled (SwaggerSettings.EnableSwagger)",
            None,
        );
    }
    if path == "/swagger" {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
        resp.headers_mut().insert(
            http::header::LOCATION,
            HeaderValue::from_static("/swagger/"),
        );
        return resp;
    }
    let tail = &path["/swagger/".len()..];
    match utoipa_swagger_ui::serve(tail, SWAGGER.clone()) {
        Ok(Some(file)) => {
            let mut resp = Response::new(Body::from(file.bytes.into_owned()));
            if let Ok(v) = HeaderValue::from_str(&file.content_type) {
                resp.headers_mut().insert(CONTENT_TYPE, v);
            }
            if file.gzpipped {
                resp.headers_mut().insert(
                    http::header::CONTENT_ENCODING,
                    HeaderValue::from_static("gzip"),
                );
            }
            resp
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "No such Swagger UI file", None),
        Err(e) => {
            tracing::error!(error = %e, "serving Swagger UI failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "Swagger UI failed", None)
        }
    }
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

    /// One snapshot's document is made once; a replaced directory gets its own.
    #[test]
    fn the_document_is_made_once_per_directory_snapshot() {
        let cached = Cached::default();
        let first = Arc::new(Directory::default());
        let made = cached.of(first.clone());
        let again = cached.of(first.clone());
        assert_eq!(made.as_ptr(), again.as_ptr(), "made again for one snapshot");
        let mut replaced = Directory::default();
        replaced.default_tenant = Some(crate::config::TenantName::parse("Tenant7").unwrap());
        let other = cached.of(Arc::new(replaced));
        assert_ne!(other.as_ptr(), made.as_ptr());
        assert!(std::str::from_utf8(&other).unwrap().contains("Tenant7"));
        assert!(!std::str::from_utf8(&made).unwrap().contains("Tenant7"));
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
        // The Hono document is the schema validator writes are checked against.
        assert!(schemas["HonoTenant"]["properties"]["trusted-ca"].is_object());
        assert_eq!(
            doc["paths"]["/hono/v1/tenants/{id}"]["put"]["requestBody"]["content"]["application/json"]
                ["schema"]["$ref"],
            "#/components/schemas/HonoTenant"
        );
        for path in [
            "/api/v1/tenants/{id}/config",
            "/api/v1/tenants/{id}/history",
            "/api/v1/tenants/{id}/config/rollback",
            "/connect/token",
            "/metrics",
            "/_tenants",
            "/_tenants/{tenant}",
            "/_tenants/{tenant}/_restore",
            "/application/v2/tenant/{name}",
            "/hono/v1/tenants",
            "/hono/v1/tenants/{id}",
            "/_components",
            "/_components/{name}",
            "/_components/{name}/rollback",
        ] {
            assert!(doc["paths"][path].is_object(), "{path}");
        }
    }
}
