//! Starts real gateway processes on 127.0.0.1:0 and talks HTTP/1.1 to them.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The gateway binary built from this workspace.
pub const BINARY: &str = env!("CARGO_BIN_EXE_tenant-gateway");
/// The failure-test validator component.
pub const FAULTY_VALIDATOR: &str = env!("TG_FAULTY_VALIDATOR_WASM");
/// The built-in validator component, as a file.
pub const VALIDATOR: &str = env!("TG_VALIDATOR_WASM");
/// The built-in feature-gate component, as a file.
pub const FEATURE_GATE: &str = env!("TG_FEATURE_GATE_WASM");
/// The example tenant policy validator.
pub const POLICY_VALIDATOR: &str = env!("TG_POLICY_VALIDATOR_WASM");
/// The example tenant policy feature gate.
pub const POLICY_FEATURE_GATE: &str = env!("TG_POLICY_FEATURE_GATE_WASM");
/// The built-in config API component, as a file.
pub const CONFIG_API: &str = env!("TG_CONFIG_API_WASM");
/// The sample tenant app, as a file.
pub const TENANT_APP: &str = env!("TG_TENANT_APP_WASM");
/// A tenant app that makes the outbound request it is asked for.
pub const OUTBOUND_PROBE: &str = env!("TG_OUTBOUND_PROBE_WASM");
/// A validator that traps on every call.
pub const BROKEN_VALIDATOR: &str = env!("TG_BROKEN_VALIDATOR_WASM");
/// The sample settings shipped in the repository.
pub const SAMPLE_SETTINGS: &str = include_str!("../../appsettings.json");
/// The super-user of the sample settings.
pub const SUPER_USER: (&str, &str) = ("admin", "change-me-dev-password");

/// `tenant-gateway serve` with `settings` and `data_dir`, for a run expected to
/// end by itself (bad settings, an unreachable store).
pub fn serve(settings: &Path, data_dir: &Path) -> Command {
    let mut cmd = Command::new(BINARY);
    cmd.arg("serve")
        .arg("--exit-with-parent")
        .arg("--settings")
        .arg(settings)
        .arg("--data-dir")
        .arg(data_dir);
    cmd
}

