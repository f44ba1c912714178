//! The component registry: which component serves each slot, where it came
//! from and the version before it, kept so a restart serves the same.
//! Components arrive three ways: built in, as files of the watched
//! components directory, and through `/_components` ([`crate::api::components`]).
//!
//! Every arrival goes through [`Runtime::load`] (checks, compile or cached
//! artifact, type check, self-test, one atomic swap); a refused component
//! leaves the running one in place. The bytes of every version loaded from a
//! file or an upload are kept by hash under `<data-dir>/registry/`, so a
//! rollback or a restart never needs the original file.
//!
//! The registry's own record sits beside those bytes, in
//! `<data-dir>/registry/state.json`: each instance has its data directory and
//! its components directory. What operators do through `/_components`, though,
//! is shared through the store, so every instance sharing it follows: each
//! upload, delete or rollback writes the slot's wanted component (its bytes kept
//! in the store by hash) to one shared record, and each instance looks at that
//! record on every watch tick and loads what changed, through the same checks.

use crate::wasm::{ComponentInfo, LoadError, Runtime, Slot, Source};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Store bucket and key where earlier versions kept the registry's state: read
/// once when `state.json` does not exist yet.
const LEGACY_BUCKET: &str = "_registry";
const LEGACY_KEY: &str = "state";
/// The registry's state file, under the blobs directory.
const STATE_FILE: &str = "state.json";

/// How often the components directory is looked at. A file is read once two
/// looks agree on its size and modification time (never half-written).
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// One version of a slot, as the registry remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Version {
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: usize,
    /// `builtin`, `api` or `directory:<file>`.
    pub source: String,
    /// When it was loaded (RFC 3339).
    #[schema(format = DateTime)]
    pub loaded_at: String,
}

