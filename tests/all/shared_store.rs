//! Gateway instances sharing one PostgreSQL store (`TenantGateway.Store`): tenant
//! changes reach every instance within a second, configuration writes from
//! several instances lose nothing, and clients and tokens work on every instance.
//! Each test has a schema of its own in the local test database.

use crate::harness::{Gateway, SAMPLE_SETTINGS, eventually};
use crate::persistence::tenant_changes_reach_the_other_instance;
use crate::tenancy::{SECRET, bearer, form};
use serde_json::json;
use std::time::Duration;
use tenant_gateway::store::testing::TestSchema;

/// Trust authentication ignores it; it stands for a real password that must
/// never be shown.
const PASSWORD: &str = "pg-Secret-4417-never-shown";

fn on(db: &TestSchema) -> Gateway {
    Gateway::launch()
        .env("TenantGateway__Store__Engine", "PostgreSql")
        .env(
            "TenantGateway__Store__ConnectionString",
            &format!("{} password={PASSWORD}", db.connection()),
        )
        .start()
}

#[test]
fn tenant_changes_reach_every_instance_within_a_second() {
    let db = TestSchema::new();
    let (a, b) = (on(&db), on(&db));
    // Within a second is the promise; half of it shows the change was heard
    // (NOTIFY), not found by the one-second poll.
    tenant_changes_reach_the_other_instance(&a, &b, Duration::from_millis(500));
    for gw in [&a, &b] {
        let log = gw.log();
        assert!(
            log.contains("store opened") && log.contains("postgresql"),
            "{log}"
        );
        assert!(
            !log.contains(PASSWORD),
            "the store's password was logged: {log}"
        );
        assert!(
            !log.contains("search_path"),
            "the connection string was logged: {log}"
        );
    }
}

#[test]
fn configuration_writes_from_several_instances_lose_nothing() {
    let db = TestSchema::new();
    let gateways = [on(&db), on(&db)];
    const WRITERS: usize = 4;
    const EACH: usize = 5;
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let gw = &gateways[w % 2];
            s.spawn(move || {
                for i in 0..EACH {
                    let body = json!({"custom_settings": {format!("w{w}_{i}"): i}}).to_string();
                    let r = gw.put_json("/api/v1/tenants/Tenant1/config", &body);
                    assert_eq!(r.status, 200, "{}", r.body);
                }
            });
        }
    });
    for gw in &gateways {
        let config = gw.get("/api/v1/tenants/Tenant1/config").json();
        let custom = config["custom_settings"].as_object().unwrap();
        assert_eq!(custom.len(), WRITERS * EACH, "{custom:?}");
        for w in 0..WRITERS {
            for i in 0..EACH {
                assert_eq!(custom.get(&format!("w{w}_{i}")), Some(&json!(i)));
            }
        }
    }
    // Every write is in the history, whichever instance made it.
    let history = gateways[1].get("/api/v1/tenants/Tenant1/history").json();
    let entries = history["history"].as_array().unwrap();
    let updates = entries.iter().filter(|e| e["subject"] == "config").count();
    assert_eq!(updates, WRITERS * EACH, "{history}");
}

