//! Hostile clients: floods of guessed passwords and client secrets are throttled
//! and cost the gateway bounded CPU and memory, and stall no other tenant.

use crate::harness::{Gateway, SUPER_USER, basic};
use crate::tenancy::{bearer, token_for};
use std::time::{Duration, Instant};

/// The gateway process's resident memory, in bytes.
fn resident(gw: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// 200 wrong passwords at once, half as Basic credentials on a management API
/// and half as client secrets on `/connect/token`: most are refused (429, or
/// 503 when every hashing slot is taken) without a hash being computed, the
/// process grows by less than 100 MB, and another tenant's requests meanwhile
/// are answered as fast as ever. (Before: every guess cost a full Argon2 on the
/// async workers or on an unbounded blocking pool — 300 token guesses took the
/// process from 182 MB to 7.9 GB.)
#[test]
fn a_flood_of_guesses_is_throttled_and_stalls_no_one() {
    let gw = Gateway::start();
    let token = token_for(&gw, "Tenant2", "flood-bystander");
    assert_eq!(
        bearer(&gw, "/api/v1/tenants/Tenant2/config", &token).status,
        200
    );
    // The metrics scraper's (super-user) credentials verified before the
    // flood are known at once during it, unthrottled.
    assert_eq!(gw.get("/metrics").status, 200);
    let before = resident(&gw);

    let wrong = basic(SUPER_USER.0, "not-the-password");
    let (statuses, bystander) = std::thread::scope(|s| {
        let flood: Vec<_> = (0..200)
            .map(|i| {
                let (gw, wrong) = (&gw, &wrong);
                s.spawn(move || {
                    if i % 2 == 0 {
                        gw.anonymous("GET", "/_tenants", &[("Authorization", wrong)], b"")
                            .status
                    } else {
                        let body = format!(
                            "grant_type=client_credentials&client_id=guess-{i}&client_secret=Wrong-Secret-0123456789-abcdefghij!"
                        );
                        gw.anonymous(
                            "POST",
                            "/connect/token",
                            &[("Content-Type", "application/x-www-form-urlencoded")],
                            body.as_bytes(),
                        )
                        .status
                    }
                })
            })
            .collect();
        // Meanwhile, another tenant's client reads its configuration.
        let mut took: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                let r = bearer(&gw, "/api/v1/tenants/Tenant2/config", &token);
                assert_eq!(r.status, 200, "{}", r.body);
                t.elapsed()
            })
            .collect();
        took.sort();
        let statuses: Vec<u16> = flood.into_iter().map(|h| h.join().unwrap()).collect();
        (statuses, took)
    });
    let refused = statuses.iter().filter(|s| matches!(s, 429 | 503)).count();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(refused + checked, 200, "{statuses:?}");
    // From one address: 30 checks a minute (the default), the rest refused.
    assert!(
        checked <= 30,
        "{checked} guesses were checked: {statuses:?}"
    );
    let grew = resident(&gw).saturating_sub(before);
    assert!(grew < 100 << 20, "grew by {} MB", grew >> 20);
    assert!(
        bystander[2] < Duration::from_secs(1),
        "another tenant's reads took {bystander:?} during the flood"
    );
    let metrics = gw.get("/metrics").body;
    assert!(
        metrics.contains("tg_rejections_total{reason=\"sign_in_throttled\"}"),
        "{metrics}"
    );
    // A 429 says when to come back. (The allowance refills by one check
    // every 2 s: on a slow machine one may have come back since the flood,
    // and a guess or two are checked again before the refusals resume.)
    let r = (0..4)
        .map(|_| gw.anonymous("GET", "/_tenants", &[("Authorization", &wrong)], b""))
        .find(|r| r.status != 401)
        .expect("four more guesses were all checked");
    assert_eq!(r.status, 429, "{}", r.body);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}

