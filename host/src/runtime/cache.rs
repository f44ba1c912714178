//! Compilation with an on-disk cache of precompiled components, keyed by the
//! component's SHA-256 and the engine's compatibility hash: a restart or a
//! re-swap of a known component loads in milliseconds what takes a second or
//! more to compile.
//!
//! A precompiled artifact is native code, so it is never trusted blindly: each
//! file carries an HMAC-SHA256 over its name and contents, keyed by a random
//! key kept in the cache directory (`cache.key`, created on first use). A file
//! that is truncated, altered, or written by another gateway (another key) or
//! another engine is ignored, counted, and replaced by a fresh compilation.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::error::Context;

/// What the start of every artifact file says.
const MAGIC: &[u8; 8] = b"TGCWASM1";
const MAC_LEN: usize = 32;
const KEY_FILE: &str = "cache.key";

static COMPILED: AtomicU64 = AtomicU64::new(0);
static CACHED: AtomicU64 = AtomicU64::new(0);
static REJECTED: AtomicU64 = AtomicU64::new(0);

/// How components were made ready since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Compiled from source.
    pub compiled: u64,
    /// Loaded from a verified precompiled artifact.
    pub cached: u64,
    /// Artifacts found but refused (corrupt, foreign, another engine).
    pub rejected: u64,
}

/// The counts of this process.
pub fn stats() -> Stats {
    Stats {
        compiled: COMPILED.load(Ordering::Relaxed),
        cached: CACHED.load(Ordering::Relaxed),
        rejected: REJECTED.load(Ordering::Relaxed),
    }
}

/// The cache directory's key: read, or made and written once.
fn key(dir: &Path) -> std::io::Result<[u8; 32]> {
    let file = dir.join(KEY_FILE);
    if let Ok(bytes) = std::fs::read(&file)
        && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok(key);
    }
    let mut key = [0u8; 32];
    argon2::password_hash::rand_core::RngCore::fill_bytes(
        &mut argon2::password_hash::rand_core::OsRng,
        &mut key,
    );
    std::fs::create_dir_all(dir)?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, key)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    // Another process may have made one meanwhile: the first one written wins.
    if std::fs::hard_link(&tmp, &file).is_err() {
        let _ = std::fs::remove_file(&tmp);
        let bytes = std::fs::read(&file)?;
        return <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| std::io::Error::other("malformed cache key"));
    }
    let _ = std::fs::remove_file(&tmp);
    Ok(key)
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

/// Compiles `bytes`, or loads the verified artifact of an earlier compilation.
/// Returns the component and whether it was compiled now.
pub fn compile(
    engine: &Engine,
    name: &str,
    bytes: &[u8],
    cache_dir: Option<&Path>,
) -> wasmtime::Result<(Component, bool)> {
    let Some(dir) = cache_dir else {
        let c = Component::new(engine, bytes).with_context(|| format!("compiling {name}"))?;
        COMPILED.fetch_add(1, Ordering::Relaxed);
        return Ok((c, true));
    };
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let digest = Sha256::digest(bytes);
    // Named by content, not by slot: the same component in two slots is one entry.
    let file_name = format!(
        "{}-{:016x}.cwasm",
        hex::encode(&digest[..16]),
        engine_hash.finish()
    );
    let file = dir.join(&file_name);
    let key = key(dir).with_context(|| format!("cache key in {}", dir.display()))?;
    if let Ok(contents) = std::fs::read(&file) {
        match verified(&key, &file_name, &contents) {
            Some(artifact) => {
                // SAFETY: the artifact carries a valid MAC under this cache's
                // secret key: it was written by a gateway holding the key, from
                // `Engine::precompile_component` of an engine with the same
                // compatibility hash (the file name binds both the source's
                // digest and that hash), and it has not changed since.
                #[allow(unsafe_code)]
                match unsafe { Component::deserialize(engine, artifact) } {
                    Ok(c) => {
                        CACHED.fetch_add(1, Ordering::Relaxed);
                        return Ok((c, false));
                    }
                    Err(e) => {
                        REJECTED.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(file = %file.display(), error = %e, "ignoring an unusable cached component; compiling");
                    }
                }
            }
            None => {
                REJECTED.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %file.display(), "ignoring a cached component that is corrupt or was not written by this gateway; compiling");
            }
        }
    }
    let compiled = engine
        .precompile_component(bytes)
        .with_context(|| format!("compiling {name}"))?;
    COMPILED.fetch_add(1, Ordering::Relaxed);
    let tag = mac(&key, &file_name, &compiled);
    let mut out = Vec::with_capacity(MAGIC.len() + MAC_LEN + compiled.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&compiled);
    crate::write_whole(&file, &out).with_context(|| format!("writing {}", file.display()))?;
    // SAFETY: `compiled` was produced just now by this engine.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &compiled) }?;
    Ok((component, true))
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

    /// A second load uses the artifact; a corrupt or foreign one is refused and
    /// rebuilt, then trusted again.
    #[test]
    fn cached_artifacts_are_verified_before_use() {
        let engine = engine();
        let dir = tempfile::tempdir().unwrap();
        let bytes = super::super::builtin::FEATURE_GATE;
        let (_, compiled) = compile(&engine, "gate", bytes, Some(dir.path())).unwrap();
        assert!(compiled);
        let (_, compiled) = compile(&engine, "gate", bytes, Some(dir.path())).unwrap();
        assert!(!compiled, "a verified artifact is used");

        // Corrupt: one byte of native code flipped.
        let file = only_file(dir.path());
        let mut contents = std::fs::read(&file).unwrap();
        let last = contents.len() - 100;
        contents[last] ^= 0xff;
        std::fs::write(&file, &contents).unwrap();
        let before = stats().rejected;
        let (_, compiled) = compile(&engine, "gate", bytes, Some(dir.path())).unwrap();
        assert!(compiled, "a corrupt artifact is not used");
        assert!(stats().rejected > before);
        let (_, compiled) = compile(&engine, "gate", bytes, Some(dir.path())).unwrap();
        assert!(!compiled, "the rebuilt artifact is used");

        // Foreign: a whole, valid artifact of another cache (another key).
        let other = tempfile::tempdir().unwrap();
        compile(&engine, "gate", bytes, Some(other.path())).unwrap();
        std::fs::copy(only_file(other.path()), &file).unwrap();
        let (_, compiled) = compile(&engine, "gate", bytes, Some(dir.path())).unwrap();
        assert!(compiled, "another cache's artifact is not trusted");

        // Truncated, and not ours at all.
        std::fs::write(&file, &MAGIC[..]).unwrap();
        assert!(compile(&engine, "gate", bytes, Some(dir.path())).unwrap().1);
        std::fs::write(&file, b"hello").unwrap();
        assert!(compile(&engine, "gate", bytes, Some(dir.path())).unwrap().1);
    }
}
