//! The HTTP layer every surface stands on: the server (`server`), the gateway's
//! state the handlers share ([`Gateway`]), the one trait by which a surface
//! words its errors ([`Surface`]) and the router pieces built on it, the
//! request checks every surface makes (`access`), bounded request bodies
//! (`body`) and the error answers (`answer`). It names no surface: `api` and
//! `traffic` export their routes and `app` mounts them.

mod access;
mod answer;
pub mod body;
pub mod json;
mod server;

pub(crate) use access::{
    ClientAddr, Head, authenticate, authorize, client_addr, refusal_reason, require_super_user,
};
pub(crate) use answer::{
    component_failure, error, error_details, json, json_value, problem, refused, retry_after,
};
pub(crate) use body::{BodyError, read_body, read_limited, read_limited_to};
pub use server::{ConnectionMetrics, REQUEST_ID, serve, serve_admin};

use crate::config::Limits;
use crate::security::auth::Authenticator;
use crate::security::rate::RateLimiter;
use crate::telemetry::Metrics;
use crate::tenancy::Tenant;
use crate::wasm::Runtime;
use axum::extract::{FromRequestParts, Path};
use axum::routing::MethodRouter;
use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Request and response body: buffered for the gateway's own answers,
/// streamed when proxied.
pub type Body = axum::body::Body;

/// The router every surface adds its routes to; its state is the gateway.
pub type Router = axum::Router<Arc<Gateway>>;

/// A buffered body.
pub(crate) fn full(bytes: Bytes) -> Body {
    Body::from(bytes)
}

/// The state every handler shares.
pub struct Gateway {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) limits: Limits,
    pub(crate) auth: Arc<Authenticator>,
    /// The config API's quotas.
    pub(crate) rate: RateLimiter,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) registry: Arc<crate::registry::Registry>,
    draining: AtomicBool,
    /// The connection counts.
    connection_metrics: ConnectionMetrics,
    /// Every layer's metrics, for `/metrics`.
    pub(crate) exposition: Arc<crate::telemetry::Registry>,
    /// Whether `/metrics` is served on the admin listener (and not here).
    pub(crate) admin_listener: bool,
    /// Open registrations per client address.
    pub(crate) registrations: RateLimiter<std::net::IpAddr>,
}

impl Gateway {
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
            auth,
            rate: RateLimiter::default(),
            metrics,
            registry,
            draining: AtomicBool::new(false),
            connection_metrics,
            exposition,
            admin_listener,
            registrations: RateLimiter::default(),
        }
    }

    /// How long a request body may take.
    pub(crate) fn body_timeouts(&self) -> body::BodyTimeouts {
        body::BodyTimeouts {
            idle: Duration::from_millis(self.limits.body_idle_timeout_ms),
            total: Duration::from_millis(self.limits.body_timeout_ms),
        }
    }

    /// Whether the server is shutting down (in-flight requests finishing).
    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// What the access log and the metrics learn about a request as it is
/// served: which route served it and for which tenant. Handlers note it
/// ([`Served::onto`], [`served`]) in the request's scope, which the server
/// opens around each request ([`observed`]) and reads when it answers: a
/// task-local, where a response extension would cost three allocations per
/// request (the extension map, its table, the boxed value).
#[derive(Debug, Clone, Default)]
pub(crate) struct Served {
    pub(crate) route: Option<&'static str>,
    pub(crate) tenant: Option<Arc<Tenant>>,
}

tokio::task_local! {
    static SERVED: std::cell::RefCell<Served>;
}

impl Served {
    /// Notes what was learnt (a route already noted stays) and passes `resp` on.
    pub(crate) fn onto(self, resp: Response<Body>) -> Response<Body> {
        let _ = SERVED.try_with(|scope| {
            let mut scope = scope.borrow_mut();
            if scope.route.is_none() {
                scope.route = self.route;
            }
            if self.tenant.is_some() {
                scope.tenant = self.tenant;
            }
        });
        resp
    }

    /// Notes `route` unless a route was noted already.
    fn route_unless_noted(route: &'static str) {
        let _ = SERVED.try_with(|scope| {
            scope.borrow_mut().route.get_or_insert(route);
        });
    }

    /// What the current request's scope has noted so far (nothing outside one).
    pub(crate) fn noted() -> Served {
        SERVED
            .try_with(|scope| scope.borrow().clone())
            .unwrap_or_default()
    }
}

/// Runs `request` (the serving of one request) in a scope of its own, and
/// returns its output with what it noted.
pub(crate) async fn observed<F: std::future::Future>(request: F) -> (F::Output, Served) {
    SERVED
        .scope(std::cell::RefCell::default(), async move {
            let out = request.await;
            (out, SERVED.with(|scope| scope.take()))
        })
        .await
}

