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

//!
//! Here: the registry's record and its operations (put, remove, rollback).
//! Beside it: `watch.rs` (the components directory), `shared.rs` (the shared
//! record), `disk.rs` (the kept bytes and the state file).

mod disk;
mod shared;
mod watch;

pub use watch::WATCH_INTERVAL;

use crate::wasm::{ComponentInfo, LoadError, Runtime, Slot, Source};
use bytes::Bytes;
use disk::Disk;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Store bucket and key where earlier versions kept the registry's state: read
/// once when `state.json` does not exist yet.
const LEGACY_BUCKET: &str = "_registry";
const LEGACY_KEY: &str = "state";
/// The registry's state file, under the blobs directory.
const STATE_FILE: &str = "state.json";

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
            let kind = slot.kind;
            return self.on_disk(move |_| Ok(kind.builtin().wasm())).await;
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
}

/// What the registry counts: looks at the components directory and files
/// read from it.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub(super) scans: prometheus_client::metrics::counter::Counter,
    pub(super) reads: prometheus_client::metrics::counter::Counter,
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

fn source_of(text: &str) -> Source {
    match text {
        "builtin" => Source::Builtin,
        "api" => Source::Api,
        other => Source::Directory(PathBuf::from(
            other.strip_prefix("directory:").unwrap_or(other),
        )),
    }
}
