//! The embedded store's one writer: a thread that owns SQLite's write
//! connection and commits the writes queued meanwhile in one transaction
//! (group commit): one `fsync` and one copy of each shared page (the
//! history's index and parent pages, `sqlite_sequence`, the file header) for
//! the whole batch instead of for every write.
//!
//! Each write runs in a savepoint of its own, so one that fails or finds
//! things not as it expected is undone alone; its answer, like every answer,
//! is given once the batch has been committed (a write the batch then lost
//! answers that it was lost). A caller that marks its write `more` (others
//! are about to follow, see [`crate::store::WriteTurn::others`]) has the
//! transaction wait briefly for them: at most [`LINGER`] for the next and
//! [`MAX_AGE`] in all. A write may also ask to hear as soon as it is applied
//! (in order, before the commit), so that the next write of the same key can
//! be prepared while this one is made durable; it still waits for its answer
//! before anything is told to a client.
//!
//! Checkpoints (copying the WAL back into the database file, with its two
//! `fsync`s) run on a thread of their own instead of in the commit that
//! crossed SQLite's 1,000-page mark: in the writer they held every update
//! waiting behind them for the copy (the PUT tail). See [`Checkpoints`] for
//! when they run.
//!
//! Hand-written rather than a crate: `tokio-rusqlite` and the like run one
//! call at a time on their thread, with no batching into one transaction.

use super::StoreError;
use super::write::{self, Step};
use rusqlite::Connection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

/// Writes waiting for the writer thread. Updates are bounded before they
/// get here (a tenant's writes take turns, component calls have permits),
/// so a full queue means a stalled disk: sync callers wait, async ones
/// wait on the blocking pool.
const QUEUED: usize = 1024;
/// The most writes committed together.
const MAX_BATCH: usize = 64;
/// How long an open batch waits for the next write announced by `more`.
pub(super) const LINGER: Duration = Duration::from_millis(1);
/// How long a batch stays open waiting for announced writes, in all.
pub(super) const MAX_AGE: Duration = Duration::from_millis(4);

/// WAL pages written between wake-ups of the checkpointer (SQLite's own
/// checkpoint mark).
const CHECKPOINT_PAGES: i32 = 1000;
/// WAL pages after which the WAL is made to start over (see [`Checkpoints`]).
const RESTART_PAGES: i32 = 4 * CHECKPOINT_PAGES;
/// WAL pages after which the writer checkpoints itself whatever the
/// checkpointer is doing: it has fallen behind (readers kept it from
/// finishing), and the WAL must not grow without bound.
const WAL_PAGES_MAX: i32 = 16 * CHECKPOINT_PAGES;

thread_local! {
    /// The WAL's pages after the writer's last commit (SQLite's WAL hook,
    /// called on the thread that commits: the writer).
    static WAL_PAGES: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

fn note_wal_pages(_: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages));
    Ok(())
}

/// The statements of one write, over the writer's connection inside the
/// batch's transaction and the write's savepoint.
pub(super) struct Sql<'c>(&'c Connection);

impl std::ops::Deref for Sql<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.0
    }
}

/// Tells a write's caller how the batch ended: `Ok` once committed.
type Finish = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;
/// Applies a write (with the batch's connection) or, without one, fails it.
type Run = Box<dyn FnOnce(Option<&Connection>) -> Finish + Send>;
/// Hears a write's result as soon as it is applied.
pub(super) type Applied<T> = Box<dyn FnOnce(&T) + Send>;

/// One queued write. Run with the connection, it applies itself and says how
/// to answer once the batch ends; run without (the batch could not begin),
/// it answers the error it is finished with.
pub(super) struct Job {
    run: Run,
    more: bool,
}

