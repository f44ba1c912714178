//! Tenant configuration validation: the JSON Schemas in `schemas/` plus the
//! cross-field compliance rules, as plain Rust (unit-tested natively) with a thin
//! Wasm component shell.
#![deny(missing_docs)]

mod model;
mod rules;
mod schema;

#[cfg(all(target_arch = "wasm32", feature = "bindings"))]
pub mod component;

use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::LazyLock;
use tg_document::{Sections, json_text};

pub use model::TenantConfig;

/// The tenant configuration schema (JSON Schema 2020-12).
pub const CONFIG_SCHEMA: &str = include_str!("../../../schemas/tenant-config.schema.json");
/// The partial-update schema (JSON Schema 2020-12); refers to [`CONFIG_SCHEMA`].
pub const PATCH_SCHEMA: &str = include_str!("../../../schemas/tenant-config-patch.schema.json");

/// The Hono tenant information schema (JSON Schema 2020-12).
pub const HONO_TENANT_SCHEMA: &str = include_str!("../../../schemas/hono-tenant.schema.json");

/// Sections of a configuration document, in their canonical order.
pub const SECTIONS: [&str; 6] = [
    "performance",
    "security",
    "backup",
    "replication",
    "compliance",
    "custom_settings",
];

/// One problem found in a document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// JSONPath of the offending value (`$` for the document itself).
    pub path: String,
    /// What is wrong, in the API's wording where it has one.
    pub message: String,
}

impl Violation {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A partial update applied to a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOutcome {
    /// The whole configuration after the update, as compact JSON text.
    pub config: String,
    /// Every leaf field the update set, dotted, in the order given.
    pub updated_fields: Vec<String>,
}

/// Validates configuration documents. Schemas are compiled once, in [`Validator::new`].
pub struct Validator {
    schemas: schema::Schemas,
    defaults: Value,
    /// `defaults` as JSON text.
    defaults_text: String,
}

static SHARED: LazyLock<Validator> = LazyLock::new(Validator::new);

/// The process-wide validator: schemas compiled on first use, then reused.
pub fn shared() -> &'static Validator {
    &SHARED
}

impl Default for Validator {
    fn default() -> Self {
        Self::new()
    }
}

impl Validator {
    /// Compiles the embedded schemas and derives the default configuration from them.
    ///
    /// # Panics
    /// Only if the schemas compiled into the crate are broken, which the unit tests rule out.
    pub fn new() -> Self {
        let schemas = schema::Schemas::compile().expect("embedded schemas compile");
        let defaults = schemas.defaults();
        let defaults_text = json_text(&defaults);
        Self {
            schemas,
            defaults,
            defaults_text,
        }
    }

    /// The configuration of a tenant that never changed anything: every default.
    pub fn default_config(&self) -> &Value {
        &self.defaults
    }

    /// [`Validator::default_config`] as JSON text.
    pub fn default_config_text(&self) -> &str {
        &self.defaults_text
    }

    /// Validates a whole configuration document; fields it leaves out take their
    /// defaults. Returns the complete configuration.
    pub fn validate_config(&self, text: &str) -> Result<Value, Vec<Violation>> {
        let doc = parse(text)?;
        let mut violations = self.schemas.check_config(&doc);
        if !violations.is_empty() {
            return Err(violations);
        }
        let merged = match doc {
            Value::Object(doc) => self.merged(None, doc, &mut Vec::new())?,
            _ => self.defaults_text.clone(),
        };
        let config: Value = serde_json::from_str(&merged).map_err(unreadable)?;
        violations.extend(rules::check(TenantConfig::deserialize(&config)));
        if violations.is_empty() {
            Ok(config)
        } else {
            Err(violations)
        }
    }

    /// Validates a partial update, applies it to `current` (or to the defaults) and
    /// checks every rule on the result. All violations are returned, not only the first.
    ///
    /// Only the sections the update names are parsed and written again; the
    /// others are carried as the text they were stored as.
    pub fn apply_patch(
        &self,
        current: Option<&str>,
        patch: &str,
    ) -> Result<PatchOutcome, Vec<Violation>> {
        let mut patch = parse(patch)?;
        whole_numbers_as_integers(&mut patch);
        let violations = self.schemas.check_patch(&patch);
        if !violations.is_empty() {
            return Err(violations);
        }
        let mut updated_fields = Vec::new();
        let config = match patch {
            Value::Object(patch) => self.merged(current, patch, &mut updated_fields)?,
            _ => String::new(),
        };
        if updated_fields.is_empty() {
            return Err(vec![Violation::new(
                "$",
                "The update sets no configuration field",
            )]);
        }
        let violations = rules::check(serde_json::from_str(&config));
        if violations.is_empty() {
            Ok(PatchOutcome {
                config,
                updated_fields,
            })
        } else {
            Err(violations)
        }
    }
}

