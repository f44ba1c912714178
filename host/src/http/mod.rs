//! The HTTP edge: accepts connections, applies request limits, dispatches to the
//! surfaces, maps every failure to the surface's error body, and logs one line per
//! request. Shuts down gracefully: in-flight requests finish.

pub mod body;
pub mod json;

use crate::config::Limits;
use crate::security::auth::{Authenticator, Principal, Refusal};
use crate::security::rate::{Class, RateLimiter};
use crate::telemetry::{Metrics, Rejection};
use crate::tenancy::resolve::{ResolveError, Resolver};
use crate::tenancy::{Destination, Directory, Tenant};
use crate::traffic::proxy::{Proxy, ProxyError};
use crate::wasm::{CallError, Runtime};
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tracing::Instrument;

/// `x-request-id`: set on every response, and on every log line of the request.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const CONFIG_API_PREFIX: &str = "/api/v1/tenants/";

/// The config API's component label in metrics.
static CONFIG_API_LABEL: std::sync::LazyLock<Arc<str>> =
    std::sync::LazyLock::new(|| Arc::from("config-api"));

/// Response body: buffered for the gateway's own answers, streamed when proxied.
pub type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub(crate) fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The server's state.
pub struct Gateway {
    pub(crate) runtime: Arc<Runtime>,
    limits: Limits,
    proxy: Proxy,
    next_id: AtomicU64,
    /// This instance's part of every request id (random at start).
    instance: u64,
    pub(crate) auth: Arc<Authenticator>,
    rate: RateLimiter,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) registry: Arc<crate::registry::Registry>,
    draining: AtomicBool,
    swagger: Arc<utoipa_swagger_ui::Config<'static>>,
    /// The connection counts.
    connection_metrics: ConnectionMetrics,
    /// Every layer's metrics, for `/metrics`.
    exposition: Arc<crate::telemetry::Registry>,
    /// Whether `/metrics` is served on the admin listener (and not here).
    admin_listener: bool,
    /// Open registrations per client address.
    pub(crate) registrations: RateLimiter<std::net::IpAddr>,
}

/// Connections accepted past `Limits.MaxConnections` that may still ask for
/// `/healthz`, `/readyz` and `/metrics` (anything else gets 503): a full
/// gateway can still tell its orchestrator it is alive, and say why it is full.
const HEALTH_HEADROOM: usize = 16;

/// Counts one open connection while it lives.
struct Open(Arc<Gateway>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connection_metrics.open.dec();
    }
}

impl Gateway {
    /// How long a request body may take.
    pub(crate) fn body_timeouts(&self) -> crate::http::body::BodyTimeouts {
        crate::http::body::BodyTimeouts {
            idle: Duration::from_millis(self.limits.body_idle_timeout_ms),
            total: Duration::from_millis(self.limits.body_timeout_ms),
        }
    }

