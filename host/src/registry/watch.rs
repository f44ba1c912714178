//! The watched components directory: looked at every tick, a file read once
//! two looks agree on its size and modification time (never half-written).

use super::{Metrics, Registry};
use crate::wasm::{Slot, Source};
use bytes::Bytes;
use sha2::Digest;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the components directory is looked at. A file is read once two
/// looks agree on its size and modification time (never half-written).
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

impl Registry {
    /// Looks at the components directory once and acts on what changed. A file
    /// is read (and hashed) only when its size and modification time are the
    /// same as at the last look (not being written) and differ from when it was
    /// last read; all of it, listing included, off the async workers and before
    /// the registry's lock is taken. `look`: `None` reads every file now (at
    /// start), else the record of earlier looks.
    pub(super) async fn scan(&self, mut look: Option<&mut Looks>) {
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

/// Size and modification time of a file.
type Stamp = (u64, SystemTime);

/// What earlier looks at the components directory saw.
#[derive(Debug, Default)]
pub(super) struct Looks {
    /// Every `.wasm` file at the last look.
    stamps: HashMap<String, Stamp>,
    /// The stamp each file had when it was last read.
    read_at: HashMap<String, Stamp>,
}

/// The files one look read: name, bytes, SHA-256 hex.
type Read = Vec<(String, Vec<u8>, String)>;

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
