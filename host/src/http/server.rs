//! Accepting connections and serving the router on them: the connection
//! limit (with headroom for health checks), the request id, the request every
//! log line of it names (`telemetry::request`: no span per request) and one
//! access-log line per request, the request metrics, and graceful shutdown
//! (in-flight requests finish).

use super::{Body, Gateway, Served, error, retry_after};
use crate::telemetry::Metrics;
use http::header::HeaderValue;
use http::{HeaderName, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// `x-request-id`: set on every response, and on every log line of the request.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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

/// Request ids: this instance's random id and the request's number on it,
/// `{instance:016x}-{n}`, so ids from instances behind one load balancer
/// never collide. A client's own `x-request-id` is replaced: ids are the
/// gateway's, unique, and safe to log.
struct Ids {
    /// The instance id in hex and the `-` after it, written once.
    prefix: [u8; 17],
    next: AtomicU64,
}

impl Ids {
    fn new(instance: u64) -> Self {
        let mut prefix = [b'-'; 17];
        let hex = format!("{instance:016x}");
        prefix[..16].copy_from_slice(hex.as_bytes());
        Self {
            prefix,
            next: AtomicU64::new(1),
        }
    }

    /// The next id. One allocation: the id is shared from the start (the
    /// request's header, its log scope and its answer hold it), where a
    /// copied one was allocated again, to be shared, at its first clone.
    fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut number = itoa::Buffer::new();
        let number = number.format(n).as_bytes();
        let mut id = Id {
            bytes: [0; 17 + 20],
            len: 17 + number.len(),
        };
        id.bytes[..17].copy_from_slice(&self.prefix);
        id.bytes[17..id.len].copy_from_slice(number);
        HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(id))
            .expect("hex digits and a number make a header value")
    }
}

/// A request id's bytes, owned by the shared buffer made of them.
struct Id {
    bytes: [u8; 17 + 20],
    len: usize,
}

impl AsRef<[u8]> for Id {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// What every request of every connection uses: one clone per request.
pub(crate) struct Requests {
    ids: Ids,
    metrics: Arc<Metrics>,
}

impl Requests {
    /// Ids from a random instance id, counted in `metrics`.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Requests {
            ids: Ids::new(argon2::password_hash::rand_core::RngCore::next_u64(
                &mut argon2::password_hash::rand_core::OsRng,
            )),
            metrics,
        })
    }
}

/// At the response, inside the request's log scope: the request metrics and
/// the access-log line (route, tenant, status, duration).
fn log_served<B>(metrics: &Metrics, served: &Served, resp: &Response<B>, latency: Duration) {
    let route = served.route.unwrap_or("other");
    let tenant = served.tenant.as_ref();
    let status = resp.status().as_u16();
    metrics.request(tenant.map(|t| t.name.shared()), route, status);
    let micros = latency.as_micros() as u64;
    let name = tenant.map(|t| t.name.as_str());
    let access = crate::telemetry::request::Access {
        route,
        tenant: name,
        status,
        micros,
    };
    if tracing::enabled!(tracing::Level::INFO)
        && crate::telemetry::request::access_line(module_path!(), &access)
    {
        return;
    }
    match name {
        Some(tenant) => tracing::info!(route, tenant, status, micros, "served"),
        None => tracing::info!(route, status, micros, "served"),
    }
}

pin_project_lite::pin_project! {
    /// A request's answer (what the server's `service_fn` returns).
    #[project = AnswerProj]
    enum Answer<F> {
        /// Past the connection limit: answered at once.
        Now { resp: Option<Response<Body>> },
        /// Being served ([`answer`]).
        Serving {
            #[pin]
            serving: F,
        },
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Response<Body>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AnswerProj::Now { resp } => Poll::Ready(Ok(resp
                .take()
                .expect("an answer is polled to its end once"))),
            AnswerProj::Serving { serving } => serving.poll(cx).map(Ok),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request being served ([`super::observed`]); inside its log scope
    /// once it is answered: the metrics, the access-log line and its
    /// `x-request-id` (unless the answer has one: an upstream's own).
    ///
    /// Hand-written, like every future between the connection and the
    /// surfaces: an `async` block awaiting a future it holds stores that
    /// future twice, and each such level doubled the request's future (64 KiB
    /// with four of them, copied at every request: 19 % of a proxied
    /// request's CPU in `memmove`).
    struct Finish<F> {
        #[pin]
        served: F,
        started: Instant,
        id: Option<HeaderValue>,
        requests: Arc<Requests>,
    }
}

impl<F> Future for Finish<F>
where
    F: Future<Output = (Result<Response<Body>, Infallible>, Served)>,
{
    type Output = Response<Body>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (resp, served) = std::task::ready!(this.served.poll(cx));
        let mut resp = match resp {
            Ok(resp) => resp,
            Err(never) => match never {},
        };
        log_served(
            &this.requests.metrics,
            &served,
            &resp,
            this.started.elapsed(),
        );
        if let Some(id) = this.id.take() {
            resp.headers_mut().entry(REQUEST_ID).or_insert(id);
        }
        Poll::Ready(resp)
    }
}