    /// A gateway serving through `runtime`; `limits` are fixed for its lifetime
    /// (everything else comes from the runtime's directory and may be reloaded).
    pub fn new(
        runtime: Arc<Runtime>,
        limits: &Limits,
        auth: Arc<Authenticator>,
        metrics: Arc<Metrics>,
        (connection_metrics, exposition): (ConnectionMetrics, Arc<crate::telemetry::Registry>),
        registry: Arc<crate::registry::Registry>,
        admin_listener: bool,
    ) -> Self {
        Self {
            runtime,
            limits: limits.clone(),
            proxy: Proxy::new(limits),
            next_id: AtomicU64::new(1),
            instance: argon2::password_hash::rand_core::RngCore::next_u64(
                &mut argon2::password_hash::rand_core::OsRng,
            ),
            auth,
            rate: RateLimiter::default(),
            metrics,
            registry,
            draining: AtomicBool::new(false),
            connection_metrics,
            exposition,
            admin_listener,
            registrations: RateLimiter::default(),
            swagger: Arc::new(
                utoipa_swagger_ui::Config::from("/openapi.json")
                    .try_it_out_enabled(true)
                    .persist_authorization(true),
            ),
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
                let open = usize::try_from(gateway.connection_metrics.open.inc()).unwrap_or(0);
                let guard = Open(gateway.clone());
                if open >= gateway.limits.max_connections + HEALTH_HEADROOM {
                    // Full, headroom included: closed at once.
                    gateway.connection_metrics.refused.inc();
                    drop(stream);
                    drop(guard);
                    continue;
                }
                let health_only = open >= gateway.limits.max_connections;
                let _ = stream.set_nodelay(true);
                let gw = gateway.clone();
                let service = hyper::service::service_fn(move |req| {
                    let gw = gw.clone();
                    async move {
                        if health_only && !is_health(req.uri().path()) {
                            return Ok::<_, Infallible>(at_connection_limit());
                        }
                        Ok::<_, Infallible>(handle(&gw, req, peer).await)
                    }
                });
                let conn = http1().serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _guard = guard;
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    gateway.draining.store(true, Ordering::Relaxed);
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

/// The metrics in Prometheus' text format.
/// Every layer's metrics. OpenMetrics text, labelled as such for scrapers that
/// ask for it (Prometheus does); others get it as the classic text format,
/// which reads it the same (its `# EOF` is a comment there).
fn metrics_response<B>(gw: &Gateway, req: &Request<B>) -> Response<Body> {
    let text = crate::telemetry::encode(&gw.exposition);
    let open_metrics = req
        .headers()
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let mut resp = Response::new(full(Bytes::from(text)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(if open_metrics {
            crate::telemetry::CONTENT_TYPE
        } else {
            "text/plain; version=0.0.4; charset=utf-8"
        }),
    );
    resp
}

/// The connection counts `/metrics` shows.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    open: prometheus_client::metrics::gauge::Gauge,
    refused: prometheus_client::metrics::counter::Counter,
}

impl ConnectionMetrics {
    /// The families, registered in `registry`.
    pub fn register(registry: &mut crate::telemetry::Registry) -> Self {
        let m = Self::default();
        registry.register(
            "tg_connections_open",
            format!(
                "Client connections open now (Limits.MaxConnections, plus {HEALTH_HEADROOM} for health checks)."
            ),
            m.open.clone(),
        );
        registry.register(
            "tg_connections_refused",
            "Connections closed at once: the limit and the health headroom were taken.",
            m.refused.clone(),
        );
        m
    }
}

/// Serves the admin listener (`TenantGateway.AdminListen`): `/metrics`,
/// `/healthz` and `/readyz`, without credentials (it is meant for a private
/// address), anything else 404. Runs until aborted.
pub async fn serve_admin(listener: TcpListener, gw: Arc<Gateway>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let gw = gw.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let gw = gw.clone();
            async move {
                let path = req.uri().path();
                let resp = match health(&gw, path).await {
                    Some(resp) => resp,
                    None if path == "/metrics" => metrics_response(&gw, &req),
                    None => error(
                        StatusCode::NOT_FOUND,
                        "The admin listener serves /metrics, /healthz and /readyz",
                        None,
                    ),
                };
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = http1().serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

/// The HTTP/1.1 connection settings of both listeners.
fn http1() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder
}

/// `/healthz` (`/health`) and `/readyz`, on either listener.
async fn health(gw: &Gateway, path: &str) -> Option<Response<Body>> {
    match path {
        "/healthz" | "/health" => Some(json(StatusCode::OK, r#"{"status":"ok"}"#)),
        "/readyz" => Some(readiness(gw).await),
        _ => None,
    }
}

/// What a connection past `Limits.MaxConnections` may still ask for: the
/// health paths and `/metrics`.
fn is_health(path: &str) -> bool {
    matches!(path, "/healthz" | "/health" | "/readyz" | "/metrics")
}

/// The answer on a connection past `Limits.MaxConnections`: 503, and the
/// connection closed.
fn at_connection_limit() -> Response<Body> {
    let mut resp = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The gateway is at its connection limit; retry shortly",
        None,
    );
    resp.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    retry_after(&mut resp, 1);
    resp
}

/// A JSON error in the config API's format: `{error, message, code, tenant_id}`.
pub(crate) fn error(status: StatusCode, message: &str, tenant_id: Option<&str>) -> Response<Body> {
    error_details(status, message, tenant_id, &[])
}

/// [`error`] with the violations found, as `details` (`[{path, message}]`).
pub(crate) fn error_details(
    status: StatusCode,
    message: &str,
    tenant_id: Option<&str>,
    details: &[crate::wasm::Violation],
) -> Response<Body> {
    let mut body = serde_json::json!({
        "error": status.canonical_reason().unwrap_or("Error"),
        "message": message,
        "code": status.as_u16(),
        "tenant_id": tenant_id,
    });
    if !details.is_empty() {
        body["details"] = details
            .iter()
            .map(|v| serde_json::json!({"path": v.path, "message": v.message}))
            .collect();
    }
    json_value(status, &body)
}

pub(crate) fn json_value(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
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

/// An RFC 9457 problem (the format of Ed-Fi's `/connect/register` errors).
pub(crate) fn problem(
    status: StatusCode,
    title: &str,
    errors: Option<serde_json::Value>,
) -> Response<Body> {
    let mut body = serde_json::json!({"title": title, "status": status.as_u16()});
    if let Some(errors) = errors {
        body["errors"] = errors;
    }
    let mut resp = json_value(status, &body);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

/// The `{id}` of a config API path, for error bodies.
fn path_tenant(path: &str) -> Option<&str> {
    path.strip_prefix(CONFIG_API_PREFIX)?
        .split('/')
        .next()
        .filter(|s| !s.is_empty())
}

/// What the access log and the metrics learn about a request as it is served.
pub(crate) struct Served {
    pub(crate) id: RequestId,
    pub(crate) route: &'static str,
    pub(crate) tenant: Option<Arc<Tenant>>,
}

/// A request's id: this instance's random id and the request's number on it,
/// so ids from instances behind one load balancer never collide. Sent back
/// as `x-request-id` and carried by the request's log span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId {
    instance: u64,
    n: u64,
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}-{}", self.instance, self.n)
    }
}

/// The address of the client a request came from (a request extension).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) std::net::IpAddr);

/// The client address of a request, from its extensions (loopback if none
/// was recorded).
pub(crate) fn client_addr(extensions: &http::Extensions) -> std::net::IpAddr {
    extensions
        .get::<ClientAddr>()
        .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), |a| a.0)
}

/// Who sent a request (its headers and extensions), for `tenant`: the one
/// credential check every surface makes.
pub(crate) async fn authenticate(
    gw: &Gateway,
    headers: &http::HeaderMap,
    extensions: &http::Extensions,
    dir: &Directory,
    tenant: Option<&Tenant>,
) -> Result<Principal, Refusal> {
    gw.auth
        .authenticate(
            headers.get(http::header::AUTHORIZATION),
            client_addr(extensions),
            tenant,
            dir,
        )
        .await
}

/// Sets `Retry-After` (seconds).
pub(crate) fn retry_after(resp: &mut Response<Body>, secs: u64) {
    resp.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
}

async fn handle(
    gw: &Gateway,
    mut req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    req.extensions_mut().insert(ClientAddr(peer.ip()));
    let started = Instant::now();
    let id = RequestId {
        instance: gw.instance,
        n: gw.next_id.fetch_add(1, Ordering::Relaxed),
    };
    // Every log line of the request (components', the store's) is in its
    // span; what is learnt on the way (route, tenant, status) is recorded there.
    let id_text = id.to_string();
    let span = tracing::info_span!(
        "request",
        id = %id_text,
        method = %req.method(),
        path = req.uri().path(),
        route = tracing::field::Empty,
        tenant = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let mut served = Served {
        id,
        route: "other",
        tenant: None,
    };
    let mut resp = route(gw, req, peer, &mut served)
        .instrument(span.clone())
        .await;
    if let Ok(value) = HeaderValue::try_from(id_text) {
        resp.headers_mut().insert(REQUEST_ID, value);
    }
    let status = resp.status().as_u16();
    gw.metrics.request(
        served.tenant.as_ref().map(|t| &t.label),
        served.route,
        status,
    );
    span.record("route", served.route);
    if let Some(t) = &served.tenant {
        span.record("tenant", t.name.as_str());
    }
    span.record("status", status);
    tracing::info!(
        parent: &span,
        micros = started.elapsed().as_micros() as u64,
        "served"
    );
    resp
}

async fn route(
    gw: &Gateway,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
    served: &mut Served,
) -> Response<Body> {
    let path = req.uri().path();
    if let Some(resp) = health(gw, path).await {
        served.route = "health";
        return resp;
    }
    match path {
        "/metrics" => {
            served.route = "metrics";
            // It names every tenant: the admin listener's, or the super-user's.
            if gw.admin_listener {
                return error(
                    StatusCode::NOT_FOUND,
                    "Metrics are served on the admin listener (TenantGateway.AdminListen)",
                    None,
                );
            }
            if let Err(denied) = require_super_user(gw, &req).await {
                return denied.challenge(error(denied.status, denied.message, None));
            }
            return metrics_response(gw, &req);
        }
        "/openapi.json" => {
            served.route = "openapi";
            let doc = crate::api::openapi::document(&gw.runtime.shared().directory.load());
            return json_value(StatusCode::OK, &doc);
        }
        "/connect/register" => {
            served.route = "connect";
            return crate::api::connect::register(gw, req, served).await;
        }
        "/connect/token" => {
            served.route = "connect";
            return crate::api::connect::token(gw, req, served).await;
        }
        _ => {}
    }
    if path == crate::api::vespa::PREFIX || path.starts_with("/application/v2/tenant/") {
        served.route = "tenants";
        return crate::api::vespa::serve(gw, &req).await;
    }
    if path == crate::api::doradus::PREFIX || path.starts_with("/_tenants/") {
        served.route = "tenants";
        return crate::api::doradus::serve(gw, req).await;
    }
    if path == crate::api::components::PREFIX || path.starts_with("/_components/") {
        served.route = "components";
        return crate::api::components::serve(gw, req).await;
    }
    if path == crate::api::hono::PREFIX || path.starts_with("/hono/v1/tenants/") {
        served.route = "hono";
        return crate::api::hono::serve(gw, req).await;
    }
    if path == "/swagger" || path.starts_with("/swagger/") {
        served.route = "swagger";
        return swagger(gw, path);
    }
    if path.starts_with(CONFIG_API_PREFIX) {
        served.route = if path.ends_with("/features") {
            "features"
        } else {
            "config"
        };
        return config_api(gw, req, served).await;
    }
    if Resolver::needs_no_tenant(path) {
        return error(StatusCode::NOT_FOUND, "No endpoint at this path", None);
    }
    tenant_traffic(gw, req, peer, served).await
}

async fn readiness(gw: &Gateway) -> Response<Body> {
    if gw.draining.load(Ordering::Relaxed) {
        return json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#);
    }
    let store = gw.runtime.shared().store.clone();
    let reachable = tokio::task::spawn_blocking(move || store.get("_gateway", "ready").is_ok())
        .await
        .unwrap_or(false);
    if reachable {
        json(StatusCode::OK, r#"{"status":"ready"}"#)
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"store unreachable"}"#,
        )
    }
}

fn swagger(gw: &Gateway, path: &str) -> Response<Body> {
    if !gw.runtime.shared().directory.load().swagger_enabled {
        return error(
            StatusCode::NOT_FOUND,
            "Swagger UI is disabled (SwaggerSettings.EnableSwagger)",
            None,
        );
    }
    if path == "/swagger" {
        let mut resp = Response::new(full(Bytes::new()));
        *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
        resp.headers_mut().insert(
            http::header::LOCATION,
            HeaderValue::from_static("/swagger/"),
        );
        return resp;
    }
    let tail = &path["/swagger/".len()..];
    match utoipa_swagger_ui::serve(tail, gw.swagger.clone()) {
        Ok(Some(file)) => {
            let mut resp = Response::new(full(Bytes::from(file.bytes.into_owned())));
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

/// A 401 with the challenge for `refusal` (429 or 503 with `Retry-After` when
/// no check was made), in the config API's error format.
fn unauthorized(refusal: Refusal, tenant_id: Option<&str>) -> Response<Body> {
    let mut resp = error(refusal.status(), &refusal.to_string(), tenant_id);
    refused(&mut resp, refusal);
    resp
}

/// The headers a refusal adds to any surface's answer: the challenge of a
/// 401, the `Retry-After` of a 429 or 503.
pub(crate) fn refused(resp: &mut Response<Body>, refusal: Refusal) {
    match refusal.retry_after() {
        Some(secs) => retry_after(resp, secs),
        None => {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static(refusal.challenge()),
            );
        }
    }
}

/// Checks the credentials of a request for `tenant` (when known): `Err` is the
/// answer to send.
#[allow(clippy::result_large_err)]
async fn authorize<B>(
    gw: &Gateway,
    dir: &Directory,
    req: &Request<B>,
    tenant: Option<&Tenant>,
    tenant_label: Option<&str>,
) -> Result<Principal, Response<Body>> {
    let principal = authenticate(gw, req.headers(), req.extensions(), dir, tenant)
        .await
        .map_err(|refusal| {
            gw.metrics.reject(refusal_reason(refusal));
            unauthorized(refusal, tenant_label)
        })?;
    if let (Principal::TenantUser { tenant: own, .. }, Some(tenant)) = (&principal, tenant)
        && *own != tenant.id
    {
        gw.metrics.reject(Rejection::Forbidden);
        return Err(error(
            StatusCode::FORBIDDEN,
            &format!(
                "The credentials are another tenant's user's and may not be used for '{}'",
                tenant.name
            ),
            tenant_label,
        ));
    }
    if let (Principal::Client(claims), Some(tenant)) = (&principal, tenant)
        && claims.tenant != tenant.id
        && !dir.auth.tokens_cross_tenants
    {
        gw.metrics.reject(Rejection::Forbidden);
        return Err(error(
            StatusCode::FORBIDDEN,
            &format!(
                "The token was issued for another tenant and may not be used for '{}'",
                tenant.name
            ),
            tenant_label,
        ));
    }
    Ok(principal)
}

/// Why a request body could not be read.
pub(crate) enum BodyError {
    /// Over the size limit (counted in metrics).
    TooLarge(usize),
    /// The connection failed while reading.
    Unreadable,
    /// The body stalled or took too long (`Limits.BodyIdleTimeoutMs`,
    /// `Limits.BodyTimeoutMs`): 408.
    TimedOut,
}

impl BodyError {
    /// The status to answer with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Unreadable => StatusCode::BAD_REQUEST,
            BodyError::TimedOut => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge(max) => write!(f, "Request body exceeds the limit of {max} bytes"),
            BodyError::Unreadable => f.write_str("The request body could not be read"),
            BodyError::TimedOut => f.write_str("The request body did not arrive in time"),
        }
    }
}

/// Reads a whole request body up to the size limit (GET and HEAD: none).
pub(crate) async fn read_limited(
    gw: &Gateway,
    req: Request<Incoming>,
) -> Result<Request<Bytes>, BodyError> {
    read_limited_to(gw, req, gw.limits.max_body_bytes).await
}

/// Reads a whole request body of at most `max` bytes (GET and HEAD: none).
pub(crate) async fn read_limited_to(
    gw: &Gateway,
    req: Request<Incoming>,
    max: usize,
) -> Result<Request<Bytes>, BodyError> {
    let too_large = || {
        gw.metrics.reject(Rejection::BodyTooLarge);
        BodyError::TooLarge(max)
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let body = if parts.method == Method::GET || parts.method == Method::HEAD {
        Bytes::new()
    } else {
        match Limited::new(crate::http::body::Timed::new(body, gw.body_timeouts()), max)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) if crate::http::body::timed_out(e.as_ref()) => {
                tracing::debug!("request body timed out");
                return Err(BodyError::TimedOut);
            }
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return Err(too_large());
            }
            Err(e) => {
                tracing::debug!(error = %e, "reading request body failed");
                return Err(BodyError::Unreadable);
            }
        }
    };
    Ok(Request::from_parts(parts, body))
}

