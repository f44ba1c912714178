//! Compiling what arrives while serving (uploads, the components directory,
//! the shared record) in a process of its own, under a time and a memory
//! budget (`Limits.CompileTimeoutMs`, `Limits.CompileMemoryMib`).
//!
//! Compile time and memory grow with what a component holds, and compilation
//! cannot be interrupted: in the gateway's own process a component built to be
//! expensive would hold a core for as long as it likes and leave the process
//! larger for good. The compiler process (`tenant-gateway compile-component`,
//! the gateway's own binary) reads the component on standard input, compiles it
//! on one thread at low priority with its heap capped (`RLIMIT_DATA`), writes
//! the precompiled artifact to standard output and ends; past the deadline it
//! is killed. It ends with the gateway, too (Linux parent-death signal). The
//! artifact comes back as the cache's do: the gateway signs and keeps it, then
//! loads it with its own engine, which refuses one made by an incompatible
//! engine. The built-in components, whose artifacts come precompiled in the
//! binary, are compiled the same way when this engine refuses those (all at
//! once, see `Loader::compile_aside`), in-process where that fails.

use super::components::LoadError;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The hidden subcommand the compiler process runs.
pub const SUBCOMMAND: &str = "compile-component";

/// How much of the compiler's standard error is kept for the message.
const MAX_ERROR_BYTES: u64 = 16 * 1024;

/// Where and under what budget components are compiled.
#[derive(Debug, Clone)]
pub struct Compiler {
    /// The gateway binary to run as the compiler process; `None`: compile in
    /// this process (library use and unit tests).
    pub exe: Option<PathBuf>,
    /// `Limits.CompileTimeoutMs`.
    pub timeout: Duration,
    /// `Limits.CompileMemoryMib`.
    pub memory_mib: u32,
}

/// What [`Compiler::precompile`] failed with.
fn budget(why: String) -> LoadError {
    LoadError::CompileBudget(why)
}

impl Compiler {
    /// The compiler of `limits`, running `exe`.
    pub fn new(exe: Option<PathBuf>, limits: &crate::config::Limits) -> Self {
        Self {
            exe,
            timeout: Duration::from_millis(limits.compile_timeout_ms),
            memory_mib: limits.compile_memory_mib,
        }
    }

    /// Precompiles `bytes` into an artifact for an engine of
    /// [`super::compiler_config`]: in the compiler process when there is one,
    /// else on a blocking thread of this one.
    pub async fn precompile(
        &self,
        engine: &wasmtime::Engine,
        bytes: bytes::Bytes,
    ) -> Result<Vec<u8>, LoadError> {
        let Some(exe) = &self.exe else {
            let engine = engine.clone();
            return tokio::task::spawn_blocking(move || engine.precompile_component(&bytes))
                .await
                .map_err(|e| LoadError::Compile(format!("compilation task failed: {e}")))?
                .map_err(|e| LoadError::Compile(format!("{e:#}")));
        };
        let mut child = tokio::process::Command::new(exe)
            .arg(SUBCOMMAND)
            .arg("--memory-mib")
            .arg(self.memory_mib.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LoadError::Compile(format!("cannot start the compiler process: {e}")))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(LoadError::Compile(
                "the compiler process has no pipes".into(),
            ));
        };
        // The artifact cannot be larger than the heap it was made in.
        let max_artifact = u64::from(self.memory_mib) << 20;
        let run = async {
            let feed = async {
                // A compiler that died early closes its end: its exit says why.
                let _ = stdin.write_all(&bytes).await;
                drop(stdin);
            };
            let mut artifact = Vec::new();
            let mut error = Vec::new();
            let mut stdout = stdout.take(max_artifact + 1);
            let mut stderr = stderr.take(MAX_ERROR_BYTES);
            let (_, out, err) = tokio::join!(
                feed,
                stdout.read_to_end(&mut artifact),
                stderr.read_to_end(&mut error)
            );
            let status = child.wait().await;
            (status, out.map(|_| artifact), err.map(|_| error))
        };
        let outcome = tokio::time::timeout(self.timeout, run).await;
        let (status, artifact, error) = match outcome {
            Ok(done) => done,
            Err(_) => {
                // Killed now; tokio reaps it.
                let _ = child.start_kill();
                return Err(budget(format!(
                    "compiling it took longer than {} ms (Limits.CompileTimeoutMs)",
                    self.timeout.as_millis()
                )));
            }
        };
        let status = status
            .map_err(|e| LoadError::Compile(format!("waiting for the compiler process: {e}")))?;
        let error = String::from_utf8_lossy(&error.unwrap_or_default())
            .trim()
            .to_owned();
        if status.success() {
            let artifact = artifact
                .map_err(|e| LoadError::Compile(format!("reading the compiled component: {e}")))?;
            if artifact.len() as u64 > max_artifact {
                return Err(budget(format!(
                    "the compiled component is larger than {} MiB (Limits.CompileMemoryMib)",
                    self.memory_mib
                )));
            }
            return Ok(artifact);
        }
        if out_of_memory(&status, &error) {
            return Err(budget(format!(
                "compiling it needs more than {} MiB (Limits.CompileMemoryMib)",
                self.memory_mib
            )));
        }
        Err(LoadError::Compile(if error.is_empty() {
            format!("the compiler process failed ({status})")
        } else {
            error
        }))
    }
}

/// Whether the compiler process ended for want of memory: an allocation the
/// heap limit refused aborts it (Rust says so on standard error), the kernel's
/// out-of-memory killer kills it.
fn out_of_memory(status: &std::process::ExitStatus, error: &str) -> bool {
    if error.contains("memory allocation of") {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        matches!(status.signal(), Some(6 | 9))
    }
    #[cfg(not(unix))]
    {
        let _ = status;
        false
    }
}

/// The compiler process: reads a component on standard input and writes its
/// precompiled artifact to standard output. `memory_mib` caps its heap.
pub fn run_child(memory_mib: u64) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::{Read, Write};
    #[cfg(target_os = "linux")]
    {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .context("setting the parent-death signal")?;
    }
    #[cfg(unix)]
    {
        // Below the gateway's request threads, for the scheduler.
        let _ = rustix::process::setpriority_process(None, 10);
        let bytes = memory_mib.saturating_mul(1 << 20);
        rustix::process::setrlimit(
            rustix::process::Resource::Data,
            rustix::process::Rlimit {
                current: Some(bytes),
                maximum: Some(bytes),
            },
        )
        .context("limiting the compiler's memory")?;
    }
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .context("reading the component")?;
    let mut config = super::compiler_config();
    config.parallel_compilation(false);
    let engine = wasmtime::Engine::new(&config)?;
    let artifact = engine.precompile_component(&bytes)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&artifact)?;
    out.flush()?;
    Ok(())
}
