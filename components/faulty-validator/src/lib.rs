//! A validator component for failure tests: it validates like the real one, except
//! that an update whose text contains a fault marker makes it fail on purpose:
//! `fault:trap` panics (a trap), `fault:spin` loops forever (hits the deadline),
//! `fault:hog` allocates without end (hits the memory cap). Never deployed.
//!
//! It can also keep state between calls, as a careless component might:
//! `probe:remember:TEXT` stores TEXT in the instance, and `probe:recall` refuses
//! the update with the message `remembered: TEXT`. Tests use it to show that a
//! warm instance never carries one tenant's data to another.

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

/// The state-keeping probe: remembers or recalls text in `stash`. Returns the
/// message to refuse the update with for a recall.
pub fn probe(patch: &str, stash: &mut String) -> Option<String> {
    if let Some(at) = patch.find("probe:remember:") {
        let rest = &patch[at + "probe:remember:".len()..];
        let end = rest.find('"').unwrap_or(rest.len());
        *stash = rest[..end].to_owned();
    }
    patch
        .contains("probe:recall")
        .then(|| format!("remembered: {stash}"))
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
mod component {
    use tg_validator::component::{DocumentsGuest, Guest, PatchOutcome, Violation};

    struct Faulty;

    thread_local! {
        /// What `probe:remember:` stored in this instance.
        static STASH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }

    impl Guest for Faulty {
        fn default_config() -> String {
            tg_validator::component::default_config()
        }

        fn validate_config(config: String) -> Result<(), Vec<Violation>> {
            super::misbehave(super::fault(&config));
            tg_validator::component::validate_config(&config)
        }

        fn apply_patch(
            current: Option<String>,
            patch: String,
        ) -> Result<PatchOutcome, Vec<Violation>> {
            super::misbehave(super::fault(&patch));
            let recalled = STASH.with(|s| super::probe(&patch, &mut s.borrow_mut()));
            if let Some(message) = recalled {
                return Err(vec![Violation {
                    path: "$".into(),
                    message,
                }]);
            }
            tg_validator::component::apply_patch(current.as_deref(), &patch)
        }
    }

    impl DocumentsGuest for Faulty {
        fn validate_tenant_info(document: String) -> Result<(), Vec<Violation>> {
            super::misbehave(super::fault(&document));
            tg_validator::component::validate_tenant_info(&document)
        }
    }

    tg_validator::component::export!(Faulty);
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

    #[test]
    fn the_probe_remembers_and_recalls() {
        let mut stash = String::new();
        assert_eq!(
            probe(
                r#"{"custom_settings":{"x":"probe:remember:abc"}}"#,
                &mut stash
            ),
            None
        );
        assert_eq!(stash, "abc");
        assert_eq!(
            probe(r#"{"custom_settings":{"x":"probe:recall"}}"#, &mut stash).as_deref(),
            Some("remembered: abc")
        );
        assert_eq!(probe(r#"{"custom_settings":{"x":"y"}}"#, &mut stash), None);
    }
}
