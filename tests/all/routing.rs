//! Tenant traffic: resolution by the `Tenant` header and proxying to each tenant's
//! upstream (real HTTP servers on 127.0.0.1:0 started by the test).

use crate::harness::{Gateway, SAMPLE_SETTINGS, eventually};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

/// A one-thread HTTP upstream that answers every request with a JSON description
/// of what it received, after `delay`.
struct Upstream {
    addr: std::net::SocketAddr,
}

impl Upstream {
    fn start(name: &'static str, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve(name, delay, stream));
            }
        });
        Self { addr }
    }

    /// An upstream that answers one request at a time only when let: it says
    /// on `arrived` that a request came, then waits on `release`.
    fn gated(name: &'static str) -> (Self, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (arrived_tx, arrived) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = arrived_tx.send(());
                if release_rx.recv().is_err() {
                    return;
                }
                serve(name, Duration::ZERO, stream);
            }
        });
        (Self { addr }, arrived, release)
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn serve(name: &str, delay: Duration, mut stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let target = line.split(' ').nth(1).unwrap_or("").to_owned();
    let method = line.split(' ').next().unwrap_or("").to_owned();
    let mut headers = serde_json::Map::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            let n = n.trim().to_ascii_lowercase();
            if n == "content-length" {
                length = v.trim().parse().unwrap_or(0);
            }
            headers.insert(n, Value::String(v.trim().to_owned()));
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    std::thread::sleep(delay);
    let reply = json!({
        "upstream": name, "method": method, "target": target,
        "headers": headers, "body_len": body.len(),
    })
    .to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nX-Upstream: {name}\r\n\r\n{reply}",
        reply.len()
    );
}

fn settings(a: &str, b: &str, timeout_ms: u64) -> String {
    let mut s: Value = serde_json::from_str(SAMPLE_SETTINGS).unwrap();
    s["TenantGateway"]["Tenants"]["Tenant1"]["Upstream"] = a.into();
    s["TenantGateway"]["Tenants"]["Tenant2"]["Upstream"] = b.into();
    s["TenantGateway"]["Limits"]["UpstreamTimeoutMs"] = timeout_ms.into();
    s.to_string()
}

