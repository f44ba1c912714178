//! Proxying tenant traffic to the tenant's upstream: method, path, query, headers
//! (minus hop-by-hop ones) and body, streamed both ways; `Forwarded` and
//! `X-Forwarded-*` set; the tenant passed on as `X-Tenant-Name` / `X-Tenant-Id`
//! (client-sent values of those are dropped).
//!
//! A client's own `Forwarded` / `X-Forwarded-*` are believed (and appended to)
//! only when the client is one of `Limits.TrustedProxies`; from anyone else they
//! are replaced, so no client can tell the upstream it is someone else.

use crate::tenancy::Tenant;
use bytes::Bytes;
use http::header::{CONNECTION, HOST, HeaderValue};
use http::{HeaderMap, HeaderName, Request, Response, Uri};
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// Header carrying the resolved tenant's name to the upstream.
pub const X_TENANT_NAME: HeaderName = HeaderName::from_static("x-tenant-name");
/// Header carrying the resolved tenant's UUID to the upstream.
pub const X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// What the gateway always sets itself: a client's values are dropped.
/// (The name lists are `static`: a `const` array of names is made, and
/// dropped name by name, wherever it is used, at every request.)
static TENANT_HEADERS: [HeaderName; 2] = [X_TENANT_NAME, X_TENANT_ID];
/// What the gateway sets itself unless the client is a trusted proxy.
static FORWARDING_HEADERS: [HeaderName; 4] = [
    FORWARDED,
    X_FORWARDED_FOR,
    X_FORWARDED_HOST,
    X_FORWARDED_PROTO,
];

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded. Names, not
/// strings: a standard name compares and hashes as its variant. `Connection`
/// first: [`strip_hop_by_hop`] notes which are present by their places.
static HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
];

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The upstream could not be reached or broke the exchange: 502.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// The upstream did not answer in time: 504.
    #[error("upstream timed out")]
    Timeout,
    /// The client's request body broke off or was malformed (bad chunked
    /// framing) while it was being sent on: 400, the upstream is not at fault.
    #[error("the request body is malformed or incomplete")]
    BadRequestBody,
    /// The client's request body stalled or took too long: 408.
    #[error("the request body did not arrive in time")]
    BodyTimedOut,
}

/// What became of the client's body on its way: fine, broken, or too slow.
const BODY_BROKEN: u8 = 1;
const BODY_TIMED_OUT: u8 = 2;

