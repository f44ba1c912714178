//! Compilation with an on-disk cache of precompiled components, keyed by the
//! component's SHA-256 and the engine's compatibility hash: a restart loads in
//! well under a millisecond what took seconds to compile.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::Path;
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::error::Context;

/// Compiles `bytes`, or loads the cached artifact of an earlier compilation.
pub fn compile(
    engine: &Engine,
    name: &str,
    bytes: &[u8],
    cache_dir: Option<&Path>,
) -> wasmtime::Result<(Component, bool)> {
    let Some(dir) = cache_dir else {
        let c = Component::new(engine, bytes).with_context(|| format!("compiling {name}"))?;
        return Ok((c, true));
    };
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let digest = Sha256::digest(bytes);
    let file = dir.join(format!(
        "{name}-{}-{:016x}.cwasm",
        hex::encode(&digest[..16]),
        engine_hash.finish()
    ));
    if file.exists() {
        // SAFETY: the artifact was produced by `Engine::precompile_component` of an
        // engine with the same compatibility hash and written by this gateway into
        // its own cache directory; its name binds it to the source's digest.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(engine, &file) } {
            Ok(c) => return Ok((c, false)),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "ignoring unusable cached component")
            }
        }
    }
    let compiled = engine
        .precompile_component(bytes)
        .with_context(|| format!("compiling {name}"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &compiled).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &file).with_context(|| format!("writing {}", file.display()))?;
    // SAFETY: `compiled` was produced just now by this engine.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &compiled) }?;
    Ok((component, true))
}
