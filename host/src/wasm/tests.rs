use super::*;
use crate::store::SqliteStore;

/// Waits at most `within` for `pool`'s primed instances (made in the
/// background); whether they are there.
async fn primed<P: pool::Instantiate>(pool: &WarmPool<P>, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while pool.primed_count() < 2 {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

fn runtime(dir: &std::path::Path) -> Arc<Runtime> {
    let shared = Arc::new(Shared::new(Arc::new(SqliteStore::open(dir).unwrap())));
    let limits = Limits {
        component_timeout_ms: 500,
        ..Limits::default()
    };
    // Compiled components are cached by content and engine hash: safe to share.
    let root = std::env::temp_dir().join("tenant-gateway-unit-test-cache");
    let cache = cache::ArtifactCache::open(&root.join("artifacts"), &root.join("cache.key"));
    let compiler = compiler::Compiler::new(None, &limits);
    Runtime::new(
        shared,
        limits,
        Some(cache.unwrap()),
        compiler,
        Metrics::default(),
    )
    .unwrap()
}

const BAD_CACHE: &str = r#"{"performance":{"cache_size_mb":200000}}"#;

/// What the compiler process makes (its engine: [`compiler_config`], one
/// thread, no pooling) loads in the gateway's engine; a mismatch would fail
/// every upload.
#[test]
fn the_compiler_processes_artifacts_load_in_the_gateways_engine() {
    let mut config = compiler_config();
    config.parallel_compilation(false);
    let compiler = Engine::new(&config).unwrap();
    let artifact = compiler
        .precompile_component(&builtin::FEATURE_GATE.wasm())
        .unwrap();
    let gateway = engine(&Limits::default()).unwrap();
    // SAFETY: made just now by `precompile_component`.
    #[allow(unsafe_code)]
    let loaded = unsafe { Component::deserialize(&gateway, &artifact) };
    assert!(loaded.is_ok(), "{:?}", loaded.err());
    // An engine that shapes code otherwise (no epoch interruption) is refused.
    let mut other = wasmtime::Config::new();
    other.wasm_component_model(true);
    let foreign = Engine::new(&other)
        .unwrap()
        .precompile_component(&builtin::FEATURE_GATE.wasm())
        .unwrap();
    #[allow(unsafe_code)]
    let refused = unsafe { Component::deserialize(&gateway, &foreign) };
    assert!(refused.is_err());
}

/// The artifacts precompiled into the binary at build time (for portable CPU
/// features, not this machine's) load in the gateway's engine, which runs with
/// this machine's; an engine that shapes code otherwise refuses them, and the
/// built-in component is then compiled (`Runtime::new`).
#[test]
fn the_artifacts_built_into_the_binary_load_in_the_gateways_engine() {
    let gateway = engine(&Limits::default()).unwrap();
    let mut other = compiler_config();
    other.epoch_interruption(false);
    let other = Engine::new(&other).unwrap();
    for b in builtin::ALL {
        let artifact = b.precompiled().expect("this target has a compiler");
        // SAFETY: made by `precompile_component` when this binary was built.
        #[allow(unsafe_code)]
        let loaded = unsafe { artifact.deserialize(&gateway) };
        assert!(loaded.is_ok(), "{}: {:?}", b.name, loaded.err());
        #[allow(unsafe_code)]
        let refused = unsafe { artifact.deserialize(&other) };
        let e = format!("{:#}", refused.expect_err("refused"));
        assert!(e.contains("epoch"), "{}: {e}", b.name);
    }
}

/// A bad module is rejected and the running one keeps serving; a good one
/// replaces it atomically.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_keeps_the_old_set_when_the_new_one_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    rt.warm_up().await.unwrap();

    let validator = || Slot::global(Kind::Validator);
    let garbage = Bytes::from_static(b"\0asm\x0d\0\x01\0 not really");
    let e = rt
        .load(validator(), garbage, Source::Api)
        .await
        .unwrap_err();
    assert!(matches!(e, LoadError::Compile(_)), "{e}");
    let gate = builtin::FEATURE_GATE.wasm();
    let e = rt.load(validator(), gate, Source::Api).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("does not export tenant-gateway:validator/validator@0.2.*"),
        "{e}"
    );
    // A plugin built against 0.1.0 (one package for every plugin interface)
    // is told what changed.
    let legacy = wat::parse_str(
        r#"(component (instance $i) (export "tenant-gateway:plugins/validator@0.1.0" (instance $i)))"#,
    )
    .unwrap();
    let e = rt
        .load(validator(), Bytes::from(legacy), Source::Api)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("built against tenant-gateway:plugins@0.1"),
        "{e}"
    );
    let builtin_sha = rt.snapshot().validator.info.sha256.clone();
    let out = rt
        .apply_patch(None, BAD_CACHE, Instance::Warm)
        .await
        .unwrap();
    assert_eq!(
        out.unwrap_err()[0].message,
        "Cache size exceeds maximum (100 GB)"
    );

    // The fault-injecting validator is a valid validator: the swap succeeds and
    // the next call runs it (its marker now traps instead of validating).
    assert_eq!(rt.snapshot().validator.info.sha256, builtin_sha);
    let faulty = Bytes::from(std::fs::read(env!("TG_FAULTY_VALIDATOR_WASM")).unwrap());
    let info = rt.load(validator(), faulty, Source::Api).await.unwrap();
    assert_ne!(info.sha256, builtin_sha);
    assert_eq!(rt.snapshot().validator.info.sha256, info.sha256);
    let marker = r#"{"custom_settings":{"x":"fault:trap"}}"#;
    assert!(matches!(
        rt.apply_patch(None, marker, Instance::Warm).await,
        Err(CallError::Guest(_))
    ));
    // A trapped instance is not reused: the next call still works.
    assert!(
        rt.apply_patch(None, BAD_CACHE, Instance::Warm)
            .await
            .unwrap()
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_stops_an_endless_call() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let faulty = Bytes::from(std::fs::read(env!("TG_FAULTY_VALIDATOR_WASM")).unwrap());
    rt.load(Slot::global(Kind::Validator), faulty, Source::Api)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let r = rt
        .apply_patch(
            None,
            r#"{"custom_settings":{"x":"fault:spin"}}"#,
            Instance::Warm,
        )
        .await;
    assert!(matches!(r, Err(CallError::Guest(_))), "{r:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

/// Tenants new to the validator are served by primed instances: no instance
/// is made, and no schema compiled, on the request path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tenants_get_primed_instances() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    rt.warm_up().await.unwrap();
    let defaults = tg_validator::shared().default_config().to_string();
    let validator = rt.snapshot().validator.clone();
    // Warming up started the first instance cold and the primed ones in the
    // background; the refill after each call makes the next one.
    let all_primed = || async {
        assert!(
            primed(&validator.pool, Duration::from_secs(30)).await,
            "never primed"
        );
    };
    all_primed().await;
    let before = validator.pool.cold_starts();
    for tenant in ["a", "b", "c", "d", "e", "f"] {
        rt.validate_config(&defaults, Some(tenant))
            .await
            .unwrap()
            .unwrap();
        all_primed().await;
    }
    // Without primed instances each of the six would have started one cold.
    assert_eq!(validator.pool.cold_starts(), before);
}

/// Once busy tenants hold the whole idle budget, tenants new to the
/// validator are still served by primed instances (priming reclaims the
/// least recently used idle ones), and the newest tenants' own instances are
/// kept over the older ones'. (When the budget only ever shrank, priming
/// stopped there and every further tenant started an instance cold.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_idle_budget_makes_room_for_new_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    rt.warm_up().await.unwrap();
    let defaults = tg_validator::shared().default_config().to_string();
    let validator = rt.snapshot().validator.clone();
    let primed_again = || primed(&validator.pool, Duration::from_secs(5));
    // Warming up primes in the background.
    primed_again().await;
    // 16 tenants, each with four calls at once: they keep four idle
    // instances each, the whole budget.
    for t in 0..16 {
        let tenant = format!("busy-{t}");
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(validator.pool.acquire(&tenant).await.unwrap());
        }
        for w in held {
            validator.pool.release(&tenant, w);
        }
    }
    let held = validator.pool.idle_count() + validator.pool.primed_count();
    assert!(held >= IDLE_BUDGET - 4, "{held}");
    // 32 tenants new to the validator, one after another, each after the
    // refill had its chance: none starts an instance cold.
    let before = validator.pool.cold_starts();
    for t in 0..32 {
        primed_again().await;
        rt.validate_config(&defaults, Some(&format!("new-{t}")))
            .await
            .unwrap()
            .unwrap();
    }
    let cold = validator.pool.cold_starts() - before;
    assert!(cold <= 1, "{cold} of 32 new tenants started cold");
    // The budget still holds; the least recently used went first: the
    // newest tenants kept their own instance, the first busy one lost its.
    primed_again().await;
    let held = validator.pool.idle_count() + validator.pool.primed_count();
    assert!(held <= IDLE_BUDGET, "{held}");
    for t in 24..32 {
        assert_eq!(validator.pool.idle_of(&format!("new-{t}")), 1, "new-{t}");
    }
    assert_eq!(validator.pool.idle_of("busy-0"), 0);
}

