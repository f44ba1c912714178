//! Typed view of a whole tenant configuration, used by the compliance rules.
//!
//! The schema is the source of truth; a unit test checks that this struct and the
//! schema describe the same fields with the same types.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A whole tenant configuration (the sections; `tenant_id` and `updated_at` are
/// added by the API that stores it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TenantConfig {
    pub performance: PerformanceConfig,
    pub security: SecurityConfig,
    pub backup: BackupConfig,
    pub replication: ReplicationConfig,
    pub compliance: ComplianceConfig,
    pub custom_settings: Map<String, Value>,
}

/// Query execution and caching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct PerformanceConfig {
    pub cache_size_mb: u32,
    pub max_parallel_workers: u32,
    pub enable_query_optimization: bool,
    pub enable_result_caching: bool,
    pub enable_adaptive_indexing: bool,
    pub query_timeout_secs: u32,
    pub query_memory_limit_mb: u32,
    pub collect_query_stats: bool,
}

/// Authentication, authorization and encryption policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SecurityConfig {
    pub encryption_at_rest: bool,
    pub encryption_in_transit: bool,
    pub encryption_algorithm: String,
    pub kms_key_id: Option<String>,
    pub enable_rls: bool,
    pub enable_column_encryption: bool,
    pub password_complexity: u8,
    pub session_timeout_mins: u32,
    pub require_mfa: bool,
    pub allowed_ips: Vec<String>,
    pub enable_audit_log: bool,
    pub audit_retention_days: u32,
}

/// Backup schedule and retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct BackupConfig {
    pub enabled: bool,
    pub frequency_hours: u32,
    pub retention_days: u32,
    pub full_backup_interval: u32,
    pub destinations: Vec<BackupDestination>,
    pub enable_pitr: bool,
    pub pitr_retention_days: u32,
    pub encrypt_backups: bool,
    pub compress_backups: bool,
}

/// Where backups are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct BackupDestination {
    pub destination_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_id: Option<String>,
}

/// Multi-region replication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ReplicationConfig {
    pub enabled: bool,
    pub mode: String,
    pub regions: Vec<String>,
    pub consistency_level: String,
    pub max_lag_seconds: u32,
    pub enable_auto_failover: bool,
    pub failover_priority: Vec<String>,
}

/// Regulatory requirements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ComplianceConfig {
    pub gdpr: bool,
    pub hipaa: bool,
    pub soc2: bool,
    pub pci_dss: bool,
    pub data_residency: Vec<String>,
    pub enable_retention_policies: bool,
    pub default_retention_days: u32,
    pub enable_anonymization: bool,
    pub enable_rtbf: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The struct and the schema name the same fields with compatible types:
    /// the schema's defaults deserialize (unknown or missing fields would fail)
    /// and serialize back unchanged.
    #[test]
    fn struct_matches_schema() {
        let defaults = crate::shared().default_config().clone();
        let typed: TenantConfig = serde_json::from_value(defaults.clone()).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), defaults);
        let schema: Value = serde_json::from_str(crate::CONFIG_SCHEMA).unwrap();
        let section_fields = |name: &str| -> Vec<String> {
            let mut v: Vec<String> = schema["$defs"][name]["properties"]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            v.sort();
            v
        };
        let dest = BackupDestination {
            destination_type: "s3".into(),
            bucket: Some("b".into()),
            region: Some("r".into()),
            path: Some("p".into()),
            credentials_id: Some("c".into()),
        };
        let mut dest_fields: Vec<String> = serde_json::to_value(dest)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        dest_fields.sort();
        assert_eq!(dest_fields, section_fields("backup_destination"));
    }
}