/// The client's request body on its way to the upstream, noting whether it
/// failed (so that failure is the client's 400, not the upstream's 502).
pub struct ClientBody {
    inner: crate::http::body::Timed<crate::http::Body>,
    /// `None` for a body that had ended before it was sent (most `GET`s):
    /// nothing can fail, nothing to allocate.
    failed: Option<Arc<AtomicU8>>,
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &polled {
            let how = if crate::http::body::timed_out(e.as_ref()) {
                BODY_TIMED_OUT
            } else {
                BODY_BROKEN
            };
            if let Some(failed) = &self.failed {
                failed.store(how, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A header value written piece by piece: on the stack up to 256 bytes, on
/// the heap past them. Every proxied request carries two such values
/// (`X-Forwarded-For`, `Forwarded`); written through `format_args!` each
/// piece was a dynamic call into the formatter, each character of a quoted
/// host one too, and the address went through `Display`.
struct ValueText {
    stack: [u8; 256],
    len: usize,
    heap: Option<Vec<u8>>,
}

impl ValueText {
    fn new() -> Self {
        Self {
            stack: [0; 256],
            len: 0,
            heap: None,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if let Some(heap) = &mut self.heap {
            heap.extend_from_slice(bytes);
            return;
        }
        let end = self.len + bytes.len();
        match self.stack.get_mut(self.len..end) {
            Some(room) => {
                room.copy_from_slice(bytes);
                self.len = end;
            }
            None => {
                let mut heap = Vec::with_capacity(end + 64);
                heap.extend_from_slice(&self.stack[..self.len]);
                heap.extend_from_slice(bytes);
                self.heap = Some(heap);
            }
        }
    }

    /// An address: IPv4 digit by digit; IPv6 (rarer, and with its zero-run
    /// rules) through its `Display`.
    fn ip(&mut self, ip: std::net::IpAddr) {
        match ip {
            std::net::IpAddr::V4(ip) => {
                let mut digits = itoa::Buffer::new();
                for (i, octet) in ip.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.push(b".");
                    }
                    self.push(digits.format(octet).as_bytes());
                }
            }
            std::net::IpAddr::V6(ip) => {
                use std::fmt::Write as _;
                let _ = write!(self, "{ip}");
            }
        }
    }

    /// `text` as an RFC 9110 quoted-string (for `Forwarded`'s `host=`).
    fn quoted(&mut self, text: &str) {
        self.push(b"\"");
        for piece in text.split_inclusive(['"', '\\']) {
            match piece.as_bytes().split_last() {
                Some((&last, before)) if last == b'"' || last == b'\\' => {
                    self.push(before);
                    self.push(&[b'\\', last]);
                }
                _ => self.push(piece.as_bytes()),
            }
        }
        self.push(b"\"");
    }

    /// This hop's `Forwarded` element (RFC 7239): the client (an IPv6
    /// address bracketed and quoted), the host it asked for, the protocol.
    fn element(&mut self, client: std::net::IpAddr, host: &str) {
        self.push(b"for=");
        if client.is_ipv6() {
            self.push(b"\"[");
            self.ip(client);
            self.push(b"]\"");
        } else {
            self.ip(client);
        }
        if !host.is_empty() {
            self.push(b";host=");
            self.quoted(host);
        }
        self.push(b";proto=http");
    }

    fn bytes(&self) -> &[u8] {
        self.heap.as_deref().unwrap_or(&self.stack[..self.len])
    }

    fn value(&self) -> Option<HeaderValue> {
        HeaderValue::from_bytes(self.bytes()).ok()
    }
}

impl std::fmt::Write for ValueText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// The `X-Forwarded-For` and `Forwarded` values of a request that carries
/// no earlier hop's: made once per client address and host on each thread
/// and shared by the requests that follow (a connection's requests, and a
/// load balancer's connections, come from one address for one host), where
/// each request made both (two allocations and some 200 ns).
fn own_forwarding(
    client: std::net::IpAddr,
    host: &str,
) -> (Option<HeaderValue>, Option<HeaderValue>) {
    type Made = (
        std::net::IpAddr,
        String,
        Option<HeaderValue>,
        Option<HeaderValue>,
    );
    thread_local! {
        static LAST: std::cell::RefCell<Option<Made>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| {
        if let Some((ip, h, xff, fwd)) = last.as_ref()
            && *ip == client
            && h == host
        {
            return (xff.clone(), fwd.clone());
        }
        let xff = forwarded_for(None, client);
        let fwd = forwarded(std::iter::empty(), client, host);
        *last = Some((client, host.to_owned(), xff.clone(), fwd.clone()));
        (xff, fwd)
    })
}

/// `X-Forwarded-For`: a trusted proxy's list, then the client.
fn forwarded_for(prior: Option<&str>, client: std::net::IpAddr) -> Option<HeaderValue> {
    let mut text = ValueText::new();
    if let Some(prior) = prior {
        text.push(prior.as_bytes());
        text.push(b", ");
    }
    text.ip(client);
    text.value()
}

/// `Forwarded`: one field, a trusted proxy's elements first (RFC 7239 §4),
/// so an upstream reading only one `Forwarded` line still sees them all.
fn forwarded<'a>(
    prior: impl Iterator<Item = &'a HeaderValue>,
    client: std::net::IpAddr,
    host: &str,
) -> Option<HeaderValue> {
    let mut text = ValueText::new();
    for prior in prior.filter_map(|v| v.to_str().ok()) {
        text.push(prior.as_bytes());
        text.push(b", ");
    }
    text.element(client, host);
    text.value()
}

/// A pooled HTTP/1.1 client for upstreams.
pub struct Proxy {
    pools: super::pool::Pools,
    timeout: Duration,
    trusted: Vec<ipnet::IpNet>,
}

impl Proxy {
    /// A proxy that waits at most `Limits.UpstreamTimeoutMs` for an upstream's
    /// response headers, keeps at most `Limits.MaxIdleUpstreamConnections` idle
    /// connections per upstream (for `Limits.UpstreamIdleTimeoutMs`), and
    /// believes the forwarding headers of `Limits.TrustedProxies` only.
    pub fn new(limits: &crate::config::Limits) -> Self {
        Self {
            pools: super::pool::Pools::new(
                limits.max_idle_upstream_connections,
                Duration::from_millis(limits.upstream_idle_timeout_ms),
            ),
            timeout: Duration::from_millis(limits.upstream_timeout_ms),
            trusted: limits.trusted_proxies.clone(),
        }
    }

    /// Whether `addr` is one of `Limits.TrustedProxies`.
    pub fn trusts(&self, addr: std::net::IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&addr))
    }

