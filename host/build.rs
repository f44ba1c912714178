//! Builds the Wasm components from the workspace (`components/*`) for
//! `wasm32-wasip2` and exposes their paths to the host crate, so the binary embeds
//! components built from the current source. Installs the target with rustup when
//! it is missing.
//!
//! The built-in ones are then precompiled here, with the engine configuration
//! the gateway runs with (`src/wasm/engine_config.rs`, included below) for the
//! portable CPU features of the target, and written LZ4-compressed with their
//! digests to `$OUT_DIR/builtin.rs`, which `src/wasm/builtin.rs` includes: a
//! fresh start loads them in milliseconds instead of compiling for seconds.

use sha2::Digest;
use std::fmt::Write as _;
use std::future::Future as _;
use std::path::{Path, PathBuf};
use std::process::Command;

include!("build_env.rs");

#[path = "src/wasm/engine_config.rs"]
mod engine_config;

/// The built-in components: (package, static in `wasm::builtin`, name in logs).
const BUILTINS: [(&str, &str, &str); 4] = [
    ("tg-validator", "VALIDATOR", "validator"),
    ("tg-feature-gate", "FEATURE_GATE", "feature-gate"),
    ("tg-config-api", "CONFIG_API", "config-api"),
    ("tg-tenant-app", "TENANT_APP", "tenant-app"),
];
/// LZ4's highest compression level (LZ4 HC): decompression is as fast at any
/// level. Every start decompresses the artifacts: LZ4 does it at 3.3 GB/s
/// on one core where zstd (level 19) did 0.73 GB/s; it makes them 1.6 times
/// as large (the validator's 13.2 MB artifact: 5.2 MB instead of 3.3 MB).
const LZ4_LEVEL: i32 = 12;
/// The largest piece compressed as one block: the validator's 13 MB artifact
/// is four, decompressed on every core at once.
const FRAME: usize = 4 << 20;

const TARGET: &str = "wasm32-wasip2";
/// Each group is one cargo invocation: (package, env var naming the built file).
/// The failure-test fixture and the policy examples link the validator or
/// feature-gate crate without its exports, so they are built apart (in one
/// invocation cargo would unify the crate's features). They go first: should
/// their build touch those crates' own artifacts, the main group's build, which
/// comes after, leaves the exporting ones in place. The fixtures are test
/// components: the binary embeds only the four of the main group, which is
/// exactly what `spin.toml`'s build command builds (a test keeps the two the
/// same), so `spin build` after a gateway build is a no-op and both hosts run
/// the same files.
const GROUPS: [&[(&str, &str)]; 2] = [
    &[
        ("tg-faulty-validator", "TG_FAULTY_VALIDATOR_WASM"),
        ("tg-policy-validator", "TG_POLICY_VALIDATOR_WASM"),
        ("tg-policy-feature-gate", "TG_POLICY_FEATURE_GATE_WASM"),
        ("tg-broken-validator", "TG_BROKEN_VALIDATOR_WASM"),
        ("tg-outbound-probe", "TG_OUTBOUND_PROBE_WASM"),
    ],
    &[
        ("tg-validator", "TG_VALIDATOR_WASM"),
        ("tg-feature-gate", "TG_FEATURE_GATE_WASM"),
        ("tg-config-api", "TG_CONFIG_API_WASM"),
        ("tg-tenant-app", "TG_TENANT_APP_WASM"),
    ],
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for watched in ["components", "wit", "schemas", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    // `CARGO_PROFILE_COMPONENT_STRIP=debuginfo` keeps the components' function
    // names (for `perf` with `TENANT_GATEWAY_PERFMAP=1`): the nested build reads it.
    println!("cargo:rerun-if-env-changed=CARGO_PROFILE_COMPONENT_STRIP");
    println!("cargo:rerun-if-changed=build_env.rs");
    println!("cargo:rerun-if-changed=src/wasm/engine_config.rs");

    ensure_target();

    // One component target dir shared by every host profile (dev, test, release,
    // bench), so the components are built once.
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => root.join("target"),
    }
    .join("components");

    let out = target_dir.join(TARGET).join("component");
    let mut built = std::collections::HashMap::new();
    for group in GROUPS {
        build(&root, &target_dir, group);
        for (package, var) in group {
            let mut file = out.join(format!("{}.wasm", package.replace('-', "_")));
            assert!(file.exists(), "missing component {}", file.display());
            if *package == PRE_INITIALIZED.0 {
                file = pre_initialized(&file);
            }
            println!("cargo:rustc-env={var}={}", file.display());
            built.insert(*package, file);
        }
    }
    embed(&built);
}

