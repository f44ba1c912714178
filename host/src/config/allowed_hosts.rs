//! Outbound allow-lists in Spin's `allowed_outbound_hosts` syntax: which
//! scheme, host and port a component may send HTTP requests to. Empty denies
//! everything (the default for every component).
//!
//! An entry is `scheme://host[:port]` with an optional trailing `/`:
//! - scheme: a name (`https`) or `*` (any);
//! - host: a name (`api.example.com`), `*.example.com` (any name below it, not
//!   the name itself), `*` (any), an IP address (`127.0.0.1`, `[::1]`) or an IP
//!   network (`10.0.0.0/8`);
//! - port: a number, a range (`8000..8080`, end excluded, as in Spin), or `*`;
//!   when left out, the scheme's well-known port (`http` 80, `https` 443, and
//!   Spin's others), which `*://` does not have.
//!
//! As in Spin, `insecure:allow-all` is refused (write `*://*:*` to allow
//! everything, knowingly). Spin's `{{ variable }}` hosts and
//! `self` / `*.spin.internal` (calls to components of the same Spin app) have
//! no meaning in the gateway and are refused with a message saying so.
//! Matching is on the request URL, before any name is resolved or connection
//! made, as Spin does: an allowed name is trusted to resolve where the operator
//! meant.

use std::fmt;
use std::net::IpAddr;

/// A parsed allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    scheme: Option<String>,
    host: HostPattern,
    ports: Ports,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.example.com`, stored as `.example.com`.
    Below(String),
    Name(String),
    Network(ipnet::IpNet),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    Any,
    /// `start..end`, end excluded (a single port is `p..p+1`).
    Range(u16, u32),
}

/// Why an allow-list entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.entry, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// The well-known port of a scheme, when it has one an entry may leave out.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        _ => None,
    }
}

impl AllowedHosts {
    /// Parses every entry; the first bad one is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, ParseError> {
        let entries = entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref();
                Entry::parse(entry).map_err(|reason| ParseError {
                    entry: entry.to_owned(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Whether nothing at all is allowed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a request to `scheme://host:port` is allowed. `host` as in a
    /// URL (an IPv6 address may keep its brackets); `port` `None` means the
    /// scheme's well-known port.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme = scheme.to_ascii_lowercase();
        let Some(port) = port.or_else(|| default_port(&scheme)) else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|e| {
            e.scheme.as_ref().is_none_or(|s| *s == scheme)
                && match e.ports {
                    Ports::Any => true,
                    Ports::Range(start, end) => port >= start && u32::from(port) < end,
                }
                && match &e.host {
                    HostPattern::Any => true,
                    HostPattern::Below(suffix) => {
                        host.len() > suffix.len() && host.ends_with(suffix)
                    }
                    HostPattern::Name(name) => *name == host,
                    HostPattern::Network(net) => ip.is_some_and(|ip| net.contains(&ip)),
                }
        })
    }
}

impl Entry {
    fn parse(entry: &str) -> Result<Self, &'static str> {
        if entry == "insecure:allow-all" {
            return Err("not allowed: write *://*:* to allow every host, knowingly");
        }
        if entry.contains("{{") {
            return Err("variables in allowed hosts are a Spin feature the gateway does not have");
        }
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or("needs a scheme, e.g. https:// or *://")?;
        let scheme = match scheme {
            "*" => None,
            s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()) => {
                Some(s.to_ascii_lowercase())
            }
            _ => return Err("the scheme must be a name like https, or *"),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) && !is_network(rest) {
            return Err("only scheme, host and port: no path, query or user");
        }
        let (host, port) = split_port(rest)?;
        let host = host.to_ascii_lowercase();
        let host = if host == "self" || host == "spin.internal" || host.ends_with(".spin.internal")
        {
            return Err(
                "calls to other components of a Spin app (self, *.spin.internal) are not supported by the gateway",
            );
        } else if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') || !is_name(suffix) {
                return Err("a wildcard host is *.domain, with a valid domain");
            }
            HostPattern::Below(format!(".{suffix}"))
        } else if let Ok(net) = host.parse::<ipnet::IpNet>() {
            HostPattern::Network(net)
        } else if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            HostPattern::Network(ip.into())
        } else if is_name(&host) {
            HostPattern::Name(host.strip_suffix('.').unwrap_or(&host).to_owned())
        } else {
            return Err("the host must be a name, *.domain, *, an IP address or an IP network");
        };
        let ports = match port {
            Some("*") => Ports::Any,
            Some(p) => match p.split_once("..") {
                Some((a, b)) => {
                    let (a, b) = (port_number(a)?, port_number(b)?);
                    if a >= b {
                        return Err("a port range start..end needs start below end");
                    }
                    Ports::Range(a, u32::from(b))
                }
                None => {
                    let p = port_number(p)?;
                    Ports::Range(p, u32::from(p) + 1)
                }
            },
            None => {
                let p = scheme
                    .as_deref()
                    .and_then(default_port)
                    .ok_or("needs a port (:443, :8000..8080 or :*): the scheme has no default")?;
                Ports::Range(p, u32::from(p) + 1)
            }
        };
        Ok(Self {
            scheme,
            host,
            ports,
        })
    }
}

