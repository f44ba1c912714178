//! Feature gating: the feature catalog by tier, and each feature's state for a
//! tenant derived from its tier and its configuration. Plain Rust, unit-tested
//! natively, with a thin Wasm component shell.
#![deny(missing_docs)]

#[cfg(all(target_arch = "wasm32", feature = "bindings"))]
pub mod component;
mod switches;

pub use switches::Switches;

/// Service tier; each tier includes every feature of the tiers below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Entry tier.
    Basic,
    /// Adds analytics, stronger authentication and recovery features.
    Pro,
    /// Adds machine learning, multi-region and data-protection features.
    Enterprise,
}

impl serde::Serialize for Tier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Tier {
    /// The name the API uses (`Basic`, `Pro`, `Enterprise`).
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Basic => "Basic",
            Tier::Pro => "Pro",
            Tier::Enterprise => "Enterprise",
        }
    }
}

/// What switches a feature on, once the tenant's tier includes it.
#[derive(Debug, Clone, Copy)]
enum Switch {
    /// A boolean field of the configuration (JSON Pointer).
    Field(&'static str),
    /// Two boolean fields that must both be true.
    Both(&'static str, &'static str),
    /// A list field of the configuration that is not empty.
    NonEmpty(&'static str),
    /// Opt-in: `custom_settings["feature.<name>"] == true`.
    OptIn,
}

/// One entry of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct CatalogEntry {
    /// Feature name as the API reports it.
    pub name: &'static str,
    /// What the feature does.
    pub description: &'static str,
    /// Lowest tier that includes the feature.
    pub tier_required: Tier,
    switch: Switch,
}

const fn entry(
    name: &'static str,
    description: &'static str,
    tier_required: Tier,
    switch: Switch,
) -> CatalogEntry {
    CatalogEntry {
        name,
        description,
        tier_required,
        switch,
    }
}

use Switch::{Both, Field, NonEmpty, OptIn};
use Tier::{Basic, Enterprise, Pro};

/// The feature catalog, lowest tier first.
pub const CATALOG: &[CatalogEntry] = &[
    entry(
        "row_level_security",
        "Row-level security for data isolation",
        Basic,
        Field("/security/enable_rls"),
    ),
    entry(
        "encryption_at_rest",
        "Data encryption at rest",
        Basic,
        Field("/security/encryption_at_rest"),
    ),
    entry(
        "encryption_in_transit",
        "Encrypted connections for all client and replica traffic",
        Basic,
        Field("/security/encryption_in_transit"),
    ),
    entry(
        "audit_logging",
        "Audit log of data access and administrative actions",
        Basic,
        Field("/security/enable_audit_log"),
    ),
    entry(
        "automated_backups",
        "Scheduled automatic backups",
        Basic,
        Field("/backup/enabled"),
    ),
    entry(
        "backup_compression",
        "Compressed backup storage",
        Basic,
        Field("/backup/compress_backups"),
    ),
    entry(
        "query_optimization",
        "Cost-based query optimizer",
        Basic,
        Field("/performance/enable_query_optimization"),
    ),
    entry(
        "advanced_analytics",
        "Advanced analytics and reporting capabilities",
        Pro,
        Field("/performance/collect_query_stats"),
    ),
    entry(
        "multi_factor_auth",
        "Multi-factor authentication requirement",
        Pro,
        Field("/security/require_mfa"),
    ),
    entry(
        "point_in_time_recovery",
        "Restore to any point within the PITR window",
        Pro,
        Field("/backup/enable_pitr"),
    ),
    entry(
        "adaptive_indexing",
        "Indexes created automatically from query patterns",
        Pro,
        Field("/performance/enable_adaptive_indexing"),
    ),
    entry(
        "result_caching",
        "Query result cache",
        Pro,
        Field("/performance/enable_result_caching"),
    ),
    entry(
        "backup_encryption",
        "Encryption of backup data",
        Pro,
        Field("/backup/encrypt_backups"),
    ),
    entry(
        "ml_features",
        "Machine learning and AI features",
        Enterprise,
        OptIn,
    ),
    entry(
        "column_encryption",
        "Encryption of selected columns",
        Enterprise,
        Field("/security/enable_column_encryption"),
    ),
    entry(
        "multi_region_replication",
        "Replication to other regions",
        Enterprise,
        Field("/replication/enabled"),
    ),
    entry(
        "automatic_failover",
        "Automatic promotion of a replica on failure",
        Enterprise,
        Both("/replication/enabled", "/replication/enable_auto_failover"),
    ),
    entry(
        "ip_allowlisting",
        "Client access restricted to listed networks",
        Enterprise,
        NonEmpty("/security/allowed_ips"),
    ),
];

/// One feature as seen by one tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeatureState {
    /// Feature name.
    pub name: &'static str,
    /// The tenant's tier includes the feature and its configuration switches it on.
    pub enabled: bool,
    /// The tenant's tier includes the feature.
    pub available: bool,
    /// What the feature does.
    pub description: &'static str,
    /// Lowest tier that includes the feature.
    pub tier_required: Tier,
}

