//! The HTTP edge: accepts connections, applies request limits, dispatches to the
//! surfaces, maps every failure to the surface's error body, and logs one line per
//! request. Shuts down gracefully: in-flight requests finish.

use crate::proxy::{Proxy, ProxyError};
use crate::routing::Resolver;
use crate::runtime::{CallError, Runtime};
use crate::settings::Limits;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{HeaderName, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// `x-request-id`: set on every response, and on every log line of the request.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const CONFIG_API_PREFIX: &str = "/api/v1/tenants/";

/// Response body: buffered for the gateway's own answers, streamed when proxied.
pub type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The server's state.
pub struct Gateway {
    runtime: Arc<Runtime>,
    limits: Limits,
    resolver: Resolver,
    proxy: Proxy,
    next_id: AtomicU64,
}

impl Gateway {
    /// A gateway serving through `runtime`.
    pub fn new(runtime: Arc<Runtime>, settings: &crate::settings::Settings) -> Self {
        Self {
            runtime,
            limits: settings.limits.clone(),
            resolver: Resolver::new(settings),
            proxy: Proxy::new(Duration::from_millis(settings.limits.upstream_timeout_ms)),
            next_id: AtomicU64::new(1),
        }
    }
}

/// Accepts connections until `shutdown` completes, then waits (at most 30 s) for
/// in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let gw = gateway.clone();
                let service = hyper::service::service_fn(move |req| {
                    let gw = gw.clone();
                    async move { Ok::<_, Infallible>(handle(&gw, req, peer).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests still running after 30 s; stopping anyway");
    }
    Ok(())
}

/// A JSON error in the config API's format: `{error, message, code, tenant_id}`.
fn error(status: StatusCode, message: &str, tenant_id: Option<&str>) -> Response<Body> {
    let body = serde_json::json!({
        "error": status.canonical_reason().unwrap_or("Error"),
        "message": message,
        "code": status.as_u16(),
        "tenant_id": tenant_id,
    });
    let mut resp = Response::new(full(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, JSON);
    resp
}

fn json(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, JSON);
    resp
}

/// The `{id}` of a config API path, for error bodies.
fn path_tenant(path: &str) -> Option<&str> {
    path.strip_prefix(CONFIG_API_PREFIX)?
        .split('/')
        .next()
        .filter(|s| !s.is_empty())
}

async fn handle(
    gw: &Gateway,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let started = Instant::now();
    let id = gw.next_id.fetch_add(1, Ordering::Relaxed);
    // Both clones share the request's buffers: no copy of the path.
    let method = req.method().clone();
    let uri = req.uri().clone();
    let mut resp = route(gw, req, id, peer).await;
    resp.headers_mut().insert(REQUEST_ID, HeaderValue::from(id));
    tracing::info!(
        request_id = id,
        method = %method,
        path = uri.path(),
        status = resp.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

async fn route(
    gw: &Gateway,
    req: Request<Incoming>,
    id: u64,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let path = req.uri().path();
    if path == "/healthz" || path == "/health" {
        return json(StatusCode::OK, r#"{"status":"ok"}"#);
    }
    if path.starts_with(CONFIG_API_PREFIX) {
        return config_api(gw, req, id).await;
    }
    if Resolver::needs_no_tenant(path) {
        return error(StatusCode::NOT_FOUND, "No endpoint at this path", None);
    }
    tenant_traffic(gw, req, id, peer).await
}

/// Everything that is not a management surface: resolved to a tenant by its
/// `Tenant` header and served by the tenant's upstream.
async fn tenant_traffic(
    gw: &Gateway,
    req: Request<Incoming>,
    id: u64,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let directory = gw.runtime.shared().directory.load();
    let tenant = match gw
        .resolver
        .resolve(req.headers(), req.uri().path(), &directory)
    {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string(), None),
    };
    drop(directory);
    let Some(upstream) = &tenant.upstream else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("Tenant '{}' has no route for this path", tenant.name),
            Some(&tenant.id.to_string()),
        );
    };
    match gw.proxy.forward(&tenant, upstream, req, peer).await {
        Ok(resp) => resp.map(|b| b.map_err(Into::into).boxed_unsync()),
        Err(ProxyError::Timeout) => {
            tracing::warn!(request_id = id, tenant = %tenant.name, "upstream timed out");
            error(
                StatusCode::GATEWAY_TIMEOUT,
                "The tenant's upstream did not answer in time",
                Some(&tenant.id.to_string()),
            )
        }
        Err(e @ ProxyError::Unreachable(_)) => {
            tracing::warn!(request_id = id, tenant = %tenant.name, error = %e, "upstream unreachable");
            error(
                StatusCode::BAD_GATEWAY,
                "The tenant's upstream could not be reached",
                Some(&tenant.id.to_string()),
            )
        }
    }
}

async fn config_api(gw: &Gateway, req: Request<Incoming>, id: u64) -> Response<Body> {
    let uri = req.uri().clone();
    let tenant = path_tenant(uri.path());
    let max = gw.limits.max_body_bytes;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("Request body exceeds the limit of {max} bytes"),
            tenant,
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let body = if parts.method == Method::GET || parts.method == Method::HEAD {
        Bytes::new()
    } else {
        match Limited::new(body, max).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return too_large();
            }
            Err(e) => {
                tracing::debug!(request_id = id, error = %e, "reading request body failed");
                return error(
                    StatusCode::BAD_REQUEST,
                    "The request body could not be read",
                    tenant,
                );
            }
        }
    };
    let req = Request::from_parts(parts, body);
    match gw.runtime.serve_config_api(req).await {
        Ok(resp) => resp.map(full),
        Err(CallError::Busy) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The gateway is at capacity; retry shortly",
            tenant,
        ),
        Err(e) => {
            tracing::error!(request_id = id, error = %e, "config API component failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("Internal server error (request {id})"),
                tenant,
            )
        }
    }
}
