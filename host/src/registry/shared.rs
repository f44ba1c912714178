//! The record instances sharing a store follow: what `/_components` changed
//! (per slot, the wanted component's SHA-256, its bytes in the store by hash),
//! written on every upload, delete and rollback and read on every watch tick.

use super::disk::hashing_to;
use super::{Registry, RegistryError, State, storage};
use crate::wasm::{Slot, Source};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

impl Registry {
    /// Writes `slot`'s wanted component (`None`: the default) to the shared
    /// record, with its bytes, for the other instances sharing the store.
    pub(super) async fn share(
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
    pub(super) async fn follow_shared(&self) {
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