/// The component whose first-call work is done here, once, instead of in
/// every instance the gateway makes: (package, interface, function to call).
/// The validator compiles its JSON Schemas on its first call: 15 ms of guest
/// code per instance on one core, most of a warm start, paid again for each
/// instance a warm pool primes. Wizer runs the call and writes the memory it
/// leaves into the component's data segments, so every instance starts with
/// the schemas compiled.
const PRE_INITIALIZED: (&str, &str, &str) = (
    "tg-validator",
    "tenant-gateway:validator/validator@0.2.0",
    "default-config",
);

/// `file` pre-initialized ([`PRE_INITIALIZED`]), written beside it as
/// `*.pre.wasm` (when its bytes changed); `file` itself when that fails, with
/// a warning: the gateway then does the work in each instance.
fn pre_initialized(file: &Path) -> PathBuf {
    let wasm = std::fs::read(file).unwrap();
    match pre_initialize(&wasm) {
        Ok(done) => {
            let out = file.with_extension("pre.wasm");
            if std::fs::read(&out).ok().as_deref() != Some(&done[..]) {
                std::fs::write(&out, &done).unwrap();
            }
            out
        }
        Err(e) => {
            println!(
                "cargo:warning=not pre-initializing {}: {e:#}",
                PRE_INITIALIZED.0
            );
            file.to_path_buf()
        }
    }
}

/// Instantiates `wasm` with every import but `wasi:random` a trap (the call
/// must need no other), calls [`PRE_INITIALIZED`]'s function and snapshots
/// the instance.
fn pre_initialize(wasm: &[u8]) -> wasmtime::Result<Vec<u8>> {
    use wasmtime::component::{Component, Linker};
    let (_, interface, function) = PRE_INITIALIZED;
    let wizer = wasmtime_wizer::Wizer::new();
    let (cx, instrumented) = wizer.instrument_component(wasm)?;
    let engine = wasmtime::Engine::default();
    let component = Component::new(&engine, &instrumented)?;
    let mut linker = Linker::new(&engine);
    // Hash maps take their keys from `wasi:random` on first use (the
    // standard library's from `insecure-seed`, the schema compiler's from
    // `random`), and the snapshot keeps them. They are drawn from the Wasm's
    // own digest, so the same source gives the same bytes in every build and
    // profile (which share the component directory, and whose tests compare
    // the file with what the binary carries). Being known to whoever has the
    // binary, they are no secret either way; the maps keyed by a request's
    // input live in the call, which its deadline bounds.
    let draws = std::sync::Arc::new(Draws {
        digest: sha2::Sha256::digest(wasm).into(),
        count: std::sync::atomic::AtomicU64::new(0),
    });
    for (name, _) in component.component_type().imports(&engine) {
        if name.starts_with("wasi:random/insecure-seed@") {
            let draws = draws.clone();
            linker
                .instance(name)?
                .func_wrap("insecure-seed", move |_, (): ()| {
                    Ok(((draws.next(), draws.next()),))
                })?;
        } else if name.starts_with("wasi:random/random@") {
            let mut random = linker.instance(name)?;
            let from = draws.clone();
            random.func_wrap("get-random-u64", move |_, (): ()| Ok((from.next(),)))?;
            let from = draws.clone();
            random.func_wrap("get-random-bytes", move |_, (n,): (u64,)| {
                let n = usize::try_from(n)?.min(1 << 16);
                let bytes: Vec<u8> = std::iter::repeat_with(|| from.next().to_le_bytes())
                    .flatten()
                    .take(n)
                    .collect();
                Ok((bytes,))
            })?;
        }
    }
    linker.define_unknown_imports_as_traps(&component)?;
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &component)?;
    let mut state = Snapshotted {
        store: &mut store,
        instance,
    };
    state.call::<String, _>(interface, function, |_, _| ())?;
    // Every call below is synchronous: the future is ready when first polled.
    let snapshot = std::pin::pin!(wizer.snapshot_component(&cx, &mut state));
    match snapshot.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(done) => done,
        std::task::Poll::Pending => wasmtime::bail!("the snapshot did not complete"),
    }
}