impl Job {
    /// A write of `step` (run again while it asks to be retried, at most
    /// [`write::WRITE_TRIES`] times). `applied` hears its result as soon as its
    /// changes are in place, when it made any; `answer` hears the result
    /// once the batch has ended. `more`: other writes will follow shortly.
    pub(super) fn new<T: Send + 'static>(
        mut step: impl FnMut(&mut Sql<'_>) -> Result<Step<T>, StoreError> + Send + 'static,
        more: bool,
        applied: Option<Applied<T>>,
        answer: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) -> Self {
        let run = move |conn: Option<&Connection>| -> Finish {
            let Some(conn) = conn else {
                // Finished with the error the batch could not begin with.
                return Box::new(move |ended: Result<(), &StoreError>| {
                    answer(Err(ended.err().map_or_else(stopped, lost)));
                });
            };
            match in_savepoint(conn, &mut step) {
                Ok((value, true)) => {
                    if let Some(applied) = applied {
                        applied(&value);
                    }
                    Box::new(move |ended: Result<(), &StoreError>| {
                        answer(ended.map(|()| value).map_err(lost));
                    })
                }
                // Nothing of its own to commit: its answer stands whatever
                // becomes of the batch (given after it, so a caller that
                // reads again reads what the batch wrote).
                Ok((value, false)) => Box::new(move |_| answer(Ok(value))),
                Err(e) => Box::new(move |_| answer(Err(e))),
            }
        };
        Self {
            run: Box::new(run),
            more,
        }
    }
}

/// The error a write that was not kept answers, for the batch's `why`.
fn lost(why: &StoreError) -> StoreError {
    StoreError::Lost(match why {
        StoreError::Lost(why) => why.clone(),
        e => e.to_string(),
    })
}

/// What a caller is told when the writer thread is gone.
pub(super) fn stopped() -> StoreError {
    StoreError::Lost("the store's writer stopped".into())
}

/// Runs `step` in a savepoint: kept (`true`) when it asks to commit, undone
/// when it asks to roll back, fails or asks too often to be retried.
fn in_savepoint<T>(
    conn: &Connection,
    step: &mut impl FnMut(&mut Sql<'_>) -> Result<Step<T>, StoreError>,
) -> Result<(T, bool), StoreError> {
    write::retried(|| {
        run_sql(conn, "SAVEPOINT w")?;
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(&mut Sql(conn))))
                .unwrap_or_else(|_| Err(StoreError::Corrupt("a write step panicked".into())));
        let keep = matches!(outcome, Ok(Step::Commit(_)));
        // After an error SQLite may have ended the whole transaction; then
        // there is no savepoint left to end (the batch notices).
        if !conn.is_autocommit() {
            if !keep {
                run_sql(conn, "ROLLBACK TO w")?;
            }
            run_sql(conn, "RELEASE w")?;
        }
        Ok(match outcome? {
            Step::Commit(v) => Some((v, true)),
            Step::Rollback(v) => Some((v, false)),
            Step::Retry => None,
        })
    })
}

