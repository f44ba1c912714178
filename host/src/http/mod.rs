//! The HTTP layer every surface stands on: the server (`server`), the gateway's
//! state the handlers share ([`Gateway`]), the one trait by which a surface
//! words its errors ([`Surface`]) and the router pieces built on it
//! (`routes`: [`Routes`], [`mount`], [`dispatch`]), the request checks every
//! surface makes (`access`), bounded request bodies (`body`) and the error
//! answers (`answer`). It names no surface: `api` and `traffic` export their
//! routes and `app` mounts them.

mod access;
mod answer;
pub mod body;
pub(crate) mod config_reads;
pub(crate) mod deadlines;
pub mod json;
pub mod listening;
mod routes;
mod server;
pub(crate) mod turns;
pub(crate) mod workers;

pub(crate) use access::{authenticate, authorize, client_addr, refusal_reason, require_super_user};
pub(crate) use answer::{
    ErrorBody, Problem, ValidationProblem, component_failure, error, error_details, json,
    json_body, problem, refused, retry_after, unresolved, validation_failed,
};
pub(crate) use body::{BodyError, read_body, read_limited, read_limited_to};
pub use routes::{GatewayService, Routes, dispatch};
pub(crate) use routes::{Param, SuperUser, Surface, methods, mount};
pub use server::{ConnectionMetrics, REQUEST_ID, serve, serve_admin};
#[cfg(test)]
pub(crate) use server::{Requests, answer};

use crate::config::Limits;
use crate::security::auth::Authenticator;
use crate::security::rate::RateLimiter;
use crate::telemetry::Metrics;
use crate::tenancy::Tenant;
use crate::wasm::Runtime;
use bytes::Bytes;
use http::Response;
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
    /// Config GET answers kept for the next GET of the same state.
    pub(crate) config_reads: config_reads::ConfigReads,
    /// Config writes, one at a time per tenant.
    pub(crate) config_writes: turns::WriteTurns,
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
    /// Whether the HTTP listener takes connections (`/readyz`).
    pub(crate) http_listening: Arc<listening::Listening>,
    /// Whether the AMQP listener, if any, takes connections (`/readyz`).
    pub(crate) amqp_listening: Arc<listening::Listening>,
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
        let config_reads = config_reads::ConfigReads::new(runtime.shared().store.clone());
        Self {
            runtime,
            limits: limits.clone(),
            auth,
            rate: RateLimiter::default(),
            config_reads,
            config_writes: Default::default(),
            metrics,
            registry,
            draining: AtomicBool::new(false),
            connection_metrics,
            exposition,
            admin_listener,
            registrations: RateLimiter::default(),
            http_listening: Arc::default(),
            amqp_listening: Arc::default(),
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

    /// Marks the server shutting down: `/readyz` says so from now on.
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
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
    pub(super) fn route_unless_noted(route: &'static str) {
        let _ = SERVED.try_with(|scope| {
            scope.borrow_mut().route.get_or_insert(route);
        });
    }
}

/// Runs `request` (the serving of one request) in a scope of its own, and
/// returns its output with what it noted. A hand-written future, not an
/// `async fn`: an async function or block that awaits a future it was given
/// stores that future twice, and the request's future is the largest there is
/// (every surface's, the proxy's included).
pub(crate) fn observed<F: std::future::Future>(
    request: F,
) -> tokio::task::futures::TaskLocalFuture<std::cell::RefCell<Served>, Observed<F>> {
    SERVED.scope(std::cell::RefCell::default(), Observed { request })
}

pin_project_lite::pin_project! {
    /// The serving of a request, its output with what it noted ([`observed`]).
    pub(crate) struct Observed<F> {
        #[pin]
        request: F,
    }
}

impl<F: std::future::Future> std::future::Future for Observed<F> {
    type Output = (F::Output, Served);

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let out = std::task::ready!(self.project().request.poll(cx));
        std::task::Poll::Ready((out, SERVED.with(|scope| scope.take())))
    }
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
