//! The gateway's own typed settings besides tenants: the super-user and
//! authentication, rate limits, resource limits, and the store.

use super::{Secret, Tier};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

/// The super-user: name and a PHC password hash (Argon2), never a password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct SuperUser {
    /// User name (compared exactly).
    pub name: String,
    /// `$argon2id$...` as printed by `tenant-gateway hash-password`.
    pub password_hash: String,
}

impl fmt::Debug for SuperUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SuperUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `TenantGateway.Auth`: who may call what.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase", default)]
pub struct AuthSettings {
    /// Config API calls need a Bearer token or the super-user's Basic credentials.
    pub require_token: bool,
    /// Tenant traffic (apps and upstreams) needs a token too.
    pub protect_tenant_traffic: bool,
    /// A token may be used on other tenants than its own (Ed-Fi's behaviour);
    /// off by default: a token works only for the tenant it was registered for.
    pub tokens_cross_tenants: bool,
    /// Lifetime of an issued token.
    pub token_lifetime_seconds: u64,
    /// The super-user (Basic auth) for privileged operations.
    pub super_user: Option<SuperUser>,
    /// Password checks (Argon2, for credentials not verified before) one client
    /// address may cause per minute; past it, 429 with `Retry-After`.
    pub password_checks_per_address_per_minute: u32,
    /// Password checks one user name (or client id) may be the subject of per
    /// minute, from any address.
    pub password_checks_per_user_per_minute: u32,
    /// Where open registration (`Authentication.AllowRegistration`) is open
    /// to: client addresses (CIDRs). Default loopback only; the super-user may
    /// register from anywhere.
    #[serde(deserialize_with = "networks")]
    pub open_registration_from: Vec<ipnet::IpNet>,
    /// Open registrations one client address may make per minute.
    pub registrations_per_address_per_minute: u32,
    /// Clients one tenant may have (registration past it: 409).
    pub max_clients_per_tenant: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            require_token: true,
            protect_tenant_traffic: false,
            tokens_cross_tenants: false,
            token_lifetime_seconds: 3600,
            super_user: None,
            password_checks_per_address_per_minute: 30,
            password_checks_per_user_per_minute: 10,
            open_registration_from: vec![
                "127.0.0.0/8".parse().expect("a network"),
                "::1/128".parse().expect("a network"),
            ],
            registrations_per_address_per_minute: 5,
            max_clients_per_tenant: 100,
        }
    }
}

/// Requests per minute per tenant, by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase", default)]
pub struct Quota {
    /// `GET .../config`.
    pub reads: u32,
    /// `PUT .../config`.
    pub updates: u32,
    /// `GET .../features`.
    pub features: u32,
}

impl Default for Quota {
    /// The spec's limits: reads 100/min, updates 10/min, feature queries 100/min.
    fn default() -> Self {
        Self {
            reads: 100,
            updates: 10,
            features: 100,
        }
    }
}

/// `TenantGateway.RateLimits`: per-tenant limits of the config API, per tier.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase", default)]
pub struct RateLimits {
    /// Off: no limits at all.
    pub enabled: bool,
    /// Basic tier.
    pub basic: Quota,
    /// Pro tier.
    pub pro: Quota,
    /// Enterprise tier.
    pub enterprise: Quota,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            basic: Quota::default(),
            pro: Quota::default(),
            enterprise: Quota::default(),
        }
    }
}

impl RateLimits {
    /// The quota of a tier.
    pub fn quota(&self, tier: Tier) -> Quota {
        match tier {
            Tier::Basic => self.basic,
            Tier::Pro => self.pro,
            Tier::Enterprise => self.enterprise,
        }
    }
}

