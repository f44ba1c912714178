//! The tenant configuration API as the spec describes it: GET, partial PUT, the
//! spec's examples, features, unknown tenants, ids by UUID or name.

use crate::harness::Gateway;
use serde_json::{Value, json};

/// Every default of the spec's five models, as its tables give them.
fn spec_defaults() -> Value {
    json!({
        "performance": {
            "cache_size_mb": 1024, "max_parallel_workers": 8, "enable_query_optimization": true,
            "enable_result_caching": true, "enable_adaptive_indexing": true, "query_timeout_secs": 300,
            "query_memory_limit_mb": 4096, "collect_query_stats": true
        },
        "security": {
            "encryption_at_rest": true, "encryption_in_transit": true, "encryption_algorithm": "AES-256-GCM",
            "kms_key_id": null, "enable_rls": true, "enable_column_encryption": false, "password_complexity": 3,
            "session_timeout_mins": 30, "require_mfa": false, "allowed_ips": [], "enable_audit_log": true,
            "audit_retention_days": 90
        },
        "backup": {
            "enabled": true, "frequency_hours": 24, "retention_days": 30, "full_backup_interval": 7,
            "destinations": [], "enable_pitr": true, "pitr_retention_days": 7, "encrypt_backups": true,
            "compress_backups": true
        },
        "replication": {
            "enabled": false, "mode": "async", "regions": [], "consistency_level": "eventual",
            "max_lag_seconds": 60, "enable_auto_failover": true, "failover_priority": []
        },
        "compliance": {
            "gdpr": false, "hipaa": false, "soc2": false, "pci_dss": false, "data_residency": [],
            "enable_retention_policies": false, "default_retention_days": 365, "enable_anonymization": false,
            "enable_rtbf": false
        },
        "custom_settings": {}
    })
}

fn without_meta(mut doc: Value) -> Value {
    let o = doc.as_object_mut().unwrap();
    o.remove("tenant_id");
    o.remove("updated_at");
    doc
}

