//! The OpenAPI 3.1 document. Each surface declares its operations where its
//! handlers are (`#[utoipa::path]` and a `Doc` per module), the bodies' schemas
//! come from the types the handlers write (`ToSchema`), and the bodies the
//! components check from `schemas/` (the files the validator compiles, put in
//! as written: JSON Schema 2020-12 says more than utoipa's schema types hold).
//! What the running settings decide — the default tenant, the routes of
//! tenant traffic — is added per directory snapshot, and the document is made
//! once per snapshot.

use crate::api::{components, config, connect, doradus, edfi, hono, ops, vespa};
use crate::tenancy::{Directory, PerDirectory};
use serde_json::{Map, Value, json};
use std::sync::{Arc, LazyLock};
use utoipa::OpenApi;

/// A body whose schema is a file in `schemas/`: referenced by its name, put
/// into the document as the file says (see [`file_schemas`]).
macro_rules! file_schema {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(serde::Serialize)]
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                // Replaced by the file's schema when the document is made.
                utoipa::openapi::ObjectBuilder::new().build().into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

file_schema!(
    /// `schemas/tenant-config.schema.json`: a tenant's configuration.
    TenantConfig
);
file_schema!(
    /// `schemas/tenant-config-patch.schema.json`: a partial update.
    TenantConfigPatch
);
file_schema!(
    /// `schemas/hono-tenant.schema.json`: Hono tenant information.
    HonoTenant
);

/// The files of `schemas/`: each as the schema of its name, its `$defs` as
/// schemas of their own named with the prefix.
const FILES: [(&str, &str, &str); 4] = [
    (
        include_str!("../../../schemas/tenant-config.schema.json"),
        "TenantConfig",
        "",
    ),
    (
        include_str!("../../../schemas/tenant-config-patch.schema.json"),
        "TenantConfigPatch",
        "",
    ),
    (
        include_str!("../../../schemas/gateway-settings.schema.json"),
        "Settings",
        "Settings",
    ),
    (
        include_str!("../../../schemas/hono-tenant.schema.json"),
        "HonoTenant",
        "Hono",
    ),
];

/// The `Tenant` header of Ed-Fi style requests.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header, rename_all = "PascalCase")]
#[allow(dead_code)] // a document: tenancy::resolve reads the header
pub struct TenantHeader {
    /// The tenant of the request (Ed-Fi style). Without it, Swagger UI requests use SwaggerSettings.DefaultTenant and single-tenant mode its one tenant; otherwise 400.
    #[param(pattern = "^[A-Za-z0-9_-]+$", max_length = 50)]
    tenant: Option<String>,
}

/// The operations of no surface of their own.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tenant-gateway",
        description = "Tenant router and configuration gateway. Tenant traffic is routed by the Tenant header; the configuration API validates every update in a Wasm component.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(openapi_json)
)]
struct Gateway;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "Operations", security(()),
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
#[allow(dead_code)] // a document: `routes` serves it
fn openapi_json() {}

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

/// The schemas of [`FILES`].
fn file_schemas(out: &mut Map<String, Value>) {
    for (text, name, prefix) in FILES {
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
}

/// States once on the path item the parameters every operation of the path
/// has (the path's own, such as `{id}`).
fn hoist_parameters(paths: &mut Map<String, Value>) {
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        let ops: Vec<&Value> = item.values().collect();
        let Some(first) = ops.first().and_then(|op| op["parameters"].as_array()) else {
            continue;
        };
        let shared: Vec<Value> = first
            .iter()
            .filter(|p| {
                ops.iter()
                    .all(|op| op["parameters"].as_array().is_some_and(|ps| ps.contains(p)))
            })
            .cloned()
            .collect();
        if shared.is_empty() {
            continue;
        }
        for op in item.values_mut() {
            if let Some(ps) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                ps.retain(|p| !shared.contains(p));
                if ps.is_empty() {
                    op.as_object_mut().map(|o| o.remove("parameters"));
                }
            }
        }
        item.insert("parameters".into(), Value::Array(shared));
    }
}

