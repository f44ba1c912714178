//! The Hono Tenant API over AMQP 1.0 (`TenantGateway.Amqp`), driven by an
//! independent client: Apache Qpid Proton's Python binding
//! (`tests/all/hono_amqp_client.py`, Debian's `python3-qpid-proton`, which
//! `scripts/test` installs). Without it these tests say so loudly and skip;
//! with `TG_REQUIRE_TOOLS=1` (CI) they fail instead.

use crate::harness::{self, Gateway, SAMPLE_SETTINGS, SUPER_USER};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;

/// A Python that can import `proton`: `TG_PYTHON`, else Debian's, else `python3`.
fn python() -> Option<PathBuf> {
    let candidates = std::env::var_os("TG_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/python3", "python3"].map(PathBuf::from));
    let found = candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import proton"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        let why = "no Python with Qpid Proton (python3-qpid-proton) found; set TG_PYTHON";
        assert!(
            std::env::var_os("TG_REQUIRE_TOOLS").is_none(),
            "TG_REQUIRE_TOOLS is set and {why}"
        );
        eprintln!("\n*** SKIPPED: {why} ***\n");
    }
    found
}

fn gateway() -> Gateway {
    let mut s: Value = serde_json::from_str(SAMPLE_SETTINGS).unwrap();
    s["TenantGateway"]["Amqp"] = json!({"Listen": "127.0.0.1:0"});
    Gateway::launch().settings(&s.to_string()).start()
}

/// Runs the client's `steps` on one connection as `user`; what it saw.
fn run(python: &PathBuf, gw: &Gateway, user: &str, password: &str, steps: Value) -> Value {
    let plan = json!({
        "url": format!("amqp://{}", gw.amqp.expect("the AMQP listener")),
        "user": user,
        "password": password,
        "steps": steps,
    });
    run_plan(python, plan)
}

fn run_plan(python: &PathBuf, plan: Value) -> Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/all/hono_amqp_client.py");
    let out = Command::new(python)
        .arg(script)
        .arg(plan.to_string())
        .output()
        .expect("run the Proton client");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Creates a tenant through Doradus (`/_tenants`, XML).
