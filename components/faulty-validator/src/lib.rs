//! A validator component for failure tests: it validates like the real one, except
//! that an update whose text contains a fault marker makes it fail on purpose:
//! `fault:trap` panics (a trap), `fault:spin` loops forever (hits the deadline),
//! `fault:hog` allocates without end (hits the memory cap). Never deployed.

/// What an update asks the fixture to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Fault {
    /// Validate normally.
    None,
    /// Panic.
    Trap,
    /// Never return.
    Spin,
    /// Exhaust memory.
    Hog,
}

/// Reads the fault marker out of an update's text.
pub fn fault(patch: &str) -> Fault {
    if patch.contains("fault:trap") {
        Fault::Trap
    } else if patch.contains("fault:spin") {
        Fault::Spin
    } else if patch.contains("fault:hog") {
        Fault::Hog
    } else {
        Fault::None
    }
}

/// Fails as asked; returns only for [`Fault::None`].
pub fn misbehave(fault: Fault) {
    match fault {
        Fault::None => {}
        Fault::Trap => panic!("fault injected: trap"),
        Fault::Spin => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Fault::Hog => {
            let mut held: Vec<Vec<u8>> = Vec::new();
            loop {
                held.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&held);
            }
        }
    }
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod component {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "tenant-gateway:plugins/validator-component",
    });

    use exports::tenant_gateway::plugins::types::Violation;
    use exports::tenant_gateway::plugins::validator::{Guest, PatchOutcome};

    struct Component;

    fn to_wit(v: Vec<tg_validator::Violation>) -> Vec<Violation> {
        v.into_iter()
            .map(|v| Violation {
                path: v.path,
                message: v.message,
            })
            .collect()
    }

    impl Guest for Component {
        fn default_config() -> String {
            tg_validator::shared().default_config().to_string()
        }

        fn validate_config(config: String) -> Result<(), Vec<Violation>> {
            super::misbehave(super::fault(&config));
            tg_validator::shared()
                .validate_config(&config)
                .map(drop)
                .map_err(to_wit)
        }

        fn apply_patch(
            current: Option<String>,
            patch: String,
        ) -> Result<PatchOutcome, Vec<Violation>> {
            super::misbehave(super::fault(&patch));
            tg_validator::shared()
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
            super::misbehave(super::fault(&document));
            tg_validator::shared()
                .validate_tenant_info(&document)
                .map(drop)
                .map_err(to_wit)
        }
    }

    export!(Component);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_select_faults() {
        assert_eq!(
            fault(r#"{"custom_settings":{"x":"fault:trap"}}"#),
            Fault::Trap
        );
        assert_eq!(
            fault(r#"{"custom_settings":{"x":"fault:spin"}}"#),
            Fault::Spin
        );
        assert_eq!(
            fault(r#"{"custom_settings":{"x":"fault:hog"}}"#),
            Fault::Hog
        );
        assert_eq!(fault(r#"{"custom_settings":{"x":"fine"}}"#), Fault::None);
        misbehave(Fault::None);
    }
}
