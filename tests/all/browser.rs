//! Swagger UI in a real browser: headless Chromium (Debian's `chromium`), driven
//! over the Chrome DevTools Protocol, opens `/swagger/`, runs "Try it out" →
//! "Execute" on the config API without typing a tenant, and must get the
//! default tenant's configuration.
//!
//! Without Chromium the test fails (scripts/test installs it); set
//! `TG_SKIP_BROWSER=1` to skip it knowingly.

use crate::harness::{Gateway, SUPER_USER, get_from};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const CANDIDATES: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

fn find_browser() -> Option<String> {
    if let Ok(path) = std::env::var("TG_CHROMIUM") {
        return Some(path);
    }
    CANDIDATES.iter().find_map(|name| {
        Command::new("which")
            .arg(name)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    })
}

struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts headless Chromium and returns it with its DevTools port.
fn launch(binary: &str) -> (Browser, u16) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-extensions",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        // Its own temporary directories too (`org.chromium.Chromium.*`, which
        // a killed browser leaves behind) go with the profile.
        .env("TMPDIR", profile.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.split("DevTools listening on ").nth(1) {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let ws = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("chromium did not announce its DevTools port");
    let port = ws
        .trim_start_matches("ws://")
        .split(['/', ':'])
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("DevTools port");
    (
        Browser {
            child,
            _profile: profile,
        },
        port,
    )
}

/// The page target's DevTools WebSocket URL (from `/json/list`).
fn page_socket(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = get_from(([127, 0, 0, 1], port).into(), "/json/list");
        if list.status == 200
            && let Some(url) = list.json().as_array().and_then(|targets| {
                targets
                    .iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            })
        {
            return url.to_owned();
        }
        assert!(Instant::now() < deadline, "no page target: {}", list.body);
        std::thread::sleep(Duration::from_millis(100));
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Devtools {
    socket: Socket,
    next: u64,
}

impl Devtools {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::text(msg)).await.unwrap();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .expect("DevTools answer")
                .expect("socket open")
                .unwrap();
            if let Message::Text(text) = frame {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["id"] == id {
                    assert!(v["error"].is_null(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(r["exceptionDetails"].is_null(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is truthy.
    async fn wait_for(&mut self, what: &str, expr: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.eval(expr).await;
            if !(v.is_null() || v == json!(false) || v == json!("")) {
                return v;
            }
            if Instant::now() > deadline {
                let page = self
                    .eval("(document.querySelector('#operations-Configuration-getTenantConfig') || document.body).outerHTML.slice(0, 6000)")
                    .await;
                panic!(
                    "timed out waiting for {what}; page:\n{}",
                    page.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[test]
fn swagger_try_it_out_uses_the_default_tenant() {
    let Some(binary) = find_browser() else {
        if std::env::var_os("TG_SKIP_BROWSER").is_some() {
            eprintln!("skipped: no chromium and TG_SKIP_BROWSER is set");
            return;
        }
        panic!(
            "chromium not found: install it (`apt-get install chromium`, done by scripts/test) or set TG_SKIP_BROWSER=1"
        );
    };
    let gw = Gateway::start();
    let expected_id = gw.get("/api/v1/tenants/Tenant1/config").json()["tenant_id"].clone();
    assert!(expected_id.is_string());
    let (_browser, port) = launch(&binary);
    let socket_url = page_socket(port);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = rt.block_on(async {
        let (socket, _) = tokio_tungstenite::connect_async(socket_url.as_str())
            .await
            .expect("connect to DevTools");
        let mut dt = Devtools { socket, next: 0 };
        dt.call("Page.enable", json!({})).await;
        dt.call(
            "Page.navigate",
            json!({"url": format!("http://{}/swagger/", gw.addr)}),
        )
        .await;
        dt.wait_for(
            "the operations to render",
            "document.querySelector('#operations-Configuration-getTenantConfig') !== null && typeof window.ui !== 'undefined'",
        )
        .await;
        // The super-user's credentials, as the Authorize dialog would store them.
        dt.eval(&format!(
            "window.ui.preauthorizeBasic('superUser', '{}', '{}'); true",
            SUPER_USER.0, SUPER_USER.1
        ))
        .await;
        dt.eval("document.querySelector('#operations-Configuration-getTenantConfig button.opblock-summary-control').click(); true")
            .await;
        // Try it out is on by default; the tenant id field is pre-filled with the
        // default tenant and nothing is typed.
        let prefilled = dt
            .wait_for(
                "the id parameter",
                "(() => { const i = document.querySelector('#operations-Configuration-getTenantConfig .parameters tr[data-param-name=\"id\"] input'); return i && i.value; })()",
            )
            .await;
        assert_eq!(prefilled, "Tenant1");
        dt.eval("document.querySelector('#operations-Configuration-getTenantConfig button.execute').click(); true")
            .await;
        let status = dt
            .wait_for(
                "the response",
                "(() => { const c = document.querySelector('#operations-Configuration-getTenantConfig .live-responses-table .response .response-col_status'); return c && c.textContent.trim(); })()",
            )
            .await;
        assert_eq!(status, "200");
        let config = dt
            .wait_for(
                "the response body",
                "(() => { const b = document.querySelector('#operations-Configuration-getTenantConfig .live-responses-table .response-col_description pre'); return b && b.textContent; })()",
            )
            .await;

        // Tenant traffic from the Swagger UI page with no Tenant header at all:
        // the gateway serves it as the default tenant.
        let app = dt
            .eval("fetch('/db-info').then(r => r.text().then(t => r.status + ' ' + t))")
            .await;
        (config, app)
    });
    let (body, app) = body;
    let app = app.as_str().unwrap();
    assert!(app.starts_with("200 "), "{app}");
    let app: Value = serde_json::from_str(&app[4..]).unwrap();
    assert_eq!(app["tenant"], "Tenant1");
    let text = body.as_str().unwrap();
    let got: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(got["tenant_id"], expected_id, "served as DefaultTenant");
    assert_eq!(got["performance"]["cache_size_mb"], 1024);
    // The browser sent no Tenant header: the request was resolved by the gateway.
    assert!(gw.log().contains("/api/v1/tenants/Tenant1/config"));
}
