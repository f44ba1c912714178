//! `GET /api/v1/tenants/{id}/config` (served by `api::config`) with HTTP validators and without the
//! component when nothing changed.
//!
//! What the config-API component answers to a GET depends on three things
//! only: the stored configuration (its version in the store), the tenant's
//! record (name, tier, enabled, creation time) and the components that serve
//! the tenant (config API, validator with its defaults, feature gate). The
//! `ETag` names all three: `"{config version}-{digest of the record and the
//! component versions}"`, the same on every instance sharing a store.
//!
//! Every GET reads the configuration's version from the store — the one read
//! that makes a write visible to the very next GET on every instance — and
//! then answers `304 Not Modified` when `If-None-Match` names the current tag,
//! the answer kept from the last GET at this tag when there is one, and the
//! component's answer (kept for the next GET) otherwise. The keep is bounded
//! by size and holds nothing secret: it is what any reader of the tenant's
//! configuration is sent.
//!
//! A kept answer is stored compressed against one reference answer (LZ4 with
//! a dictionary, [`Packer`]): the answers of tenants on the same components
//! differ in a few fields (the tenant's id, the time), so a 1,223-byte answer
//! keeps in some 60 bytes and the keep holds the answers of many times more
//! tenants in the same bound.
//!
//! The version reads run on one thread of their own ([`Reader`]), in turn:
//! handed to tokio's blocking pool, each GET woke a pool thread of its own and
//! two context switches were a third of a GET's CPU; queued to one thread, a
//! burst of GETs is read in one wake-up.

