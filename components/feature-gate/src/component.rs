//! The Wasm component shell: WIT exports mapped onto the plain functions.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "tenant-gateway:plugins/feature-gate-component",
});

use exports::tenant_gateway::plugins::feature_gate::{FeatureList, Guest};
use exports::tenant_gateway::plugins::types::{Feature, TenantContext, Tier};
use serde_json::Value;

struct Component;

fn tier(t: Tier) -> crate::Tier {
    match t {
        Tier::Basic => crate::Tier::Basic,
        Tier::Pro => crate::Tier::Pro,
        Tier::Enterprise => crate::Tier::Enterprise,
    }
}

fn wit_tier(t: crate::Tier) -> Tier {
    match t {
        crate::Tier::Basic => Tier::Basic,
        crate::Tier::Pro => Tier::Pro,
        crate::Tier::Enterprise => Tier::Enterprise,
    }
}

/// An unreadable configuration gates everything off rather than failing the call.
fn parse(config: &str) -> Value {
    serde_json::from_str(config).unwrap_or(Value::Null)
}

impl Guest for Component {
    fn list_features(tenant: TenantContext, config: String) -> FeatureList {
        let list = crate::list_features(tier(tenant.tier), &parse(&config));
        FeatureList {
            features: list
                .features
                .into_iter()
                .map(|f| Feature {
                    name: f.name.to_owned(),
                    description: f.description.to_owned(),
                    tier_required: wit_tier(f.tier_required),
                    available: f.available,
                    enabled: f.enabled,
                })
                .collect(),
            total_enabled: list.total_enabled,
            total_available: list.total_available,
        }
    }

    fn is_enabled(tenant: TenantContext, config: String, feature: String) -> Option<bool> {
        crate::is_enabled(tier(tenant.tier), &parse(&config), &feature)
    }
}

export!(Component);
