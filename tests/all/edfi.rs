//! Ed-Fi Admin API 2.x compatibility: the landing document, `/connect/*`,
//! `/v2/tenants`, tenant resolution errors and `/v1/` paths, answered as Ed-Fi
//! answers them (status, content type, body shape and messages), in
//! multi-tenant and single-tenant settings. The client flow runs with curl.

use crate::harness::{Gateway, Reply, SUPER_USER, basic};
use crate::tenancy::{SECRET, bearer, form};
use serde_json::{Value, json};
use std::process::Command;

const ACCESS_DENIED: &str = "Access Denied. Please review your information and try again.";
const SCOPE_MESSAGE: &str =
    "The request is missing required scope claims or has invalid scope values";
const EDFI_SCOPE: &str = "edfi_admin_api/full_access";

/// What curl received: status, content type, body.
struct Curled {
    status: u16,
    content_type: String,
    body: Value,
}

/// Runs curl against the gateway (`args` after the URL) and reads its answer.
fn curl(gw: &Gateway, path: &str, args: &[&str]) -> Curled {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-w",
            "\n%{http_code} %{content_type}",
        ])
        .arg(format!("http://{}{path}", gw.addr))
        .args(args)
        .output()
        .expect("curl runs (scripts/test installs it)");
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, trailer) = text.rsplit_once('\n').unwrap();
    let (status, content_type) = trailer.split_once(' ').unwrap();
    Curled {
        status: status.parse().unwrap(),
        content_type: content_type.to_owned(),
        body: if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
        },
    }
}

/// The names of the tenants a listing holds.
fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|t| t["tenantName"].as_str().unwrap())
        .collect()
}

/// Asserts a reply is Ed-Fi's validation failure of `field` and returns its messages.
fn validation_failure(r: &Reply, field: &str) -> Vec<String> {
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.body
    );
    let body = r.json();
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["errors", "title"], "{}", r.body);
    assert_eq!(body["title"], "Validation failed");
    body["errors"][field]
        .as_array()
        .unwrap_or_else(|| panic!("no errors for {field}: {}", r.body))
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

