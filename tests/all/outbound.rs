//! Outbound HTTP of tenant apps: denied unless allow-listed
//! (`TenantGateway.Apps.{name}.AllowedOutboundHosts`), checked before any
//! connection, with the `Limits` timeout and response size cap. The probe app
//! (components/outbound-probe) sends the one request it is asked for and says
//! how it went; real listeners on 127.0.0.1 count the connections they see.

use crate::harness::{self, Gateway, Reply, SAMPLE_SETTINGS};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// An HTTP listener on 127.0.0.1 counting the connections it accepts. Paths:
/// `/big` answers 2,000 bytes with a length, `/chunked` 2,000 without one,
/// `/hang` never answers; anything else a short 200.
pub struct Listener {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Connections the test itself made (see `connections_before_now`).
    own: AtomicUsize,
}

impl Listener {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || answer(stream));
            }
        });
        Self {
            addr,
            accepted,
            own: AtomicUsize::new(0),
        }
    }

    /// Connections others made so far, counted only once a connection of our
    /// own made now has been: the listener accepts in order, so one made
    /// earlier by the gateway cannot still be on its way.
    pub fn connections_before_now(&self) -> usize {
        let before = self.accepted.load(Ordering::SeqCst);
        let _ours = TcpStream::connect(self.addr).unwrap();
        let own = self.own.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(
            harness::eventually(Duration::from_secs(10), || self
                .accepted
                .load(Ordering::SeqCst)
                > before),
            "the listener stopped accepting"
        );
        self.accepted.load(Ordering::SeqCst) - own
    }
}

fn answer(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
    }
    let path = line.split(' ').nth(1).unwrap_or("/");
    let big = "x".repeat(2000);
    let _ = match path {
        "/big" => write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{big}"
        ),
        "/chunked" => write!(
            stream,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n7d0\r\n{big}\r\n0\r\n\r\n"
        ),
        "/hang" => {
            std::thread::sleep(Duration::from_secs(20));
            Ok(())
        }
        _ => write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        ),
    };
}

/// The sample settings with the probe app at `/probe`, allowed `allowed`.
pub fn settings(allowed: &[String], limits: Value) -> String {
    let mut s: Value = serde_json::from_str(SAMPLE_SETTINGS).unwrap();
    s["TenantGateway"]["Apps"]["probe"] = json!({
        "Component": harness::OUTBOUND_PROBE,
        "AllowedOutboundHosts": allowed,
    });
    s["TenantGateway"]["Routes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"Path": "/probe", "App": "probe"}));
    for (k, v) in limits.as_object().unwrap() {
        s["TenantGateway"]["Limits"][k] = v.clone();
    }
    s.to_string()
}

pub fn probe(gw: &Gateway, url: &str) -> Reply {
    gw.anonymous(
        "GET",
        &format!("/probe?url={url}"),
        &[("Tenant", "Tenant1")],
        b"",
    )
}

fn metric(gw: &Gateway, result: &str) -> u64 {
    harness::metric(
        gw,
        &format!("tg_outbound_requests_total{{result=\"{result}\"}}"),
    )
}

#[test]
fn outbound_requests_go_only_where_allowed() {
    let allowed = Listener::start();
    let denied = Listener::start();
    let gw = Gateway::launch()
        .settings(&settings(
            &[format!("http://127.0.0.1:{}", allowed.addr.port())],
            json!({"MaxOutboundResponseBytes": 1000}),
        ))
        .start();

    let r = probe(&gw, &format!("http://127.0.0.1:{}/", allowed.addr.port()));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"status": 200, "bytes": 5}));
    assert_eq!(allowed.connections_before_now(), 1);

    // Another port of the same address, the same port by name, another scheme,
    // a private address: refused inside the guest, nothing connects.
    let refused = [
        format!("http://127.0.0.1:{}/", denied.addr.port()),
        format!("http://localhost:{}/", allowed.addr.port()),
        format!("https://127.0.0.1:{}/", allowed.addr.port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ];
    for url in &refused {
        let r = probe(&gw, url);
        assert_eq!(r.status, 502, "{url}: {}", r.body);
        assert_eq!(
            r.json(),
            json!({"error": "send", "detail": "ErrorCode::HttpRequestDenied"}),
            "{url}"
        );
    }
    assert_eq!(
        denied.connections_before_now(),
        0,
        "a refused request connected"
    );
    assert_eq!(
        allowed.connections_before_now(),
        1,
        "a refused request connected"
    );
    assert!(metric(&gw, "denied") >= refused.len() as u64);
    assert!(metric(&gw, "answered") >= 1);
    let log = gw.log();
    assert!(log.contains("outbound request refused"), "{log}");
    assert!(
        !log.contains("meta-data"),
        "the path of a refused request was logged"
    );

    // Over the response cap, with a length or without one: an error, not a
    // truncated answer.
    for path in ["/big", "/chunked"] {
        let r = probe(
            &gw,
            &format!("http://127.0.0.1:{}{path}", allowed.addr.port()),
        );
        assert_eq!(r.status, 502, "{path}: {}", r.body);
        assert_ne!(r.json()["detail"], "ErrorCode::HttpRequestDenied", "{path}");
    }
    assert!(metric(&gw, "failed") >= 1);

    // The sample app, with no list of its own, and the other tenants keep working.
    let info = gw.anonymous("GET", "/db-info", &[("Tenant", "Tenant2")], b"");
    assert_eq!(info.status, 200, "{}", info.body);
}

