//! Hono tenant information: set, get by tenant-id or subject DN, the rules of
//! the document, entitlement and caching.

use crate::harness::{Gateway, basic};
use crate::tenancy::token_for;
use serde_json::{Value, json};

const KEY: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA";

pub(crate) fn iot_document() -> Value {
    json!({
        "enabled": true,
        "adapters": [
            {"type": "hono-http", "enabled": true},
            {"type": "hono-mqtt", "enabled": false}
        ],
        "resource-limits": {
            "max-connections": 100,
            "data-volume": {
                "effective-since": "2025-01-01T00:00:00Z",
                "max-bytes": 1000000,
                "period": {"mode": "days", "no-of-days": 30}
            }
        },
        "trusted-ca": [
            {"subject-dn": "CN=devices,O=ACME Corporation", "public-key": KEY}
        ],
        "ext": {"contract": "gold"},
        "x-billing": {"account": 42, "tags": ["a", "b"]}
    })
}

fn get(gw: &Gateway, query: &str) -> crate::harness::Reply {
    gw.get(&format!("/hono/v1/tenants{query}"))
}

#[test]
fn hono_tenant_information_lookup_rules_and_uniqueness() {
    let gw = Gateway::start();
    let r = gw.put_json("/hono/v1/tenants/Iot", &iot_document().to_string());
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("location"), Some("/hono/v1/tenants/Iot"));

    // By tenant-id, and by a subject DN spelt differently: type case, spaces,
    // value case.
    let mut expected = iot_document();
    expected["tenant-id"] = json!("Iot");
    for query in [
        "?tenant-id=Iot",
        "/Iot",
        "?subject-dn=CN%3Ddevices%2CO%3DACME%20Corporation",
        "?subject-dn=cn%3Ddevices%2C%20%20o%20%3D%20acme%20corporation",
        "?subject-dn=2.5.4.3%3Ddevices%2C%20O%3DACME%20Corporation",
    ] {
        let r = get(&gw, query);
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        assert_eq!(r.header("cache-control"), Some("max-age=60"), "{query}");
        // Every member round-trips, the unknown x-billing too.
        assert_eq!(r.json(), expected, "{query}");
    }
    // RDN order is significant.
    assert_eq!(
        get(&gw, "?subject-dn=O%3DACME%20Corporation%2CCN%3Ddevices").status,
        404
    );
    // Exactly one criterion.
    for query in [
        "",
        "?tenant-id=Iot&subject-dn=CN%3Ddevices%2CO%3DACME%20Corporation",
        "/Iot?subject-dn=CN%3Ddevices",
        "?tenant-id=",
    ] {
        let r = get(&gw, query);
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert!(r.json()["error"].is_string());
    }
    assert_eq!(get(&gw, "?subject-dn=not-a-dn").status, 400);
    assert_eq!(get(&gw, "?tenant-id=nosuch").status, 404);

    // A duplicate adapter type is refused, and nothing changes.
    let mut doc = iot_document();
    doc["adapters"] = json!([{"type": "hono-http"}, {"type": "hono-http"}]);
    let r = gw.put_json("/hono/v1/tenants/Iot", &doc.to_string());
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json()["error"].as_str().unwrap().contains("hono-http"),
        "{}",
        r.body
    );
    assert_eq!(get(&gw, "/Iot").json(), expected);
    // A CA of another tenant is refused, however its DN is spelt.
    let mut other = iot_document();
    other["trusted-ca"] =
        json!([{"subject-dn": "cn=Devices, o=acme corporation", "public-key": KEY}]);
    let r = gw.put_json("/hono/v1/tenants/Iot2", &other.to_string());
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.json()["error"].as_str().unwrap().contains("Iot"),
        "{}",
        r.body
    );
    assert_eq!(get(&gw, "/Iot2").status, 404);
    // Schema violations are refused with the path.
    let r = gw.put_json(
        "/hono/v1/tenants/Iot2",
        r#"{"resource-limits": {"max-connections": "many"}}"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("max-connections"),
        "{}",
        r.body
    );

    // An update replaces the document; disabling the tenant stops its traffic.
    let r = gw.put_json(
        "/hono/v1/tenants/Iot",
        r#"{"enabled": false, "ext": {"contract": "silver"}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"tenant-id": "Iot", "enabled": false, "ext": {"contract": "silver"}})
    );
    let r = gw.anonymous("GET", "/db-info", &[("Tenant", "Iot")], b"");
    assert_eq!(r.status, 403, "{}", r.body);
    // Its old CA is free again.
    let r = gw.put_json("/hono/v1/tenants/Iot2", &other.to_string());
    assert_eq!(r.status, 201, "{}", r.body);
    // Settings tenants have information too.
    assert_eq!(
        get(&gw, "?tenant-id=tenant1").json(),
        json!({"tenant-id": "Tenant1", "enabled": true})
    );

    // Writes: JSON, super-user.
    let r = gw.request(
        "PUT",
        "/hono/v1/tenants/Iot",
        &[("Content-Type", "text/plain")],
        b"{}",
    );
    assert_eq!(r.status, 415, "{}", r.body);
    let r = gw.anonymous(
        "PUT",
        "/hono/v1/tenants/Iot",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(gw.request("POST", "/hono/v1/tenants", &[], b"").status, 405);
}

/// Creates tenant `Fleet` with user `ops`; returns that user's Basic credentials.
pub(crate) fn create_fleet(gw: &Gateway) -> String {
    let r = gw.request(
        "POST",
        "/_tenants?format=json",
        &[("Content-Type", "application/json")],
        br#"{"Fleet": {"users": {"ops": {"password": "Fleet-ops-1"}}}}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    basic("ops", "Fleet-ops-1")
}

#[test]
fn hono_reads_are_for_the_tenant_itself_or_the_super_user() {
    let gw = Gateway::start();
    let ops = create_fleet(&gw);
    let read = |query: &str, auth: &str| {
        gw.anonymous(
            "GET",
            &format!("/hono/v1/tenants{query}"),
            &[("Authorization", auth)],
            b"",
        )
    };
    // The tenant's own user reads its own information...
    let r = read("?tenant-id=Fleet", &ops);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["tenant-id"], "Fleet");
    // ...not another tenant's (valid credentials, not entitled: 403).
    assert_eq!(read("?tenant-id=Tenant2", &ops).status, 403);
    // A client of Tenant1 reads Tenant1, and is refused Tenant2 and unknown tenants.
    let token = format!("Bearer {}", token_for(&gw, "Tenant1", "hono-reader"));
    assert_eq!(read("?tenant-id=Tenant1", &token).status, 200);
    let r = read("?tenant-id=Tenant2", &token);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["error"].is_string());
    assert_eq!(read("?tenant-id=nosuch", &token).status, 403);
    assert_eq!(
        gw.anonymous("GET", "/hono/v1/tenants?tenant-id=Fleet", &[], b"")
            .status,
        401
    );
    // Only the super-user writes.
    let r = gw.anonymous(
        "PUT",
        "/hono/v1/tenants/Fleet",
        &[
            ("Authorization", &ops),
            ("Content-Type", "application/json"),
        ],
        b"{}",
    );
    assert_eq!(r.status, 403, "{}", r.body);
}
