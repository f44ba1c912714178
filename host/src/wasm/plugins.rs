//! The validator and feature-gate imports of the config API component, served by
//! calling the validator and feature-gate components (warm pooled instances).

use super::bindings::api::tenant_gateway::feature_gate::feature_gate as api_gate;
use super::bindings::api::tenant_gateway::validator::validator as api_validator;
use super::bindings::gate::exports::tenant_gateway::feature_gate::feature_gate as gate_types;
use super::{
    ApiState, CallError, GatePlugin, Instance, Patched, Runtime, ValidatorPlugin, Violation,
};

fn gate_tier(t: api_gate::Tier) -> gate_types::Tier {
    match t {
        api_gate::Tier::Basic => gate_types::Tier::Basic,
        api_gate::Tier::Pro => gate_types::Tier::Pro,
        api_gate::Tier::Enterprise => gate_types::Tier::Enterprise,
    }
}

fn settings_tier(t: crate::config::Tier) -> gate_types::Tier {
    match t {
        crate::config::Tier::Basic => gate_types::Tier::Basic,
        crate::config::Tier::Pro => gate_types::Tier::Pro,
        crate::config::Tier::Enterprise => gate_types::Tier::Enterprise,
    }
}

fn api_tier(t: gate_types::Tier) -> api_gate::Tier {
    match t {
        gate_types::Tier::Basic => api_gate::Tier::Basic,
        gate_types::Tier::Pro => api_gate::Tier::Pro,
        gate_types::Tier::Enterprise => api_gate::Tier::Enterprise,
    }
}

/// The validator's `default-config`, called once per loaded validator and then
/// remembered.
pub(super) async fn default_config(v: &ValidatorPlugin) -> wasmtime::Result<String> {
    if let Some(d) = v.defaults.get() {
        return Ok(d.clone());
    }
    let mut w = v.pool.acquire("").await?;
    let out = w
        .instance
        .tenant_gateway_validator_validator()
        .call_default_config(&mut w.store)
        .await?;
    v.pool.release("", w);
    Ok(v.defaults.get_or_init(|| out).clone())
}

/// Calls the validator's `apply-patch` on the kind of instance asked for.
pub(super) async fn apply_patch(
    v: &ValidatorPlugin,
    tenant: &str,
    current: Option<&str>,
    patch: &str,
    kind: Instance,
) -> wasmtime::Result<Result<Patched, Vec<Violation>>> {
    let mut w = v.pool.get(kind, tenant).await?;
    let out = w
        .instance
        .tenant_gateway_validator_validator()
        .call_apply_patch(&mut w.store, current, patch)
        .await?;
    v.pool.release(tenant, w);
    Ok(out
        .map(|o| Patched {
            config: o.config,
            updated_fields: o.updated_fields,
        })
        .map_err(violations))
}

/// Calls the validator's `validate-config` (a whole configuration).
pub(super) async fn validate_config(
    v: &ValidatorPlugin,
    tenant: &str,
    config: &str,
) -> wasmtime::Result<Result<(), Vec<Violation>>> {
    let mut w = v.pool.acquire(tenant).await?;
    let out = w
        .instance
        .tenant_gateway_validator_validator()
        .call_validate_config(&mut w.store, config)
        .await?;
    v.pool.release(tenant, w);
    Ok(out.map_err(violations))
}

/// Calls the validator's `validate-tenant-info` (a Hono tenant document).
pub(super) async fn validate_tenant_info(
    v: &ValidatorPlugin,
    tenant: &str,
    document: &str,
) -> wasmtime::Result<Result<(), Vec<Violation>>> {
    let mut w = v.pool.acquire(tenant).await?;
    let out = w
        .instance
        .tenant_gateway_validator_documents()
        .call_validate_tenant_info(&mut w.store, document)
        .await?;
    v.pool.release(tenant, w);
    Ok(out.map_err(violations))
}

/// How many features a feature gate lists, and enables.
pub(super) struct FeatureCount {
    pub(super) listed: usize,
    pub(super) enabled: usize,
}

/// Calls the feature gate's `list-features` for a tier.
pub(super) async fn count_features(
    g: &GatePlugin,
    tier: crate::config::Tier,
    config: &str,
    kind: Instance,
) -> wasmtime::Result<FeatureCount> {
    let ctx = gate_types::TenantContext {
        tenant_id: String::new(),
        name: String::new(),
        tier: settings_tier(tier),
    };
    let list = list_features(g, "", &ctx, config, kind).await?;
    Ok(FeatureCount {
        listed: list.features.len(),
        enabled: list.total_enabled as usize,
    })
}

/// Calls the feature gate's `list-features` on the kind of instance asked for.
async fn list_features(
    g: &GatePlugin,
    tenant: &str,
    ctx: &gate_types::TenantContext,
    config: &str,
    kind: Instance,
) -> wasmtime::Result<gate_types::FeatureList> {
    let mut w = g.pool.get(kind, tenant).await?;
    let list = w
        .instance
        .tenant_gateway_feature_gate_feature_gate()
        .call_list_features(&mut w.store, ctx, config)
        .await?;
    g.pool.release(tenant, w);
    Ok(list)
}

impl api_validator::Host for ApiState {
    async fn default_config(&mut self) -> wasmtime::Result<String> {
        let v = self.validator();
        let r = default_config(&v).await;
        self.noted(&v.info.slot, r)
    }

    async fn validate_config(
        &mut self,
        config: String,
    ) -> wasmtime::Result<Result<(), Vec<api_validator::Violation>>> {
        let v = self.validator();
        let r = validate_config(&v, self.tenant_key(), &config).await;
        let out = self.noted(&v.info.slot, r)?;
        Ok(out.map_err(|v| v.into_iter().map(to_api).collect()))
    }