/// The document of every surface, before the running settings are added.
static BASE: LazyLock<Value> = LazyLock::new(|| {
    let mut doc = Gateway::openapi();
    for part in [
        ops::Doc::openapi(),
        config::Doc::openapi(),
        connect::Doc::openapi(),
        edfi::Doc::openapi(),
        doradus::Doc::openapi(),
        vespa::Doc::openapi(),
        hono::Doc::openapi(),
        components::Doc::openapi(),
    ] {
        doc.merge(part);
    }
    let mut doc = serde_json::to_value(&doc).expect("the document serializes");
    doc["openapi"] = json!("3.1.0");
    doc["jsonSchemaDialect"] = json!("https://json-schema.org/draft/2020-12/schema");
    if let Some(paths) = doc["paths"].as_object_mut() {
        hoist_parameters(paths);
    }
    let components = &mut doc["components"];
    if let Some(schemas) = components["schemas"].as_object_mut() {
        file_schemas(schemas);
    }
    components["securitySchemes"] = json!({
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": "A token from /connect/token"},
        "clientCredentials": {"type": "oauth2", "flows": {"clientCredentials": {
            "tokenUrl": "/connect/token",
            "scopes": {"edfi_admin_api/full_access": "Full access to the client's tenant"}
        }}},
        "superUser": {"type": "http", "scheme": "basic", "description": "The super-user of TenantGateway.Auth.SuperUser"}
    });
    doc
});

/// Calls `f` with every parameter of the document's path items and
/// operations, and the path it belongs to.
fn each_parameter(doc: &mut Value, mut f: impl FnMut(&str, &mut Value)) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (key, v) in item.iter_mut() {
            let list = if key == "parameters" {
                Some(v)
            } else {
                v.get_mut("parameters")
            };
            for p in list.and_then(Value::as_array_mut).into_iter().flatten() {
                f(path, p);
            }
        }
    }
}

/// The document for the running settings.
pub fn document(dir: &Directory) -> Value {
    let mut doc = BASE.clone();
    let mut tenant_header = {
        let mut params = <TenantHeader as utoipa::IntoParams>::into_params(|| None);
        serde_json::to_value(params.remove(0)).expect("a parameter serializes")
    };
    if let Some(d) = &dir.default_tenant {
        let default = json!(d.as_str());
        tenant_header["schema"]["default"] = default.clone();
        each_parameter(&mut doc, |path, p| {
            let tenant_id =
                p["in"] == "path" && p["name"] == "id" && path.starts_with(config::PREFIX);
            if tenant_id || (p["in"] == "header" && p["name"] == "Tenant") {
                p["schema"]["default"] = default.clone();
            }
        });
    }
    let mut routes: Vec<&str> = dir.routes.iter().map(|r| r.path.as_str()).collect();
    routes.extend(
        dir.iter()
            .flat_map(|t| t.routes.iter().map(|r| r.path.as_str())),
    );
    routes.sort_unstable();
    routes.dedup();
    let error = json!({"$ref": "#/components/schemas/Error"});
    let paths = doc["paths"]
        .as_object_mut()
        .expect("the document has paths");
    for path in routes {
        let answer = |description: &str| json!({"description": description, "content": {"application/json": {"schema": error}}});
        paths.insert(
            path.into(),
            json!({"get": {
                "tags": ["Tenant traffic"],
                "operationId": format!("tenantTraffic{}", path.replace(|c: char| !c.is_ascii_alphanumeric(), "_")),
                "summary": "Tenant traffic: served by the tenant app or upstream routed here, for the tenant named by the Tenant header",
                "parameters": [tenant_header],
                "security": [{}],
                "responses": {
                    "200": {"description": "The app's or upstream's answer"},
                    "400": {
                        "description": "Validation failed: the Tenant header is missing, invalid or names no tenant (Ed-Fi's body); in multi-tenant mode, a /v1/ path: {\"message\": \"Wrong API version for this instance mode.\"}",
                        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ValidationProblem"}}}
                    },
                    "502": answer("The upstream could not be reached"),
                    "504": answer("The upstream did not answer in time")
                }
            }}),
        );
    }
    doc["components"]["parameters"] = json!({ "Tenant": tenant_header });
    doc
}

/// The document of `dir` as sent.
fn rendered(dir: &Directory) -> bytes::Bytes {
    bytes::Bytes::from(document(dir).to_string())
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

/// `/openapi.json`, and Swagger UI under `/swagger/` (when
/// `SwaggerSettings.EnableSwagger`).
pub fn routes() -> crate::http::Routes {
    use axum::extract::State;
    use axum::routing::any;
    let cached = Arc::new(PerDirectory::default());
    crate::http::Routes::new()
        .route(
            "/openapi.json",
            any(move |State(gw): State<Arc<crate::http::Gateway>>| {
                let cached = cached.clone();
                async move {
                    let doc = cached.of(gw.runtime.shared().directory.load_full(), rendered);
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
        let cached = PerDirectory::default();
        let first = Arc::new(Directory::default());
        let made = cached.of(first.clone(), rendered);
        let again = cached.of(first.clone(), rendered);
        assert_eq!(made.as_ptr(), again.as_ptr(), "made again for one snapshot");
        let mut replaced = Directory::default();
        replaced.default_tenant = Some(crate::config::TenantName::parse("Tenant7").unwrap());
        let other = cached.of(Arc::new(replaced), rendered);
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