use super::{Body, Gateway, error};
use crate::tenancy::Tenant;
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use headers::HeaderMapExt;
use http::header::{ETAG, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use sha2::Digest;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How many bytes of answers are kept (the weight of an entry is its stored
/// body and [`ENTRY_BYTES`]).
const KEPT_BYTES: u64 = 8 << 20;
/// What an entry holds besides its stored bytes (the entry itself and the
/// keep's own record of it), about.
const ENTRY_BYTES: u64 = 320;
use crate::store::CONFIGS_BUCKET as CONFIGS;

/// One kept answer and the state it was made from.
///
/// Its bytes (the entity tag, the other headers, the compressed body) are one
/// allocation made once the answer is whole: made piece by piece during the
/// component's call, each piece stayed among what the call freed and kept
/// those pages of the heap resident (2.2 KiB per tenant, where the pieces
/// were 0.6 KB; see "Memory under load, per tenant" in the README).
struct Kept {
    /// The configuration's version in the store (0: none stored).
    version: i64,
    /// The components that made it (`x-tg-components`).
    components: HeaderValue,
    /// The tenant it was made for: any change of the tenant (its record,
    /// which the component reads, among them) makes another.
    tenant: Arc<Tenant>,
    /// The `ETag` (`etag_len` bytes), then the answer's other headers but its
    /// `x-tg-components` (each name and value after its length, two bytes
    /// each, up to `headers_end`), then the compressed body, if it is.
    stored: Box<[u8]>,
    etag_len: u16,
    headers_end: u32,
    body: KeptBody,
}

/// How a kept answer's body is kept.
enum KeptBody {
    /// As it is (large or incompressible).
    Whole(Bytes),
    /// At the end of [`Kept::stored`], compressed against the reference of
    /// generation `reference`; `len` bytes whole.
    Against { reference: u64, len: u32 },
}

impl Kept {
    /// Keeps an answer; `None` when a header is longer than its length can
    /// say (such an answer is not kept).
    fn new(
        version: i64,
        components: HeaderValue,
        tenant: Arc<Tenant>,
        etag: &HeaderValue,
        headers: &HeaderMap,
        body: Packed,
    ) -> Option<Self> {
        let others = || {
            headers
                .iter()
                .filter(|(name, _)| **name != ETAG && **name != crate::wasm::COMPONENTS_HEADER)
        };
        // Sized first: made at once, the allocation is exactly the answer's.
        let size: usize = others()
            .map(|(name, value)| 4 + name.as_str().len() + value.len())
            .sum();
        let mut stored = Vec::with_capacity(etag.len() + size + body.bytes.len());
        stored.extend_from_slice(etag.as_bytes());
        for (name, value) in others() {
            crate::push_prefixed::<2>(&mut stored, name.as_str().as_bytes())?;
            crate::push_prefixed::<2>(&mut stored, value.as_bytes())?;
        }
        let headers_end = u32::try_from(stored.len()).ok()?;
        stored.extend_from_slice(&body.bytes);
        Some(Kept {
            version,
            components,
            tenant,
            etag_len: u16::try_from(etag.len()).ok()?,
            headers_end,
            stored: stored.into_boxed_slice(),
            body: body.body,
        })
    }

    /// The compressed body, if it is ([`KeptBody::Against`]).
    fn packed(&self) -> &[u8] {
        &self.stored[self.headers_end as usize..]
    }

    fn etag(&self) -> Option<HeaderValue> {
        HeaderValue::from_bytes(&self.stored[..self.etag_len as usize]).ok()
    }

    /// The other headers, in the order the answer had them.
    fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut parts = crate::prefixed_parts::<2>(
            &self.stored[self.etag_len as usize..self.headers_end as usize],
        );
        std::iter::from_fn(move || Some((parts.next()?, parts.next()?)))
    }

    fn stored_len(&self) -> usize {
        self.stored.len() + self.body.whole_len()
    }
}

impl KeptBody {
    /// The bytes kept outside the compressed part.
    fn whole_len(&self) -> usize {
        match self {
            KeptBody::Whole(b) => b.len(),
            KeptBody::Against { .. } => 0,
        }
    }
}

#[derive(Clone)]
struct EntrySize;

impl quick_cache::Weighter<Uuid, Arc<Kept>> for EntrySize {
    fn weight(&self, _: &Uuid, kept: &Arc<Kept>) -> u64 {
        kept.stored_len() as u64 + ENTRY_BYTES
    }
}

/// The kept answers of config GETs, by tenant.
pub(crate) struct ConfigReads {
    kept: quick_cache::sync::Cache<Uuid, Arc<Kept>, EntrySize>,
    packer: Packer,
    reader: Reader,
}

impl ConfigReads {
    /// Reads versions from `store`.
    pub(crate) fn new(store: Arc<dyn crate::store::Store>) -> Self {
        Self {
            kept: quick_cache::sync::Cache::with_weighter(4096, KEPT_BYTES, EntrySize),
            packer: Packer::default(),
            reader: Reader::start(Arc::new(move |keys: &[&str]| {
                store.versions(CONFIGS, keys).map_err(|e| e.to_string())
            })),
        }
    }
}

/// The largest body kept compressed (compressing and restoring it stays
/// within microseconds on the connection's thread); larger ones are kept as
/// they are.
const PACKED_MAX: usize = 16 << 10;
/// A reference that leaves an answer more than half its size is replaced by
/// that answer, at most this often: answers that differ widely from each
/// other would otherwise replace it in turn at every GET.
const REFERENCE_KEPT_AT_LEAST: Duration = Duration::from_secs(60);

/// A body as [`Packer::pack`] leaves it: how it is kept, and the compressed
/// bytes when it is compressed (empty otherwise).
struct Packed {
    body: KeptBody,
    bytes: Vec<u8>,
}

impl Packed {
    fn whole(body: &Bytes) -> Self {
        Packed {
            body: KeptBody::Whole(body.clone()),
            bytes: Vec::new(),
        }
    }
}

#[cfg(test)]
impl Packed {
    fn stored_len(&self) -> usize {
        self.bytes.len() + self.body.whole_len()
    }
}

/// The answer kept bodies are compressed against: one at a time, so what the
/// keep holds stays bounded by its weight and this one body. An entry
/// compressed against an earlier one is not restored (a miss: the component
/// answers again).
struct Reference {
    generation: u64,
    body: Bytes,
    made: Instant,
}

/// Compresses kept bodies against the current [`Reference`] and restores
/// them.
#[derive(Default)]
struct Packer {
    reference: ArcSwapOption<Reference>,
    generations: AtomicU64,
}

impl Packer {
    /// `body` as kept: compressed against the reference (the first body
    /// packed becomes it), whole when it is large or compresses to no less.
    fn pack(&self, body: &Bytes) -> Packed {
        if body.len() > PACKED_MAX || body.is_empty() {
            return Packed::whole(body);
        }
        let reference = match self.reference.load_full() {
            Some(r) => {
                let packed = lz4_flex::block::compress_with_dict(body, &r.body);
                if packed.len() <= body.len() / 2 || r.made.elapsed() < REFERENCE_KEPT_AT_LEAST {
                    return Self::smaller(body, &r, packed);
                }
                self.replace(body)
            }
            None => self.replace(body),
        };
        let packed = lz4_flex::block::compress_with_dict(body, &reference.body);
        Self::smaller(body, &reference, packed)
    }

    /// Makes `body` the reference.
    fn replace(&self, body: &Bytes) -> Arc<Reference> {
        let reference = Arc::new(Reference {
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            body: body.clone(),
            made: Instant::now(),
        });
        self.reference.store(Some(reference.clone()));
        reference
    }

    fn smaller(body: &Bytes, reference: &Reference, packed: Vec<u8>) -> Packed {
        if packed.len() >= body.len() {
            return Packed::whole(body);
        }
        Packed {
            body: KeptBody::Against {
                reference: reference.generation,
                len: body.len() as u32,
            },
            bytes: packed,
        }
    }

    /// The body `body` keeps (`packed`: its compressed bytes); `None` when
    /// the reference it was compressed against was replaced since.
    fn body_of(&self, body: &KeptBody, packed: &[u8]) -> Option<Bytes> {
        let (reference, len) = match body {
            KeptBody::Whole(b) => return Some(b.clone()),
            KeptBody::Against { reference, len } => (*reference, *len as usize),
        };
        let current = self.reference.load();
        let r = current.as_ref().filter(|r| r.generation == reference)?;
        let whole = lz4_flex::block::decompress_with_dict(packed, len, &r.body)
            .ok()
            .filter(|b| b.len() == len)?;
        Some(Bytes::from(whole))
    }
}

/// How many version reads may wait for the reader thread; past that a read
/// goes to tokio's blocking pool (bounded too), so a stalled disk costs
/// threads, not an unbounded queue.
const READS_QUEUED: usize = 256;
/// The most reads answered from one store call.
const BATCH: usize = 64;

/// Reads the versions of configurations by key, in one go.
type Versions = Arc<dyn Fn(&[&str]) -> Result<Vec<Option<i64>>, String> + Send + Sync>;

/// One GET's read, waiting for the reader thread.
struct Read {
    key: String,
    answer: tokio::sync::oneshot::Sender<Result<Option<i64>, String>>,
}

/// A thread that reads configuration versions for the async side, the reads
/// that queued meanwhile together: one store call (for SQLite one read
/// transaction: its file locks are taken once) for a burst of GETs.
///
/// Hand-written rather than a crate: `tokio-rusqlite` and the like own a
/// SQLite connection and run one call at a time, where these reads go through
/// the [`Store`] trait (SQLite or PostgreSQL) in batches.
///
/// [`Store`]: crate::store::Store
struct Reader {
    queue: std::sync::mpsc::SyncSender<Read>,
    versions: Versions,
}

/// Answers `batch` from one call of `versions`; a call that panics answers
/// nothing (the callers see their answer dropped).
fn answer_batch(versions: &Versions, batch: &mut Vec<Read>) {
    let keys: Vec<&str> = batch.iter().map(|r| r.key.as_str()).collect();
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| versions(&keys)));
    drop(keys);
    match read {
        Ok(Ok(found)) if found.len() == batch.len() => {
            for (r, v) in batch.drain(..).zip(found) {
                let _ = r.answer.send(Ok(v));
            }
        }
        Ok(Ok(_)) => {
            for r in batch.drain(..) {
                let _ = r
                    .answer
                    .send(Err("the store answered another number of keys".into()));
            }
        }
        Ok(Err(e)) => {
            for r in batch.drain(..) {
                let _ = r.answer.send(Err(e.clone()));
            }
        }
        Err(_) => batch.clear(),
    }
}