#[test]
fn tenant_header_routes_to_each_tenants_upstream() {
    let a = Upstream::start("A", Duration::ZERO);
    let b = Upstream::start("B", Duration::ZERO);
    let gw = Gateway::launch()
        .settings(&settings(&a.url(), &format!("{}/b-prefix", b.url()), 5000))
        .start();
    let id1 = gw.get("/api/v1/tenants/Tenant1/config").json()["tenant_id"].clone();

    for header in ["Tenant", "tenant", "TENANT"] {
        let r = gw.request("GET", "/v2/vendors?limit=5", &[(header, "Tenant1")], b"");
        assert_eq!(r.status, 200, "{header}: {}", r.body);
        let got = r.json();
        assert_eq!(got["upstream"], "A", "{header}");
        assert_eq!(got["target"], "/v2/vendors?limit=5");
        assert_eq!(got["headers"]["x-tenant-name"], "Tenant1");
        assert_eq!(got["headers"]["x-tenant-id"], id1);
        assert_eq!(r.header("x-upstream"), Some("A"));
    }
    let r = gw.request(
        "POST",
        "/v2/vendors",
        &[
            ("Tenant", "tenant2"),
            ("X-Tenant-Name", "Tenant1"),
            ("Connection", "keep-alive, x-hop"),
            ("X-Hop", "1"),
        ],
        &[b'x'; 5000],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let got = r.json();
    assert_eq!(got["upstream"], "B");
    assert_eq!(got["method"], "POST");
    assert_eq!(got["target"], "/b-prefix/v2/vendors");
    assert_eq!(got["body_len"], 5000);
    assert_eq!(
        got["headers"]["x-tenant-name"], "Tenant2",
        "a client cannot claim another tenant"
    );
    assert!(
        got["headers"].get("x-hop").is_none(),
        "hop-by-hop header forwarded"
    );
    assert_eq!(got["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(got["headers"]["x-forwarded-proto"], "http");
    assert!(
        got["headers"]["forwarded"]
            .as_str()
            .unwrap()
            .starts_with("for=127.0.0.1"),
        "{got}"
    );
}

#[test]
fn missing_invalid_and_unknown_tenants_are_refused() {
    let a = Upstream::start("A", Duration::ZERO);
    let gw = Gateway::launch()
        .settings(&settings(&a.url(), &a.url(), 5000))
        .start();
    // Ed-Fi's validation failure of the Tenant field.
    let tenant_error = |r: &crate::harness::Reply| {
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.json()["title"], "Validation failed", "{}", r.body);
        r.json()["errors"]["Tenant"][0].as_str().unwrap().to_owned()
    };
    let r = gw.get("/v2/vendors");
    assert!(tenant_error(&r).starts_with("Tenant header is missing"));
    let r = gw.request("GET", "/v2/vendors", &[("Tenant", "bad.name")], b"");
    assert!(
        tenant_error(&r).starts_with("Please provide a valid tenant id"),
        "{}",
        r.body
    );
    let r = gw.request("GET", "/v2/vendors", &[("Tenant", "Tenant3")], b"");
    assert_eq!(
        tenant_error(&r),
        "Tenant not found with provided tenant id: Tenant3"
    );
    assert_eq!(gw.get("/healthz").status, 200);
    // Swagger UI requests carry no header: they are served as the DefaultTenant.
    let r = gw.request(
        "GET",
        "/v2/vendors",
        &[("Referer", "http://127.0.0.1/swagger/index.html")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["headers"]["x-tenant-name"], "Tenant1");
}

#[test]
fn upstream_down_is_502_and_slow_is_504() {
    let slow = Upstream::start("slow", Duration::from_secs(3));
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        format!("http://{a}")
    };
    let gw = Gateway::launch()
        .settings(&settings(&closed, &slow.url(), 500))
        .start();
    let r = gw.request("GET", "/v2/vendors", &[("Tenant", "Tenant1")], b"");
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.json()["code"], 502);
    let started = std::time::Instant::now();
    let r = gw.request("GET", "/v2/vendors", &[("Tenant", "Tenant2")], b"");
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        !r.body.contains("127.0.0.1"),
        "upstream address leaked: {}",
        r.body
    );
}

/// SIGTERM while a request is in flight: the request still gets its answer, new
/// connections are refused, and the process exits cleanly.
#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let (slow, arrived, release) = Upstream::gated("slow");
    let mut gw = Gateway::launch()
        .settings(&settings(&slow.url(), &slow.url(), 60_000))
        .start();
    let addr = gw.addr;
    let in_flight = std::thread::spawn(move || {
        crate::harness::raw_to(
            addr,
            b"GET /slow HTTP/1.1\r\nHost: x\r\nTenant: Tenant1\r\nConnection: close\r\n\r\n",
        )
    });
    // The request is at the upstream, which holds its answer.
    arrived
        .recv_timeout(Duration::from_secs(30))
        .expect("the request never reached the upstream");
    gw.terminate();
    assert!(
        crate::harness::eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect(addr).is_err()
        }),
        "still accepting after SIGTERM"
    );
    assert!(gw.exited().is_none(), "exited with a request in flight");
    release.send(()).unwrap();
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["upstream"], "slow");
    gw.wait_clean_exit();
}

