//! The built-in components, built from the workspace source by `build.rs` and
//! carried in the binary: each one's Wasm, its SHA-256 and size, and, where
//! the build could make it, the artifact wasmtime precompiled from it with this
//! binary's engine configuration (`engine_config.rs`) for the portable CPU
//! features of the target (x86-64-v2 on x86-64). Both are zstd frames with
//! their content checksums, which decompression verifies.
//!
//! Loading a built-in component is then a decompression and wasmtime's
//! `Component::deserialize`, whose compatibility check (wasmtime version,
//! target, compilation settings, CPU features against this host's) refuses an
//! artifact the running engine cannot use; the gateway then compiles the Wasm
//! as it would any other component (`Loader::embedded` and its callers).

use bytes::Bytes;

/// Bytes carried as zstd frames of at most 4 MiB, each with the size it
/// decompresses to.
type Frames = &'static [(&'static [u8], usize)];

/// A component built into the binary.
#[derive(Debug)]
pub struct Builtin {
    /// Its name in logs.
    pub name: &'static str,
    /// The SHA-256 of its Wasm.
    pub sha256: [u8; 32],
    /// The Wasm.
    wasm: Frames,
    /// The precompiled artifact; `None` when the build could not make one (a
    /// target its compiler does not know).
    artifact: Option<Frames>,
}

// VALIDATOR, FEATURE_GATE, CONFIG_API and TENANT_APP, written by build.rs.
include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// Every built-in component.
pub static ALL: [&Builtin; 4] = [&VALIDATOR, &FEATURE_GATE, &CONFIG_API, &TENANT_APP];

impl Builtin {
    /// Its Wasm (decompressed for each call: needed only to compile it, when
    /// its artifact cannot be used, or to hand it back).
    pub fn wasm(&self) -> Bytes {
        Bytes::from(unpack(self.wasm, self.name))
    }

    /// The size of its Wasm, in bytes.
    pub fn size(&self) -> usize {
        self.wasm.iter().map(|(_, size)| size).sum()
    }

    /// Its SHA-256, hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The artifact precompiled at build time, decompressed, if there is one.
    pub fn precompiled(&self) -> Option<Vec<u8>> {
        self.artifact.map(|frames| unpack(frames, self.name))
    }

    /// The built-in component whose Wasm has the SHA-256 `digest`.
    pub fn by_digest(digest: &[u8]) -> Option<&'static Builtin> {
        ALL.into_iter().find(|b| b.sha256 == digest)
    }
}

/// Whether the artifacts precompiled into the binary are to be left unused
/// (`TENANT_GATEWAY_BUILTIN_ARTIFACTS=ignore`): the built-in components are then
/// compiled as on a build without them. For telling an artifact problem from
/// another; the gateway reads it once.
pub fn ignored() -> bool {
    static IGNORED: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        std::env::var_os("TENANT_GATEWAY_BUILTIN_ARTIFACTS").is_some_and(|v| v == "ignore")
    });
    *IGNORED
}

/// Decompresses frames `build.rs` wrote, side by side (a thread each). They
/// are part of the binary: one that does not decompress to its recorded size
/// with a matching checksum means the binary itself is damaged, which no
/// fallback can mend.
fn unpack(frames: Frames, name: &str) -> Vec<u8> {
    let mut out = vec![0u8; frames.iter().map(|(_, size)| size).sum()];
    std::thread::scope(|s| {
        let mut rest = out.as_mut_slice();
        let mut unpacking = Vec::with_capacity(frames.len());
        for &(packed, size) in frames {
            let (part, after) = rest.split_at_mut(size);
            rest = after;
            unpacking.push(s.spawn(move || unpack_into(packed, part, name)));
        }
        for t in unpacking {
            t.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        }
    });
    out
}

/// Decompresses `packed` into `out`, which it must fill exactly.
fn unpack_into(packed: &[u8], out: &mut [u8], name: &str) {
    let damaged = |why: String| -> ! {
        panic!("the built-in component {name} in this binary is damaged: {why}")
    };
    let mut unpacker = zstd::bulk::Decompressor::new().unwrap_or_else(|e| damaged(e.to_string()));
    match unpacker.decompress_to_buffer(packed, out) {
        Ok(n) if n == out.len() => {}
        Ok(n) => damaged(format!("{n} bytes instead of {}", out.len())),
        Err(e) => damaged(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    /// What is carried is what the workspace builds: the Wasm decompresses to
    /// the file build.rs built, with the recorded digest and size.
    #[test]
    fn each_builtin_is_the_workspace_build() {
        for (b, file) in [
            (&VALIDATOR, env!("TG_VALIDATOR_WASM")),
            (&FEATURE_GATE, env!("TG_FEATURE_GATE_WASM")),
            (&CONFIG_API, env!("TG_CONFIG_API_WASM")),
            (&TENANT_APP, env!("TG_TENANT_APP_WASM")),
        ] {
            let wasm = b.wasm();
            assert_eq!(wasm, std::fs::read(file).unwrap(), "{}", b.name);
            assert_eq!(wasm.len(), b.size());
            assert_eq!(<[u8; 32]>::from(sha2::Sha256::digest(&wasm)), b.sha256);
            assert!(
                std::ptr::eq(Builtin::by_digest(&b.sha256).unwrap(), b),
                "{}",
                b.name
            );
        }
        assert!(Builtin::by_digest(&[0; 32]).is_none());
    }
}