    async fn apply_patch(
        &mut self,
        current: Option<String>,
        patch: String,
    ) -> wasmtime::Result<Result<api_validator::PatchOutcome, Vec<api_validator::Violation>>> {
        let v = self.validator();
        let r = apply_patch(
            &v,
            self.tenant_key(),
            current.as_deref(),
            &patch,
            Instance::Warm,
        )
        .await;
        let out = self.noted(&v.info.slot, r)?;
        Ok(out
            .map(|p| api_validator::PatchOutcome {
                config: p.config,
                updated_fields: p.updated_fields,
            })
            .map_err(|v| v.into_iter().map(to_api).collect()))
    }
}

fn to_api(v: Violation) -> api_validator::Violation {
    api_validator::Violation {
        path: v.path,
        message: v.message,
    }
}

/// Violations from the validator component, as the runtime reports them.
fn violations(
    v: Vec<super::bindings::validator::exports::tenant_gateway::validator::validator::Violation>,
) -> Vec<Violation> {
    v.into_iter()
        .map(|v| Violation {
            path: v.path,
            message: v.message,
        })
        .collect()
}

fn context(t: &api_gate::TenantContext) -> gate_types::TenantContext {
    gate_types::TenantContext {
        tenant_id: t.tenant_id.clone(),
        name: t.name.clone(),
        tier: gate_tier(t.tier),
    }
}

impl api_gate::Host for ApiState {
    async fn list_features(
        &mut self,
        tenant: api_gate::TenantContext,
        config: String,
    ) -> wasmtime::Result<api_gate::FeatureList> {
        let g = self.gate();
        let r = list_features(
            &g,
            self.tenant_key(),
            &context(&tenant),
            &config,
            Instance::Warm,
        )
        .await;
        let list = self.noted(&g.info.slot, r)?;
        Ok(api_gate::FeatureList {
            features: list
                .features
                .into_iter()
                .map(|f| api_gate::Feature {
                    name: f.name,
                    description: f.description,
                    tier_required: api_tier(f.tier_required),
                    available: f.available,
                    enabled: f.enabled,
                })
                .collect(),
            total_enabled: list.total_enabled,
            total_available: list.total_available,
        })
    }

    async fn is_enabled(
        &mut self,
        tenant: api_gate::TenantContext,
        config: String,
        feature: String,
    ) -> wasmtime::Result<Option<bool>> {
        let g = self.gate();
        let key = self.tenant_key().to_owned();
        let r = async {
            let mut w = g.pool.acquire(&key).await?;
            let out = w
                .instance
                .tenant_gateway_feature_gate_feature_gate()
                .call_is_enabled(&mut w.store, &context(&tenant), &config, &feature)
                .await?;
            g.pool.release(&key, w);
            Ok(out)
        }
        .await;
        self.noted(&g.info.slot, r)
    }
}

impl Runtime {
    /// Validates a partial update with the validator component and applies it to
    /// `current` (or the defaults). `Instance::Fresh` pays for a new store and
    /// instance, as every call would without the warm pool.
    pub async fn apply_patch(
        &self,
        current: Option<&str>,
        patch: &str,
        instance: Instance,
    ) -> Result<Result<Patched, Vec<Violation>>, CallError> {
        let (current, patch) = (current.map(str::to_owned), patch.to_owned());
        self.plugin_call(move |now| async move {
            apply_patch(&now.validator, "", current.as_deref(), &patch, instance).await
        })
        .await
    }

    /// Validates a whole configuration with the validator serving `tenant`
    /// (lower-case name; its own, else everyone's).
    pub async fn validate_config(
        &self,
        config: &str,
        tenant: Option<&str>,
    ) -> Result<Result<(), Vec<Violation>>, CallError> {
        let (config, tenant) = (config.to_owned(), tenant.map(str::to_owned));
        self.plugin_call(move |now| async move {
            let tenant = tenant.as_deref();
            validate_config(now.validator_for(tenant), tenant.unwrap_or(""), &config).await
        })
        .await
    }

    /// Validates a Hono tenant information document with the validator serving
    /// `tenant` (lower-case name).
    pub async fn validate_tenant_info(
        &self,
        document: &str,
        tenant: Option<&str>,
    ) -> Result<Result<(), Vec<Violation>>, CallError> {
        let (document, tenant) = (document.to_owned(), tenant.map(str::to_owned));
        self.plugin_call(move |now| async move {
            let tenant = tenant.as_deref();
            validate_tenant_info(now.validator_for(tenant), tenant.unwrap_or(""), &document).await
        })
        .await
    }

    /// Lists a tenant's features with the feature-gate component.
    pub async fn list_features(
        &self,
        tier: crate::config::Tier,
        config: &str,
        instance: Instance,
    ) -> Result<usize, CallError> {
        let config = config.to_owned();
        self.plugin_call(move |now| async move {
            count_features(&now.gate, tier, &config, instance)
                .await
                .map(|n| n.enabled)
        })
        .await
    }

    /// Runs `call` with the components serving now, on the guests' threads
    /// ([`Runtime::on_guest_threads`]); an error is the guest's. (Its inputs
    /// are the caller's own copies: the call may run on another thread.)
    async fn plugin_call<R, F>(
        &self,
        call: impl FnOnce(std::sync::Arc<super::Snapshot>) -> F,
    ) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: Future<Output = wasmtime::Result<R>> + Send + 'static,
    {
        self.on_guest_threads(call(self.snapshot.load_full()))
            .await?
            .map_err(CallError::Guest)
    }
}