fn imports(bytes: &[u8]) -> Vec<String> {
    // Only the component's type is needed: compile without optimisation.
    let mut config = wasmtime::Config::new();
    config.cranelift_opt_level(wasmtime::OptLevel::None);
    let engine = wasmtime::Engine::new(&config).unwrap();
    let c = wasmtime::component::Component::new(&engine, bytes).unwrap();
    let mut names: Vec<String> = c
        .component_type()
        .imports(&engine)
        .map(|(n, _)| n.to_owned())
        .collect();
    names.sort();
    names
}

/// The config API must run on Spin: it may import only what Spin provides
/// (`wasi:*`) and the plugin interfaces its `spin.toml` dependencies supply.
#[test]
fn config_api_imports_only_spin_interfaces_and_plugins() {
    let names = imports(&builtin::CONFIG_API.wasm());
    for name in &names {
        assert!(
            name.starts_with("wasi:")
                || name.starts_with("tenant-gateway:validator/")
                || name.starts_with("tenant-gateway:feature-gate/"),
            "unexpected import {name}"
        );
    }
    for needed in [
        "tenant-gateway:validator/validator@0.2.0",
        "tenant-gateway:feature-gate/feature-gate@0.2.0",
        "wasi:keyvalue/store@0.2.0-draft2",
        "wasi:keyvalue/atomics@0.2.0-draft2",
    ] {
        assert!(
            names.iter().any(|n| n == needed),
            "{needed} missing from {names:?}"
        );
    }
}