/// Limits applied to requests and component calls.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase", default)]
pub struct Limits {
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Linear memory cap of one component instance.
    pub component_memory_mib: u32,
    /// Wall-clock deadline of one component call.
    pub component_timeout_ms: u64,
    /// Component requests served at once; more wait.
    pub max_concurrent_component_calls: usize,
    /// Longest wait for an upstream's response headers; then 504.
    pub upstream_timeout_ms: u64,
    /// Largest component accepted by the registry (API uploads, directory files).
    pub max_component_bytes: usize,
    /// Most functions (over all its core modules) a component from an upload
    /// or the components directory may have; counted before compiling.
    pub max_component_functions: usize,
    /// Longest the compilation of an uploaded or directory component may take;
    /// past it the compiler process is killed and the component refused.
    pub compile_timeout_ms: u64,
    /// Memory (heap) the compiler process of an uploaded or directory
    /// component may use; past it the component is refused.
    pub compile_memory_mib: u32,
    /// Versions kept per component slot, the serving one included: what
    /// rollback can reach. Older ones are deleted (bytes, precompiled
    /// artifact, shared copy).
    pub kept_component_versions: usize,
    /// Longest a component's outbound request waits to connect, for its
    /// response headers, or between body chunks; the component may ask for less.
    pub outbound_timeout_ms: u64,
    /// Largest response body a component's outbound request may receive.
    pub max_outbound_response_bytes: u64,
    /// Outbound requests one component call may make.
    pub max_outbound_requests_per_call: u32,
    /// Longest wait for the next chunk of a request body; then 408.
    pub body_idle_timeout_ms: u64,
    /// Longest a request's head (request line and headers) may take to
    /// arrive, counted from the end of the connection's last answer (or its
    /// start): a kept-alive connection with no request that long is closed
    /// too.
    pub header_read_timeout_ms: u64,
    /// Longest a whole request body may take; then 408.
    pub body_timeout_ms: u64,
    /// Client connections served at once (a few more may still ask for
    /// `/healthz` and `/readyz`; past those, connections are closed at once).
    pub max_connections: usize,
    /// Idle connections kept open per upstream for reuse.
    pub max_idle_upstream_connections: usize,
    /// How long an idle upstream connection is kept.
    pub upstream_idle_timeout_ms: u64,
    /// Clients (CIDRs) whose `Forwarded` / `X-Forwarded-*` headers are believed
    /// and appended to; from anyone else they are replaced. A bare address is
    /// a network of one.
    #[serde(deserialize_with = "networks")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// IP networks (`10.0.0.0/8`) or single addresses (`10.0.0.5`).
fn networks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| {
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{text:?} is not an IP address or network (e.g. 10.0.0.0/8)"
                    ))
                })
        })
        .collect()
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            component_memory_mib: 64,
            component_timeout_ms: 2_000,
            max_concurrent_component_calls: 64,
            upstream_timeout_ms: 30_000,
            max_component_bytes: 32 * 1024 * 1024,
            max_component_functions: 50_000,
            compile_timeout_ms: 60_000,
            compile_memory_mib: 2048,
            kept_component_versions: 2,
            outbound_timeout_ms: 10_000,
            max_outbound_response_bytes: 4 * 1024 * 1024,
            max_outbound_requests_per_call: 16,
            body_idle_timeout_ms: 10_000,
            header_read_timeout_ms: 30_000,
            body_timeout_ms: 30_000,
            max_connections: 1024,
            max_idle_upstream_connections: 32,
            upstream_idle_timeout_ms: 30_000,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Where the gateway keeps its state (`TenantGateway.Store`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum StoreSettings {
    /// The embedded SQLite file in the data directory (`Engine: "Sqlite"`, the default).
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by several instances (`Engine: "PostgreSql"`).
    Postgres {
        /// How to reach it.
        connection: Secret,
        /// PEM file of the certificate authorities the server's certificate must
        /// chain to (`RootCertificate`); none: encrypted but not authenticated.
        root_certificate: Option<PathBuf>,
    },
}

/// The Hono Tenant API over AMQP 1.0 (`TenantGateway.Amqp`).
#[derive(Debug, Clone, PartialEq)]
pub struct AmqpSettings {
    /// `Listen`.
    pub listen: std::net::SocketAddr,
    /// `CertificateFile` and `KeyFile`: TLS from the first byte (amqps).
    pub tls: Option<AmqpTls>,
}

/// The AMQP listener's certificate and key (PEM files).
#[derive(Debug, Clone, PartialEq)]
pub struct AmqpTls {
    /// `CertificateFile`: the chain, leaf first.
    pub certificate: PathBuf,
    /// `KeyFile`.
    pub key: PathBuf,
    /// `ClientCaFile`: the CAs whose client certificates sign in with SASL
    /// EXTERNAL (the certificate's common name is the identity).
    pub client_ca: Option<PathBuf>,
}
