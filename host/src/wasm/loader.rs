//! Compiling and linking components: the engine, the linkers and the
//! artifact cache every load needs, made once; a component checked, compiled
//! (here, or in the compiler process), type-checked and pre-instantiated.

use super::*;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// Compiles and links components: what every load needs, made once.
pub(super) struct Loader {
    pub(super) engine: Engine,
    pub(super) api_linker: Linker<ApiState>,
    pub(super) app_linker: Linker<apps::AppState>,
    pub(super) plugin_linker: Linker<PluginState>,
    pub(super) cache: Option<cache::ArtifactCache>,
    pub(super) compiler: compiler::Compiler,
    pub(super) limits: Limits,
    pub(super) idle_budget: Arc<pool::IdleBudget>,
    pub(super) metrics: Metrics,
}

impl Loader {
    /// Compiles `bytes` (or loads its precompiled artifact); `true` if it compiled.
    pub(super) fn compile(&self, name: &str, bytes: &[u8]) -> wasmtime::Result<(Component, bool)> {
        let made = match &self.cache {
            Some(cache) => cache.compile(&self.engine, name, bytes, &self.metrics),
            None => cache::compile_uncached(&self.engine, name, bytes),
        };
        if let Ok((_, true)) = &made {
            self.metrics.artifact(metrics::Artifact::Compiled);
        }
        made
    }

    /// The built-in component `b` from the artifact precompiled into the
    /// binary (blocking: decompresses and maps it); `None` when the binary has
    /// none or this engine refuses it (another CPU family, a CPU without the
    /// features it was made for, or `TENANT_GATEWAY_BUILTIN_ARTIFACTS=ignore`),
    /// counted and logged: its Wasm is compiled then.
    pub(super) fn embedded(&self, b: &builtin::Builtin) -> Option<Component> {
        if builtin::ignored() {
            return None;
        }
        let artifact = b.precompiled()?;
        // SAFETY: the artifact was made by `Engine::precompile_component` when
        // this binary was built (build.rs), with the engine configuration of
        // `engine_config.rs`, and is part of the binary, whose integrity it
        // shares; it decompressed to exactly its recorded size, and
        // `deserialize` refuses it unless it suits this engine and this CPU.
        #[allow(unsafe_code)]
        match unsafe { artifact.deserialize(&self.engine) } {
            Ok(component) => {
                self.metrics.artifact(metrics::Artifact::Embedded);
                Some(component)
            }
            Err(e) => {
                self.metrics.artifact(metrics::Artifact::Rejected);
                tracing::warn!(component = b.name, error = %format!("{e:#}"), "the built-in component's precompiled artifact does not suit this engine; compiling it");
                None
            }
        }
    }