/// The sample tenant app imports only WASI (its settings come from
/// `wasi:cli/environment`), so the same file runs on Spin and on
/// `wasmtime serve` as well as here.
#[test]
fn tenant_app_imports_only_wasi() {
    let names = imports(&builtin::TENANT_APP.wasm());
    assert!(names.iter().all(|n| n.starts_with("wasi:")), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("wasi:cli/environment@")),
        "{names:?}"
    );
}

/// The plugins are self-contained: only WASI imports, so on Spin they can be
/// component dependencies of the config API as they are.
#[test]
fn plugins_import_only_wasi() {
    for b in [&builtin::VALIDATOR, &builtin::FEATURE_GATE] {
        let names = imports(&b.wasm());
        assert!(names.iter().all(|n| n.starts_with("wasi:")), "{names:?}");
    }
}

/// What an instance's linear memories grew by.
struct Growth {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
    grown: usize,
}

impl wasmtime_wasi::WasiView for Growth {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime::ResourceLimiter for Growth {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grown += desired.saturating_sub(current);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// What `component`'s first `default-config` call grows its memory by.
async fn first_call_growth(engine: &Engine, component: &Component) -> usize {
    let mut linker = Linker::<Growth>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    let mut store = wasmtime::Store::new(
        engine,
        Growth {
            wasi: wasmtime_wasi::WasiCtx::builder().build(),
            table: wasmtime::component::ResourceTable::new(),
            grown: 0,
        },
    );
    store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
    store.set_epoch_deadline(1 << 40);
    let validator =
        bindings::validator::ValidatorComponent::instantiate_async(&mut store, component, &linker)
            .await
            .unwrap();
    // From here on: what the call grows.
    store.data_mut().grown = 0;
    let defaults = validator
        .tenant_gateway_validator_validator()
        .call_default_config(&mut store)
        .await
        .unwrap();
    assert!(defaults.starts_with('{'), "{defaults}");
    store.data().grown
}

/// The built-in validator is carried pre-initialized (build.rs): its
/// instances start with the JSON Schemas compiled, so the first call compiles
/// nothing. A validator that links the same crate and is built without that
/// step (the policy example) grows its memory by 704 KiB on its first call,
/// compiling them; the built-in grows it by nothing.
#[tokio::test]
async fn the_builtin_validator_starts_with_its_schemas_compiled() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let engine = &rt.loader.engine;
    let builtin = rt
        .loader
        .embedded(&builtin::VALIDATOR)
        .expect("this target has a compiler");
    let policy = std::fs::read(env!("TG_POLICY_VALIDATOR_WASM")).unwrap();
    let (policy, _) = rt.loader.compile("policy-validator", &policy).unwrap();
    let compiling = first_call_growth(engine, &policy).await;
    let compiled = first_call_growth(engine, &builtin).await;
    let grew = format!("the policy validator grew {compiling} bytes, the built-in {compiled}");
    assert!(compiling >= 512 << 10, "{grew}");
    assert!(compiled <= 64 << 10, "{grew}");
}

/// A component called on a connection worker runs on the runtime the wasm
/// runtime was made on (the main one, whose threads share out work), so a
/// guest that computes does not hold the worker's other connections; called
/// anywhere else, it runs where it was called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_called_on_a_connection_worker_run_on_the_main_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let here = std::thread::current().id();
    let ran = rt
        .on_guest_threads(async { std::thread::current().id() })
        .await
        .unwrap();
    assert_eq!(ran, here, "not on a worker: in place");

    let on_worker = rt.clone();
    let (worker, ran) = std::thread::spawn(move || {
        crate::set_connection_worker(1);
        let local = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ran = local
            .block_on(on_worker.on_guest_threads(async { std::thread::current().id() }))
            .unwrap();
        (std::thread::current().id(), ran)
    })
    .join()
    .unwrap();
    assert_ne!(ran, worker, "on a worker: moved to the main runtime");
}
