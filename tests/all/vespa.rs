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