impl Validator {
    /// `patch` applied to `current` (or to the defaults), as JSON text, each
    /// leaf set recorded in `updated`. Only the sections the update names
    /// are parsed and written again; the others are carried as the text they
    /// were stored as. A stored document's read-only fields (`tenant_id`,
    /// `updated_at`) are left out: the result holds the sections only.
    fn merged(
        &self,
        current: Option<&str>,
        patch: Map<String, Value>,
        updated: &mut Vec<String>,
    ) -> Result<String, Vec<Violation>> {
        let mut config =
            Sections::read(current.unwrap_or(&self.defaults_text)).map_err(unreadable)?;
        for (section, fields) in patch {
            let Value::Object(fields) = fields else {
                // Top-level scalars (tenant_id, updated_at) are read-only
                // (the schema refuses them): kept as stored.
                continue;
            };
            let mut target: Map<String, Value> = match config.get(&section) {
                Some(text) => serde_json::from_str(text.get()).map_err(unreadable)?,
                None => Map::new(),
            };
            merge_section(&section, &mut target, fields, updated);
            let text = serde_json::value::to_raw_value(&target).map_err(unreadable)?;
            config.set(&section, text);
        }
        Ok(json_text(&config))
    }
}

impl Validator {
    /// Validates a Hono tenant information document: its schema, and one adapter
    /// entry per `type`. Members the schema does not name are allowed and kept.
    pub fn validate_tenant_info(&self, text: &str) -> Result<Value, Vec<Violation>> {
        let doc = parse(text)?;
        let mut violations = self.schemas.check_tenant_info(&doc);
        if let Some(adapters) = doc.get("adapters").and_then(Value::as_array) {
            let mut seen = std::collections::HashSet::new();
            for (i, adapter) in adapters.iter().enumerate() {
                if let Some(kind) = adapter.get("type").and_then(Value::as_str)
                    && !seen.insert(kind)
                {
                    violations.push(Violation::new(
                        format!("$.adapters[{i}].type"),
                        format!("Adapter type '{kind}' is configured more than once"),
                    ));
                }
            }
        }
        if violations.is_empty() {
            Ok(doc)
        } else {
            Err(violations)
        }
    }
}