    /// Sends `req` to `upstream` on behalf of `tenant`; the response body streams.
    pub async fn forward(
        &self,
        tenant: &Tenant,
        upstream: &Uri,
        mut req: Request<crate::http::Body>,
        ip: std::net::IpAddr,
        body_timeouts: crate::http::body::BodyTimeouts,
    ) -> Result<Response<super::pool::PooledBody>, ProxyError> {
        let Some(authority) = upstream.authority() else {
            return Err(ProxyError::Unreachable("the upstream names no host".into()));
        };
        let pool = self.pools.upstream(authority);
        let target =
            target_uri(upstream, req.uri()).map_err(|e| ProxyError::Unreachable(e.to_string()))?;
        let trusted = self.trusts(ip);
        let headers = req.headers_mut();
        let original_host = headers.remove(HOST);
        // Room for the headers added below (the tenant's two, four
        // forwarding ones and the upstream's `Host`): one growth at most.
        headers.reserve(7);
        strip_hop_by_hop(headers);
        // Looked up to be removed only if one pass over the names finds any
        // (most requests carry none).
        if headers.keys().any(|name| replaced(name, trusted)) {
            let forwarding: &[HeaderName] = if trusted { &[] } else { &FORWARDING_HEADERS };
            for name in TENANT_HEADERS.iter().chain(forwarding) {
                headers.remove(name);
            }
        }
        headers.insert(X_TENANT_NAME, tenant.name_header.clone());
        headers.insert(X_TENANT_ID, tenant.id_header.clone());
        let host = original_host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        // A trusted proxy's values come first; with none, this hop's alone.
        let (xff, fwd) = if trusted
            && (headers.contains_key(X_FORWARDED_FOR) || headers.contains_key(FORWARDED))
        {
            let prior = headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok());
            (
                forwarded_for(prior, ip),
                forwarded(headers.get_all(FORWARDED).iter(), ip, host),
            )
        } else {
            own_forwarding(ip, host)
        };
        if let Some(v) = xff {
            headers.insert(X_FORWARDED_FOR, v);
        }
        if let Some(v) = fwd {
            headers.insert(FORWARDED, v);
        }
        // A trusted proxy's own X-Forwarded-Host / -Proto say what its client
        // asked for; keep them.
        if !(trusted && headers.contains_key(X_FORWARDED_HOST))
            && let Some(h) = original_host
        {
            headers.insert(X_FORWARDED_HOST, h);
        }
        if !(trusted && headers.contains_key(X_FORWARDED_PROTO)) {
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        }
        *req.uri_mut() = target;
        *req.version_mut() = http::Version::HTTP_11;
        let failed = (!req.body().is_end_stream()).then(|| Arc::new(AtomicU8::new(0)));
        let req = req.map(|inner| ClientBody {
            inner: crate::http::body::Timed::new(inner, body_timeouts),
            failed: failed.clone(),
        });

        let mut resp = match crate::http::deadlines::timeout(self.timeout, pool.send(req)).await {
            None => return Err(ProxyError::Timeout),
            Some(Err(e)) => {
                return Err(
                    match failed.as_ref().map_or(0, |f| f.load(Ordering::Relaxed)) {
                        BODY_TIMED_OUT => ProxyError::BodyTimedOut,
                        BODY_BROKEN => ProxyError::BadRequestBody,
                        _ => ProxyError::Unreachable(e.to_string()),
                    },
                );
            }
            Some(Ok(resp)) => resp,
        };
        strip_hop_by_hop(resp.headers_mut());
        Ok(resp)
    }
}

/// The upstream's request target in origin form: `upstream`'s path prefix
/// joined with the request's path and query (the request's own, shared, when
/// the upstream has no prefix).
fn target_uri(upstream: &Uri, request: &Uri) -> Result<Uri, http::Error> {
    let prefix = upstream.path().trim_end_matches('/');
    let Some(path_and_query) = request.path_and_query() else {
        return Ok(Uri::from_static("/"));
    };
    if prefix.is_empty() {
        return Ok(Uri::from(path_and_query.clone()));
    }
    let path_and_query = path_and_query.as_str();
    let mut joined = String::with_capacity(prefix.len() + path_and_query.len());
    joined.push_str(prefix);
    joined.push_str(path_and_query);
    Ok(Uri::from(http::uri::PathAndQuery::from_maybe_shared(
        Bytes::from(joined),
    )?))
}

