//! Where log lines go: appended, whole, to a buffer by the thread that logs
//! them, and written out in batches by a thread of its own. The first line
//! into an empty buffer wakes that thread; it waits [`BATCH_WAIT`] for more
//! (or until [`EARLY`] bytes wait), then writes everything in one call. Under
//! load that is one wake-up and one `write` per batch, not per line: a line
//! per request handed to a channel woke the writer thread for every request
//! (a futex wake, a context switch and the writer's spinning `sched_yield`s on
//! the request's core), which cost more than formatting the line.
//!
//! Bounded: past [`LIMIT`] bytes waiting (a reader that stopped reading: a
//! stuck collector, a full pipe) lines are dropped and counted, and the thread
//! that logs never waits for the writer. The two buffers (the one filling, the
//! one being written) trade places and never grow past [`LIMIT`] each.
//!
//! Hand-written rather than `tracing-appender`'s non-blocking writer, which
//! hands each line to a channel (the wake-up per line above) and has no way
//! to batch.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::Duration;

/// How long the writer thread lets lines gather after the first one.
pub const BATCH_WAIT: Duration = Duration::from_millis(10);
/// Bytes waiting that wake the writer thread before [`BATCH_WAIT`] is up.
pub const EARLY: usize = 64 * 1024;
/// Bytes that may wait; a line that would go past them is dropped.
pub const LIMIT: usize = 1024 * 1024;
/// How long dropping the [`Flush`] guard waits for what is left to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

struct Shared {
    waiting: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    closing: AtomicBool,
    /// The writer thread (set as it is started, before any line).
    writer: OnceLock<Thread>,
}

impl Shared {
    fn waiting(&self) -> MutexGuard<'_, Vec<u8>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_writer(&self) {
        if let Some(t) = self.writer.get() {
            t.unpark();
        }
    }
}

/// Hands lines to the writer thread (a `tracing_subscriber` writer: every
/// formatted line is one `write` call). Cheap to clone.
#[derive(Clone)]
pub struct Lines(Arc<Shared>);

/// Lines dropped so far because the writer was behind.
#[derive(Clone)]
pub struct Dropped(Arc<Shared>);

impl std::fmt::Debug for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Dropped").field(&self.get()).finish()
    }
}

impl Dropped {
    /// How many lines were dropped.
    pub fn get(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// Held while the process logs: dropped, it has what is waiting written (for
/// at most a second, a stuck reader cannot hold the exit).
pub struct Flush {
    shared: Arc<Shared>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake_writer();
        let _ = self.done.recv_timeout(FLUSH_WAIT);
    }
}

/// Starts the writer thread, writing to `out`.
pub fn start<W: Write + Send + 'static>(mut out: W) -> std::io::Result<(Lines, Dropped, Flush)> {
    let shared = Arc::new(Shared {
        waiting: Mutex::new(Vec::with_capacity(EARLY)),
        dropped: AtomicU64::new(0),
        closing: AtomicBool::new(false),
        writer: OnceLock::new(),
    });
    let (done_tx, done) = std::sync::mpsc::channel();
    let serves = shared.clone();
    let handle = std::thread::Builder::new()
        .name("tenant-gateway-log".into())
        .spawn(move || {
            let shared = serves;
            let mut batch = Vec::with_capacity(EARLY);
            loop {
                let closing = shared.closing.load(Ordering::Acquire);
                if !closing {
                    // Until a line arrives in an empty buffer (or the end),
                    // then a little longer for the lines after it.
                    std::thread::park();
                    if shared.waiting().len() < EARLY {
                        std::thread::park_timeout(BATCH_WAIT);
                    }
                }
                std::mem::swap(&mut *shared.waiting(), &mut batch);
                if !batch.is_empty() {
                    // A failed write has nowhere to be reported: the lines go.
                    let _ = out.write_all(&batch).and_then(|()| out.flush());
                    batch.clear();
                }
                if closing && shared.waiting().is_empty() {
                    break;
                }
            }
            let _ = done_tx.send(());
        })?;
    let _ = shared.writer.set(handle.thread().clone());
    Ok((
        Lines(shared.clone()),
        Dropped(shared.clone()),
        Flush { shared, done },
    ))
}

impl Write for &Lines {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let shared = &self.0;
        let mut waiting = shared.waiting();
        let before = waiting.len();
        if before + line.len() > LIMIT {
            drop(waiting);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        waiting.extend_from_slice(line);
        let after = waiting.len();
        drop(waiting);
        // The first line of a batch, or the one that makes it big enough to
        // write early: wake the writer (it is asleep, or will not sleep long).
        if before == 0 || (before < EARLY && after >= EARLY) {
            shared.wake_writer();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = &'a Lines;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A sink the test can read, and stop (a reader that stopped reading).
    #[derive(Clone, Default)]
    struct Sink {
        written: Arc<Mutex<Vec<u8>>>,
        writes: Arc<AtomicU64>,
        stuck: Arc<Mutex<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _held = self.stuck.lock().unwrap();
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn eventually(mut f: impl FnMut() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        f()
    }

    #[test]
    fn lines_arrive_whole_in_order_and_in_batches() {
        let sink = Sink::default();
        let (lines, dropped, flush) = start(sink.clone()).unwrap();
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let lines = lines.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        (&lines)
                            .write_all(format!("thread {t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        drop(flush);
        let text = String::from_utf8(sink.written.lock().unwrap().clone()).unwrap();
        let mut next = [0; 4];
        for l in text.lines() {
            let (t, i) = l
                .strip_prefix("thread ")
                .and_then(|l| l.split_once(" line "))
                .unwrap_or_else(|| panic!("a broken line: {l:?}"));
            let t: usize = t.parse().unwrap();
            assert_eq!(
                i.parse::<usize>().unwrap(),
                next[t],
                "thread {t}'s lines in order"
            );
            next[t] += 1;
        }
        assert_eq!(next, [5_000; 4], "every line written");
        assert_eq!(dropped.get(), 0);
        let writes = sink.writes.load(Ordering::Relaxed);
        assert!(
            writes < 20_000 / 10,
            "{writes} writes for 20,000 lines: not batched"
        );
    }

    #[test]
    fn a_line_is_written_without_more_lines_coming() {
        let sink = Sink::default();
        let (lines, _dropped, _flush) = start(sink.clone()).unwrap();
        (&lines).write_all(b"alone\n").unwrap();
        assert!(eventually(
            || sink.written.lock().unwrap().as_slice() == b"alone\n"
        ));
    }

    #[test]
    fn a_stuck_reader_costs_dropped_lines_not_waiting_or_memory() {
        let sink = Sink::default();
        let stuck = sink.stuck.lock().unwrap();
        let (lines, dropped, flush) = start(sink.clone()).unwrap();
        let line = [b'x'; 1000];
        // Far more than the limit; every write returns at once.
        for _ in 0..(3 * LIMIT / line.len()) {
            (&lines).write_all(&line).unwrap();
        }
        assert!(dropped.get() > 0, "nothing dropped past the limit");
        assert!(lines.0.waiting().len() <= LIMIT);
        drop(stuck);
        drop(flush);
        let written = sink.written.lock().unwrap().len();
        let kept = 3 * LIMIT / line.len() - dropped.get() as usize;
        assert_eq!(
            written,
            kept * line.len(),
            "what was not dropped was written"
        );
    }
}
