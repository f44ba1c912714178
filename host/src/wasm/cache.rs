//! Compilation with an on-disk cache of precompiled components, keyed by the
//! component's SHA-256 and the engine's compatibility hash: a restart or a
//! re-swap of a known component loads in milliseconds what takes a second or
//! more to compile.
//!
//! A precompiled artifact is native code, so it is never trusted blindly: each
//! file carries an HMAC-SHA256 over its name and contents, keyed by a random
//! key kept outside the cache directory (`<data-dir>/cache.key` by default,
//! created on first use, replaced when damaged). A file
//! that is truncated, altered, or written by another gateway (another key) or
//! another engine is ignored, counted, and replaced by a fresh compilation.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::error::Context;

/// What the start of every artifact file says.
const MAGIC: &[u8; 8] = b"TGCWASM1";
const MAC_LEN: usize = 32;
/// Where earlier versions kept the key: in the cache directory itself.
const LEGACY_KEY_FILE: &str = "cache.key";

/// A cache directory of verified artifacts and the key that signs them.
#[derive(Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
    key: [u8; 32],
}

fn fresh_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    argon2::password_hash::rand_core::RngCore::fill_bytes(
        &mut argon2::password_hash::rand_core::OsRng,
        &mut key,
    );
    key
}

/// Writes `key` to a private temporary file beside `file`, synced; its name
/// is this call's own ([`crate::temp_beside`]), so two caches opened at once
/// in one process never write, link or remove each other's.
fn key_tmp(file: &Path, key: &[u8; 32]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let tmp = crate::temp_beside(file);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&tmp)?;
    out.write_all(key)?;
    out.sync_all()?;
    Ok(tmp)
}

impl ArtifactCache {
    /// Opens the cache in `dir`, signed by the key in `key_file` (kept apart
    /// from the artifacts: whoever may write the cache must not be able to sign
    /// for it). A missing key is made; a damaged one (not 32 bytes) is replaced,
    /// and the artifacts in `dir`, which no key can now vouch for, are deleted.
    pub fn open(dir: &Path, key_file: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        if let Some(parent) = key_file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        // Earlier versions kept the key among the artifacts: it signs nothing now.
        let legacy = dir.join(LEGACY_KEY_FILE);
        if legacy != key_file {
            let _ = std::fs::remove_file(&legacy);
        }
        let key = match std::fs::read(key_file) {
            Ok(bytes) => match <[u8; 32]>::try_from(bytes.as_slice()) {
                Ok(key) => key,
                Err(_) => {
                    tracing::warn!(key = %key_file.display(), cache = %dir.display(), "the component cache key is damaged: making a new one and discarding the cached components");
                    let key = fresh_key();
                    let tmp = key_tmp(key_file, &key)?;
                    std::fs::rename(&tmp, key_file)?;
                    Self::discard(dir);
                    key
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = fresh_key();
                let tmp = key_tmp(key_file, &key)?;
                // Another process may have made one meanwhile: the first one
                // written wins, and is read back.
                let linked = std::fs::hard_link(&tmp, key_file);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => key,
                    // Someone else's, whole (it was written before it was linked).
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        <[u8; 32]>::try_from(std::fs::read(key_file)?.as_slice())
                            .map_err(|_| std::io::Error::other("malformed cache key"))?
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            dir: dir.to_owned(),
            key,
        })
    }

    /// Deletes every artifact file of `dir`.
    fn discard(dir: &Path) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "cwasm") {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn mac(key: &[u8; 32], name: &str, artifact: &[u8]) -> [u8; MAC_LEN] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(name.as_bytes());
    m.update(&[0]);
    m.update(artifact);
    m.finalize().into_bytes().into()
}

/// The artifact inside a cache file, if the file is whole and ours.
fn verified<'a>(key: &[u8; 32], name: &str, file: &'a [u8]) -> Option<&'a [u8]> {
    let rest = file.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < MAC_LEN {
        return None;
    }
    let (tag, artifact) = rest.split_at(MAC_LEN);
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(name.as_bytes());
    m.update(&[0]);
    m.update(artifact);
    m.verify_slice(tag).ok()?;
    Some(artifact)
}

