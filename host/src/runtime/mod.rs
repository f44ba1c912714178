//! The Wasm runtime: one `Engine` for the process, components compiled and
//! pre-instantiated once per load, published as one immutable snapshot; per request
//! a fresh `Store` with a memory cap and an epoch deadline.
//!
//! The validator and feature gate are pure functions of their inputs, so their
//! instances are kept warm in a bounded pool and reused (their schemas stay
//! compiled); an instance that traps is dropped, never reused.

mod apps;
mod bindings;
mod cache;
mod kv;
mod plugins;
mod pool;

use crate::settings::Limits;
use crate::store::Store;
use crate::tenants::Directory;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store as WasmStore,
};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use apps::App;
pub use pool::WarmPool;

/// How often the epoch ticks; deadlines are whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Warm instances kept per plugin component.
const WARM_INSTANCES: usize = 8;
/// Calls served by one warm instance before it is replaced (bounds heap growth).
const MAX_USES_PER_INSTANCE: u32 = 10_000;

/// The built-in components, compiled into the binary from the workspace source.
pub mod builtin {
    /// The validator component.
    pub const VALIDATOR: &[u8] = include_bytes!(env!("TG_VALIDATOR_WASM"));
    /// The feature-gate component.
    pub const FEATURE_GATE: &[u8] = include_bytes!(env!("TG_FEATURE_GATE_WASM"));
    /// The config API component (Spin HTTP component).
    pub const CONFIG_API: &[u8] = include_bytes!(env!("TG_CONFIG_API_WASM"));
    /// The sample tenant app (`builtin:tenant-app`).
    pub const TENANT_APP: &[u8] = include_bytes!(env!("TG_TENANT_APP_WASM"));
}

/// The bytes of the three components making up one snapshot.
#[derive(Clone)]
pub struct ComponentSet {
    /// Validator component.
    pub validator: Bytes,
    /// Feature-gate component.
    pub feature_gate: Bytes,
    /// Config API component.
    pub config_api: Bytes,
}

impl std::fmt::Debug for ComponentSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentSet")
            .field("validator", &self.validator.len())
            .field("feature_gate", &self.feature_gate.len())
            .field("config_api", &self.config_api.len())
            .finish()
    }
}

impl ComponentSet {
    /// The built-in components, each replaced by `<dir>/<name>.wasm` where that file
    /// exists (`validator.wasm`, `feature-gate.wasm`, `config-api.wasm`).
    pub fn with_overrides(dir: &std::path::Path) -> std::io::Result<Self> {
        let mut set = Self::builtin();
        for (name, slot) in [
            ("validator", &mut set.validator),
            ("feature-gate", &mut set.feature_gate),
            ("config-api", &mut set.config_api),
        ] {
            let file = dir.join(format!("{name}.wasm"));
            if file.exists() {
                *slot = Bytes::from(std::fs::read(&file)?);
            }
        }
        Ok(set)
    }

    /// The components built into the binary.
    pub fn builtin() -> Self {
        Self {
            validator: Bytes::from_static(builtin::VALIDATOR),
            feature_gate: Bytes::from_static(builtin::FEATURE_GATE),
            config_api: Bytes::from_static(builtin::CONFIG_API),
        }
    }
}

/// Which instance serves a plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance {
    /// A warm instance from the pool (the normal path).
    Warm,
    /// A new store and instance, dropped after the call.
    Fresh,
}

/// A validated update: the whole configuration after it and the fields it set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patched {
    /// The configuration (JSON text).
    pub config: String,
    /// Dotted names of the fields set.
    pub updated_fields: Vec<String>,
}

/// A violation reported by the validator component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSONPath of the offending value.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A failure to serve a request through a component.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// All concurrency slots busy for too long.
    #[error("component capacity exhausted")]
    Busy,
    /// The component trapped, ran out of time or memory, or gave no response.
    #[error("component failed: {0:#}")]
    Guest(wasmtime::Error),
    /// The request exceeded its deadline in the host.
    #[error("component call timed out")]
    Timeout,
}

/// Store data of the plugin (validator, feature-gate) instances.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Store data of one config API request.
pub struct ApiState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: StoreLimits,
    snapshot: Arc<Snapshot>,
    shared: Arc<Shared>,
    /// Who the request is from, as the change history records it.
    principal: String,
}