impl Version {
    fn of(info: &ComponentInfo) -> Self {
        Self {
            sha256: info.sha256.clone(),
            size: info.size,
            source: info.source.to_string(),
            loaded_at: info.loaded_at.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SlotState {
    /// What serves the slot (`None`: a tenant slot emptied; everyone's serves).
    current: Option<Version>,
    /// What served it before, for rollback.
    previous: Option<Version>,
    /// Versions before the previous one, newest first, while
    /// `Limits.KeptComponentVersions` is over 2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    older: Vec<Version>,
}

impl SlotState {
    /// The versions rollback can reach, newest first.
    fn earlier(&self) -> impl Iterator<Item = &Version> {
        self.previous.iter().chain(&self.older)
    }

    /// Makes `v` the newest earlier version (once), keeping at most `kept - 1`
    /// earlier versions in all (`kept` counts the current one).
    fn push_earlier(&mut self, v: Version, kept: usize) {
        let mut all = vec![v];
        for e in self.previous.take().into_iter().chain(self.older.drain(..)) {
            if all.iter().all(|a| a.sha256 != e.sha256) {
                all.push(e);
            }
        }
        all.truncate(kept.saturating_sub(1).max(1));
        self.set_earlier(all);
    }

    /// Drops `sha256` from the earlier versions (it serves now).
    fn drop_earlier(&mut self, sha256: &str) {
        let all = self
            .previous
            .take()
            .into_iter()
            .chain(self.older.drain(..))
            .filter(|e| e.sha256 != sha256)
            .collect();
        self.set_earlier(all);
    }

    fn set_earlier(&mut self, all: Vec<Version>) {
        let mut all = all.into_iter();
        self.previous = all.next();
        self.older = all.collect();
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    /// By slot name (`validator`, `validator@tenant1`, …).
    slots: BTreeMap<String, SlotState>,
    /// Files of the components directory already acted on: name → SHA-256.
    files: BTreeMap<String, String>,
    /// Version of the shared record last looked at (not kept: a restart looks
    /// at the whole record again and loads only what differs).
    #[serde(skip)]
    shared_version: i64,
    /// The shared record's wanted component per slot as last acted on.
    #[serde(skip)]
    shared: BTreeMap<String, Option<String>>,
}

/// Store bucket of what `/_components` changes: `wanted` (the shared record)
/// and the uploaded bytes by SHA-256.
const SHARED_BUCKET: &str = "_components";
const WANTED_KEY: &str = "wanted";
/// Tries of the shared record's compare-and-swap before giving up.
const SHARE_TRIES: usize = 16;

/// The shared record: per slot, the SHA-256 of the component wanted, or `None`
/// for the default (built-in, or everyone's for a tenant slot).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Wanted {
    slots: BTreeMap<String, Option<String>>,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The component was refused; the running one stays.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Nothing to roll back to.
    #[error("{0} has no previous version to roll back to")]
    NoPrevious(String),
    /// No kept version of the slot has that SHA-256 (or it names more than one).
    #[error("no kept version of {1} has the SHA-256 {0} (give 12 hex digits or more)")]
    NotKept(String, String),
    /// The bytes of a remembered version are gone.
    #[error("the bytes of version {0} are no longer kept")]
    Missing(String),
    /// Reading or writing the registry's files or state failed.
    #[error("registry storage failed: {0}")]
    Storage(String),
}

/// A slot as `GET /_components` shows it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// What serves it.
    pub info: ComponentInfo,
    /// What served it before (rollback target).
    pub previous: Option<Version>,
    /// Every version rollback can reach, newest (the previous) first.
    pub kept: Vec<Version>,
}

/// The registry of one gateway.
pub struct Registry {
    rt: Arc<Runtime>,
    store: Arc<dyn crate::store::Store>,
    disk: Arc<Disk>,
    dir: Option<PathBuf>,
    state: tokio::sync::Mutex<State>,
    /// Versions kept per slot, the serving one included
    /// (`Limits.KeptComponentVersions`, at least 2).
    kept: usize,
    metrics: Metrics,
}

fn storage(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Storage(e.to_string())
}

impl Registry {
    /// Opens the registry: loads what it served before the last stop, then the
    /// components directory's new or changed files. Refused components are
    /// logged and the built-in ones serve their slots.
    pub async fn open(
        rt: Arc<Runtime>,
        data_dir: &Path,
        dir: Option<PathBuf>,
        metrics: Metrics,
    ) -> anyhow::Result<Arc<Self>> {
        let blobs = data_dir.join("registry");
        let kept_versions = rt.limits().kept_component_versions.max(2);
        let saved = match std::fs::read(blobs.join(STATE_FILE)) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let store = rt.shared().store.clone();
                tokio::task::spawn_blocking(move || store.get(LEGACY_BUCKET, LEGACY_KEY))
                    .await??
                    .map(|v| v.value)
            }
            Err(e) => anyhow::bail!("reading the component registry state: {e}"),
        };
        let state: State = match saved {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "component registry state unreadable; starting afresh");
                State::default()
            }),
            None => State::default(),
        };
        if let Some(d) = &dir {
            std::fs::create_dir_all(d)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", d.display()))?;
        }
        let registry = Arc::new(Self {
            store: rt.shared().store.clone(),
            disk: Arc::new(Disk {
                blobs,
                rt: rt.clone(),
            }),
            rt,
            dir,
            state: tokio::sync::Mutex::new(state.clone()),
            kept: kept_versions,
            metrics,
        });
        for (name, slot_state) in &state.slots {
            let (Ok(slot), Some(v)) = (Slot::parse(name), &slot_state.current) else {
                continue;
            };
            if v.source == "builtin" {
                continue;
            }
            let result = match registry.bytes_of(&slot, v).await {
                Ok(bytes) => registry
                    .rt
                    .load(slot, bytes, source_of(&v.source))
                    .await
                    .map_err(RegistryError::from),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(slot = %name, error = %e, "could not load the registered component; the default serves");
            }
        }
        registry.scan(None).await;
        registry.follow_shared().await;
        Ok(registry)
    }

    /// Runs `f` on the registry's files off the async workers.
    async fn on_disk<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Disk) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || f(&disk))
            .await
            .map_err(storage)?
    }

    /// The bytes of a remembered version.
    async fn bytes_of(&self, slot: &Slot, v: &Version) -> Result<Bytes, RegistryError> {
        if v.source == "builtin" {
            return Ok(Bytes::from_static(slot.kind.builtin()));
        }
        let sha = v.sha256.clone();
        self.on_disk(move |d| d.kept(&sha)).await
    }

    /// Writes `state` (and deletes the kept bytes it no longer reaches).
    async fn save(&self, state: &State) -> Result<(), RegistryError> {
        let text = serde_json::to_vec_pretty(state).map_err(storage)?;
        let reachable: std::collections::HashSet<String> = state
            .slots
            .values()
            .flat_map(|s| s.current.iter().chain(s.earlier()))
            .map(|v| v.sha256.clone())
            .collect();
        self.on_disk(move |d| {
            crate::write_whole(&d.blobs.join(STATE_FILE), &text).map_err(storage)?;
            d.forget_unreachable(&reachable);
            Ok(())
        })
        .await
    }

    /// Records that `info` now serves its slot; what served it before
    /// (`before`, when the registry had no record of it) becomes the previous.
    fn record(&self, state: &mut State, info: &ComponentInfo, before: Option<&ComponentInfo>) {
        let entry = state.slots.entry(info.slot.to_string()).or_default();
        let next = Version::of(info);
        let current = entry.current.take().or_else(|| before.map(Version::of));
        if let Some(c) = current.filter(|c| c.sha256 != next.sha256) {
            entry.push_earlier(c, self.kept);
        }
        entry.drop_earlier(&next.sha256);
        entry.current = Some(next);
    }

    /// What serves exactly `slot` now (not everyone's for a tenant slot).
    fn serving(&self, slot: &Slot) -> Option<ComponentInfo> {
        self.rt
            .snapshot()
            .components()
            .into_iter()
            .find(|c| &c.slot == slot)
    }

    /// Loads `bytes` into `slot` and records it.
    pub async fn put(
        &self,
        slot: Slot,
        bytes: Bytes,
        source: Source,
    ) -> Result<ComponentInfo, RegistryError> {
        let mut state = self.state.lock().await;
        let shared = source == Source::Api;
        let info = self
            .put_locked(&mut state, slot, bytes.clone(), source)
            .await?;
        if shared {
            self.share(&mut state, &info.slot, Some((&info.sha256, bytes)))
                .await?;
        }
        Ok(info)
    }

    async fn put_locked(
        &self,
        state: &mut State,
        slot: Slot,
        bytes: Bytes,
        source: Source,
    ) -> Result<ComponentInfo, RegistryError> {
        let before = self.serving(&slot);
        let info = self.rt.load(slot, bytes.clone(), source).await?;
        if info.source != Source::Builtin {
            let sha = info.sha256.clone();
            self.on_disk(move |d| d.keep(&sha, &bytes)).await?;
        }
        self.record(state, &info, before.as_ref());
        self.save(state).await?;
        tracing::info!(slot = %info.slot, sha256 = info.short_sha(), source = %info.source, compiled = info.compiled, "component loaded");
        Ok(info)
    }

    /// Empties `slot`: back to the built-in component (a tenant's: back to
    /// everyone's). Returns what serves it now.
    pub async fn remove(&self, slot: Slot) -> Result<ComponentInfo, RegistryError> {
        let mut state = self.state.lock().await;
        let serving = self.remove_locked(&mut state, slot.clone()).await?;
        self.share(&mut state, &slot, None).await?;
        Ok(serving)
    }

    async fn remove_locked(
        &self,
        state: &mut State,
        slot: Slot,
    ) -> Result<ComponentInfo, RegistryError> {
        let name = slot.to_string();
        let before = self.serving(&slot);
        let serving = self.rt.unload(slot.clone()).await?;
        if slot.tenant.is_some() {
            let entry = state.slots.entry(name.clone()).or_default();
            let current = entry
                .current
                .take()
                .or_else(|| before.as_ref().map(Version::of));
            if let Some(c) = current {
                entry.push_earlier(c, self.kept);
            }
        } else {
            self.record(state, &serving, before.as_ref());
        }
        self.save(state).await?;
        tracing::info!(slot = %name, "component removed; the default serves");
        Ok(serving)
    }

    /// Brings back the version that served `slot` before the current one, or
    /// the kept version whose SHA-256 starts with `to` (12 hex digits or more).
    pub async fn rollback(
        &self,
        slot: Slot,
        to: Option<&str>,
    ) -> Result<ComponentInfo, RegistryError> {
        let mut state = self.state.lock().await;
        let name = slot.to_string();
        let slot_state = state.slots.get(&name);
        let previous = match to {
            None => slot_state
                .and_then(|s| s.previous.clone())
                .ok_or_else(|| RegistryError::NoPrevious(name.clone()))?,
            Some(to) => {
                let to = to.to_ascii_lowercase();
                let mut found = slot_state
                    .into_iter()
                    .flat_map(|s| s.earlier())
                    .filter(|v| to.len() >= 12 && v.sha256.starts_with(&to));
                match (found.next(), found.next()) {
                    (Some(v), None) => v.clone(),
                    _ => return Err(RegistryError::NotKept(to, name)),
                }
            }
        };
        let bytes = self.bytes_of(&slot, &previous).await?;
        let source = source_of(&previous.source);
        let builtin = source == Source::Builtin;
        let info = self
            .put_locked(&mut state, slot, bytes.clone(), source)
            .await?;
        let wanted = (!builtin).then_some((info.sha256.as_str(), bytes));
        self.share(&mut state, &info.slot, wanted).await?;
        Ok(info)
    }

    /// Writes `slot`'s wanted component (`None`: the default) to the shared
    /// record, with its bytes, for the other instances sharing the store.
    async fn share(
        &self,
        state: &mut State,
        slot: &Slot,
        wanted: Option<(&str, Bytes)>,
    ) -> Result<(), RegistryError> {
        let name = slot.to_string();
        let wanted = wanted.map(|(sha, bytes)| (sha.to_owned(), bytes));
        let sha = wanted.as_ref().map(|(sha, _)| sha.clone());
        let (store, slot_name, wanted_sha) = (self.store.clone(), name.clone(), sha.clone());
        tokio::task::spawn_blocking(move || -> Result<(), RegistryError> {
            if let Some((sha, bytes)) = &wanted {
                // Content-addressed: whoever stored it first stored the same.
                store
                    .swap(SHARED_BUCKET, sha, None, bytes)
                    .map_err(storage)?;
            }
            for _ in 0..SHARE_TRIES {
                let current = store.get(SHARED_BUCKET, WANTED_KEY).map_err(storage)?;
                let mut record: Wanted = current
                    .as_ref()
                    .and_then(|v| serde_json::from_slice(&v.value).ok())
                    .unwrap_or_default();
                record.slots.insert(slot_name.clone(), wanted_sha.clone());
                let text = serde_json::to_vec(&record).map_err(storage)?;
                let expected = current.map(|v| v.version);
                if store
                    .swap(SHARED_BUCKET, WANTED_KEY, expected, &text)
                    .map_err(storage)?
                {
                    if let Some((sha, bytes)) = &wanted {
                        // Another instance's sweep may have taken the bytes
                        // between their write and the record's: put them back.
                        if store.get(SHARED_BUCKET, sha).map_err(storage)?.is_none() {
                            store
                                .swap(SHARED_BUCKET, sha, None, bytes)
                                .map_err(storage)?;
                        }
                    }
                    if let Err(e) = sweep_shared(store.as_ref(), &record) {
                        tracing::warn!(error = %e, "could not delete component versions the shared record no longer names");
                    }
                    return Ok(());
                }
            }
            Err(RegistryError::Storage(
                "the shared component record kept changing".into(),
            ))
        })
        .await
        .map_err(storage)??;
        // This instance already serves it: following the record must not load
        // it again.
        state.shared.insert(name, sha);
        Ok(())
    }

    /// Loads what the shared record wants and this instance has not acted on
    /// yet (another instance's upload, delete or rollback). A component this
    /// instance refuses is logged, and the running one stays.
    async fn follow_shared(&self) {
        // Read under the lock: a record read before this instance's own upload,
        // delete or rollback would otherwise be acted on after it, undoing it.
        let mut state = self.state.lock().await;
        let store = self.store.clone();
        let current =
            match tokio::task::spawn_blocking(move || store.get(SHARED_BUCKET, WANTED_KEY)).await {
                Ok(Ok(current)) => current,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the shared component record");
                    return;
                }
                Err(_) => return,
            };
        let Some(current) = current else { return };
        if current.version == state.shared_version {
            return;
        }
        let record: Wanted = match serde_json::from_slice(&current.value) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "the shared component record is unreadable");
                return;
            }
        };
        for (name, wanted) in record.slots {
            if state.shared.get(&name) == Some(&wanted) {
                continue;
            }
            state.shared.insert(name.clone(), wanted.clone());
            let Ok(slot) = Slot::parse(&name) else {
                continue;
            };
            let serving = state
                .slots
                .get(&name)
                .and_then(|s| s.current.as_ref())
                .map(|v| (v.sha256.clone(), v.source.clone()));
            let result = match &wanted {
                Some(sha) if serving.as_ref().map(|(s, _)| s) == Some(sha) => continue,
                Some(sha) => match self.shared_bytes(sha).await {
                    Ok(bytes) => self
                        .put_locked(&mut state, slot, bytes, Source::Api)
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                },
                // Back to the default, unless this instance serves the slot from
                // its own components directory.
                None if serving.as_ref().is_some_and(|(_, src)| src == "api") => {
                    self.remove_locked(&mut state, slot).await.map(|_| ())
                }
                None => continue,
            };
            match result {
                Ok(()) => {
                    tracing::info!(slot = %name, "followed a component change made on another instance")
                }
                Err(e) => {
                    tracing::warn!(slot = %name, error = %e, "could not follow a component change made on another instance; the running one stays")
                }
            }
        }
        state.shared_version = current.version;
    }

    /// The bytes of a shared component: kept here already, or from the store.
    async fn shared_bytes(&self, sha: &str) -> Result<Bytes, RegistryError> {
        let key = sha.to_owned();
        if let Ok(bytes) = self.on_disk(move |d| d.kept(&key)).await {
            return Ok(bytes);
        }
        let store = self.store.clone();
        let key = sha.to_owned();
        let stored = tokio::task::spawn_blocking(move || store.get(SHARED_BUCKET, &key))
            .await
            .map_err(storage)?
            .map_err(storage)?
            .ok_or_else(|| RegistryError::Missing(sha.to_owned()))?;
        hashing_to(sha, stored.value)
    }

    /// Every slot that has a component, with its previous version.
    pub async fn entries(&self) -> Vec<Entry> {
        let state = self.state.lock().await;
        self.rt
            .snapshot()
            .components()
            .into_iter()
            .map(|info| {
                let slot = state.slots.get(&info.slot.to_string());
                Entry {
                    previous: slot.and_then(|s| s.previous.clone()),
                    kept: slot
                        .map(|s| s.earlier().cloned().collect())
                        .unwrap_or_default(),
                    info,
                }
            })
            .collect()
    }

    /// Looks at the components directory once and acts on what changed. A file
    /// is read (and hashed) only when its size and modification time are the
    /// same as at the last look (not being written) and differ from when it was
    /// last read; all of it, listing included, off the async workers and before
    /// the registry's lock is taken. `look`: `None` reads every file now (at
    /// start), else the record of earlier looks.
    async fn scan(&self, mut look: Option<&mut Looks>) {
        let Some(dir) = self.dir.clone() else { return };
        let every_file = look.is_none();
        let mut looks = match look.as_deref_mut() {
            Some(l) => std::mem::take(l),
            None => Looks::default(),
        };
        let metrics = self.metrics.clone();
        let seen = tokio::task::spawn_blocking(move || {
            let listed = looks.list(&dir, every_file, &metrics);
            (looks, listed)
        })
        .await;
        let (looks, listed) = match seen {
            Ok((looks, Ok(listed))) => (looks, listed),
            Ok((looks, Err(e))) => {
                if let Some(dir) = &self.dir {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read the components directory");
                }
                if let Some(look) = look {
                    *look = looks;
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the components directory scan failed");
                return;
            }
        };
        let dir = self.dir.as_deref().unwrap_or(Path::new(""));
        let mut state = self.state.lock().await;
        for (name, bytes, sha) in listed {
            let path = dir.join(&name);
            if state.files.get(&name) == Some(&sha) {
                continue;
            }
            state.files.insert(name.clone(), sha);
            let Some(slot) = slot_of_file(&name) else {
                tracing::warn!(file = %path.display(), "ignoring a file that names no component slot (validator.wasm, feature-gate.wasm, config-api.wasm, validator@TENANT.wasm, feature-gate@TENANT.wasm)");
                let _ = self.save(&state).await;
                continue;
            };
            let source = Source::Directory(PathBuf::from(&name));
            if let Err(e) = self
                .put_locked(&mut state, slot, Bytes::from(bytes), source)
                .await
            {
                tracing::warn!(file = %path.display(), error = %e, "component refused; the running one stays");
                let _ = self.save(&state).await;
            }
        }
        // Files gone: their slots go back to the default if a file still serves them.
        let gone: Vec<String> = state
            .files
            .keys()
            .filter(|n| !looks.stamps.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            state.files.remove(&name);
            let Some(slot) = slot_of_file(&name) else {
                continue;
            };
            let serving_source = state
                .slots
                .get(&slot.to_string())
                .and_then(|s| s.current.as_ref())
                .map(|v| v.source.clone());
            if serving_source.as_deref() == Some(&format!("directory:{name}")) {
                if let Err(e) = self.remove_locked(&mut state, slot).await {
                    tracing::warn!(file = %name, error = %e, "could not unload a removed component");
                }
            } else {
                let _ = self.save(&state).await;
            }
        }
        drop(state);
        if let Some(look) = look {
            *look = looks;
        }
    }

    /// Watches the components directory and the shared record until the task is
    /// aborted.
    pub async fn watch(self: Arc<Self>) {
        // The start-up scan read every file; settle on what is there now.
        let dir = self.dir.clone();
        let mut looks = tokio::task::spawn_blocking(move || {
            let mut looks = Looks::default();
            looks.settle_all(dir.as_deref());
            looks
        })
        .await
        .unwrap_or_default();
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            self.scan(Some(&mut looks)).await;
            self.follow_shared().await;
        }
    }
}