#[test]
fn get_returns_every_spec_default() {
    let gw = Gateway::start();
    let r = gw.get("/api/v1/tenants/Tenant1/config");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    let id = doc["tenant_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 5);
    let updated = doc["updated_at"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(updated).is_ok(), "{updated}");
    assert_eq!(without_meta(doc), spec_defaults());
}

#[test]
fn tenant_id_accepts_uuid_or_name_in_any_case() {
    let gw = Gateway::start();
    let by_name = gw.get("/api/v1/tenants/tenant2/config").json();
    let id = by_name["tenant_id"].as_str().unwrap().to_owned();
    for path in [
        format!("/api/v1/tenants/{id}/config"),
        format!("/api/v1/tenants/{}/config", id.to_uppercase()),
        "/api/v1/tenants/TENANT2/config".to_owned(),
    ] {
        let r = gw.get(&path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.json()["tenant_id"], id.as_str(), "{path}");
    }
    let other = gw.get("/api/v1/tenants/Tenant1/config").json();
    assert_ne!(other["tenant_id"], by_name["tenant_id"]);
}

#[test]
fn partial_update_changes_only_given_fields() {
    let gw = Gateway::start();
    let before = gw.get("/api/v1/tenants/Tenant1/config").json();
    let r = gw.put_json(
        "/api/v1/tenants/Tenant1/config",
        r#"{"performance":{"cache_size_mb":2048,"max_parallel_workers":16}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(
        body["updated_fields"],
        json!([
            "performance.cache_size_mb",
            "performance.max_parallel_workers"
        ])
    );
    assert_eq!(
        body["message"],
        "Successfully updated 2 configuration field(s)"
    );
    assert_eq!(body["tenant_id"], before["tenant_id"]);
    let after = gw.get("/api/v1/tenants/Tenant1/config").json();
    assert_eq!(after["updated_at"], body["updated_at"]);
    let mut expected = without_meta(before);
    expected["performance"]["cache_size_mb"] = json!(2048);
    expected["performance"]["max_parallel_workers"] = json!(16);
    assert_eq!(without_meta(after), expected);
    // The other tenant is untouched.
    assert_eq!(
        without_meta(gw.get("/api/v1/tenants/Tenant2/config").json()),
        spec_defaults()
    );
}

#[test]
fn spec_example_1_performance_settings() {
    let gw = Gateway::start();
    let r = gw.put_json(
        "/api/v1/tenants/Tenant1/config",
        r#"{"performance":{"cache_size_mb":2048,"max_parallel_workers":16,"enable_adaptive_indexing":true}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    assert_eq!(
        b["message"],
        "Successfully updated 3 configuration field(s)"
    );
    assert_eq!(
        b["updated_fields"],
        json!([
            "performance.cache_size_mb",
            "performance.max_parallel_workers",
            "performance.enable_adaptive_indexing"
        ])
    );
}

#[test]
fn spec_example_2_enable_hipaa() {
    let gw = Gateway::start();
    let r = gw.put_json(
        "/api/v1/tenants/Tenant1/config",
        r#"{"security":{"encryption_at_rest":true,"enable_audit_log":true,"password_complexity":4,"require_mfa":true},"compliance":{"hipaa":true}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["message"],
        "Successfully updated 5 configuration field(s)"
    );
    let doc = gw.get("/api/v1/tenants/Tenant1/config").json();
    assert_eq!(doc["compliance"]["hipaa"], true);
    assert_eq!(doc["security"]["password_complexity"], 4);
    assert_eq!(doc["security"]["require_mfa"], true);
}

#[test]
fn spec_example_3_multi_region_replication() {
    let gw = Gateway::start();
    let body = r#"{"replication":{"enabled":true,"mode":"async","regions":["us-east-1","us-west-2","eu-west-1"],"consistency_level":"eventual","enable_auto_failover":true,"failover_priority":["us-east-1","us-west-2","eu-west-1"]}}"#;
    let r = gw.put_json("/api/v1/tenants/Tenant1/config", body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["updated_fields"].as_array().unwrap().len(), 6);
    let doc = gw.get("/api/v1/tenants/Tenant1/config").json();
    assert_eq!(
        doc["replication"]["regions"],
        json!(["us-east-1", "us-west-2", "eu-west-1"])
    );
    assert_eq!(doc["replication"]["max_lag_seconds"], 60);
    // Replication switches on the Enterprise replication features.
    let features = gw.get("/api/v1/tenants/Tenant1/features").json();
    let enabled = |name: &str| {
        features["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()["enabled"]
            .clone()
    };
    assert_eq!(enabled("multi_region_replication"), true);
    assert_eq!(enabled("automatic_failover"), true);
}

#[test]
fn spec_example_4_features_by_tier() {
    let gw = Gateway::start();
    let r = gw.get("/api/v1/tenants/Tenant1/features");
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    assert_eq!(
        b["tenant_id"],
        gw.get("/api/v1/tenants/Tenant1/config").json()["tenant_id"]
    );
    let features = b["features"].as_array().unwrap();
    assert_eq!(features.len(), 18);
    let count = |key: &str| features.iter().filter(|f| f[key] == true).count();
    assert_eq!(b["total_available"], count("available"));
    assert_eq!(b["total_enabled"], count("enabled"));
    assert_eq!(
        (b["total_enabled"].clone(), b["total_available"].clone()),
        (json!(12), json!(18))
    );
    let ml = features
        .iter()
        .find(|f| f["name"] == "ml_features")
        .unwrap();
    assert_eq!(
        ml,
        &json!({"name":"ml_features","enabled":false,"available":true,"description":"Machine learning and AI features","tier_required":"Enterprise"})
    );
    // Tenant2 is Pro: Enterprise features are listed but not available.
    let pro = gw.get("/api/v1/tenants/Tenant2/features").json();
    assert_eq!(pro["total_available"], 13);
    let ml = pro["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "ml_features")
        .unwrap()
        .clone();
    assert_eq!(
        (ml["available"].clone(), ml["enabled"].clone()),
        (json!(false), json!(false))
    );
    // Enabling MFA in the config switches the feature on.
    gw.put_json(
        "/api/v1/tenants/Tenant2/config",
        r#"{"security":{"require_mfa":true}}"#,
    );
    assert_eq!(
        gw.get("/api/v1/tenants/Tenant2/features").json()["total_enabled"],
        pro["total_enabled"].as_u64().unwrap() + 1
    );
}

#[test]
fn unknown_tenant_is_404_in_the_error_format() {
    let gw = Gateway::start();
    for (method, path) in [
        ("GET", "/api/v1/tenants/nobody/config"),
        ("PUT", "/api/v1/tenants/nobody/config"),
        ("GET", "/api/v1/tenants/nobody/features"),
        (
            "GET",
            "/api/v1/tenants/00000000-0000-0000-0000-000000000000/config",
        ),
    ] {
        let r = gw.request(
            method,
            path,
            &[("Content-Type", "application/json")],
            br#"{"security":{"require_mfa":true}}"#,
        );
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        let b = r.json();
        assert_eq!(b["error"], "Not Found");
        assert_eq!(b["code"], 404);
        assert!(b["message"].as_str().unwrap().contains("not found"), "{b}");
    }
}

#[test]
fn wrong_method_and_media_type() {
    let gw = Gateway::start();
    let r = gw.request("DELETE", "/api/v1/tenants/Tenant1/config", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, PUT"));
    let r = gw.request(
        "PUT",
        "/api/v1/tenants/Tenant1/config",
        &[("Content-Type", "text/plain")],
        b"{}",
    );
    assert_eq!(r.status, 415, "{}", r.body);
    assert_eq!(r.json()["code"], 415);
}

/// How many times the config-API component has run.
fn component_runs(gw: &Gateway) -> u64 {
    crate::harness::metric(
        gw,
        "tg_component_call_seconds_count{component=\"config-api\"}",
    )
}

#[test]
fn get_has_an_etag_and_if_none_match_answers_304_until_the_configuration_changes() {
    let gw = Gateway::start();
    const PATH: &str = "/api/v1/tenants/Tenant1/config";
    let first = gw.get(PATH);
    assert_eq!(first.status, 200, "{}", first.body);
    let tag = first.header("etag").expect("an ETag").to_owned();
    assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");
    let runs = component_runs(&gw);

    // The same state: the same tag, the same bytes, and the component is not
    // asked again.
    let again = gw.get(PATH);
    assert_eq!(
        (again.status, again.header("etag")),
        (200, Some(tag.as_str()))
    );
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("content-type"), first.header("content-type"));
    assert_eq!(
        again.header("x-tg-components"),
        first.header("x-tg-components")
    );
    for validator in [
        tag.clone(),
        format!("W/{tag}"),
        format!("\"x\", {tag}"),
        "*".into(),
    ] {
        let r = gw.request("GET", PATH, &[("If-None-Match", &validator)], b"");
        assert_eq!(r.status, 304, "If-None-Match: {validator}: {}", r.body);
        assert_eq!(r.body, "");
        assert_eq!(r.header("etag"), Some(tag.as_str()));
    }
    assert_eq!(component_runs(&gw), runs, "answered without the component");
    // Another tenant's answer is kept compressed against the first one kept:
    // it comes back byte for byte, with its own headers, without the component.
    const OTHER: &str = "/api/v1/tenants/Tenant2/config";
    let made = gw.get(OTHER);
    assert_eq!(made.status, 200, "{}", made.body);
    let runs = component_runs(&gw);
    let kept = gw.get(OTHER);
    assert_eq!(
        (
            kept.status,
            kept.header("etag"),
            kept.header("content-type")
        ),
        (200, made.header("etag"), made.header("content-type"))
    );
    assert_eq!(kept.body, made.body);
    assert_ne!(kept.body, first.body);
    assert_eq!(component_runs(&gw), runs, "answered without the component");
    let other = gw.request("GET", PATH, &[("If-None-Match", "\"other\"")], b"");
    assert_eq!(other.status, 200);

    // A write: the old tag no longer matches, the new value is served at once.
    let r = gw.put_json(PATH, r#"{"custom_settings": {"colour": "teal"}}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let after = gw.request("GET", PATH, &[("If-None-Match", &tag)], b"");
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(after.json()["custom_settings"]["colour"], "teal");
    let new_tag = after.header("etag").unwrap().to_owned();
    assert_ne!(new_tag, tag);
    let r = gw.request("GET", PATH, &[("If-None-Match", &new_tag)], b"");
    assert_eq!(r.status, 304);

    // The same tenant by UUID has the same tag; another tenant another one.
    let id = after.json()["tenant_id"].as_str().unwrap().to_owned();
    let by_id = gw.get(&format!("/api/v1/tenants/{id}/config"));
    assert_eq!(by_id.header("etag"), Some(new_tag.as_str()));
    let t2 = gw.get("/api/v1/tenants/Tenant2/config");
    assert_ne!(t2.header("etag"), Some(new_tag.as_str()));
    // Errors carry none.
    let missing = gw.get("/api/v1/tenants/Nobody/config");
    assert_eq!((missing.status, missing.header("etag")), (404, None));
}