/// One request may add at most 16 users (each a password hash): a Doradus
/// create with 17 is refused before any is hashed, and so is an update; 16 are
/// fine and every one of them can sign in. (Before: a create with 1,900 users
/// hashed for 55 s.)
#[test]
fn a_request_adds_a_bounded_number_of_users() {
    let gw = Gateway::start();
    // A Doradus JSON definition of tenant Many with `n` users.
    let with_users = |method: &str, path: &str, n: usize| {
        let users: Vec<String> = (0..n)
            .map(|i| format!(r#""user{i}": {{"password": "Password-{i}"}}"#))
            .collect();
        let body = format!(r#"{{"Many": {{"users": {{{}}}}}}}"#, users.join(","));
        gw.request(
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    let r = with_users("POST", "/_tenants?format=json", 17);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("at most 16 users"), "{}", r.body);
    assert_eq!(gw.get("/_tenants/Many?format=json").status, 404);
    let r = with_users("POST", "/_tenants?format=json", 16);
    assert_eq!(r.status, 201, "{}", r.body);
    let r = with_users("PUT", "/_tenants/Many?format=json", 17);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("at most 16 users"), "{}", r.body);
    for i in [0, 15] {
        let creds = basic(&format!("user{i}"), &format!("Password-{i}"));
        let r = gw.anonymous(
            "GET",
            "/api/v1/tenants/Many/config",
            &[("Authorization", &creds)],
            b"",
        );
        assert_eq!(r.status, 200, "user{i}: {}", r.body);
    }
}

/// One rule on every surface: valid credentials that are not entitled to what
/// they ask for get 403, wrong or missing ones 401. A tenant's user (Basic)
/// asking about another tenant, or for what only the super-user may do, is
/// refused with 403 by the config API, tenant traffic, Hono, Doradus, Vespa and
/// `/_components`, each in its own error format. (Before: 401 everywhere but
/// its own tenant, as if the password were wrong.)
#[test]
fn valid_credentials_for_the_wrong_tenant_are_forbidden_everywhere() {
    let gw = Gateway::launch()
        .env("TenantGateway__Auth__ProtectTenantTraffic", "true")
        .start();
    let ops = crate::hono::create_fleet(&gw);
    let wrong = basic("ops", "Fleet-ops-2");
    let call = |method: &str, path: &str, auth: &str, tenant: Option<&str>| {
        let mut headers = vec![("Authorization", auth)];
        if let Some(t) = tenant {
            headers.push(("Tenant", t));
        }
        let body: &[u8] = if method == "PUT" { b"{}" } else { b"" };
        if method == "PUT" {
            headers.push(("Content-Type", "application/json"));
        }
        gw.anonymous(method, path, &headers, body)
    };
    // Its own tenant: allowed.
    assert_eq!(
        call("GET", "/api/v1/tenants/Fleet/config", &ops, None).status,
        200
    );
    assert_eq!(
        call("GET", "/hono/v1/tenants?tenant-id=Fleet", &ops, None).status,
        200
    );
    assert_eq!(call("GET", "/db-info", &ops, Some("Fleet")).status, 200);
    // Method, path, `Tenant` header, and how the surface's error body looks.
    type Surface<'a> = (&'a str, &'a str, Option<&'a str>, fn(&str) -> bool);
    let surfaces: [Surface; 8] = [
        ("GET", "/api/v1/tenants/Tenant1/config", None, |b| {
            b.contains("\"error\"")
        }),
        ("GET", "/db-info", Some("Tenant1"), |b| {
            b.contains("\"error\"")
        }),
        ("GET", "/hono/v1/tenants?tenant-id=Tenant2", None, |b| {
            b.contains("\"error\"")
        }),
        ("GET", "/hono/v1/tenants?tenant-id=nosuch", None, |b| {
            b.contains("\"error\"")
        }),
        ("PUT", "/hono/v1/tenants/Fleet", None, |b| {
            b.contains("\"error\"")
        }),
        ("GET", "/_tenants", None, |b| b.starts_with("<error>")),
        ("GET", "/application/v2/tenant/", None, |b| {
            b.contains("\"error-code\"")
        }),
        ("GET", "/_components", None, |b| !b.is_empty()),
    ];
    for (method, path, tenant, format) in surfaces {
        let r = call(method, path, &ops, tenant);
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
        assert!(format(&r.body), "{method} {path}: {}", r.body);
        assert!(r.header("www-authenticate").is_none(), "{method} {path}");
        // The same name with a wrong password is still 401.
        let r = call(method, path, &wrong, tenant);
        assert_eq!(
            r.status, 401,
            "{method} {path} (wrong password): {}",
            r.body
        );
    }
}

/// Starts a tenant-traffic `POST` whose body announces 100 bytes and sends 6,
/// then stops.
fn stalled_body(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(
        b"POST /db-info HTTP/1.1\r\nHost: gw\r\nTenant: Tenant1\r\nContent-Length: 100\r\n\r\n{\"a\":1",
    )
    .unwrap();
    s
}

/// What a connection gets before it is closed: the status line's code, if an
/// answer came.
fn answer_then_close(s: &mut std::net::TcpStream) -> Option<u16> {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

fn open_connections(gw: &Gateway) -> u64 {
    crate::harness::metric(gw, "tg_connections_open")
}

/// 1,000 connections that each start a body and stop are answered 408 and
/// closed by the body idle timeout, and `/healthz` answers all the while.
/// (Before: only the 30 s header timeout existed, so they were held forever;
/// 1,100 of them kept the gateway at its file-descriptor limit.)
#[test]
fn stalled_bodies_are_cut_off_and_health_checks_keep_answering() {
    let _ = rlimit::increase_nofile_limit(8192);
    let gw = Gateway::launch()
        .env("TenantGateway__Limits__BodyIdleTimeoutMs", "2000")
        .env("TenantGateway__Limits__MaxConnections", "1100")
        .start();
    let mut stalled: Vec<_> = (0..1000).map(|_| stalled_body(gw.addr)).collect();
    let health = crate::harness::get_from(gw.addr, "/healthz");
    assert_eq!(health.status, 200, "{}", health.body);
    let codes: Vec<Option<u16>> = stalled.iter_mut().map(answer_then_close).collect();
    let timed_out = codes.iter().filter(|c| **c == Some(408)).count();
    assert_eq!(timed_out, 1000, "{:?}", &codes[..10]);
    assert_eq!(crate::harness::get_from(gw.addr, "/healthz").status, 200);
    assert!(
        crate::harness::eventually(Duration::from_secs(30), || open_connections(&gw) <= 1),
        "connections left open"
    );
}

/// Past `Limits.MaxConnections` a connection may still ask for `/healthz`,
/// `/readyz` and `/metrics` (16 such), anything else gets 503; past those it
/// is closed at once. Freed connections serve normally again.
#[test]
fn the_connection_cap_keeps_headroom_for_health_checks() {
    // The held connections must stay held however slowly a loaded machine
    // runs the test: no body or header timeout frees them meanwhile.
    let gw = Gateway::launch()
        .env("TenantGateway__Limits__MaxConnections", "20")
        .env("TenantGateway__Limits__BodyIdleTimeoutMs", "600000")
        .env("TenantGateway__Limits__BodyTimeoutMs", "600000")
        .env("TenantGateway__Limits__HeaderReadTimeoutMs", "600000")
        .start();
    let mut held: Vec<_> = (0..20).map(|_| stalled_body(gw.addr)).collect();
    assert!(
        crate::harness::eventually(Duration::from_secs(30), || open_connections(&gw) >= 21),
        "the held connections were not accepted"
    );
    let r = gw.get("/api/v1/tenants/Tenant1/config");
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));
    // A config read on a connection of its own: its status, or none when the
    // connection was closed unanswered.
    let read_config = || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
        let request = format!(
            "GET /api/v1/tenants/Tenant1/config HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            basic(SUPER_USER.0, SUPER_USER.1)
        );
        let _ = s.write_all(request.as_bytes());
        answer_then_close(&mut s)
    };
    assert_eq!(crate::harness::get_from(gw.addr, "/healthz").status, 200);
    assert_eq!(crate::harness::get_from(gw.addr, "/readyz").status, 200);
    // Take the headroom too, with connections that send nothing (a request
    // would be answered 503 and its connection closed): the next connection is
    // closed unanswered.
    let mut extra: Vec<_> = (0..16)
        .map(|_| std::net::TcpStream::connect(gw.addr).unwrap())
        .collect();
    assert!(
        crate::harness::eventually(Duration::from_secs(30), || {
            let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
            use std::io::Write;
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
            answer_then_close(&mut s).is_none()
        }),
        "a connection past the headroom was served"
    );
    held.clear();
    extra.clear();
    // The gateway sees them go as each ends; meanwhile a new connection may
    // still be past the limit.
    assert!(
        crate::harness::eventually(Duration::from_secs(30), || read_config() == Some(200)),
        "freed connections do not serve again"
    );
    assert!(crate::harness::metric(&gw, "tg_connections_refused_total") >= 1);
}