/// The registry's files: the kept bytes of each version and the state file
/// (blocking: used through [`Registry::on_disk`]).
struct Disk {
    blobs: PathBuf,
    rt: Arc<Runtime>,
}

impl Disk {
    fn blob(&self, sha256: &str) -> PathBuf {
        self.blobs.join(format!("{sha256}.wasm"))
    }

    fn keep(&self, sha256: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        let file = self.blob(sha256);
        if file.exists() {
            return Ok(());
        }
        crate::write_whole(&file, bytes).map_err(storage)
    }

    /// The kept bytes of `sha256`, if they are there and still hash to it.
    fn kept(&self, sha256: &str) -> Result<Bytes, RegistryError> {
        let bytes = std::fs::read(self.blob(sha256))
            .map_err(|_| RegistryError::Missing(sha256.to_owned()))?;
        hashing_to(sha256, bytes)
    }

    /// Deletes the kept bytes, and their precompiled artifacts, that no slot
    /// can reach any more: each slot keeps `Limits.KeptComponentVersions`
    /// versions, nothing older (every distinct upload used to be kept for ever).
    fn forget_unreachable(&self, reachable: &std::collections::HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.blobs) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(sha) = name.to_str().and_then(|n| n.strip_suffix(".wasm")) else {
                continue;
            };
            if !reachable.contains(sha) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        self.rt.forget_artifact(sha);
                        tracing::debug!(
                            sha256 = sha,
                            "forgot a component version no rollback reaches"
                        )
                    }
                    Err(e) => {
                        tracing::warn!(sha256 = sha, error = %e, "could not delete an unreachable component version")
                    }
                }
            }
        }
    }
}