impl Reader {
    fn start(versions: Versions) -> Self {
        let (queue, reads) = std::sync::mpsc::sync_channel::<Read>(READS_QUEUED);
        let reading = versions.clone();
        let spawned = std::thread::Builder::new()
            .name("tg-config-reads".into())
            // Ends when the sender goes (the gateway is dropped).
            .spawn(move || {
                crate::store::batch_scheduling();
                let mut batch = Vec::with_capacity(BATCH);
                while let Ok(first) = reads.recv() {
                    batch.push(first);
                    while batch.len() < BATCH {
                        match reads.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    answer_batch(&reading, &mut batch);
                }
            });
        if let Err(e) = spawned {
            // Every read then goes to the blocking pool (the queue's receiver is gone).
            tracing::warn!(error = %e, "no thread for configuration reads");
        }
        Self { queue, versions }
    }

    /// The version of the configuration stored under `key` (`None`: none),
    /// read on the reader thread (on the blocking pool when the thread is
    /// behind or gone); `Err` says why it could not be read.
    async fn version(&self, key: String) -> Result<Option<i64>, String> {
        let (answer, rx) = tokio::sync::oneshot::channel();
        if let Err(
            std::sync::mpsc::TrySendError::Full(read)
            | std::sync::mpsc::TrySendError::Disconnected(read),
        ) = self.queue.try_send(Read { key, answer })
        {
            let versions = self.versions.clone();
            // A panic drops the answer: `rx` says so below.
            let _ =
                tokio::task::spawn_blocking(move || answer_batch(&versions, &mut vec![read])).await;
        }
        rx.await
            .unwrap_or_else(|_| Err("the read failed (panicked)".into()))
    }
}

/// The strong entity tag of a configuration at `version` as `components` serve
/// a tenant with `record`.
fn entity_tag(version: i64, components: &HeaderValue, record: &[u8]) -> HeaderValue {
    let mut digest = sha2::Sha256::new();
    digest.update(components.as_bytes());
    digest.update([0]);
    digest.update(record);
    let digest = digest.finalize();
    let tag = format!("\"{version}-{}\"", hex::encode(&digest[..8]));
    HeaderValue::from_str(&tag).expect("an entity tag is a header value")
}

/// Whether `If-None-Match` names `etag` (weak comparison, `*` included).
fn not_modified(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(if_none_match) = request.typed_get::<headers::IfNoneMatch>() else {
        return false;
    };
    let Ok(etag) = etag.to_str().unwrap_or_default().parse::<headers::ETag>() else {
        return false;
    };
    !if_none_match.precondition_passes(&etag)
}

fn not_modified_answer(etag: HeaderValue, components: HeaderValue) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NOT_MODIFIED;
    resp.headers_mut().insert(ETAG, etag);
    resp.headers_mut()
        .insert(crate::wasm::COMPONENTS_HEADER, components);
    resp
}