/// [`read_limited`] answering failures in the config API's error format.
#[allow(clippy::result_large_err)]
async fn read_body(
    gw: &Gateway,
    req: Request<Incoming>,
    tenant: Option<&str>,
) -> Result<Request<Bytes>, Response<Body>> {
    read_limited(gw, req)
        .await
        .map_err(|e| error(e.status(), &e.to_string(), tenant))
}

/// What a refused credential counts as in the metrics.
pub(crate) fn refusal_reason(refusal: Refusal) -> Rejection {
    match refusal {
        Refusal::Throttled(_) => Rejection::SignInThrottled,
        Refusal::Busy => Rejection::SignInBusy,
        _ => Rejection::Unauthenticated,
    }
}

/// Why a management request (Doradus, Vespa, Hono writes) is refused.
pub(crate) struct Denied {
    /// 401, 403, 429 or 503.
    pub(crate) status: StatusCode,
    /// What to tell the caller.
    pub(crate) message: &'static str,
    /// The credential check's refusal, if that is why.
    pub(crate) refusal: Option<Refusal>,
}

impl Denied {
    /// Adds the Basic challenge a 401 carries, or the `Retry-After` of a 429
    /// or 503.
    pub(crate) fn challenge(&self, mut resp: Response<Body>) -> Response<Body> {
        match self.refusal.and_then(Refusal::retry_after) {
            Some(secs) => retry_after(&mut resp, secs),
            // These APIs take Basic credentials only.
            None if self.status == StatusCode::UNAUTHORIZED => {
                resp.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="tenant-gateway""#),
                );
            }
            None => {}
        }
        resp
    }
}