/// Deletes from the shared store the component bytes `record` names for no
/// slot (what a later upload, delete or rollback replaced, and what an
/// interrupted upload left); each instance keeps its own copies of what its
/// rollback can reach. An upload that names deleted bytes while this runs
/// gets them back: from this sweep, if it sees the name after deleting, else
/// from the upload itself, which checks after writing the record.
fn sweep_shared(store: &dyn crate::store::Store, record: &Wanted) -> Result<usize, String> {
    let named: std::collections::HashSet<&str> = record
        .slots
        .values()
        .flatten()
        .map(String::as_str)
        .collect();
    let mut deleted = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_keys(SHARED_BUCKET, cursor.as_deref(), 256)
            .map_err(|e| e.to_string())?;
        for key in &page.keys {
            let is_sha = key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_sha || named.contains(key.as_str()) {
                continue;
            }
            let Some(bytes) = store.get(SHARED_BUCKET, key).map_err(|e| e.to_string())? else {
                continue;
            };
            store
                .delete(SHARED_BUCKET, key)
                .map_err(|e| e.to_string())?;
            let now: Wanted = store
                .get(SHARED_BUCKET, WANTED_KEY)
                .map_err(|e| e.to_string())?
                .and_then(|v| serde_json::from_slice(&v.value).ok())
                .unwrap_or_default();
            if now.slots.values().flatten().any(|s| s == key) {
                store
                    .swap(SHARED_BUCKET, key, None, &bytes.value)
                    .map_err(|e| e.to_string())?;
            } else {
                deleted += 1;
                tracing::debug!(sha256 = %key, "deleted a component version no instance is asked to serve");
            }
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(deleted),
        }
    }
}