/// A client's own forwarding headers are replaced unless it is one of
/// `Limits.TrustedProxies`: nobody can tell the upstream they are someone else.
/// The host in `Forwarded` is a quoted string, escaped. (Before: appended to,
/// and the host put in unescaped.)
#[test]
fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    let a = Upstream::start("A", Duration::ZERO);
    // Raw, so that the Host header is ours too.
    let spoofed: &[u8] = b"GET /v2/x HTTP/1.1\r\nHost: gw\"x\r\nTenant: Tenant1\r\n\
        X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6;proto=https\r\n\
        X-Forwarded-Proto: https\r\nX-Forwarded-Host: bank.example\r\nConnection: close\r\n\r\n";
    let untrusted = settings(&a.url(), &a.url(), 5000);
    let mut trusted: Value = serde_json::from_str(&untrusted).unwrap();
    trusted["TenantGateway"]["Limits"]["TrustedProxies"] = json!(["10.0.0.0/8", "127.0.0.1"]);
    let ours = r#"for=127.0.0.1;host="gw\"x";proto=http"#;
    // (settings, X-Forwarded-For, Forwarded, X-Forwarded-Proto, X-Forwarded-Host)
    for (settings, xff, forwarded, proto, host) in [
        (untrusted, "127.0.0.1", ours.to_owned(), "http", r#"gw"x"#),
        (
            trusted.to_string(),
            "6.6.6.6, 127.0.0.1",
            format!("for=6.6.6.6;proto=https, {ours}"),
            "https",
            "bank.example",
        ),
    ] {
        let gw = Gateway::launch().settings(&settings).start();
        let got = gw.raw(spoofed).json();
        let h = &got["headers"];
        assert_eq!(h["x-forwarded-for"], xff, "{got}");
        assert_eq!(h["forwarded"], forwarded.as_str(), "{got}");
        assert_eq!(h["x-forwarded-proto"], proto, "{got}");
        assert_eq!(h["x-forwarded-host"], host, "{got}");
    }
}

/// A proxied request whose chunked body is malformed is the client's error
/// (400), not the upstream's (502). The upstream here answers only once it
/// has the whole body, so the answer cannot come before the body fails.
#[test]
fn a_malformed_chunked_body_is_a_bad_request() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(5).any(|w| w == b"0\r\n\r\n") {
                    match std::io::Read::read(&mut stream, &mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
    let url = format!("http://{addr}");
    let gw = Gateway::launch()
        .settings(&settings(&url, &url, 5000))
        .start();
    let good = gw.raw(
        b"POST /v2/x HTTP/1.1\r\nHost: gw\r\nTenant: Tenant1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    );
    assert_eq!(good.status, 200, "{}", good.body);
    let bad = gw.raw(
        b"POST /v2/x HTTP/1.1\r\nHost: gw\r\nTenant: Tenant1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\nzz\r\n",
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.json()["error"].is_string(), "{}", bad.body);
}

/// A keep-alive HTTP/1.1 upstream: every connection serves requests until the
/// client closes it, or until it has been idle for `idle_close` (what an
/// upstream's own keep-alive timeout does), closing without a word. Counts the
/// connections it accepted and those still open, and answers
/// `{"connection": n}`, the connection's number; while held ([`Self::hold`])
/// it answers none until that many requests are waiting.
struct KeepAlive {
    addr: std::net::SocketAddr,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Requests to wait for before answering (0: none), and those waiting.
    gate: std::sync::Arc<(std::sync::Mutex<(usize, usize)>, std::sync::Condvar)>,
}

impl KeepAlive {
    fn start(idle_close: Option<Duration>) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let gate = std::sync::Arc::new((std::sync::Mutex::new((0, 0)), std::sync::Condvar::new()));
        let (acc, op, gt) = (accepted.clone(), open.clone(), gate.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let n = acc.fetch_add(1, SeqCst) + 1;
                op.fetch_add(1, SeqCst);
                let (op, gate) = (op.clone(), gt.clone());
                std::thread::spawn(move || {
                    stream.set_read_timeout(idle_close).unwrap();
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    // Until the client closes, a read fails (idle), or a
                    // write does.
                    'requests: loop {
                        let mut length = 0usize;
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                                break 'requests;
                            }
                            let h = h.trim_end().to_ascii_lowercase();
                            if h.is_empty() {
                                break;
                            }
                            if let Some(v) = h.strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            break;
                        }
                        {
                            // Held: wait (at most 10 s) until enough requests are.
                            let (lock, all_here) = &*gate;
                            let mut g = lock.lock().unwrap();
                            if g.0 > 0 {
                                g.1 += 1;
                                all_here.notify_all();
                                let _ = all_here
                                    .wait_timeout_while(g, Duration::from_secs(10), |g| {
                                        g.0 > 0 && g.1 < g.0
                                    })
                                    .unwrap();
                            }
                        }
                        let reply = format!(r#"{{"connection":{n}}}"#);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
                            reply.len()
                        );
                        if writer.write_all(answer.as_bytes()).is_err() {
                            break;
                        }
                    }
                    let _ = writer.shutdown(std::net::Shutdown::Both);
                    op.fetch_sub(1, SeqCst);
                });
            }
        });
        Self {
            addr,
            accepted,
            open,
            gate,
        }
    }

    /// Answers nothing until `n` requests wait at once (0: answers at once).
    fn hold(&self, n: usize) {
        *self.gate.0.lock().unwrap() = (n, 0);
        self.gate.1.notify_all();
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Connections to this upstream that its side has closed and the other
    /// side (the gateway) has not yet (TCP `CLOSE_WAIT`, from /proc/net/tcp).
    fn half_closed(&self) -> usize {
        let port = format!(":{:04X}", self.addr.port());
        std::fs::read_to_string("/proc/net/tcp")
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[2].ends_with(&port) && f[3] == "08"
            })
            .count()
    }
}

