//! The change history of a tenant and the rollback of its configuration.

use crate::harness::Gateway;
use serde_json::json;

#[test]
fn history_lists_config_updates_and_rollback_restores_and_is_recorded() {
    let gw = Gateway::start();
    let path = "/api/v1/tenants/Tenant1/config";
    assert_eq!(
        gw.put_json(path, r#"{"performance":{"cache_size_mb":2048}}"#)
            .status,
        200
    );
    assert_eq!(
        gw.put_json(
            path,
            r#"{"performance":{"cache_size_mb":4096},"security":{"session_timeout_mins":15}}"#
        )
        .status,
        200
    );
    let history = gw.get("/api/v1/tenants/Tenant1/history").json();
    let entries = history["history"].as_array().unwrap();
    let configs: Vec<_> = entries
        .iter()
        .filter(|e| e["subject"] == "config")
        .collect();
    assert_eq!(configs.len(), 2, "{history}");
    // Newest first, each naming what changed, who changed it and the version written.
    assert_eq!(configs[0]["action"], "updated");
    assert_eq!(
        configs[0]["fields"],
        json!(["performance.cache_size_mb", "security.session_timeout_mins"])
    );
    assert_eq!(configs[0]["principal"], "super-user");
    assert_eq!(configs[1]["action"], "created");
    assert_eq!(configs[1]["fields"], json!(["performance.cache_size_mb"]));
    let first = configs[1]["version"].as_i64().unwrap();
    assert_eq!(configs[0]["version"].as_i64().unwrap(), first + 1);
    // The settings seeding is recorded too.
    assert!(
        entries
            .iter()
            .any(|e| e["subject"] == "tenant" && e["action"] == "created")
    );

    let r = gw.request(
        "POST",
        "/api/v1/tenants/Tenant1/config/rollback",
        &[("Content-Type", "application/json")],
        format!(r#"{{"version":{first}}}"#).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["updated_fields"],
        json!(["performance.cache_size_mb", "security.session_timeout_mins"])
    );
    let config = gw.get(path).json();
    assert_eq!(config["performance"]["cache_size_mb"], 2048);
    assert_eq!(config["security"]["session_timeout_mins"], 30);
    let history = gw.get("/api/v1/tenants/Tenant1/history?limit=1").json();
    assert_eq!(history["history"].as_array().unwrap().len(), 1);
    assert_eq!(history["history"][0]["action"], "rolled-back");

    // A version not in the history, and a malformed body.
    let r = gw.request(
        "POST",
        "/api/v1/tenants/Tenant1/config/rollback",
        &[("Content-Type", "application/json")],
        br#"{"version":999}"#,
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = gw.request(
        "POST",
        "/api/v1/tenants/Tenant1/config/rollback",
        &[("Content-Type", "application/json")],
        br#"{"to":1}"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    // History needs credentials like the rest of the config API.
    assert_eq!(
        gw.anonymous("GET", "/api/v1/tenants/Tenant1/history", &[], b"")
            .status,
        401
    );
}