/// Compiles `bytes` (no cache).
pub fn compile_uncached(
    engine: &Engine,
    name: &str,
    bytes: &[u8],
) -> wasmtime::Result<(Component, bool)> {
    let c = Component::new(engine, bytes).with_context(|| format!("compiling {name}"))?;
    Ok((c, true))
}

/// The cache file of the component whose SHA-256 is `digest`, for `engine`.
/// Named by content, not by slot: the same component in two slots is one entry.
fn file_name(engine: &Engine, digest: &[u8]) -> String {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    format!(
        "{}-{:016x}.cwasm",
        hex::encode(&digest[..16]),
        engine_hash.finish()
    )
}

impl ArtifactCache {
    /// Compiles `bytes` here, or loads the verified artifact of an earlier
    /// compilation. Returns the component and whether it was compiled now.
    pub fn compile(
        &self,
        engine: &Engine,
        name: &str,
        bytes: &[u8],
        metrics: &super::Metrics,
    ) -> wasmtime::Result<(Component, bool)> {
        let digest = Sha256::digest(bytes);
        if let Some(c) = self.lookup(engine, &digest, metrics) {
            return Ok((c, false));
        }
        let compiled = engine
            .precompile_component(bytes)
            .with_context(|| format!("compiling {name}"))?;
        self.keep(engine, &digest, &compiled)?;
        // SAFETY: `compiled` was produced just now by this engine.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &compiled) }?;
        Ok((component, true))
    }

    /// The component whose bytes have the SHA-256 `digest`, from the verified
    /// artifact of an earlier compilation, if there is one (a corrupt, foreign
    /// or unusable one is counted and ignored).
    pub fn lookup(
        &self,
        engine: &Engine,
        digest: &[u8],
        metrics: &super::Metrics,
    ) -> Option<Component> {
        let file_name = file_name(engine, digest);
        let file = self.dir.join(&file_name);
        let contents = std::fs::read(&file).ok()?;
        match verified(&self.key, &file_name, &contents) {
            Some(artifact) => {
                // SAFETY: the artifact carries a valid MAC under this cache's
                // secret key: it was written by a gateway holding the key, from
                // `Engine::precompile_component` of an engine with the same
                // compatibility hash (the file name binds both the source's
                // digest and that hash), and it has not changed since.
                #[allow(unsafe_code)]
                match unsafe { Component::deserialize(engine, artifact) } {
                    Ok(c) => {
                        metrics.artifact(super::metrics::Artifact::Cached);
                        return Some(c);
                    }
                    Err(e) => {
                        metrics.artifact(super::metrics::Artifact::Rejected);
                        tracing::warn!(file = %file.display(), error = %e, "ignoring an unusable cached component; compiling");
                    }
                }
            }
            None => {
                metrics.artifact(super::metrics::Artifact::Rejected);
                tracing::warn!(file = %file.display(), "ignoring a cached component that is corrupt or was not written by this gateway; compiling");
            }
        }
        None
    }

    /// Whether there is an artifact for the bytes whose SHA-256 is `digest`
    /// (not yet verified: that happens when it is loaded).
    pub fn holds(&self, engine: &Engine, digest: &[u8]) -> bool {
        self.dir.join(file_name(engine, digest)).is_file()
    }

    /// Keeps `artifact`, what `Engine::precompile_component` of an engine
    /// compatible with `engine` made of the bytes whose SHA-256 is `digest`,
    /// signed.
    pub fn keep(&self, engine: &Engine, digest: &[u8], artifact: &[u8]) -> wasmtime::Result<()> {
        let file_name = file_name(engine, digest);
        let file = self.dir.join(&file_name);
        let tag = mac(&self.key, &file_name, artifact);
        let mut out = Vec::with_capacity(MAGIC.len() + MAC_LEN + artifact.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&tag);
        out.extend_from_slice(artifact);
        crate::write_whole(&file, &out).with_context(|| format!("writing {}", file.display()))
    }

    /// Deletes the artifacts (for any engine) of the component whose SHA-256
    /// is `sha256` (hex): it is no longer kept.
    pub fn forget(&self, sha256: &str) {
        let Some(prefix) = sha256.get(..32) else {
            return;
        };
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".cwasm")
                && name
                    .strip_prefix(prefix)
                    .is_some_and(|r| r.starts_with('-'))
            {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => tracing::debug!(
                        file = name,
                        "deleted a precompiled component no longer kept"
                    ),
                    Err(e) => {
                        tracing::warn!(file = name, error = %e, "could not delete a precompiled component")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).unwrap()
    }

