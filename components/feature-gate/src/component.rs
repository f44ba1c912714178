//! The Wasm component shell: the WIT bindings, conversions between them and the
//! plain types, and (feature `export`) this crate's gate exported onto them.
//! Crates with a gate of their own (a tenant's policy) use the bindings and
//! conversions, and export with `tg_feature_gate::component::export!(TheirGate)`.
#![allow(unsafe_code)]

/// The generated bindings of the `feature-gate-component` world.
#[allow(missing_docs)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "tenant-gateway:gateway/feature-gate-component",
        pub_export_macro: true,
        default_bindings_module: "tg_feature_gate::component::wit",
    });
}

pub use wit::export;
pub use wit::exports::tenant_gateway::feature_gate::feature_gate::{
    Feature, FeatureList, Guest, TenantContext, Tier,
};

/// The tier a WIT tier names.
pub fn tier(t: Tier) -> crate::Tier {
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

/// What a configuration as passed to the gate switches on; an unreadable one
/// gates everything off rather than failing the call.
pub fn parse(config: &str) -> crate::Switches {
    crate::Switches::read(config)
}

/// A feature list as the WIT returns it.
pub fn to_wit(list: crate::FeatureList) -> FeatureList {
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

/// The component's allocator: Talc instead of the C library's dlmalloc. A
/// call allocates and frees a few hundred small blocks (a JSON document's
/// maps and strings), and the allocator was a tenth of the call's time.
#[cfg(feature = "export")]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

#[cfg(feature = "export")]
mod gate {
    use super::{FeatureList, Guest, TenantContext, parse, tier, to_wit};

    struct Gate;

    impl Guest for Gate {
        fn list_features(tenant: TenantContext, config: String) -> FeatureList {
            to_wit(crate::list_features(tier(tenant.tier), parse(&config)))
        }

        fn is_enabled(tenant: TenantContext, config: String, feature: String) -> Option<bool> {
            crate::is_enabled(tier(tenant.tier), parse(&config), &feature)
        }
    }

    super::export!(Gate with_types_in super::wit);
}
