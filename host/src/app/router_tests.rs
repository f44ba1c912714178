//! The router in process (`tower::ServiceExt::oneshot`, no socket): each
//! surface's 404, 405 and `Allow` in its own format and with its route label,
//! trailing slashes, undecodable path parameters, and what falls through to
//! tenant traffic. A 404 or 405 comes before any credential check; the
//! super-user surfaces check credentials before they read the path.

use super::{Assembled, Options, assemble, router};
use crate::http::GatewayService;
use http::{Method, Request, StatusCode};
use tower::ServiceExt;

/// One answer, read whole.
struct Answer {
    status: StatusCode,
    allow: Option<String>,
    content_type: Option<String>,
    route: Option<&'static str>,
    body: String,
}

async fn call(router: &impl GatewayService, method: &str, uri: &str) -> Answer {
    let req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let (resp, served) = crate::http::observed(router.clone().oneshot(req)).await;
    let resp = resp.unwrap();
    let header = |name| {
        resp.headers()
            .get(name)
            .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let (allow, content_type) = (
        header(http::header::ALLOW),
        header(http::header::CONTENT_TYPE),
    );
    let status = resp.status();
    let route = served.route;
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        allow,
        content_type,
        route,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The methods an `Allow` names, in order, HEAD dropped (it comes with GET).
fn methods(allow: &Option<String>) -> Vec<String> {
    allow
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty() && *m != "HEAD")
        .map(str::to_owned)
        .collect()
}

/// Method, path, status, `Allow` without HEAD (checked on 405), route label,
/// what the body must contain.
type Case = (
    &'static str,
    &'static str,
    u16,
    &'static [&'static str],
    &'static str,
    &'static str,
);

/// The gateway of the sample settings, assembled in `data`, and its router.
async fn sample_router(data: &std::path::Path) -> impl GatewayService {
    router(sample_gateway(data).await)
}

/// The gateway of the sample settings, assembled in `data`.
async fn sample_gateway(data: &std::path::Path) -> std::sync::Arc<crate::http::Gateway> {
    // Compiled components are cached by content and engine hash: safe to share.
    let cache = std::env::temp_dir().join("tenant-gateway-unit-test-cache");
    let options = Options {
        settings: crate::config::Settings::parse(include_str!("../../../appsettings.json"))
            .unwrap(),
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data.to_owned(),
        cache_dir: Some(cache.join("artifacts")),
        cache_key: Some(cache.join("cache.key")),
        components_dir: None,
        compile_with: None,
        watch: None,
        log_lines_dropped: None,
    };
    let Assembled { gateway, .. } = assemble(&options).await.unwrap();
    gateway
}