/// Size and modification time of a file.
type Stamp = (u64, SystemTime);

/// What earlier looks at the components directory saw.
#[derive(Debug, Default)]
struct Looks {
    /// Every `.wasm` file at the last look.
    stamps: HashMap<String, Stamp>,
    /// The stamp each file had when it was last read.
    read_at: HashMap<String, Stamp>,
}

/// The files one look read: name, bytes, SHA-256 hex.
type Read = Vec<(String, Vec<u8>, String)>;

/// What the registry counts: looks at the components directory and files
/// read from it.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    scans: prometheus_client::metrics::counter::Counter,
    reads: prometheus_client::metrics::counter::Counter,
}

impl Metrics {
    /// The families, registered in `registry`.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self::default();
        registry.register(
            "tg_component_directory_scans",
            "Looks at the components directory (every 0.5 s).",
            m.scans.clone(),
        );
        registry.register(
            "tg_component_directory_reads",
            "Files read from the components directory (new or changed ones only).",
            m.reads.clone(),
        );
        m
    }
}

fn stamps_of(dir: &Path) -> std::io::Result<HashMap<String, Stamp>> {
    let mut now = HashMap::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".wasm") {
            continue;
        }
        if let Ok(m) = e.metadata()
            && m.is_file()
        {
            now.insert(
                name,
                (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
            );
        }
    }
    Ok(now)
}

