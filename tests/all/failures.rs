//! Failure behaviour: component traps, deadlines and memory caps fail only their
//! request; oversized bodies get 413; secrets never reach responses or logs.

use crate::harness::{FAULTY_VALIDATOR, Gateway, SAMPLE_SETTINGS, SUPER_USER, basic};

const PATH: &str = "/api/v1/tenants/Tenant1/config";

/// A gateway running the fault-injecting validator, with short limits.
fn faulty_gateway() -> (Gateway, tempfile::TempDir) {
    let components = tempfile::tempdir().unwrap();
    std::fs::copy(FAULTY_VALIDATOR, components.path().join("validator.wasm")).unwrap();
    let mut settings: serde_json::Value = serde_json::from_str(SAMPLE_SETTINGS).unwrap();
    // Short enough that a spinning guest is cut off quickly, long enough that
    // the ordinary calls after it (a config-API call running the validator)
    // end in time on a loaded machine with a debug build: at 500 ms the
    // update after `fault:spin` sometimes hit its own deadline.
    settings["TenantGateway"]["Limits"]["ComponentTimeoutMs"] = 2000.into();
    settings["TenantGateway"]["Limits"]["ComponentMemoryMib"] = 32.into();
    let gw = Gateway::launch()
        .settings(&settings.to_string())
        .components(components.path())
        .start();
    (gw, components)
}

fn assert_internal_error(r: &crate::harness::Reply) {
    assert_eq!(r.status, 500, "{}", r.body);
    let b = r.json();
    assert_eq!(b["error"], "Internal Server Error");
    assert_eq!(b["code"], 500);
    let message = b["message"].as_str().unwrap();
    // The answer names the component that failed: the validator, not the config
    // API that called it.
    assert!(message.contains("in component validator"), "{b}");
    // It names the request's id, so an operator can find its log lines.
    let id = r.header("x-request-id").expect("x-request-id");
    assert!(message.ends_with(&format!("(request {id})")), "{b}");
    // No guest detail (panic text, backtrace) leaks to the client.
    assert!(!r.body.contains("fault injected"), "{}", r.body);
}