/// The management APIs' gate: the super-user's Basic credentials.
pub(crate) async fn require_super_user<B>(gw: &Gateway, req: &Request<B>) -> Result<(), Denied> {
    let dir = gw.runtime.shared().directory.load_full();
    match authenticate(gw, req.headers(), req.extensions(), &dir, None).await {
        Ok(Principal::SuperUser) => Ok(()),
        Ok(_) => {
            gw.metrics.reject(Rejection::Forbidden);
            Err(Denied {
                status: StatusCode::FORBIDDEN,
                message: "Managing tenants needs the super-user's credentials",
                refusal: None,
            })
        }
        Err(refusal) => {
            gw.metrics.reject(refusal_reason(refusal));
            Err(Denied {
                status: refusal.status(),
                message: match refusal {
                    Refusal::BadCredentials => "The user name or password is incorrect",
                    Refusal::Throttled(_) => "Too many sign-in attempts; try again later",
                    Refusal::Busy => {
                        "The gateway is too busy checking passwords; try again shortly"
                    }
                    _ => "This API needs the super-user's Basic credentials",
                },
                refusal: Some(refusal),
            })
        }
    }
}

/// Maps a failed component call to its answer, counting it.
fn component_failure(
    id: RequestId,
    gw: &Gateway,
    e: CallError,
    component: &str,
    tenant: Option<&str>,
) -> Response<Body> {
    if let CallError::Busy = e {
        gw.metrics.reject(Rejection::Capacity);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The gateway is at capacity; retry shortly",
            tenant,
        );
    }
    // A plugin the component called is the one to name.
    let component = match &e {
        CallError::Plugin { component, .. } => component.as_str(),
        _ => component,
    };
    tracing::error!(component, error = %e, "component failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("Internal server error in component {component} (request {id})"),
        tenant,
    )
}