/// Reads one answer (head and `Content-Length` body) from `s`: its status.
fn read_answer(s: &mut std::net::TcpStream) -> u16 {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).expect("an answer");
        assert!(n > 0, "closed before answering");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return head[9..12].parse().unwrap();
            }
        }
    }
}

/// A request line and headers that do not arrive within
/// `Limits.HeaderReadTimeoutMs` close their connection, as does a kept-alive
/// connection left without a request that long; a connection that keeps
/// asking is served throughout.
#[test]
fn slow_request_heads_and_idle_connections_are_closed() {
    use std::io::Write;
    let gw = Gateway::launch()
        .env("TenantGateway__Limits__HeaderReadTimeoutMs", "1000")
        .start();
    let request = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n";
    let mut partial = std::net::TcpStream::connect(gw.addr).unwrap();
    partial.write_all(&request[..20]).unwrap();
    let partial_sent = Instant::now();
    let mut idle = std::net::TcpStream::connect(gw.addr).unwrap();
    idle.write_all(request).unwrap();
    assert_eq!(read_answer(&mut idle), 200);
    let idle_since = Instant::now();

    // Asking every 300 ms for 2.5 s, past the timeout more than twice.
    let addr = gw.addr;
    let busy = std::thread::spawn(move || {
        let mut busy = std::net::TcpStream::connect(addr).unwrap();
        let since = Instant::now();
        while since.elapsed() < Duration::from_millis(2500) {
            busy.write_all(request).unwrap();
            assert_eq!(read_answer(&mut busy), 200, "a busy connection was cut");
            std::thread::sleep(Duration::from_millis(300));
        }
    });

    // Half a head: answered 408 (or not at all), then closed; not before
    // its time.
    let code = answer_then_close(&mut partial);
    assert!(matches!(code, None | Some(408)), "{code:?}");
    let waited = partial_sent.elapsed();
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_secs(20),
        "closed after {waited:?}"
    );
    // The idle one: closed without a word.
    assert_eq!(answer_then_close(&mut idle), None);
    let waited = idle_since.elapsed();
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_secs(20),
        "closed after {waited:?}"
    );
    busy.join().unwrap();
    assert!(
        crate::harness::eventually(Duration::from_secs(30), || open_connections(&gw) <= 1),
        "closed connections still counted open"
    );
}
