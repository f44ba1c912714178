//! The Wasm runtime: one `Engine` for the process, components compiled and
//! pre-instantiated once per load, published as one immutable snapshot; per request
//! a fresh `Store` with a memory cap and an epoch deadline.
//!
//! The validator and feature gate are pure functions of their inputs, so their
//! instances are kept warm in a bounded pool and reused (their schemas stay
//! compiled); an instance that traps is dropped, never reused.
//!
//! Here: the `Runtime` (start, load and unload, the snapshot swap). Beside it:
//! `snapshot.rs` (what serves now), `state.rs` (each store's data),
//! `selftest.rs` (a component's first calls, before it is published),
//! `serve.rs` (a config API request through its component), `plugins.rs` (the
//! validator and feature-gate calls), `apps.rs` (tenant apps).

mod apps;
mod bindings;
pub mod builtin;
pub mod cache;
pub mod compiler;
pub mod components;
mod engine;
mod engine_config;
mod kv;
mod loader;
pub mod metrics;
pub mod outbound;
mod plugins;
mod pool;
mod selftest;
mod serve;
mod snapshot;
mod state;

use crate::config::Limits;
use crate::tenancy::Shared;
use arc_swap::ArcSwap;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use sha2::Digest;

pub use apps::App;
use engine::{call_timeout, engine, store_limits, yield_each_tick};
pub(crate) use engine_config::compiler_config;
use loader::Loader;

/// Tenant apps by name (`TenantGateway.Apps`).
pub type Apps = std::collections::HashMap<String, Arc<App>>;
pub use components::{ComponentInfo, Kind, LoadError, Slot, Source};
pub use metrics::Metrics;
pub use pool::WarmPool;
pub use snapshot::{ApiComponent, Plugin, Snapshot};
use snapshot::{GatePlugin, Prepared, ValidatorPlugin};
pub use state::{ApiState, PluginState};

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
    /// A write the component made was not stored.
    #[error("store failed: {0}")]
    Store(String),
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
    /// The runtime guests run on ([`Runtime::on_guest_threads`]): the one
    /// this runtime was made on.
    guests: Option<tokio::runtime::Handle>,
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
        let kinds = [Kind::ConfigApi, Kind::Validator, Kind::FeatureGate];
        // Their artifacts precompiled into the binary, side by side; those
        // this engine refuses are compiled, in compiler processes at once.
        let embedded = std::thread::scope(|s| {
            let loader = &loader;
            kinds
                .map(|k| s.spawn(move || loader.embedded(k.builtin())))
                .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        });
        let refused: Vec<(&'static str, Bytes)> = kinds
            .iter()
            .zip(&embedded)
            .filter(|(_, c)| c.is_none())
            .map(|(k, _)| (k.as_str(), k.builtin().wasm()))
            .collect();
        let aside = loader.compile_aside(&refused);
        let snapshot = {
            let mut prepared = kinds.into_iter().zip(embedded).map(|(kind, embedded)| {
                let (b, slot) = (kind.builtin(), Slot::global(kind));
                let (component, compiled) = match embedded {
                    Some(component) => (component, false),
                    None => {
                        let at = refused.iter().position(|(n, _)| *n == kind.as_str());
                        let at = at.expect("each refused kind is listed");
                        let (component, here) =
                            loader.compile(&slot.to_string(), &refused[at].1)?;
                        (component, here || aside[at])
                    }
                };
                loader
                    .prepare(
                        &slot,
                        component,
                        compiled,
                        (b.size(), b.sha256_hex()),
                        Source::Builtin,
                    )
                    .map_err(|e| anyhow::anyhow!("built-in {}: {e}", kind.as_str()))
            });
            let mut next = || prepared.next().expect("three kinds");
            match (next()?, next()?, next()?) {
                (Prepared::Api(a), Prepared::Validator(v), Prepared::Gate(g)) => {
                    Snapshot::new(a, v, g)
                }
                _ => unreachable!("each kind prepares its own variant"),
            }
        };
        Ok(Arc::new(Self {
            permits: tokio::sync::Semaphore::new(loader.limits.max_concurrent_component_calls),
            loader,
            snapshot: ArcSwap::from_pointee(snapshot),
            apps: ArcSwap::from_pointee(Apps::new()),
            shared,
            ticker,
            loading: tokio::sync::Mutex::new(()),
            guests: tokio::runtime::Handle::try_current().ok(),
        }))
    }

    /// Runs `call` (a component's) on the runtime guests run on, the main
    /// one, whose threads take work from one another, when it is made on a
    /// connection worker (`http::workers`), whose thread serves only its own
    /// connections: there a guest computing to its deadline would hold that
    /// worker's other connections to one turn per epoch tick (an isolation
    /// bench's p99 went from 0.45 to 15 ms), while on the main runtime the
    /// workers' threads go on and its other thread takes what waits. Dropped,
    /// the call is dropped too.
    pub(crate) async fn on_guest_threads<R: Send + 'static>(
        &self,
        call: impl std::future::Future<Output = R> + Send + 'static,
    ) -> Result<R, CallError> {
        match &self.guests {
            Some(guests) if crate::connection_worker() != 0 => {
                let task = tokio_util::task::AbortOnDropHandle::new(
                    guests.spawn(crate::telemetry::request::inherit(call)),
                );
                task.await.map_err(|e| {
                    CallError::Guest(wasmtime::Error::msg(format!("component task failed: {e}")))
                })
            }
            _ => Ok(call.await),
        }
    }

    /// Deletes the precompiled artifacts of the component with `sha256` (hex),
    /// one no longer kept; never those of a built-in component.
    pub fn forget_artifact(&self, sha256: &str) {
        let builtin = hex::decode(sha256)
            .ok()
            .and_then(|digest| builtin::Builtin::by_digest(&digest))
            .is_some();
        if let Some(cache) = &self.loader.cache
            && !builtin
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
            // Both run the component: on the guests' threads, not on the
            // connection worker the load may have come from.
            let this = self.clone();
            self.on_guest_threads(async move {
                this.self_test(&prepared).await?;
                // Its first requests are served by primed instances.
                let primed = match &prepared {
                    Prepared::Validator(v) => v.pool.prime().await,
                    Prepared::Gate(g) => g.pool.prime().await,
                    Prepared::Api(_) => Ok(()),
                };
                primed.map_err(|e| LoadError::SelfTest(format!("priming: {e:#}")))?;
                Ok(prepared)
            })
            .await
            .map_err(|e| LoadError::SelfTest(e.to_string()))?
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
            let kind = slot.kind;
            let bytes = tokio::task::spawn_blocking(move || kind.builtin().wasm())
                .await
                .map_err(|e| {
                    LoadError::Compile(format!("decompressing the built-in component: {e}"))
                })?;
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
}

#[cfg(test)]
mod tests;
