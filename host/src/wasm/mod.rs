//! The Wasm runtime: one `Engine` for the process, components compiled and
//! pre-instantiated once per load, published as one immutable snapshot; per request
//! a fresh `Store` with a memory cap and an epoch deadline.
//!
//! The validator and feature gate are pure functions of their inputs, so their
//! instances are kept warm in a bounded pool and reused (their schemas stay
//! compiled); an instance that traps is dropped, never reused.

mod apps;
mod bindings;
pub mod cache;
pub mod compiler;
pub mod components;
mod engine;
mod kv;
mod loader;
pub mod metrics;
pub mod outbound;
mod plugins;
mod pool;

use crate::config::Limits;
use crate::tenancy::Shared;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store as WasmStore, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use sha2::Digest;

pub use apps::App;
pub(crate) use engine::compiler_config;
use engine::{call_timeout, engine, store_limits, yield_each_tick};
use loader::Loader;

/// Tenant apps by name (`TenantGateway.Apps`).
pub type Apps = std::collections::HashMap<String, Arc<App>>;
pub use components::{ComponentInfo, Kind, LoadError, Slot, Source};
pub use metrics::Metrics;
pub use pool::WarmPool;

/// The header of config API answers naming the component versions that served them.
pub const COMPONENTS_HEADER: http::HeaderName = http::HeaderName::from_static("x-tg-components");

/// The config API's name in outbound-request logs and metrics.
pub static CONFIG_API_LABEL: std::sync::LazyLock<Arc<str>> =
    std::sync::LazyLock::new(|| Arc::from("config-api"));

/// How often the epoch ticks; deadlines are whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Warm instances kept per plugin component.
const WARM_PER_TENANT: usize = 4;
/// Idle warm instances all plugin pools keep together (bounds their memory).
const IDLE_BUDGET: usize = 64;
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
    /// A plugin the component called (validator, feature gate) failed.
    #[error("component {component} failed: {error:#}")]
    Plugin {
        /// The plugin's slot (`validator`, `validator@tenant1`, …).
        component: String,
        /// What happened.
        error: wasmtime::Error,
    },
    /// The request exceeded its deadline in the host.
    #[error("component call timed out")]
    Timeout,
}

/// Store data of the plugin (validator, feature-gate) instances.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// When the current call must have ended.
    deadline: std::time::Instant,
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
    outbound: outbound::Outbound,
    /// Who the request is from, as the change history records it.
    principal: String,
    /// The tenant the request is for (lower-case name): whose policy modules serve it.
    tenant: Option<String>,
    /// The slot of a plugin whose call failed, for the error answer.
    failed: Arc<std::sync::OnceLock<String>>,
}

impl ApiState {
    /// The validator serving this request's tenant.
    fn validator(&self) -> Arc<ValidatorPlugin> {
        self.snapshot.validator_for(self.tenant.as_deref()).clone()
    }

    /// The feature gate serving this request's tenant.
    fn gate(&self) -> Arc<GatePlugin> {
        self.snapshot.gate_for(self.tenant.as_deref()).clone()
    }

    /// The tenant whose warm instances serve this request's plugin calls.
    fn tenant_key(&self) -> &str {
        self.tenant.as_deref().unwrap_or("")
    }

    /// Passes a plugin call's result on, remembering which plugin failed.
    fn noted<T>(&self, slot: &Slot, r: wasmtime::Result<T>) -> wasmtime::Result<T> {
        if r.is_err() {
            let _ = self.failed.set(slot.to_string());
        }
        r
    }
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
            hooks: &mut self.outbound,
        }
    }
}

/// A loaded plugin component (validator or feature gate) and its warm instances.
pub struct Plugin<P: pool::Instantiate> {
    /// What it is.
    pub info: ComponentInfo,
    pool: WarmPool<P>,
    /// The validator's default configuration, asked once (a pure function of it).
    defaults: std::sync::OnceLock<String>,
}

/// The loaded config API component.
pub struct ApiComponent {
    /// What it is.
    pub info: ComponentInfo,
    pre: ProxyPre<ApiState>,
}

type ValidatorPlugin = Plugin<bindings::validator::ValidatorComponentPre<PluginState>>;
type GatePlugin = Plugin<bindings::gate::FeatureGateComponentPre<PluginState>>;

/// A component made ready for a slot, not yet published.
enum Prepared {
    Validator(ValidatorPlugin),
    Gate(GatePlugin),
    Api(ApiComponent),
}

