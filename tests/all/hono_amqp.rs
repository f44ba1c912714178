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

fn get(body: &str) -> Value {
    json!({"op": "get", "body": body})
}

#[test]
fn a_tenant_user_reads_its_own_tenant_and_no_other() {
    let Some(python) = python() else { return };
    let gw = gateway();
    // Made over HTTP while the gateway runs: answered over AMQP at once.
    let r = gw.request(
        "POST",
        "/_tenants",
        &[("Content-Type", "application/xml")],
        br#"<tenant name="Acme"><users><user name="alice" password="Al1ce-secret"/></users></tenant>"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
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
            json!({"op": "pipeline", "n": 100, "body": t1}),
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
        json!({"answered": 100, "statuses": [200], "correlated": true}),
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
    assert_eq!((count(400), count(200)), (6, 101));
    assert!(harness::eventually(
        std::time::Duration::from_secs(30),
        || { harness::metric(&gw, "tg_amqp_connections_open") == 0 }
    ));
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
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, issued.cert.pem()).unwrap();
    std::fs::write(&key, issued.signing_key.serialize_pem()).unwrap();
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