fn create(gw: &Gateway, xml: &[u8]) {
    let r = gw.request(
        "POST",
        "/_tenants",
        &[("Content-Type", "application/xml")],
        xml,
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

/// The tenant Acme with the user alice (password `Al1ce-secret`).
fn create_acme_with_alice(gw: &Gateway) {
    create(
        gw,
        br#"<tenant name="Acme"><users><user name="alice" password="Al1ce-secret"/></users></tenant>"#,
    );
}

/// A self-signed server certificate for `localhost`, written to `dir`: the
/// certificate's and the key's files.
fn server_certificate(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, issued.cert.pem()).unwrap();
    std::fs::write(&key, issued.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn get(body: &str) -> Value {
    json!({"op": "get", "body": body})
}

#[test]
fn a_tenant_user_reads_its_own_tenant_and_no_other() {
    let Some(python) = python() else { return };
    let gw = gateway();
    // Made over HTTP while the gateway runs: answered over AMQP at once.
    create_acme_with_alice(&gw);
    let seen = run(
        &python,
        &gw,
        "alice@Acme",
        "Al1ce-secret",
        json!([
            get(r#"{"tenant-id":"Acme"}"#),
            get(r#"{"tenant-id":"Tenant1"}"#),
            get(r#"{"tenant-id":"NoSuchTenant"}"#),
        ]),
    );
    let steps = seen["steps"].as_array().unwrap();
    assert_eq!(steps[0]["status"], 200, "{seen}");
    assert_eq!(steps[0]["cache_control"], "max-age=60");
    assert_eq!(steps[0]["content_type"], "application/json");
    assert_eq!(steps[0]["correlated"], true);
    let doc: Value = serde_json::from_str(steps[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(doc["tenant-id"], "Acme");
    assert_eq!(doc["enabled"], true);
    assert_eq!(steps[1]["status"], 403, "{seen}");
    assert_eq!(steps[2]["status"], 404, "{seen}");
    assert_eq!(steps[2]["cache_control"], Value::Null);

    let refused = run(&python, &gw, "alice@Acme", "wrong", json!([]));
    let why = refused["connect_error"].as_str().unwrap_or_default();
    assert!(why.contains("unauthorized-access"), "{refused}");
    assert_eq!(harness::metric(&gw, "tg_amqp_sign_ins_refused_total"), 1);
}

#[test]
fn malformed_requests_and_links_get_the_specs_answers_on_a_connection_that_stays_usable() {
    let Some(python) = python() else { return };
    let gw = gateway();
    let t1 = r#"{"tenant-id":"Tenant1"}"#;
    let bad = |body: &str| json!({"op": "get", "body": body});
    let seen = run(
        &python,
        &gw,
        SUPER_USER.0,
        SUPER_USER.1,
        json!([
            json!({"op": "get", "body": t1, "subject": "add"}),
            bad("[1]"),
            bad("not json"),
            bad("{}"),
            bad(r#"{"tenant-id":"Tenant1","subject-dn":"CN=a"}"#),
            bad(r#"{"subject-dn":"not a distinguished name"}"#),
            json!({"op": "get", "body": t1, "reply_to": false}),
            json!({"op": "get", "body": t1, "id": false}),
            json!({"op": "sender", "target": "nowhere"}),
            json!({"op": "sender", "target": "tenant", "presettled": true}),
            json!({"op": "receiver", "source": "tenant"}),
            json!({"op": "receiver", "source": "tenant/twice"}),
            json!({"op": "receiver", "source": "tenant/twice"}),
            // More than a request link's credit (100): granted again as
            // the replies go out.
            json!({"op": "pipeline", "n": 250, "body": t1}),
            get(t1),
            json!({"op": "senders", "n": 17}),
        ]),
    );
    let steps = seen["steps"].as_array().unwrap();
    for (i, step) in steps[..6].iter().enumerate() {
        assert_eq!(step["status"], 400, "step {i}: {seen}");
        assert_eq!(step["correlated"], true, "step {i}");
        assert_eq!(step["content_type"], "text/plain", "step {i}");
    }
    assert_eq!(steps[6]["outcome"], "REJECTED", "{seen}");
    assert_eq!(steps[7]["outcome"], "REJECTED", "{seen}");
    let errors: Vec<&Value> = steps[8..13].iter().map(|s| &s["error"]).collect();
    assert_eq!(
        errors,
        [
            &json!("amqp:not-found"),
            &json!("amqp:precondition-failed"),
            &json!("amqp:invalid-field"),
            &Value::Null,
            &json!("amqp:illegal-state"),
        ],
        "{seen}"
    );
    assert_eq!(
        steps[13],
        json!({"answered": 250, "statuses": [200], "correlated": true}),
        "{seen}"
    );
    assert_eq!(steps[14]["status"], 200, "{seen}");
    // Request links per session are bounded (16, the one in use included).
    let errors = steps[15]["errors"].as_array().unwrap();
    let attached = errors.iter().filter(|e| e.is_null()).count();
    assert_eq!(attached, 15, "{seen}");
    assert!(
        errors
            .iter()
            .filter(|e| !e.is_null())
            .all(|e| e == "amqp:resource-limit-exceeded"),
        "{seen}"
    );
    // Counted by the reply's status; the connection closed, none stays open.
    let count = |status: u16| {
        harness::metric(
            &gw,
            &format!("tg_amqp_requests_total{{status=\"{status}\"}}"),
        )
    };
    assert_eq!((count(400), count(200)), (6, 251));
    assert!(harness::eventually(
        std::time::Duration::from_secs(30),
        || { harness::metric(&gw, "tg_amqp_connections_open") == 0 }
    ));
}

/// A client that reads no replies gets no more request credit once its
/// replies back up: the gateway stops taking its requests (bounded work and
/// memory), and answers every one once the client reads again.
#[test]
fn a_client_that_reads_no_replies_is_held_back_then_answered() {
    let Some(python) = python() else { return };
    let gw = gateway();
    let n = 500;
    let seen = run(
        &python,
        &gw,
        SUPER_USER.0,
        SUPER_USER.1,
        json!([{"op": "unread", "n": n, "credit": 5, "body": r#"{"tenant-id":"Tenant1"}"#}]),
    );
    let step = &seen["steps"][0];
    let settled = step["settled_before_reading"].as_u64().unwrap();
    // 5 replies sent, one waiting for credit, a queue of 64; a request past
    // those waits unsettled, and the link's credit (100) ends the rest.
    assert!(settled < 100, "{seen}");
    assert_eq!(step["answered"], n, "{seen}");
    assert_eq!(step["correlated"], true, "{seen}");
}

/// One model: what the HTTP APIs write is what AMQP answers, at once. A DN is
/// matched as an RFC 2253 name, however it is spelt.
#[test]
fn amqp_answers_what_the_http_apis_wrote_a_moment_ago() {
    let Some(python) = python() else { return };
    let gw = gateway();
    let mut doc = crate::hono::iot_document();
    let r = gw.put_json("/hono/v1/tenants/Iot", &doc.to_string());
    assert_eq!(r.status, 201, "{}", r.body);
    let by_dn = get(r#"{"subject-dn":"cn = devices, o = acme corporation"}"#);
    let seen = run(&python, &gw, SUPER_USER.0, SUPER_USER.1, json!([by_dn]));
    let step = &seen["steps"][0];
    assert_eq!(step["status"], 200, "{seen}");
    let over_amqp: Value = serde_json::from_str(step["body"].as_str().unwrap()).unwrap();
    let over_http = gw.get("/hono/v1/tenants/Iot").json();
    assert_eq!(over_amqp, over_http);
    assert_eq!(over_amqp["ext"], json!({"contract": "gold"}));

    doc["enabled"] = json!(false);
    let r = gw.put_json("/hono/v1/tenants/Iot", &doc.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    let by_id = get(r#"{"tenant-id":"Iot"}"#);
    let seen = run(&python, &gw, SUPER_USER.0, SUPER_USER.1, json!([by_id]));
    let disabled: Value = serde_json::from_str(seen["steps"][0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(disabled["enabled"], false, "{seen}");

    let r = gw.request("DELETE", "/_tenants/Iot", &[], b"");
    assert_eq!(r.status, 204, "{}", r.body);
    let seen = run(&python, &gw, SUPER_USER.0, SUPER_USER.1, json!([by_id]));
    assert_eq!(seen["steps"][0]["status"], 404, "{seen}");

    // Created, then deleted, through the Vespa API.
    let by_vespa = get(r#"{"tenant-id":"vespatenant"}"#);
    let r = gw.request("PUT", "/application/v2/tenant/vespatenant", &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = run(&python, &gw, SUPER_USER.0, SUPER_USER.1, json!([by_vespa]));
    assert_eq!(seen["steps"][0]["status"], 200, "{seen}");
    let r = gw.request("DELETE", "/application/v2/tenant/vespatenant", &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = run(&python, &gw, SUPER_USER.0, SUPER_USER.1, json!([by_vespa]));
    assert_eq!(seen["steps"][0]["status"], 404, "{seen}");
}

/// Polls over AMQP until `body` is answered with `status` (and, given, a
/// document with that `enabled`); how long that took.
fn awaited(
    python: &PathBuf,
    gw: &Gateway,
    body: &str,
    status: u16,
    enabled: Option<bool>,
) -> std::time::Duration {
    let mut step = json!({"op": "await", "body": body, "status": status, "within": 10.0});
    if let Some(e) = enabled {
        step["enabled"] = json!(e);
    }
    let seen = run(python, gw, SUPER_USER.0, SUPER_USER.1, json!([step]));
    let step = &seen["steps"][0];
    assert_eq!(step["timed_out"], false, "{seen}\n{}", gw.log());
    std::time::Duration::from_millis(step["waited_ms"].as_u64().unwrap())
}

/// One model across instances: a tenant created, disabled and deleted on
/// another instance sharing the PostgreSQL store is answered accordingly
/// over this one's AMQP listener as soon as the change is heard (NOTIFY).
#[test]
fn amqp_answers_what_another_instance_on_the_shared_store_wrote() {
    let Some(python) = python() else { return };
    let db = tenant_gateway::store::testing::TestSchema::new();
    let on_store = |launch: harness::Launch| {
        launch
            .env("TenantGateway__Store__Engine", "PostgreSql")
            .env("TenantGateway__Store__ConnectionString", db.connection())
            .start()
    };
    let mut s: Value = serde_json::from_str(SAMPLE_SETTINGS).unwrap();
    s["TenantGateway"]["Amqp"] = json!({"Listen": "127.0.0.1:0"});
    let (a, b) = (
        on_store(Gateway::launch()),
        on_store(Gateway::launch().settings(&s.to_string())),
    );
    let by_id = r#"{"tenant-id":"Shared"}"#;
    create(&a, br#"<tenant name="Shared"/>"#);
    let took = awaited(&python, &b, by_id, 200, Some(true));
    eprintln!("created on A, answered over B's AMQP in {took:?}");

    let mut doc = a.get("/hono/v1/tenants/Shared").json();
    doc["enabled"] = json!(false);
    let r = a.put_json("/hono/v1/tenants/Shared", &doc.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    awaited(&python, &b, by_id, 200, Some(false));

    let r = a.request("DELETE", "/_tenants/Shared?purge=true", &[], b"");
    assert_eq!(r.status, 204, "{}", r.body);
    awaited(&python, &b, by_id, 404, None);
}

/// One model with the settings file: a tenant added to it is answered over
/// AMQP once the file is reloaded, and 404 once it is taken out again.
#[test]
fn amqp_answers_what_a_settings_reload_changed() {
    let Some(python) = python() else { return };
    let gw = gateway();
    let by_id = r#"{"tenant-id":"Tenant3"}"#;
    let mut s: Value =
        serde_json::from_str(&std::fs::read_to_string(&gw.settings).unwrap()).unwrap();
    let before = s.to_string();
    s["Tenants"]["Tenant3"] = json!({"ConnectionStrings": {"EdFi_Admin": "Database=T3"}});
    std::fs::write(&gw.settings, s.to_string()).unwrap();
    let took = awaited(&python, &gw, by_id, 200, Some(true));
    eprintln!("added to the settings file, answered over AMQP in {took:?}");
    std::fs::write(&gw.settings, before).unwrap();
    awaited(&python, &gw, by_id, 404, None);
}

/// A graceful shutdown (SIGTERM) ends each AMQP connection with a `close`
/// frame, not by dropping the socket.
#[test]
fn shutdown_closes_amqp_connections_with_a_close_frame() {
    use std::io::{BufRead, BufReader};
    let Some(python) = python() else { return };
    let gw = gateway();
    let plan = json!({
        "url": format!("amqp://{}", gw.amqp.unwrap()),
        "user": SUPER_USER.0,
        "password": SUPER_USER.1,
        "steps": [{"op": "hold"}],
    });
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/all/hono_amqp_client.py");
    let mut client = Command::new(python)
        .arg(script)
        .arg(plan.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the Proton client");
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let ready = lines.next().expect("a line").unwrap();
    assert_eq!(ready, r#"{"ready": true}"#);
    gw.terminate();
    let result: Value = serde_json::from_str(&lines.next().expect("a result").unwrap()).unwrap();
    let _ = client.wait();
    assert_eq!(result["steps"][0]["end"], "closed", "{result}");
}

/// `amqps`: TLS from the first byte with the configured certificate, checked by
/// the client (chain and name); the same exchange inside it.
#[test]
fn the_listener_speaks_tls_from_the_first_byte() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = server_certificate(dir.path());
    let mut s: Value = serde_json::from_str(SAMPLE_SETTINGS).unwrap();
    s["TenantGateway"]["Amqp"] = json!({
        "Listen": "127.0.0.1:0",
        "CertificateFile": cert,
        "KeyFile": key,
    });
    let gw = Gateway::launch().settings(&s.to_string()).start();
    let url = format!("amqps://{}", gw.amqp.unwrap());
    let plan = |host: &str| {
        json!({
            "url": url, "user": SUPER_USER.0, "password": SUPER_USER.1,
            "ca": cert, "host": host,
            "steps": [get(r#"{"tenant-id":"Tenant1"}"#)],
        })
    };
    let seen = run_plan(&python, plan("localhost"));
    assert_eq!(seen["steps"][0]["status"], 200, "{seen}");
    // Another name than the certificate's: the client refuses the server.
    let wrong = run_plan(&python, plan("elsewhere.example"));
    assert!(wrong["connect_error"].is_string(), "{wrong}");
    // Plain AMQP on the TLS port gets no AMQP answer.
    let plain = json!({
        "url": format!("amqp://{}", gw.amqp.unwrap()),
        "user": SUPER_USER.0, "password": SUPER_USER.1, "steps": [],
    });
    assert!(run_plan(&python, plain)["connect_error"].is_string());
}

/// Lowers the gateway's open-file limit below every descriptor it may be
/// given next (a new descriptor takes the lowest free number, and 0–2 are
/// taken), so that its next `accept` fails (EMFILE); restores it when dropped.
struct OutOfFiles {
    pid: Option<rustix::process::Pid>,
    was: rustix::process::Rlimit,
}

impl OutOfFiles {
    fn now(gw: &Gateway) -> Self {
        use rustix::process::{Pid, Resource, Rlimit, getrlimit, prlimit};
        let pid = Pid::from_raw(gw.pid() as i32);
        let fd = format!("/proc/{}/fd", gw.pid());
        assert!((0..3).all(|n| std::fs::metadata(format!("{fd}/{n}")).is_ok()));
        // The hard limit stays: the child has ours.
        let low = Rlimit {
            current: Some(3),
            maximum: getrlimit(Resource::Nofile).maximum,
        };
        let was = prlimit(pid, Resource::Nofile, low).unwrap();
        Self { pid, was }
    }
}

impl Drop for OutOfFiles {
    fn drop(&mut self) {
        let was = rustix::process::Rlimit {
            current: self.was.current,
            maximum: self.was.maximum,
        };
        let _ = rustix::process::prlimit(self.pid, rustix::process::Resource::Nofile, was);
    }
}

/// `/readyz` covers the listeners: while the AMQP (or HTTP) listener cannot
/// accept connections (here: out of file descriptors) the gateway is not
/// ready, and says which; once it accepts again it is.
#[test]
fn readyz_says_when_a_listener_cannot_accept_connections() {
    let gw = gateway();
    let mut probe = harness::KeepAlive::open(gw.addr);
    assert_eq!(
        probe.get("/readyz"),
        (200, r#"{"status":"ready"}"#.to_owned())
    );
    let within = std::time::Duration::from_secs(30);
    for (addr, status) in [
        (
            gw.amqp.unwrap(),
            "amqp listener failing to accept connections",
        ),
        (gw.addr, "http listener failing to accept connections"),
    ] {
        let limit = OutOfFiles::now(&gw);
        // Queued by the kernel; the gateway's accept fails on it.
        let waiting = std::net::TcpStream::connect(addr).unwrap();
        let expected = (503, format!(r#"{{"status":"{status}"}}"#));
        let mut last = None;
        let failing = harness::eventually(within, || {
            last = Some(probe.get("/readyz"));
            last.as_ref() == Some(&expected)
        });
        assert!(failing, "{last:?}");
        drop(limit);
        let ready = harness::eventually(within, || {
            last = Some(probe.get("/readyz"));
            last.as_ref().is_some_and(|r| r.0 == 200)
        });
        assert!(ready, "{last:?}");
        drop(waiting);
    }
}

/// A CA for client certificates: its issuer and its certificate (PEM).
fn client_ca(name: &str) -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    (rcgen::Issuer::new(params, key), pem)
}

/// A client certificate for `common_name` from `issuer`, written to `dir`:
/// the certificate's and the key's files.
fn client_certificate(
    dir: &std::path::Path,
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    common_name: &str,
    file: &str,
) -> (PathBuf, PathBuf) {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    let (c, k) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// SASL EXTERNAL: with `ClientCaFile`, a client certificate from that CA signs
/// in as the identity its common name gives (the super-user's name, or
/// `user@tenant`), with no password; one naming no one is refused, one from
/// another CA fails the handshake, and PLAIN still works without one.
#[test]
fn client_certificates_sign_in_with_sasl_external() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = server_certificate(dir.path());
    let (ca, ca_pem) = client_ca("Gateway clients");
    let ca_file = dir.path().join("clients-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let (rogue, _) = client_ca("Someone else");
    let alice = client_certificate(dir.path(), &ca, "alice@Acme", "alice");
    let admin = client_certificate(dir.path(), &ca, SUPER_USER.0, "admin");
    let nobody = client_certificate(dir.path(), &ca, "nobody@Acme", "nobody");
    let forged = client_certificate(dir.path(), &rogue, SUPER_USER.0, "forged");

    let mut s: Value = serde_json::from_str(SAMPLE_SETTINGS).unwrap();
    s["TenantGateway"]["Amqp"] = json!({
        "Listen": "127.0.0.1:0",
        "CertificateFile": cert,
        "KeyFile": key,
        "ClientCaFile": ca_file,
    });
    let gw = Gateway::launch().settings(&s.to_string()).start();
    create_acme_with_alice(&gw);
    let url = format!("amqps://{}", gw.amqp.unwrap());
    let steps = json!([
        get(r#"{"tenant-id":"Acme"}"#),
        get(r#"{"tenant-id":"Tenant1"}"#)
    ]);
    let external = |(c, k): &(PathBuf, PathBuf)| {
        run_plan(
            &python,
            json!({
                "url": url, "ca": cert, "host": "localhost", "cert": c, "key": k,
                "mechs": "EXTERNAL", "steps": steps,
            }),
        )
    };
    let statuses = |seen: &Value| -> Vec<Value> {
        let steps = seen["steps"].as_array().unwrap_or_else(|| panic!("{seen}"));
        steps.iter().map(|s| s["status"].clone()).collect()
    };
    assert_eq!(statuses(&external(&alice)), [json!(200), json!(403)]);
    assert_eq!(statuses(&external(&admin)), [json!(200), json!(200)]);
    let refused = external(&nobody);
    let why = refused["connect_error"].as_str().unwrap_or_default();
    assert!(why.contains("unauthorized-access"), "{refused}");
    assert_eq!(harness::metric(&gw, "tg_amqp_sign_ins_refused_total"), 1);
    // Not from the configured CA: the TLS handshake fails.
    assert!(external(&forged)["connect_error"].is_string());
    // No certificate: PLAIN as before.
    let plain = run_plan(
        &python,
        json!({
            "url": url, "ca": cert, "host": "localhost",
            "user": "alice@Acme", "password": "Al1ce-secret", "steps": steps,
        }),
    );
    assert_eq!(statuses(&plain), [json!(200), json!(403)]);
}