impl ConfigReads {
    /// Answers a GET of `tenant`'s configuration: `run` is the component call,
    /// made only when no kept answer fits.
    pub(crate) async fn get<F>(
        &self,
        gw: &Gateway,
        tenant: &Arc<Tenant>,
        request: &HeaderMap,
        run: F,
    ) -> Response<Body>
    where
        F: Future<Output = Response<Body>>,
    {
        let components = gw.runtime.component_versions(Some(&tenant.key));
        let version = match self.reader.version(tenant.id.to_string()).await {
            Ok(v) => v.unwrap_or(0),
            Err(e) => return unreadable(e, tenant),
        };
        if let Some(kept) = self.kept.get(&tenant.id)
            && kept.version == version
            && kept.components == components
            && Arc::ptr_eq(&kept.tenant, tenant)
            && let Some(answer) = self.answer_kept(&kept, request, components.clone())
        {
            return answer;
        }
        let etag = entity_tag(version, &components, &tenant.record());
        if not_modified(request, &etag) {
            return not_modified_answer(etag, components);
        }
        let resp = run.await;
        if resp.status() != StatusCode::OK {
            return resp;
        }
        let (mut parts, body) = resp.into_parts();
        // The component's answer is whole already (`Body::from` bytes).
        let Ok(body) = http_body_util::BodyExt::collect(body).await else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The configuration could not be read",
                Some(&tenant.id.to_string()),
            );
        };
        let body = body.to_bytes();
        // Made from at least `version`: a write after the version was read
        // shows here and under a later tag too, never the other way round.
        if let Some(kept) = Kept::new(
            version,
            components,
            tenant.clone(),
            &etag,
            &parts.headers,
            self.packer.pack(&body),
        ) {
            self.kept.insert(tenant.id, Arc::new(kept));
        }
        parts.headers.insert(ETAG, etag);
        Response::from_parts(parts, Body::from(body))
    }

    /// The answer `kept` makes to `request` (304 when `If-None-Match` names
    /// its tag); `None` when it cannot be restored.
    fn answer_kept(
        &self,
        kept: &Kept,
        request: &HeaderMap,
        components: HeaderValue,
    ) -> Option<Response<Body>> {
        let etag = kept.etag()?;
        if not_modified(request, &etag) {
            return Some(not_modified_answer(etag, components));
        }
        let body = self.packer.body_of(&kept.body, kept.packed())?;
        let mut resp = Response::new(Body::from(body));
        let headers = resp.headers_mut();
        for (name, value) in kept.headers() {
            headers.append(
                HeaderName::from_bytes(name).ok()?,
                HeaderValue::from_bytes(value).ok()?,
            );
        }
        headers.insert(crate::wasm::COMPONENTS_HEADER, components);
        headers.insert(ETAG, etag);
        Some(resp)
    }
}