/// The values `wasi:random` gives the pre-initializing call: SHA-256 of the
/// Wasm's digest and a counter.
struct Draws {
    digest: [u8; 32],
    count: std::sync::atomic::AtomicU64,
}

impl Draws {
    fn next(&self) -> u64 {
        let n = self
            .count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut hash = sha2::Sha256::new();
        hash.update(self.digest);
        hash.update(n.to_le_bytes());
        let out: [u8; 32] = hash.finalize().into();
        u64::from_le_bytes(out[..8].try_into().expect("8 bytes"))
    }
}

/// The instance Wizer reads the state of, through the accessors it added.
struct Snapshotted<'a> {
    store: &'a mut wasmtime::Store<()>,
    instance: wasmtime::component::Instance,
}

impl Snapshotted<'_> {
    /// Calls `func` of `interface` (no parameters, one result) and hands
    /// `then` the result.
    fn call<R: wasmtime::component::Lift + 'static, T>(
        &mut self,
        interface: &str,
        func: &str,
        then: impl FnOnce(&wasmtime::Store<()>, R) -> T,
    ) -> wasmtime::Result<T> {
        let store = &mut *self.store;
        let (_, at) = self
            .instance
            .get_export(&mut *store, None, interface)
            .ok_or_else(|| wasmtime::format_err!("no export {interface}"))?;
        let (_, f) = self
            .instance
            .get_export(&mut *store, Some(&at), func)
            .ok_or_else(|| wasmtime::format_err!("no function {func} in {interface}"))?;
        let f = self.instance.get_typed_func::<(), (R,)>(&mut *store, f)?;
        let (value,) = f.call(&mut *store, ())?;
        Ok(then(store, value))
    }

    /// [`Snapshotted::call`] of an accessor Wizer added, which cannot fail
    /// on the instance it instrumented.
    fn access<R: wasmtime::component::Lift + 'static, T>(
        &mut self,
        interface: &str,
        func: &str,
        then: impl FnOnce(&wasmtime::Store<()>, R) -> T,
    ) -> T {
        self.call(interface, func, then)
            .unwrap_or_else(|e| panic!("Wizer's accessor {interface}.{func}: {e:#}"))
    }
}

impl wasmtime_wizer::ComponentInstanceState for Snapshotted<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        interface: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        self.access(
            interface,
            func,
            |store, list: wasmtime::component::WasmList<u8>| contents(list.as_le_slice(store)),
        )
    }

    async fn call_func_ret_s32(&mut self, interface: &str, func: &str) -> i32 {
        self.access(interface, func, |_, v| v)
    }

    async fn call_func_ret_s64(&mut self, interface: &str, func: &str) -> i64 {
        self.access(interface, func, |_, v| v)
    }

    async fn call_func_ret_f32(&mut self, interface: &str, func: &str) -> u32 {
        self.access(interface, func, |_, v: f32| v.to_bits())
    }

    async fn call_func_ret_f64(&mut self, interface: &str, func: &str) -> u64 {
        self.access(interface, func, |_, v: f64| v.to_bits())
    }
}