/// The value of one series of the gateway's `/metrics` (`name{labels}` as
/// written there).
pub fn metric(gw: &Gateway, series: &str) -> u64 {
    let text = gw.get("/metrics").body;
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Polls `f` every 50 ms until it holds (true) or `within` has passed (false).
pub fn eventually(within: Duration, f: impl FnMut() -> bool) -> bool {
    waited(within, f).is_some()
}

/// Polls `f` every 50 ms until it holds, and says how long that took; `None`
/// if it did not hold within `within`.
pub fn waited(within: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let started = std::time::Instant::now();
    loop {
        if f() {
            return Some(started.elapsed());
        }
        if started.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `Authorization` value of HTTP Basic credentials.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Precompiled components shared by every test's gateway (each has its own data).
fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

/// How to start a gateway.
pub struct Launch {
    env: Vec<(String, String)>,
    rate_limits: bool,
    /// Standard error to a pipe no one reads (else to the log file).
    unread_stderr: bool,
    settings: String,
    data_dir: Option<PathBuf>,
    components: Option<PathBuf>,
    cache: Option<PathBuf>,
}

impl Launch {
    /// A cache of precompiled components of its own (with its key beside it),
    /// for tests that count or delete what is in it.
    pub fn cache(mut self, dir: &Path) -> Self {
        self.cache = Some(dir.to_owned());
        self
    }

    pub fn settings(mut self, text: &str) -> Self {
        self.settings = text.to_owned();
        self
    }

    /// Keeps the settings' rate limits (tests turn them off unless they test them).
    /// Standard error goes to a pipe that is never read (so `log()` is
    /// empty): as a stuck log collector would leave it.
    pub fn unread_stderr(mut self) -> Self {
        self.unread_stderr = true;
        self
    }

    pub fn rate_limited(mut self) -> Self {
        self.rate_limits = true;
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }

    pub fn components(mut self, dir: &Path) -> Self {
        self.components = Some(dir.to_owned());
        self
    }

    pub fn start(self) -> Gateway {
        let work = tempfile::tempdir().expect("temp dir");
        let settings = work.path().join("appsettings.json");
        std::fs::write(&settings, &self.settings).unwrap();
        let data_dir = self.data_dir.unwrap_or_else(|| work.path().join("data"));
        let log = work.path().join("gateway.log");
        let cache = self.cache.clone().unwrap_or_else(cache_dir);
        let mut cmd = Command::new(BINARY);
        // Killed with its test however the test ends (a panic, a timeout
        // killing the test binary), not only when `Gateway` is dropped.
        cmd.arg("serve")
            .arg("--exit-with-parent")
            .arg("--settings")
            .arg(&settings)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--cache-dir")
            .arg(&cache)
            .arg("--cache-key")
            .arg(cache.with_extension("key"))
            .current_dir(work.path())
            .env("RUST_LOG", "debug")
            .env_remove("TENANT_GATEWAY_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if self.unread_stderr {
            cmd.stderr(Stdio::piped());
        } else {
            cmd.stderr(std::fs::File::create(&log).unwrap());
        }
        if !self.rate_limits {
            cmd.env("TenantGateway__RateLimits__Enabled", "false").env(
                "TenantGateway__Auth__RegistrationsPerAddressPerMinute",
                "10000",
            );
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(dir) = &self.components {
            cmd.arg("--components").arg(dir);
        }
        let mut child = cmd.spawn().expect("start tenant-gateway");
        // Held open, never read.
        let unread_stderr = child.stderr.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "gateway did not start; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let addr = line
            .rsplit("http://")
            .next()
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        let amqp = line
            .split("amqp://")
            .nth(1)
            .and_then(|a| a.split(',').next())
            .and_then(|a| a.trim().parse().ok());
        Gateway {
            child,
            addr,
            amqp,
            log,
            settings,
            _unread_stderr: unread_stderr,
            _work: work,
        }
    }
}

/// A running gateway process; killed when dropped.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    /// The AMQP listener's address, when the settings have one.
    pub amqp: Option<SocketAddr>,
    log: PathBuf,
    /// The settings file it watches.
    pub settings: PathBuf,
    _unread_stderr: Option<std::process::ChildStderr>,
    _work: tempfile::TempDir,
}

/// A response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Gateway {
    pub fn launch() -> Launch {
        Launch {
            env: Vec::new(),
            rate_limits: false,
            unread_stderr: false,
            settings: SAMPLE_SETTINGS.to_owned(),
            data_dir: None,
            components: None,
            cache: None,
        }
    }

    pub fn start() -> Gateway {
        Self::launch().start()
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    pub fn put_json(&self, path: &str, body: &str) -> Reply {
        self.request(
            "PUT",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    /// Creates tenant `name` through Doradus (`POST /_tenants`, XML).
    pub fn create_tenant(&self, name: &str) -> Reply {
        let body = format!(r#"<tenant name="{name}"/>"#);
        self.request(
            "POST",
            "/_tenants",
            &[("Content-Type", "application/xml")],
            body.as_bytes(),
        )
    }

    /// Sends one request with `Content-Length` and reads the whole response.
    /// Config API and tenant management requests carry the super-user's
    /// credentials unless `headers`
    /// has an `Authorization` of its own (see [`Gateway::anonymous`]).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let has_auth = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        let managed = [
            "/api/",
            "/_tenants",
            "/_components",
            "/hono/",
            "/application/v2/tenant",
            "/metrics",
        ]
        .iter()
        .any(|p| path.starts_with(p));
        if managed && !has_auth {
            let credentials = basic(SUPER_USER.0, SUPER_USER.1);
            let mut with = headers.to_vec();
            with.push(("Authorization", &credentials));
            return self.anonymous(method, path, &with, body);
        }
        self.anonymous(method, path, headers, body)
    }

    /// Sends one request exactly as given (no credentials added).
    pub fn anonymous(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        request_to(self.addr, method, path, headers, body)
    }

    /// Sends raw bytes and parses the response (the gateway closes after it).
    pub fn raw(&self, request: &[u8]) -> Reply {
        raw_to(self.addr, request)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the gateway logged so far. The gateway writes its log from
    /// a thread of its own, a moment after the event: this reads once the file
    /// has stopped growing (two looks 25 ms apart agree; at most 5 s).
    pub fn log(&self) -> String {
        let size = || std::fs::metadata(&self.log).map_or(0, |m| m.len());
        let until = std::time::Instant::now() + Duration::from_secs(5);
        let mut seen = size();
        loop {
            std::thread::sleep(Duration::from_millis(25));
            let now = size();
            if now == seen || std::time::Instant::now() > until {
                break;
            }
            seen = now;
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        self.terminate();
        self.wait_clean_exit();
    }

    /// Sends SIGTERM (a graceful shutdown begins).
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
    }

    /// How it exited, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for the process to end, and asserts it ended cleanly.
    pub fn wait_clean_exit(&mut self) {
        let exit = self.child.wait().unwrap();
        assert!(
            exit.success(),
            "gateway exited with {exit}; log:\n{}",
            self.log()
        );
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One kept-alive HTTP/1.1 connection: `GET`s one after another on it (the
/// answers must have a `Content-Length`).
pub struct KeepAlive(TcpStream);

impl KeepAlive {
    pub fn open(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Self(s)
    }

    /// The answer's status and body.
    pub fn get(&mut self, path: &str) -> (u16, String) {
        self.0
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n").as_bytes())
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(self.0.read(&mut byte).unwrap(), 1, "connection closed");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let status = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .expect("a content-length");
        let mut body = vec![0; length];
        self.0.read_exact(&mut body).unwrap();
        (status, String::from_utf8(body).unwrap())
    }
}

/// Sends raw bytes to any HTTP server on loopback and parses the response.
pub fn raw_to(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    // Longer than the slowest answer the gateway may take: an upload that
    // compiles waits for its compiler, up to `Limits.CompileTimeoutMs` (60 s),
    // on however loaded a machine.
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    // The gateway may answer (e.g. 413) before reading all of a large body.
    let _ = stream.write_all(request);
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    parse(&buf)
}

/// Sends one request with `Content-Length` to any HTTP server on loopback and
/// reads the whole response.
pub fn request_to(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    raw_to(addr, &raw)
}

/// A `GET` to any HTTP server on loopback.
pub fn get_from(addr: SocketAddr, path: &str) -> Reply {
    raw_to(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

fn parse(buf: &[u8]) -> Reply {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = buf[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
}

/// `component` with a custom section naming `n` appended: the same code (it
/// compiles and behaves the same), another SHA-256. For tests that need many
/// distinct versions of one component.
pub fn variant(component: &[u8], n: u32) -> Vec<u8> {
    let name = b"tg-test-variant";
    let payload = n.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    assert!(size < 0x80, "one-byte LEB128 lengths");
    let mut out = component.to_vec();
    out.extend_from_slice(&[0, size as u8, name.len() as u8]);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}