#[test]
fn outbound_requests_time_out_and_count_against_the_call() {
    let slow = Listener::start();
    let gw = Gateway::launch()
        .settings(&settings(
            &["*://127.0.0.1:*".to_owned()],
            json!({"OutboundTimeoutMs": 300, "ComponentTimeoutMs": 10000, "MaxOutboundRequestsPerCall": 0}),
        ))
        .start();
    // No request at all allowed per call: refused before connecting.
    let r = probe(&gw, &format!("http://127.0.0.1:{}/", slow.addr.port()));
    assert_eq!(
        r.json()["detail"],
        "ErrorCode::HttpRequestDenied",
        "{}",
        r.body
    );
    assert_eq!(slow.connections_before_now(), 0);

    let settings = settings(
        &["*://127.0.0.1:*".to_owned()],
        json!({"OutboundTimeoutMs": 300, "ComponentTimeoutMs": 10000}),
    );
    let gw = Gateway::launch().settings(&settings).start();
    let r = probe(&gw, &format!("http://127.0.0.1:{}/hang", slow.addr.port()));
    assert_eq!(r.status, 502, "{}", r.body);
    let detail = r.json()["detail"].as_str().unwrap_or("").to_owned();
    assert!(detail.contains("Timeout"), "{}", r.body);
}

#[test]
fn bad_allow_list_entries_stop_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    for (entry, says) in [
        ("api.example.com", "needs a scheme"),
        ("https://api.example.com/v1", "no path"),
        ("insecure:allow-all", "*://*:*"),
        ("*://api.example.com", "needs a port"),
    ] {
        let file = dir.path().join("appsettings.json");
        std::fs::write(&file, settings(&[entry.to_owned()], json!({}))).unwrap();
        let out = harness::serve(&file, &dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{entry}");
        assert!(
            err.contains("TenantGateway.Apps.probe.AllowedOutboundHosts[0]") && err.contains(says),
            "{entry}: {err}"
        );
    }
}

/// Every request gets a fresh instance that finds nothing an earlier one wrote:
/// a freed instance slot is reset (the kept-resident part rewritten — only the
/// pages written, where the kernel can tell — and the rest given back) before
/// the next instance gets it. The probe writes 3 MiB of a static each time.
#[test]
fn a_fresh_instance_finds_nothing_an_earlier_one_wrote() {
    let gw = Gateway::launch()
        .settings(&settings(&[], json!({})))
        .start();
    for n in 0..8 {
        let r = gw.anonymous("GET", "/probe/memory", &[("Tenant", "Tenant1")], b"");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json(), json!({"leftover": 0}), "request {n}");
    }
}
