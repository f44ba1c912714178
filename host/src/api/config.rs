//! The HeliosDB config API, `/api/v1/tenants/{id}/…`: the gateway checks the
//! caller, the tenant's state and its quota, serves the change history and
//! the rollback itself (`api::history`), and hands the rest to the config-API
//! component, which routes it (the same component serves it under Spin).

use crate::api::openapi::{TenantConfig, TenantConfigPatch};
use crate::http::{
    Body, ErrorBody, Gateway, Routes, Served, authorize, component_failure, error, read_body,
};
use crate::security::rate::Class;
use crate::telemetry::Rejection;
use axum::extract::Request;
use http::header::HeaderValue;
use http::{Method, Response, StatusCode};
use std::sync::Arc;
use std::time::Instant;
use utoipa::{IntoParams, IntoResponses, OpenApi, ToSchema};

/// The API's path prefix.
pub const PREFIX: &str = "/api/v1/tenants/";

/// The API's part of `/openapi.json`: the operations the config-API component
/// serves (documented here, where the gateway hands them over) and those the
/// gateway serves itself (`api::history`).
#[derive(OpenApi)]
#[openapi(paths(
    get_config,
    update_config,
    get_features,
    crate::api::history::list,
    crate::api::history::rollback
))]
pub struct Doc;

/// The tenant a config API path names.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // a document: the path is read by `path_tenant`
pub(crate) struct TenantPath {
    /// Tenant UUID or name (any case).
    id: String,
}

