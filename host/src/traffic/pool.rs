//! Kept-alive HTTP/1.1 connections to upstreams, one pool per upstream
//! authority, over hyper's connection API.
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

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderValue, Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
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
    Exchange(hyper::Error),
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
pub struct Pools<B> {
    inner: Arc<Inner<B>>,
}

struct Inner<B> {
    by_authority: ArcSwap<HashMap<Authority, Arc<Upstream<B>>>>,
    /// Serialises changing the map (readers never wait for it).
    changing: Mutex<()>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// One upstream's idle connections and its `Host` value.
pub struct Upstream<B> {
    authority: Authority,
    host: HeaderValue,
    idle: Mutex<Vec<Idle<B>>>,
    max_idle: usize,
    /// Sweeps so far (each half `idle_timeout` apart).
    sweeps: AtomicU64,
}

/// A connection's sender, and the worker whose thread drives the connection
/// (`crate::connection_worker`).
type Driven<B> = (SendRequest<B>, usize);

struct Idle<B> {
    sender: SendRequest<B>,
    /// The sweep count when it was put back.
    since: u64,
    /// The worker whose thread drives the connection (`crate::connection_worker`).
    home: usize,
}

impl<B> Pools<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Pools keeping at most `max_idle` connections per upstream, each for
    /// at most `idle_timeout` unused.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                by_authority: ArcSwap::from_pointee(HashMap::new()),
                changing: Mutex::new(()),
                max_idle,
                idle_timeout,
            }),
        }
    }

    /// The pool of `authority`, made on first use (and swept while it lives).
    pub fn upstream(&self, authority: &Authority) -> Arc<Upstream<B>> {
        let inner = &self.inner;
        if let Some(up) = inner.by_authority.load().get(authority) {
            return up.clone();
        }
        let mut made = false;
        let up = inner.change(|map| {
            map.entry(authority.clone())
                .or_insert_with(|| {
                    made = true;
                    Arc::new(Upstream {
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

impl<B> Inner<B> {
    /// Publishes `f`'s change of a copy of the map (readers go on with the
    /// one they loaded), one change at a time.
    fn change<R>(&self, f: impl FnOnce(&mut HashMap<Authority, Arc<Upstream<B>>>) -> R) -> R {
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
fn sweep<B: Send + 'static>(pools: Weak<Inner<B>>, authority: Authority) {
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
            let (expired, empty) = {
                let mut idle = up.idle();
                up.sweeps.fetch_add(1, Ordering::Relaxed);
                let (keep, expired): (Vec<_>, Vec<_>) = idle
                    .drain(..)
                    .partition(|i| !up.expired_since(i.since) && !i.sender.is_closed());
                *idle = keep;
                (expired, idle.is_empty())
            };
            // Closed outside the lock.
            drop(expired);
            // The map's reference and this one: no one else uses the pool.
            if empty && Arc::strong_count(&up) == 2 {
                pools.change(|map| map.remove(&authority));
                return;
            }
        }
    });
}

impl<B> Upstream<B> {
    /// Whether a connection put back at sweep `since` has been idle for two
    /// sweeps (at least half `idle_timeout`, at most all of it).
    fn expired_since(&self, since: u64) -> bool {
        self.sweeps.load(Ordering::Relaxed) >= since + 2
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle<B>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `sender` (driven by worker `home`) for the next request, if
    /// there is room.
    fn put_back(&self, sender: SendRequest<B>, home: usize) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: self.sweeps.load(Ordering::Relaxed),
                home,
            });
        }
    }

    /// The idle connection to use next: the most recently used of those
    /// this thread's worker drives, else the most recently used.
    fn take_idle(&self) -> Option<Idle<B>> {
        let here = crate::connection_worker();
        let mut idle = self.idle();
        let at = idle
            .iter()
            .rposition(|i| i.home == here)
            .or(idle.len().checked_sub(1))?;
        Some(idle.remove(at))
    }
}

impl<B> Upstream<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Sends `req` (its target in origin form; its `Host` is set here) on a
    /// kept-alive connection, or a new one; a request that a reused
    /// connection closed before taking is sent once more on a new one.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<B>,
    ) -> Result<Response<PooledBody<B>>, SendError> {
        req.headers_mut()
            .insert(http::header::HOST, self.host.clone());
        let (mut sender, mut home, reused) = match self.checkout().await {
            Some((s, home)) => (s, home, true),
            None => {
                let (s, home) = self.connect().await?;
                (s, home, false)
            }
        };
        let resp = match sender.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => match e.take_message() {
                Some(req) if reused => {
                    (sender, home) = self.connect().await?;
                    sender
                        .send_request(req)
                        .await
                        .map_err(SendError::Exchange)?
                }
                _ => return Err(SendError::Exchange(e.into_error())),
            },
        };
        let (parts, body) = resp.into_parts();
        let mut body = PooledBody {
            inner: body,
            back: Some((self.clone(), sender, home)),
        };
        if body.inner.is_end_stream() {
            body.release();
        }
        Ok(Response::from_parts(parts, body))
    }

    /// An idle connection ready for a request ([`Upstream::take_idle`]),
    /// and the worker driving it.
    async fn checkout(&self) -> Option<Driven<B>> {
        loop {
            let Idle {
                mut sender,
                since,
                home,
            } = self.take_idle()?;
            if sender.is_closed() || self.expired_since(since) {
                continue;
            }
            // Ready at once unless its connection has not yet seen the end
            // of the last exchange.
            if sender.ready().await.is_ok() {
                return Some((sender, home));
            }
        }
    }

    /// A new connection (each address of the name in turn), served by a
    /// task of its own until it closes. Boxed: connecting is rare, and its
    /// future (name lookup, connect, handshake) would otherwise make every
    /// request's future larger.
    /// Its task runs on this thread's worker, which drives it from then on.
    fn connect(&self) -> Pin<Box<impl Future<Output = Result<Driven<B>, SendError>> + '_>> {
        Box::pin(async {
            let sender = self.connect_unboxed().await?;
            Ok((sender, crate::connection_worker()))
        })
    }

    /// [`Upstream::connect`], unboxed.
    async fn connect_unboxed(&self) -> Result<SendRequest<B>, SendError> {
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
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .map_err(SendError::Exchange)?;
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "upstream connection ended with an error");
                        }
                    });
                    return Ok(sender);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(SendError::Connect(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address")
        })))
    }
}

/// An upstream's response body: when it has been read to its end, its
/// connection goes back to the pool; dropped before, the connection closes.
pub struct PooledBody<B> {
    inner: Incoming,
    /// Its pool, its connection and the worker driving it.
    back: Option<(Arc<Upstream<B>>, SendRequest<B>, usize)>,
}

impl<B> PooledBody<B> {
    /// Hands the connection back to its pool.
    fn release(&mut self) {
        if let Some((up, sender, home)) = self.back.take() {
            up.put_back(sender, home);
        }
    }
}

impl<B> Body for PooledBody<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
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

impl<B> Drop for PooledBody<B> {
    fn drop(&mut self) {
        // Read to its end (a server that stops polling once the length is
        // reached): the connection is reusable. Otherwise the connection
        // still carries the rest of this body and closes with the sender.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}
