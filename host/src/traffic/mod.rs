//! Tenant traffic: everything no surface routes. Resolved to a tenant by its
//! `Tenant` header (refused as Ed-Fi refuses it: a validation failure of the
//! `Tenant` field, and Ed-Fi's answer to a `/v1/` path in multi-tenant mode),
//! checked (enabled, and authorized when
//! `Authentication.ProtectTenantTraffic`), then served by the tenant app or
//! proxied (`proxy`, streaming both ways) to the upstream its route names.

mod h1;
mod pool;
pub mod proxy;

use crate::http::{Body, Gateway, Served, authorize, component_failure, error, read_body};
use crate::telemetry::Rejection;
use crate::tenancy::Destination;
use crate::tenancy::resolve::Resolver;
use axum::extract::Request;
use http::{Response, StatusCode};
use proxy::ProxyError;
use std::sync::Arc;
use std::time::Instant;

/// What tenant traffic is served with: the gateway's state and the pooled
/// client to upstreams.
pub struct Traffic {
    gw: Arc<Gateway>,
    proxy: proxy::Proxy,
}

impl Traffic {
    /// Tenant traffic of `gw`.
    pub fn new(gw: Arc<Gateway>) -> Arc<Self> {
        Arc::new(Traffic {
            proxy: proxy::Proxy::new(&gw.limits),
            gw,
        })
    }

    /// Serves a path no surface routes. The paths reserved for the gateway
    /// (health, `/connect`, `/.well-known`) are 404 here, never a tenant's.
    pub async fn serve(self: Arc<Self>, req: Request) -> Response<Body> {
        if Resolver::needs_no_tenant(req.uri().path()) {
            return error(StatusCode::NOT_FOUND, "No endpoint at this path", None);
        }
        let mut served = Served::default();
        let resp = tenant_traffic(&self, req, &mut served).await;
        served.onto(resp)
    }
}

async fn tenant_traffic(
    traffic: &Traffic,
    mut req: Request,
    served: &mut Served,
) -> Response<Body> {
    let gw = &*traffic.gw;
    let dir = gw.runtime.shared().directory.load_full();
    if dir.resolver.multi_tenancy() && wrong_version(&dir, req.uri().path()) {
        return wrong_version_answer();
    }
    let tenant = match dir.resolver.resolve(req.headers(), req.uri().path(), &dir) {
        Ok(t) => t,
        Err(e) => return crate::http::unresolved(&gw.metrics, &e),
    };
    served.tenant = Some(tenant.clone());
    // Only an error names the tenant: no id formatted for a request served.
    let tenant_id = || tenant.id.to_string();
    if !tenant.enabled {
        gw.metrics.reject(Rejection::Forbidden);
        return error(
            StatusCode::FORBIDDEN,
            &format!("Tenant '{}' is disabled", tenant.name),
            Some(&tenant_id()),
        );
    }
    if dir.auth.protect_tenant_traffic {
        // Boxed: the credential check's state stays out of the proxy path's.
        if let Err(resp) = Box::pin(authorize(
            gw,
            &dir,
            req.headers(),
            Some(&tenant),
            Some(&tenant_id()),
        ))
        .await
        {
            return resp;
        }
        // The gateway's credential is not the upstream's business.
        req.headers_mut().remove(http::header::AUTHORIZATION);
    }
    match dir.destination(&tenant, req.uri().path()) {
        Destination::App(name) => {
            served.route = Some("app");
            // Only a directory replaced this instant names an app since dropped.
            let Some(app) = gw.runtime.app(name) else {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The tenant's app is being replaced; try again",
                    Some(&tenant_id()),
                );
            };
            // Boxed: a component call's state stays out of the proxy path's.
            Box::pin(serve_app(gw, &app, tenant.clone(), req)).await
        }
        Destination::Upstream(upstream) => {
            served.route = Some("upstream");
            let upstream = upstream.clone();
            drop(dir);
            match traffic
                .proxy
                .forward(
                    &tenant,
                    &upstream,
                    req,
                    crate::http::client_addr(),
                    gw.body_timeouts(),
                )
                .await
            {
                Ok(resp) => resp.map(Body::new),
                Err(ProxyError::Timeout) => {
                    tracing::warn!("upstream timed out");
                    error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "The tenant's upstream did not answer in time",
                        Some(&tenant_id()),
                    )
                }
                Err(ProxyError::BadRequestBody) => error(
                    StatusCode::BAD_REQUEST,
                    "The request body is malformed or ended early",
                    Some(&tenant_id()),
                ),
                Err(ProxyError::BodyTimedOut) => error(
                    StatusCode::REQUEST_TIMEOUT,
                    "The request body did not arrive in time",
                    Some(&tenant_id()),
                ),
                Err(e @ ProxyError::Unreachable(_)) => {
                    tracing::warn!(error = %e, "upstream unreachable");
                    error(
                        StatusCode::BAD_GATEWAY,
                        "The tenant's upstream could not be reached",
                        Some(&tenant_id()),
                    )
                }
            }
        }
        Destination::None => error(
            StatusCode::NOT_FOUND,
            &format!("Tenant '{}' has no route for this path", tenant.name),
            Some(&tenant_id()),
        ),
    }
}

/// Serves `req` with the tenant's app component.
async fn serve_app(
    gw: &Gateway,
    app: &crate::wasm::App,
    tenant: Arc<crate::tenancy::Tenant>,
    req: Request,
) -> Response<Body> {
    let tenant_id = tenant.id.to_string();
    let req = match read_body(gw, req, Some(&tenant_id)).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let started = Instant::now();
    let result = gw.runtime.serve_app(app, tenant, req).await;
    let failed = matches!(&result, Err(e) if !matches!(e, crate::wasm::CallError::Busy));
    gw.metrics
        .component_call(&app.metric_label, started.elapsed(), failed);
    match result {
        Ok(resp) => resp.map(Body::from),
        Err(e) => component_failure(&gw.metrics, e, &app.name, Some(&tenant_id)),
    }
}

/// Whether `path` is one Ed-Fi answers with "Wrong API version" in
/// multi-tenant mode (a `/v1/` path: Ed-Fi's version 1 mode has no
/// multi-tenancy), unless the shared routes (`TenantGateway.Routes`) route it.
fn wrong_version(dir: &crate::tenancy::Directory, path: &str) -> bool {
    path.get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("/v1/"))
        && !dir.routes.iter().any(|r| r.matches(path))
}

/// Ed-Fi's answer to a path of the other API version.
fn wrong_version_answer() -> Response<Body> {
    crate::http::json(
        StatusCode::BAD_REQUEST,
        bytes::Bytes::from_static(br#"{"message":"Wrong API version for this instance mode."}"#),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::Directory;

    #[test]
    fn v1_paths_are_the_wrong_version_unless_routed() {
        let dir = Directory::default();
        for p in ["/v1/tenants", "/V1/odsInstances/1", "/v1/"] {
            assert!(wrong_version(&dir, p), "{p}");
        }
        for p in ["/v1", "/v2/tenants", "/api/v1/x", "/v10/x", "/"] {
            assert!(!wrong_version(&dir, p), "{p}");
        }
    }
}
