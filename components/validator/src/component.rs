//! The Wasm component shell: the WIT bindings, the validator's calls in WIT
//! types, and (feature `export`) the validator exported onto them. Crates with a
//! validator of their own (a tenant's policy, test fixtures) use the bindings and
//! calls, and export with `tg_validator::component::export!(TheirValidator)`.
#![allow(unsafe_code)]

/// The generated bindings of the `validator-component` world.
#[allow(missing_docs)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "tenant-gateway:gateway/validator-component",
        pub_export_macro: true,
        default_bindings_module: "tg_validator::component::wit",
    });
}

pub use wit::export;
pub use wit::exports::tenant_gateway::validator::documents::Guest as DocumentsGuest;
pub use wit::exports::tenant_gateway::validator::validator::{Guest, PatchOutcome, Violation};

/// Violations as the WIT returns them.
pub fn to_wit(v: Vec<crate::Violation>) -> Vec<Violation> {
    v.into_iter()
        .map(|v| Violation {
            path: v.path,
            message: v.message,
        })
        .collect()
}

/// An update's outcome as the WIT returns it.
pub fn outcome(o: crate::PatchOutcome) -> PatchOutcome {
    PatchOutcome {
        config: o.config,
        updated_fields: o.updated_fields,
    }
}

/// `default-config`: the configuration derived from the schema's defaults.
pub fn default_config() -> String {
    crate::shared().default_config_text().to_owned()
}

/// `validate-config` with everyone's rules.
pub fn validate_config(config: &str) -> Result<(), Vec<Violation>> {
    crate::shared()
        .validate_config(config)
        .map(drop)
        .map_err(to_wit)
}

/// `apply-patch` with everyone's rules.
pub fn apply_patch(current: Option<&str>, patch: &str) -> Result<PatchOutcome, Vec<Violation>> {
    crate::shared()
        .apply_patch(current, patch)
        .map(outcome)
        .map_err(to_wit)
}

/// `validate-tenant-info`.
pub fn validate_tenant_info(document: &str) -> Result<(), Vec<Violation>> {
    crate::shared()
        .validate_tenant_info(document)
        .map(drop)
        .map_err(to_wit)
}

/// The component's allocator: Talc instead of the C library's dlmalloc. A
/// call allocates and frees a few hundred small blocks (a JSON document's
/// maps and strings), and the allocator was a tenth of the call's time.
#[cfg(feature = "export")]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

#[cfg(feature = "export")]
mod validator {
    use super::{DocumentsGuest, Guest, PatchOutcome, Violation};

    struct Validator;

    impl Guest for Validator {
        fn default_config() -> String {
            super::default_config()
        }

        fn validate_config(config: String) -> Result<(), Vec<Violation>> {
            super::validate_config(&config)
        }

        fn apply_patch(
            current: Option<String>,
            patch: String,
        ) -> Result<PatchOutcome, Vec<Violation>> {
            super::apply_patch(current.as_deref(), &patch)
        }
    }

    impl DocumentsGuest for Validator {
        fn validate_tenant_info(document: String) -> Result<(), Vec<Violation>> {
            super::validate_tenant_info(&document)
        }
    }

    super::export!(Validator with_types_in super::wit);
}
