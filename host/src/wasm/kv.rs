//! `wasi:keyvalue` (store + atomics) for the config API component, over the
//! gateway's store. Two buckets exist:
//! - `tenants`: read-only view of the tenant directory; a key is a tenant's UUID
//!   or its name (any case); the value is the tenant's public record (no secrets).
//! - `configs`: tenant configurations in the persistent store, with
//!   compare-and-swap so concurrent updates of one tenant never lose a write.

use super::ApiState;
use super::bindings::api::wasi::keyvalue::{atomics, store};
use crate::store::{
    Change, Expect, RecordedWrite, Store, StoreError, Subject, Versioned, Written,
    write_recorded_async,
};
use std::sync::Arc;
use wasmtime::component::Resource;

/// The buckets a component may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// The tenant directory (read-only).
    Tenants,
    /// Tenant configurations.
    Configs,
}

impl Bucket {
    fn name(self) -> &'static str {
        match self {
            Bucket::Tenants => "tenants",
            Bucket::Configs => "configs",
        }
    }
}

/// A compare-and-swap handle: the key and the version read when it was made.
#[derive(Debug)]
pub struct Cas {
    bucket: Bucket,
    key: String,
    current: Option<Versioned>,
}

/// Most keys one `list-keys` call returns.
const PAGE: usize = 1000;

fn store_error(e: StoreError) -> store::Error {
    tracing::error!(error = %e, "key-value store failure");
    store::Error::Other("storage failure".into())
}

/// Guests' store calls at once: as many as the store's pool has connections.
/// More would only wait for one, each holding a blocking thread of its own:
/// 16 connections' config GETs missing their kept answers at once kept 28
/// threads in the process after the load, against 20 with this bound.
static GUEST_STORE_CALLS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(crate::store::POOL_SIZE as usize);

async fn blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, store::Error> {
    let store = store.clone();
    let Ok(_turn) = GUEST_STORE_CALLS.acquire().await else {
        return Err(store::Error::Other("storage closed".into()));
    };
    match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
        Ok(r) => r.map_err(store_error),
        Err(e) => Err(store::Error::Other(format!("storage task failed: {e}"))),
    }
}

impl ApiState {
    fn bucket(&self, r: &Resource<Bucket>) -> wasmtime::Result<Bucket> {
        Ok(*self.table.get(r)?)
    }

    /// Guests may write `configs` only; `tenants` is the directory's read-only view.
    fn ensure_writable(bucket: Bucket) -> Result<(), store::Error> {
        match bucket {
            Bucket::Tenants => Err(store::Error::AccessDenied),
            Bucket::Configs => Ok(()),
        }
    }

    /// Reads a key; the returned future does not borrow `self`.
    fn read(
        &self,
        bucket: Bucket,
        key: String,
    ) -> impl Future<Output = Result<Option<Versioned>, store::Error>> + Send + 'static {
        let shared = self.shared.clone();
        async move {
            match bucket {
                Bucket::Tenants => Ok(shared.directory.load().get(&key).map(|t| Versioned {
                    value: t.record(),
                    version: 0,
                })),
                Bucket::Configs => {
                    blocking(&shared.store, move |s| s.get(Bucket::Configs.name(), &key)).await
                }
            }
        }
    }
}

impl ApiState {
    /// The configuration of `key` this update's queue wrote last, if it has it.
    fn remembered(&self, bucket: Bucket, key: &str) -> Option<Versioned> {
        let written = self.turn.as_deref()?.as_ref()?;
        (bucket == Bucket::Configs && written.key == key).then(|| written.current.clone())
    }

    /// Writes (or removes) a configuration and records the change with it.
    /// `Ok(None)`: the key was not as expected; else its new version. An
    /// update's queue remembers what it wrote (and forgets the key when the
    /// write failed or removed it), and the update gives its turn up once
    /// the write is applied; the request's answer waits until the write is
    /// durable (`ApiState::durable`).
    async fn write_config(
        &mut self,
        key: String,
        expected: Expect,
        before: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    ) -> Result<Option<i64>, store::Error> {
        let name = self
            .shared
            .directory
            .load()
            .get(&key)
            .map(|t| t.name.to_string())
            .unwrap_or_else(|| key.clone());
        let validator = self.validator();
        let baseline = before
            .as_deref()
            .or_else(|| validator.defaults.get().map(|d| d.as_bytes()));
        let fields = crate::store::changed_fields(baseline, value.as_deref());
        let change = Change {
            tenant_id: key.clone(),
            tenant_name: name,
            at: crate::now_rfc3339(),
            principal: self.principal.clone(),
            subject: Subject::Config,
            action: match (&before, &value) {
                (_, None) => "deleted",
                (None, Some(_)) => "created",
                (Some(_), Some(_)) => "updated",
            }
            .into(),
            fields,
            before,
        };
        let more = self.turn.as_ref().is_some_and(|t| t.others() > 0);
        let write = RecordedWrite {
            bucket: Bucket::Configs.name().to_owned(),
            key: key.clone(),
            expected,
            value,
            change,
        };
        let value = write.value.clone();
        let version = write_recorded_async(&self.shared.store, write, more)
            .await
            .map_err(store_error)
            .map(|(version, durable)| {
                if let Some(durable) = durable {
                    self.durable
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(durable);
                }
                version
            });
        let Some(turn) = self.turn.as_deref_mut() else {
            return version;
        };
        match (&version, value) {
            (Ok(Some(version)), Some(value)) => {
                *turn = Some(Written {
                    key,
                    current: Versioned {
                        value,
                        version: *version,
                    },
                });
                // The next update of the tenant starts from this one while
                // it is made durable.
                self.turn = None;
            }
            _ => {
                // Only forget what was kept for this key: a failed write of
                // another key says nothing of it.
                if turn.as_ref().is_some_and(|w| w.key == key) {
                    *turn = None;
                }
            }
        }
        version
    }
}

