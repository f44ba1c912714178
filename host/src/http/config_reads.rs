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
//! The version reads run on one thread of their own ([`Reader`]), in turn:
//! handed to tokio's blocking pool, each GET woke a pool thread of its own and
//! two context switches were a third of a GET's CPU; queued to one thread, a
//! burst of GETs is read in one wake-up.

use super::{Body, Gateway, error};
use crate::tenancy::Tenant;
use bytes::Bytes;
use headers::HeaderMapExt;
use http::header::{ETAG, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use sha2::Digest;
use std::sync::Arc;
use uuid::Uuid;

/// How many bytes of answers are kept (the weight of an entry is its body).
const KEPT_BYTES: u64 = 8 << 20;
use crate::store::CONFIGS_BUCKET as CONFIGS;

/// One kept answer and the state it was made from.
struct Kept {
    /// The configuration's version in the store (0: none stored).
    version: i64,
    /// The components that made it (`x-tg-components`).
    components: HeaderValue,
    /// The tenant record it saw.
    record: Bytes,
    etag: HeaderValue,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct BodySize;

impl quick_cache::Weighter<Uuid, Arc<Kept>> for BodySize {
    fn weight(&self, _: &Uuid, kept: &Arc<Kept>) -> u64 {
        kept.body.len() as u64 + 256
    }
}

/// The kept answers of config GETs, by tenant.
pub(crate) struct ConfigReads {
    kept: quick_cache::sync::Cache<Uuid, Arc<Kept>, BodySize>,
    reader: Reader,
}

impl Default for ConfigReads {
    fn default() -> Self {
        Self {
            kept: quick_cache::sync::Cache::with_weighter(4096, KEPT_BYTES, BodySize),
            reader: Reader::start(),
        }
    }
}

/// How many version reads may wait for the reader thread; past that a read
/// goes to tokio's blocking pool (bounded too), so a stalled disk costs
/// threads, not an unbounded queue.
const READS_QUEUED: usize = 256;

type Read = Box<dyn FnOnce() + Send>;

/// A thread that runs store reads one after another, for the async side.
///
/// Hand-written rather than a crate: `tokio-rusqlite` and the like own a
/// SQLite connection, where these reads go through the [`Store`] trait
/// (SQLite or PostgreSQL); what is needed is a queue and a loop.
///
/// [`Store`]: crate::store::Store
struct Reader {
    queue: std::sync::mpsc::SyncSender<Read>,
}

/// Asks the kernel not to run this thread the moment it is woken
/// (`SCHED_BATCH`: a fair share of the CPU as before, no wake-up preemption).
/// A GET queues its read and goes on; the thread runs when the worker that
/// queued it waits or its time slice ends, and reads what queued meanwhile in
/// one go. Woken preemptively, it switched in and out once for every read.
fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid `sched_param` for the duration of the
        // call; pid 0 is the calling thread.
        #[allow(unsafe_code)]
        let failed = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0;
        if failed {
            tracing::debug!(error = %std::io::Error::last_os_error(), "SCHED_BATCH refused");
        }
    }
}

impl Reader {
    fn start() -> Self {
        let (queue, reads) = std::sync::mpsc::sync_channel::<Read>(READS_QUEUED);
        let spawned = std::thread::Builder::new()
            .name("tg-config-reads".into())
            // Ends when the sender goes (the gateway is dropped).
            .spawn(move || {
                batch_scheduling();
                for read in reads {
                    // A read that panics answers nothing (its caller sees
                    // that); the thread goes on with the next.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
                }
            });
        if let Err(e) = spawned {
            // Every read then goes to the blocking pool (the queue's receiver is gone).
            tracing::warn!(error = %e, "no thread for configuration reads");
        }
        Self { queue }
    }

    /// Runs `read` on the reader thread (on the blocking pool when the thread
    /// is behind or gone); `None` if it panicked.
    async fn run<T: Send + 'static>(&self, read: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Read = Box::new(move || {
            let _ = tx.send(read());
        });
        if let Err(
            std::sync::mpsc::TrySendError::Full(job)
            | std::sync::mpsc::TrySendError::Disconnected(job),
        ) = self.queue.try_send(job)
        {
            // A panic drops the sender: `rx` says so below.
            let _ = tokio::task::spawn_blocking(job).await;
        }
        rx.await.ok()
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
        let components = gw.runtime.component_versions(Some(&tenant.name.key()));
        let store = gw.runtime.shared().store.clone();
        let key = tenant.id.to_string();
        let version = match self.reader.run(move || store.version(CONFIGS, &key)).await {
            Some(Ok(v)) => v.unwrap_or(0),
            Some(Err(e)) => return unreadable(e, tenant),
            None => return unreadable("the read panicked", tenant),
        };
        if let Some(kept) = self.kept.get(&tenant.id)
            && kept.version == version
            && kept.components == components
            && kept.record == tenant.record
        {
            if not_modified(request, &kept.etag) {
                return not_modified_answer(kept.etag.clone(), components);
            }
            let mut resp = Response::new(Body::from(kept.body.clone()));
            *resp.headers_mut() = kept.headers.clone();
            return resp;
        }
        let etag = entity_tag(version, &components, &tenant.record);
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
        parts.headers.insert(ETAG, etag.clone());
        // Made from at least `version`: a write after the version was read
        // shows here and under a later tag too, never the other way round.
        self.kept.insert(
            tenant.id,
            Arc::new(Kept {
                version,
                components,
                record: tenant.record.clone(),
                etag,
                headers: parts.headers.clone(),
                body: body.clone(),
            }),
        );
        Response::from_parts(parts, Body::from(body))
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

    /// Reads answer in turn on the reader's thread; one that panics answers
    /// nothing and the thread goes on.
    #[tokio::test]
    async fn reads_run_on_the_reader_thread_and_survive_a_panic() {
        let reader = Reader::start();
        let name = || std::thread::current().name().map(str::to_owned);
        assert_eq!(
            reader.run(name).await,
            Some(Some("tg-config-reads".to_owned()))
        );
        assert_eq!(reader.run(|| -> u8 { panic!("a read failed") }).await, None);
        assert_eq!(
            reader.run(name).await,
            Some(Some("tg-config-reads".to_owned()))
        );
    }

    /// With the thread stuck and its queue full, a read still answers (from
    /// the blocking pool): the queue never grows past its bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_reader_with_a_full_queue_does_not_hold_reads() {
        let reader = Reader::start();
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        reader
            .queue
            .try_send(Box::new(move || {
                started.send(()).unwrap();
                let _ = stuck.recv();
            }))
            .unwrap();
        running.recv().unwrap();
        let mut queued = 0;
        while reader.queue.try_send(Box::new(|| {})).is_ok() {
            queued += 1;
            assert!(queued <= READS_QUEUED, "the queue is unbounded");
        }
        assert_eq!(queued, READS_QUEUED);
        let name = || std::thread::current().name().map(str::to_owned);
        let answered = tokio::time::timeout(std::time::Duration::from_secs(30), reader.run(name))
            .await
            .expect("a read waited for the stuck thread");
        assert_ne!(answered, Some(Some("tg-config-reads".to_owned())));
        assert!(answered.is_some());
        release.send(()).unwrap();
        // Once it has worked through its queue, the thread takes reads again.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while reader.run(name).await != Some(Some("tg-config-reads".to_owned())) {
            assert!(
                std::time::Instant::now() < deadline,
                "the thread never came back"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
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
