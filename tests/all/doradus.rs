//! Doradus tenant management at /_tenants: create (generated credentials shown
//! once), XML and JSON both ways, users, the other APIs seeing the same
//! tenants, delete and restore.

use crate::harness::{Gateway, SUPER_USER, basic};
use serde_json::json;

const XML: (&str, &str) = ("Content-Type", "application/xml");
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// The value of the first `name="..."` attribute in `xml` (`name` may start
/// with the element's name: `user name`).
fn attribute<'a>(xml: &'a str, name: &str) -> &'a str {
    let start = xml
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {xml}"))
        + name.len()
        + 2;
    let len = xml[start..].find('"').unwrap();
    &xml[start..start + len]
}

#[test]
fn create_twice_conflicts_and_generated_credentials_work_only_for_their_tenant() {
    let gw = Gateway::start();
    let r = gw.request("POST", "/_tenants", &[XML], br#"<tenant name="Acme"/>"#);
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.header("content-type").unwrap().contains("xml"));
    assert_eq!(r.header("location"), Some("/_tenants/Acme"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.body.starts_with(r#"<tenant name="Acme">"#), "{}", r.body);
    let user = attribute(&r.body, "user name").to_owned();
    let password = attribute(&r.body, "password").to_owned();
    assert!(password.len() >= 20, "{password}");

    let again = gw.request("POST", "/_tenants", &[XML], br#"<tenant name="acme"/>"#);
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.starts_with("<error>"), "{}", again.body);
    assert!(again.body.contains("already exists"), "{}", again.body);

    // The generated user is a user of Acme and of nothing else.
    let creds = basic(&user, &password);
    let as_user = |path: &str| {
        gw.anonymous("GET", path, &[("Authorization", &creds)], b"")
            .status
    };
    assert_eq!(as_user("/api/v1/tenants/Acme/config"), 200);
    // Valid credentials, not entitled there: 403 (a wrong password is 401).
    assert_eq!(as_user("/api/v1/tenants/Tenant1/config"), 403);
    assert_eq!(as_user("/_tenants"), 403);
    assert_eq!(as_user("/application/v2/tenant/"), 403);
    let wrong = basic(&user, "not-the-password");
    assert_eq!(
        gw.anonymous(
            "GET",
            "/api/v1/tenants/Acme/config",
            &[("Authorization", &wrong)],
            b""
        )
        .status,
        401
    );

    // Never shown again: not by GET, in either format, nor in the list.
    for path in ["/_tenants/Acme", "/_tenants/Acme?format=json", "/_tenants"] {
        let r = gw.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(!r.body.contains(&password), "{path}: {}", r.body);
    }
    let r = gw.get("/_tenants/Acme");
    assert_eq!(attribute(&r.body, "user name"), user);
    assert!(!r.body.contains("password"), "{}", r.body);
    let r = gw.get("/_tenants/Acme?format=json");
    assert_eq!(r.json(), json!({"Acme": {"users": {user.as_str(): {}}}}));

    // All the other APIs see it, and it is routable, without a restart.
    let names = gw.get("/application/v2/tenant/").json();
    assert!(
        names.as_array().unwrap().contains(&json!("Acme")),
        "{names}"
    );
    let r = gw.get("/hono/v1/tenants?tenant-id=Acme");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"tenant-id": "Acme", "enabled": true}));
    let r = gw.put_json(
        "/api/v1/tenants/Acme/config",
        r#"{"performance":{"cache_size_mb":2048}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = gw.anonymous("GET", "/db-info", &[("Tenant", "ACME")], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["tenant"], "Acme");
    // Connected as TenantGateway.NewTenants says, the secret never shown.
    assert_eq!(r.json()["database"], "EdFi_Admin_Acme");
    assert!(!r.body.contains("new-tenants-secret"), "{}", r.body);

    // Management needs the super-user.
    for auth in [None, Some(basic(SUPER_USER.0, "wrong"))] {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let r = gw.anonymous("GET", "/_tenants", &headers, b"");
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
        assert!(r.body.starts_with("<error>"), "{}", r.body);
        let r = gw.anonymous(
            "POST",
            "/_tenants?format=json",
            &headers,
            br#"<tenant name="X"/>"#,
        );
        assert_eq!(r.status, 401);
        assert!(r.json()["error"].is_string());
    }
    assert_eq!(gw.get("/_tenants/X").status, 404);
}

#[test]
fn xml_and_json_both_ways_and_users_can_be_added_and_changed() {
    let gw = Gateway::start();
    // JSON in, JSON out (by ?format=json); given passwords are not echoed.
    let r = gw.request(
        "POST",
        "/_tenants?format=json",
        &[JSON],
        br#"{"Beta": {"users": {"kat": {"password": "Everdeen-1"}}, "options": {"ReplicationFactor": "3"}}}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"Beta": {"users": {"kat": {}}, "options": {"ReplicationFactor": "3"}}})
    );
    // JSON in, XML out (the default).
    let r = gw.request("POST", "/_tenants", &[JSON], br#"{"Gamma": {}}"#);
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        r.body
            .starts_with(r#"<tenant name="Gamma"><users><user name=""#),
        "{}",
        r.body
    );
    // XML in, JSON out (by Accept).
    let r = gw.request(
        "POST",
        "/_tenants",
        &[XML, ("Accept", "application/json")],
        br#"<tenant name="Delta"><options><option name="ReplicationFactor">2</option></options></tenant>"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let body = r.json();
    assert_eq!(body["Delta"]["options"], json!({"ReplicationFactor": "2"}));
    let users = body["Delta"]["users"].as_object().unwrap();
    assert_eq!(users.len(), 1);
    assert!(users.values().next().unwrap()["password"].is_string());

    // The list, both formats, with each tenant's applications.
    let xml = gw.get("/_tenants").body;
    assert!(xml.starts_with("<tenants>"), "{xml}");
    assert!(
        xml.contains(
            r#"<tenant name="Beta"><applications><value>db-info</value></applications></tenant>"#
        ),
        "{xml}"
    );
    let list = gw.get("/_tenants?format=json").json();
    assert_eq!(list["tenants"]["Beta"]["applications"], json!(["db-info"]));
    for name in ["Tenant1", "Tenant2", "Beta", "Gamma", "Delta"] {
        assert!(list["tenants"][name].is_object(), "{name}: {list}");
    }

    // PUT changes kat's password and adds rue (XML), then sets an option (JSON).
    let r = gw.request(
        "PUT",
        "/_tenants/Beta",
        &[XML],
        br#"<tenant><users><user name="kat" password="MockingJay-2"/><user name="rue" password="Rue-pw-3"/></users></tenant>"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains(r#"<user name="kat"/><user name="rue"/>"#),
        "{}",
        r.body
    );
    let config_as = |user: &str, password: &str| {
        let creds = basic(user, password);
        gw.anonymous(
            "GET",
            "/api/v1/tenants/Beta/config",
            &[("Authorization", &creds)],
            b"",
        )
        .status
    };
    assert_eq!(config_as("kat", "Everdeen-1"), 401);
    assert_eq!(config_as("kat", "MockingJay-2"), 200);
    assert_eq!(config_as("rue", "Rue-pw-3"), 200);
    let r = gw.request(
        "PUT",
        "/_tenants/Beta?format=json",
        &[JSON],
        br#"{"Beta": {"options": {"ReplicationFactor": 5}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["Beta"]["options"]["ReplicationFactor"], "5");

    // Bad input: the reason, in the answer's format, nothing changed.
    for (headers, body, status, expected) in [
        (
            vec![XML],
            &br#"<tenant name="E"><users>"#[..],
            400,
            "ends inside",
        ),
        (
            vec![XML],
            br#"<tenant name="E"><users></tenant>"#,
            400,
            "malformed",
        ),
        (
            vec![("Content-Type", "text/plain")],
            br#"<tenant name="E"/>"#,
            415,
            "application/xml",
        ),
        (
            vec![JSON],
            br#"{"E": {"options": {"ReplicationFactor": "0"}}}"#,
            400,
            "ReplicationFactor",
        ),
        (
            vec![JSON],
            br#"{"E": {"options": {"Colour": "red"}}}"#,
            400,
            "Colour",
        ),
        (vec![XML], br#"<tenant/>"#, 400, "needs a name"),
        (vec![XML], br#"<tenant name="bad.name"/>"#, 400, "bad.name"),
    ] {
        let r = gw.request("POST", "/_tenants?format=json", &headers, body);
        assert_eq!(r.status, status, "{}", r.body);
        let message = r.json()["error"].as_str().unwrap().to_owned();
        assert!(message.contains(expected), "{message}");
    }
    assert_eq!(gw.get("/_tenants/E").status, 404);
    let r = gw.request(
        "PUT",
        "/_tenants/Beta",
        &[JSON],
        br#"{"Gamma": {"users": {"x": {"password": "y"}}}}"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(gw.request("PATCH", "/_tenants/Beta", &[], b"").status, 405);
}

#[test]
fn delete_then_restore_brings_the_tenant_back_with_its_config() {
    let gw = Gateway::start();
    assert_eq!(
        gw.request("POST", "/_tenants", &[XML], br#"<tenant name="Omega"/>"#)
            .status,
        201
    );
    let config = "/api/v1/tenants/Omega/config";
    let r = gw.put_json(config, r#"{"performance":{"cache_size_mb":3072}}"#);
    assert_eq!(r.status, 200, "{}", r.body);

    let r = gw.request("DELETE", "/_tenants/Omega", &[], b"");
    assert_eq!(r.status, 204, "{}", r.body);
    // Gone from every view and from routing at once.
    assert_eq!(gw.get("/_tenants/Omega").status, 404);
    assert_eq!(gw.get(config).status, 404);
    assert_eq!(gw.get("/application/v2/tenant/Omega").status, 404);
    let r = gw.anonymous("GET", "/db-info", &[("Tenant", "Omega")], b"");
    assert_eq!(r.status, 400, "{}", r.body);
    // The name stays taken while the tenant can be restored.
    let r = gw.request("POST", "/_tenants", &[XML], br#"<tenant name="Omega"/>"#);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("_restore"), "{}", r.body);

    let r = gw.request("POST", "/_tenants/Omega/_restore", &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = gw.get(config);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["performance"]["cache_size_mb"], 3072);
    let r = gw.anonymous("GET", "/db-info", &[("Tenant", "Omega")], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        gw.request("POST", "/_tenants/Omega/_restore", &[], b"")
            .status,
        404
    );
    let history = gw.get("/api/v1/tenants/Omega/history").json();
    let actions: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject"] == "tenant")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["restored", "deleted", "created"], "{history}");

    // Purged, it is gone for good: a new tenant of that name starts afresh.
    assert_eq!(
        gw.request("DELETE", "/_tenants/Omega?purge=true", &[], b"")
            .status,
        204
    );
    assert_eq!(
        gw.request("POST", "/_tenants/Omega/_restore", &[], b"")
            .status,
        404
    );
    assert_eq!(
        gw.request("POST", "/_tenants", &[XML], br#"<tenant name="Omega"/>"#)
            .status,
        201
    );
    assert_ne!(gw.get(config).json()["performance"]["cache_size_mb"], 3072);
}