/// Runs one statement of the writer's own, prepared once: parsed again each
/// time (`execute_batch`), the savepoints' four were 1.6 % of an update's CPU.
fn run_sql(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// The writer thread's queue; dropping it lets the thread finish what is
/// queued and waits for it.
pub(super) struct Committer {
    queue: Option<SyncSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
    /// Transactions committed.
    #[cfg_attr(not(test), allow(dead_code))]
    commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Committer {
    /// Starts the writer thread with its own connection, and the
    /// checkpointer with `checkpoints` (another connection to the file).
    pub(super) fn start(conn: Connection, checkpoints: Connection) -> Result<Self, StoreError> {
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| StoreError::Open(format!("cannot start the {name} thread: {e}")))
        };
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        // The last wake-up asked for, and the last one whose checkpoint is done.
        let asked = std::sync::Arc::new(AtomicU64::new(0));
        let copied = std::sync::Arc::new(AtomicU64::new(0));
        let (asked_to, copied_by) = (asked.clone(), copied.clone());
        let checkpointer = spawn(
            "sqlite-checkpoint",
            Box::new(move || {
                while woken.recv().is_ok() {
                    let wake_up = asked_to.load(Ordering::Acquire);
                    checkpoint(&checkpoints);
                    copied_by.store(wake_up, Ordering::Release);
                }
            }),
        )?;
        // Replaces SQLite's automatic checkpoint, which is a WAL hook too.
        conn.wal_hook(Some(note_wal_pages));
        let (queue, jobs) = std::sync::mpsc::sync_channel(QUEUED);
        let commits = std::sync::Arc::<std::sync::atomic::AtomicU64>::default();
        let counted = commits.clone();
        let thread = spawn(
            "sqlite-writer",
            Box::new(move || {
                // Queued writes run when their worker waits, together.
                super::batch_scheduling();
                let mut checkpoints = Checkpoints::default();
                while let Ok(first) = jobs.recv() {
                    if batch(&conn, &jobs, first) {
                        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let pages = WAL_PAGES.with(std::cell::Cell::get);
                        match checkpoints.after_commit(pages, copied.load(Ordering::Acquire)) {
                            Checkpoint::None => {}
                            Checkpoint::Wake(wake_up) => {
                                asked.store(wake_up, Ordering::Release);
                                // Full: a wake-up is pending already, and it
                                // reads the number stored.
                                let _ = wake.try_send(());
                            }
                            Checkpoint::Here => checkpoint(&conn),
                        }
                    }
                }
            }),
        )?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
            checkpointer: Some(checkpointer),
            commits,
        })
    }

    /// How many transactions were committed.
    #[cfg(test)]
    fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn queue(&self) -> &SyncSender<Job> {
        self.queue.as_ref().expect("the queue lives until drop")
    }

    /// Queues `job`, waiting while the queue is full. Not on an async worker.
    pub(super) fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.queue().send(job).map_err(|_| stopped())
    }

    /// Queues `job` from async code: at once, or from the blocking pool
    /// while the queue is full.
    pub(super) fn submit_async(&self, job: Job) -> Result<(), StoreError> {
        match self.queue().try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => {
                let queue = self.queue().clone();
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        // A job the stopped writer drops answers its
                        // callers by dropping their channels.
                        drop(rt.spawn_blocking(move || queue.send(job)));
                        Ok(())
                    }
                    Err(_) => queue.send(job).map_err(|_| stopped()),
                }
            }
            Err(TrySendError::Disconnected(_)) => Err(stopped()),
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        drop(self.queue.take());
        // The writer's end lets the checkpointer go once the writer is done.
        for thread in [self.thread.take(), self.checkpointer.take()]
            .into_iter()
            .flatten()
        {
            let _ = thread.join();
        }
    }
}

/// When the WAL is copied back, and by whom.
///
/// SQLite starts the WAL over only in a transaction that begins with every
/// frame already copied back. Under steady updates the writer begins its next
/// transaction before the checkpointer is done, so the WAL never starts over
/// by itself. Woken after every commit past the mark, as it was, the
/// checkpointer copied and `fsync`ed twice for every commit (more `fsync`s
/// than the commits had) while the WAL grew to 64 MB.
///
/// Now the checkpointer is woken once per [`CHECKPOINT_PAGES`] the WAL grows.
/// Past [`RESTART_PAGES`] it is woken once more, and when that checkpoint is
/// done the writer copies what was committed meanwhile (a few commits'
/// pages) itself, between two transactions, so that the next one starts the
/// WAL over: the writer's queue waits for that small copy only.
#[derive(Debug)]
struct Checkpoints {
    /// The WAL's size at which the checkpointer is next woken.
    next_wake: i32,
    /// Wake-ups asked for so far (each one numbered).
    asked: u64,
    /// The wake-up after which the writer starts the WAL over.
    restart: Option<u64>,
}

/// What follows a commit.
#[derive(Debug, PartialEq, Eq)]
enum Checkpoint {
    None,
    /// Wake the checkpointer: wake-up number so-and-so.
    Wake(u64),
    /// Checkpoint on the writer, now.
    Here,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Self {
            next_wake: CHECKPOINT_PAGES,
            asked: 0,
            restart: None,
        }
    }
}

impl Checkpoints {
    /// Counts from an empty WAL again (wake-ups keep their numbers).
    fn start_over(&mut self) {
        self.next_wake = CHECKPOINT_PAGES;
        self.restart = None;
    }

    /// What to do after a commit left the WAL `pages` long, the checkpointer
    /// having done wake-ups up to number `copied`.
    fn after_commit(&mut self, pages: i32, copied: u64) -> Checkpoint {
        if pages < self.next_wake - CHECKPOINT_PAGES {
            // The WAL started over.
            self.start_over();
        }
        if pages >= WAL_PAGES_MAX || self.restart.is_some_and(|r| copied >= r) {
            self.start_over();
            return Checkpoint::Here;
        }
        if self.restart.is_some() {
            return Checkpoint::None;
        }
        if pages >= RESTART_PAGES || pages >= self.next_wake {
            self.next_wake = pages + CHECKPOINT_PAGES;
            self.asked += 1;
            if pages >= RESTART_PAGES {
                self.restart = Some(self.asked);
            }
            return Checkpoint::Wake(self.asked);
        }
        Checkpoint::None
    }
}

