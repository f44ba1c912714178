//! The components serving requests: a loaded plugin with its warm pool, the
//! config API component, and the immutable snapshot that holds them all and is
//! swapped whole.

use super::components::{ComponentInfo, Kind, Slot};
use super::state::{ApiState, PluginState};
use super::{WarmPool, bindings, pool};
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// A loaded plugin component (validator or feature gate) and its warm instances.
pub struct Plugin<P: pool::Instantiate> {
    /// What it is.
    pub info: ComponentInfo,
    pub(super) pool: WarmPool<P>,
    /// The validator's default configuration, asked once (a pure function of it).
    pub(super) defaults: std::sync::OnceLock<String>,
}

/// The loaded config API component.
pub struct ApiComponent {
    /// What it is.
    pub info: ComponentInfo,
    pub(super) pre: ProxyPre<ApiState>,
}

pub(super) type ValidatorPlugin = Plugin<bindings::validator::ValidatorComponentPre<PluginState>>;
pub(super) type GatePlugin = Plugin<bindings::gate::FeatureGateComponentPre<PluginState>>;

/// A component made ready for a slot, not yet published.
pub(super) enum Prepared {
    Validator(ValidatorPlugin),
    Gate(GatePlugin),
    Api(ApiComponent),
}

impl Prepared {
    pub(super) fn info(&self) -> &ComponentInfo {
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
    pub(super) config_api: Arc<ApiComponent>,
    pub(super) validator: Arc<ValidatorPlugin>,
    pub(super) gate: Arc<GatePlugin>,
    /// Tenants' own validators, by lower-case tenant name.
    pub(super) tenant_validators: HashMap<String, Arc<ValidatorPlugin>>,
    /// Tenants' own feature gates, by lower-case tenant name.
    pub(super) tenant_gates: HashMap<String, Arc<GatePlugin>>,
    /// `x-tg-components` header values: everyone's, and each tenant's with a
    /// component of its own (by lower-case name).
    pub(super) versions: (http::HeaderValue, HashMap<String, http::HeaderValue>),
}

impl Snapshot {
    pub(super) fn new(
        config_api: ApiComponent,
        validator: ValidatorPlugin,
        gate: GatePlugin,
    ) -> Self {
        let mut s = Self {
            config_api: Arc::new(config_api),
            validator: Arc::new(validator),
            gate: Arc::new(gate),
            tenant_validators: HashMap::new(),
            tenant_gates: HashMap::new(),
            versions: (http::HeaderValue::from_static(""), HashMap::new()),
        };
        s.versions = s.version_headers();
        s
    }

    /// The validator serving `tenant` (lower-case name): its own, else everyone's.
    pub(super) fn validator_for(&self, tenant: Option<&str>) -> &Arc<ValidatorPlugin> {
        tenant
            .and_then(|t| self.tenant_validators.get(t))
            .unwrap_or(&self.validator)
    }

    /// The feature gate serving `tenant` (lower-case name).
    pub(super) fn gate_for(&self, tenant: Option<&str>) -> &Arc<GatePlugin> {
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
            .and_then(|t| self.versions.1.get(t))
            .unwrap_or(&self.versions.0)
    }

    pub(super) fn version_header(&self, tenant: Option<&str>) -> http::HeaderValue {
        let text = format!(
            "config-api={}, validator={}, feature-gate={}",
            self.config_api.info.short_sha(),
            self.validator_for(tenant).info.short_sha(),
            self.gate_for(tenant).info.short_sha()
        );
        http::HeaderValue::from_str(&text).expect("hex and punctuation")
    }

    pub(super) fn version_headers(
        &self,
    ) -> (http::HeaderValue, HashMap<String, http::HeaderValue>) {
        let mut tenants = HashMap::new();
        for t in self
            .tenant_validators
            .keys()
            .chain(self.tenant_gates.keys())
        {
            tenants.insert(t.clone(), self.version_header(Some(t)));
        }
        (self.version_header(None), tenants)
    }

    /// This snapshot with `prepared` in its slot.
    pub(super) fn with(&self, prepared: Prepared) -> Snapshot {
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
    pub(super) fn without(&self, slot: &Slot) -> Snapshot {
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