/// Whether a client's `name` is replaced by the gateway's own: the tenant
/// headers always, the forwarding headers unless the client is `trusted`.
fn replaced(name: &HeaderName, trusted: bool) -> bool {
    TENANT_HEADERS.contains(name) || (!trusted && FORWARDING_HEADERS.contains(name))
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
/// One pass over the names notes which hop-by-hop ones are present (most
/// messages carry none; an upstream's answer often `Connection` alone), and
/// only those are removed. The names a `Connection` field lists are read in
/// place; the field is copied only when one of them names a header the
/// message carries that is not hop-by-hop already (rare: nearly every such
/// field says `keep-alive` or `close`).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // Bit 0: `Connection`.
    if present & 1 != 0 && lists_other_headers(headers) {
        let all: Vec<HeaderValue> = headers.get_all(CONNECTION).iter().cloned().collect();
        for value in &all {
            remove_listed(headers, value);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// Whether a `Connection` field lists a header the message carries, other
/// than a hop-by-hop one (removed anyway).
fn lists_other_headers(headers: &HeaderMap) -> bool {
    super::h1::connection_options(headers).any(|name| {
        !name.is_empty()
            && !HOP_BY_HOP
                .iter()
                .any(|h| h.as_str().eq_ignore_ascii_case(name))
            && headers.contains_key(name)
    })
}

/// Removes the headers a `Connection` value lists (a name that is not one
/// is passed over).
fn remove_listed(headers: &mut HeaderMap, connection: &HeaderValue) {
    let Ok(listed) = connection.to_str() else {
        return;
    };
    for name in listed.split(',') {
        headers.remove(name.trim());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keeps_prefix_path_and_query() {
        let up: Uri = "http://127.0.0.1:9000/base/".parse().unwrap();
        let req: Uri = "/v2/vendors?limit=5".parse().unwrap();
        assert_eq!(
            target_uri(&up, &req).unwrap().to_string(),
            "/base/v2/vendors?limit=5"
        );
        let up: Uri = "http://up:81".parse().unwrap();
        assert_eq!(
            target_uri(&up, &req).unwrap().to_string(),
            "/v2/vendors?limit=5"
        );
        // A client's absolute-form target goes on in origin form.
        let req: Uri = "http://gateway.example/a?b".parse().unwrap();
        assert_eq!(target_uri(&up, &req).unwrap().to_string(), "/a?b");
    }

    #[test]
    fn forwarding_values_are_written_as_the_rfcs_spell_them() {
        let text = |write: &dyn Fn(&mut ValueText)| {
            let mut t = ValueText::new();
            write(&mut t);
            String::from_utf8(t.bytes().to_vec()).unwrap()
        };
        assert_eq!(
            text(&|t| t.quoted("example.com:8080")),
            "\"example.com:8080\""
        );
        assert_eq!(text(&|t| t.quoted(r#"a"b\c\"#)), r#""a\"b\\c\\""#);
        assert_eq!(text(&|t| t.quoted("")), r#""""#);
        for ip in [
            "0.0.0.0",
            "10.200.3.45",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            assert_eq!(text(&|t| t.ip(ip.parse().unwrap())), ip);
        }
        let v4: std::net::IpAddr = "192.0.2.60".parse().unwrap();
        let v6: std::net::IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(
            text(&|t| t.element(v4, "gw")),
            r#"for=192.0.2.60;host="gw";proto=http"#
        );
        assert_eq!(
            text(&|t| t.element(v6, "")),
            r#"for="[2001:db8::7]";proto=http"#
        );
        let prior = [
            HeaderValue::from_static("for=6.6.6.6"),
            HeaderValue::from_bytes(b"\xff").unwrap(),
            HeaderValue::from_static("for=7.7.7.7;proto=https"),
        ];
        assert_eq!(
            forwarded(prior.iter(), v4, "h").unwrap(),
            r#"for=6.6.6.6, for=7.7.7.7;proto=https, for=192.0.2.60;host="h";proto=http"#
        );
        assert_eq!(
            forwarded_for(Some("1.1.1.1, 2.2.2.2"), v4).unwrap(),
            "1.1.1.1, 2.2.2.2, 192.0.2.60"
        );
        // Past the stack buffer: on the heap, the same text.
        let long = "x".repeat(600);
        let written = forwarded_for(Some(&long), v4).unwrap();
        assert_eq!(written.len(), 600 + 2 + "192.0.2.60".len());
        assert!(written.to_str().unwrap().ends_with("x, 192.0.2.60"));
        let written = text(&|t| {
            t.push(&[b'a'; 250]);
            t.quoted("0123456789");
        });
        assert_eq!(written, format!("{}\"0123456789\"", "a".repeat(250)));
    }

    /// This hop's values are made once for a client and host and shared by
    /// the requests after; another client or host gets its own.
    #[test]
    fn own_forwarding_values_are_made_once_per_client_and_host() {
        let v4: std::net::IpAddr = "192.0.2.60".parse().unwrap();
        let v6: std::net::IpAddr = "2001:db8::7".parse().unwrap();
        let (xff, fwd) = own_forwarding(v4, "gw:8080");
        assert_eq!(xff.as_ref().unwrap(), "192.0.2.60");
        assert_eq!(
            fwd.as_ref().unwrap(),
            r#"for=192.0.2.60;host="gw:8080";proto=http"#
        );
        let (xff2, fwd2) = own_forwarding(v4, "gw:8080");
        assert_eq!((&xff2, &fwd2), (&xff, &fwd));
        assert_eq!(
            fwd2.unwrap().as_bytes().as_ptr(),
            fwd.unwrap().as_bytes().as_ptr(),
            "shared, not made again"
        );
        for (ip, host, want_xff, want_fwd) in [
            (
                v4,
                "other",
                "192.0.2.60",
                r#"for=192.0.2.60;host="other";proto=http"#,
            ),
            (
                v6,
                "other",
                "2001:db8::7",
                r#"for="[2001:db8::7]";host="other";proto=http"#,
            ),
            (v6, "", "2001:db8::7", r#"for="[2001:db8::7]";proto=http"#),
            (
                v4,
                "gw:8080",
                "192.0.2.60",
                r#"for=192.0.2.60;host="gw:8080";proto=http"#,
            ),
        ] {
            let (xff, fwd) = own_forwarding(ip, host);
            assert_eq!(xff.unwrap(), want_xff);
            assert_eq!(fwd.unwrap(), want_fwd);
        }
    }

    #[test]
    fn every_hop_by_hop_and_replaced_name_is_seen_by_the_quick_check() {
        for name in &HOP_BY_HOP {
            assert!(
                HOP_BY_HOP.contains(&HeaderName::from_bytes(name.as_str().as_bytes()).unwrap()),
                "{name}"
            );
        }
        assert!(HOP_BY_HOP.contains(&CONNECTION));
        assert!(!HOP_BY_HOP.contains(&http::header::ACCEPT));
        for name in [X_TENANT_NAME, X_TENANT_ID] {
            assert!(replaced(&name, true) && replaced(&name, false), "{name}");
        }
        for name in [
            FORWARDED,
            X_FORWARDED_FOR,
            X_FORWARDED_HOST,
            X_FORWARDED_PROTO,
        ] {
            assert!(replaced(&name, false) && !replaced(&name, true), "{name}");
        }
        // A client's spelling is normalised by the parser: what arrives as
        // `X-Tenant-Id` is this name.
        assert!(replaced(
            &HeaderName::from_bytes(b"X-Tenant-Id").unwrap(),
            true
        ));
    }

    #[test]
    fn hop_by_hop_headers_go_including_connection_named_ones() {
        // Each case: the fields in order, whether `Connection` lists a
        // present header that is not hop-by-hop already, what is left.
        type Case = (&'static [(&'static str, &'static str)], bool, &'static str);
        let cases: &[Case] = &[
            (
                &[
                    ("connection", "keep-alive, x-secret-hop"),
                    ("x-secret-hop", "1"),
                    ("keep-alive", "timeout=5"),
                    ("upgrade", "websocket"),
                    ("accept", "*/*"),
                ],
                true,
                "accept",
            ),
            // Several `Connection` fields, names in any case, empty and
            // invalid entries among them.
            (
                &[
                    ("connection", "X-One , ,bad name"),
                    ("connection", "x-two"),
                    ("x-one", "1"),
                    ("x-two", "2"),
                    ("proxy-connection", "keep-alive"),
                    ("x-kept", "3"),
                ],
                true,
                "x-kept",
            ),
            // `close`, and a header of that name.
            (
                &[("connection", "close"), ("close", "1"), ("x-kept", "3")],
                true,
                "x-kept",
            ),
            // `Keep-Alive` listed in any case, the header present; nothing
            // else listed.
            (
                &[
                    ("connection", "Keep-Alive"),
                    ("keep-alive", "timeout=5"),
                    ("x-kept", "3"),
                ],
                false,
                "x-kept",
            ),
            // No `Connection` field, a hop-by-hop header all the same.
            (&[("te", "trailers"), ("x-kept", "3")], false, "x-kept"),
        ];
        for (fields, lists_other, kept) in cases {
            let mut h = HeaderMap::new();
            for (name, value) in *fields {
                h.append(*name, HeaderValue::from_static(value));
            }
            assert_eq!(lists_other_headers(&h), *lists_other, "{fields:?}");
            strip_hop_by_hop(&mut h);
            assert_eq!(h.keys().collect::<Vec<_>>(), [*kept], "{fields:?}");
        }
    }
}