    /// Compiles the components of `items` (a name for the log, the bytes)
    /// that the cache does not hold yet in compiler processes, all at once,
    /// and keeps their artifacts (blocking; call from a blocking thread of the
    /// runtime). The built-in ones come here when their precompiled artifacts
    /// cannot be used: compiling them in this process would grow its heap by
    /// some 120 MiB that stays resident; in compiler processes it goes with
    /// them. Whatever fails there is compiled here when it is loaded, as
    /// before. Returns, for each item, whether it was compiled.
    pub(super) fn compile_aside(&self, items: &[(&'static str, Bytes)]) -> Vec<bool> {
        let mut compiled = vec![false; items.len()];
        let (Some(cache), Some(_), Ok(handle)) = (
            &self.cache,
            &self.compiler.exe,
            tokio::runtime::Handle::try_current(),
        ) else {
            return compiled;
        };
        let mut compiling = tokio::task::JoinSet::new();
        for (i, (_, bytes)) in items.iter().enumerate() {
            let digest: [u8; 32] = sha2::Sha256::digest(bytes).into();
            if cache.holds(&self.engine, &digest) {
                continue;
            }
            let (compiler, engine, bytes) =
                (self.compiler.clone(), self.engine.clone(), bytes.clone());
            compiling.spawn_on(
                async move { (i, digest, compiler.precompile(&engine, bytes).await) },
                &handle,
            );
        }
        if compiling.is_empty() {
            return compiled;
        }
        let started = std::time::Instant::now();
        for (i, digest, made) in handle.block_on(compiling.join_all()) {
            let kept = made.map_err(|e| e.to_string()).and_then(|artifact| {
                cache
                    .keep(&self.engine, &digest, &artifact)
                    .map_err(|e| format!("{e:#}"))
            });
            match kept {
                Ok(()) => {
                    self.metrics.artifact(metrics::Artifact::Compiled);
                    compiled[i] = true;
                }
                Err(e) => {
                    tracing::warn!(component = items[i].0, error = %e, "compiling a built-in component in a compiler process failed; compiling it in the gateway")
                }
            }
        }
        let names: Vec<&str> = (0..items.len())
            .filter(|&i| compiled[i])
            .map(|i| items[i].0)
            .collect();
        if !names.is_empty() {
            tracing::info!(
                components = ?names,
                took_ms = started.elapsed().as_millis() as u64,
                "built-in components compiled in compiler processes"
            );
        }
        compiled
    }

    /// Checks `bytes` for `slot` before anything is compiled, and returns
    /// their SHA-256 and the component from its precompiled artifact (the
    /// binary's, for a built-in component, else the cache's) if there is one
    /// (blocking: the hash of up to `Limits.MaxComponentBytes`).
    pub(super) fn check(
        &self,
        bytes: &[u8],
        source: &Source,
    ) -> Result<([u8; 32], Option<Component>), LoadError> {
        let max = self.limits.max_component_bytes;
        if bytes.len() > max {
            return Err(LoadError::TooLarge {
                size: bytes.len(),
                max,
            });
        }
        components::check_header(bytes)?;
        // The built-in components are ours; what arrives is counted first.
        if !matches!(source, Source::Builtin) {
            components::check_functions(bytes, self.limits.max_component_functions)?;
        }
        let digest: [u8; 32] = sha2::Sha256::digest(bytes).into();
        let cached = builtin::Builtin::by_digest(&digest)
            .and_then(|b| self.embedded(b))
            .or_else(|| {
                self.cache
                    .as_ref()
                    .and_then(|c| c.lookup(&self.engine, &digest, &self.metrics))
            });
        Ok((digest, cached))
    }

    /// The component of `artifact`, which the compiler made of the bytes whose
    /// SHA-256 is `digest`, kept in the cache (blocking).
    pub(super) fn adopt(
        &self,
        name: &str,
        digest: &[u8],
        artifact: &[u8],
    ) -> Result<Component, LoadError> {
        self.metrics.artifact(metrics::Artifact::Compiled);
        if let Some(cache) = &self.cache
            && let Err(e) = cache.keep(&self.engine, digest, artifact)
        {
            tracing::warn!(slot = name, error = %e, "could not keep the precompiled component; it will be compiled again next time");
        }
        // SAFETY: `artifact` was made just now by `Engine::precompile_component`
        // (here, or in the compiler process this gateway started, from its own
        // binary); an engine of another configuration is refused by
        // `deserialize`'s compatibility check.
        #[allow(unsafe_code)]
        unsafe { Component::deserialize(&self.engine, artifact) }
            .map_err(|e| LoadError::Compile(format!("loading the compiled component: {e:#}")))
    }

    /// Links and type-checks a component for `slot` (blocking). Its self-test
    /// is [`Runtime::self_test`].
    pub(super) fn prepare(
        &self,
        slot: &Slot,
        component: Component,
        compiled: bool,
        (size, sha256): (usize, String),
        source: Source,
    ) -> Result<Prepared, LoadError> {
        let name = slot.to_string();
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let shape = |why: String| LoadError::WrongShape {
            slot: name.clone(),
            why,
        };
        for needed in slot.kind.required_exports() {
            if !exports.iter().any(|e| e.starts_with(needed)) {
                // 0.1.0 had one package for every plugin interface.
                let hint = if exports
                    .iter()
                    .any(|e| e.starts_with("tenant-gateway:plugins/"))
                {
                    "; it was built against tenant-gateway:plugins@0.1, whose interfaces \
                     moved to one package per plugin in 0.2.0: rebuild it against \
                     wit/plugins.wit"
                } else {
                    ""
                };
                return Err(shape(format!(
                    "it does not export {needed}* (it exports: {}){hint}",
                    if exports.is_empty() {
                        "nothing".to_owned()
                    } else {
                        exports.join(", ")
                    }
                )));
            }
        }
        let info = ComponentInfo {
            slot: slot.clone(),
            sha256,
            size,
            loaded_at: crate::now_rfc3339(),
            source,
            exports,
            compiled,
        };
        let imports = |e: wasmtime::Error| shape(format!("{e:#}"));
        Ok(match slot.kind {
            Kind::Validator => {
                let pre = self
                    .plugin_linker
                    .instantiate_pre(&component)
                    .map_err(imports)?;
                let pre = bindings::validator::ValidatorComponentPre::new(pre).map_err(imports)?;
                Prepared::Validator(self.plugin(info, pre))
            }
            Kind::FeatureGate => {
                let pre = self
                    .plugin_linker
                    .instantiate_pre(&component)
                    .map_err(imports)?;
                let pre = bindings::gate::FeatureGateComponentPre::new(pre).map_err(imports)?;
                Prepared::Gate(self.plugin(info, pre))
            }
            Kind::ConfigApi => {
                let pre = self
                    .api_linker
                    .instantiate_pre(&component)
                    .map_err(imports)?;
                Prepared::Api(ApiComponent {
                    info,
                    pre: ProxyPre::new(pre).map_err(imports)?,
                })
            }
        })
    }

    pub(super) fn plugin<P: pool::Instantiate>(&self, info: ComponentInfo, pre: P) -> Plugin<P> {
        Plugin {
            info,
            pool: self.pool(pre),
            defaults: std::sync::OnceLock::new(),
        }
    }

    pub(super) fn pool<P: pool::Instantiate>(&self, pre: P) -> WarmPool<P> {
        WarmPool::new(
            pre,
            &self.engine,
            &self.limits,
            WARM_PER_TENANT,
            self.idle_budget.clone(),
            MAX_USES_PER_INSTANCE,
            self.metrics.clone(),
        )
    }
}