impl store::Host for ApiState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        let bucket = match identifier.as_str() {
            "tenants" => Bucket::Tenants,
            "configs" => Bucket::Configs,
            _ => return Ok(Err(store::Error::NoSuchStore)),
        };
        Ok(Ok(self.table.push(bucket)?))
    }
}

impl store::HostBucket for ApiState {
    async fn get(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let bucket = self.bucket(&this)?;
        Ok(self.read(bucket, key).await.map(|v| v.map(|v| v.value)))
    }

    async fn set(
        &mut self,
        this: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let bucket = self.bucket(&this)?;
        if let Err(e) = Self::ensure_writable(bucket) {
            return Ok(Err(e));
        }
        let before = match self.read(bucket, key.clone()).await {
            Ok(v) => v.map(|v| v.value),
            Err(e) => return Ok(Err(e)),
        };
        Ok(self
            .write_config(key, Expect::Any, before, Some(value))
            .await
            .map(drop))
    }

    async fn delete(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let bucket = self.bucket(&this)?;
        if let Err(e) = Self::ensure_writable(bucket) {
            return Ok(Err(e));
        }
        let before = match self.read(bucket, key.clone()).await {
            Ok(Some(v)) => v.value,
            Ok(None) => return Ok(Ok(())),
            Err(e) => return Ok(Err(e)),
        };
        Ok(self
            .write_config(key, Expect::Any, Some(before), None)
            .await
            .map(drop))
    }

    async fn exists(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let bucket = self.bucket(&this)?;
        Ok(self.read(bucket, key).await.map(|v| v.is_some()))
    }

    async fn list_keys(
        &mut self,
        this: Resource<Bucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let bucket = self.bucket(&this)?;
        let page = match bucket {
            Bucket::Tenants => {
                // Tenant records are listed once each, by UUID.
                let dir = self.shared.directory.load();
                let mut keys: Vec<String> = dir.iter().map(|t| t.id.to_string()).collect();
                keys.sort();
                keys.retain(|k| cursor.as_deref().is_none_or(|c| k.as_str() > c));
                let next = (keys.len() > PAGE).then(|| keys[PAGE - 1].clone());
                keys.truncate(PAGE);
                Ok(crate::store::KeyPage { keys, cursor: next })
            }
            Bucket::Configs => {
                blocking(&self.shared.store, move |s| {
                    s.list_keys(bucket.name(), cursor.as_deref(), PAGE)
                })
                .await
            }
        };
        Ok(page.map(|p| store::KeyResponse {
            keys: p.keys,
            cursor: p.cursor,
        }))
    }

    async fn drop(&mut self, this: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl atomics::Host for ApiState {
    async fn increment(
        &mut self,
        _bucket: Resource<Bucket>,
        _key: String,
        _delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        // No bucket here holds counters; say so rather than invent an encoding.
        Ok(Err(store::Error::Other(
            "increment is not supported by this store".into(),
        )))
    }

    async fn swap(
        &mut self,
        this: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let cas = self.table.delete(this)?;
        if let Err(e) = Self::ensure_writable(cas.bucket) {
            return Ok(Err(atomics::CasError::StoreError(e)));
        }
        // The version and the value the guest read: a version alone can
        // match another value when the key was deleted and written again
        // since (the value may be one this queue remembered from an earlier
        // request).
        let expected = cas.current.as_ref().map_or(Expect::Absent, Expect::same);
        let before = cas.current.as_ref().map(|v| v.value.clone());
        let swapped = self
            .write_config(cas.key.clone(), expected, before, Some(value))
            .await;
        Ok(match swapped {
            Ok(Some(_)) => Ok(()),
            Ok(None) => {
                // Hand back a fresh handle on the key so the guest may retry.
                let current = match self.read(cas.bucket, cas.key.clone()).await {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(atomics::CasError::StoreError(e))),
                };
                let fresh = self.table.push(Cas {
                    bucket: cas.bucket,
                    key: cas.key,
                    current,
                })?;
                Err(atomics::CasError::CasFailed(fresh))
            }
            Err(e) => Err(atomics::CasError::StoreError(e)),
        })
    }
}

impl atomics::HostCas for ApiState {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, store::Error>> {
        let bucket = self.bucket(&bucket)?;
        let current = match self.remembered(bucket, &key) {
            Some(written) => Some(written),
            None => match self.read(bucket, key.clone()).await {
                Ok(v) => v,
                Err(e) => return Ok(Err(e)),
            },
        };
        Ok(Ok(self.table.push(Cas {
            bucket,
            key,
            current,
        })?))
    }

    async fn current(
        &mut self,
        this: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let cas = self.table.get(&this)?;
        Ok(Ok(cas.current.as_ref().map(|v| v.value.clone())))
    }

    async fn drop(&mut self, this: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// However many guests call the store at once, no more calls run than
    /// the connection pools hold; the rest wait their turn and all finish.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn guests_store_calls_run_at_most_a_pool_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::SqliteStore::open(dir.path()).unwrap());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let calls = (0..32).map(|i| {
            let (store, running, most) = (store.clone(), running.clone(), most.clone());
            tokio::spawn(async move {
                blocking(&store, move |s| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // Long enough for every call to be waiting meanwhile.
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                    s.get("configs", &format!("key-{i}"))
                })
                .await
            })
        });
        for call in calls.collect::<Vec<_>>() {
            assert!(call.await.unwrap().is_ok());
        }
        let most = most.load(Ordering::SeqCst);
        assert!((2..=8).contains(&most), "{most} store calls at once");
    }
}