#[test]
fn a_client_registered_on_one_instance_gets_tokens_on_another() {
    let db = TestSchema::new();
    let (a, b) = (on(&db), on(&db));
    let r = form(
        &a,
        "/connect/register",
        &[("Tenant", "Tenant1")],
        &[
            ("ClientId", "shared-client"),
            ("ClientSecret", SECRET),
            ("DisplayName", "Shared client"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = form(
        &b,
        "/connect/token",
        &[],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "shared-client"),
            ("client_secret", SECRET),
            ("scope", "edfi_admin_api/full_access"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    // Issued by B, accepted by both (one signing key, kept in the store).
    for gw in [&a, &b] {
        assert_eq!(
            bearer(gw, "/api/v1/tenants/Tenant1/config", &token).status,
            200
        );
        assert_eq!(
            bearer(gw, "/api/v1/tenants/Tenant2/config", &token).status,
            403
        );
    }
}

#[test]
fn a_bad_or_unreachable_store_stops_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("appsettings.json");
    std::fs::write(&file, SAMPLE_SETTINGS).unwrap();
    let run = |engine: &str, connection: &str| {
        let out = crate::harness::serve(&file, &dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0"])
            .env("TenantGateway__Store__Engine", engine)
            .env("TenantGateway__Store__ConnectionString", connection)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains(PASSWORD), "{err}");
        (out.status.code(), err)
    };
    let (code, err) = run("Oracle", "host=x");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("TenantGateway.Store.Engine"), "{err}");
    let (code, err) = run(
        "PostgreSql",
        &format!("host=127.0.0.1 password={PASSWORD} port=x"),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("TenantGateway.Store.ConnectionString"),
        "{err}"
    );
    let started = std::time::Instant::now();
    let (code, err) = run(
        "PostgreSql",
        &format!("host=127.0.0.1 port=1 user=nobody password={PASSWORD} connect_timeout=2"),
    );
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("TenantGateway.Store"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_component_uploaded_to_one_instance_serves_on_every_instance() {
    use crate::harness::{POLICY_VALIDATOR, metric};
    use sha2::Digest;
    let db = TestSchema::new();
    let (a, b) = (on(&db), on(&db));
    let config = "/api/v1/tenants/Tenant1/config";
    let long_sessions = r#"{"security":{"session_timeout_mins":60}}"#;
    assert_eq!(b.put_json(config, long_sessions).status, 200);
    let policy = std::fs::read(POLICY_VALIDATOR).unwrap();
    let r = a.request(
        "PUT",
        "/_components/validator@Tenant1",
        &[("Content-Type", "application/wasm")],
        &policy,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // B loads it (through its own checks) and rules Tenant1 by it.
    let started = std::time::Instant::now();
    assert!(eventually(Duration::from_secs(10), || {
        b.put_json(config, long_sessions).status == 400
    }));
    eprintln!(
        "the component reached the other instance in {:?}",
        started.elapsed()
    );
    let on_b = b.get("/_components/validator@tenant1").json();
    assert_eq!(on_b["source"], "api", "{on_b}");
    assert_eq!(on_b["sha256"], hex::encode(sha2::Sha256::digest(&policy)));
    assert!(
        b.log()
            .contains("followed a component change made on another instance")
    );
    // Deleted on B: A is back on everyone's rules.
    let r = b.request("DELETE", "/_components/validator@Tenant1", &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(eventually(Duration::from_secs(10), || {
        a.get("/_components/validator@tenant1").status == 404
    }));
    assert_eq!(a.put_json(config, long_sessions).status, 200);
    // A refused upload changes nothing anywhere.
    let r = a.request(
        "PUT",
        "/_components/validator",
        &[("Content-Type", "application/wasm")],
        b"not a component",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    // B has looked at the shared record since (each look at the components
    // directory is followed by one at the record).
    let looks = |gw: &Gateway| metric(gw, "tg_component_directory_scans_total");
    let from = looks(&b);
    assert!(eventually(Duration::from_secs(10), || looks(&b) >= from + 2));
    assert_eq!(b.get("/_components/validator").json()["source"], "builtin");
}

/// The shared store keeps the bytes of what its record names and nothing
/// older (every distinct upload used to stay there for ever); each instance
/// keeps its own copies of what its rollback reaches, and a rollback shares
/// them again.
#[test]
fn the_shared_store_keeps_only_the_components_it_names() {
    use crate::harness::{FEATURE_GATE, eventually, variant};
    use sha2::Digest;
    use tenant_gateway::store::Store;
    let db = TestSchema::new();
    let (a, b) = (on(&db), on(&db));
    let gate = std::fs::read(FEATURE_GATE).unwrap();
    let versions: Vec<Vec<u8>> = (1..=3).map(|n| variant(&gate, 100 + n)).collect();
    let shas: Vec<String> = versions
        .iter()
        .map(|v| hex::encode(sha2::Sha256::digest(v)))
        .collect();
    let slot = "/_components/feature-gate@Tenant1";
    let serves = |gw: &Gateway, sha: &str| {
        eventually(Duration::from_secs(10), || {
            gw.get("/_components/feature-gate@tenant1").json()["sha256"] == sha
        })
    };
    for (v, sha) in versions.iter().zip(&shas) {
        let r = a.request("PUT", slot, &[("Content-Type", "application/wasm")], v);
        assert_eq!(r.status, 200, "{}", r.body);
        // B follows each one, so it has a version before the last.
        assert!(serves(&b, sha), "B did not follow {sha}");
    }
    let store = tenant_gateway::store::PostgresStore::open(db.connection(), None).unwrap();
    let stored = || {
        let mut keys = store.list_keys("_components", None, 100).unwrap().keys;
        keys.retain(|k| k != "wanted");
        keys
    };
    assert_eq!(stored(), [shas[2].clone()]);
    // B goes back to the version before, from its own copy; A follows.
    let r = b.request("POST", &format!("{slot}/rollback"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["sha256"], shas[1].as_str());
    assert_eq!(stored(), [shas[1].clone()]);
    assert!(serves(&a, &shas[1]), "A did not follow the rollback");
    // Emptied: nothing is named, nothing is kept.
    let r = a.request("DELETE", slot, &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(stored().is_empty(), "{:?}", stored());
}

#[test]
fn no_instance_ever_serves_a_configuration_older_than_the_last_write() {
    let db = TestSchema::new();
    let (a, b) = (on(&db), on(&db));
    const PATH: &str = "/api/v1/tenants/Tenant1/config";
    // Both instances have the configuration kept from a first read.
    for gw in [&a, &b] {
        assert_eq!(gw.get(PATH).status, 200);
    }
    let mut tags = std::collections::HashSet::new();
    for i in 0..20 {
        let (writer, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let body = json!({"custom_settings": {"round": i}}).to_string();
        let r = writer.put_json(PATH, &body);
        assert_eq!(r.status, 200, "{}", r.body);
        // The very next read on either instance, conditional or not, has it.
        for (gw, name) in [(other, "the other instance"), (writer, "the writer")] {
            let r = gw.get(PATH);
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(
                r.json()["custom_settings"]["round"],
                i,
                "{name} served a stale config"
            );
            let tag = r.header("etag").unwrap().to_owned();
            let again = gw.request("GET", PATH, &[("If-None-Match", &tag)], b"");
            assert_eq!(again.status, 304, "{name}");
            tags.insert(tag);
        }
    }
    // One tag per version, the same on both instances.
    assert_eq!(tags.len(), 20, "{tags:?}");
}

/// Each instance's update queue remembers the configuration it wrote last and
/// starts the tenant's next update from it, without reading the store. Here
/// another instance replaces that configuration with one at the very same
/// version (the tenant purged and made again: versions count from 1 again),
/// so only the value tells them apart. The update must start from what the
/// store holds: nothing of the purged configuration comes back, nothing of the
/// new one is lost.
#[test]
fn an_update_never_starts_from_a_configuration_another_instance_replaced() {
    let db = TestSchema::new();
    let (a, b) = (on(&db), on(&db));
    const PATH: &str = "/api/v1/tenants/Phoenix/config";
    let create = |gw: &Gateway| {
        let r = gw.create_tenant("Phoenix");
        assert_eq!(r.status, 201, "{}", r.body);
    };
    let put = |gw: &Gateway, setting: &str| {
        let body = json!({"custom_settings": {setting: true}}).to_string();
        let r = gw.put_json(PATH, &body);
        assert_eq!(r.status, 200, "{}", r.body);
    };
    let settings = |gw: &Gateway| {
        let config = gw.get(PATH).json();
        let mut names: Vec<String> = config["custom_settings"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    };
    let within = Duration::from_secs(10);

    create(&a);
    assert!(eventually(within, || b.get(PATH).status == 200));
    // A's first update: version 1, remembered by A's queue.
    put(&a, "old");
    assert_eq!(settings(&b), ["old"]);
    // B purges the tenant and makes it again: its first update is version 1
    // again, with another value.
    let r = b.request("DELETE", "/_tenants/Phoenix?purge=true", &[], b"");
    assert_eq!(r.status, 204, "{}", r.body);
    create(&b);
    put(&b, "new");
    // A hears of it (its reads never use what the queue remembers).
    assert!(eventually(within, || settings(&a) == ["new"]));
    put(&a, "next");
    for gw in [&a, &b] {
        assert_eq!(settings(gw), ["new", "next"]);
    }
    // The history records the update as made on B's configuration.
    let history = a.get("/api/v1/tenants/Phoenix/history").json();
    let last = &history["history"][0];
    assert_eq!(last["fields"], json!(["custom_settings.next"]), "{history}");
}
