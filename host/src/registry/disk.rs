//! The registry's files under `<data-dir>/registry/`: the kept bytes of every
//! version by SHA-256, and `state.json`.

use super::{RegistryError, storage};
use crate::wasm::Runtime;
use bytes::Bytes;
use sha2::Digest;
use std::path::PathBuf;
use std::sync::Arc;

/// The registry's files: the kept bytes of each version and the state file
/// (blocking: used through [`Registry::on_disk`]).
pub(super) struct Disk {
    pub(super) blobs: PathBuf,
    pub(super) rt: Arc<Runtime>,
}

impl Disk {
    fn blob(&self, sha256: &str) -> PathBuf {
        self.blobs.join(format!("{sha256}.wasm"))
    }

    pub(super) fn keep(&self, sha256: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        let file = self.blob(sha256);
        if file.exists() {
            return Ok(());
        }
        crate::write_whole(&file, bytes).map_err(storage)
    }

    /// The kept bytes of `sha256`, if they are there and still hash to it.
    pub(super) fn kept(&self, sha256: &str) -> Result<Bytes, RegistryError> {
        let bytes = std::fs::read(self.blob(sha256))
            .map_err(|_| RegistryError::Missing(sha256.to_owned()))?;
        hashing_to(sha256, bytes)
    }

    /// Deletes the kept bytes, and their precompiled artifacts, that no slot
    /// can reach any more: each slot keeps `Limits.KeptComponentVersions`
    /// versions, nothing older (every distinct upload used to be kept for ever).
    pub(super) fn forget_unreachable(&self, reachable: &std::collections::HashSet<String>) {
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

/// `bytes`, if they hash to `sha256`.
pub(super) fn hashing_to(sha256: &str, bytes: Vec<u8>) -> Result<Bytes, RegistryError> {
    if hex::encode(sha2::Sha256::digest(&bytes)) != sha256 {
        return Err(RegistryError::Missing(sha256.to_owned()));
    }
    Ok(Bytes::from(bytes))
}
