//! Tenant apps with per-tenant connection settings, auth (super-user, client
//! registration, tenant-bound tokens), rate limits, settings hot reload and the
//! operations endpoints.

use crate::harness::{Gateway, Reply, SAMPLE_SETTINGS, SUPER_USER, basic};
use serde_json::{Value, json};
use std::time::Duration;

pub(crate) const SECRET: &str = "Str0ng!Secret-for-the-tests-0123456789";

pub(crate) fn form(
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
    fields: &[(&str, &str)],
) -> Reply {
    let body: String = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut h = headers.to_vec();
    h.push(("Content-Type", "application/x-www-form-urlencoded"));
    gw.anonymous("POST", path, &h, body.as_bytes())
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Registers `client` for `tenant` and returns a token for it.
pub(crate) fn token_for(gw: &Gateway, tenant: &str, client: &str) -> String {
    let r = form(
        gw,
        "/connect/register",
        &[("Tenant", tenant)],
        &[
            ("ClientId", client),
            ("ClientSecret", SECRET),
            ("DisplayName", "Test client"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["title"],
        json!(format!("Registered client {client} successfully."))
    );
    let r = form(
        gw,
        "/connect/token",
        &[],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", SECRET),
            ("scope", "edfi_admin_api/full_access"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = r.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    body["access_token"].as_str().unwrap().to_owned()
}

pub(crate) fn bearer(gw: &Gateway, path: &str, token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    gw.anonymous("GET", path, &[("Authorization", &auth)], b"")
}

#[test]
fn one_app_serves_each_tenant_with_its_own_connection_settings() {
    let gw = Gateway::start();
    let a = gw.anonymous("GET", "/db-info", &[("Tenant", "Tenant1")], b"");
    let b = gw.anonymous("GET", "/db-info", &[("tenant", "TENANT2")], b"");
    assert_eq!((a.status, b.status), (200, 200), "{} {}", a.body, b.body);
    assert_eq!(
        a.json(),
        json!({"tenant": "Tenant1", "connection": "EdFi_Admin", "database": "EdFi_Admin_Tenant1"})
    );
    assert_eq!(b.json()["database"], "EdFi_Admin_Tenant2");
    let sec = gw.anonymous(
        "GET",
        "/db-info/x?connection=EdFi_Security",
        &[("Tenant", "Tenant2")],
        b"",
    );
    assert_eq!(sec.json()["database"], "EdFi_Security_Tenant2");
    let missing = gw.anonymous(
        "GET",
        "/db-info?connection=Nope",
        &[("Tenant", "Tenant1")],
        b"",
    );
    assert_eq!(missing.status, 404);
    // No tenant, no app: the header rules hold for app routes too.
    let none = gw.anonymous("GET", "/db-info", &[], b"");
    assert_eq!(none.status, 400);
    assert!(
        none.json()["errors"]["Tenant"][0]
            .as_str()
            .unwrap()
            .starts_with("Tenant header is missing"),
        "{}",
        none.body
    );
    let unknown = gw.anonymous("GET", "/db-info", &[("Tenant", "Tenant9")], b"");
    assert_eq!(unknown.status, 400);
    assert!(unknown.body.contains("Tenant9"), "{}", unknown.body);
    // A path with no route and a tenant with no upstream: 404.
    let r = gw.anonymous("GET", "/elsewhere", &[("Tenant", "Tenant1")], b"");
    assert_eq!(r.status, 404);

    for (body, log) in [
        (&a.body, false),
        (&b.body, false),
        (&sec.body, false),
        (&gw.log(), true),
    ] {
        for secret in [
            "tenant1-secret",
            "tenant2-secret",
            "Host=localhost",
            "Username=",
        ] {
            assert!(
                !body.contains(secret),
                "secret {secret} leaked (log: {log})"
            );
        }
    }
}

#[test]
fn tokens_are_bound_to_their_tenant() {
    let gw = Gateway::start();
    let token = token_for(&gw, "Tenant1", "client-a");
    assert_eq!(
        bearer(&gw, "/api/v1/tenants/Tenant1/config", &token).status,
        200
    );
    assert_eq!(
        bearer(&gw, "/api/v1/tenants/Tenant1/features", &token).status,
        200
    );
    let other = bearer(&gw, "/api/v1/tenants/Tenant2/config", &token);
    assert_eq!(other.status, 403, "{}", other.body);
    assert_eq!(other.json()["code"], 403);
    // Updates too.
    let auth = format!("Bearer {token}");
    let put = gw.anonymous(
        "PUT",
        "/api/v1/tenants/Tenant2/config",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"{"performance":{"cache_size_mb":2048}}"#,
    );
    assert_eq!(put.status, 403);
    assert_eq!(
        gw.get("/api/v1/tenants/Tenant2/config").json()["performance"]["cache_size_mb"],
        1024,
        "a refused update must write nothing"
    );

    // A token request naming another tenant than the client's is refused.
    let r = form(
        &gw,
        "/connect/token",
        &[("Tenant", "Tenant2")],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "client-a"),
            ("client_secret", SECRET),
        ],
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_client");
    // Wrong secret, wrong grant, duplicate registration, weak secret.
    let r = form(
        &gw,
        "/connect/token",
        &[],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "client-a"),
            ("client_secret", "wrong"),
        ],
    );
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("invalid_client"))
    );
    assert!(r.header("www-authenticate").is_some());
    // Ed-Fi answers another grant type as an unauthenticated client.
    let r = form(&gw, "/connect/token", &[], &[("grant_type", "password")]);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("invalid_client"))
    );
    let r = form(
        &gw,
        "/connect/register",
        &[("Tenant", "Tenant1")],
        &[
            ("ClientId", "client-a"),
            ("ClientSecret", SECRET),
            ("DisplayName", "again"),
        ],
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["errors"]["ClientId"].is_array(), "{}", r.body);
    let r = form(
        &gw,
        "/connect/register",
        &[("Tenant", "Tenant1")],
        &[
            ("ClientId", "weak"),
            ("ClientSecret", "short"),
            ("DisplayName", "w"),
        ],
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["errors"]["ClientSecret"].is_array(), "{}", r.body);
    // Registration needs a tenant in multi-tenant mode.
    let r = form(
        &gw,
        "/connect/register",
        &[],
        &[
            ("ClientId", "c"),
            ("ClientSecret", SECRET),
            ("DisplayName", "c"),
        ],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Tenant header is missing"), "{}", r.body);
}

