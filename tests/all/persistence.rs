//! Durability and concurrency: restarts, kill -9, concurrent updates, stable ids,
//! tenant changes reaching another instance that shares the store.

use crate::harness::{Gateway, eventually};
use serde_json::json;

const PATH: &str = "/api/v1/tenants/Tenant1/config";

#[test]
fn accepted_change_survives_a_restart() {
    let gw = Gateway::start();
    let data = tempfile::tempdir().unwrap();
    drop(gw);
    let gw = Gateway::launch().data_dir(data.path()).start();
    let r = gw.put_json(PATH, r#"{"performance":{"cache_size_mb":4096}}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let before = gw.get(PATH).json();
    gw.stop();
    let gw = Gateway::launch().data_dir(data.path()).start();
    let after = gw.get(PATH).json();
    assert_eq!(after["performance"]["cache_size_mb"], 4096);
    assert_eq!(after, before);
}

#[test]
fn accepted_change_survives_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::launch().data_dir(data.path()).start();
    let r = gw.put_json(PATH, r#"{"security":{"session_timeout_mins":45}}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    gw.kill();
    let gw = Gateway::launch().data_dir(data.path()).start();
    assert_eq!(gw.get(PATH).json()["security"]["session_timeout_mins"], 45);
}

#[test]
fn tenant_ids_are_the_same_on_every_instance() {
    let a = Gateway::start();
    let b = Gateway::start();
    // UUIDv5 of the lower-case name in the gateway's namespace, worked out
    // apart from the gateway (Python's uuid.uuid5): the same on every
    // instance, every start and every release.
    for (t, id) in [
        ("Tenant1", "1b38837d-443f-5a1f-a382-1b6d3073b716"),
        ("Tenant2", "5a4afa1b-31d8-5b14-a094-14e28c4155a3"),
    ] {
        let path = format!("/api/v1/tenants/{t}/config");
        assert_eq!(a.get(&path).json()["tenant_id"], id);
        assert_eq!(b.get(&path).json()["tenant_id"], id);
    }
    // The first sight of a tenant fixes its creation time, which a never-updated
    // configuration reports as updated_at: a restart keeps it.
    let data = tempfile::tempdir().unwrap();
    let first = Gateway::launch().data_dir(data.path()).start();
    let created = first.get(PATH).json()["updated_at"].clone();
    first.stop();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = Gateway::launch().data_dir(data.path()).start();
    assert_eq!(second.get(PATH).json()["updated_at"], created);
}

/// Concurrent updates of one tenant are committed together (the store's
/// writer batches them, each update giving its turn to the next once its
/// write is applied): none is lost, each is answered only once it is stored
/// (the writer's very next read has it), and each is recorded once, at a
/// version of its own.
#[test]
fn concurrent_updates_lose_no_write() {
    let gw = Gateway::start();
    const WRITERS: usize = 8;
    const EACH: usize = 4;
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let gw = &gw;
            s.spawn(move || {
                for i in 0..EACH {
                    let key = format!("w{w}_{i}");
                    let body = json!({"custom_settings": {&key: i}}).to_string();
                    let r = gw.put_json(PATH, &body);
                    assert_eq!(r.status, 200, "{}", r.body);
                    let read = gw.get(PATH).json();
                    assert_eq!(read["custom_settings"][&key], json!(i), "{read}");
                }
            });
        }
    });
    let history = gw.get("/api/v1/tenants/Tenant1/history?limit=1000").json();
    let mut versions: Vec<i64> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject"] == "config")
        .map(|e| e["version"].as_i64().unwrap())
        .collect();
    versions.sort_unstable();
    let expected: Vec<i64> = (1..=(WRITERS * EACH) as i64).collect();
    assert_eq!(versions, expected, "{history}");
    let custom = gw.get(PATH).json()["custom_settings"].clone();
    let custom = custom.as_object().unwrap();
    for w in 0..WRITERS {
        for i in 0..EACH {
            assert_eq!(
                custom.get(&format!("w{w}_{i}")),
                Some(&json!(i)),
                "lost w{w}_{i}: {custom:?}"
            );
        }
    }
    assert_eq!(custom.len(), WRITERS * EACH);
}

#[test]
fn tenant_changes_reach_another_instance_sharing_the_store() {
    let data = tempfile::tempdir().unwrap();
    let a = Gateway::launch().data_dir(data.path()).start();
    let b = Gateway::launch().data_dir(data.path()).start();
    tenant_changes_reach_the_other_instance(&a, &b, std::time::Duration::from_secs(5));
}

/// A tenant created on `a` is routed by `b` within `within`, a configuration
/// written on `a` is read on `b`, and a deletion on `b` reaches `a`.
pub(crate) fn tenant_changes_reach_the_other_instance(
    a: &Gateway,
    b: &Gateway,
    within: std::time::Duration,
) {
    let routed = |gw: &Gateway| {
        gw.anonymous("GET", "/db-info", &[("Tenant", "Shared")], b"")
            .status
    };
    assert_eq!(routed(b), 400);
    let r = a.create_tenant("Shared");
    assert_eq!(r.status, 201, "{}", r.body);
    // A knows at once; B as soon as it hears of the change.
    assert_eq!(routed(a), 200);
    let started = std::time::Instant::now();
    assert!(eventually(within, || routed(b) == 200));
    eprintln!(
        "the tenant reached the other instance in {:?}",
        started.elapsed()
    );
    let names = b.get("/application/v2/tenant/").json();
    assert!(
        names.as_array().unwrap().contains(&json!("Shared")),
        "{names}"
    );
    let r = a.put_json(
        "/api/v1/tenants/Shared/config",
        r#"{"performance":{"cache_size_mb":1536}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        b.get("/api/v1/tenants/Shared/config").json()["performance"]["cache_size_mb"],
        1536
    );
    // Deleted on B, gone from A.
    assert_eq!(
        b.request("DELETE", "/_tenants/Shared", &[], b"").status,
        204
    );
    let started = std::time::Instant::now();
    assert!(eventually(within, || routed(a) == 400));
    eprintln!(
        "the deletion reached the other instance in {:?}",
        started.elapsed()
    );
}
