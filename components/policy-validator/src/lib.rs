//! An example of a tenant's own compliance policy, loaded as `validator@{tenant}`:
//! everything the default validator checks, plus the tenant's stricter rules:
//! - sessions time out within 30 minutes (`security.session_timeout_mins` ≤ 30);
//! - encryption at rest stays on (`security.encryption_at_rest`);
//! - query caches stay small (`performance.cache_size_mb` ≤ 8192).
//!
//! The default configuration satisfies them, so the component passes the
//! gateway's self-test; other tenants keep the default validator.

use serde_json::Value;
use tg_validator::Violation;

/// The tenant's rules, checked on a whole configuration (defaults filled in).
pub fn policy(config: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut check = |ok: bool, path: &str, message: &str| {
        if !ok {
            out.push(Violation {
                path: path.to_owned(),
                message: message.to_owned(),
            });
        }
    };
    let number = |section: &str, field: &str| config[section][field].as_f64();
    check(
        number("security", "session_timeout_mins").is_none_or(|m| m <= 30.0),
        "$.security.session_timeout_mins",
        "Tenant policy: sessions must time out within 30 minutes",
    );
    check(
        config["security"]["encryption_at_rest"] != Value::Bool(false),
        "$.security.encryption_at_rest",
        "Tenant policy: encryption at rest must stay on",
    );
    check(
        number("performance", "cache_size_mb").is_none_or(|m| m <= 8192.0),
        "$.performance.cache_size_mb",
        "Tenant policy: the cache may not exceed 8 GB",
    );
    out
}

/// A whole configuration: the default rules, then the tenant's.
pub fn validate_config(text: &str) -> Result<(), Vec<Violation>> {
    let config = tg_validator::shared().validate_config(text)?;
    let v = policy(&config);
    if v.is_empty() { Ok(()) } else { Err(v) }
}

/// A partial update: the default rules, then the tenant's on the result.
pub fn apply_patch(
    current: Option<&str>,
    patch: &str,
) -> Result<tg_validator::PatchOutcome, Vec<Violation>> {
    let outcome = tg_validator::shared().apply_patch(current, patch)?;
    let config = serde_json::from_str(&outcome.config).map_err(|e| {
        vec![Violation {
            path: "$".into(),
            message: format!("The updated configuration is unreadable: {e}"),
        }]
    })?;
    let v = policy(&config);
    if v.is_empty() { Ok(outcome) } else { Err(v) }
}

#[cfg(target_arch = "wasm32")]
mod component {
    use tg_validator::component::{
        DocumentsGuest, Guest, PatchOutcome, Violation, outcome, to_wit,
    };

    struct Policy;

    impl Guest for Policy {
        fn default_config() -> String {
            tg_validator::component::default_config()
        }

        fn validate_config(config: String) -> Result<(), Vec<Violation>> {
            super::validate_config(&config).map_err(to_wit)
        }

        fn apply_patch(
            current: Option<String>,
            patch: String,
        ) -> Result<PatchOutcome, Vec<Violation>> {
            super::apply_patch(current.as_deref(), &patch)
                .map(outcome)
                .map_err(to_wit)
        }
    }

    impl DocumentsGuest for Policy {
        fn validate_tenant_info(document: String) -> Result<(), Vec<Violation>> {
            tg_validator::component::validate_tenant_info(&document)
        }
    }

    tg_validator::component::export!(Policy);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_the_policy() {
        let defaults = tg_validator::shared().default_config().to_string();
        assert_eq!(validate_config(&defaults), Ok(()));
    }

    #[test]
    fn stricter_rules_refuse_what_the_default_allows() {
        let long = r#"{"security":{"session_timeout_mins":60}}"#;
        assert!(tg_validator::shared().apply_patch(None, long).is_ok());
        let e = apply_patch(None, long).unwrap_err();
        assert_eq!(e[0].path, "$.security.session_timeout_mins");
        let e = apply_patch(None, r#"{"performance":{"cache_size_mb":16384}}"#).unwrap_err();
        assert!(e[0].message.contains("8 GB"));
        assert!(apply_patch(None, r#"{"performance":{"cache_size_mb":4096}}"#).is_ok());
        // The default rules still apply first.
        let e = apply_patch(None, r#"{"performance":{"cache_size_mb":200000}}"#).unwrap_err();
        assert_eq!(e[0].message, "Cache size exceeds maximum (100 GB)");
    }
}
