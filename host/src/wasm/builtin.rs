//! The built-in components, built from the workspace source by `build.rs` and
//! carried in the binary: each one's Wasm, its SHA-256 and size, and, where
//! the build could make it, the artifact wasmtime precompiled from it with this
//! binary's engine configuration (`engine_config.rs`) for the portable CPU
//! features of the target (x86-64-v2 on x86-64). Both are LZ4 blocks, which
//! decompress at a few GB/s. The validator's Wasm is carried pre-initialized:
//! build.rs ran its first call, which compiles its JSON Schemas, and kept the
//! memory it left (Wizer), so its instances start with them compiled.
//!
//! Loading a built-in component is then a decompression and wasmtime's
//! `Component::deserialize`, whose compatibility check (wasmtime version,
//! target, compilation settings, CPU features against this host's) refuses an
//! artifact the running engine cannot use; the gateway then compiles the Wasm
//! as it would any other component (`Loader::embedded` and its callers).

use bytes::Bytes;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bytes carried as LZ4 blocks of at most 4 MiB of input, each with the size
/// it decompresses to.
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
    pub fn precompiled(&self) -> Option<Unpacked> {
        let frames = self.artifact?;
        #[cfg(target_os = "linux")]
        match unpack_to_memory_file(frames, self.name) {
            Ok(file) => return Some(Unpacked::File(file)),
            Err(e) => {
                tracing::debug!(component = self.name, error = %e, "no memory file for the built-in component's artifact; decompressing it to the heap")
            }
        }
        Some(Unpacked::Bytes(unpack(frames, self.name)))
    }

    /// The built-in component whose Wasm has the SHA-256 `digest`.
    pub fn by_digest(digest: &[u8]) -> Option<&'static Builtin> {
        ALL.into_iter().find(|b| b.sha256 == digest)
    }
}

/// A built-in component's artifact, decompressed.
///
/// On Linux it is decompressed into a memory file, which wasmtime maps: a
/// buffer on the heap would be copied into wasmtime's own mapping and freed,
/// which for the validator's 13 MB was half the time its load took.
#[derive(Debug)]
pub enum Unpacked {
    /// In a memory file (`memfd_create`).
    #[cfg(target_os = "linux")]
    File(std::fs::File),
    /// On the heap.
    Bytes(Vec<u8>),
}

impl Unpacked {
    /// The component, if this engine accepts the artifact.
    ///
    /// # Safety
    ///
    /// That of [`Component::deserialize`]: the artifact must be the output of
    /// `Engine::precompile_component`, which the built-in ones are (build.rs).
    #[allow(unsafe_code)]
    pub unsafe fn deserialize(&self, engine: &Engine) -> wasmtime::Result<Component> {
        match self {
            #[cfg(target_os = "linux")]
            Unpacked::File(file) => {
                use std::os::fd::AsRawFd;
                // wasmtime takes a component's file by its path; this one is
                // reachable through the process's own descriptor table.
                let path = format!("/proc/self/fd/{}", file.as_raw_fd());
                // SAFETY: the caller's promise; the file is ours and nothing
                // writes to it after it was filled.
                unsafe { Component::deserialize_file(engine, path) }
            }
            // SAFETY: the caller's promise.
            Unpacked::Bytes(bytes) => unsafe { Component::deserialize(engine, bytes) },
        }
    }
}