/// Everything that is not a management surface: resolved to a tenant by its
/// `Tenant` header and served by the tenant app or upstream its route names.
async fn tenant_traffic(
    gw: &Gateway,
    mut req: Request<Incoming>,
    peer: std::net::SocketAddr,
    served: &mut Served,
) -> Response<Body> {
    let dir = gw.runtime.shared().directory.load_full();
    let tenant = match dir.resolver.resolve(req.headers(), req.uri().path(), &dir) {
        Ok(t) => t,
        Err(e) => {
            gw.metrics.reject(match e {
                ResolveError::Missing => Rejection::TenantMissing,
                ResolveError::Invalid(_) => Rejection::TenantInvalid,
                ResolveError::Unknown(_) => Rejection::TenantUnknown,
            });
            return error(StatusCode::BAD_REQUEST, &e.to_string(), None);
        }
    };
    served.tenant = Some(tenant.clone());
    let tenant_id = tenant.id.to_string();
    if !tenant.enabled {
        gw.metrics.reject(Rejection::Forbidden);
        return error(
            StatusCode::FORBIDDEN,
            &format!("Tenant '{}' is disabled", tenant.name),
            Some(&tenant_id),
        );
    }
    if dir.auth.protect_tenant_traffic {
        if let Err(resp) = authorize(gw, &dir, &req, Some(&tenant), Some(&tenant_id)).await {
            return resp;
        }
        // The gateway's credential is not the upstream's business.
        req.headers_mut().remove(http::header::AUTHORIZATION);
    }
    match dir.destination(&tenant, req.uri().path()) {
        Destination::App(name) => {
            served.route = "app";
            // Only a directory replaced this instant names an app since dropped.
            let Some(app) = gw.runtime.app(name) else {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The tenant's app is being replaced; try again",
                    Some(&tenant_id),
                );
            };
            let app = &app;
            let req = match read_body(gw, req, Some(&tenant_id)).await {
                Ok(r) => r,
                Err(resp) => return resp,
            };
            let started = Instant::now();
            let result = gw.runtime.serve_app(app, tenant.clone(), req).await;
            let failed = matches!(&result, Err(e) if !matches!(e, CallError::Busy));
            gw.metrics
                .component_call(&app.metric_label, started.elapsed(), failed);
            match result {
                Ok(resp) => resp.map(full),
                Err(e) => component_failure(served.id, gw, e, &app.name, Some(&tenant_id)),
            }
        }
        Destination::Upstream(upstream) => {
            served.route = "upstream";
            let upstream = upstream.clone();
            drop(dir);
            match gw
                .proxy
                .forward(&tenant, &upstream, req, peer, gw.body_timeouts())
                .await
            {
                Ok(resp) => resp.map(|b| b.map_err(Into::into).boxed_unsync()),
                Err(ProxyError::Timeout) => {
                    tracing::warn!("upstream timed out");
                    error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "The tenant's upstream did not answer in time",
                        Some(&tenant_id),
                    )
                }
                Err(ProxyError::BadRequestBody) => error(
                    StatusCode::BAD_REQUEST,
                    "The request body is malformed or ended early",
                    Some(&tenant_id),
                ),
                Err(ProxyError::BodyTimedOut) => error(
                    StatusCode::REQUEST_TIMEOUT,
                    "The request body did not arrive in time",
                    Some(&tenant_id),
                ),
                Err(e @ ProxyError::Unreachable(_)) => {
                    tracing::warn!(error = %e, "upstream unreachable");
                    error(
                        StatusCode::BAD_GATEWAY,
                        "The tenant's upstream could not be reached",
                        Some(&tenant_id),
                    )
                }
            }
        }
        Destination::None => error(
            StatusCode::NOT_FOUND,
            &format!("Tenant '{}' has no route for this path", tenant.name),
            Some(&tenant_id),
        ),
    }
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