/// The refusals of every config API operation.
#[derive(IntoResponses)]
#[allow(dead_code)] // a document: what the handlers answer, never built
pub(crate) enum ApiRefusals {
    /// Missing or invalid credentials (see WWW-Authenticate).
    #[response(status = 401)]
    Unauthorized(ErrorBody<'static>),
    /// The token belongs to another tenant.
    #[response(status = 403)]
    Forbidden(ErrorBody<'static>),
    /// No such tenant.
    #[response(status = 404)]
    NotFound(ErrorBody<'static>),
    /// Over the tenant's rate limit (see Retry-After).
    #[response(status = 429)]
    RateLimited(ErrorBody<'static>),
    /// A component failed.
    #[response(status = 500)]
    Failed(ErrorBody<'static>),
}

/// A tenant's configuration as stored: every section with defaults filled in
/// (written by the config-API component).
#[derive(serde::Serialize, ToSchema)]
#[schema(as = TenantConfigDocument)]
#[allow(dead_code)] // a document: the component writes it
struct ConfigDocument {
    #[schema(format = "uuid")]
    tenant_id: String,
    #[schema(format = DateTime)]
    updated_at: Option<String>,
    #[serde(flatten)]
    config: TenantConfig,
}

/// An update done (written by the config-API component).
#[derive(ToSchema)]
#[allow(dead_code)] // a document: the component writes it
struct UpdateResult {
    #[schema(format = "uuid")]
    tenant_id: String,
    #[schema(example = "Successfully updated 2 configuration field(s)")]
    message: String,
    updated_fields: Vec<String>,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// The features of a tenant's tier and configuration (written by the
/// feature-gate and config-API components).
#[derive(ToSchema)]
#[allow(dead_code)] // a document: the component writes it
struct FeatureList {
    #[schema(format = "uuid")]
    tenant_id: String,
    features: Vec<Feature>,
    total_enabled: u32,
    total_available: u32,
}

/// One feature.
#[derive(ToSchema)]
#[allow(dead_code)] // a document: the component writes it
struct Feature {
    name: String,
    enabled: bool,
    available: bool,
    description: String,
    tier_required: crate::config::Tier,
}

/// The tenant's complete configuration (defaults filled in), with an `ETag`;
/// `If-None-Match` with the current tag answers 304.
#[utoipa::path(get, path = "/api/v1/tenants/{id}/config", tag = "Configuration", operation_id = "getTenantConfig",
    params(TenantPath,
        ("If-None-Match" = Option<String>, Header, description = "Entity tags of configurations the client has: 304 if one is current")),
    security(("bearerAuth" = []), ("clientCredentials" = []), ("superUser" = [])),
    responses(
        (status = 200, description = "The configuration", body = ConfigDocument,
            headers(("ETag" = String, description = "The configuration's version and what serves it"))),
        (status = 304, description = "Not modified: If-None-Match names the current tag",
            headers(("ETag" = String, description = "The current tag"))),
        ApiRefusals))]
#[allow(dead_code)] // a document: `serve` hands it to the component
fn get_config() {}

/// Partial update: only the fields given change; validated by the validator component.
#[utoipa::path(put, path = "/api/v1/tenants/{id}/config", tag = "Configuration", operation_id = "updateTenantConfig",
    params(TenantPath),
    security(("bearerAuth" = []), ("clientCredentials" = []), ("superUser" = [])),
    request_body(content = TenantConfigPatch, example = json!({"performance": {"cache_size_mb": 2048}})),
    responses(
        (status = 200, description = "Updated", body = UpdateResult),
        (status = 400, description = "Invalid configuration: every violation with its JSONPath in details", body = ErrorBody),
        (status = 409, description = "Concurrent updates kept conflicting", body = ErrorBody),
        (status = 413, description = "Body over TenantGateway.Limits.MaxBodyBytes", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        ApiRefusals))]
#[allow(dead_code)] // a document: `serve` hands it to the component
fn update_config() {}

/// Features by tier and configuration, with totals.
#[utoipa::path(get, path = "/api/v1/tenants/{id}/features", tag = "Configuration", operation_id = "getTenantFeatures",
    params(TenantPath),
    security(("bearerAuth" = []), ("clientCredentials" = []), ("superUser" = [])),
    responses((status = 200, description = "The features", body = FeatureList), ApiRefusals))]
#[allow(dead_code)] // a document: `serve` hands it to the component
fn get_features() {}

/// Every path under [`PREFIX`], whatever the method: the component answers
/// the methods a path does not allow, as it does under Spin.
pub fn routes() -> Routes {
    Routes::new().prefix(PREFIX, serve)
}

/// The `{id}` of a config API path, for error bodies.
fn path_tenant(path: &str) -> Option<&str> {
    path.strip_prefix(PREFIX)?
        .split('/')
        .next()
        .filter(|s| !s.is_empty())
}

/// The rate-limit class of a config API request, if it counts.
fn rate_class(method: &Method, path: &str) -> Option<Class> {
    match (method, path.rsplit('/').next()) {
        (&Method::GET | &Method::HEAD, Some("config")) => Some(Class::Reads),
        (&Method::PUT, Some("config")) => Some(Class::Updates),
        (&Method::GET | &Method::HEAD, Some("features")) => Some(Class::Features),
        (&Method::GET | &Method::HEAD, Some("history")) => Some(Class::Reads),
        (&Method::POST, Some("rollback")) => Some(Class::Updates),
        _ => None,
    }
}

async fn serve(gw: Arc<Gateway>, req: Request) -> Response<Body> {
    let mut served = Served {
        route: Some(if req.uri().path().ends_with("/features") {
            "features"
        } else {
            "config"
        }),
        tenant: None,
    };
    let resp = answer(&gw, req, &mut served).await;
    served.onto(resp)
}

async fn answer(gw: &Gateway, req: Request, served: &mut Served) -> Response<Body> {
    let uri = req.uri().clone();
    let path_id = path_tenant(uri.path());
    let dir = gw.runtime.shared().directory.load_full();
    let tenant = path_id.and_then(|p| dir.get(p)).cloned();
    served.tenant = tenant.clone();
    // Error bodies name the tenant by UUID when it is known, else as given.
    let label = tenant.as_ref().map(|t| t.id_text()).or(path_id);
    let principal = if dir.auth.require_token {
        match authorize(gw, &dir, req.headers(), tenant.as_deref(), label).await {
            Ok(p) => Some(p),
            Err(resp) => return resp,
        }
    } else {
        None
    };
    if let Some(t) = &tenant
        && !t.enabled
    {
        gw.metrics.reject(Rejection::Forbidden);
        return error(
            StatusCode::FORBIDDEN,
            &format!("Tenant '{}' is disabled", t.name),
            label,
        );
    }
    if dir.rate_limits.enabled
        && let Some(t) = &tenant
        && let Some(class) = rate_class(req.method(), uri.path())
    {
        let quota = dir.rate_limits.quota(t.tier);
        let per_minute = match class {
            Class::Reads => quota.reads,
            Class::Updates => quota.updates,
            Class::Features => quota.features,
        };
        if let Err(wait) = gw.rate.check(t.id, class, per_minute) {
            gw.metrics.reject(Rejection::RateLimited);
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Rate limit exceeded: at most {per_minute} {} per minute for this tenant",
                    class.describe()
                ),
                label,
            );
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            return resp;
        }
    }
    drop(dir);
    let principal = crate::manage::principal_label(principal.as_ref());
    let mut req = match read_body(gw, req, label).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let Some(t) = &tenant else {
        // The component answers an unknown tenant.
        req.headers_mut().remove(http::header::AUTHORIZATION);
        return call_component(gw, req, principal, None, None, label).await;
    };
    let rest = &uri.path()[PREFIX.len()..];
    let sub = rest.split_once('/').map_or("", |(_, s)| s);
    // A write waits for the tenant's earlier writes on this instance.
    let mut turn = match (sub, req.method()) {
        ("config", &Method::PUT) | ("config/rollback", &Method::POST) => {
            let wait = std::time::Duration::from_millis(gw.limits.component_timeout_ms);
            match gw.config_writes.take(&t.id, wait).await {
                Some(turn) => Some(turn),
                None => {
                    gw.metrics.reject(Rejection::Capacity);
                    let mut resp = error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Other updates of this tenant are still running; retry shortly",
                        label,
                    );
                    resp.headers_mut()
                        .insert(http::header::RETRY_AFTER, HeaderValue::from(1));
                    return resp;
                }
            }
        }
        _ => None,
    };
    match (sub, req.method()) {
        ("history", &Method::GET) => {
            served.route = Some("history");
            return crate::api::history::list(gw, t, uri.query()).await;
        }
        ("config/rollback", &Method::POST) => {
            // Written otherwise: the next update reads the store.
            if let Some(turn) = turn.as_mut() {
                **turn = None;
            }
            return crate::api::history::rollback(gw, t, req, principal).await;
        }
        ("history", _) | ("config/rollback", _) => {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed on this path",
                label,
            );
        }
        _ => {}
    }
    // The component needs no credentials.
    req.headers_mut().remove(http::header::AUTHORIZATION);
    if sub == "config" && req.method() == Method::GET {
        let headers = req.headers().clone();
        let run = call_component(gw, req, principal, Some(t), None, label);
        return gw.config_reads.get(gw, t, &headers, run).await;
    }
    call_component(gw, req, principal, Some(t), turn, label).await
}

/// The config-API component's answer to `req`; `turn`: the tenant's turn to
/// write, held by an update.
async fn call_component(
    gw: &Gateway,
    req: http::Request<bytes::Bytes>,
    principal: String,
    tenant: Option<&crate::tenancy::Tenant>,
    turn: Option<crate::store::WriteTurn>,
    label: Option<&str>,
) -> Response<Body> {
    let started = Instant::now();
    let key = tenant.map(|t| t.key.to_string());
    let result = gw.runtime.serve_config_api(req, principal, key, turn).await;
    let failed = matches!(&result, Err(e) if !matches!(e, crate::wasm::CallError::Busy));
    gw.metrics
        .component_call(&crate::wasm::CONFIG_API_LABEL, started.elapsed(), failed);
    if let Err(crate::wasm::CallError::Plugin { component, .. }) = &result {
        gw.metrics
            .component_call(&Arc::from(component.as_str()), started.elapsed(), true);
    }
    match result {
        Ok(resp) => resp.map(Body::from),
        Err(e) => component_failure(&gw.metrics, e, "config-api", label),
    }
}