#[test]
fn trap_deadline_and_memory_cap_fail_only_their_request() {
    let (gw, _c) = faulty_gateway();
    for fault in ["fault:trap", "fault:spin", "fault:hog"] {
        let before = gw.get(PATH).body;
        let started = std::time::Instant::now();
        let r = gw.put_json(PATH, &format!(r#"{{"custom_settings":{{"x":"{fault}"}}}}"#));
        assert_internal_error(&r);
        assert!(
            started.elapsed().as_secs() < 10,
            "{fault} took {:?}",
            started.elapsed()
        );
        // The next request is served normally, and nothing was written.
        assert_eq!(gw.get(PATH).body, before, "after {fault}");
        let ok = gw.put_json(PATH, r#"{"custom_settings":{"x":"fine"}}"#);
        assert_eq!(ok.status, 200, "after {fault}: {}", ok.body);
        let undo = gw.put_json(PATH, r#"{"custom_settings":{"x":null}}"#);
        assert_eq!(undo.status, 200);
    }
    let log = gw.log();
    assert!(log.contains("component failed"), "{log}");
    let metrics = gw.get("/metrics").body;
    assert!(
        metrics.contains("tg_component_failures_total{component=\"validator\"} 3"),
        "{metrics}"
    );
    // The gateway keeps serving everyone: 10,000 following requests succeed.
    let gw = std::sync::Arc::new(gw);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let gw = gw.clone();
            std::thread::spawn(move || {
                let path = if w % 2 == 0 {
                    PATH
                } else {
                    "/api/v1/tenants/Tenant2/features"
                };
                (0..2_500).filter(|_| gw.get(path).status != 200).count()
            })
        })
        .collect();
    let failed: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(failed, 0, "of 10,000 requests after the faults");
}

/// Components that compute without end hold no worker thread: while four
/// tenants' updates loop in them (each until its deadline), another tenant's
/// reads and updates and `/healthz` are all answered, every one of them before
/// any looping request has ended. (With guests trapping only at their
/// deadline, the loops held both worker threads of a 2-core machine and
/// nothing else was answered until the first of them ended.) One tenant's
/// updates run one at a time, so the four loops are four tenants'.
#[test]
fn a_looping_component_stalls_no_other_tenant() {
    const LOOPING: [&str; 4] = ["Tenant1", "Tenant3", "Tenant4", "Tenant5"];
    let components = tempfile::tempdir().unwrap();
    let mut settings: serde_json::Value = serde_json::from_str(SAMPLE_SETTINGS).unwrap();
    settings["TenantGateway"]["Limits"]["ComponentTimeoutMs"] = 15000.into();
    for name in LOOPING {
        std::fs::copy(
            FAULTY_VALIDATOR,
            components.path().join(format!("validator@{name}.wasm")),
        )
        .unwrap();
        if name != "Tenant1" {
            settings["Tenants"][name] = settings["Tenants"]["Tenant1"].clone();
            settings["TenantGateway"]["Tenants"][name] =
                settings["TenantGateway"]["Tenants"]["Tenant1"].clone();
        }
    }
    let gw = Gateway::launch()
        .settings(&settings.to_string())
        .components(components.path())
        .start();
    for name in LOOPING {
        let own = gw.get(&format!("/_components/validator@{name}"));
        assert_eq!(own.status, 200, "{name}: {}", own.body);
    }

    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        let loops: Vec<_> = LOOPING
            .iter()
            .map(|name| {
                let (gw, path) = (&gw, format!("/api/v1/tenants/{name}/config"));
                s.spawn(move || {
                    let r = gw.put_json(&path, r#"{"custom_settings":{"x":"fault:spin"}}"#);
                    (r, started.elapsed())
                })
            })
            .collect();
        // All four are running in the component before the others start.
        let running = crate::harness::eventually(std::time::Duration::from_secs(60), || {
            gw.get("/metrics")
                .body
                .contains("\ntg_component_calls_in_flight 4\n")
        });
        assert!(running, "the looping requests never ran together");
        let mut others = Vec::new();
        for i in 0..5 {
            let health = gw.get("/healthz");
            let read = gw.get("/api/v1/tenants/Tenant2/config");
            let update = gw.put_json(
                "/api/v1/tenants/Tenant2/config",
                &format!(r#"{{"performance":{{"cache_size_mb":{}}}}}"#, 1024 + i),
            );
            for r in [health, read, update] {
                assert_eq!(r.status, 200, "{}", r.body);
            }
            others.push(started.elapsed());
        }
        let last_other = *others.last().unwrap();
        let first_loop_end = loops
            .into_iter()
            .map(|h| {
                let (r, at) = h.join().unwrap();
                assert_internal_error(&r);
                at
            })
            .min()
            .unwrap();
        assert!(
            last_other < first_loop_end,
            "the other tenant's 15 requests ended at {last_other:?}, after a looping request \
             ended at {first_loop_end:?}"
        );
    });
}

#[test]
fn oversized_body_gets_413() {
    let gw = Gateway::start();
    let big = format!(
        r#"{{"custom_settings":{{"blob":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    let r = gw.put_json(PATH, &big);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["code"], 413);
    // Without Content-Length (chunked), the limit is enforced while reading.
    let mut raw = format!(
        "PUT {PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        basic(SUPER_USER.0, SUPER_USER.1)
    )
    .into_bytes();
    for chunk in big.as_bytes().chunks(8192) {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let r = gw.raw(&raw);
    assert_eq!(r.status, 413, "{}", r.body);
    // Just under the limit is fine.
    let fits = format!(
        r#"{{"custom_settings":{{"blob":"{}"}}}}"#,
        "x".repeat(60_000)
    );
    assert_eq!(gw.put_json(PATH, &fits).status, 200);
}

#[test]
fn connection_strings_never_reach_responses_or_logs() {
    let gw = Gateway::start();
    let mut bodies = String::new();
    for path in [
        "/api/v1/tenants/Tenant1/config",
        "/api/v1/tenants/Tenant1/features",
        "/api/v1/tenants/Tenant2/config",
        "/api/v1/tenants/nobody/config",
        "/healthz",
        "/nothing-here",
    ] {
        bodies.push_str(&gw.get(path).body);
    }
    bodies.push_str(
        &gw.put_json(PATH, r#"{"performance":{"cache_size_mb":-1}}"#)
            .body,
    );
    let log = gw.log();
    for secret in [
        "tenant1-secret",
        "tenant2-secret",
        "Password=",
        "EdFi_Admin_Tenant1",
    ] {
        assert!(!bodies.contains(secret), "response leaked {secret}");
        assert!(!log.contains(secret), "log leaked {secret}");
    }
}

#[test]
fn health_needs_no_tenant_and_unknown_paths_are_404() {
    let gw = Gateway::start();
    let r = gw.get("/healthz");
    assert_eq!((r.status, r.json()["status"].clone()), (200, "ok".into()));
    assert!(r.header("x-request-id").is_some());
    let r = gw.get("/.well-known/nothing");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], 404);
}

#[test]
fn bad_settings_stop_start_up_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("appsettings.json");
    std::fs::write(
        &file,
        r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"bad name!":{}}}"#,
    )
    .unwrap();
    let out = crate::harness::serve(&file, &dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("settings")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("Tenants.bad name!"), "{err}");
}