fn keep_alive_settings(up: &KeepAlive, max_idle: usize, idle_ms: u64) -> String {
    let url = format!("http://{}", up.addr);
    let mut s: Value = serde_json::from_str(&settings(&url, &url, 5000)).unwrap();
    s["TenantGateway"]["Limits"]["MaxIdleUpstreamConnections"] = max_idle.into();
    s["TenantGateway"]["Limits"]["UpstreamIdleTimeoutMs"] = idle_ms.into();
    s.to_string()
}

/// The gateway keeps upstream connections alive and reuses them; past
/// `Limits.MaxIdleUpstreamConnections` it closes what a burst opened, and it
/// closes what stays idle for `Limits.UpstreamIdleTimeoutMs`.
#[test]
fn upstream_connections_are_reused_bounded_and_closed_when_idle() {
    let up = KeepAlive::start(None);
    let gw = Gateway::launch()
        .settings(&keep_alive_settings(&up, 2, 3000))
        .start();
    for i in 0..10 {
        let r = gw.request("GET", "/items", &[("Tenant", "Tenant1")], b"");
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(
            r.json()["connection"],
            1,
            "request {i} on another connection"
        );
    }
    let r = gw.request("POST", "/items", &[("Tenant", "Tenant2")], &[b'x'; 3000]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["connection"], 1, "another tenant, same upstream");
    assert_eq!(up.accepted(), 1);

    // Six at once (none answered before all six arrived) need six
    // connections; two are kept afterwards.
    up.hold(6);
    let answers: Vec<u16> = std::thread::scope(|s| {
        let running: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    gw.request("GET", "/items", &[("Tenant", "Tenant1")], b"")
                        .status
                })
            })
            .collect();
        running.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(answers, vec![200; 6]);
    assert_eq!(up.accepted(), 6);
    up.hold(0);
    assert!(
        eventually(Duration::from_secs(10), || up.open() == 2),
        "{} upstream connections open after the burst, want the 2 kept",
        up.open()
    );
    // Unused for the idle timeout, they are closed too.
    assert!(
        eventually(Duration::from_secs(15), || up.open() == 0),
        "{} upstream connections still open",
        up.open()
    );
    let r = gw.request("GET", "/items", &[("Tenant", "Tenant1")], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["connection"], 7);
}

/// An upstream that closes a kept connection (its own idle timeout) costs no
/// request: the next one goes on a new connection.
#[test]
fn an_upstream_closing_kept_connections_costs_no_request() {
    let up = KeepAlive::start(Some(Duration::from_millis(200)));
    let gw = Gateway::launch()
        .settings(&keep_alive_settings(&up, 8, 60_000))
        .start();
    for round in 1..=3 {
        let r = gw.request("GET", "/items", &[("Tenant", "Tenant1")], b"");
        assert_eq!(r.status, 200, "round {round}: {}", r.body);
        assert_eq!(r.json()["connection"], round);
        // The upstream closes it, and the gateway has seen that.
        assert!(
            eventually(Duration::from_secs(10), || up.open() == 0
                && up.half_closed() == 0),
            "round {round}: upstream connection not closed on both sides"
        );
    }
    assert_eq!(up.accepted(), 3);
}
