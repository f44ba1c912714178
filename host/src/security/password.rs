//! Password hashing and checking (Argon2id, PHC strings) on a bounded pool of
//! threads of its own (`Hasher`), never on the async workers.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Hashes a password for the settings file or the store (Argon2id with the
/// crate's default cost, random salt, PHC string).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let argon = Argon2::default();
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_buf)
        .expect("a generated salt decodes");
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    assert!(
        argon2_into(&argon, password.as_bytes(), salt_bytes, &mut out),
        "Argon2 with default parameters hashes any password"
    );
    PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(argon.params()).expect("default parameters encode"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).expect("a 32-byte output")),
    }
    .to_string()
}

pub(super) fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let Ok(version) = hash.version.map(Version::try_from).transpose() else {
        return false;
    };
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    // `Output`'s comparison takes the same time wherever the bytes differ.
    argon2_into(&argon, password.as_bytes(), salt, &mut out)
        && Output::new(&out).is_ok_and(|o| o == expected)
}

thread_local! {
    /// Argon2's working memory (19 MiB at the default cost), kept by each
    /// hashing thread ([`Hasher`]) while more hashes wait, for the next one,
    /// and handed back to the system when none waits: a burst of sign-ins
    /// allocates it once per thread, and a gateway at rest holds none of it
    /// (kept for good, it was a fifth of an idle gateway's resident memory
    /// after its first sign-in). Allocated afresh per hash on threads that
    /// come and go, the allocator kept most of it anyway (measured: 20 checks
    /// left 177 MB resident).
    static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Hands this thread's Argon2 memory back (see [`BLOCKS`]).
fn release_blocks() {
    let held = BLOCKS.with(|blocks| std::mem::take(&mut *blocks.borrow_mut()));
    if !held.is_empty() {
        drop(held);
        // Freed, it may stay with the allocator (in an arena, past the
        // threshold glibc raised when it last freed memory of this size).
        crate::return_free_memory();
    }
}

/// Largest Argon2 memory a stored hash may ask for (64 MiB): a hash asking more
/// never matches, so no hash in a settings file or a store can make a check
/// allocate without bound.
const MAX_BLOCKS: usize = 64 * 1024;

/// Argon2 of `password` and `salt` into `out`, in this thread's kept memory.
fn argon2_into(argon: &Argon2, password: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    let n = argon.params().block_count();
    if n > MAX_BLOCKS {
        return false;
    }
    BLOCKS.with(|blocks| {
        let mut blocks = blocks.borrow_mut();
        if blocks.len() < n {
            blocks.resize(n, Block::default());
        }
        argon
            .hash_password_into_with_memory(password, salt, out, &mut blocks[..n])
            .is_ok()
    })
}

/// Where password hashing and checking (Argon2: tens of milliseconds of CPU
/// and 19 MiB of memory each) runs: a few threads of its own, one per core,
/// never the async workers, with a bounded queue. Past the queue a request is
/// refused at once (503) instead of waiting, so a flood of guesses costs
/// bounded CPU and memory and cannot stall the gateway. Threads of its own,
/// not tokio's blocking pool: each thread keeps the memory of the hashes it
/// ran for reuse (the allocator's per-thread arenas), so a fixed, small set
/// of threads bounds that memory too (on the blocking pool, whose threads
/// come and go, 200 guesses left 300 MB behind). A client that gives up does
/// not cancel the hash it caused; it still counts against the bound.
pub struct Hasher {
    jobs: std::sync::mpsc::SyncSender<Box<dyn FnOnce() + Send>>,
    checks: AtomicU64,
    /// Jobs queued and not yet taken by a thread.
    queued: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("runs", &self.runs())
            .finish_non_exhaustive()
    }
}

