//! The same component files on the other hosts they are meant for: the
//! repository's `spin.toml` on a real Spin, answering the config API exactly as
//! the gateway does, and the sample tenant app on Spin and on `wasmtime serve`.
//!
//! Spin and wasmtime-cli come from no package registry: a test finds each
//! through `TG_SPIN` / `TG_WASMTIME`, then `spin` / `wasmtime` on `PATH`, then
//! `../shared/tools/` beside the repository, and says loudly when it skips
//! because none is there. With `TG_REQUIRE_TOOLS=1` (CI sets it) a missing tool
//! fails the test instead.

use crate::harness::{self, Gateway, Reply, request_to};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

include!("../../host/build_env.rs");

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A third-party runtime, found as the module documentation says.
fn tool(name: &str, var: &str) -> Option<PathBuf> {
    let found = std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
        .or_else(|| {
            let p = repo().join("../shared/tools").join(name);
            p.is_file().then_some(p)
        });
    if found.is_none() {
        let why = format!(
            "no {name} found (set {var}, put `{name}` on PATH, or keep ../shared/tools/{name} \
             beside the repository)"
        );
        assert!(
            std::env::var_os("TG_REQUIRE_TOOLS").is_none(),
            "TG_REQUIRE_TOOLS is set and {why}"
        );
        eprintln!("\n*** SKIPPED: {why} ***\n");
    }
    found
}