/// Copies what the WAL holds back into the database file, as far as no
/// reader needs it (`PASSIVE`: writers are not held up); a failure is logged
/// and the next checkpoint tries again.
fn checkpoint(conn: &Connection) {
    let pages = |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?));
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], pages) {
        Ok((log, done)) if done < log => {
            tracing::debug!(log, done, "checkpoint left pages readers still use");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
    }
}

/// Applies `first` and the writes queued (or announced) after it in one
/// transaction, commits it and answers them all; whether it committed.
fn batch(conn: &Connection, jobs: &Receiver<Job>, first: Job) -> bool {
    if let Err(e) = run_sql(conn, "BEGIN IMMEDIATE") {
        let e = StoreError::from(e);
        tracing::error!(error = %e, "cannot begin a write transaction");
        (first.run)(None)(Err(&e));
        return false;
    }
    let began = Instant::now();
    let mut finishes: Vec<Finish> = Vec::new();
    let mut next = Some(first);
    while let Some(job) = next.take() {
        let more = job.more;
        finishes.push((job.run)(Some(conn)));
        if conn.is_autocommit() {
            // A failure made SQLite roll the whole transaction back: what
            // this batch had applied is gone.
            let e = StoreError::Lost("the transaction was rolled back by an error".into());
            tracing::error!(error = %e, writes = finishes.len(), "a batch of writes was lost");
            for finish in finishes {
                finish(Err(&e));
            }
            return false;
        }
        if finishes.len() >= MAX_BATCH {
            break;
        }
        next = match jobs.try_recv() {
            Ok(job) => Some(job),
            Err(TryRecvError::Empty) if more => {
                let left = MAX_AGE.saturating_sub(began.elapsed());
                jobs.recv_timeout(LINGER.min(left)).ok()
            }
            Err(_) => None,
        };
    }
    let ended = run_sql(conn, "COMMIT").map_err(StoreError::from);
    if let Err(e) = &ended {
        tracing::error!(error = %e, writes = finishes.len(), "a batch of writes failed to commit");
        if !conn.is_autocommit() {
            let _ = run_sql(conn, "ROLLBACK");
        }
    }
    for finish in finishes {
        finish(ended.as_ref().map(|_| ()));
    }
    ended.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A writer over a fresh file with tables `p` and `c` (`c.p` a deferred
    /// reference to `p`: checked at commit).
    fn writer(dir: &std::path::Path) -> (Committer, Connection) {
        let file = dir.join("t.db");
        let conn = Connection::open(&file).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;
             CREATE TABLE p (id INTEGER PRIMARY KEY);
             CREATE TABLE c (p INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        let reader = Connection::open(&file).unwrap();
        let checkpoints = Connection::open(&file).unwrap();
        (Committer::start(conn, checkpoints).unwrap(), reader)
    }

    type Answers = mpsc::Receiver<(i64, Result<i64, String>)>;
    type To = mpsc::Sender<(i64, Result<i64, String>)>;

    /// A writer over a fresh file, a reader of it, and a channel for answers.
    fn fixture() -> (tempfile::TempDir, Committer, Connection, To, Answers) {
        let dir = tempfile::tempdir().unwrap();
        let (w, reader) = writer(dir.path());
        let (to, from) = mpsc::channel();
        (dir, w, reader, to, from)
    }

    /// A job inserting `id` into `p` (or, with `then`, running that instead),
    /// answering on `to` with its number.
    fn insert(id: i64, then: Option<&'static str>, to: &To) -> Job {
        let to = to.clone();
        Job::new(
            move |tx| {
                match then {
                    Some(sql) => tx.execute_batch(sql)?,
                    None => {
                        tx.execute("INSERT INTO p (id) VALUES (?1)", [id])?;
                    }
                }
                Ok(Step::Commit(id))
            },
            false,
            None,
            move |r: Result<i64, StoreError>| {
                let _ = to.send((id, r.map_err(|e| e.to_string())));
            },
        )
    }

    fn answers(from: &Answers, n: usize) -> Vec<(i64, Result<i64, String>)> {
        let mut all: Vec<_> = (0..n).map(|_| from.recv().unwrap()).collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    fn ids(reader: &Connection, table: &str) -> Vec<i64> {
        let sql = format!("SELECT rowid FROM {table} ORDER BY rowid");
        let mut stmt = reader.prepare(&sql).unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Holds the writer inside its first write until `go` is sent.
    fn held(go: mpsc::Receiver<()>, to: &To) -> Job {
        let to = to.clone();
        Job::new(
            move |tx| {
                go.recv().unwrap();
                tx.execute("INSERT INTO p (id) VALUES (100)", [])?;
                Ok(Step::Commit(100))
            },
            false,
            None,
            move |r: Result<i64, StoreError>| {
                let _ = to.send((100, r.map_err(|e| e.to_string())));
            },
        )
    }

    #[test]
    fn writes_queued_meanwhile_are_committed_together_and_undone_alone() {
        let (_dir, w, reader, to, from) = fixture();
        let (go, wait) = mpsc::channel();
        w.submit(held(wait, &to)).unwrap();
        w.submit(insert(1, None, &to)).unwrap();
        // A failing write (its key is taken) and one that asks to roll back
        // are undone alone; the others stay in the batch.
        w.submit(insert(1, None, &to)).unwrap();
        let (rb_to, rb_from) = mpsc::channel();
        w.submit(Job::new(
            |tx| {
                tx.execute("INSERT INTO p (id) VALUES (7)", [])?;
                Ok(Step::Rollback("no"))
            },
            false,
            None,
            move |r| rb_to.send(r.map_err(|e| e.to_string())).unwrap(),
        ))
        .unwrap();
        w.submit(insert(2, None, &to)).unwrap();
        go.send(()).unwrap();
        let got = answers(&from, 4);
        assert_eq!(got[0], (1, Ok(1)));
        assert_eq!(got[1].0, 1);
        assert!(
            got[1].1.as_ref().is_err_and(|e| e.contains("UNIQUE")),
            "{got:?}"
        );
        assert_eq!(got[2..], [(2, Ok(2)), (100, Ok(100))]);
        assert_eq!(rb_from.recv().unwrap(), Ok("no"));
        assert_eq!(ids(&reader, "p"), [1, 2, 100]);
        assert_eq!(w.commits(), 1, "one transaction for the five writes");
    }

    #[test]
    fn a_batch_that_fails_to_commit_answers_every_write_lost() {
        let (_dir, w, reader, to, from) = fixture();
        let (go, wait) = mpsc::channel();
        // The first write hears that it was applied before the batch ends.
        let (applied_to, applied) = mpsc::channel();
        let answer_to = to.clone();
        w.submit(Job::new(
            move |tx| {
                wait.recv().unwrap();
                tx.execute("INSERT INTO p (id) VALUES (1)", [])?;
                Ok(Step::Commit(1))
            },
            false,
            Some(Box::new(move |v: &i64| applied_to.send(*v).unwrap())),
            move |r: Result<i64, StoreError>| {
                let _ = answer_to.send((1, r.map_err(|e| e.to_string())));
            },
        ))
        .unwrap();
        // A reference checked only at commit, to a row that is not there.
        w.submit(insert(2, Some("INSERT INTO c (p) VALUES (99)"), &to))
            .unwrap();
        go.send(()).unwrap();
        assert_eq!(applied.recv().unwrap(), 1);
        let got = answers(&from, 2);
        for (_, r) in &got {
            assert!(
                r.as_ref().is_err_and(|e| e.contains("not stored")),
                "{got:?}"
            );
        }
        assert!(ids(&reader, "p").is_empty());
        assert!(ids(&reader, "c").is_empty());
        // The writer goes on with the next batch.
        w.submit(insert(3, None, &to)).unwrap();
        assert_eq!(answers(&from, 1), [(3, Ok(3))]);
        assert_eq!(ids(&reader, "p"), [3]);
    }

    #[test]
    fn a_write_that_ends_the_transaction_loses_the_batch_not_the_next() {
        let (_dir, w, reader, to, from) = fixture();
        let (go, wait) = mpsc::channel();
        w.submit(held(wait, &to)).unwrap();
        w.submit(insert(2, Some("ROLLBACK"), &to)).unwrap();
        w.submit(insert(3, None, &to)).unwrap();
        go.send(()).unwrap();
        let got = answers(&from, 3);
        assert!(got[0].1.is_err() && got[2].1.is_err(), "{got:?}");
        assert_eq!(got[1], (3, Ok(3)));
        assert_eq!(ids(&reader, "p"), [3]);
    }

    #[test]
    fn the_wal_is_copied_back_off_the_writer_thread() {
        let (dir, w, _reader, to, from) = fixture();
        w.submit(insert(1, Some("CREATE TABLE b (x BLOB)"), &to))
            .unwrap();
        // Some 1,200 pages in separate commits: past the checkpoint mark.
        for id in 2..=300 {
            let to = to.clone();
            w.submit(Job::new(
                |tx| {
                    tx.execute("INSERT INTO b (x) VALUES (zeroblob(16000))", [])?;
                    Ok(Step::Commit(()))
                },
                false,
                None,
                move |r| {
                    let _ = to.send((id, r.map(|()| id).map_err(|e| e.to_string())));
                },
            ))
            .unwrap();
        }
        assert!(answers(&from, 300).iter().all(|(_, r)| r.is_ok()));
        // Only a checkpoint moves pages into the database file (SQLite's
        // own is off on the writer).
        let size = || std::fs::metadata(dir.path().join("t.db")).unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while size() < 4 << 20 {
            assert!(Instant::now() < deadline, "no checkpoint: {} bytes", size());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn the_checkpointer_is_woken_once_per_growth_and_the_wal_starts_over() {
        let mut c = Checkpoints::default();
        let mut woken = Vec::new();
        // Commits of 30 pages each; the checkpointer does each wake-up at once.
        let mut pages = 0;
        let restart = loop {
            pages += 30;
            match c.after_commit(pages, c.asked) {
                Checkpoint::None => {}
                Checkpoint::Wake(n) => woken.push((n, pages)),
                Checkpoint::Here => break pages,
            }
        };
        assert_eq!(woken, [(1, 1020), (2, 2040), (3, 3060), (4, 4020)]);
        assert_eq!(restart, 4050, "the commit after the restart's checkpoint");
        // The WAL started over: the count starts again.
        assert_eq!(c.after_commit(40, 4), Checkpoint::None);
        assert_eq!(c.after_commit(CHECKPOINT_PAGES, 4), Checkpoint::Wake(5));

        // The checkpointer slow: the writer waits for the restart's wake-up
        // to be done, without waking it again meanwhile.
        assert_eq!(c.after_commit(RESTART_PAGES, 4), Checkpoint::Wake(6));
        for pages in (RESTART_PAGES..WAL_PAGES_MAX).step_by(500) {
            assert_eq!(c.after_commit(pages, 5), Checkpoint::None, "{pages}");
        }
        // Behind by so much that the writer copies the WAL itself.
        assert_eq!(c.after_commit(WAL_PAGES_MAX, 5), Checkpoint::Here);

        // Started over without the writer (no commit came between the
        // checkpoint and the next transaction).
        assert_eq!(c.after_commit(CHECKPOINT_PAGES, 6), Checkpoint::Wake(7));
        assert_eq!(c.after_commit(CHECKPOINT_PAGES + 500, 7), Checkpoint::None);
        assert_eq!(c.after_commit(60, 7), Checkpoint::None);
        assert_eq!(c.after_commit(CHECKPOINT_PAGES + 1, 7), Checkpoint::Wake(8));
    }

    #[test]
    fn a_dropped_writer_finishes_what_was_queued() {
        let (_dir, w, reader, to, from) = fixture();
        for id in 1..=3 {
            w.submit(insert(id, None, &to)).unwrap();
        }
        drop(w);
        assert_eq!(answers(&from, 3).len(), 3);
        assert_eq!(ids(&reader, "p"), [1, 2, 3]);
    }
}
