//! The Wasm component shell: WIT exports mapped onto the plain functions.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "tenant-gateway:plugins/validator-component",
});

use exports::tenant_gateway::plugins::types::Violation;
use exports::tenant_gateway::plugins::validator::{Guest, PatchOutcome};

struct Component;

fn to_wit(v: Vec<crate::Violation>) -> Vec<Violation> {
    v.into_iter()
        .map(|v| Violation {
            path: v.path,
            message: v.message,
        })
        .collect()
}

impl Guest for Component {
    fn default_config() -> String {
        crate::shared().default_config().to_string()
    }

    fn validate_config(config: String) -> Result<(), Vec<Violation>> {
        crate::shared()
            .validate_config(&config)
            .map(drop)
            .map_err(to_wit)
    }

    fn apply_patch(current: Option<String>, patch: String) -> Result<PatchOutcome, Vec<Violation>> {
        crate::shared()
            .apply_patch(current.as_deref(), &patch)
            .map(|o| PatchOutcome {
                config: o.config.to_string(),
                updated_fields: o.updated_fields,
            })
            .map_err(to_wit)
    }
}

impl exports::tenant_gateway::plugins::documents::Guest for Component {
    fn validate_tenant_info(document: String) -> Result<(), Vec<Violation>> {
        crate::shared()
            .validate_tenant_info(&document)
            .map(drop)
            .map_err(to_wit)
    }
}

export!(Component);