fn unreadable(e: impl std::fmt::Display, tenant: &Tenant) -> Response<Body> {
    tracing::error!(error = %e, "reading a configuration's version failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The configuration store is unavailable; retry shortly",
        Some(&tenant.id.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader whose store answers a key `n` with version `n`, records the
    /// size of each call and, for a key `hold`, waits until `gate` is sent to.
    fn test_reader(calls: Calls, gate: std::sync::mpsc::Receiver<()>) -> Reader {
        let gate = std::sync::Mutex::new(gate);
        Reader::start(Arc::new(move |keys: &[&str]| {
            calls.lock().unwrap().push(keys.len());
            if keys.contains(&"hold") {
                let _ = gate.lock().unwrap().recv();
            }
            if keys.contains(&"boom") {
                return Err("boom".into());
            }
            if keys.contains(&"panic") {
                panic!("a read panicked");
            }
            Ok(keys.iter().map(|k| k.parse().ok()).collect())
        }))
    }

    /// Queues a read of `key` straight onto the reader's queue.
    fn queue(reader: &Reader, key: &str) -> Answer {
        let (answer, rx) = tokio::sync::oneshot::channel();
        reader
            .queue
            .try_send(Read {
                key: key.into(),
                answer,
            })
            .unwrap_or_else(|_| panic!("the queue took no read"));
        rx
    }

    type Calls = Arc<std::sync::Mutex<Vec<usize>>>;
    type Answer = tokio::sync::oneshot::Receiver<Result<Option<i64>, String>>;

    /// A test reader whose thread is inside a store call (of the key `hold`)
    /// until the returned sender sends.
    async fn held_reader() -> (Reader, Calls, Answer, std::sync::mpsc::Sender<()>) {
        let calls = Calls::default();
        let (release, gate) = std::sync::mpsc::channel();
        let reader = test_reader(calls.clone(), gate);
        let held = queue(&reader, "hold");
        // The thread is in the store call once it is recorded.
        while calls.lock().unwrap().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        (reader, calls, held, release)
    }

    /// Reads that queued while the thread was busy are answered by one store
    /// call, each with its own key's version.
    #[tokio::test]
    async fn reads_that_queue_meanwhile_are_answered_together() {
        let (reader, calls, held, release) = held_reader().await;
        let waiting: Vec<_> = (1..=10).map(|n| queue(&reader, &n.to_string())).collect();
        release.send(()).unwrap();
        assert_eq!(held.await.unwrap(), Ok(None));
        for (n, rx) in (1..=10).zip(waiting) {
            assert_eq!(rx.await.unwrap(), Ok(Some(n)));
        }
        assert_eq!(*calls.lock().unwrap(), vec![1, 10]);
        assert_eq!(reader.version("42".into()).await, Ok(Some(42)));
    }

    /// A failed store call fails its reads with its error; one that panics
    /// fails them too, and the thread goes on.
    #[tokio::test]
    async fn failures_reach_the_reads_and_the_thread_goes_on() {
        let (_release, gate) = std::sync::mpsc::channel();
        let reader = test_reader(Default::default(), gate);
        assert_eq!(reader.version("boom".into()).await, Err("boom".into()));
        assert!(reader.version("panic".into()).await.is_err());
        assert_eq!(reader.version("7".into()).await, Ok(Some(7)));
    }

    /// With the thread stuck and its queue full, a read still answers (from
    /// the blocking pool): the queue never grows past its bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_reader_with_a_full_queue_does_not_hold_reads() {
        let (reader, _calls, _held, release) = held_reader().await;
        let mut queued = Vec::new();
        while let Ok(()) = {
            let (answer, rx) = tokio::sync::oneshot::channel();
            queued.push(rx);
            reader.queue.try_send(Read {
                key: "1".into(),
                answer,
            })
        } {
            assert!(queued.len() <= READS_QUEUED, "the queue is unbounded");
        }
        assert_eq!(queued.len() - 1, READS_QUEUED);
        let answered = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            reader.version("7".into()),
        )
        .await
        .expect("a read waited for the stuck thread");
        assert_eq!(answered, Ok(Some(7)));
        release.send(()).unwrap();
        // Everything queued is answered once the thread goes on.
        for rx in queued.into_iter().take(READS_QUEUED) {
            assert_eq!(rx.await.unwrap(), Ok(Some(1)));
        }
    }

    /// A configuration answer as the config-API component writes them.
    fn answer(tenant: &str, cache_mb: u32) -> Bytes {
        Bytes::from(format!(
            "{{\"tenant_id\":\"{tenant}\",\"performance\":{{\"cache_size_mb\":{cache_mb},\
             \"max_parallel_workers\":8,\"enable_query_optimization\":true}},\"security\":\
             {{\"encryption_at_rest\":true,\"encryption_algorithm\":\"AES-256-GCM\",\
             \"allowed_ips\":[]}},\"custom_settings\":{{}},\"updated_at\":\"2026-12-07T10:11:40Z\"}}"
        ))
    }

    #[test]
    fn kept_bodies_are_compressed_against_the_first_and_come_back_whole() {
        let packer = Packer::default();
        let first = answer("fbf28626-e879-52ca-8515-977fdae943f6", 1024);
        let second = answer("0c1d4a55-2b8e-5f3a-9d44-61a0c3e5b7f2", 2048);
        let first_kept = packer.pack(&first);
        let second_kept = packer.pack(&second);
        assert!(
            second_kept.stored_len() * 3 < second.len(),
            "{} of {} bytes",
            second_kept.stored_len(),
            second.len()
        );
        assert_eq!(
            packer.body_of(&first_kept.body, &first_kept.bytes),
            Some(first)
        );
        assert_eq!(
            packer.body_of(&second_kept.body, &second_kept.bytes),
            Some(second)
        );
        // Large and empty bodies are kept as they are.
        let large = Bytes::from(vec![b'x'; PACKED_MAX + 1]);
        assert!(matches!(packer.pack(&large).body, KeptBody::Whole(b) if b == large));
        assert!(matches!(packer.pack(&Bytes::new()).body, KeptBody::Whole(b) if b.is_empty()));
    }

    #[test]
    fn an_unlike_body_replaces_only_an_old_reference_and_outdates_what_used_it() {
        let packer = Packer::default();
        let kept = packer.pack(&answer("a", 1));
        // Nothing in common with the reference, which is young: kept against
        // it all the same (as it is, when that is no smaller).
        let unlike: Bytes = (0..600u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let unlike_kept = packer.pack(&unlike);
        assert_eq!(
            packer
                .body_of(&unlike_kept.body, &unlike_kept.bytes)
                .as_ref(),
            Some(&unlike)
        );
        assert_eq!(
            packer.body_of(&kept.body, &kept.bytes),
            Some(answer("a", 1))
        );
        // Once the reference is old, the unlike body replaces it: what was
        // kept against the old one is a miss, never another body.
        let old = packer.reference.load_full().unwrap();
        packer.reference.store(Some(Arc::new(Reference {
            generation: old.generation,
            body: old.body.clone(),
            made: Instant::now() - REFERENCE_KEPT_AT_LEAST - Duration::from_secs(1),
        })));
        let again = packer.pack(&unlike);
        assert!(again.stored_len() < unlike.len() / 4);
        assert_eq!(packer.body_of(&again.body, &again.bytes), Some(unlike));
        assert_eq!(packer.body_of(&kept.body, &kept.bytes), None);
    }

    #[test]
    fn a_kept_answer_gives_back_its_tag_headers_and_body() {
        let packer = Packer::default();
        let body = answer("fbf28626-e879-52ca-8515-977fdae943f6", 1024);
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            crate::wasm::COMPONENTS_HEADER,
            HeaderValue::from_static("config-api=aaa"),
        );
        headers.append("x-note", HeaderValue::from_static("one"));
        headers.append("x-note", HeaderValue::from_static(""));
        headers.insert(ETAG, HeaderValue::from_static("\"stale\""));
        let etag = HeaderValue::from_static("\"3-0123456789abcdef\"");
        let data = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(data.path()).unwrap();
        let (dir, _) = crate::tenancy::Directory::sample(&store);
        let tenant = dir.get("Tenant1").expect("the sample's tenant").clone();
        let kept = Kept::new(
            3,
            HeaderValue::from_static("config-api=aaa"),
            tenant.clone(),
            &etag,
            &headers,
            packer.pack(&body),
        )
        .expect("kept");
        assert_eq!(kept.etag(), Some(etag));
        let kept_headers: Vec<_> = kept.headers().collect();
        assert_eq!(
            kept_headers,
            [
                (&b"content-type"[..], &b"application/json"[..]),
                (b"x-note", b"one"),
                (b"x-note", b""),
            ]
        );
        assert_eq!(packer.body_of(&kept.body, kept.packed()), Some(body));
        // A header longer than two bytes can count is not kept.
        headers.insert(
            "x-long",
            HeaderValue::from_bytes(&vec![b'a'; 70_000]).unwrap(),
        );
        assert!(
            Kept::new(
                3,
                HeaderValue::from_static("x"),
                dir.get("Tenant1").expect("the sample's tenant").clone(),
                &HeaderValue::from_static("\"t\""),
                &headers,
                Packed::whole(&Bytes::new()),
            )
            .is_none()
        );
    }

    #[test]
    fn tags_name_the_version_the_components_and_the_record() {
        let a = HeaderValue::from_static("config-api=aaa, validator=bbb, feature-gate=ccc");
        let b = HeaderValue::from_static("config-api=aaa, validator=bbd, feature-gate=ccc");
        let t = entity_tag(3, &a, b"{\"tier\":\"Pro\"}");
        assert!(t.to_str().unwrap().starts_with("\"3-"), "{t:?}");
        assert_eq!(t, entity_tag(3, &a, b"{\"tier\":\"Pro\"}"));
        assert_ne!(t, entity_tag(4, &a, b"{\"tier\":\"Pro\"}"));
        assert_ne!(t, entity_tag(3, &b, b"{\"tier\":\"Pro\"}"));
        assert_ne!(t, entity_tag(3, &a, b"{\"tier\":\"Basic\"}"));
    }

    #[test]
    fn if_none_match_is_compared_weakly_and_star_matches() {
        let tag = entity_tag(1, &HeaderValue::from_static("x"), b"r");
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::IF_NONE_MATCH,
                HeaderValue::from_str(v).unwrap(),
            );
            h
        };
        let text = tag.to_str().unwrap().to_owned();
        assert!(not_modified(&with(&text), &tag));
        assert!(not_modified(&with(&format!("W/{text}")), &tag));
        assert!(not_modified(&with(&format!("\"other\", {text}")), &tag));
        assert!(not_modified(&with("*"), &tag));
        assert!(!not_modified(&with("\"other\""), &tag));
        assert!(!not_modified(&with("garbage"), &tag));
        assert!(!not_modified(&HeaderMap::new(), &tag));
    }
}