/// Decompresses `frames` into a new memory file; an error when the system
/// refuses one (or `/proc` is not there to reach it by), and the caller
/// decompresses to the heap instead.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn unpack_to_memory_file(frames: Frames, name: &str) -> std::io::Result<std::fs::File> {
    use rustix::mm::{MapFlags, ProtFlags};
    if !std::path::Path::new("/proc/self/fd").is_dir() {
        return Err(std::io::Error::other("/proc/self/fd is missing"));
    }
    let len = frames.iter().map(|(_, size)| size).sum();
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    // Every page is written: the mapping is populated whole when it is made
    // (one pass in the kernel instead of a page fault for each of the 4 KiB
    // pages; a warm start of the sample on one core, 57-60 -> 45-48 ms).
    // SAFETY: a new shared mapping of the whole of a file made just now, which
    // nothing else maps, writes or sizes; unmapped below, and the slice made
    // of it is not used after that.
    unsafe {
        let at = rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED | MapFlags::POPULATE,
            &fd,
            0,
        )?;
        unpack_to(
            frames,
            std::slice::from_raw_parts_mut(at.cast::<u8>(), len),
            name,
        );
        rustix::mm::munmap(at, len)?;
    }
    Ok(std::fs::File::from(fd))
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

/// Decompresses the blocks `build.rs` wrote, side by side (a thread each).
/// They are part of the binary, as trusted as its code and no more checked:
/// one that does not decompress to exactly its recorded size means the binary
/// itself is damaged, which no fallback can mend.
fn unpack(frames: Frames, name: &str) -> Vec<u8> {
    let mut out = vec![0u8; frames.iter().map(|(_, size)| size).sum()];
    unpack_to(frames, &mut out, name);
    out
}

/// Decompresses `frames` into `out`, exactly their size, side by side.
fn unpack_to(frames: Frames, out: &mut [u8], name: &str) {
    std::thread::scope(|s| {
        let mut rest = out;
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
}

/// Decompresses `packed` into `out`, which it must fill exactly.
fn unpack_into(packed: &[u8], out: &mut [u8], name: &str) {
    let damaged = |why: String| -> ! {
        panic!("the built-in component {name} in this binary is damaged: {why}")
    };
    let size = i32::try_from(out.len()).unwrap_or_else(|_| damaged("a block too large".into()));
    match lz4::block::decompress_to_buffer(packed, Some(size), out) {
        Ok(n) if n == out.len() => {}
        Ok(n) => damaged(format!("{n} bytes instead of {}", out.len())),
        Err(e) => damaged(e.to_string()),
    }
    #[cfg(target_os = "linux")]
    release(packed);
}

/// Gives the kernel back the pages of `packed`, compressed bytes of the
/// binary read once at start: left mapped they stay resident for good (8 MB
/// of the gateway's 40 MB after start). Read again (a swap back to a built-in
/// component), they come back from the binary's file.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn release(packed: &[u8]) {
    let page = rustix::param::page_size();
    let start = (packed.as_ptr() as usize).next_multiple_of(page);
    let end = (packed.as_ptr() as usize + packed.len()) / page * page;
    if end > start {
        // SAFETY: whole pages within `packed`, an `include_bytes!` of the
        // binary, so read-only, never relocated data of its private file
        // mapping: the kernel drops them and a later read maps the file's
        // same bytes again. Nothing is written through the pointer.
        let _ = unsafe {
            rustix::mm::madvise(
                start as *mut std::ffi::c_void,
                end - start,
                rustix::mm::Advice::LinuxDontNeed,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    /// What is carried is what the workspace builds: the Wasm decompresses to
    /// the file build.rs built (for the validator, the pre-initialized one),
    /// with the recorded digest and size.
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

    /// An artifact decompressed into a memory file holds what the same
    /// artifact decompressed on the heap does, byte for byte.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_artifact_in_a_memory_file_is_the_artifact() {
        for b in ALL {
            let frames = b.artifact.expect("this target has a compiler");
            let on_heap = unpack(frames, b.name);
            let Some(Unpacked::File(file)) = b.precompiled() else {
                panic!("{}: not in a memory file", b.name);
            };
            let mut in_file = Vec::new();
            std::io::Read::read_to_end(&mut &file, &mut in_file).unwrap();
            assert_eq!(in_file.len(), on_heap.len(), "{}", b.name);
            assert!(in_file == on_heap, "{}", b.name);
        }
    }
}