impl WasiView for ApiState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ApiState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

/// State every request shares: the store and the tenant directory.
pub struct Shared {
    /// Persistent store.
    pub store: Arc<dyn Store>,
    /// Current tenants.
    pub directory: ArcSwap<Directory>,
    /// Held while a new directory is built and published, so two publishers
    /// (a settings reload, a tenant change) never overwrite each other's work.
    pub publishing: std::sync::Mutex<()>,
    /// The store's change sequence the current directory reflects.
    pub seen_seq: std::sync::atomic::AtomicI64,
}

impl Shared {
    /// Shared state over `store`, with an empty directory.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            directory: ArcSwap::from_pointee(Directory::default()),
            publishing: std::sync::Mutex::new(()),
            seen_seq: std::sync::atomic::AtomicI64::new(0),
        }
    }
}

/// One loaded set of components, ready to serve.
pub struct Snapshot {
    /// The validator's default configuration, asked once per snapshot (a pure
    /// function of the validator component).
    defaults: std::sync::OnceLock<String>,
    config_api: ProxyPre<ApiState>,
    validator: WarmPool<bindings::validator::ValidatorComponentPre<PluginState>>,
    gate: WarmPool<bindings::gate::FeatureGateComponentPre<PluginState>>,
}

/// Compiles and links components: what every load needs, made once.
struct Loader {
    engine: Engine,
    api_linker: Linker<ApiState>,
    app_linker: Linker<apps::AppState>,
    plugin_linker: Linker<PluginState>,
    cache_dir: Option<PathBuf>,
    limits: Limits,
}

/// The process's Wasm runtime.
pub struct Runtime {
    loader: Loader,
    snapshot: ArcSwap<Snapshot>,
    shared: Arc<Shared>,
    permits: tokio::sync::Semaphore,
    ticker: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.store(true, Ordering::Relaxed);
    }
}

fn engine(limits: &Limits) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    let instances = (limits.max_concurrent_component_calls as u32)
        .saturating_mul(3)
        .saturating_add(2 * WARM_INSTANCES as u32 + 8);
    let memory = limits.component_memory_mib as usize * 1024 * 1024;
    pool.total_component_instances(instances)
        .total_memories(instances * 2)
        .total_tables(instances * 2)
        .total_core_instances(instances * 8)
        .max_memory_size(memory)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        .max_memories_per_component(4)
        .max_tables_per_component(8);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

fn store_limits(limits: &Limits) -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(limits.component_memory_mib as usize * 1024 * 1024)
        .instances(16)
        .trap_on_grow_failure(true)
        .build()
}

fn deadline_ticks(limits: &Limits) -> u64 {
    (limits.component_timeout_ms / EPOCH_TICK.as_millis() as u64).max(1)
}

impl Loader {
    fn compile(&self, name: &str, bytes: &[u8]) -> wasmtime::Result<Component> {
        cache::compile(&self.engine, name, bytes, self.cache_dir.as_deref())
    }

    /// Compiles, pre-instantiates and type-checks a set of components.
    fn prepare(&self, set: &ComponentSet) -> anyhow::Result<Snapshot> {
        use wasmtime::error::Context;
        let api = self.compile("config-api", &set.config_api)?;
        let validator = self.compile("validator", &set.validator)?;
        let gate = self.compile("feature-gate", &set.feature_gate)?;
        let config_api = ProxyPre::new(
            self.api_linker
                .instantiate_pre(&api)
                .context("config-api imports")?,
        )
        .context("config-api does not export wasi:http/incoming-handler")?;
        let validator = bindings::validator::ValidatorComponentPre::new(
            self.plugin_linker
                .instantiate_pre(&validator)
                .context("validator imports")?,
        )
        .context("validator exports")?;
        let gate = bindings::gate::FeatureGateComponentPre::new(
            self.plugin_linker
                .instantiate_pre(&gate)
                .context("feature-gate imports")?,
        )
        .context("feature-gate exports")?;
        Ok(Snapshot {
            defaults: std::sync::OnceLock::new(),
            config_api,
            validator: self.pool(validator),
            gate: self.pool(gate),
        })
    }