/// The future that serves one request, as the server makes it, stays a few
/// KiB for every kind of request. An `async` block or function that awaits
/// a future it holds stores that future twice: four such levels between
/// the connection and the surfaces once made it 64 KiB, copied into place
/// at every request (a fifth of a proxied request's CPU, in `memmove`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_future_serving_a_request_stays_small() {
    let data = tempfile::tempdir().unwrap();
    let gateway = sample_gateway(data.path()).await;
    let requests = crate::http::Requests::new(gateway.metrics.clone());
    let app = router(gateway);
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40000));
    // One type for every request: the largest path's (tenant traffic,
    // proxied) sets its size.
    let req = Request::builder()
        .uri("/items/1")
        .header("Tenant", "Tenant1")
        .body(axum::body::Body::empty())
        .unwrap();
    let serving = crate::http::answer(&app, &requests, peer, req);
    let size = std::mem::size_of_val(&serving);
    assert!(
        size <= 8 * 1024,
        "the future serving a request is {size} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_surface_answers_404_405_and_allow_in_its_own_format() {
    let data = tempfile::tempdir().unwrap();
    let router = sample_router(data.path()).await;

    let cases: &[Case] = &[
        // Vespa: JSON {"error-code", "message"}.
        (
            "PATCH",
            "/application/v2/tenant/t1",
            405,
            &["GET", "PUT", "DELETE"],
            "tenants",
            r#""error-code":"METHOD_NOT_ALLOWED""#,
        ),
        (
            "PATCH",
            "/application/v2/tenant/t1/",
            405,
            &["GET", "PUT", "DELETE"],
            "tenants",
            r#""error-code":"METHOD_NOT_ALLOWED""#,
        ),
        (
            "POST",
            "/application/v2/tenant/",
            405,
            &["GET"],
            "tenants",
            r#""error-code":"METHOD_NOT_ALLOWED""#,
        ),
        (
            "POST",
            "/application/v2/tenant",
            405,
            &["GET"],
            "tenants",
            r#""error-code":"METHOD_NOT_ALLOWED""#,
        ),
        (
            "GET",
            "/application/v2/tenant/t1/extra",
            404,
            &[],
            "tenants",
            r#""error-code":"NOT_FOUND""#,
        ),
        (
            "GET",
            "/application/v2/tenant/",
            401,
            &[],
            "tenants",
            r#""error-code":"UNAUTHORIZED""#,
        ),
        // Doradus: XML unless JSON is asked for.
        (
            "PATCH",
            "/_tenants/Beta",
            405,
            &["GET", "PUT", "DELETE"],
            "tenants",
            "<error>Method PATCH",
        ),
        (
            "PATCH",
            "/_tenants/Beta?format=json",
            405,
            &["GET", "PUT", "DELETE"],
            "tenants",
            r#"{"error":"Method PATCH"#,
        ),
        (
            "DELETE",
            "/_tenants",
            405,
            &["GET", "POST"],
            "tenants",
            "<error>",
        ),
        (
            "GET",
            "/_tenants/Beta/_restore",
            405,
            &["POST"],
            "tenants",
            "<error>",
        ),
        (
            "GET",
            "/_tenants/Beta/_other",
            404,
            &[],
            "tenants",
            "<error>Nothing at '/_tenants/Beta/_other'</error>",
        ),
        ("GET", "/_tenants/%FF", 401, &[], "tenants", "<error>"),
        ("GET", "/_tenants/Beta", 401, &[], "tenants", "<error>"),
        // Components: JSON {"error", "component"}.
        (
            "POST",
            "/_components/validator",
            405,
            &["GET", "PUT", "DELETE"],
            "components",
            r#""component":null"#,
        ),
        (
            "GET",
            "/_components/validator/rollback",
            405,
            &["POST"],
            "components",
            r#""error":"Method GET"#,
        ),
        (
            "PUT",
            "/_components",
            405,
            &["GET"],
            "components",
            r#""error":"#,
        ),
        (
            "GET",
            "/_components/a/b/c",
            404,
            &[],
            "components",
            r#""error":"Nothing at"#,
        ),
        // Hono: JSON {"error"}.
        (
            "POST",
            "/hono/v1/tenants",
            405,
            &["GET"],
            "hono",
            r#"{"error":"Method POST"#,
        ),
        (
            "DELETE",
            "/hono/v1/tenants/t1",
            405,
            &["GET", "PUT"],
            "hono",
            r#"{"error":"Method DELETE"#,
        ),
        (
            "GET",
            "/hono/v1/tenants/t1/more",
            404,
            &[],
            "hono",
            r#"{"error":"Nothing at"#,
        ),
        (
            "PUT",
            "/hono/v1/tenants/t1",
            401,
            &[],
            "hono",
            r#"{"error":"#,
        ),
        (
            "GET",
            "/_components",
            401,
            &[],
            "components",
            r#""component":null"#,
        ),
        // Ed-Fi /connect: POST only; RFC 9457 problems, as Ed-Fi's.
        (
            "GET",
            "/connect/token",
            405,
            &["POST"],
            "connect",
            r#""status":405"#,
        ),
        (
            "PUT",
            "/connect/register",
            405,
            &["POST"],
            "connect",
            r#""status":405"#,
        ),
        (
            "GET",
            "/connect/other",
            404,
            &[],
            "connect",
            r#""status":404"#,
        ),
        // Ed-Fi's landing document and tenants.
        ("GET", "/", 200, &[], "edfi", r#""version":"#),
        ("POST", "/", 405, &["GET"], "edfi", r#""status":405"#),
        ("GET", "/v2/tenants", 401, &[], "edfi", r#""status":401"#),
        ("GET", "/v2/tenants/", 401, &[], "edfi", r#""status":401"#),
        (
            "GET",
            "/v2/tenants/Tenant1",
            401,
            &[],
            "edfi",
            r#""status":401"#,
        ),
        (
            "DELETE",
            "/v2/tenants/Tenant1",
            405,
            &["GET"],
            "edfi",
            r#""status":405"#,
        ),
        (
            "GET",
            "/v2/tenants/Tenant1/more",
            404,
            &[],
            "edfi",
            r#""title":"Nothing at"#,
        ),
        // The config API: the component answers methods, after the caller's check.
        (
            "DELETE",
            "/api/v1/tenants/Tenant1/config",
            401,
            &[],
            "config",
            r#""code":401"#,
        ),
        (
            "GET",
            "/api/v1/tenants/Tenant1/features",
            401,
            &[],
            "features",
            r#""code":401"#,
        ),
        // Operations.
        ("GET", "/healthz", 200, &[], "health", r#"{"status":"ok"}"#),
        ("HEAD", "/healthz", 200, &[], "health", ""),
        ("GET", "/metrics", 401, &[], "metrics", r#""code":401"#),
        (
            "GET",
            "/openapi.json",
            200,
            &[],
            "openapi",
            r#""openapi":"3.1"#,
        ),
        ("GET", "/swagger", 301, &[], "swagger", ""),
        (
            "GET",
            "/swagger/nothing.here",
            404,
            &[],
            "swagger",
            r#""code":404"#,
        ),
        // Tenant traffic: whatever no surface routes.
        ("GET", "/db-info", 400, &[], "other", "Tenant"),
        ("GET", "/_tenantsx", 400, &[], "other", "Tenant"),
        (
            "GET",
            "/.well-known/openid-configuration",
            404,
            &[],
            "other",
            "No endpoint at this path",
        ),
        ("GET", "/connect", 404, &[], "connect", r#""status":404"#),
        // Ed-Fi's answer to a version 1 path in multi-tenant mode.
        (
            "GET",
            "/v1/tenants",
            400,
            &[],
            "other",
            r#"{"message":"Wrong API version for this instance mode."}"#,
        ),
    ];
    let mut failures = Vec::new();
    for &(method, path, status, allow, route, body) in cases {
        let a = call(&router, method, path).await;
        let got_allow = methods(&a.allow);
        let want_allow: Vec<String> = allow.iter().map(|m| (*m).to_owned()).collect();
        let ok = a.status.as_u16() == status
            && (status != 405 || got_allow == want_allow)
            && a.route.unwrap_or("other") == route
            && a.body.contains(body)
            && (method == "HEAD" || a.body.is_empty() || a.content_type.is_some());
        if !ok {
            failures.push(format!(
                "{method} {path}: {} allow={:?} route={:?} type={:?} body={}",
                a.status, a.allow, a.route, a.content_type, a.body
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every operation `/openapi.json` documents reaches the handler of its
/// surface: no documented path is the router's 404, no documented method its
/// 405, and each is labelled with its surface (tenant traffic as the tenant
/// traffic it is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed() {
    let data = tempfile::tempdir().unwrap();
    let router = sample_router(data.path()).await;
    let doc: serde_json::Value =
        serde_json::from_str(&call(&router, "GET", "/openapi.json").await.body).unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 20, "{} paths", paths.len());
    let mut failures = Vec::new();
    for (path, item) in paths {
        // Sample values: a tenant, a component slot.
        let concrete = path
            .replace(
                "{name}",
                if path.starts_with("/_components") {
                    "validator"
                } else {
                    "Tenant1"
                },
            )
            .replace("{id}", "Tenant1")
            .replace("{tenant}", "Tenant1")
            .replace("{tenantName}", "Tenant1");
        for (method, op) in item.as_object().expect("path item") {
            if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let traffic = op["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "Tenant traffic"));
            let a = call(&router, &method.to_ascii_uppercase(), &concrete).await;
            let route = a.route.unwrap_or("other");
            let routed = if traffic {
                // No Tenant header: tenant resolution answered, not a surface.
                a.status == StatusCode::BAD_REQUEST && a.body.contains("Tenant")
            } else {
                route != "other"
                    && a.status != StatusCode::METHOD_NOT_ALLOWED
                    && !a.body.contains("Nothing at")
            };
            if !routed {
                failures.push(format!(
                    "{method} {path} ({concrete}): {} route={route} body={}",
                    a.status, a.body
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every path the router routes is in `/openapi.json` (with or without its
/// trailing slash; a catch-all by the paths below it), but for what is no API
/// operation: the liveness alias, Swagger UI's own files, and the config
/// API's bare prefix (routed so that the API, not tenant traffic, says that
/// it names no tenant).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_routed_path_is_documented() {
    const NOT_OPERATIONS: [&str; 5] = [
        "/health",
        "/swagger",
        "/swagger/",
        "/swagger/{*file}",
        crate::api::config::PREFIX,
    ];
    let data = tempfile::tempdir().unwrap();
    let router = sample_router(data.path()).await;
    let doc: serde_json::Value =
        serde_json::from_str(&call(&router, "GET", "/openapi.json").await.body).unwrap();
    let documented: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(|p| p.trim_end_matches('/'))
        .collect();
    let routes = super::routes();
    let routed: Vec<&str> = routes.paths().collect();
    assert!(routed.len() >= 20, "{} routed paths", routed.len());
    let undocumented: Vec<&str> = routed
        .into_iter()
        .filter(|path| !NOT_OPERATIONS.contains(path))
        .filter(|path| match path.find("{*") {
            Some(at) => !documented.iter().any(|d| d.starts_with(&path[..at])),
            None => !documented.contains(&path.trim_end_matches('/')),
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "routed but not documented: {undocumented:?}"
    );
}