/// No user name or password of the sample's connection strings in `text`.
fn assert_no_credentials(text: &str) {
    for secret in [
        "tenant1-secret",
        "tenant2-secret",
        "new-tenants-secret",
        "Password",
        "Username",
        "postgres",
        "sa-password",
        "User Id",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn an_edfi_client_flow_works_unchanged() {
    let gw = Gateway::start();
    // The landing document, anonymous.
    let landing = curl(&gw, "/", &[]);
    assert_eq!(landing.status, 200);
    assert!(landing.content_type.starts_with("application/json"));
    assert!(landing.body["version"].is_string() && landing.body["build"].is_string());
    assert_eq!(landing.body["applicationName"], "tenant-gateway");

    // Register for Tenant1, then a token for Ed-Fi's scope.
    let client = "7f2c3a64-0d3f-4a4e-9b1e-5d2f7c1e9a01";
    let registered = curl(
        &gw,
        "/connect/register",
        &[
            "-H",
            "Tenant: Tenant1",
            "--data-urlencode",
            &format!("ClientId={client}"),
            "--data-urlencode",
            &format!("ClientSecret={SECRET}"),
            "--data-urlencode",
            &format!("DisplayName={client}"),
        ],
    );
    assert_eq!(registered.status, 200, "{}", registered.body);
    assert_eq!(
        registered.body,
        json!({"title": format!("Registered client {client} successfully."), "status": 200})
    );
    let token = curl(
        &gw,
        "/connect/token",
        &[
            "-H",
            "Tenant: Tenant1",
            "--data-urlencode",
            &format!("client_id={client}"),
            "--data-urlencode",
            &format!("client_secret={SECRET}"),
            "--data-urlencode",
            "grant_type=client_credentials",
            "--data-urlencode",
            &format!("scope={EDFI_SCOPE}"),
        ],
    );
    assert_eq!(token.status, 200, "{}", token.body);
    assert_eq!(token.body["token_type"], "Bearer");
    assert!(token.body["expires_in"].as_u64().unwrap() > 0);
    let auth = format!(
        "Authorization: Bearer {}",
        token.body["access_token"].as_str().unwrap()
    );

    // List the tenants, read one: the token sees its own tenant (tokens are
    // bound to theirs unless TokensCrossTenants), and of its connection
    // strings only server and database.
    let list = curl(&gw, "/v2/tenants", &["-H", &auth, "-H", "Tenant: Tenant1"]);
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(
        list.body,
        json!([{
            "tenantName": "Tenant1",
            "adminConnectionString": {"host": "localhost", "database": "EdFi_Admin_Tenant1"},
            "securityConnectionString": {"host": "localhost", "database": "EdFi_Security_Tenant1"}
        }])
    );
    let one = curl(&gw, "/v2/tenants/tenant1", &["-H", &auth]);
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.body, list.body[0]);
    // Another tenant is not found for this token, as an unknown one.
    assert_eq!(curl(&gw, "/v2/tenants/Tenant2", &["-H", &auth]).status, 404);
    let unknown = curl(&gw, "/v2/tenants/notexistingtenantname", &["-H", &auth]);
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.content_type, "application/problem+json");
    assert_no_credentials(&list.body.to_string());

    // The super-user sees every tenant.
    let su = basic(SUPER_USER.0, SUPER_USER.1);
    let all = gw.anonymous("GET", "/v2/tenants", &[("Authorization", &su)], b"");
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(names(&all.json()), ["Tenant1", "Tenant2"]);
    assert_eq!(
        all.json()[1]["securityConnectionString"]["database"],
        "EdFi_Security_Tenant2"
    );
    assert_no_credentials(&all.body);
    // A tenant the API creates gets its connection strings from NewTenants.
    let created = gw.request("PUT", "/application/v2/tenant/Tenant3", &[], b"");
    assert!(created.status < 300, "{}", created.body);
    let three = gw.anonymous("GET", "/v2/tenants/Tenant3", &[("Authorization", &su)], b"");
    assert_eq!(three.status, 200, "{}", three.body);
    assert_eq!(
        three.json()["adminConnectionString"],
        json!({"host": "localhost", "database": "EdFi_Admin_Tenant3"})
    );
    assert_no_credentials(&three.body);

    // No credentials, or a forged token: 401 with a challenge.
    let none = gw.anonymous("GET", "/v2/tenants", &[], b"");
    assert_eq!(none.status, 401);
    assert!(none.header("www-authenticate").is_some());
    assert_eq!(
        none.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(bearer(&gw, "/v2/tenants", "tg1.AAAA.BBBB").status, 401);
    // A Tenant header is checked as Ed-Fi checks it.
    let bad = gw.anonymous(
        "GET",
        "/v2/tenants",
        &[("Authorization", &su), ("Tenant", "Nope")],
        b"",
    );
    assert_eq!(
        validation_failure(&bad, "Tenant"),
        ["Tenant not found with provided tenant id: Nope"]
    );
    assert!(!gw.log().contains("tenant1-secret"), "a secret in the log");
}

#[test]
fn tokens_list_every_tenant_when_they_cross_tenants() {
    let gw = Gateway::launch()
        .env("TenantGateway__Auth__TokensCrossTenants", "true")
        .start();
    let token = crate::tenancy::token_for(&gw, "Tenant2", "crossing-client");
    let list = bearer(&gw, "/v2/tenants", &token);
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(names(&list.json()), ["Tenant1", "Tenant2"]);
    assert_eq!(bearer(&gw, "/v2/tenants/Tenant1", &token).status, 200);
}

#[test]
fn registration_errors_answer_as_edfi() {
    let gw = Gateway::start();
    let t1 = [("Tenant", "Tenant1")];
    // Every field missing: one message for each.
    let r = form(
        &gw,
        "/connect/register",
        &t1,
        &[("ClientId", ""), ("ClientSecret", ""), ("DisplayName", "")],
    );
    assert_eq!(
        validation_failure(&r, "ClientId"),
        ["'Client Id' must not be empty."]
    );
    assert_eq!(
        validation_failure(&r, "ClientSecret"),
        ["'Client Secret' must not be empty."]
    );
    assert_eq!(
        validation_failure(&r, "DisplayName"),
        ["'Display Name' must not be empty."]
    );
    // Fields absent altogether are missing too.
    let r = form(&gw, "/connect/register", &t1, &[]);
    assert_eq!(validation_failure(&r, "ClientSecret").len(), 1);
    // A secret that breaks the rules (no special character; too short).
    for weak in ["NoSpecialCharacters0123456789abcdef", "Sh0rt!"] {
        let r = form(
            &gw,
            "/connect/register",
            &t1,
            &[
                ("ClientId", "weak"),
                ("ClientSecret", weak),
                ("DisplayName", "W"),
            ],
        );
        let messages = validation_failure(&r, "ClientSecret");
        assert!(
            messages[0].contains("must contain at least one lowercase letter, one uppercase letter, one number, and one special character, and must be 32 to 128 characters"),
            "{messages:?}"
        );
    }
    // An existing client id.
    let fields = [
        ("ClientId", "edfi-client"),
        ("ClientSecret", SECRET),
        ("DisplayName", "Ed-Fi"),
    ];
    assert_eq!(form(&gw, "/connect/register", &t1, &fields).status, 200);
    let again = form(&gw, "/connect/register", &t1, &fields);
    assert_eq!(
        validation_failure(&again, "ClientId"),
        ["ClientId edfi-client already exists"]
    );
    // A missing or unknown tenant is the Tenant field's failure.
    let r = form(&gw, "/connect/register", &[], &fields);
    assert!(validation_failure(&r, "Tenant")[0].starts_with("Tenant header is missing"));
    let r = form(&gw, "/connect/register", &[("Tenant", "Tenant9")], &fields);
    assert_eq!(
        validation_failure(&r, "Tenant"),
        ["Tenant not found with provided tenant id: Tenant9"]
    );
    // Not a form: 415 as a problem.
    let r = gw.anonymous(
        "POST",
        "/connect/register",
        &[("Tenant", "Tenant1"), ("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(r.status, 415);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
}

#[test]
fn token_errors_answer_as_edfi() {
    let gw = Gateway::start();
    let client = "token-errors";
    assert_eq!(
        form(
            &gw,
            "/connect/register",
            &[("Tenant", "Tenant1")],
            &[
                ("ClientId", client),
                ("ClientSecret", SECRET),
                ("DisplayName", "T")
            ],
        )
        .status,
        200
    );
    let token = |fields: &[(&str, &str)]| form(&gw, "/connect/token", &[], fields);
    let error = |r: &Reply| (r.status, r.json()["error"].as_str().unwrap().to_owned());
    let denied = |r: &Reply| {
        assert_eq!(error(r), (401, "invalid_client".to_owned()), "{}", r.body);
        assert_eq!(r.json()["error_description"], ACCESS_DENIED);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("www-authenticate").is_some());
        assert_eq!(r.header("cache-control"), Some("no-store"));
    };
    let invalid_scope = |r: &Reply| {
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        let body = r.json();
        assert_eq!(body["error"], "invalid_scope");
        assert_eq!(body["error_description"], SCOPE_MESSAGE);
        assert_eq!(body["status"], 400);
        assert_eq!(body["title"], "Invalid Scope");
    };

    // A wrong secret, an unknown client: access denied.
    denied(&token(&[
        ("client_id", client),
        ("client_secret", "Wr0ng!secret-of-the-right-length-00"),
        ("grant_type", "client_credentials"),
        ("scope", EDFI_SCOPE),
    ]));
    denied(&token(&[
        ("client_id", "no-such-client"),
        ("client_secret", SECRET),
        ("grant_type", "client_credentials"),
        ("scope", EDFI_SCOPE),
    ]));
    // A grant type other than client credentials: Ed-Fi denies access too.
    denied(&token(&[
        ("client_id", client),
        ("client_secret", SECRET),
        ("grant_type", "authorization_code"),
        ("scope", EDFI_SCOPE),
    ]));
    // An unknown scope is refused before the secret is checked.
    invalid_scope(&token(&[
        ("client_id", client),
        ("client_secret", "Wr0ng!secret-of-the-right-length-00"),
        ("grant_type", "client_credentials"),
        ("scope", "NOT_REAL/SCOPE"),
    ]));
    invalid_scope(&token(&[
        ("client_id", client),
        ("client_secret", SECRET),
        ("grant_type", "client_credentials"),
        ("scope", &format!("{EDFI_SCOPE} invalid_scope")),
    ]));
    // No scope: refused once the client is known.
    invalid_scope(&token(&[
        ("client_id", client),
        ("client_secret", SECRET),
        ("grant_type", "client_credentials"),
    ]));
    denied(&token(&[
        ("client_id", client),
        ("client_secret", "Wr0ng!secret-of-the-right-length-00"),
        ("grant_type", "client_credentials"),
    ]));
    // An empty secret, no grant type: invalid requests.
    let r = token(&[
        ("client_id", client),
        ("client_secret", ""),
        ("grant_type", "client_credentials"),
    ]);
    assert_eq!(error(&r), (400, "invalid_request".to_owned()), "{}", r.body);
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("client_secret")
    );
    let r = token(&[("client_id", client), ("client_secret", SECRET)]);
    assert_eq!(error(&r), (400, "invalid_request".to_owned()), "{}", r.body);
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("grant_type")
    );
    // Not a form: an invalid request too.
    let r = gw.anonymous(
        "POST",
        "/connect/token",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(error(&r), (400, "invalid_request".to_owned()), "{}", r.body);
    // A Tenant header naming no tenant: the Tenant field's failure.
    let r = form(
        &gw,
        "/connect/token",
        &[("Tenant", "bad name")],
        &[
            ("client_id", client),
            ("client_secret", SECRET),
            ("grant_type", "client_credentials"),
            ("scope", EDFI_SCOPE),
        ],
    );
    assert!(
        validation_failure(&r, "Tenant")[0].starts_with("Please provide a valid tenant id"),
        "{}",
        r.body
    );
    // And the right request still gets its token, with the scope asked for.
    let r = token(&[
        ("client_id", client),
        ("client_secret", SECRET),
        ("grant_type", "client_credentials"),
        ("scope", EDFI_SCOPE),
    ]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["scope"], EDFI_SCOPE);
    assert!(!gw.log().contains(SECRET), "a client secret in the log");
}

#[test]
fn tenant_resolution_errors_are_edfi_validation_failures() {
    let gw = Gateway::start();
    let traffic = |headers: &[(&str, &str)]| gw.anonymous("GET", "/db-info", headers, b"");
    assert!(validation_failure(&traffic(&[]), "Tenant")[0].starts_with("Tenant header is missing"));
    assert_eq!(
        validation_failure(&traffic(&[("Tenant", "Tenant9")]), "Tenant"),
        ["Tenant not found with provided tenant id: Tenant9"]
    );
    let invalid = validation_failure(&traffic(&[("Tenant", "no spaces")]), "Tenant");
    assert_eq!(
        invalid,
        [
            "Please provide a valid tenant id in the Tenant header: it may contain only letters, digits, '-' and '_'"
        ]
    );
    let twice = validation_failure(
        &traffic(&[("Tenant", "Tenant1"), ("Tenant", "Tenant2")]),
        "Tenant",
    );
    assert!(twice[0].ends_with("is given more than once"), "{twice:?}");
    let long = "a".repeat(51);
    assert!(validation_failure(&traffic(&[("Tenant", &long)]), "Tenant")[0].contains("at most 50"));
    // A request that resolves is served.
    assert_eq!(traffic(&[("Tenant", "tenant1")]).status, 200);
    // The config API keeps its own error body.
    let config = gw.get("/api/v1/tenants/Tenant9/config");
    assert_eq!(config.status, 404);
    assert_eq!(config.json()["code"], 404);

    // A Swagger UI request without the header, once the DefaultTenant is
    // deleted (the settings must name a tenant, so only an API takes it).
    let deleted = gw.request("DELETE", "/application/v2/tenant/Tenant1", &[], b"");
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let r = gw.anonymous(
        "GET",
        "/db-info",
        &[("Referer", &format!("http://{}/swagger/index.html", gw.addr))],
        b"",
    );
    let messages = validation_failure(&r, "Tenant");
    assert!(
        messages[0].starts_with("Please configure a valid default tenant id")
            && messages[0].contains("'Tenant1'"),
        "{messages:?}"
    );
}

#[test]
fn v1_paths_are_the_wrong_version_in_multi_tenant_mode() {
    let gw = Gateway::start();
    for (method, path) in [("GET", "/v1/tenants"), ("POST", "/v1/odsInstances/")] {
        let r = gw.anonymous(method, path, &[("Tenant", "Tenant1")], b"");
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(
            r.json(),
            json!({"message": "Wrong API version for this instance mode."})
        );
    }
    // /v2/tenant (no s) is no Ed-Fi endpoint of ours: the tenant's traffic.
    let r = gw.anonymous("GET", "/v2/tenant", &[("Tenant", "Tenant1")], b"");
    assert_eq!(r.status, 404, "{}", r.body);
}

/// Single-tenant settings (no `MultiTenancy`): the one tenant is `default`,
/// with the top-level connection strings.
const SINGLE_TENANT: &str = r#"{
  "ConnectionStrings": {
    "EdFi_Admin": "Data Source=sql.example,1433;Initial Catalog=EdFi_Admin;User Id=sa;Password=sa-password;Encrypt=false",
    "EdFi_Security": "Data Source=sql.example,1433;Initial Catalog=EdFi_Security;User Id=sa;Password=sa-password"
  },
  "Authentication": {"AllowRegistration": true},
  "TenantGateway": {
    "Auth": {"SuperUser": {"Name": "admin", "PasswordHash": "$argon2id$v=19$m=19456,t=2,p=1$kYu3pb6oY6rOZzM1LBre9w$QYupJ2n83VuCqLU6gcG+DEa6ydcgxcYw1dsPNtA++Fg"}},
    "Apps": {"db-info": {"Component": "builtin:tenant-app"}},
    "Routes": [{"Path": "/db-info", "App": "db-info"}]
  }
}"#;

#[test]
fn single_tenant_mode_has_the_default_tenant() {
    let gw = Gateway::launch().settings(SINGLE_TENANT).start();
    // No Tenant header needed, anywhere.
    let token = {
        let r = form(
            &gw,
            "/connect/register",
            &[],
            &[
                ("ClientId", "single"),
                ("ClientSecret", SECRET),
                ("DisplayName", "S"),
            ],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let r = form(
            &gw,
            "/connect/token",
            &[],
            &[
                ("client_id", "single"),
                ("client_secret", SECRET),
                ("grant_type", "client_credentials"),
                ("scope", EDFI_SCOPE),
            ],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["access_token"].as_str().unwrap().to_owned()
    };
    let expected = json!({
        "tenantName": "default",
        "adminConnectionString": {"host": "sql.example,1433", "database": "EdFi_Admin"},
        "securityConnectionString": {"host": "sql.example,1433", "database": "EdFi_Security"}
    });
    let list = bearer(&gw, "/v2/tenants", &token);
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json(), json!([expected]));
    assert_no_credentials(&list.body);
    let one = bearer(&gw, "/v2/tenants/default", &token);
    assert_eq!((one.status, one.json()), (200, expected));
    assert_eq!(bearer(&gw, "/v2/tenants/tenant1", &token).status, 404);
    // Tenant traffic needs no header; /v1/ paths are the tenant's (Ed-Fi's
    // version 1 mode is single-tenant).
    assert_eq!(gw.anonymous("GET", "/db-info", &[], b"").status, 200);
    let v1 = gw.anonymous("GET", "/v1/tenants", &[], b"");
    assert_ne!(
        v1.body,
        r#"{"message":"Wrong API version for this instance mode."}"#
    );
    // The landing document is the same.
    assert_eq!(gw.get("/").json()["applicationName"], "tenant-gateway");
}