    fn pool<P: pool::Instantiate>(&self, pre: P) -> WarmPool<P> {
        WarmPool::new(
            pre,
            &self.engine,
            &self.limits,
            WARM_INSTANCES,
            MAX_USES_PER_INSTANCE,
        )
    }
}

impl Runtime {
    /// Builds the engine and linkers, starts the epoch ticker and loads `components`
    /// (without warming them: call [`Runtime::warm_up`]).
    pub fn new(
        components: &ComponentSet,
        shared: Arc<Shared>,
        limits: Limits,
        cache_dir: Option<PathBuf>,
    ) -> anyhow::Result<Arc<Self>> {
        let engine = engine(&limits)?;

        let mut api_linker = Linker::<ApiState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut api_linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut api_linker)?;
        bindings::api::ConfigApiImports::add_to_linker::<_, wasmtime::component::HasSelf<ApiState>>(
            &mut api_linker,
            |s| s,
        )?;

        let mut app_linker = Linker::<apps::AppState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut app_linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut app_linker)?;
        bindings::app::TenantAppImports::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut app_linker,
            |s| s,
        )?;

        let mut plugin_linker = Linker::<PluginState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut plugin_linker)?;

        let ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker.clone();
            std::thread::Builder::new()
                .name("epoch-ticker".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })?;
        }

        let loader = Loader {
            engine,
            api_linker,
            app_linker,
            plugin_linker,
            cache_dir,
            limits,
        };
        let snapshot = loader.prepare(components)?;
        Ok(Arc::new(Self {
            permits: tokio::sync::Semaphore::new(loader.limits.max_concurrent_component_calls),
            loader,
            snapshot: ArcSwap::from_pointee(snapshot),
            shared,
            ticker,
        }))
    }

    /// The shared state (store, directory).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Loads a new set of components and, only if every one of them compiles,
    /// links and answers a first call, publishes it atomically. On error the
    /// running set stays.
    pub async fn swap(self: &Arc<Self>, set: &ComponentSet) -> anyhow::Result<()> {
        let this = self.clone();
        let set = set.clone();
        let snapshot = tokio::task::spawn_blocking(move || this.loader.prepare(&set)).await??;
        let snapshot = Arc::new(snapshot);
        warm_up(&snapshot).await?;
        self.snapshot.store(snapshot);
        Ok(())
    }

    /// Runs a first call through each plugin of the running set, so the first
    /// request does not pay for instantiation and schema compilation.
    pub async fn warm_up(&self) -> anyhow::Result<()> {
        warm_up(&self.snapshot.load_full()).await
    }

    /// Validates a partial update with the validator component and applies it to
    /// `current` (or the defaults). `Instance::Fresh` pays for a new store and
    /// instance, as every call would without the warm pool.
    pub async fn apply_patch(
        &self,
        current: Option<&str>,
        patch: &str,
        instance: Instance,
    ) -> Result<Result<Patched, Vec<Violation>>, CallError> {
        let snapshot = self.snapshot.load_full();
        plugins::apply_patch(&snapshot, current, patch, instance)
            .await
            .map_err(CallError::Guest)
    }

    /// Validates a whole configuration with the validator component.
    pub async fn validate_config(
        &self,
        config: &str,
    ) -> Result<Result<(), Vec<Violation>>, CallError> {
        let snapshot = self.snapshot.load_full();
        plugins::validate_config(&snapshot, config)
            .await
            .map_err(CallError::Guest)
    }

    /// Validates a Hono tenant information document with the validator component.
    pub async fn validate_tenant_info(
        &self,
        document: &str,
    ) -> Result<Result<(), Vec<Violation>>, CallError> {
        let snapshot = self.snapshot.load_full();
        plugins::validate_tenant_info(&snapshot, document)
            .await
            .map_err(CallError::Guest)
    }

    /// Lists a tenant's features with the feature-gate component.
    pub async fn list_features(
        &self,
        tier: crate::settings::Tier,
        config: &str,
        instance: Instance,
    ) -> Result<usize, CallError> {
        let snapshot = self.snapshot.load_full();
        plugins::count_features(&snapshot, tier, config, instance)
            .await
            .map_err(CallError::Guest)
    }

    /// Serves one HTTP request with the config API component. The body has already
    /// been read (and size-checked) by the server.
    /// `principal`: who sent it, for the change history.
    pub async fn serve_config_api(
        &self,
        req: http::Request<Bytes>,
        principal: String,
    ) -> Result<http::Response<Bytes>, CallError> {
        let snapshot = self.snapshot.load_full();
        let data = ApiState {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: store_limits(&self.loader.limits),
            snapshot: snapshot.clone(),
            shared: self.shared.clone(),
            principal,
        };
        self.serve_http(snapshot.config_api.clone(), data, req)
            .await
    }

    /// Compiles a tenant app (blocking: run it off the async threads). Fails when
    /// the component is not a `wasi:http` handler or imports what the gateway does
    /// not provide.
    pub fn load_app(
        &self,
        name: &str,
        source: crate::settings::AppSource,
        bytes: &[u8],
    ) -> anyhow::Result<Arc<App>> {
        use sha2::Digest;
        use wasmtime::error::Context;
        let component = self.loader.compile(&format!("app-{name}"), bytes)?;
        let pre = ProxyPre::new(
            self.loader
                .app_linker
                .instantiate_pre(&component)
                .with_context(|| format!("app {name}: imports"))?,
        )
        .with_context(|| format!("app {name} does not export wasi:http/incoming-handler"))?;
        Ok(Arc::new(App {
            name: name.to_owned(),
            source,
            sha256: hex::encode(sha2::Sha256::digest(bytes)),
            pre,
        }))
    }

    /// Serves one tenant request with a tenant app: a fresh instance that sees
    /// only `tenant`'s variables.
    pub async fn serve_app(
        &self,
        app: &App,
        tenant: Arc<crate::tenants::Tenant>,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, CallError> {
        let data = apps::AppState {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: store_limits(&self.loader.limits),
            tenant,
        };
        self.serve_http(app.pre.clone(), data, req).await
    }

    /// Runs a `wasi:http` handler for one request in a fresh store with the memory
    /// cap and epoch deadline; the whole response is read before it is returned.
    async fn serve_http<T>(
        &self,
        pre: ProxyPre<T>,
        data: T,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, CallError>
    where
        T: WasiHttpView + LimitedState + Send + 'static,
    {
        let timeout = Duration::from_millis(self.loader.limits.component_timeout_ms)
            + Duration::from_millis(500);
        let _permit = tokio::time::timeout(timeout, self.permits.acquire())
            .await
            .map_err(|_| CallError::Busy)?
            .map_err(|_| CallError::Busy)?;
        let mut store = WasmStore::new(&self.loader.engine, data);
        store.limiter(|s| s.limits());
        store.set_epoch_deadline(deadline_ticks(&self.loader.limits));
        store.epoch_deadline_trap();

        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = req.map(|b| {
            Full::new(b).map_err(
                |never: std::convert::Infallible| -> wasmtime_wasi_http::Error { match never {} },
            )
        });
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .map_err(CallError::Guest)?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(tx)
            .map_err(CallError::Guest)?;
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        });

        let work = async {
            let resp = match rx.await {
                Ok(Ok(resp)) => resp,
                Ok(Err(code)) => {
                    return Err(CallError::Guest(wasmtime::Error::msg(format!(
                        "guest error code {code:?}"
                    ))));
                }
                Err(_) => {
                    let e = match task.await {
                        Ok(Ok(())) => wasmtime::Error::msg("component sent no response"),
                        Ok(Err(e)) => e,
                        Err(e) => wasmtime::Error::msg(format!("component task failed: {e}")),
                    };
                    return Err(CallError::Guest(e));
                }
            };
            let (parts, body) = resp.into_parts();
            // The whole body is read before answering, so a component that fails
            // half-way still yields a clean 500 instead of a truncated 200.
            let body = body
                .collect()
                .await
                .map_err(|e| {
                    CallError::Guest(wasmtime::Error::msg(format!("response body: {e:?}")))
                })?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body))
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| CallError::Timeout)?
    }
}