impl Looks {
    /// Lists `dir` (blocking) and reads the files that are new or changed
    /// and settled; `every_file`: all of them.
    fn list(&mut self, dir: &Path, every_file: bool, metrics: &Metrics) -> std::io::Result<Read> {
        metrics.scans.inc();
        let now = stamps_of(dir)?;
        let mut read = Vec::new();
        for (name, stamp) in &now {
            let settled = every_file || self.stamps.get(name) == Some(stamp);
            if !settled || (!every_file && self.read_at.get(name) == Some(stamp)) {
                continue;
            }
            let Ok(bytes) = std::fs::read(dir.join(name)) else {
                continue;
            };
            metrics.reads.inc();
            self.read_at.insert(name.clone(), *stamp);
            let sha = hex::encode(sha2::Sha256::digest(&bytes));
            read.push((name.clone(), bytes, sha));
        }
        self.read_at.retain(|name, _| now.contains_key(name));
        self.stamps = now;
        Ok(read)
    }

    /// Counts every file there now as seen and read (after a full scan).
    fn settle_all(&mut self, dir: Option<&Path>) {
        if let Some(now) = dir.and_then(|d| stamps_of(d).ok()) {
            self.read_at = now.clone();
            self.stamps = now;
        }
    }
}

/// The slot a components-directory file loads into, by its name.
fn slot_of_file(name: &str) -> Option<Slot> {
    Slot::parse(name.strip_suffix(".wasm")?).ok()
}

/// `bytes`, if they hash to `sha256`.
fn hashing_to(sha256: &str, bytes: Vec<u8>) -> Result<Bytes, RegistryError> {
    if hex::encode(sha2::Sha256::digest(&bytes)) != sha256 {
        return Err(RegistryError::Missing(sha256.to_owned()));
    }
    Ok(Bytes::from(bytes))
}

fn source_of(text: &str) -> Source {
    match text {
        "builtin" => Source::Builtin,
        "api" => Source::Api,
        other => Source::Directory(PathBuf::from(
            other.strip_prefix("directory:").unwrap_or(other),
        )),
    }
}
