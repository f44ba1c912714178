//! Kept-alive HTTP/1.1 connections to upstreams, one pool per upstream
//! authority; each exchange spoken by the request's own task (`h1`).
//!
//! Written here rather than using `hyper_util`'s pooled client because the
//! proxy path paid for what it does not need (`perf` of the proxy benchmark):
//! that client formats a `Host` value and rewrites the target into origin
//! form for every request, hashes a cloned pool key at every checkout, and
//! spawns a task for every response to wait for the connection to become
//! idle again. Here an upstream's `Host` is made once, the caller gives the
//! origin-form target, and a connection goes back to its pool when the
//! response body ends (its [`PooledBody`] ends or is dropped at the end).
//!
//! Bounded: at most `max_idle` idle connections per upstream, each closed
//! once unused for between half of `idle_timeout` and all of it; connections
//! in use are as many as requests in flight. Idle time is counted in sweeps,
//! not read from the clock: a sweep every half `idle_timeout` advances the
//! pool's count and closes what two sweeps have seen idle (and drops a pool
//! nothing uses any more), and a checkout skips such a connection too. So a
//! request costs no clock read here (two per request before: 0.3 % of the
//! proxy benchmark's samples).

use super::h1::{self, AnswerBody, Conn};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderValue, Method, Request, Response};
use hyper::body::{Body, Frame, SizeHint};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

/// Why no answer came from an upstream.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made.
    Connect(std::io::Error),
    /// The exchange failed (the request body's failure included).
    Exchange(h1::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::Exchange(e) => write!(f, "{e}"),
        }
    }
}

/// The pools of every upstream, found by authority.
pub struct Pools {
    inner: Arc<Inner>,
}

/// The pools by upstream authority. Hashed with `FxHash`: the keys come from
/// the settings, not from clients, and the default SipHash took an
/// authority byte by byte (0.6 % of a proxied request's CPU).
type ByAuthority = HashMap<Authority, Arc<Upstream>, rustc_hash::FxBuildHasher>;

struct Inner {
    by_authority: ArcSwap<ByAuthority>,
    /// Serialises changing the map (readers never wait for it).
    changing: Mutex<()>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// One upstream's idle connections and its `Host` value.
pub struct Upstream {
    authority: Authority,
    host: HeaderValue,
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    /// Sweeps so far (each half `idle_timeout` apart).
    sweeps: AtomicU64,
    /// Woken when an idle connection has something to read ([`Watch`]).
    watch: Arc<Watch>,
}

/// The waker an idle connection's reactor wakes when something arrives on
/// it: nearly always the upstream's close (an upstream says nothing between
/// exchanges). It closes the pool's idle connections that are done then, as
/// they are let go of, not at the next sweep or checkout.
struct Watch(Weak<Upstream>);

impl std::task::Wake for Watch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(up) = self.0.upgrade() {
            up.close_idle(false);
        }
    }
}

/// A connection, and the worker whose reactor watches it
/// (`crate::connection_worker`).
type Homed = (Conn, usize);

struct Idle {
    conn: Conn,
    /// The sweep count when it was put back.
    since: u64,
    /// The worker whose reactor watches the connection (`crate::connection_worker`).
    home: usize,
}

impl Pools {
    /// Pools keeping at most `max_idle` connections per upstream, each for
    /// at most `idle_timeout` unused.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                by_authority: ArcSwap::from_pointee(ByAuthority::default()),
                changing: Mutex::new(()),
                max_idle,
                idle_timeout,
            }),
        }
    }

    /// The pool of `authority`, made on first use (and swept while it lives).
    pub fn upstream(&self, authority: &Authority) -> Arc<Upstream> {
        let inner = &self.inner;
        if let Some(up) = inner.by_authority.load().get(authority) {
            return up.clone();
        }
        let mut made = false;
        let up = inner.change(|map| {
            map.entry(authority.clone())
                .or_insert_with(|| {
                    made = true;
                    Arc::new_cyclic(|me| Upstream {
                        watch: Arc::new(Watch(me.clone())),
                        authority: authority.clone(),
                        // An authority is a valid header value by construction.
                        host: HeaderValue::from_str(authority.as_str())
                            .unwrap_or_else(|_| HeaderValue::from_static("")),
                        idle: Mutex::new(Vec::new()),
                        max_idle: inner.max_idle,
                        sweeps: AtomicU64::new(0),
                    })
                })
                .clone()
        });
        if made {
            sweep(Arc::downgrade(inner), authority.clone());
        }
        up
    }
}

impl Inner {
    /// Publishes `f`'s change of a copy of the map (readers go on with the
    /// one they loaded), one change at a time.
    fn change<R>(&self, f: impl FnOnce(&mut ByAuthority) -> R) -> R {
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::clone(&self.by_authority.load());
        let out = f(&mut next);
        self.by_authority.store(Arc::new(next));
        out
    }
}

/// Every half `idle_timeout`, counts a sweep of `authority`'s pool and
/// closes its connections left unused since before the last one; and once the pool is empty and unused (no request or
/// answer holds it), removes it, so upstreams no tenant names any more leave
/// nothing behind.
fn sweep(pools: Weak<Inner>, authority: Authority) {
    tokio::spawn(async move {
        loop {
            let every = match pools.upgrade() {
                Some(p) => p.idle_timeout / 2,
                None => return,
            };
            tokio::time::sleep(every).await;
            let Some(pools) = pools.upgrade() else { return };
            let Some(up) = pools.by_authority.load().get(&authority).cloned() else {
                return;
            };
            let empty = up.close_idle(true);
            // The map's reference and this one: no one else uses the pool.
            if empty && Arc::strong_count(&up) == 2 {
                pools.change(|map| map.remove(&authority));
                return;
            }
        }
    });
}