impl Prepared {
    fn info(&self) -> &ComponentInfo {
        match self {
            Prepared::Validator(p) => &p.info,
            Prepared::Gate(p) => &p.info,
            Prepared::Api(a) => &a.info,
        }
    }
}

/// The components serving requests, published as one immutable snapshot: a
/// request keeps the snapshot it started with to its end, so a swap never
/// changes a component under a running call.
#[derive(Clone)]
pub struct Snapshot {
    config_api: Arc<ApiComponent>,
    validator: Arc<ValidatorPlugin>,
    gate: Arc<GatePlugin>,
    /// Tenants' own validators, by lower-case tenant name.
    tenant_validators: HashMap<String, Arc<ValidatorPlugin>>,
    /// Tenants' own feature gates, by lower-case tenant name.
    tenant_gates: HashMap<String, Arc<GatePlugin>>,
    /// `x-tg-components` header values: everyone's, and each tenant's with a
    /// component of its own.
    versions: HashMap<Option<String>, http::HeaderValue>,
}

impl Snapshot {
    fn new(config_api: ApiComponent, validator: ValidatorPlugin, gate: GatePlugin) -> Self {
        let mut s = Self {
            config_api: Arc::new(config_api),
            validator: Arc::new(validator),
            gate: Arc::new(gate),
            tenant_validators: HashMap::new(),
            tenant_gates: HashMap::new(),
            versions: HashMap::new(),
        };
        s.versions = s.version_headers();
        s
    }

    /// The validator serving `tenant` (lower-case name): its own, else everyone's.
    fn validator_for(&self, tenant: Option<&str>) -> &Arc<ValidatorPlugin> {
        tenant
            .and_then(|t| self.tenant_validators.get(t))
            .unwrap_or(&self.validator)
    }

    /// The feature gate serving `tenant` (lower-case name).
    fn gate_for(&self, tenant: Option<&str>) -> &Arc<GatePlugin> {
        tenant
            .and_then(|t| self.tenant_gates.get(t))
            .unwrap_or(&self.gate)
    }

    /// Every loaded component, by slot.
    pub fn components(&self) -> Vec<ComponentInfo> {
        let mut out = vec![
            self.config_api.info.clone(),
            self.validator.info.clone(),
            self.gate.info.clone(),
        ];
        out.extend(self.tenant_validators.values().map(|p| p.info.clone()));
        out.extend(self.tenant_gates.values().map(|p| p.info.clone()));
        out.sort_by(|a, b| a.slot.cmp(&b.slot));
        out
    }

    /// The versions serving `tenant` (lower-case name), as the `x-tg-components`
    /// header of config API answers names them.
    pub fn versions(&self, tenant: Option<&str>) -> &http::HeaderValue {
        tenant
            .and_then(|t| self.versions.get(&Some(t.to_owned())))
            .unwrap_or_else(|| &self.versions[&None])
    }

    fn version_header(&self, tenant: Option<&str>) -> http::HeaderValue {
        let text = format!(
            "config-api={}, validator={}, feature-gate={}",
            self.config_api.info.short_sha(),
            self.validator_for(tenant).info.short_sha(),
            self.gate_for(tenant).info.short_sha()
        );
        http::HeaderValue::from_str(&text).expect("hex and punctuation")
    }

    fn version_headers(&self) -> HashMap<Option<String>, http::HeaderValue> {
        let mut out = HashMap::new();
        out.insert(None, self.version_header(None));
        for t in self
            .tenant_validators
            .keys()
            .chain(self.tenant_gates.keys())
        {
            out.insert(Some(t.clone()), self.version_header(Some(t)));
        }
        out
    }

    /// This snapshot with `prepared` in its slot.
    fn with(&self, prepared: Prepared) -> Snapshot {
        let mut next = self.clone();
        let tenant = prepared.info().slot.tenant.clone();
        match (prepared, tenant) {
            (Prepared::Validator(p), None) => next.validator = Arc::new(p),
            (Prepared::Validator(p), Some(t)) => {
                next.tenant_validators.insert(t, Arc::new(p));
            }
            (Prepared::Gate(p), None) => next.gate = Arc::new(p),
            (Prepared::Gate(p), Some(t)) => {
                next.tenant_gates.insert(t, Arc::new(p));
            }
            (Prepared::Api(a), _) => next.config_api = Arc::new(a),
        }
        next.versions = next.version_headers();
        next
    }