/// The serving of `req` from `peer` by `app`: its id given, in its log
/// scope, observed, logged and counted when answered.
pub(crate) fn answer<S: super::GatewayService, B>(
    app: &S,
    requests: &Arc<Requests>,
    peer: std::net::SocketAddr,
    mut req: Request<B>,
) -> impl Future<Output = Response<Body>> + use<S, B>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let started = Instant::now();
    let id = requests.ids.next();
    req.headers_mut().insert(REQUEST_ID, id.clone());
    let about = crate::telemetry::request::Request {
        id: id.clone(),
        method: req.method().clone(),
        uri: req.uri().clone(),
        peer,
    };
    let served = super::observed(app.clone().oneshot(req.map(Body::new)));
    crate::telemetry::request::scope(
        about,
        Finish {
            served,
            started,
            id: Some(id),
            requests: requests.clone(),
        },
    )
}

/// Serves `app` (the gateway's: [`super::dispatch`]) on connections from
/// `listener` until `shutdown` completes, then waits (at most 30 s) for
/// in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    app: impl super::GatewayService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let requests = Requests::new(gateway.metrics.clone());
    let graceful = GracefulShutdown::new();
    let workers = super::workers::Workers::start()?;
    let listening = gateway.http_listening.clone();
    let serving = listening.serving();
    let header_read = Duration::from_millis(gateway.limits.header_read_timeout_ms);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => {
                        listening.accepted();
                        a
                    }
                    Err(e) => {
                        listening.accept_failed();
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
                // Out of this runtime's reactor, into the worker's.
                let stream = match stream.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, "an accepted connection could not be handed over");
                        continue;
                    }
                };
                let app = app.clone();
                let requests = requests.clone();
                let watcher = graceful.watcher();
                workers.run(Box::new(move || {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        if health_only && !is_health(req.uri().path()) {
                            return Answer::Now {
                                resp: Some(at_connection_limit()),
                            };
                        }
                        Answer::Serving {
                            serving: answer(&app, &requests, peer, req),
                        }
                    });
                    Box::pin(async move {
                        let _guard = guard;
                        let stream = match tokio::net::TcpStream::from_std(stream) {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::debug!(error = %e, "a connection could not be served");
                                return;
                            }
                        };
                        let conn =
                            http1(header_read).serve_connection(TokioIo::new(stream), service);
                        if let Err(e) = watcher.watch(conn).await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    })
                }));
            }
            _ = &mut shutdown => break,
        }
    }
    gateway.drain();
    drop(serving);
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    let finished = tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_ok();
    if !finished {
        tracing::warn!("in-flight requests still running after 30 s; stopping anyway");
    }
    // Their connections have ended (unless given up on): the workers end
    // at once.
    tokio::task::spawn_blocking(move || workers.stop(finished))
        .await
        .map_err(std::io::Error::other)?;
    Ok(())
}

/// The connection counts `/metrics` shows.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    pub(super) open: prometheus_client::metrics::gauge::Gauge,
    pub(super) refused: prometheus_client::metrics::counter::Counter,
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

/// Serves the admin listener (`TenantGateway.AdminListen`) with `router`
/// (its paths: `/metrics`, `/healthz`, `/readyz`), without credentials (it is
/// meant for a private address); `header_read`: `Limits.HeaderReadTimeoutMs`.
/// Runs until aborted.
pub async fn serve_admin(listener: TcpListener, router: axum::Router, header_read: Duration) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |req: Request<Incoming>| router.clone().oneshot(req));
        let conn = http1(header_read).serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

/// The HTTP/1.1 connection settings of both listeners: a request's head
/// must arrive within `header_read` (`Limits.HeaderReadTimeoutMs`), timed on
/// the connection workers by [`super::deadlines`].
fn http1(header_read: Duration) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(super::deadlines::Timer)
        .header_read_timeout(header_read);
    builder
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_the_instance_in_hex_and_a_count() {
        let ids = Ids::new(0x00ab_cdef_0123_4567);
        assert_eq!(ids.next(), "00abcdef01234567-1");
        assert_eq!(ids.next(), "00abcdef01234567-2");
        ids.next.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(ids.next(), "00abcdef01234567-18446744073709551615");
        assert_eq!(Ids::new(u64::MAX).next(), "ffffffffffffffff-1");
        // Clones share the bytes.
        let id = ids.next();
        assert_eq!(id.clone().as_bytes().as_ptr(), id.as_bytes().as_ptr());
    }
}