#[test]
fn missing_or_bad_credentials_get_401_with_a_challenge() {
    let gw = Gateway::start();
    let none = gw.anonymous("GET", "/api/v1/tenants/Tenant1/config", &[], b"");
    assert_eq!(none.status, 401);
    assert!(
        none.header("www-authenticate").unwrap().contains("Bearer"),
        "{:?}",
        none.headers
    );
    assert_eq!(none.json()["code"], 401);
    let forged = bearer(&gw, "/api/v1/tenants/Tenant1/config", "tg1.AAAA.BBBB");
    assert_eq!(forged.status, 401);
    assert!(
        forged
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    let wrong = gw.anonymous(
        "GET",
        "/api/v1/tenants/Tenant1/config",
        &[("Authorization", &basic(SUPER_USER.0, "guess"))],
        b"",
    );
    assert_eq!(wrong.status, 401);
    let right = gw.anonymous(
        "GET",
        "/api/v1/tenants/Tenant1/config",
        &[("Authorization", &basic(SUPER_USER.0, SUPER_USER.1))],
        b"",
    );
    assert_eq!(right.status, 200);
    // Health needs nothing.
    assert_eq!(gw.anonymous("GET", "/healthz", &[], b"").status, 200);
    assert!(!gw.log().contains(SUPER_USER.1), "password in the log");
}

#[test]
fn tokens_expire_and_registration_can_be_closed() {
    let gw = Gateway::launch()
        .env("TenantGateway__Auth__TokenLifetimeSeconds", "1")
        .env("Authentication__AllowRegistration", "false")
        .start();
    let fields = [
        ("ClientId", "c1"),
        ("ClientSecret", SECRET),
        ("DisplayName", "C1"),
    ];
    let closed = form(&gw, "/connect/register", &[("Tenant", "Tenant1")], &fields);
    assert_eq!(closed.status, 403, "{}", closed.body);
    // The super-user may still register.
    let su = basic(SUPER_USER.0, SUPER_USER.1);
    let r = form(
        &gw,
        "/connect/register",
        &[("Tenant", "Tenant1"), ("Authorization", &su)],
        &fields,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Client credentials as HTTP Basic (RFC 6749 2.3.1).
    let r = form(
        &gw,
        "/connect/token",
        &[("Authorization", &basic("c1", SECRET))],
        &[
            ("grant_type", "client_credentials"),
            ("scope", "edfi_admin_api/full_access"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["expires_in"], 1);
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        bearer(&gw, "/api/v1/tenants/Tenant1/config", &token).status,
        200
    );
    std::thread::sleep(Duration::from_millis(2100));
    let expired = bearer(&gw, "/api/v1/tenants/Tenant1/config", &token);
    assert_eq!(expired.status, 401);
}

#[test]
fn the_101st_config_read_in_a_minute_gets_429() {
    // The sample's quota of 100 reads a minute refills one every 0.6 s, which a
    // loaded machine running 100 requests can outpace; a quota of 5 refills
    // one every 12 s, so the sixth read is over it whatever the machine.
    let gw = Gateway::launch()
        .rate_limited()
        .env("TenantGateway__RateLimits__Enterprise__Reads", "5")
        .start();
    for i in 0..5 {
        let r = gw.get("/api/v1/tenants/Tenant1/config");
        assert_eq!(r.status, 200, "read {i}: {}", r.body);
    }
    let r = gw.get("/api/v1/tenants/Tenant1/config");
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body = r.json();
    assert_eq!(body["error"], "Too Many Requests");
    assert_eq!(body["code"], 429);
    assert!(body["tenant_id"].is_string());
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("5 configuration reads"),
        "{body}"
    );
    // Another class and another tenant have their own budgets.
    assert_eq!(gw.get("/api/v1/tenants/Tenant1/features").status, 200);
    assert_eq!(gw.get("/api/v1/tenants/Tenant2/config").status, 200);
    let metrics = gw.get("/metrics").body;
    assert!(
        metrics.contains("tg_rejections_total{reason=\"rate_limited\"} 1"),
        "{metrics}"
    );
}

#[test]
fn updates_are_limited_per_tier_as_configured() {
    let gw = Gateway::launch()
        .rate_limited()
        .env("TenantGateway__RateLimits__Pro__Updates", "3")
        .start();
    let put = |tenant: &str| {
        gw.put_json(
            &format!("/api/v1/tenants/{tenant}/config"),
            r#"{"performance":{"cache_size_mb":2048}}"#,
        )
        .status
    };
    // Tenant2 is Pro (3/min here); Tenant1 is Enterprise (the default 10/min).
    assert_eq!([put("Tenant2"), put("Tenant2"), put("Tenant2")], [200; 3]);
    assert_eq!(put("Tenant2"), 429);
    for _ in 0..10 {
        assert_eq!(put("Tenant1"), 200);
    }
    assert_eq!(put("Tenant1"), 429);
}

fn with_tenant3(base: &str) -> String {
    let mut s: Value = serde_json::from_str(base).unwrap();
    s["Tenants"]["Tenant3"] = json!({"ConnectionStrings": {"EdFi_Admin": "Server=x; Database=EdFi_Admin_Tenant3; Password=tenant3-secret"}});
    s.to_string()
}

#[test]
fn a_changed_settings_file_applies_within_two_seconds() {
    let gw = Gateway::start();
    let ask = |tenant: &str| gw.anonymous("GET", "/db-info", &[("Tenant", tenant)], b"");
    assert_eq!(ask("Tenant3").status, 400);

    // Added: routable, served by the config API, within 2 s.
    std::fs::write(&gw.settings, with_tenant3(SAMPLE_SETTINGS)).unwrap();
    let took = crate::harness::waited(Duration::from_secs(2), || ask("Tenant3").status == 200)
        .unwrap_or_else(|| panic!("Tenant3 not routable after 2 s; log:\n{}", gw.log()));
    assert_eq!(ask("Tenant3").json()["database"], "EdFi_Admin_Tenant3");
    assert_eq!(gw.get("/api/v1/tenants/Tenant3/config").status, 200);
    eprintln!("tenant added in {took:?}");

    // A bad file is rejected and the running settings stay.
    let mut bad: Value = serde_json::from_str(&with_tenant3(SAMPLE_SETTINGS)).unwrap();
    bad["TenantGateway"]["Bogus"] = json!(1);
    std::fs::write(&gw.settings, bad.to_string()).unwrap();
    assert!(
        crate::harness::waited(Duration::from_secs(3), || gw
            .get("/metrics")
            .body
            .contains("tg_settings_reloads_total{result=\"rejected\"} 1"))
        .is_some(),
        "the bad file was not noticed"
    );
    assert_eq!(ask("Tenant3").status, 200);
    assert!(gw.log().contains("Bogus"), "the log names the problem");

    // Removed: gone, no fall-through to another tenant.
    std::fs::write(&gw.settings, SAMPLE_SETTINGS).unwrap();
    assert!(
        crate::harness::waited(Duration::from_secs(2), || ask("Tenant3").status == 400).is_some(),
        "Tenant3 still routable"
    );
    assert_eq!(ask("Tenant1").status, 200);
    assert!(!gw.log().contains("tenant3-secret"));
}

#[test]
fn operations_endpoints() {
    let gw = Gateway::start();
    let ready = gw.anonymous("GET", "/readyz", &[], b"");
    assert_eq!(
        (ready.status, ready.json()["status"].clone()),
        (200, json!("ready"))
    );
    gw.anonymous("GET", "/db-info", &[("Tenant", "Tenant1")], b"");
    gw.anonymous("GET", "/db-info", &[], b"");
    gw.get("/api/v1/tenants/Tenant2/features");
    let m = gw.get("/metrics");
    assert_eq!(m.status, 200);
    // It names every tenant: not for anyone.
    let anonymous = gw.anonymous("GET", "/metrics", &[], b"");
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert!(anonymous.header("www-authenticate").is_some());
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    // A scraper that asks for OpenMetrics (Prometheus does) is told it gets it.
    let om = gw.request(
        "GET",
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )],
        b"",
    );
    assert!(
        om.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        om.headers
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert!(
        om.body.contains("# TYPE tg_http_requests counter\n"),
        "{}",
        om.body
    );
    for needle in [
        "tg_http_requests_total{tenant=\"Tenant1\",route=\"app\",status=\"200\"} 1",
        "tg_http_requests_total{tenant=\"Tenant2\",route=\"features\",status=\"200\"} 1",
        "tg_component_call_seconds_count{component=\"app:db-info\"} 1",
        "tg_component_call_seconds_count{component=\"config-api\"} 1",
        "tg_rejections_total{reason=\"tenant_missing\"} 1",
    ] {
        assert!(m.body.contains(needle), "{needle} missing:\n{}", m.body);
    }

    let doc = gw.anonymous("GET", "/openapi.json", &[], b"").json();
    assert_eq!(doc["openapi"], "3.1.0");
    let id = &doc["paths"]["/api/v1/tenants/{id}/config"]["parameters"][0];
    assert_eq!(
        id["schema"]["default"], "Tenant1",
        "default tenant pre-filled"
    );
    let tenant = &doc["components"]["parameters"]["Tenant"];
    assert_eq!(
        (tenant["in"].clone(), tenant["schema"]["default"].clone()),
        (json!("header"), json!("Tenant1"))
    );
    assert!(doc["paths"]["/db-info"]["get"].is_object());
    for scheme in ["bearerAuth", "clientCredentials", "superUser"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
    assert!(doc["components"]["schemas"]["TenantConfigPatch"]["properties"]["backup"].is_object());
    let ui = gw.anonymous("GET", "/swagger/", &[], b"");
    assert_eq!(ui.status, 200);
    assert!(ui.body.contains("swagger-ui"), "{}", ui.body);
}

#[test]
fn tenant_traffic_can_require_a_token_of_its_tenant() {
    let gw = Gateway::launch()
        .env("TenantGateway__Auth__ProtectTenantTraffic", "true")
        .start();
    let none = gw.anonymous("GET", "/db-info", &[("Tenant", "Tenant1")], b"");
    assert_eq!(none.status, 401);
    assert!(none.header("www-authenticate").is_some());
    let token = token_for(&gw, "Tenant1", "app-client");
    let auth = format!("Bearer {token}");
    let own = gw.anonymous(
        "GET",
        "/db-info",
        &[("Tenant", "Tenant1"), ("Authorization", &auth)],
        b"",
    );
    assert_eq!(own.status, 200, "{}", own.body);
    let other = gw.anonymous(
        "GET",
        "/db-info",
        &[("Tenant", "Tenant2"), ("Authorization", &auth)],
        b"",
    );
    assert_eq!(other.status, 403);
}

/// With `TenantGateway.AdminListen`, `/metrics` is served there without
/// credentials (with `/healthz` and `/readyz`) and no longer on the main
/// listener; the admin listener serves nothing else.
#[test]
fn the_admin_listener_serves_metrics_and_health() {
    let gw = Gateway::launch()
        .env("TenantGateway__AdminListen", "127.0.0.1:0")
        .start();
    let marker = "admin listener (metrics, health) on http://";
    let mut admin = None;
    assert!(
        crate::harness::eventually(Duration::from_secs(10), || {
            admin = gw.log().split(marker).nth(1).and_then(|rest| {
                let addr: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                addr.parse::<std::net::SocketAddr>().ok()
            });
            admin.is_some()
        }),
        "no admin listener in the log:\n{}",
        gw.log()
    );
    let admin = admin.unwrap();
    gw.get("/api/v1/tenants/Tenant1/config");
    let m = crate::harness::get_from(admin, "/metrics");
    assert_eq!(m.status, 200, "{}", m.body);
    assert!(m.body.contains("tenant=\"Tenant1\""), "{}", m.body);
    assert_eq!(crate::harness::get_from(admin, "/healthz").status, 200);
    assert_eq!(crate::harness::get_from(admin, "/readyz").status, 200);
    assert_eq!(
        crate::harness::get_from(admin, "/api/v1/tenants/Tenant1/config").status,
        404
    );
    assert_eq!(
        gw.get("/metrics").status,
        404,
        "metrics stay off the main listener"
    );
}

/// Open registration (the sample has it on) is open to loopback clients only
/// unless `TenantGateway.Auth.OpenRegistrationFrom` says otherwise, and limited
/// per address; the super-user registers from anywhere, unlimited. (Before:
/// anyone anywhere could register any number of clients for any tenant.)
#[test]
fn open_registration_is_local_and_limited_by_default() {
    let register = |gw: &Gateway, client: &str, auth: Option<&str>| {
        let mut headers = vec![("Tenant", "Tenant1")];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        form(
            gw,
            "/connect/register",
            &headers,
            &[
                ("ClientId", client),
                ("ClientSecret", SECRET),
                ("DisplayName", "Test client"),
            ],
        )
    };
    let gw = Gateway::launch()
        .rate_limited()
        .env("TenantGateway__Auth__RegistrationsPerAddressPerMinute", "2")
        .start();
    assert_eq!(register(&gw, "local-1", None).status, 200);
    assert_eq!(register(&gw, "local-2", None).status, 200);
    let r = register(&gw, "local-3", None);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert!(r.header("content-type").unwrap().contains("problem+json"));
    let su = basic(SUPER_USER.0, SUPER_USER.1);
    assert_eq!(register(&gw, "by-admin", Some(&su)).status, 200);
    // At most MaxClientsPerTenant clients, whoever registers them.
    let gw = Gateway::launch()
        .env("TenantGateway__Auth__MaxClientsPerTenant", "2")
        .start();
    assert_eq!(register(&gw, "one", None).status, 200);
    assert_eq!(register(&gw, "two", Some(&su)).status, 200);
    let r = register(&gw, "three", Some(&su));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("MaxClientsPerTenant"), "{}", r.body);

    let mut settings: Value = serde_json::from_str(SAMPLE_SETTINGS).unwrap();
    settings["TenantGateway"]["Auth"]["OpenRegistrationFrom"] = json!(["10.0.0.0/8"]);
    let gw = Gateway::launch().settings(&settings.to_string()).start();
    let r = register(&gw, "from-afar", None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("OpenRegistrationFrom"), "{}", r.body);
    assert_eq!(register(&gw, "by-admin", Some(&su)).status, 200);
}

/// A tenant purged and made again under the same name (and so the same UUID)
/// inherits nothing: the old client's token is refused, the old client cannot
/// get a token, and history and rollback show nothing of the old tenant.
/// (Before: the old clients and tokens worked for the new tenant, and rollback
/// restored the old tenant's configuration.)
#[test]
fn a_purged_and_recreated_tenant_inherits_nothing() {
    let gw = Gateway::start();
    let xml = ("Content-Type", "application/xml");
    let create = || gw.request("POST", "/_tenants", &[xml], br#"<tenant name="Phoenix"/>"#);
    assert_eq!(create().status, 201);
    let token = token_for(&gw, "Phoenix", "phoenix-old");
    let config = "/api/v1/tenants/Phoenix/config";
    assert_eq!(bearer(&gw, config, &token).status, 200);
    let r = gw.put_json(config, r#"{"performance":{"cache_size_mb":7777}}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let history = gw.get("/api/v1/tenants/Phoenix/history").json();
    assert!(
        history["history"].as_array().unwrap().len() >= 2,
        "{history}"
    );

    let r = gw.request("DELETE", "/_tenants/Phoenix?purge=true", &[], b"");
    assert!(r.status == 200 || r.status == 204, "{}", r.body);
    assert_eq!(
        bearer(&gw, config, &token).status,
        401,
        "a token of a purged tenant"
    );
    // Made again, perhaps by someone else: a new tenant of the same UUID.
    assert_eq!(create().status, 201);
    let r = bearer(&gw, config, &token);
    assert_eq!(r.status, 401, "the old tenant's token: {}", r.body);
    let r = form(
        &gw,
        "/connect/token",
        &[],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "phoenix-old"),
            ("client_secret", SECRET),
        ],
    );
    assert_eq!(r.status, 401, "the old tenant's client: {}", r.body);
    assert_eq!(r.json()["error"], "invalid_client");
    let history = gw.get("/api/v1/tenants/Phoenix/history").json();
    let entries = history["history"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .all(|e| e["action"] != "updated" && e["action"] != "purged"),
        "{history}"
    );
    let r = gw.request(
        "POST",
        "/api/v1/tenants/Phoenix/config/rollback",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_ne!(r.status, 200, "rollback reached the old tenant: {}", r.body);
    assert_ne!(
        gw.get(config).json()["performance"]["cache_size_mb"],
        7777,
        "the old configuration came back"
    );
    // The client id is free again, for the new tenant.
    let fresh = token_for(&gw, "Phoenix", "phoenix-old");
    assert_eq!(bearer(&gw, config, &fresh).status, 200);
}