/// Writes the whole numbers of an update's fields as integers (`2048.0` as
/// `2048`): JSON and JSON Schema do not tell them apart, so neither do we.
/// `custom_settings` values are the tenant's own and kept as written.
fn whole_numbers_as_integers(patch: &mut Value) {
    fn walk(v: &mut Value) {
        match v {
            Value::Number(n) if !n.is_i64() && !n.is_u64() => {
                if let Some(f) = n.as_f64()
                    && f.fract() == 0.0
                    && f.abs() < 9.0e15
                {
                    // Exact: |f| is below 2^53.
                    *v = Value::Number(serde_json::Number::from(f as i64));
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            Value::Object(members) => members.values_mut().for_each(walk),
            _ => {}
        }
    }
    if let Value::Object(sections) = patch {
        for (name, section) in sections.iter_mut() {
            if name != "custom_settings" {
                walk(section);
            }
        }
    }
}

/// A stored configuration that cannot be read, as a violation.
fn unreadable(e: serde_json::Error) -> Vec<Violation> {
    vec![Violation::new(
        "$",
        format!("Stored configuration is unreadable: {e}"),
    )]
}

fn parse(text: &str) -> Result<Value, Vec<Violation>> {
    serde_json::from_str(text)
        .map_err(|e| vec![Violation::new("$", format!("Malformed JSON: {e}"))])
}

/// Applies an update's fields to one section, recording each leaf set. Fields
/// merge one by one; in `custom_settings` a `null` value removes the key;
/// arrays and scalars are replaced whole.
fn merge_section(
    section: &str,
    target: &mut Map<String, Value>,
    fields: Map<String, Value>,
    updated: &mut Vec<String>,
) {
    let removes_nulls = section == "custom_settings";
    for (field, value) in fields {
        // Not `format!`: its formatting machinery (a dynamic write per piece)
        // cost more than the copying.
        let mut path = String::with_capacity(section.len() + 1 + field.len());
        path.push_str(section);
        path.push('.');
        path.push_str(&field);
        updated.push(path);
        if removes_nulls && value.is_null() {
            target.shift_remove(&field);
        } else {
            target.insert(field, value);
        }
    }
}

/// Turns a JSON Pointer (`/security/allowed_ips/0`) into a JSONPath
/// (`$.security.allowed_ips[0]`).
pub(crate) fn json_path(pointer: &str) -> String {
    let mut out = String::from("$");
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&segment);
            out.push(']');
        } else if segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            out.push('.');
            out.push_str(&segment);
        } else {
            out.push_str("['");
            out.push_str(&segment.replace('\'', "\\'"));
            out.push_str("']");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An update's outcome, parsed.
    fn config(outcome: &PatchOutcome) -> Value {
        serde_json::from_str(&outcome.config).unwrap()
    }

    fn messages(v: &[Violation]) -> Vec<&str> {
        v.iter().map(|v| v.message.as_str()).collect()
    }

    #[test]
    fn defaults_hold_every_spec_default() {
        let d = shared().default_config();
        assert_eq!(d["performance"]["cache_size_mb"], 1024);
        assert_eq!(d["performance"]["max_parallel_workers"], 8);
        assert_eq!(d["performance"]["query_memory_limit_mb"], 4096);
        assert_eq!(d["security"]["encryption_algorithm"], "AES-256-GCM");
        assert_eq!(d["security"]["kms_key_id"], Value::Null);
        assert_eq!(d["security"]["password_complexity"], 3);
        assert_eq!(d["security"]["allowed_ips"], json!([]));
        assert_eq!(d["backup"]["retention_days"], 30);
        assert_eq!(d["backup"]["pitr_retention_days"], 7);
        assert_eq!(d["replication"]["mode"], "async");
        assert_eq!(d["replication"]["consistency_level"], "eventual");
        assert_eq!(d["compliance"]["default_retention_days"], 365);
        assert_eq!(d["custom_settings"], json!({}));
        let sections: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(sections, SECTIONS);
    }

    #[test]
    fn defaults_pass_every_rule() {
        let text = shared().default_config().to_string();
        assert!(shared().validate_config(&text).is_ok());
    }

    #[test]
    fn patch_lists_updated_fields_in_request_order() {
        let out = shared()
            .apply_patch(
                None,
                r#"{"performance":{"max_parallel_workers":16,"cache_size_mb":2048}}"#,
            )
            .unwrap();
        assert_eq!(
            out.updated_fields,
            [
                "performance.max_parallel_workers",
                "performance.cache_size_mb"
            ]
        );
        assert_eq!(config(&out)["performance"]["cache_size_mb"], 2048);
        assert_eq!(config(&out)["performance"]["query_timeout_secs"], 300);
    }

    #[test]
    fn patch_applies_to_current_not_defaults() {
        let current = shared()
            .apply_patch(None, r#"{"backup":{"retention_days":200}}"#)
            .unwrap()
            .config;
        let out = shared()
            .apply_patch(Some(&current), r#"{"backup":{"frequency_hours":12}}"#)
            .unwrap();
        assert_eq!(config(&out)["backup"]["retention_days"], 200);
        assert_eq!(config(&out)["backup"]["frequency_hours"], 12);
    }

    #[test]
    fn patch_applies_to_a_stored_document_with_read_only_fields() {
        let mut stored = shared().default_config().clone();
        stored["tenant_id"] = json!("550e8400-e29b-41d4-a716-446655440000");
        stored["updated_at"] = json!("2025-12-09T10:30:00Z");
        let out = shared()
            .apply_patch(
                Some(&stored.to_string()),
                r#"{"security":{"require_mfa":true}}"#,
            )
            .unwrap();
        let out = config(&out);
        assert_eq!(out["security"]["require_mfa"], true);
        let keys: Vec<&str> = out
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, SECTIONS, "sections keep their order");
    }

    /// Sections the update does not name are carried as they were stored
    /// (their spacing and number spelling too); the named ones are read and
    /// written again; a stored section that is not an object is refused.
    #[test]
    fn untouched_sections_keep_their_stored_text() {
        let text = shared().default_config_text();
        let spaced = text.replace(r#""mode":"async""#, r#""mode" : "async""#);
        assert_ne!(spaced, text);
        let stored = spaced.replace(r#""cache_size_mb":1024"#, r#""cache_size_mb" : 1024"#);
        let out = shared()
            .apply_patch(
                Some(&stored),
                r#"{"performance":{"max_parallel_workers":16}}"#,
            )
            .unwrap();
        assert!(out.config.contains(r#""mode" : "async""#), "{}", out.config);
        assert!(
            out.config.contains(r#""cache_size_mb":1024,"#),
            "{}",
            out.config
        );
        let mut expected = shared().default_config().clone();
        expected["performance"]["max_parallel_workers"] = json!(16);
        assert_eq!(config(&out), expected);

        let broken = text.replacen(r#""security":{"#, r#""security":5,"x":{"#, 1);
        let err = shared()
            .apply_patch(Some(&broken), r#"{"security":{"require_mfa":true}}"#)
            .unwrap_err();
        assert!(
            err[0]
                .message
                .starts_with("Stored configuration is unreadable"),
            "{err:?}"
        );
        let err = shared()
            .apply_patch(Some(&broken), r#"{"backup":{"frequency_hours":12}}"#)
            .unwrap_err();
        assert!(
            err[0].message.starts_with("Configuration is incomplete"),
            "{err:?}"
        );
    }

    #[test]
    fn cache_over_100_gb_uses_spec_wording() {
        let err = shared()
            .apply_patch(None, r#"{"performance":{"cache_size_mb":200000}}"#)
            .unwrap_err();
        assert_eq!(
            err,
            [Violation::new(
                "$.performance.cache_size_mb",
                "Cache size exceeds maximum (100 GB)"
            )]
        );
        assert!(
            shared()
                .apply_patch(None, r#"{"performance":{"cache_size_mb":100000}}"#)
                .is_ok()
        );
    }

    #[test]
    fn workers_and_password_complexity_limits() {
        let err = shared()
            .apply_patch(None, r#"{"performance":{"max_parallel_workers":129}}"#)
            .unwrap_err();
        assert_eq!(messages(&err), ["Parallel workers exceed maximum (128)"]);
        for bad in [0, 6] {
            let err = shared()
                .apply_patch(
                    None,
                    &format!(r#"{{"security":{{"password_complexity":{bad}}}}}"#),
                )
                .unwrap_err();
            assert_eq!(
                messages(&err),
                ["Password complexity must be between 1 and 5"]
            );
        }
        assert!(
            shared()
                .apply_patch(None, r#"{"security":{"password_complexity":5}}"#)
                .is_ok()
        );
    }

    #[test]
    fn every_violation_is_reported_with_its_path() {
        let err = shared()
            .apply_patch(
                None,
                r#"{"performance":{"cache_size_mb":"big","query_timeout_secs":0,"nope":1},"extra":{}}"#,
            )
            .unwrap_err();
        let paths: Vec<&str> = err.iter().map(|v| v.path.as_str()).collect();
        assert!(paths.contains(&"$.performance.cache_size_mb"), "{err:?}");
        assert!(
            paths.contains(&"$.performance.query_timeout_secs"),
            "{err:?}"
        );
        assert!(paths.contains(&"$.performance.nope"), "{err:?}");
        assert!(paths.contains(&"$.extra"), "{err:?}");
        assert_eq!(err.len(), 4, "{err:?}");
    }

    #[test]
    fn malformed_json_is_a_violation_at_the_root() {
        let err = shared().apply_patch(None, "{\"performance\":").unwrap_err();
        assert_eq!(err[0].path, "$");
        assert!(err[0].message.starts_with("Malformed JSON"), "{err:?}");
    }

    #[test]
    fn empty_update_is_rejected() {
        assert!(shared().apply_patch(None, "{}").is_err());
        assert!(shared().apply_patch(None, r#"{"security":{}}"#).is_err());
    }

    #[test]
    fn custom_settings_merge_by_key_and_null_removes() {
        let first = shared()
            .apply_patch(None, r#"{"custom_settings":{"a":"1","b":{"x":true}}}"#)
            .unwrap();
        let out = shared()
            .apply_patch(
                Some(&first.config),
                r#"{"custom_settings":{"a":null,"c":3}}"#,
            )
            .unwrap();
        let after = config(&out);
        let keys: Vec<&str> = after["custom_settings"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["b", "c"]);
        assert_eq!(after["custom_settings"], json!({"b":{"x":true},"c":3}));
        assert_eq!(
            out.updated_fields,
            ["custom_settings.a", "custom_settings.c"]
        );
    }

    #[test]
    fn read_only_fields_cannot_be_patched() {
        let err = shared()
            .apply_patch(None, r#"{"tenant_id":"x","updated_at":"y"}"#)
            .unwrap_err();
        assert_eq!(err.len(), 2, "{err:?}");
    }

    #[test]
    fn validate_config_fills_defaults_and_checks_rules() {
        let ok = shared()
            .validate_config(r#"{"performance":{"cache_size_mb":10}}"#)
            .unwrap();
        assert_eq!(ok["performance"]["cache_size_mb"], 10);
        assert_eq!(ok["security"]["password_complexity"], 3);
        let err = shared()
            .validate_config(
                r#"{"compliance":{"hipaa":true},"security":{"enable_audit_log":false}}"#,
            )
            .unwrap_err();
        assert_eq!(messages(&err), ["HIPAA compliance requires audit logging"]);
    }

    #[test]
    fn json_path_forms() {
        assert_eq!(json_path(""), "$");
        assert_eq!(
            json_path("/security/allowed_ips/0"),
            "$.security.allowed_ips[0]"
        );
        assert_eq!(
            json_path("/custom_settings/a b"),
            "$.custom_settings['a b']"
        );
    }
}