/// Precompiles and compresses the built-in components (`built`: each
/// package's built `.wasm` file) and writes `$OUT_DIR/builtin.rs`.
fn embed(built: &std::collections::HashMap<&str, PathBuf>) {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let engine = precompiler()
        .map_err(|e| println!("cargo:warning=not precompiling the built-in components: {e:#}"))
        .ok();
    let mut code = String::new();
    for (package, ident, name) in BUILTINS {
        let file = package.replace('-', "_");
        let wasm = std::fs::read(&built[package]).unwrap();
        let digest: [u8; 32] = sha2::Sha256::digest(&wasm).into();
        let artifact = engine
            .as_ref()
            .and_then(|engine| {
                engine
                    .precompile_component(&wasm)
                    .map_err(|e| println!("cargo:warning=not precompiling {name}: {e:#}"))
                    .ok()
            })
            .map_or("None".to_owned(), |artifact| {
                format!(
                    "Some({})",
                    frames(&out_dir, &format!("{file}.cwasm"), &artifact)
                )
            });
        writeln!(
            code,
            "/// The built-in {name} component.\n\
             pub static {ident}: Builtin = Builtin {{ name: {name:?}, sha256: {digest:?}, \
             wasm: {}, artifact: {artifact} }};",
            frames(&out_dir, &format!("{file}.wasm"), &wasm),
        )
        .unwrap();
    }
    std::fs::write(out_dir.join("builtin.rs"), code).unwrap();
}

/// The engine that precompiles the built-in components: the gateway's
/// configuration, for the target being built rather than this machine, with the
/// CPU features every machine of the target's family has: x86-64-v2 on x86-64
/// (every x86-64 server CPU since 2009), the base architecture elsewhere. A
/// gateway on a CPU without them refuses the artifacts and compiles the Wasm.
fn precompiler() -> wasmtime::Result<wasmtime::Engine> {
    let target = std::env::var("TARGET").unwrap();
    let mut config = engine_config::compiler_config();
    config.target(&target)?;
    if target.starts_with("x86_64") {
        for flag in [
            "has_cmpxchg16b",
            "has_sse3",
            "has_ssse3",
            "has_sse41",
            "has_sse42",
            "has_popcnt",
        ] {
            // SAFETY: these are CPU features the artifact then needs; the
            // gateway's engine checks each against the CPU it runs on when it
            // loads the artifact (`Component::deserialize`), and refuses it
            // where one is missing.
            #[allow(unsafe_code)]
            unsafe {
                config.cranelift_flag_enable(flag);
            }
        }
    }
    wasmtime::Engine::new(&config)
}

/// Writes `bytes` to `out_dir` as LZ4 blocks of at most FRAME bytes of input,
/// named after `stem`, and returns the Rust expression of their list:
/// `&[(include_bytes!(file), size), …]`.
fn frames(out_dir: &Path, stem: &str, bytes: &[u8]) -> String {
    let mode = lz4::block::CompressionMode::HIGHCOMPRESSION(LZ4_LEVEL);
    let mut list = String::from("&[");
    for (i, part) in bytes.chunks(FRAME).enumerate() {
        let file = out_dir.join(format!("{stem}.{i}.lz4"));
        std::fs::write(
            &file,
            lz4::block::compress(part, Some(mode), false).unwrap(),
        )
        .unwrap();
        write!(
            list,
            "(include_bytes!({:?}), {}), ",
            file.display().to_string(),
            part.len()
        )
        .unwrap();
    }
    list.push(']');
    list
}

fn build(root: &Path, target_dir: &Path, group: &[(&str, &str)]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--profile", "component", "--target", TARGET])
        .arg("--target-dir")
        .arg(target_dir);
    for (package, _) in group {
        cmd.args(["-p", package]);
    }
    for var in OUTER_BUILD_ENV {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo for the Wasm components");
    assert!(status.success(), "building the Wasm components failed");
}

/// Installs the `wasm32-wasip2` standard library with rustup if this toolchain
/// lacks it (rust-toolchain.toml lists it, but rustup only honours that list when
/// it installs the toolchain itself).
fn ensure_target() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.as_deref().is_some_and(has_std) {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup");
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", TARGET]);
    if let Some(toolchain) = std::env::var_os("RUSTUP_TOOLCHAIN") {
        cmd.arg("--toolchain").arg(toolchain);
    }
    let status = cmd
        .status()
        .expect("rustup is needed to install the wasm32-wasip2 target");
    assert!(status.success(), "`rustup target add {TARGET}` failed");
}

fn has_std(libdir: &Path) -> bool {
    std::fs::read_dir(libdir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
    })
}