/// Store data with a memory cap.
trait LimitedState {
    fn limits(&mut self) -> &mut dyn wasmtime::ResourceLimiter;
}

impl LimitedState for ApiState {
    fn limits(&mut self) -> &mut dyn wasmtime::ResourceLimiter {
        &mut self.limits
    }
}

impl LimitedState for apps::AppState {
    fn limits(&mut self) -> &mut dyn wasmtime::ResourceLimiter {
        &mut self.limits
    }
}

/// Runs one call through each plugin of a snapshot: proves the components answer
/// before they are published and leaves a warm instance of each in its pool.
async fn warm_up(snapshot: &Snapshot) -> anyhow::Result<()> {
    let defaults = plugins::default_config(snapshot).await?;
    anyhow::ensure!(
        defaults.starts_with('{'),
        "validator returned no default configuration"
    );
    let enabled = plugins::count_features(
        snapshot,
        crate::settings::Tier::Basic,
        &defaults,
        Instance::Warm,
    )
    .await?;
    anyhow::ensure!(
        enabled > 0,
        "feature gate enables nothing for the default configuration"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn runtime(dir: &std::path::Path) -> Arc<Runtime> {
        let shared = Arc::new(Shared::new(Arc::new(SqliteStore::open(dir).unwrap())));
        let limits = Limits {
            component_timeout_ms: 500,
            ..Limits::default()
        };
        // Compiled components are cached by content and engine hash: safe to share.
        let cache = std::env::temp_dir().join("tenant-gateway-unit-test-cache");
        Runtime::new(&ComponentSet::builtin(), shared, limits, Some(cache)).unwrap()
    }

    const BAD_CACHE: &str = r#"{"performance":{"cache_size_mb":200000}}"#;

    /// A bad module is rejected and the running one keeps serving; a good one
    /// replaces it atomically.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn swap_keeps_the_old_set_when_the_new_one_is_bad() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path());
        rt.warm_up().await.unwrap();

        let mut garbage = ComponentSet::builtin();
        garbage.validator = Bytes::from_static(b"\0asm not really");
        assert!(rt.swap(&garbage).await.is_err());
        let mut wrong_world = ComponentSet::builtin();
        wrong_world.validator = wrong_world.feature_gate.clone();
        assert!(rt.swap(&wrong_world).await.is_err());
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
        let mut faulty = ComponentSet::builtin();
        faulty.validator = Bytes::from(std::fs::read(env!("TG_FAULTY_VALIDATOR_WASM")).unwrap());
        rt.swap(&faulty).await.unwrap();
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
        let mut faulty = ComponentSet::builtin();
        faulty.validator = Bytes::from(std::fs::read(env!("TG_FAULTY_VALIDATOR_WASM")).unwrap());
        rt.swap(&faulty).await.unwrap();
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
        let names = imports(builtin::CONFIG_API);
        for name in &names {
            assert!(
                name.starts_with("wasi:") || name.starts_with("tenant-gateway:plugins/"),
                "unexpected import {name}"
            );
        }
        for needed in [
            "tenant-gateway:plugins/validator@0.1.0",
            "tenant-gateway:plugins/feature-gate@0.1.0",
            "wasi:keyvalue/store@0.2.0-draft2",
            "wasi:keyvalue/atomics@0.2.0-draft2",
        ] {
            assert!(
                names.iter().any(|n| n == needed),
                "{needed} missing from {names:?}"
            );
        }
    }

    /// The sample tenant app imports only what Spin 3.x provides (WASI and Spin's
    /// variables), so the same file runs on Spin.
    #[test]
    fn tenant_app_imports_only_spin_interfaces() {
        let names = imports(builtin::TENANT_APP);
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("wasi:") || n == "fermyon:spin/variables@2.0.0"),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n == "fermyon:spin/variables@2.0.0"));
    }

    /// The plugins are self-contained: only WASI imports, so on Spin they can be
    /// component dependencies of the config API as they are.
    #[test]
    fn plugins_import_only_wasi() {
        for bytes in [builtin::VALIDATOR, builtin::FEATURE_GATE] {
            let names = imports(bytes);
            assert!(names.iter().all(|n| n.starts_with("wasi:")), "{names:?}");
        }
    }
}
