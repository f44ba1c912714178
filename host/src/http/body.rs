//! Request bodies under a deadline: a client that starts a body and stops
//! (or trickles it) is cut off after `Limits.BodyIdleTimeoutMs` without a byte
//! or `Limits.BodyTimeoutMs` in all, whoever reads the body (the buffered
//! readers and the streaming proxy alike). The timer is made only when the
//! body is not already there, so a request whose body came with its headers
//! costs nothing.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The body took too long: no data for the idle time, or longer than the
/// total time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// How long a body may take.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeouts {
    /// Longest wait for the next chunk.
    pub idle: Duration,
    /// Longest time for the whole body, from its request's headers.
    pub total: Duration,
}

/// `inner` with [`BodyTimeouts`].
pub struct Timed<B> {
    inner: B,
    timeouts: BodyTimeouts,
    started: Instant,
    /// Made at the first wait.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> Timed<B> {
    /// Starts the clock now.
    pub fn new(inner: B, timeouts: BodyTimeouts) -> Self {
        Self {
            inner,
            timeouts,
            started: Instant::now(),
            timer: None,
        }
    }

    fn deadline(&self) -> Instant {
        (Instant::now() + self.timeouts.idle).min(self.started + self.timeouts.total)
    }
}

impl<B> Body for Timed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                // Progress: the idle wait starts again.
                let deadline = self.deadline();
                if let Some(timer) = self.timer.as_mut() {
                    timer.as_mut().reset(deadline);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = self.deadline();
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body error is the deadline's.
pub fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    e.is::<BodyTimedOut>()
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
    pub(crate) fn status(&self) -> http::StatusCode {
        match self {
            BodyError::TooLarge(_) => http::StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Unreadable => http::StatusCode::BAD_REQUEST,
            BodyError::TimedOut => http::StatusCode::REQUEST_TIMEOUT,
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

/// Reads a whole request body up to `Limits.MaxBodyBytes` (GET and HEAD: none).
pub(crate) async fn read_limited(
    gw: &super::Gateway,
    req: http::Request<super::Body>,
) -> Result<http::Request<Bytes>, BodyError> {
    read_limited_to(gw, req, gw.limits.max_body_bytes).await
}

/// Reads a whole request body of at most `max` bytes (GET and HEAD: none),
/// under the body timeouts.
pub(crate) async fn read_limited_to(
    gw: &super::Gateway,
    req: http::Request<super::Body>,
    max: usize,
) -> Result<http::Request<Bytes>, BodyError> {
    use http_body_util::BodyExt;
    let too_large = || {
        gw.metrics.reject(crate::telemetry::Rejection::BodyTooLarge);
        BodyError::TooLarge(max)
    };
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let body = if parts.method == http::Method::GET || parts.method == http::Method::HEAD {
        Bytes::new()
    } else {
        match http_body_util::Limited::new(Timed::new(body, gw.body_timeouts()), max)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) if timed_out(e.as_ref()) => {
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
    Ok(http::Request::from_parts(parts, body))
}

/// [`read_limited`] answering failures in the config API's error format.
#[allow(clippy::result_large_err)]
pub(crate) async fn read_body(
    gw: &super::Gateway,
    req: http::Request<super::Body>,
    tenant: Option<&str>,
) -> Result<http::Request<Bytes>, http::Response<super::Body>> {
    read_limited(gw, req)
        .await
        .map_err(|e| super::error(e.status(), &e.to_string(), tenant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use http_body_util::channel::Channel;

    fn timeouts(idle_ms: u64, total_ms: u64) -> BodyTimeouts {
        BodyTimeouts {
            idle: Duration::from_millis(idle_ms),
            total: Duration::from_millis(total_ms),
        }
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let (mut tx, inner) = Channel::<Bytes>::new(4);
        tx.send_data(Bytes::from_static(b"ab")).await.unwrap();
        let t = timeouts(50, 60_000);
        let started = Instant::now();
        let e = Timed::new(inner, t).collect().await.unwrap_err();
        assert!(timed_out(e.as_ref()), "{e}");
        assert!(started.elapsed() >= t.idle);
        drop(tx);
    }

    /// Data every 10 ms never lets the idle time (1 s) pass, so only the
    /// total time (300 ms) can end it.
    #[tokio::test]
    async fn a_trickling_body_times_out_in_total() {
        let (mut tx, inner) = Channel::<Bytes>::new(1);
        tokio::spawn(async move {
            while tx.send_data(Bytes::from_static(b"a")).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let t = timeouts(60_000, 300);
        let started = Instant::now();
        let e = Timed::new(inner, t).collect().await.unwrap_err();
        assert!(timed_out(e.as_ref()), "{e}");
        assert!(started.elapsed() >= t.total);
    }

    #[tokio::test]
    async fn a_body_in_time_is_whole_and_other_errors_stay_theirs() {
        let (mut tx, inner) = Channel::<Bytes>::new(1);
        tokio::spawn(async move {
            for _ in 0..5 {
                tx.send_data(Bytes::from_static(b"ab")).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let got = Timed::new(inner, timeouts(60_000, 60_000)).collect().await;
        assert_eq!(&got.unwrap().to_bytes()[..], b"ababababab");
        let (tx, inner) = Channel::<Bytes, std::io::Error>::new(1);
        tx.abort(std::io::Error::other("cut"));
        let e = Timed::new(inner, timeouts(60_000, 60_000))
            .collect()
            .await
            .unwrap_err();
        assert!(!timed_out(e.as_ref()), "{e}");
    }
}
