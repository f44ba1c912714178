//! The Vespa tenant API v2 over the gateway's tenants.

use crate::harness::{Gateway, SUPER_USER, basic};

#[test]
fn vespa_tenant_api_creates_lists_gets_and_deletes_with_its_messages() {
    let gw = Gateway::start();
    let su = basic(SUPER_USER.0, SUPER_USER.1);
    let call =
        |method: &str, path: &str| gw.anonymous(method, path, &[("Authorization", &su)], b"");
    let r = call("PUT", "/application/v2/tenant/mytenant");
    assert_eq!(
        (r.status, r.json()["message"].as_str()),
        (200, Some("Tenant mytenant created."))
    );
    let r = call("GET", "/application/v2/tenant/mytenant");
    assert_eq!(r.json()["message"], "Tenant 'mytenant' exists.");
    let names = call("GET", "/application/v2/tenant/").json();
    assert!(
        names.as_array().unwrap().iter().any(|n| n == "mytenant"),
        "{names}"
    );
    // Created through this API, the tenant is routable and served by the config API.
    assert_eq!(gw.get("/api/v1/tenants/mytenant/config").status, 200);
    let r = gw.anonymous("GET", "/db-info", &[("Tenant", "mytenant")], b"");
    assert_ne!(r.status, 400, "{}", r.body);

    assert_eq!(call("PUT", "/application/v2/tenant/mytenant").status, 400);
    let r = call("PUT", "/application/v2/tenant/bad.name");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("bad.name"));
    let r = call("GET", "/application/v2/tenant/nosuch");
    assert_eq!(r.status, 404);
    assert!(r.json()["message"].is_string());
    assert_eq!(call("POST", "/application/v2/tenant/mytenant").status, 405);
    assert_eq!(call("POST", "/application/v2/tenant/").status, 405);
    assert_eq!(
        gw.anonymous("GET", "/application/v2/tenant/", &[], b"")
            .status,
        401
    );
    let wrong = basic(SUPER_USER.0, "wrong");
    assert_eq!(
        gw.anonymous(
            "GET",
            "/application/v2/tenant/",
            &[("Authorization", &wrong)],
            b""
        )
        .status,
        401
    );

    let r = call("DELETE", "/application/v2/tenant/mytenant");
    assert_eq!(
        (r.status, r.json()["message"].as_str()),
        (200, Some("Tenant mytenant deleted."))
    );
    assert_eq!(call("GET", "/application/v2/tenant/mytenant").status, 404);
    let r = gw.anonymous("GET", "/db-info", &[("Tenant", "mytenant")], b"");
    assert_eq!(r.status, 400, "{}", r.body);
}

/// A tenant may not be named like a UUID: paths take a name or a UUID in the
/// same place, so one named like Tenant1's id would be unreachable and
/// `GET` / `DELETE` would act on Tenant1. Every API that creates tenants refuses
/// it with 400 in its own format, and Tenant1 is untouched. (Before: Vespa
/// answered "Tenant … created.")
#[test]
fn no_api_creates_a_tenant_named_like_a_uuid() {
    let gw = Gateway::start();
    let su = basic(SUPER_USER.0, SUPER_USER.1);
    let id = gw.get("/api/v1/tenants/Tenant1/config").json()["tenant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let json = ("Content-Type", "application/json");
    let auth = ("Authorization", su.as_str());
    let vespa = gw.anonymous("PUT", &format!("/application/v2/tenant/{id}"), &[auth], b"");
    assert_eq!(vespa.status, 400, "{}", vespa.body);
    assert!(
        vespa.json()["message"].as_str().unwrap().contains("UUID"),
        "{}",
        vespa.body
    );
    let doradus = gw.anonymous(
        "POST",
        "/_tenants?format=json",
        &[auth, json],
        format!(r#"{{"{id}": {{}}}}"#).as_bytes(),
    );
    assert_eq!(doradus.status, 400, "{}", doradus.body);
    assert!(
        doradus.json()["error"].as_str().unwrap().contains("UUID"),
        "{}",
        doradus.body
    );
    let upper = id.to_ascii_uppercase();
    let hono = gw.anonymous(
        "PUT",
        &format!("/hono/v1/tenants/{upper}"),
        &[auth, json],
        br#"{"trusted-ca": [{"subject-dn": "CN=x"}], "adapters": [{"type": "hono-http"}]}"#,
    );
    // The path names Tenant1 by its id: this updates Tenant1 (200), or is
    // refused, but never creates a tenant.
    assert_ne!(hono.status, 201, "{}", hono.body);
    let names = gw
        .anonymous("GET", "/application/v2/tenant/", &[auth], b"")
        .json();
    assert_eq!(names.as_array().unwrap().len(), 2, "{names}");
}