    fn only_file(dir: &Path) -> std::path::PathBuf {
        let files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    }

    fn open(dir: &Path) -> ArtifactCache {
        ArtifactCache::open(&dir.join("cache"), &dir.join("cache.key")).unwrap()
    }

    /// A second load uses the artifact; a corrupt or foreign one is refused and
    /// rebuilt, then trusted again.
    #[test]
    fn cached_artifacts_are_verified_before_use() {
        let engine = engine();
        let metrics = super::super::Metrics::default();
        let root = tempfile::tempdir().unwrap();
        let cache = open(root.path());
        let dir = root.path().join("cache");
        let bytes = &super::super::builtin::FEATURE_GATE.wasm();
        let (_, compiled) = cache.compile(&engine, "gate", bytes, &metrics).unwrap();
        assert!(compiled);
        let (_, compiled) = open(root.path())
            .compile(&engine, "gate", bytes, &metrics)
            .unwrap();
        assert!(!compiled, "a verified artifact is used");
        assert!(!dir.join(LEGACY_KEY_FILE).exists(), "the key is kept apart");

        // Corrupt: one byte of native code flipped.
        let file = only_file(&dir);
        let mut contents = std::fs::read(&file).unwrap();
        let last = contents.len() - 100;
        contents[last] ^= 0xff;
        std::fs::write(&file, &contents).unwrap();
        let before = metrics.artifacts(super::super::metrics::Artifact::Rejected);
        let (_, compiled) = cache.compile(&engine, "gate", bytes, &metrics).unwrap();
        assert!(compiled, "a corrupt artifact is not used");
        assert!(metrics.artifacts(super::super::metrics::Artifact::Rejected) > before);
        let (_, compiled) = cache.compile(&engine, "gate", bytes, &metrics).unwrap();
        assert!(!compiled, "the rebuilt artifact is used");

        // Foreign: a whole, valid artifact of another cache (another key).
        let other = tempfile::tempdir().unwrap();
        open(other.path())
            .compile(&engine, "gate", bytes, &metrics)
            .unwrap();
        std::fs::copy(only_file(&other.path().join("cache")), &file).unwrap();
        let (_, compiled) = cache.compile(&engine, "gate", bytes, &metrics).unwrap();
        assert!(compiled, "another cache's artifact is not trusted");

        // Truncated, and not ours at all.
        std::fs::write(&file, &MAGIC[..]).unwrap();
        assert!(cache.compile(&engine, "gate", bytes, &metrics).unwrap().1);
        std::fs::write(&file, b"hello").unwrap();
        assert!(cache.compile(&engine, "gate", bytes, &metrics).unwrap().1);
    }

    /// A damaged key (cut short, or empty after a crash) no longer stops the
    /// gateway for good: a new key is made and the artifacts the old one signed
    /// are discarded. (Before: `open` failed on every start.)
    #[test]
    fn a_damaged_key_is_replaced_and_the_cache_discarded() {
        let engine = engine();
        let metrics = super::super::Metrics::default();
        let root = tempfile::tempdir().unwrap();
        let bytes = &super::super::builtin::FEATURE_GATE.wasm();
        open(root.path())
            .compile(&engine, "gate", bytes, &metrics)
            .unwrap();
        let key_file = root.path().join("cache.key");
        let old = std::fs::read(&key_file).unwrap();
        for damaged in [&old[..7], &b""[..]] {
            std::fs::write(&key_file, damaged).unwrap();
            let cache = open(root.path());
            let new = std::fs::read(&key_file).unwrap();
            assert_eq!(new.len(), 32);
            assert_ne!(new, old);
            let left = std::fs::read_dir(root.path().join("cache"))
                .unwrap()
                .count();
            assert_eq!(left, 0, "the old artifacts are discarded");
            assert!(cache.compile(&engine, "gate", bytes, &metrics).unwrap().1);
            assert!(
                !open(root.path())
                    .compile(&engine, "gate", bytes, &metrics)
                    .unwrap()
                    .1
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is private: {mode:o}");
        }
    }
}
