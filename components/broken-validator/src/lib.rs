//! A validator component for the registry's tests: it has the right exports and
//! imports, so it type-checks, but every call traps. The gateway's self-test must
//! refuse it and keep the running validator. Never deployed.

/// What every call does.
pub fn fail() -> ! {
    panic!("this validator is broken on purpose")
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod component {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "tenant-gateway:gateway/validator-component",
    });

    use exports::tenant_gateway::validator::validator::{Guest, PatchOutcome, Violation};

    struct Component;

    impl Guest for Component {
        fn default_config() -> String {
            super::fail()
        }

        fn validate_config(_config: String) -> Result<(), Vec<Violation>> {
            super::fail()
        }

        fn apply_patch(
            _current: Option<String>,
            _patch: String,
        ) -> Result<PatchOutcome, Vec<Violation>> {
            super::fail()
        }
    }

    impl exports::tenant_gateway::validator::documents::Guest for Component {
        fn validate_tenant_info(_document: String) -> Result<(), Vec<Violation>> {
            super::fail()
        }
    }

    export!(Component);
}

#[cfg(test)]
mod tests {
    #[test]
    #[should_panic(expected = "broken on purpose")]
    fn every_call_traps() {
        super::fail();
    }
}