impl Upstream {
    /// Whether a connection put back at sweep `since` has been idle for two
    /// sweeps (at least half `idle_timeout`, at most all of it).
    fn expired_since(&self, since: u64) -> bool {
        self.sweeps.load(Ordering::Relaxed) >= since + 2
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the idle connections that are done (and, at a sweep, those
    /// unused for two sweeps, counting this one); whether none is left.
    fn close_idle(&self, sweep: bool) -> bool {
        let (done, empty) = {
            let mut idle = self.idle();
            if sweep {
                self.sweeps.fetch_add(1, Ordering::Relaxed);
            }
            let (keep, done): (Vec<_>, Vec<_>) = idle
                .drain(..)
                .partition(|i| i.conn.is_usable() && !(sweep && self.expired_since(i.since)));
            *idle = keep;
            (done, idle.is_empty())
        };
        // Closed outside the lock.
        drop(done);
        empty
    }

    /// Keeps `conn` (watched by worker `home`'s reactor) for the next
    /// request, if there is room.
    fn put_back(&self, conn: Conn, home: usize) {
        if !conn.watch(&self.watch) {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < self.max_idle {
            idle.push(Idle {
                conn,
                since: self.sweeps.load(Ordering::Relaxed),
                home,
            });
        }
    }

    /// The idle connection to use next: the most recently used of those
    /// this thread's worker drives, else the most recently used.
    fn take_idle(&self) -> Option<Idle> {
        let here = crate::connection_worker();
        let mut idle = self.idle();
        let at = idle
            .iter()
            .rposition(|i| i.home == here)
            .or(idle.len().checked_sub(1))?;
        Some(idle.remove(at))
    }

    /// Sends `req` (its target in origin form; its `Host` is set here) on a
    /// kept-alive connection, or a new one. A request without a body whose
    /// method is idempotent, that a reused connection broke before any of an
    /// answer came (an upstream letting go of an idle connection just then),
    /// is sent once more on a new one.
    pub async fn send<B>(
        self: &Arc<Self>,
        req: Request<B>,
    ) -> Result<Response<PooledBody>, SendError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut parts, mut body) = req.into_parts();
        parts.headers.insert(http::header::HOST, self.host.clone());
        let (conn, mut home, reused) = match self.checkout() {
            Some((c, home)) => (c, home, true),
            None => {
                let (c, home) = self.connect().await?;
                (c, home, false)
            }
        };
        let again = reused && body.is_end_stream() && idempotent(&parts.method);
        let answer = match h1::exchange(conn, &parts, &mut body).await {
            Ok(answer) => answer,
            Err(e) if again && e.unanswered() => {
                let conn;
                (conn, home) = self.connect().await?;
                h1::exchange(conn, &parts, &mut body)
                    .await
                    .map_err(SendError::Exchange)?
            }
            Err(e) => return Err(SendError::Exchange(e)),
        };
        let mut body = PooledBody {
            inner: answer.body,
            back: Some((self.clone(), home)),
        };
        if body.inner.is_end_stream() {
            body.release();
        }
        Ok(Response::from_parts(answer.head, body))
    }

    /// An idle connection fit for a request ([`Upstream::take_idle`]), and
    /// the worker whose reactor watches it.
    fn checkout(&self) -> Option<Homed> {
        loop {
            let Idle { conn, since, home } = self.take_idle()?;
            if conn.is_usable() && !self.expired_since(since) {
                return Some((conn, home));
            }
        }
    }

    /// A new connection (each address of the name in turn). Boxed:
    /// connecting is rare, and its future (name lookup, connect) would
    /// otherwise make every request's future larger. It is watched by this
    /// thread's worker's reactor.
    fn connect(&self) -> Pin<Box<impl Future<Output = Result<Homed, SendError>> + '_>> {
        Box::pin(async {
            let conn = self.connect_unboxed().await?;
            Ok((conn, crate::connection_worker()))
        })
    }

    /// [`Upstream::connect`], unboxed.
    async fn connect_unboxed(&self) -> Result<Conn, SendError> {
        let host = self.authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = self.authority.port_u16().unwrap_or(80);
        let mut last = None;
        for addr in tokio::net::lookup_host((host, port))
            .await
            .map_err(SendError::Connect)?
        {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Conn::new(stream));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(SendError::Connect(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address")
        })))
    }
}

/// Whether a request with `method` may be sent twice (RFC 9110 §9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// An upstream's response body: when it has been read to its end, its
/// connection goes back to the pool; dropped before, the connection closes.
pub struct PooledBody {
    inner: AnswerBody,
    /// Its pool, and the worker whose reactor watches its connection.
    back: Option<(Arc<Upstream>, usize)>,
}

impl PooledBody {
    /// Hands the connection back to its pool (if it can carry another
    /// exchange).
    fn release(&mut self) {
        if let Some((up, home)) = self.back.take()
            && let Some(conn) = self.inner.take_kept()
        {
            up.put_back(conn, home);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Read to its end (a server that stops polling once the length is
        // reached): the connection is reusable. Otherwise it still carries
        // the rest of this body and closes with it.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}
