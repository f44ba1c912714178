//! An example of a tenant's own feature policy, loaded as `feature-gate@{tenant}`:
//! the catalog gated by tier and configuration as everyone's gate does, minus the
//! features the tenant's data-residency rules withhold, whatever its tier and
//! configuration say:
//! - `multi_region_replication` and `automatic_failover` (data leaves the home region);
//! - `ml_features` (data goes to machine-learning services).
//!
//! A withheld feature is listed as neither available nor enabled, and the totals
//! count what is left; other tenants keep everyone's gate.

use tg_feature_gate::{FeatureList, Switches, Tier};

/// What the tenant's policy withholds.
pub const WITHHELD: [&str; 3] = [
    "multi_region_replication",
    "automatic_failover",
    "ml_features",
];

/// Every catalog feature with its state under the tenant's policy.
pub fn list_features(tier: Tier, config: impl Into<Switches>) -> FeatureList {
    let mut list = tg_feature_gate::list_features(tier, config);
    for f in &mut list.features {
        if WITHHELD.contains(&f.name) {
            f.available = false;
            f.enabled = false;
        }
    }
    let count = |on: fn(&tg_feature_gate::FeatureState) -> bool| {
        list.features.iter().filter(|f| on(f)).count() as u32
    };
    list.total_enabled = count(|f| f.enabled);
    list.total_available = count(|f| f.available);
    list
}

/// Whether one feature is on under the tenant's policy; `None` for a name the
/// catalog does not have.
pub fn is_enabled(tier: Tier, config: impl Into<Switches>, feature: &str) -> Option<bool> {
    tg_feature_gate::is_enabled(tier, config, feature).map(|on| on && !WITHHELD.contains(&feature))
}

#[cfg(target_arch = "wasm32")]
mod component {
    use tg_feature_gate::component::{FeatureList, Guest, TenantContext, parse, tier, to_wit};

    struct Policy;

    impl Guest for Policy {
        fn list_features(tenant: TenantContext, config: String) -> FeatureList {
            to_wit(super::list_features(tier(tenant.tier), parse(&config)))
        }

        fn is_enabled(tenant: TenantContext, config: String, feature: String) -> Option<bool> {
            super::is_enabled(tier(tenant.tier), parse(&config), &feature)
        }
    }

    tg_feature_gate::component::export!(Policy);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Everything switched on that a switch exists for.
    fn everything_on() -> Value {
        json!({
            "security": {"enable_rls": true, "encryption_at_rest": true, "encryption_in_transit": true,
                         "enable_audit_log": true, "require_mfa": true, "enable_column_encryption": true,
                         "allowed_ips": ["10.0.0.0/8"]},
            "backup": {"enabled": true, "compress_backups": true, "enable_pitr": true, "encrypt_backups": true},
            "performance": {"enable_query_optimization": true, "collect_query_stats": true,
                            "enable_adaptive_indexing": true, "enable_result_caching": true},
            "replication": {"enabled": true, "enable_auto_failover": true},
            "custom_settings": {"feature.ml_features": true}
        })
    }

    #[test]
    fn the_policy_withholds_what_everyones_gate_allows() {
        let config = everything_on();
        let everyone = tg_feature_gate::list_features(Tier::Enterprise, &config);
        let policy = list_features(Tier::Enterprise, &config);
        for name in WITHHELD {
            let on = |l: &FeatureList| l.features.iter().find(|f| f.name == name).unwrap().enabled;
            assert!(on(&everyone), "{name}");
            assert!(!on(&policy), "{name}");
            assert_eq!(
                tg_feature_gate::is_enabled(Tier::Enterprise, &config, name),
                Some(true)
            );
            assert_eq!(is_enabled(Tier::Enterprise, &config, name), Some(false));
        }
        assert_eq!(policy.total_enabled, everyone.total_enabled - 3);
        assert_eq!(policy.total_available, everyone.total_available - 3);
        // The rest is everyone's gate, unchanged.
        assert_eq!(
            is_enabled(Tier::Enterprise, &config, "audit_logging"),
            Some(true)
        );
        assert_eq!(
            is_enabled(Tier::Basic, &config, "audit_logging"),
            tg_feature_gate::is_enabled(Tier::Basic, &config, "audit_logging")
        );
        assert_eq!(
            is_enabled(Tier::Enterprise, &config, "no_such_feature"),
            None
        );
    }
}
