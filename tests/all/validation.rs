//! Validation through the gateway: every rule both ways, the spec's wording, bad
//! JSON, wrong types, unknown fields; and a rejected update writes nothing.

use crate::harness::Gateway;
use serde_json::Value;

const PATH: &str = "/api/v1/tenants/Tenant1/config";

/// PUTs `body`, expects 400 and returns the error body; checks nothing changed.
fn rejected(gw: &Gateway, body: &str) -> Value {
    let before = gw.get(PATH).body;
    let r = gw.put_json(PATH, body);
    assert_eq!(r.status, 400, "{body} -> {}", r.body);
    let b = r.json();
    assert_eq!(b["error"], "Bad Request", "{b}");
    assert_eq!(b["code"], 400, "{b}");
    assert_eq!(b["tenant_id"], gw.get(PATH).json()["tenant_id"], "{b}");
    assert_eq!(
        gw.get(PATH).body,
        before,
        "a rejected update changed the configuration"
    );
    b
}

fn accepted(gw: &Gateway, body: &str) {
    let r = gw.put_json(PATH, body);
    assert_eq!(r.status, 200, "{body} -> {}", r.body);
}

fn paths(b: &Value) -> Vec<String> {
    b["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|v| v["path"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cache_size_limit_uses_spec_message() {
    let gw = Gateway::start();
    let b = rejected(&gw, r#"{"performance":{"cache_size_mb":200000}}"#);
    assert_eq!(b["message"], "Cache size exceeds maximum (100 GB)");
    assert_eq!(paths(&b), ["$.performance.cache_size_mb"]);
    accepted(&gw, r#"{"performance":{"cache_size_mb":100000}}"#);
}

#[test]
fn parallel_workers_limit() {
    let gw = Gateway::start();
    let b = rejected(&gw, r#"{"performance":{"max_parallel_workers":129}}"#);
    assert_eq!(b["message"], "Parallel workers exceed maximum (128)");
    rejected(&gw, r#"{"performance":{"max_parallel_workers":0}}"#);
    accepted(&gw, r#"{"performance":{"max_parallel_workers":128}}"#);
}

#[test]
fn password_complexity_range_uses_spec_message() {
    let gw = Gateway::start();
    for bad in ["0", "6"] {
        let b = rejected(
            &gw,
            &format!(r#"{{"security":{{"password_complexity":{bad}}}}}"#),
        );
        assert_eq!(b["message"], "Password complexity must be between 1 and 5");
    }
    accepted(&gw, r#"{"security":{"password_complexity":1}}"#);
    accepted(&gw, r#"{"security":{"password_complexity":5}}"#);
}

#[test]
fn backup_retention_must_cover_pitr_retention() {
    let gw = Gateway::start();
    let b = rejected(&gw, r#"{"backup":{"retention_days":6}}"#);
    assert_eq!(
        b["message"],
        "Backup retention must be >= PITR retention period"
    );
    // Checked against the stored values: lower PITR first, then retention is fine.
    accepted(&gw, r#"{"backup":{"pitr_retention_days":3}}"#);
    accepted(&gw, r#"{"backup":{"retention_days":6}}"#);
    rejected(&gw, r#"{"backup":{"pitr_retention_days":7}}"#);
}

#[test]
fn hipaa_requirements() {
    let gw = Gateway::start();
    let b = rejected(
        &gw,
        r#"{"compliance":{"hipaa":true},"security":{"encryption_at_rest":false}}"#,
    );
    assert_eq!(b["message"], "HIPAA compliance requires encryption at rest");
    let b = rejected(
        &gw,
        r#"{"compliance":{"hipaa":true},"security":{"enable_audit_log":false}}"#,
    );
    assert_eq!(b["message"], "HIPAA compliance requires audit logging");
    let b = rejected(
        &gw,
        r#"{"compliance":{"hipaa":true},"security":{"password_complexity":2}}"#,
    );
    assert_eq!(
        b["message"],
        "HIPAA compliance requires password complexity of at least 3"
    );
    accepted(&gw, r#"{"compliance":{"hipaa":true}}"#);
    // With HIPAA stored, a later update that breaks it is rejected too.
    let b = rejected(&gw, r#"{"security":{"encryption_at_rest":false}}"#);
    assert!(b["message"].as_str().unwrap().contains("HIPAA"), "{b}");
}

#[test]
fn pci_dss_requirements() {
    let gw = Gateway::start();
    let b = rejected(
        &gw,
        r#"{"compliance":{"pci_dss":true},"security":{"audit_retention_days":30}}"#,
    );
    assert_eq!(
        b["message"],
        "PCI-DSS compliance requires audit retention of at least 90 days"
    );
    let b = rejected(
        &gw,
        r#"{"compliance":{"pci_dss":true},"security":{"enable_audit_log":false,"encryption_at_rest":false}}"#,
    );
    assert_eq!(
        paths(&b),
        [
            "$.security.enable_audit_log",
            "$.security.encryption_at_rest"
        ]
    );
    accepted(
        &gw,
        r#"{"compliance":{"pci_dss":true},"security":{"audit_retention_days":90}}"#,
    );
}

#[test]
fn gdpr_requirements_and_the_spec_example_that_breaks_them() {
    let gw = Gateway::start();
    // The spec's first PUT example turns GDPR on without right-to-be-forgotten or
    // anonymization; its own GDPR rule forbids that, and the rule wins.
    let b = rejected(
        &gw,
        r#"{"performance":{"cache_size_mb":2048,"max_parallel_workers":16},"security":{"require_mfa":true,"session_timeout_mins":60},"compliance":{"gdpr":true,"data_residency":["EU"]}}"#,
    );
    assert_eq!(
        paths(&b),
        [
            "$.compliance.enable_rtbf",
            "$.compliance.enable_anonymization"
        ]
    );
    let b = rejected(
        &gw,
        r#"{"compliance":{"gdpr":true,"enable_rtbf":true,"enable_anonymization":true,"data_residency":["US"]}}"#,
    );
    assert_eq!(
        b["message"],
        "GDPR compliance requires data residency to include EU"
    );
    accepted(
        &gw,
        r#"{"compliance":{"gdpr":true,"enable_rtbf":true,"enable_anonymization":true,"data_residency":["EU"]}}"#,
    );
}

#[test]
fn malformed_json_wrong_types_and_unknown_fields_name_the_path() {
    let gw = Gateway::start();
    let b = rejected(&gw, r#"{"performance":{"cache_size_mb":2048"#);
    assert_eq!(paths(&b), ["$"]);
    assert!(
        b["message"].as_str().unwrap().starts_with("Malformed JSON"),
        "{b}"
    );
    assert!(b["message"].as_str().unwrap().contains("line 1"), "{b}");

    let b = rejected(
        &gw,
        r#"{"performance":{"cache_size_mb":"2048"},"security":{"require_mfa":"yes"}}"#,
    );
    assert_eq!(
        paths(&b),
        ["$.performance.cache_size_mb", "$.security.require_mfa"]
    );
    assert_eq!(
        b["details"][0]["message"],
        "`performance.cache_size_mb` must be an integer"
    );

    let b = rejected(&gw, r#"{"performance":{"cache_size":1},"tuning":{}}"#);
    let mut p = paths(&b);
    p.sort();
    assert_eq!(p, ["$.performance.cache_size", "$.tuning"]);

    let b = rejected(
        &gw,
        r#"{"security":{"allowed_ips":["10.0.0.0/8","999.1.1.1/8"]}}"#,
    );
    assert_eq!(paths(&b), ["$.security.allowed_ips[1]"]);
    let b = rejected(&gw, r#"{"security":{"encryption_algorithm":"ROT13"}}"#);
    assert_eq!(paths(&b), ["$.security.encryption_algorithm"]);
    rejected(&gw, "[]");
    rejected(&gw, "{}");
    rejected(&gw, r#"{"tenant_id":"someone-else"}"#);
}