/// The hashing queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Hasher {
    /// `parallel` threads, `waiting` more jobs queued.
    pub fn new(parallel: usize, waiting: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Box<dyn FnOnce() + Send>>(waiting);
        let queue = Arc::new(Mutex::new(queue));
        let queued = Arc::new(AtomicUsize::new(0));
        for n in 0..parallel.max(1) {
            let (queue, queued) = (queue.clone(), queued.clone());
            std::thread::Builder::new()
                .name(format!("password-hash-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(job) = next else {
                            // The hasher is gone.
                            return;
                        };
                        queued.fetch_sub(1, Ordering::AcqRel);
                        job();
                        if queued.load(Ordering::Acquire) == 0 {
                            release_blocks();
                        }
                    }
                })
                .expect("start a password hashing thread");
        }
        Self {
            jobs,
            checks: AtomicU64::new(0),
            queued,
        }
    }

    /// One thread per core, 32 jobs waiting.
    pub fn for_this_machine() -> Self {
        Self::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
            32,
        )
    }

    /// Queues `work` (a hash or a check), or refuses it at once when the queue
    /// is full; the future yields its result.
    pub fn submit<T, W>(
        &self,
        work: W,
    ) -> Result<impl Future<Output = Result<T, Busy>> + use<T, W>, Busy>
    where
        T: Send + 'static,
        W: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Counted before it can be taken (a thread takes it off the count).
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self
            .jobs
            .try_send(Box::new(move || {
                let _ = tx.send(work());
            }))
            .is_err()
        {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy);
        }
        self.checks.fetch_add(1, Ordering::Relaxed);
        Ok(async move { rx.await.map_err(|_| Busy) })
    }

    /// Runs `work` on the hashing threads within the bounds.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        self.submit(work)?.await
    }

    /// Hashes and checks queued so far.
    pub fn runs(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
}

/// A hash of a random password, checked for unknown client ids.
pub(super) static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut random = [0u8; 16];
    OsRng.fill_bytes(&mut random);
    hash_password(&hex::encode(random))
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Holds the hasher's (one) thread in a job answering `answer` until the
    /// returned sender sends; returns once the job runs.
    fn hold<T: Send + 'static>(
        hasher: &Hasher,
        answer: T,
    ) -> (
        impl Future<Output = Result<T, Busy>> + use<T>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (started, running) = std::sync::mpsc::channel::<()>();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let job = hasher
            .submit(move || {
                started.send(()).unwrap();
                gate.recv().unwrap();
                answer
            })
            .unwrap();
        running.recv().unwrap();
        (job, release)
    }

    /// One job runs and one waits; the next is refused at once, and once the
    /// queue drains work is taken again.
    #[tokio::test]
    async fn the_hasher_refuses_work_past_its_bound() {
        let hasher = Hasher::new(1, 1);
        let (first, release) = hold(&hasher, 1);
        let second = hasher.submit(|| 2).unwrap();
        assert!(matches!(hasher.submit(|| 3), Err(Busy)));
        release.send(()).unwrap();
        assert_eq!(first.await, Ok(1));
        assert_eq!(second.await, Ok(2));
        assert_eq!(hasher.run(|| 7).await, Ok(7));
    }

    /// A hashing thread keeps Argon2's memory for the hashes queued behind
    /// the one it ran, and gives it back when none is left.
    #[tokio::test]
    async fn argon2_memory_is_kept_through_a_burst_and_released_after() {
        let hasher = Hasher::new(1, 4);
        let held = || BLOCKS.with(|b| b.borrow().len());
        let phc = hash_password("a password");
        // The thread is held while a check and a look at its memory queue.
        let (first, release) = hold(&hasher, ());
        let check = hasher
            .submit(move || verify_password("a password", &phc))
            .unwrap();
        let during = hasher.submit(held).unwrap();
        release.send(()).unwrap();
        first.await.unwrap();
        assert_eq!(check.await, Ok(true));
        let during = during.await.unwrap();
        assert!(during >= 19 * 1024, "{during} blocks kept during the burst");
        // Released once the thread finds nothing queued (a look submitted
        // before it checked counts as queued: look again).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while hasher.run(held).await != Ok(0) {
            assert!(std::time::Instant::now() < deadline, "never released");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}