/// The id the server gave a request (named by answers that report a failure).
pub(crate) fn request_id<B>(req: &http::Request<B>) -> Option<tower_http::request_id::RequestId> {
    req.extensions()
        .get::<tower_http::request_id::RequestId>()
        .cloned()
}

/// The answer of a route labelled `route`, for a tenant if known.
pub(crate) fn served(
    resp: Response<Body>,
    route: &'static str,
    tenant: Option<Arc<Tenant>>,
) -> Response<Body> {
    Served {
        route: Some(route),
        tenant,
    }
    .onto(resp)
}

/// An external surface: the label of its requests in metrics and logs, and
/// how it words an error (each surface in its own format). The router's own
/// answers under a surface's paths — no such path, method not allowed, a bad
/// path parameter — are worded by it.
pub(crate) trait Surface: Send + Sync + 'static {
    /// The route label of its requests.
    const ROUTE: &'static str;

    /// An error answer in the surface's format; `parts` is the request's
    /// (a surface may pick its format from `Accept`).
    fn error(parts: &Parts, status: StatusCode, message: &str) -> Response<Body>;
}

/// The path as the client sent it (a surface's routes see theirs without
/// the surface's prefix); for error messages only.
fn original_path(parts: &Parts) -> String {
    match parts.extensions.get::<axum::extract::NestedPath>() {
        Some(prefix) => format!("{}{}", prefix.as_str(), parts.uri.path()),
        None => parts.uri.path().to_owned(),
    }
}

/// A surface's 404 for a path under it that names nothing.
async fn not_found<S: Surface>(req: axum::extract::Request) -> Response<Body> {
    let (parts, _) = req.into_parts();
    let message = format!("Nothing at '{}'", original_path(&parts));
    S::error(&parts, StatusCode::NOT_FOUND, &message)
}

/// A surface's 405 (the router adds `Allow`).
async fn not_allowed<S: Surface>(req: axum::extract::Request) -> Response<Body> {
    let (parts, _) = req.into_parts();
    let message = format!(
        "Method {} is not allowed on '{}' (see Allow)",
        parts.method,
        original_path(&parts)
    );
    S::error(&parts, StatusCode::METHOD_NOT_ALLOWED, &message)
}

/// `methods`, answering other methods with the surface's 405 and `Allow`.
pub(crate) fn methods<S: Surface>(
    methods: MethodRouter<Arc<Gateway>>,
) -> MethodRouter<Arc<Gateway>> {
    methods.fallback(not_allowed::<S>)
}

/// Mounts a surface's `routes` (paths relative to `prefix`, `/` being
/// `prefix` itself), each also with a trailing `/`. A path under `prefix` that
/// is not routed gets the surface's 404, and every answer is labelled with its
/// route (unless its handler noted one).
pub(crate) fn mount<S: Surface>(
    prefix: &str,
    routes: impl IntoIterator<Item = (&'static str, MethodRouter<Arc<Gateway>>)>,
) -> Router {
    let mut under = Router::new();
    let mut outer = Router::new();
    for (path, methods) in routes {
        if path == "/" {
            outer = outer.route(&format!("{prefix}/"), methods.clone());
        } else {
            under = under.route(&format!("{path}/"), methods.clone());
        }
        under = under.route(path, methods);
    }
    outer
        .nest(prefix, under.fallback(not_found::<S>))
        .layer(tower::util::MapResponseLayer::new(
            |resp: axum::response::Response| {
                Served::route_unless_noted(S::ROUTE);
                resp
            },
        ))
}

/// A path parameter, percent-decoded; one that does not decode to UTF-8 is
/// the surface's 400.
pub(crate) struct Param<S>(pub(crate) String, pub(crate) PhantomData<S>);

impl<S: Surface, State: Send + Sync> FromRequestParts<State> for Param<S> {
    type Rejection = Response<Body>;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Param(value, PhantomData)),
            Err(_) => Err(S::error(
                parts,
                StatusCode::BAD_REQUEST,
                "The path does not decode to UTF-8 text",
            )),
        }
    }
}

/// The super-user's credentials on the request, checked before the handler
/// runs; a refusal is the surface's error (with the Basic challenge of a 401,
/// the `Retry-After` of a 429 or 503).
pub(crate) struct SuperUser<S>(PhantomData<S>);

impl<S: Surface> FromRequestParts<Arc<Gateway>> for SuperUser<S> {
    type Rejection = Response<Body>;

    async fn from_request_parts(
        parts: &mut Parts,
        gw: &Arc<Gateway>,
    ) -> Result<Self, Self::Rejection> {
        let head = Head {
            headers: &parts.headers,
            extensions: &parts.extensions,
        };
        match require_super_user(gw, head).await {
            Ok(()) => Ok(SuperUser(PhantomData)),
            Err(denied) => Err(denied.challenge(S::error(parts, denied.status, denied.message))),
        }
    }
}