/// A server process of another host in a process group of its own, the whole
/// group killed when dropped, so a failing test leaves nothing running (`spin
/// up` runs its HTTP trigger as a child process, which killing `spin` alone
/// would leave behind).
struct Served {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Served {
    /// Starts `cmd` with its output in `log` and waits until it says where it
    /// serves (Spin: `Serving http://127.0.0.1:PORT`, wasmtime: `Serving HTTP on
    /// http://127.0.0.1:PORT/`): both listen on the port 0 gives them.
    fn start(mut cmd: Command, log: PathBuf) -> Served {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let out = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let mut child = cmd.spawn().expect("start the host");
        let mut addr = None;
        // Generous: the host compiles every component before it serves, on a
        // machine that may be running the rest of the suite.
        let ready = harness::eventually(Duration::from_secs(300), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            addr = text.split("http://127.0.0.1:").nth(1).and_then(|rest| {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                format!("127.0.0.1:{port}").parse().ok()
            });
            addr.is_some() || matches!(child.try_wait(), Ok(Some(_)))
        });
        let served = Served {
            child,
            addr: addr.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
            log,
        };
        assert!(
            ready && served.addr.port() != 0,
            "the host did not start serving; its output:\n{}",
            served.output()
        );
        served
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sample settings' connection string `name` of `tenant`.
fn connection_string(tenant: &str, name: &str) -> String {
    let settings: Value = serde_json::from_str(harness::SAMPLE_SETTINGS).unwrap();
    settings["Tenants"][tenant]["ConnectionStrings"][name]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The repository's `spin.toml` and `runtime-config.toml`, copied into `dir`
/// as they are but for where the built components are (cargo's target
/// directory may not be `target/`), the `tenants` store seeded from the sample
/// settings with `tenant-gateway spin-seed`, and `spin up` serving them with
/// Tenant1's settings for the tenant app.
fn spin_up(spin: &Path, dir: &Path) -> Served {
    let built = Path::new(harness::CONFIG_API).parent().unwrap();
    let manifest = std::fs::read_to_string(repo().join("spin.toml")).unwrap();
    let prefix = "target/components/wasm32-wasip2/component/";
    assert!(
        manifest.contains(prefix),
        "spin.toml no longer names {prefix}"
    );
    let manifest = manifest.replace(prefix, &format!("{}/", built.display()));
    std::fs::write(dir.join("spin.toml"), manifest).unwrap();
    std::fs::copy(
        repo().join("runtime-config.toml"),
        dir.join("runtime-config.toml"),
    )
    .unwrap();
    let settings = dir.join("appsettings.json");
    std::fs::write(&settings, harness::SAMPLE_SETTINGS).unwrap();
    let seed = Command::new(harness::BINARY)
        .arg("spin-seed")
        .arg("--settings")
        .arg(&settings)
        .arg("--runtime-config")
        .arg(dir.join("runtime-config.toml"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&seed.stdout);
    assert!(
        seed.status.success(),
        "spin-seed: {said}{}",
        String::from_utf8_lossy(&seed.stderr)
    );
    assert!(said.contains("seeded 2 tenant(s)"), "{said}");
    assert!(!said.contains("secret"), "{said}");

    let mut cmd = Command::new(spin);
    cmd.current_dir(dir)
        .arg("up")
        .arg("-f")
        .arg(dir.join("spin.toml"))
        .arg("--runtime-config-file")
        .arg(dir.join("runtime-config.toml"))
        .args(["--listen", "127.0.0.1:0"])
        .arg("-e")
        .arg("TENANT_NAME=Tenant1")
        .arg("-e")
        .arg(format!(
            "EDFI_ADMIN={}",
            connection_string("Tenant1", "EdFi_Admin")
        ))
        .arg("-e")
        .arg(format!(
            "EDFI_SECURITY={}",
            connection_string("Tenant1", "EdFi_Security")
        ))
        .env("TG_TOOLS_CACHE", tools_cache())
        .env_remove("RUST_LOG");
    temp_inside(&mut cmd, dir);
    Served::start(cmd, dir.join("spin.log"))
}

/// Spin's own temporary directories (`spinup-*`, which a killed `spin up`
/// leaves behind) go inside the test's directory, and are removed with it.
fn temp_inside(cmd: &mut Command, dir: &Path) {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    cmd.env("TMPDIR", tmp);
}

/// Where the tool scripts unpack their binaries: under cargo's target
/// directory, so a test run writes nothing to the user's home.
fn tools_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("tools")
}

/// A JSON body with every timestamp (any string that is RFC 3339) masked; other
/// bodies as they are.
fn masked(body: &str) -> String {
    fn walk(v: &mut Value) {
        match v {
            Value::String(s) if humantime::parse_rfc3339(s).is_ok() => {
                *s = "<timestamp>".into();
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            Value::Object(map) => map.values_mut().for_each(walk),
            _ => {}
        }
    }
    match serde_json::from_str::<Value>(body) {
        Ok(mut v) => {
            walk(&mut v);
            v.to_string()
        }
        Err(_) => body.to_owned(),
    }
}

/// What of a response must be the same on both hosts.
fn essence(r: &Reply) -> (u16, Option<String>, Option<String>, String) {
    (
        r.status,
        r.header("content-type").map(str::to_owned),
        r.header("allow").map(str::to_owned),
        masked(&r.body),
    )
}

const JSON: &[(&str, &str)] = &[("Content-Type", "application/json")];

/// One request of the parity list, and the status the spec gives it.
struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    status: u16,
}

fn case(what: &'static str, method: &'static str, path: &str, status: u16) -> Case {
    Case {
        what,
        method,
        path: path.to_owned(),
        headers: &[],
        body: "",
        status,
    }
}

fn put(what: &'static str, tenant: &str, body: &'static str, status: u16) -> Case {
    Case {
        what,
        method: "PUT",
        path: format!("/api/v1/tenants/{tenant}/config"),
        headers: JSON,
        body,
        status,
    }
}

/// Every HeliosDB example and error case, in an order that changes state the
/// same way on both hosts.
fn cases(tenant1_id: &str) -> Vec<Case> {
    let t1 = "/api/v1/tenants/Tenant1/config";
    vec![
        case("defaults", "GET", t1, 200),
        case(
            "defaults, Pro tenant",
            "GET",
            "/api/v1/tenants/Tenant2/config",
            200,
        ),
        case(
            "name in lower case",
            "GET",
            "/api/v1/tenants/tenant1/config",
            200,
        ),
        case(
            "name in upper case",
            "GET",
            "/api/v1/tenants/TENANT1/config",
            200,
        ),
        case(
            "by UUID",
            "GET",
            &format!("/api/v1/tenants/{tenant1_id}/config"),
            200,
        ),
        case(
            "by UUID in upper case",
            "GET",
            &format!("/api/v1/tenants/{}/config", tenant1_id.to_uppercase()),
            200,
        ),
        case(
            "features, Enterprise",
            "GET",
            "/api/v1/tenants/Tenant1/features",
            200,
        ),
        case(
            "features, Pro",
            "GET",
            "/api/v1/tenants/tenant2/features",
            200,
        ),
        put(
            "example 1: performance",
            "Tenant1",
            r#"{"performance":{"cache_size_mb":2048,"max_parallel_workers":16,"enable_adaptive_indexing":true}}"#,
            200,
        ),
        case("after example 1", "GET", t1, 200),
        put(
            "example 2: HIPAA",
            "Tenant1",
            r#"{"security":{"encryption_at_rest":true,"enable_audit_log":true,"password_complexity":4,"require_mfa":true},"compliance":{"hipaa":true}}"#,
            200,
        ),
        put(
            "HIPAA without encryption at rest",
            "Tenant1",
            r#"{"security":{"encryption_at_rest":false}}"#,
            400,
        ),
        put(
            "HIPAA with weak passwords",
            "TENANT1",
            r#"{"security":{"password_complexity":2}}"#,
            400,
        ),
        put(
            "example 3: multi-region replication",
            "Tenant1",
            r#"{"replication":{"enabled":true,"mode":"async","regions":["us-east-1","us-west-2","eu-west-1"],"consistency_level":"eventual","enable_auto_failover":true,"failover_priority":["us-east-1","us-west-2","eu-west-1"]}}"#,
            200,
        ),
        put(
            "replication to an unknown region",
            "Tenant1",
            r#"{"replication":{"regions":["Mars"]}}"#,
            400,
        ),
        put(
            "cache too large",
            "Tenant1",
            r#"{"performance":{"cache_size_mb":200000}}"#,
            400,
        ),
        case(
            "features after replication",
            "GET",
            "/api/v1/tenants/Tenant1/features",
            200,
        ),
        case("after the rejections", "GET", t1, 200),
        put(
            "GDPR outside the EU",
            "Tenant2",
            r#"{"compliance":{"gdpr":true,"enable_rtbf":true,"enable_anonymization":true,"data_residency":["US"]}}"#,
            400,
        ),
        put(
            "MFA on, Pro tenant",
            "Tenant2",
            r#"{"security":{"require_mfa":true}}"#,
            200,
        ),
        case(
            "features after MFA",
            "GET",
            "/api/v1/tenants/Tenant2/features",
            200,
        ),
        put(
            "malformed JSON",
            "Tenant1",
            r#"{"performance":{"cache_size_mb":2048"#,
            400,
        ),
        put(
            "wrong types",
            "Tenant1",
            r#"{"performance":{"cache_size_mb":"2048"},"security":{"require_mfa":"yes"}}"#,
            400,
        ),
        put(
            "unknown fields",
            "Tenant1",
            r#"{"performance":{"cache_size":1},"tuning":{}}"#,
            400,
        ),
        put("not an object", "Tenant1", "[1, 2]", 400),
        case(
            "unknown tenant",
            "GET",
            "/api/v1/tenants/nobody/config",
            404,
        ),
        put(
            "unknown tenant, PUT",
            "nobody",
            r#"{"security":{"require_mfa":true}}"#,
            404,
        ),
        case(
            "unknown tenant, features",
            "GET",
            "/api/v1/tenants/nobody/features",
            404,
        ),
        case(
            "unknown UUID",
            "GET",
            "/api/v1/tenants/00000000-0000-0000-0000-000000000000/config",
            404,
        ),
        case("DELETE", "DELETE", t1, 405),
        case("POST", "POST", t1, 405),
        case(
            "PUT on features",
            "PUT",
            "/api/v1/tenants/Tenant1/features",
            405,
        ),
        Case {
            what: "PUT as text/plain",
            method: "PUT",
            path: t1.to_owned(),
            headers: &[("Content-Type", "text/plain")],
            body: "{}",
            status: 415,
        },
        // No Content-Type is read as JSON: an empty body is malformed JSON.
        case("PUT without a media type or body", "PUT", t1, 400),
        case(
            "unknown path under a tenant",
            "GET",
            "/api/v1/tenants/Tenant1/nothing",
            404,
        ),
        case("final state", "GET", t1, 200),
    ]
}

/// Spin serves the repository's `spin.toml` (config API composed with its two
/// plugin components by Spin itself), and every request of the list gets the
/// same status, media type and body as from the gateway with the same tenants;
/// eight concurrent updates lose nothing on either. Then the tenant app.
#[test]
fn spin_serves_the_config_api_as_the_gateway_does() {
    let Some(spin) = tool("spin", "TG_SPIN") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let served = spin_up(&spin, dir.path());
    let gw = Gateway::start();
    let id = gw.get("/api/v1/tenants/Tenant1/config").json()["tenant_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut differences = Vec::new();
    for c in cases(&id) {
        let on_gw = gw.request(c.method, &c.path, c.headers, c.body.as_bytes());
        let on_spin = request_to(served.addr, c.method, &c.path, c.headers, c.body.as_bytes());
        assert_eq!(
            on_gw.status, c.status,
            "{}: the gateway answered {}",
            c.what, on_gw.body
        );
        if essence(&on_gw) != essence(&on_spin) {
            differences.push(format!(
                "{} ({} {}):\n  gateway: {:?}\n  spin:    {:?}",
                c.what,
                c.method,
                c.path,
                essence(&on_gw),
                essence(&on_spin)
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of the requests differ:\n{}\nSpin's output:\n{}",
        differences.len(),
        differences.join("\n"),
        served.output()
    );

    // Concurrent partial updates of different fields of one tenant: all kept.
    let fields = [
        ("performance", "cache_size_mb", "4096"),
        ("performance", "query_timeout_secs", "120"),
        ("security", "session_timeout_mins", "45"),
        ("backup", "frequency_hours", "12"),
        ("backup", "retention_days", "60"),
        ("replication", "max_lag_seconds", "30"),
        ("compliance", "default_retention_days", "400"),
        ("performance", "max_parallel_workers", "32"),
    ];
    let spin_addr = served.addr;
    std::thread::scope(|s| {
        for (section, field, value) in fields {
            let gw = &gw;
            s.spawn(move || {
                let body = format!(r#"{{"{section}":{{"{field}":{value}}}}}"#);
                let path = "/api/v1/tenants/Tenant2/config";
                let a = gw.put_json(path, &body);
                let b = request_to(spin_addr, "PUT", path, JSON, body.as_bytes());
                assert_eq!((a.status, b.status), (200, 200), "{} / {}", a.body, b.body);
            });
        }
    });
    let a = gw.get("/api/v1/tenants/Tenant2/config");
    let b = request_to(spin_addr, "GET", "/api/v1/tenants/Tenant2/config", &[], b"");
    assert_eq!(essence(&a), essence(&b));
    let doc = b.json();
    for (section, field, value) in fields {
        assert_eq!(
            doc[section][field].to_string(),
            value,
            "{section}.{field} lost: {doc}"
        );
    }

    // The tenant app: the same file, the same answer for Tenant1.
    for path in [
        "/db-info",
        "/db-info?connection=EdFi_Security",
        "/db-info?connection=Nope",
    ] {
        let a = gw.anonymous("GET", path, &[("Tenant", "Tenant1")], b"");
        let b = request_to(spin_addr, "GET", path, &[], b"");
        assert_eq!(essence(&a), essence(&b), "{path}");
    }
    let info = request_to(spin_addr, "GET", "/db-info", &[], b"");
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(info.json()["database"], "EdFi_Admin_Tenant1");
    assert!(!info.body.contains("tenant1-secret"), "{}", info.body);
    // Spin keeps what the manifest does not route to itself.
    assert_eq!(
        request_to(spin_addr, "GET", "/healthz", &[], b"").status,
        404
    );
    let output = served.output();
    assert!(!output.contains("tenant1-secret"), "{output}");
}

/// `wasmtime serve` runs the sample tenant app file as it is (its settings in
/// its environment, as `wasmtime serve -S cli --env` gives them) and answers
/// as the gateway does for the same tenant.
#[test]
fn wasmtime_serves_the_tenant_app_as_the_gateway_does() {
    let Some(wasmtime) = tool("wasmtime", "TG_WASMTIME") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(wasmtime);
    cmd.args(["serve", "-S", "cli", "--addr", "127.0.0.1:0"])
        .arg("--env")
        .arg("TENANT_NAME=Tenant2")
        .arg("--env")
        .arg(format!(
            "EDFI_ADMIN={}",
            connection_string("Tenant2", "EdFi_Admin")
        ))
        .arg(harness::TENANT_APP)
        .env("TG_TOOLS_CACHE", tools_cache());
    let served = Served::start(cmd, dir.path().join("wasmtime.log"));
    let gw = Gateway::start();
    for path in [
        "/db-info",
        "/db-info/x?connection=EdFi_Admin",
        "/db-info?connection=EdFi_Security",
    ] {
        let a = gw.anonymous("GET", path, &[("Tenant", "Tenant2")], b"");
        let b = request_to(served.addr, "GET", path, &[], b"");
        if path.contains("EdFi_Security") {
            // Not given to wasmtime: the app says so, as the gateway does for a
            // connection a tenant lacks.
            assert_eq!(b.status, 404, "{}", b.body);
            continue;
        }
        assert_eq!(essence(&a), essence(&b), "{path}");
    }
    let info = request_to(served.addr, "GET", "/db-info", &[], b"");
    assert_eq!(
        info.json()["database"],
        "EdFi_Admin_Tenant2",
        "{}",
        info.body
    );
    assert!(!served.output().contains("tenant2-secret"));
}

/// An app declared with an outbound allow-list behaves the same on Spin and on
/// the gateway given the same list: the allowed listener is reached, every
/// other scheme, host or port fails inside the guest with the same error
/// code, and the listener there sees no connection on either host.
#[test]
fn spin_and_the_gateway_refuse_the_same_outbound_requests() {
    let Some(spin) = tool("spin", "TG_SPIN") else {
        return;
    };
    let allowed = crate::outbound::Listener::start();
    let denied = crate::outbound::Listener::start();
    let entry = format!("http://127.0.0.1:{}", allowed.addr.port());
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "spin_manifest_version = 2\n\
         [application]\nname = \"outbound-probe\"\n\
         [[trigger.http]]\nroute = \"/probe/...\"\ncomponent = \"probe\"\n\
         [component.probe]\nsource = {source:?}\nallowed_outbound_hosts = [{entry:?}]\n",
        source = harness::OUTBOUND_PROBE,
    );
    std::fs::write(dir.path().join("spin.toml"), manifest).unwrap();
    let mut cmd = Command::new(spin);
    cmd.current_dir(dir.path())
        .args(["up", "-f"])
        .arg(dir.path().join("spin.toml"))
        .args(["--listen", "127.0.0.1:0"])
        .env("TG_TOOLS_CACHE", tools_cache())
        .env_remove("RUST_LOG");
    temp_inside(&mut cmd, dir.path());
    let served = Served::start(cmd, dir.path().join("spin.log"));
    let gw = harness::Gateway::launch()
        .settings(&crate::outbound::settings(&[entry], serde_json::json!({})))
        .start();

    let urls = [
        format!("http://127.0.0.1:{}/", allowed.addr.port()),
        format!("http://127.0.0.1:{}/", denied.addr.port()),
        format!("http://localhost:{}/", allowed.addr.port()),
        format!("https://127.0.0.1:{}/", allowed.addr.port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ];
    for (i, url) in urls.iter().enumerate() {
        let path = format!("/probe?url={url}");
        let on_gw = crate::outbound::probe(&gw, url);
        let on_spin = request_to(served.addr, "GET", &path, &[], b"");
        assert_eq!(
            (on_gw.status, on_gw.json()),
            (on_spin.status, on_spin.json()),
            "{url}: gateway / Spin; Spin's output:\n{}",
            served.output()
        );
        let expected = if i == 0 { 200 } else { 502 };
        assert_eq!(on_gw.status, expected, "{url}: {}", on_gw.body);
    }
    assert_eq!(allowed.connections_before_now(), 2, "one from each host");
    assert_eq!(denied.connections_before_now(), 0);
}

/// What `spin.toml` grants each component is exactly what it uses: the config
/// API its two key-value stores and no outbound host, the tenant app nothing;
/// its build command is the gateway build's, so both hosts run the same files.
#[test]
fn spin_manifest_grants_only_what_the_components_use() {
    let text = std::fs::read_to_string(repo().join("spin.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    let component = |name: &str| manifest["component"][name].as_table().unwrap().clone();
    let api = component("config-api");
    assert_eq!(
        api["key_value_stores"],
        toml::Value::Array(vec!["tenants".into(), "configs".into()])
    );
    let app = component("tenant-app");
    for c in [&api, &app] {
        assert_eq!(c["allowed_outbound_hosts"], toml::Value::Array(vec![]));
        assert!(
            !c.contains_key("variables") && !c.contains_key("files"),
            "{c:?}"
        );
    }
    assert!(!app.contains_key("key_value_stores"));
    assert!(!manifest.contains_key("variables"));
    let deps = api["dependencies"].as_table().unwrap();
    let names: Vec<&String> = deps.keys().collect();
    assert_eq!(
        names,
        [
            "tenant-gateway:feature-gate/feature-gate@0.2.0",
            "tenant-gateway:validator/validator@0.2.0"
        ]
    );
    for dep in deps.values() {
        assert!(
            dep.get("inherit_configuration").is_none(),
            "a plugin inherits nothing: {dep:?}"
        );
    }
    // One build command for both components: the packages host/build.rs builds
    // into the same directory for the gateway.
    let build = |c: &toml::Table| c["build"]["command"].as_str().unwrap().to_owned();
    assert_eq!(build(&api), build(&app));
    let script = std::fs::read_to_string(repo().join("host/build.rs")).unwrap();
    for package in [
        "tg-validator",
        "tg-feature-gate",
        "tg-config-api",
        "tg-tenant-app",
    ] {
        assert!(build(&api).contains(&format!("-p {package}")), "{package}");
        assert!(script.contains(&format!("(\"{package}\"")), "{package}");
    }
    assert!(build(&api).contains("--target-dir target/components"));
}

/// `spin build` with the repository's manifest, where it is, succeeds and
/// leaves the files the gateway embeds: after the gateway's build (which built
/// the same packages into the same directory) it has nothing to do, and the
/// files stay byte for byte the ones the other tests run.
#[test]
fn spin_build_makes_the_gateway_files() {
    let Some(spin) = tool("spin", "TG_SPIN") else {
        return;
    };
    let mut cmd = Command::new(spin);
    cmd.current_dir(repo())
        .args(["build", "-f", "spin.toml"])
        .env("TG_TOOLS_CACHE", tools_cache());
    // As host/build.rs: the test build's compiler settings must not reach it.
    for var in OUTER_BUILD_ENV {
        cmd.env_remove(var);
    }
    let embedded: Vec<(&str, Vec<u8>)> = [
        harness::CONFIG_API,
        harness::VALIDATOR,
        harness::FEATURE_GATE,
        harness::TENANT_APP,
    ]
    .into_iter()
    .map(|p| (p, std::fs::read(p).unwrap()))
    .collect();
    let out = cmd.output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "spin build failed:\n{said}");
    assert!(
        said.contains("Finished building all Spin components"),
        "{said}"
    );
    let built = repo().join("target/components/wasm32-wasip2/component");
    for (path, bytes) in embedded {
        let name = Path::new(path).file_name().unwrap();
        let made = std::fs::read(built.join(name)).unwrap();
        // Byte for byte when the tests' components are those (cargo's default
        // target directory); elsewhere spin build made its own.
        if Path::new(path).starts_with(&built) {
            assert!(
                made == bytes,
                "spin build changed {}",
                name.to_string_lossy()
            );
        }
    }
}