    /// This snapshot without a tenant's own component in `slot`.
    fn without(&self, slot: &Slot) -> Snapshot {
        let mut next = self.clone();
        if let Some(t) = &slot.tenant {
            match slot.kind {
                Kind::Validator => drop(next.tenant_validators.remove(t)),
                Kind::FeatureGate => drop(next.tenant_gates.remove(t)),
                Kind::ConfigApi => {}
            }
        }
        next.versions = next.version_headers();
        next
    }
}

/// The process's Wasm runtime.
pub struct Runtime {
    loader: Loader,
    snapshot: ArcSwap<Snapshot>,
    /// The tenant apps, by name (the directory names them).
    apps: ArcSwap<Apps>,
    shared: Arc<Shared>,
    permits: tokio::sync::Semaphore,
    ticker: Arc<AtomicBool>,
    /// Held through a load: one component is prepared and published at a time.
    loading: tokio::sync::Mutex<()>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Builds the engine and linkers, starts the epoch ticker and loads the
    /// built-in components (without warming them: call [`Runtime::warm_up`]).
    pub fn new(
        shared: Arc<Shared>,
        limits: Limits,
        cache: Option<cache::ArtifactCache>,
        compiler: compiler::Compiler,
        metrics: Metrics,
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
            cache,
            compiler,
            limits,
            idle_budget: pool::IdleBudget::new(IDLE_BUDGET),
            metrics,
        };
        let builtin = |kind: Kind| {
            let (bytes, slot) = (kind.builtin(), Slot::global(kind));
            let (component, compiled) = loader.compile(&slot.to_string(), bytes)?;
            let sha = hex::encode(sha2::Sha256::digest(bytes));
            loader
                .prepare(
                    &slot,
                    component,
                    compiled,
                    (bytes.len(), sha),
                    Source::Builtin,
                )
                .map_err(|e| anyhow::anyhow!("built-in {}: {e}", kind.as_str()))
        };
        let snapshot = match (
            builtin(Kind::ConfigApi)?,
            builtin(Kind::Validator)?,
            builtin(Kind::FeatureGate)?,
        ) {
            (Prepared::Api(a), Prepared::Validator(v), Prepared::Gate(g)) => Snapshot::new(a, v, g),
            _ => unreachable!("each kind prepares its own variant"),
        };
        Ok(Arc::new(Self {
            permits: tokio::sync::Semaphore::new(loader.limits.max_concurrent_component_calls),
            loader,
            snapshot: ArcSwap::from_pointee(snapshot),
            apps: ArcSwap::from_pointee(Apps::new()),
            shared,
            ticker,
            loading: tokio::sync::Mutex::new(()),
        }))
    }

    /// Deletes the precompiled artifacts of the component with `sha256` (hex),
    /// one no longer kept; never those of a built-in component.
    pub fn forget_artifact(&self, sha256: &str) {
        static BUILTIN: std::sync::OnceLock<[String; 3]> = std::sync::OnceLock::new();
        let builtin = BUILTIN.get_or_init(|| {
            [Kind::Validator, Kind::FeatureGate, Kind::ConfigApi]
                .map(|k| hex::encode(sha2::Sha256::digest(k.builtin())))
        });
        if let Some(cache) = &self.loader.cache
            && !builtin.iter().any(|b| b == sha256)
        {
            cache.forget(sha256);
        }
    }

    /// The shared state (store, directory).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The limits it was made with.
    pub fn limits(&self) -> &Limits {
        &self.loader.limits
    }

    /// `TenantGateway.Limits.MaxComponentBytes`.
    pub fn max_component_bytes(&self) -> usize {
        self.loader.limits.max_component_bytes
    }

    /// The components serving now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Loads `bytes` into `slot`: checks its size and header, compiles it (or
    /// loads its precompiled artifact), type-checks its exports and imports,
    /// instantiates it and runs its self-test; only then publishes it in one
    /// atomic swap. Calls in flight finish on the version they started with. On
    /// any error the running component stays.
    pub async fn load(
        self: &Arc<Self>,
        slot: Slot,
        bytes: Bytes,
        source: Source,
    ) -> Result<ComponentInfo, LoadError> {
        let _one = self.loading.lock().await;
        let task_failed =
            |e: tokio::task::JoinError| LoadError::Compile(format!("compilation task failed: {e}"));
        let mut fresh = None;
        let prepared = async {
            let this = self.clone();
            let (b, src) = (bytes.clone(), source.clone());
            let (digest, cached) = tokio::task::spawn_blocking(move || this.loader.check(&b, &src))
                .await
                .map_err(task_failed)??;
            let builtin = matches!(source, Source::Builtin);
            let artifact = match cached {
                Some(_) => None,
                // What arrives is compiled under the compiler's budget.
                None if !builtin => Some(
                    self.loader
                        .compiler
                        .precompile(&self.loader.engine, bytes.clone())
                        .await?,
                ),
                None => None,
            };
            let this = self.clone();
            let sha = hex::encode(digest);
            fresh = cached.is_none().then(|| sha.clone());
            let prepared = tokio::task::spawn_blocking(move || {
                let name = slot.to_string();
                let (component, compiled) = match (cached, artifact) {
                    (Some(c), _) => (c, false),
                    (None, Some(artifact)) => (this.loader.adopt(&name, &digest, &artifact)?, true),
                    (None, None) => this
                        .loader
                        .compile(&name, &bytes)
                        .map_err(|e| LoadError::Compile(format!("{e:#}")))?,
                };
                this.loader
                    .prepare(&slot, component, compiled, (bytes.len(), sha), source)
            })
            .await
            .map_err(task_failed)??;
            self.self_test(&prepared).await?;
            // Its first requests are served by primed instances.
            let primed = match &prepared {
                Prepared::Validator(v) => v.pool.prime().await,
                Prepared::Gate(g) => g.pool.prime().await,
                Prepared::Api(_) => Ok(()),
            };
            primed.map_err(|e| LoadError::SelfTest(format!("priming: {e:#}")))?;
            Ok(prepared)
        }
        .await
        .inspect_err(|_| {
            self.loader.metrics.load(false);
            // A refused component's artifact, made by this load, would only
            // take room: nothing can use it.
            if let Some(sha) = &fresh {
                self.forget_artifact(sha);
            }
        })?;
        self.loader.metrics.load(true);
        let info = prepared.info().clone();
        let next = self.snapshot.load().with(prepared);
        self.snapshot.store(Arc::new(next));
        Ok(info)
    }

    /// Empties `slot`: a tenant's own component is dropped (everyone's serves the
    /// tenant again); everyone's goes back to the built-in one. Returns what now
    /// serves the slot.
    pub async fn unload(self: &Arc<Self>, slot: Slot) -> Result<ComponentInfo, LoadError> {
        if slot.tenant.is_none() {
            let bytes = Bytes::from_static(slot.kind.builtin());
            return self.load(slot, bytes, Source::Builtin).await;
        }
        let _one = self.loading.lock().await;
        let next = self.snapshot.load().without(&slot);
        let serving = match slot.kind {
            Kind::Validator => next.validator.info.clone(),
            Kind::FeatureGate => next.gate.info.clone(),
            Kind::ConfigApi => next.config_api.info.clone(),
        };
        self.snapshot.store(Arc::new(next));
        Ok(serving)
    }

    /// Calls a prepared component the way requests will, under the same limits:
    /// a component that cannot answer its first call is never published.
    async fn self_test(&self, prepared: &Prepared) -> Result<(), LoadError> {
        let failed = |what: &str, e: wasmtime::Error| LoadError::SelfTest(format!("{what}: {e:#}"));
        match prepared {
            Prepared::Validator(v) => {
                let defaults = plugins::default_config(v)
                    .await
                    .map_err(|e| failed("default-config", e))?;
                if !defaults.trim_start().starts_with('{')
                    || serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&defaults)
                        .is_err()
                {
                    return Err(LoadError::SelfTest(
                        "default-config did not return a JSON object".into(),
                    ));
                }
                let own = plugins::validate_config(v, "", &defaults)
                    .await
                    .map_err(|e| failed("validate-config", e))?;
                if let Err(violations) = own {
                    return Err(LoadError::SelfTest(format!(
                        "its default configuration breaks its own rules: {}",
                        violations[0].message
                    )));
                }
                plugins::validate_tenant_info(v, "", r#"{"tenant-id":"self-test","enabled":true}"#)
                    .await
                    .map_err(|e| failed("validate-tenant-info", e))?
                    .map_err(|v| {
                        LoadError::SelfTest(format!(
                            "validate-tenant-info refused a minimal document: {}",
                            v[0].message
                        ))
                    })
            }
            Prepared::Gate(g) => {
                let validator = self.snapshot.load().validator.clone();
                let defaults = plugins::default_config(&validator)
                    .await
                    .map_err(|e| failed("the validator's default-config", e))?;
                let n = plugins::count_features(
                    g,
                    crate::config::Tier::Basic,
                    &defaults,
                    Instance::Warm,
                )
                .await
                .map_err(|e| failed("list-features", e))?;
                if n.listed == 0 {
                    return Err(LoadError::SelfTest(
                        "list-features listed no feature".into(),
                    ));
                }
                Ok(())
            }
            Prepared::Api(a) => {
                let data = self.api_state(self.snapshot.load_full(), String::new(), None);
                let req = http::Request::get("/_self-test")
                    .body(Bytes::new())
                    .expect("a valid request");
                match self.serve_http(a.pre.clone(), data, req).await {
                    Ok(resp) if resp.status().is_server_error() => Err(LoadError::SelfTest(
                        format!("it answered a request with {}", resp.status()),
                    )),
                    Ok(_) => Ok(()),
                    Err(e) => Err(LoadError::SelfTest(e.to_string())),
                }
            }
        }
    }

    /// Runs the self-test of each component of everyone's, so the first request
    /// does not pay for instantiation and schema compilation.
    pub async fn warm_up(&self) -> anyhow::Result<()> {
        let snapshot = self.snapshot.load_full();
        let defaults = plugins::default_config(&snapshot.validator).await?;
        anyhow::ensure!(
            defaults.starts_with('{'),
            "validator returned no default configuration"
        );
        let n = plugins::count_features(
            &snapshot.gate,
            crate::config::Tier::Basic,
            &defaults,
            Instance::Warm,
        )
        .await?;
        anyhow::ensure!(
            n.enabled > 0,
            "feature gate enables nothing for the default configuration"
        );
        snapshot.validator.pool.prime().await?;
        snapshot.gate.pool.prime().await?;
        Ok(())
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
        plugins::apply_patch(&snapshot.validator, "", current, patch, instance)
            .await
            .map_err(CallError::Guest)
    }

    /// Validates a whole configuration with the validator serving `tenant`
    /// (lower-case name; its own, else everyone's).
    pub async fn validate_config(
        &self,
        config: &str,
        tenant: Option<&str>,
    ) -> Result<Result<(), Vec<Violation>>, CallError> {
        let snapshot = self.snapshot.load_full();
        plugins::validate_config(snapshot.validator_for(tenant), tenant.unwrap_or(""), config)
            .await
            .map_err(CallError::Guest)
    }

    /// Validates a Hono tenant information document with the validator serving
    /// `tenant` (lower-case name).
    pub async fn validate_tenant_info(
        &self,
        document: &str,
        tenant: Option<&str>,
    ) -> Result<Result<(), Vec<Violation>>, CallError> {
        let snapshot = self.snapshot.load_full();
        plugins::validate_tenant_info(
            snapshot.validator_for(tenant),
            tenant.unwrap_or(""),
            document,
        )
        .await
        .map_err(CallError::Guest)
    }

    /// Lists a tenant's features with the feature-gate component.
    pub async fn list_features(
        &self,
        tier: crate::config::Tier,
        config: &str,
        instance: Instance,
    ) -> Result<usize, CallError> {
        let snapshot = self.snapshot.load_full();
        plugins::count_features(&snapshot.gate, tier, config, instance)
            .await
            .map(|n| n.enabled)
            .map_err(CallError::Guest)
    }

    fn api_state(
        &self,
        snapshot: Arc<Snapshot>,
        principal: String,
        tenant: Option<String>,
    ) -> ApiState {
        ApiState {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: store_limits(&self.loader.limits),
            snapshot,
            shared: self.shared.clone(),
            outbound: outbound::Outbound::deny_all(
                &self.loader.limits,
                CONFIG_API_LABEL.clone(),
                self.loader.metrics.clone(),
            ),
            principal,
            tenant,
            failed: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// Serves one HTTP request with the config API component. The body has already
    /// been read (and size-checked) by the server.
    /// `principal`: who sent it, for the change history; `tenant`: the tenant it
    /// is for (lower-case name), whose own policy components serve it. The
    /// answer names the component versions that served it (`x-tg-components`).
    pub async fn serve_config_api(
        &self,
        req: http::Request<Bytes>,
        principal: String,
        tenant: Option<String>,
    ) -> Result<http::Response<Bytes>, CallError> {
        let snapshot = self.snapshot.load_full();
        let versions = snapshot.versions(tenant.as_deref()).clone();
        let data = self.api_state(snapshot.clone(), principal, tenant);
        let failed = data.failed.clone();
        match self
            .serve_http(snapshot.config_api.pre.clone(), data, req)
            .await
        {
            Ok(mut resp) => {
                resp.headers_mut().insert(COMPONENTS_HEADER, versions);
                Ok(resp)
            }
            Err(CallError::Guest(error)) if failed.get().is_some() => Err(CallError::Plugin {
                component: failed.get().cloned().unwrap_or_default(),
                error,
            }),
            Err(e) => Err(e),
        }
    }

    /// The tenant apps loaded now.
    pub fn apps(&self) -> Arc<Apps> {
        self.apps.load_full()
    }

    /// The tenant app named `name`, if it is loaded.
    pub fn app(&self, name: &str) -> Option<Arc<App>> {
        self.apps.load().get(name).cloned()
    }

    /// Makes `apps` the tenant apps. A directory may name only loaded apps:
    /// publish the apps a new directory needs before it, and drop the ones
    /// only the old one named after it.
    pub fn publish_apps(&self, apps: Apps) {
        self.apps.store(Arc::new(apps));
    }

    /// Compiles a tenant app (blocking: run it off the async threads). Fails when
    /// the component is not a `wasi:http` handler or imports what the gateway does
    /// not provide.
    pub fn load_app(
        &self,
        name: &str,
        source: crate::config::AppSource,
        allowed_outbound_hosts: Arc<crate::config::allowed_hosts::AllowedHosts>,
        bytes: &[u8],
    ) -> anyhow::Result<Arc<App>> {
        use wasmtime::error::Context;
        let (component, _) = self.loader.compile(&format!("app-{name}"), bytes)?;
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
            allowed_outbound_hosts,
            label: format!("app {name}").into(),
            metric_label: format!("app:{name}").into(),
            pre,
        }))
    }

    /// Serves one tenant request with a tenant app: a fresh instance that sees
    /// only `tenant`'s variables.
    pub async fn serve_app(
        &self,
        app: &App,
        tenant: Arc<crate::tenancy::Tenant>,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, CallError> {
        let data = apps::AppState {
            wasi: apps::environment(&tenant),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: store_limits(&self.loader.limits),
            outbound: outbound::Outbound::new(
                app.allowed_outbound_hosts.clone(),
                &self.loader.limits,
                app.label.clone(),
                Some(tenant.clone()),
                self.loader.metrics.clone(),
            ),
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
        let timeout = call_timeout(&self.loader.limits) + Duration::from_millis(500);
        let _permit = tokio::time::timeout(timeout, self.permits.acquire())
            .await
            .map_err(|_| CallError::Busy)?
            .map_err(|_| CallError::Busy)?;
        let _counted = self.loader.metrics.in_flight();
        let mut store = WasmStore::new(&self.loader.engine, data);
        store.limiter(|s| s.limits());
        let deadline = std::time::Instant::now() + call_timeout(&self.loader.limits);
        yield_each_tick(&mut store, move |_| deadline);

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
        let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        }));

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
            .precompile_component(builtin::FEATURE_GATE)
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
            .precompile_component(builtin::FEATURE_GATE)
            .unwrap();
        #[allow(unsafe_code)]
        let refused = unsafe { Component::deserialize(&gateway, &foreign) };
        assert!(refused.is_err());
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
        let gate = Bytes::from_static(builtin::FEATURE_GATE);
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
        // Warming up itself started the first instance cold.
        let before = validator.pool.cold_starts();
        for tenant in ["a", "b", "c", "d", "e", "f"] {
            rt.validate_config(&defaults, Some(tenant))
                .await
                .unwrap()
                .unwrap();
            // The background refill makes the next primed instance.
            tokio::time::sleep(Duration::from_millis(300)).await;
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
        let primed_again = || async {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while validator.pool.primed_count() < 2 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
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
        let names = imports(builtin::CONFIG_API);
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
        let names = imports(builtin::TENANT_APP);
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
        for bytes in [builtin::VALIDATOR, builtin::FEATURE_GATE] {
            let names = imports(bytes);
            assert!(names.iter().all(|n| n.starts_with("wasi:")), "{names:?}");
        }
    }
}