/// The catalog as seen by one tenant, with computed totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureList {
    /// Every catalog feature, catalog order.
    pub features: Vec<FeatureState>,
    /// Features with `enabled` set.
    pub total_enabled: u32,
    /// Features with `available` set.
    pub total_available: u32,
}

impl CatalogEntry {
    /// Whether the tenant's tier includes this feature.
    pub fn available(&self, tier: Tier) -> bool {
        tier >= self.tier_required
    }
}

/// Every catalog feature with its state for a tenant of `tier` whose
/// configuration has these switches (a [`Switches`], or a `&Value` of the
/// whole configuration).
pub fn list_features(tier: Tier, config: impl Into<Switches>) -> FeatureList {
    let switches = config.into();
    let features: Vec<FeatureState> = CATALOG
        .iter()
        .enumerate()
        .map(|(i, e)| FeatureState {
            name: e.name,
            enabled: e.available(tier) && switches.on(i),
            available: e.available(tier),
            description: e.description,
            tier_required: e.tier_required,
        })
        .collect();
    let count = |f: fn(&FeatureState) -> bool| features.iter().filter(|s| f(s)).count() as u32;
    FeatureList {
        total_enabled: count(|s| s.enabled),
        total_available: count(|s| s.available),
        features,
    }
}

/// Whether one feature is on; `None` for a name the catalog does not have.
pub fn is_enabled(tier: Tier, config: impl Into<Switches>, feature: &str) -> Option<bool> {
    let switches = config.into();
    CATALOG
        .iter()
        .position(|e| e.name == feature)
        .map(|i| CATALOG[i].available(tier) && switches.on(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn defaults() -> Value {
        tg_validator::shared().default_config().clone()
    }

    #[test]
    fn catalog_names_are_unique_and_every_switch_points_at_a_real_field() {
        let d = defaults();
        let mut names: Vec<&str> = CATALOG.iter().map(|e| e.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len());
        for e in CATALOG {
            let pointers: Vec<&str> = match e.switch {
                Field(p) | NonEmpty(p) => vec![p],
                Both(a, b) => vec![a, b],
                OptIn => vec![],
            };
            for p in pointers {
                assert!(d.pointer(p).is_some(), "{} -> {p}", e.name);
            }
        }
    }

    #[test]
    fn enterprise_defaults_match_the_spec_totals() {
        let list = list_features(Enterprise, &defaults());
        assert_eq!(list.features.len(), CATALOG.len());
        assert_eq!(list.total_available, 18);
        assert_eq!(list.total_enabled, 12);
        let get = |n: &str| list.features.iter().find(|f| f.name == n).unwrap().clone();
        // The five entries the spec shows, as it shows them.
        assert_eq!(
            (
                get("advanced_analytics").enabled,
                get("advanced_analytics").tier_required
            ),
            (true, Pro)
        );
        assert_eq!(
            (get("ml_features").enabled, get("ml_features").available),
            (false, true)
        );
        assert!(get("row_level_security").enabled);
        assert!(get("encryption_at_rest").enabled);
        assert_eq!(
            (
                get("multi_factor_auth").enabled,
                get("multi_factor_auth").tier_required
            ),
            (false, Pro)
        );
    }

    #[test]
    fn lower_tiers_see_fewer_features() {
        let d = defaults();
        let basic = list_features(Basic, &d);
        let pro = list_features(Pro, &d);
        assert_eq!(basic.total_available, 7);
        assert_eq!(pro.total_available, 13);
        assert!(basic.features.iter().all(|f| f.available || !f.enabled));
        assert_eq!(is_enabled(Basic, &d, "advanced_analytics"), Some(false));
        assert_eq!(is_enabled(Pro, &d, "advanced_analytics"), Some(true));
        assert_eq!(is_enabled(Pro, &d, "no_such_feature"), None);
    }

    #[test]
    fn configuration_switches_features() {
        let mut c = defaults();
        c["security"]["require_mfa"] = json!(true);
        c["replication"]["enabled"] = json!(true);
        c["security"]["allowed_ips"] = json!(["10.0.0.0/8"]);
        c["custom_settings"]["feature.ml_features"] = json!(true);
        c["security"]["enable_rls"] = json!(false);
        for name in [
            "multi_factor_auth",
            "multi_region_replication",
            "automatic_failover",
            "ip_allowlisting",
            "ml_features",
        ] {
            assert_eq!(is_enabled(Enterprise, &c, name), Some(true), "{name}");
        }
        assert_eq!(
            is_enabled(Enterprise, &c, "row_level_security"),
            Some(false)
        );
        // A Pro tenant cannot switch on an Enterprise feature through its config.
        assert_eq!(is_enabled(Pro, &c, "ml_features"), Some(false));
        c["replication"]["enable_auto_failover"] = json!(false);
        assert_eq!(
            is_enabled(Enterprise, &c, "automatic_failover"),
            Some(false)
        );
    }
}