async fn config_api(gw: &Gateway, req: Request<Incoming>, served: &mut Served) -> Response<Body> {
    let uri = req.uri().clone();
    let path_id = path_tenant(uri.path());
    let dir = gw.runtime.shared().directory.load_full();
    let tenant = path_id.and_then(|p| dir.get(p)).cloned();
    served.tenant = tenant.clone();
    // Error bodies name the tenant by UUID when it is known, else as given.
    let tenant_id = tenant.as_ref().map(|t| t.id.to_string());
    let label = tenant_id.as_deref().or(path_id);
    let principal = if dir.auth.require_token {
        match authorize(gw, &dir, &req, tenant.as_deref(), label).await {
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
    if let Some(t) = &tenant {
        let rest = &uri.path()[CONFIG_API_PREFIX.len()..];
        let sub = rest.split_once('/').map_or("", |(_, s)| s);
        match (sub, req.method()) {
            ("history", &Method::GET) => {
                served.route = "history";
                return crate::api::history::list(gw, t, uri.query()).await;
            }
            ("config/rollback", &Method::POST) => {
                served.route = "config";
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
    }
    // The component needs no credentials.
    req.headers_mut().remove(http::header::AUTHORIZATION);
    let started = Instant::now();
    let key = tenant.as_ref().map(|t| t.name.key());
    let result = gw.runtime.serve_config_api(req, principal, key).await;
    let failed = matches!(&result, Err(e) if !matches!(e, CallError::Busy));
    gw.metrics
        .component_call(&CONFIG_API_LABEL, started.elapsed(), failed);
    if let Err(CallError::Plugin { component, .. }) = &result {
        gw.metrics
            .component_call(&Arc::from(component.as_str()), started.elapsed(), true);
    }
    match result {
        Ok(resp) => resp.map(full),
        Err(e) => component_failure(served.id, gw, e, "config-api", label),
    }
}