#[test]
fn environment_overrides_the_settings_file() {
    let gw = Gateway::launch()
        .env("TenantGateway__Limits__MaxBodyBytes", "200")
        .env(
            "Tenants__Tenant3__ConnectionStrings__EdFi_Admin",
            "Database=EdFi_Admin_Tenant3",
        )
        .start();
    let body = format!(r#"{{"custom_settings":{{"k":"{}"}}}}"#, "x".repeat(300));
    assert_eq!(gw.put_json(PATH, &body).status, 413);
    assert_eq!(gw.get("/api/v1/tenants/Tenant3/config").status, 200);
}

/// A gateway started with `--exit-with-parent` (as every test's is) ends when
/// what started it ends, however that ends: here the starting thread simply
/// returns without stopping it, as a killed test would.
#[test]
fn a_gateway_never_outlives_what_started_it() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("appsettings.json");
    std::fs::write(&settings, crate::harness::SAMPLE_SETTINGS).unwrap();
    let data = dir.path().join("data");
    let mut child = std::thread::spawn(move || {
        let mut child = crate::harness::serve(&settings, &data)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Serving (so past setting the signal) before this thread ends.
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        assert!(line.contains("listening"), "{line}");
        child
    })
    .join()
    .unwrap();
    let ended = crate::harness::eventually(std::time::Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(ended, "the gateway outlived the thread that started it");
}

/// Request ids are unique across instances (the instance's random part, then
/// the request's number), and a request's log lines carry its id with what was
/// learnt serving it (route, tenant, status). (Before: a per-process counter,
/// the same ids on every instance.)
#[test]
fn request_ids_are_unique_across_instances_and_carried_by_the_log() {
    use crate::harness::eventually;
    use std::time::Duration;
    let (a, b) = (Gateway::start(), Gateway::start());
    let id = |gw: &Gateway| {
        gw.get("/healthz")
            .header("x-request-id")
            .expect("x-request-id")
            .to_owned()
    };
    let (a1, a2, b1) = (id(&a), id(&a), id(&b));
    let instance = |id: &str| id.split_once('-').expect("instance-number").0.to_owned();
    assert_ne!(a1, a2);
    assert_eq!(instance(&a1), instance(&a2));
    assert_ne!(instance(&a1), instance(&b1), "{a1} and {b1}");
    assert_eq!(instance(&a1).len(), 16, "{a1}");

    let r = a.get("/api/v1/tenants/Tenant1/config");
    assert_eq!(r.status, 200, "{}", r.body);
    let rid = r.header("x-request-id").unwrap().to_owned();
    let logged = || {
        a.log().lines().any(|l| {
            l.contains(&format!("id={rid} "))
                && l.contains("served")
                && l.contains("route=\"config\"")
                && l.contains("tenant=\"Tenant1\"")
                && l.contains("status=200")
        })
    };
    assert!(
        eventually(Duration::from_secs(5), logged),
        "no served line for {rid}:\n{}",
        a.log()
    );
    // Each line starts with its time: RFC 3339, UTC, microseconds.
    let log = a.log();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("id={rid} ")) && l.contains("served"))
        .unwrap();
    let time = line.split(' ').next().unwrap();
    assert!(
        time.len() == 27 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
        "{line}"
    );
    let at = humantime::parse_rfc3339(time).unwrap_or_else(|e| panic!("{e}: {line}"));
    let age = std::time::SystemTime::now()
        .duration_since(at)
        .expect("a time in the past");
    assert!(age < Duration::from_secs(300), "{line}");
}

/// A log reader that stops reading (a stuck collector: standard error a pipe
/// no one reads) does not stall the gateway: lines queue for the log thread,
/// past its bound they are dropped and counted, and every request is answered.
#[test]
fn a_stuck_log_reader_does_not_stall_requests() {
    let gw = Gateway::launch().unread_stderr().start();
    // Far more log than a pipe holds (64 KiB) and than the log queue (8,192
    // lines): each request logs its access line, and debug lines.
    let mut client = crate::harness::KeepAlive::open(gw.addr);
    for i in 0..12_000 {
        assert_eq!(client.get("/healthz").0, 200, "request {i}");
    }
    let dropped = crate::harness::metric(&gw, "tg_log_lines_dropped_total");
    assert!(dropped > 0, "nothing was dropped: the pipe never filled?");
}