fn port_number(s: &str) -> Result<u16, &'static str> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or("a port is a number from 1 to 65535, a range start..end, or *")
}

/// Host and optional port of `host[:port]`, `[v6][:port]` or `net/len[:port]`.
fn split_port(rest: &str) -> Result<(&str, Option<&str>), &'static str> {
    if rest.is_empty() {
        return Err("needs a host");
    }
    if rest.starts_with('[') {
        let end = rest
            .find(']')
            .ok_or("an IPv6 address needs its closing ]")?;
        let (host, after) = rest.split_at(end + 1);
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or("only :port may follow an IPv6 address"),
        };
    }
    // A bare IPv6 network (fd00::/8) has colons of its own.
    if rest.matches(':').count() > 1 {
        return match rest.rsplit_once(':') {
            Some((host, port)) if host.contains('/') && !port.contains('/') => {
                Ok((host, Some(port)))
            }
            _ => Ok((rest, None)),
        };
    }
    Ok(match rest.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    })
}

fn is_network(s: &str) -> bool {
    let host = split_port(s).map(|(h, _)| h).unwrap_or(s);
    host.parse::<ipnet::IpNet>().is_ok()
}

fn is_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(entries).unwrap()
    }

    #[test]
    fn empty_denies_everything() {
        let none = list(&[]);
        assert!(none.is_empty());
        assert!(!none.allows("http", "127.0.0.1", Some(80)));
        assert!(!none.allows("https", "api.example.com", None));
    }

    #[test]
    fn exact_hosts_and_default_ports() {
        let l = list(&["https://api.example.com", "http://localhost:8080/"]);
        assert!(l.allows("https", "api.example.com", None));
        assert!(l.allows("HTTPS", "API.example.com.", Some(443)));
        assert!(!l.allows("https", "api.example.com", Some(8443)));
        assert!(!l.allows("http", "api.example.com", None));
        assert!(!l.allows("https", "evil-api.example.com", None));
        assert!(l.allows("http", "localhost", Some(8080)));
        assert!(!l.allows("http", "localhost", None));
    }

    #[test]
    fn wildcards_ranges_and_networks() {
        let l = list(&[
            "http://*.svc:8080",
            "*://127.0.0.1:*",
            "https://10.0.0.0/8:8000..8100",
        ]);
        assert!(l.allows("http", "orders.svc", Some(8080)));
        assert!(l.allows("http", "a.b.svc", Some(8080)));
        assert!(!l.allows("http", "svc", Some(8080)));
        assert!(!l.allows("http", "orders.svc", Some(80)));
        assert!(l.allows("http", "127.0.0.1", Some(1)));
        assert!(l.allows("https", "127.0.0.1", None));
        assert!(!l.allows("http", "127.0.0.2", Some(1)));
        assert!(!l.allows("http", "localhost", Some(1)));
        assert!(l.allows("https", "10.1.2.3", Some(8000)));
        assert!(l.allows("https", "10.1.2.3", Some(8099)));
        assert!(!l.allows("https", "10.1.2.3", Some(8100)));
        assert!(!l.allows("https", "11.1.2.3", Some(8000)));
        let v6 = list(&["http://[::1]:3000", "*://fd00::/8:*"]);
        assert!(v6.allows("http", "[::1]", Some(3000)));
        assert!(v6.allows("http", "::1", Some(3000)));
        assert!(!v6.allows("http", "[::2]", Some(3000)));
        assert!(v6.allows("https", "[fd12::1]", Some(9)));
        let any = list(&["*://*:*"]);
        assert!(any.allows("http", "anything", Some(1)));
        assert!(any.allows("https", "169.254.169.254", None));
        // Other schemes parse (a shared manifest may list them) and match only themselves.
        let pg = list(&["postgres://db.internal"]);
        assert!(!pg.allows("http", "db.internal", Some(5432)));
    }

    #[test]
    fn bad_entries_say_why() {
        for bad in [
            "api.example.com",
            "https://api.example.com/v1",
            "https://user@api.example.com",
            "*://api.example.com",
            "https://api.example.com:0",
            "https://api.example.com:99999",
            "https://api.example.com:9..3",
            "https://*.",
            "https://a.*.com",
            "http://self",
            "http://orders.spin.internal",
            "https://{{ host }}",
            "ht tp://x",
            "https://",
            "https://[::1",
            "insecure:allow-all",
            "h2c://x:1",
        ] {
            let e = AllowedHosts::parse(&[bad]).unwrap_err();
            assert_eq!(e.entry, bad);
            assert!(!e.reason.is_empty());
        }
    }
}
