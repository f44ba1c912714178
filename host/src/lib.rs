//! tenant-gateway: routes requests by tenant and serves tenant configuration through
//! sandboxed Wasm components, over an embedded (SQLite) or shared store.
#![deny(missing_docs)]

//!
//! Layers, lowest first; a module imports only from layers below its own
//! (checked by `layers::no_module_imports_upward`; see ARCHITECTURE.md):
//! `config`, `telemetry` · `store` · `tenancy` · `security` · `wasm` ·
//! `registry`, `manage` · `http` · `api`, `traffic` · `app`.

pub mod amqp;
pub mod api;
pub mod app;
pub mod config;
#[cfg(test)]
mod fuzz;
pub mod http;
#[cfg(test)]
mod layers;
pub mod manage;
pub mod registry;
pub mod security;
pub mod store;
pub mod telemetry;
pub mod tenancy;
pub mod traffic;
pub mod wasm;

pub use app::{Options, Running, Watch, apply_settings, start};

thread_local! {
    /// Which connection worker this thread is ([`connection_worker`]).
    static CONNECTION_WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The connection worker (`http::workers`) whose thread this is, 1, 2, …
/// (numbered per listener), or 0 on any other thread. Upstream connections
/// are kept for requests of the worker that drives them (`traffic::pool`),
/// and a component called there runs on the main runtime instead
/// (`wasm::Runtime::on_guest_threads`).
pub(crate) fn connection_worker() -> usize {
    CONNECTION_WORKER.with(std::cell::Cell::get)
}

/// Marks this thread as connection worker `n` (`http::workers`).
pub(crate) fn set_connection_worker(n: usize) {
    CONNECTION_WORKER.with(|w| w.set(n));
}

/// Returns the heap's free pages to the system (glibc keeps what a burst of
/// allocation grew, however much of it is freed).
pub(crate) fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it takes no pointers.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Appends `part` after its length in `N` little-endian bytes (what
/// [`prefixed_parts`] reads back); `None`, and nothing appended, when the
/// length does not fit in them.
pub(crate) fn push_prefixed<const N: usize>(out: &mut Vec<u8>, part: &[u8]) -> Option<()> {
    let len = part.len().to_le_bytes();
    if len[N..].iter().any(|&b| b != 0) {
        return None;
    }
    out.extend_from_slice(&len[..N]);
    out.extend_from_slice(part);
    Some(())
}

/// The parts [`push_prefixed`] wrote into `bytes`, in order (up to the first
/// that is cut short).
pub(crate) fn prefixed_parts<const N: usize>(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, tail) = bytes.split_first_chunk::<N>()?;
        let mut whole = [0; std::mem::size_of::<usize>()];
        whole[..N].copy_from_slice(len);
        let (part, tail) = tail.split_at_checked(usize::from_le_bytes(whole))?;
        bytes = tail;
        Some(part)
    })
}

/// A temporary name beside `file` that is this call's own (process id and a
/// counter): two writers of one file, in one process or in two, never write,
/// rename or remove each other's temporary file.
pub(crate) fn temp_beside(file: &std::path::Path) -> std::path::PathBuf {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    file.with_extension(format!("tmp{}-{call}", std::process::id()))
}

/// Writes `file` whole: the bytes go to a file beside it, renamed over it, so a
/// reader never sees half of them (the directory is created if missing).
pub(crate) fn write_whole(file: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = temp_beside(file);
    let written = (|| {
        let mut out = std::fs::File::create(&tmp)?;
        out.write_all(bytes)?;
        // The bytes reach the disk before the name points at them, and the
        // new name reaches it before we say it is written: a power cut leaves
        // the old file or the new one, never an empty one.
        out.sync_all()?;
        std::fs::rename(&tmp, file)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The current time as RFC 3339 UTC, seconds precision.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Run under strace by the test below (on its own it is ignored).
    #[test]
    #[ignore = "run by write_whole_syncs_the_file_before_and_the_directory_after_the_rename"]
    fn write_whole_once() {
        let dir = std::env::var_os("TG_WRITE_WHOLE_DIR").expect("TG_WRITE_WHOLE_DIR");
        super::write_whole(&Path::new(&dir).join("state.json"), b"{\"v\":2}").unwrap();
    }

    /// The file's bytes are synced before the rename makes them the state and
    /// the directory after it, seen in the system calls themselves (strace).
    /// Before, no sync was made: a power cut could leave the registry state
    /// file empty.
    #[test]
    fn write_whole_syncs_the_file_before_and_the_directory_after_the_rename() {
        let strace = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("strace"))
                .find(|p| p.is_file())
        });
        let Some(strace) = strace else {
            assert!(
                std::env::var_os("TG_REQUIRE_TOOLS").is_none(),
                "TG_REQUIRE_TOOLS is set and strace is missing (scripts/test installs it)"
            );
            eprintln!("\n*** SKIPPED: no strace on PATH (scripts/test installs it) ***\n");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.json"), b"{\"v\":1}").unwrap();
        let trace: PathBuf = dir.path().join("trace");
        let out = std::process::Command::new(strace)
            .args([
                "-f",
                "-qq",
                "-e",
                "trace=fsync,fdatasync,rename,renameat,renameat2",
                "-o",
            ])
            .arg(&trace)
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::write_whole_once",
                "--ignored",
                "--test-threads=1",
            ])
            .env("TG_WRITE_WHOLE_DIR", dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let calls = std::fs::read_to_string(&trace).unwrap();
        let lines: Vec<&str> = calls.lines().collect();
        let rename = lines
            .iter()
            .position(|l| l.contains("rename") && l.contains("state.json"))
            .unwrap_or_else(|| panic!("no rename:\n{calls}"));
        let sync = |l: &&str| l.contains("fsync(") || l.contains("fdatasync(");
        assert!(
            lines[..rename].iter().any(sync),
            "no sync before the rename:\n{calls}"
        );
        assert!(
            lines[rename..].iter().any(sync),
            "no sync after the rename:\n{calls}"
        );
        assert_eq!(
            std::fs::read(dir.path().join("state.json")).unwrap(),
            b"{\"v\":2}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains("tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
