//! Whether a listener takes connections, for `/readyz`: one [`Listening`] per
//! listener (HTTP, AMQP), told by its accept loop.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

/// How long after a failed `accept` a listener counts as not ready; a failure
/// that persists (out of file descriptors, say) renews it on every retry.
const ACCEPT_FAILURE_WINDOW: Duration = Duration::from_secs(2);

/// One listener's state: whether its accept loop has ended, and when
/// `accept` last failed. Not started (or not configured) counts as ready.
#[derive(Debug)]
pub struct Listening {
    /// Its accept loop ended.
    stopped: AtomicBool,
    /// When `accept` last failed, in milliseconds since `since` (0: not since
    /// it last succeeded).
    failed_at: AtomicU64,
    since: Instant,
}

/// Why a listener is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unready {
    /// Its accept loop ended.
    Stopped,
    /// `accept` failed within the last [`ACCEPT_FAILURE_WINDOW`].
    AcceptFailing,
}

impl Default for Listening {
    fn default() -> Self {
        Self {
            stopped: AtomicBool::new(false),
            failed_at: AtomicU64::new(0),
            since: Instant::now(),
        }
    }
}

impl Listening {
    /// Milliseconds since `since`, at least 1 (0 is "no failure").
    fn now_ms(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// A guard for the accept loop: the listener counts as stopped once it
    /// is dropped (the loop ending, by return or panic).
    pub(crate) fn serving(self: &Arc<Self>) -> Serving {
        Serving(self.clone())
    }

    /// `accept` failed.
    pub(crate) fn accept_failed(&self) {
        self.failed_at.store(self.now_ms(), Relaxed);
    }

    /// `accept` took a connection.
    pub(crate) fn accepted(&self) {
        if self.failed_at.load(Relaxed) != 0 {
            self.failed_at.store(0, Relaxed);
        }
    }

    /// `Ok` when the listener takes connections or was never started.
    pub fn check(&self) -> Result<(), Unready> {
        if self.stopped.load(Relaxed) {
            return Err(Unready::Stopped);
        }
        let failed = self.failed_at.load(Relaxed);
        let window = u64::try_from(ACCEPT_FAILURE_WINDOW.as_millis()).unwrap_or(u64::MAX);
        if failed != 0 && self.now_ms().saturating_sub(failed) < window {
            return Err(Unready::AcceptFailing);
        }
        Ok(())
    }
}

/// See [`Listening::serving`].
pub(crate) struct Serving(Arc<Listening>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.stopped.store(true, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_ready_unless_stopped_or_failing_to_accept() {
        let l = Arc::new(Listening::default());
        assert_eq!(l.check(), Ok(()), "not configured");
        let serving = l.serving();
        assert_eq!(l.check(), Ok(()));
        l.accept_failed();
        assert_eq!(l.check(), Err(Unready::AcceptFailing));
        l.accepted();
        assert_eq!(l.check(), Ok(()));
        drop(serving);
        assert_eq!(l.check(), Err(Unready::Stopped));
    }

    #[test]
    fn an_accept_failure_counts_for_a_while_only() {
        let Some(since) = Instant::now().checked_sub(ACCEPT_FAILURE_WINDOW * 2) else {
            return;
        };
        let l = Listening {
            since,
            ..Listening::default()
        };
        // It failed at `since`, a window and more ago.
        l.failed_at.store(1, Relaxed);
        assert_eq!(l.check(), Ok(()));
        l.accept_failed();
        assert_eq!(l.check(), Err(Unready::AcceptFailing));
    }
}
