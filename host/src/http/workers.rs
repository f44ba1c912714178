//! The threads that serve client connections: one per core the process may
//! run on, each with a current-thread tokio runtime of its own, as nginx
//! runs one worker process per core. The listener accepts on the main
//! runtime and hands each connection to the worker serving the fewest; the
//! connection lives there to its end, with the upstream connections and the
//! tasks its requests start.
//!
//! Why not the main (work-stealing) runtime: on one core, a proxied request
//! took 10–13 % less CPU on a current-thread runtime than on the
//! multi-thread one with its single worker (`scripts/bench-peers`' proxy
//! load, six alternating pairs). A tenant's component that computes still
//! gives its thread back at every epoch tick (`wasm::engine`), so the other
//! connections of its worker go on between ticks; blocking work still goes to
//! a blocking pool (each worker's own).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// What a worker runs for a connection: made on the worker's thread (inside
/// its runtime, where its socket is registered), then spawned there.
pub(super) type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// The blocking threads of every worker together (tokio's default for one
/// runtime, shared out).
const BLOCKING_THREADS: usize = 512;

/// The connection workers of one listener.
pub(super) struct Workers {
    workers: Vec<Worker>,
}

struct Worker {
    /// Unbounded, but never longer than the connections the listener let
    /// in (`Limits.MaxConnections` and the health headroom). Each job comes
    /// with its count against the worker.
    jobs: mpsc::UnboundedSender<(Job, Load)>,
    /// Connections it serves now (handed over and not yet ended).
    load: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

/// Counts a connection against its worker while it lives.
struct Load(Arc<AtomicUsize>);

impl Drop for Load {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// One worker per core this process may use (its CPU affinity and
    /// cgroup quota, as `std::thread::available_parallelism` reads them).
    pub(super) fn start() -> std::io::Result<Self> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with(n)
    }

    /// `n` workers (at least one).
    pub(super) fn with(n: usize) -> std::io::Result<Self> {
        let n = n.max(1);
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads((BLOCKING_THREADS / n).max(1))
                .thread_name(format!("tg-http-{i}-blocking"))
                .build()?;
            let (jobs, received) = mpsc::unbounded_channel();
            let thread = std::thread::Builder::new()
                .name(format!("tg-http-{i}"))
                .spawn(move || {
                    crate::set_connection_worker(i + 1);
                    runtime.block_on(run(received))
                })?;
            workers.push(Worker {
                jobs,
                load: Arc::default(),
                thread,
            });
        }
        Ok(Self { workers })
    }

    /// Hands `job` to the worker serving the fewest connections; `job`'s
    /// future counts against it until it ends.
    pub(super) fn run(&self, job: Job) {
        let Some(worker) = self
            .workers
            .iter()
            .min_by_key(|w| w.load.load(Ordering::Relaxed))
        else {
            return;
        };
        worker.load.fetch_add(1, Ordering::Relaxed);
        // A worker only stops once its sender is dropped (with `self`).
        let _ = worker.jobs.send((job, Load(worker.load.clone())));
    }

    /// Lets the workers go once every connection handed to them has ended
    /// (dropped, the workers go then too); with `wait`, returns only then.
    pub(super) fn stop(self, wait: bool) {
        // Each sender goes with its worker here.
        let threads: Vec<_> = self.workers.into_iter().map(|w| w.thread).collect();
        if wait {
            for thread in threads {
                let _ = thread.join();
            }
        }
    }
}

/// A worker's life: every job received spawned, then, once no more can
/// come, every connection served to its end.
async fn run(mut jobs: mpsc::UnboundedReceiver<(Job, Load)>) {
    let tracker = tokio_util::task::TaskTracker::new();
    while let Some((job, load)) = jobs.recv().await {
        let serving = job();
        tracker.spawn(async move {
            let _load = load;
            serving.await;
        });
    }
    tracker.close();
    tracker.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs go to the least loaded worker, run on its own thread (a
    /// current-thread runtime: their tasks stay there), and `stop` waits for
    /// what they started.
    #[test]
    fn connections_go_to_the_least_loaded_worker_and_finish_before_it_stops() {
        let workers = Workers::with(2).unwrap();
        let (seen_tx, seen) = std::sync::mpsc::channel::<(String, String)>();
        let (release, released) = tokio::sync::watch::channel(false);
        for _ in 0..4 {
            let seen_tx = seen_tx.clone();
            let mut released = released.clone();
            workers.run(Box::new(move || {
                let here = std::thread::current().name().unwrap_or("").to_owned();
                Box::pin(async move {
                    // A task it spawns runs on the same thread.
                    let spawned = tokio::spawn(async {
                        std::thread::current().name().unwrap_or("").to_owned()
                    })
                    .await
                    .unwrap();
                    let _ = released.wait_for(|r| *r).await;
                    assert!(crate::connection_worker() > 0);
                    seen_tx.send((here, spawned)).unwrap();
                })
            }));
        }
        let loads: Vec<usize> = workers
            .workers
            .iter()
            .map(|w| w.load.load(Ordering::Relaxed))
            .collect();
        assert_eq!(loads, [2, 2], "four connections spread over two workers");
        release.send(true).unwrap();
        workers.stop(true);
        let seen: Vec<_> = seen.try_iter().collect();
        assert_eq!(seen.len(), 4, "every connection ended before stop returned");
        for (here, spawned) in &seen {
            assert!(here.starts_with("tg-http-"), "{here}");
            assert_eq!(here, spawned);
        }
        let threads: std::collections::BTreeSet<_> = seen.iter().map(|s| &s.0).collect();
        assert_eq!(threads.len(), 2, "{threads:?}");
    }
}
