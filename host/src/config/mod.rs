//! The settings file: an Ed-Fi style `appsettings.json` (read as it is, unknown keys
//! tolerated, keys case-insensitive like .NET configuration) plus the gateway's own
//! `TenantGateway` section (strict: unknown keys are errors).

pub mod allowed_hosts;
mod dotnet;

use crate::config::allowed_hosts::AllowedHosts;
use dotnet::{SETTINGS_SCHEMA, apply_env, canonical_keys};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The sample settings shipped with the repository, used when no file is given and
/// `appsettings.json` is not in the working directory.
pub const SAMPLE: &str = include_str!("../../../appsettings.json");

/// A settings problem: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("settings: {key}: {problem}")]
pub struct SettingsError {
    /// Dotted key, e.g. `Tenants.Tenant1.ConnectionStrings`.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

fn err(key: impl Into<String>, problem: impl Into<String>) -> SettingsError {
    SettingsError {
        key: key.into(),
        problem: problem.into(),
    }
}

/// A validated tenant name: 1–50 characters from `[A-Za-z0-9_-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantName(String);

impl TenantName {
    /// Longest accepted name.
    pub const MAX_LEN: usize = 50;

    /// Checks a name; the error says why it is not one.
    pub fn parse(name: &str) -> Result<Self, &'static str> {
        if name.is_empty() {
            return Err("must not be empty");
        }
        if name.len() > Self::MAX_LEN {
            return Err("must be at most 50 characters");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("may contain only letters, digits, '-' and '_'");
        }
        // Paths take a tenant's name or its UUID in the same place: a name
        // that reads as a UUID would be another tenant's id.
        if uuid::Uuid::try_parse(name).is_ok() {
            return Err(
                "must not have the form of a UUID (tenant ids are UUIDs, and paths take either)",
            );
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive lookup key.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A value that must never be shown: connection strings, passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself, for the code that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Service tier of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, utoipa::ToSchema)]
pub enum Tier {
    /// The default.
    #[default]
    Basic,
    /// Middle tier.
    Pro,
    /// Top tier.
    Enterprise,
}

impl Tier {
    /// Reads a tier name, any case.
    pub fn parse(name: &str) -> Option<Self> {
        [Tier::Basic, Tier::Pro, Tier::Enterprise]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(name))
    }

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Basic => "Basic",
            Tier::Pro => "Pro",
            Tier::Enterprise => "Enterprise",
        }
    }
}

/// One tenant from the settings file.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSettings {
    /// Name as configured.
    pub name: TenantName,
    /// `ConnectionStrings` of the tenant (name → connection string).
    pub connection_strings: BTreeMap<String, Secret>,
    /// Tier, from the `TenantGateway` section (default Basic).
    pub tier: Tier,
    /// Where the tenant's traffic is proxied (`TenantGateway.Tenants.{name}.Upstream`).
    pub upstream: Option<http::Uri>,
    /// The tenant's own routes (`TenantGateway.Tenants.{name}.Routes`), tried
    /// before the shared ones.
    pub routes: Vec<Route>,
}

/// Where a route sends tenant traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A tenant app (a name of `TenantGateway.Apps`).
    App(String),
    /// The tenant's `Upstream`.
    Upstream,
}

/// A path prefix of tenant traffic and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `/`-separated prefix, starting with `/`, no trailing `/` (except `/` itself).
    pub path: String,
    /// Where matching requests go.
    pub target: Target,
}

impl Route {
    /// Whether `path` is this route's prefix or below it (whole segments only).
    pub fn matches(&self, path: &str) -> bool {
        self.path == "/"
            || path
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// The component of a tenant app.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AppSource {
    /// Built into the binary (`builtin:tenant-app`).
    Builtin(&'static str),
    /// A `.wasm` file.
    File(PathBuf),
}

/// A tenant app of the settings (`TenantGateway.Apps.{name}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSettings {
    /// Its component (`Component`).
    pub source: AppSource,
    /// Where it may send HTTP requests (`AllowedOutboundHosts`, Spin's
    /// syntax); empty, the default, allows nowhere.
    pub allowed_outbound_hosts: Arc<AllowedHosts>,
}

/// Names accepted after `builtin:` in `TenantGateway.Apps.{name}.Component`.
pub const BUILTIN_APPS: [&str; 1] = ["tenant-app"];

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
            body_timeout_ms: 30_000,
            max_connections: 1024,
            max_idle_upstream_connections: 32,
            upstream_idle_timeout_ms: 30_000,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct GatewaySection {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    components_dir: Option<PathBuf>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    tenants: BTreeMap<String, GatewayTenant>,
    single_tenant_name: Option<String>,
    #[serde(default)]
    auth: AuthSettings,
    #[serde(default)]
    rate_limits: RateLimits,
    #[serde(default)]
    apps: BTreeMap<String, AppSection>,
    #[serde(default)]
    routes: Vec<RouteSection>,
    #[serde(default)]
    new_tenants: NewTenantsSection,
    #[serde(default)]
    store: StoreSection,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct StoreSection {
    engine: Option<String>,
    connection_string: Option<String>,
    root_certificate: Option<PathBuf>,
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

impl StoreSection {
    fn parse(&self) -> Result<StoreSettings, SettingsError> {
        let engine = self.engine.as_deref().unwrap_or("Sqlite");
        if engine.eq_ignore_ascii_case("sqlite") {
            if self.connection_string.is_some() {
                return Err(err(
                    "TenantGateway.Store.ConnectionString",
                    "applies only to Engine PostgreSql (the SQLite file lives in DataDir)",
                ));
            }
            if self.root_certificate.is_some() {
                return Err(err(
                    "TenantGateway.Store.RootCertificate",
                    "applies only to Engine PostgreSql",
                ));
            }
            return Ok(StoreSettings::Sqlite);
        }
        if !["postgresql", "postgres"]
            .iter()
            .any(|e| engine.eq_ignore_ascii_case(e))
        {
            return Err(err(
                "TenantGateway.Store.Engine",
                format!("must be Sqlite or PostgreSql, not {engine}"),
            ));
        }
        let Some(connection) = self.connection_string.as_deref().filter(|c| !c.is_empty()) else {
            return Err(err(
                "TenantGateway.Store.ConnectionString",
                "is required when Engine is PostgreSql",
            ));
        };
        // Checked here so that a typo stops start-up with the key named; the
        // value itself is never repeated (it may hold a password).
        if connection.parse::<postgres::Config>().is_err() {
            return Err(err(
                "TenantGateway.Store.ConnectionString",
                "is not a valid PostgreSQL connection string (a postgresql:// URL or key=value pairs)",
            ));
        }
        Ok(StoreSettings::Postgres {
            connection: Secret::new(connection.to_owned()),
            root_certificate: self.root_certificate.clone(),
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct NewTenantsSection {
    #[serde(default)]
    connection_strings: BTreeMap<String, String>,
    upstream: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct AppSection {
    component: String,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RouteSection {
    path: String,
    app: Option<String>,
    #[serde(default)]
    upstream: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct GatewayTenant {
    #[serde(default)]
    tier: Tier,
    upstream: Option<String>,
    #[serde(default)]
    routes: Vec<RouteSection>,
}

/// Everything the gateway reads from its settings file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// `AppSettings.MultiTenancy`.
    pub multi_tenancy: bool,
    /// The tenants; in single-tenant mode exactly one.
    pub tenants: Vec<TenantSettings>,
    /// `TenantGateway.Listen`.
    pub listen: Option<SocketAddr>,
    /// `TenantGateway.AdminListen`: where `/metrics` (and health) are served
    /// without credentials, instead of behind the super-user on `Listen`.
    pub admin_listen: Option<SocketAddr>,
    /// `TenantGateway.DataDir`.
    pub data_dir: Option<PathBuf>,
    /// `TenantGateway.ComponentsDir`: the watched components directory
    /// (default `<DataDir>/components`).
    pub components_dir: Option<PathBuf>,
    /// `TenantGateway.Limits`.
    pub limits: Limits,
    /// `SwaggerSettings.EnableSwagger`.
    pub swagger_enabled: bool,
    /// `SwaggerSettings.DefaultTenant`: the tenant of Swagger UI requests without a
    /// `Tenant` header. Always a configured tenant when set.
    pub default_tenant: Option<TenantName>,
    /// `Authentication.AllowRegistration`: anyone may `POST /connect/register`
    /// (the super-user always may).
    pub allow_registration: bool,
    /// `TenantGateway.Auth`.
    pub auth: AuthSettings,
    /// `TenantGateway.RateLimits`.
    pub rate_limits: RateLimits,
    /// `TenantGateway.Apps`: tenant app name → component and grants.
    pub apps: BTreeMap<String, AppSettings>,
    /// `TenantGateway.Routes`: routes of every tenant.
    pub routes: Vec<Route>,
    /// `TenantGateway.NewTenants`: the connection settings of tenants created
    /// through the management APIs.
    pub new_tenants: NewTenants,
    /// `TenantGateway.Store`.
    pub store: StoreSettings,
}

/// What a tenant created through a management API is connected to: templates in
/// which `{tenant}` stands for the tenant's name (`TenantGateway.NewTenants`).
/// They stay in the settings file; the store holds no connection string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewTenants {
    connection_strings: BTreeMap<String, Secret>,
    upstream: Option<String>,
}

/// The placeholder of [`NewTenants`] templates.
pub const TENANT_PLACEHOLDER: &str = "{tenant}";

impl NewTenants {
    /// The connection strings of tenant `name`.
    pub fn connection_strings(&self, name: &TenantName) -> BTreeMap<String, Secret> {
        self.connection_strings
            .iter()
            .map(|(k, v)| {
                let value = v.expose().replace(TENANT_PLACEHOLDER, name.as_str());
                (k.clone(), Secret::new(value))
            })
            .collect()
    }

    /// The upstream of tenant `name`.
    pub fn upstream(&self, name: &TenantName) -> Option<http::Uri> {
        let template = self.upstream.as_deref()?;
        // Checked at load with a sample name; a tenant name ([A-Za-z0-9_-]) keeps it valid.
        upstream(&template.replace(TENANT_PLACEHOLDER, name.as_str())).ok()
    }
}

/// Name of the one tenant in single-tenant mode unless `TenantGateway.SingleTenantName` says otherwise.
pub const SINGLE_TENANT_NAME: &str = "default";

/// Case-insensitive lookup of a key in a JSON object, as .NET configuration does.
fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn object<'a>(value: &'a Value, key: &str) -> Result<&'a Map<String, Value>, SettingsError> {
    value
        .as_object()
        .ok_or_else(|| err(key, "must be a JSON object"))
}

/// .NET configuration reads booleans from JSON booleans or the strings "true"/"false".
fn boolean(value: Option<&Value>, key: &str) -> Result<bool, SettingsError> {
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(err(key, "must be true or false")),
    }
}

fn connection_strings(
    value: Option<&Value>,
    key: &str,
) -> Result<BTreeMap<String, Secret>, SettingsError> {
    let mut out = BTreeMap::new();
    let Some(value) = value else {
        return Ok(out);
    };
    for (name, cs) in object(value, key)? {
        let cs = cs
            .as_str()
            .ok_or_else(|| err(format!("{key}.{name}"), "must be a string"))?;
        out.insert(name.clone(), Secret::new(cs.to_owned()));
    }
    Ok(out)
}

impl Settings {
    /// Reads and validates a settings file.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(path.display().to_string(), format!("cannot read: {e}")))?;
        Self::parse(&text)
    }

    /// Parses and validates settings text.
    pub fn parse(text: &str) -> Result<Self, SettingsError> {
        Self::parse_with_env(text, std::iter::empty())
    }

    /// Parses settings text with environment overrides, as .NET configuration reads
    /// them: `Section__Key__Sub=value` sets `Section.Key.Sub` (keys case-insensitive).
    /// Only variables whose first segment is a section the gateway reads count
    /// (`AppSettings`, `ConnectionStrings`, `Tenants`, `SwaggerSettings`,
    /// `Authentication`, `TenantGateway`). A value replacing a number or boolean must
    /// parse as one; a new value is a number or boolean when it reads as one, except
    /// under `ConnectionStrings`, which are always strings.
    pub fn parse_with_env(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut root: Value =
            serde_json::from_str(text).map_err(|e| err("$", format!("not valid JSON: {e}")))?;
        object(&root, "$")?;
        for (name, value) in vars {
            apply_env(&mut root, &name, value)?;
        }
        canonical_keys(&mut root, &SETTINGS_SCHEMA, "$")?;
        let root = object(&root, "$")?;

        let multi_tenancy = match get(root, "AppSettings") {
            Some(app) => boolean(
                get(object(app, "AppSettings")?, "MultiTenancy"),
                "AppSettings.MultiTenancy",
            )?,
            None => false,
        };

        let gateway: GatewaySection = match get(root, "TenantGateway") {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| err("TenantGateway", e.to_string()))?,
            None => GatewaySection::default(),
        };
        let limits = &gateway.limits;
        if limits.max_body_bytes == 0 {
            return Err(err(
                "TenantGateway.Limits.MaxBodyBytes",
                "must be greater than 0",
            ));
        }
        if !(1..=4096).contains(&limits.component_memory_mib) {
            return Err(err(
                "TenantGateway.Limits.ComponentMemoryMib",
                "must be between 1 and 4096",
            ));
        }
        if limits.component_timeout_ms == 0 {
            return Err(err(
                "TenantGateway.Limits.ComponentTimeoutMs",
                "must be greater than 0",
            ));
        }
        for (zero, key) in [
            (
                limits.max_concurrent_component_calls == 0,
                "MaxConcurrentComponentCalls",
            ),
            (limits.outbound_timeout_ms == 0, "OutboundTimeoutMs"),
            (
                limits.upstream_idle_timeout_ms == 0,
                "UpstreamIdleTimeoutMs",
            ),
            (
                limits.max_outbound_response_bytes == 0,
                "MaxOutboundResponseBytes",
            ),
        ] {
            if zero {
                return Err(err(
                    format!("TenantGateway.Limits.{key}"),
                    "must be greater than 0",
                ));
            }
        }

        let mut tenants = Vec::new();
        if multi_tenancy {
            let section = get(root, "Tenants").ok_or_else(|| {
                err(
                    "Tenants",
                    "is required when AppSettings.MultiTenancy is true",
                )
            })?;
            for (name, tenant) in object(section, "Tenants")? {
                let key = format!("Tenants.{name}");
                let parsed =
                    TenantName::parse(name).map_err(|p| err(&key, format!("tenant name {p}")))?;
                let tenant = object(tenant, &key)?;
                let cs_key = format!("{key}.ConnectionStrings");
                tenants.push(TenantSettings {
                    name: parsed,
                    connection_strings: connection_strings(
                        get(tenant, "ConnectionStrings"),
                        &cs_key,
                    )?,
                    tier: Tier::default(),
                    upstream: None,
                    routes: Vec::new(),
                });
            }
            if tenants.is_empty() {
                return Err(err(
                    "Tenants",
                    "must name at least one tenant when AppSettings.MultiTenancy is true",
                ));
            }
        } else {
            let name = gateway
                .single_tenant_name
                .as_deref()
                .unwrap_or(SINGLE_TENANT_NAME);
            let name = TenantName::parse(name)
                .map_err(|p| err("TenantGateway.SingleTenantName", format!("tenant name {p}")))?;
            tenants.push(TenantSettings {
                name,
                connection_strings: connection_strings(
                    get(root, "ConnectionStrings"),
                    "ConnectionStrings",
                )?,
                tier: Tier::default(),
                upstream: None,
                routes: Vec::new(),
            });
        }

        let mut apps = BTreeMap::new();
        for (name, app) in &gateway.apps {
            let key = format!("TenantGateway.Apps.{name}.Component");
            let source = match app.component.strip_prefix("builtin:") {
                Some(b) => AppSource::Builtin(
                    BUILTIN_APPS
                        .into_iter()
                        .find(|known| *known == b)
                        .ok_or_else(|| {
                            err(&key, format!("no built-in app {b} (known: tenant-app)"))
                        })?,
                ),
                None if app.component.is_empty() => return Err(err(&key, "must not be empty")),
                None => AppSource::File(PathBuf::from(&app.component)),
            };
            let allowed = AllowedHosts::parse(&app.allowed_outbound_hosts).map_err(|e| {
                let i = app
                    .allowed_outbound_hosts
                    .iter()
                    .position(|h| *h == e.entry)
                    .unwrap_or(0);
                err(
                    format!("TenantGateway.Apps.{name}.AllowedOutboundHosts[{i}]"),
                    e.to_string(),
                )
            })?;
            apps.insert(
                name.clone(),
                AppSettings {
                    source,
                    allowed_outbound_hosts: Arc::new(allowed),
                },
            );
        }
        let auth = &gateway.auth;
        for (value, key) in [
            (
                auth.password_checks_per_address_per_minute,
                "TenantGateway.Auth.PasswordChecksPerAddressPerMinute",
            ),
            (
                auth.password_checks_per_user_per_minute,
                "TenantGateway.Auth.PasswordChecksPerUserPerMinute",
            ),
            (
                auth.registrations_per_address_per_minute,
                "TenantGateway.Auth.RegistrationsPerAddressPerMinute",
            ),
            (
                auth.max_clients_per_tenant,
                "TenantGateway.Auth.MaxClientsPerTenant",
            ),
        ] {
            if value == 0 {
                return Err(err(key, "must be at least 1"));
            }
        }
        if !(1..=86_400).contains(&auth.token_lifetime_seconds) {
            return Err(err(
                "TenantGateway.Auth.TokenLifetimeSeconds",
                "must be between 1 and 86400",
            ));
        }
        if let Some(su) = &auth.super_user {
            if su.name.is_empty() || su.name.contains(':') {
                return Err(err(
                    "TenantGateway.Auth.SuperUser.Name",
                    "must be non-empty and contain no ':'",
                ));
            }
            if !su.password_hash.starts_with("$argon2") || su.password_hash.split('$').count() < 5 {
                return Err(err(
                    "TenantGateway.Auth.SuperUser.PasswordHash",
                    "must be an Argon2 PHC hash ($argon2id$...); make one with `tenant-gateway hash-password`",
                ));
            }
        }
        for (tier, q) in [
            ("Basic", gateway.rate_limits.basic),
            ("Pro", gateway.rate_limits.pro),
            ("Enterprise", gateway.rate_limits.enterprise),
        ] {
            for (class, n) in [
                ("Reads", q.reads),
                ("Updates", q.updates),
                ("Features", q.features),
            ] {
                if n == 0 {
                    return Err(err(
                        format!("TenantGateway.RateLimits.{tier}.{class}"),
                        "must be at least 1 (requests per minute)",
                    ));
                }
            }
        }

        let mut seen = BTreeMap::new();
        for t in &tenants {
            if let Some(first) = seen.insert(t.name.key(), t.name.clone()) {
                return Err(err(
                    format!("Tenants.{}", t.name),
                    format!("duplicates tenant {first} (tenant names are case-insensitive)"),
                ));
            }
        }
        for (name, extra) in &gateway.tenants {
            let key = format!("TenantGateway.Tenants.{name}");
            let t = tenants
                .iter_mut()
                .find(|t| t.name.as_str().eq_ignore_ascii_case(name))
                .ok_or_else(|| err(&key, "names no tenant of the settings file"))?;
            t.tier = extra.tier;
            if let Some(up) = &extra.upstream {
                t.upstream = Some(upstream(up).map_err(|p| err(format!("{key}.Upstream"), p))?);
            }
            t.routes = routes(&extra.routes, &format!("{key}.Routes"), &apps)?;
            if let Some(i) = t.routes.iter().position(|r| r.target == Target::Upstream)
                && t.upstream.is_none()
            {
                return Err(err(
                    format!("{key}.Routes[{i}].Upstream"),
                    "the tenant has no Upstream",
                ));
            }
        }
        let shared_routes = routes(&gateway.routes, "TenantGateway.Routes", &apps)?;
        let new_tenants = NewTenants {
            connection_strings: gateway
                .new_tenants
                .connection_strings
                .iter()
                .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
                .collect(),
            upstream: gateway.new_tenants.upstream.clone(),
        };
        if let Some(template) = &new_tenants.upstream {
            upstream(&template.replace(TENANT_PLACEHOLDER, "tenant"))
                .map_err(|p| err("TenantGateway.NewTenants.Upstream", p))?;
        }

        let (swagger_enabled, default_tenant) = match get(root, "SwaggerSettings") {
            None => (false, None),
            Some(sw) => {
                let sw = object(sw, "SwaggerSettings")?;
                let enabled = boolean(get(sw, "EnableSwagger"), "SwaggerSettings.EnableSwagger")?;
                let default = match get(sw, "DefaultTenant") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(name)) if name.is_empty() => None,
                    Some(Value::String(name)) => {
                        let t = tenants
                            .iter()
                            .find(|t| t.name.as_str().eq_ignore_ascii_case(name))
                            .ok_or_else(|| {
                                err(
                                    "SwaggerSettings.DefaultTenant",
                                    format!("names no configured tenant ({name})"),
                                )
                            })?;
                        Some(t.name.clone())
                    }
                    Some(_) => {
                        return Err(err("SwaggerSettings.DefaultTenant", "must be a string"));
                    }
                };
                if enabled && multi_tenancy && default.is_none() {
                    return Err(err(
                        "SwaggerSettings.DefaultTenant",
                        "is required when EnableSwagger and AppSettings.MultiTenancy are true",
                    ));
                }
                (enabled, default)
            }
        };

        let allow_registration = match get(root, "Authentication") {
            Some(a) => boolean(
                get(object(a, "Authentication")?, "AllowRegistration"),
                "Authentication.AllowRegistration",
            )?,
            None => false,
        };

        Ok(Self {
            multi_tenancy,
            tenants,
            listen: gateway.listen,
            admin_listen: gateway.admin_listen,
            data_dir: gateway.data_dir,
            components_dir: gateway.components_dir,
            limits: gateway.limits,
            swagger_enabled,
            default_tenant,
            allow_registration,
            auth: gateway.auth,
            rate_limits: gateway.rate_limits,
            apps,
            routes: shared_routes,
            new_tenants,
            store: gateway.store.parse()?,
        })
    }
}

/// Checks a list of routes: paths are `/`-prefixes, each names exactly one
/// target, apps exist, no path twice.
fn routes(
    list: &[RouteSection],
    key: &str,
    apps: &BTreeMap<String, AppSettings>,
) -> Result<Vec<Route>, SettingsError> {
    let mut out: Vec<Route> = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let path = r.path.trim_end_matches('/');
        let path = if path.is_empty() { "/" } else { path };
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err(err(
                format!("{key}.Path"),
                "must be a path starting with '/', without query",
            ));
        }
        let target = match (&r.app, r.upstream) {
            (Some(app), false) => {
                if !apps.contains_key(app) {
                    return Err(err(
                        format!("{key}.App"),
                        format!("names no app of TenantGateway.Apps ({app})"),
                    ));
                }
                Target::App(app.clone())
            }
            (None, true) => Target::Upstream,
            _ => {
                return Err(err(
                    &key,
                    "must have exactly one of App (an app name) or Upstream (true)",
                ));
            }
        };
        if out.iter().any(|o| o.path == path) {
            return Err(err(
                format!("{key}.Path"),
                format!("{path} is routed twice"),
            ));
        }
        out.push(Route {
            path: path.to_owned(),
            target,
        });
    }
    Ok(out)
}

/// An upstream base URL: `http://host[:port][/prefix]`, no query.
fn upstream(text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => return Err(format!("scheme {other} is not supported (use http://)")),
        None => return Err("must be an absolute http:// URL".into()),
    }
    if uri.authority().is_none() {
        return Err("must name a host".into());
    }
    if uri.query().is_some() {
        return Err("must not have a query".into());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_gateway(gateway: &str) -> Result<Settings, SettingsError> {
        Settings::parse(&format!(
            r#"{{"AppSettings":{{"MultiTenancy":true}},"Tenants":{{"A":{{}},"B":{{}}}},"TenantGateway":{gateway}}}"#
        ))
    }

    #[test]
    fn routes_apps_auth_and_limits_are_checked_naming_the_key() {
        let ok = with_gateway(
            r#"{"Apps":{"info":{"Component":"builtin:tenant-app"}},"Routes":[{"Path":"/info/","App":"info"}],
                "Tenants":{"a":{"Upstream":"http://127.0.0.1:1","Routes":[{"Path":"/legacy","Upstream":true}]}},
                "RateLimits":{"Pro":{"Updates":3}}}"#,
        )
        .unwrap();
        assert_eq!(ok.routes[0].path, "/info");
        assert_eq!(ok.tenants[0].routes[0].target, Target::Upstream);
        assert_eq!(ok.rate_limits.pro.updates, 3);
        assert_eq!(ok.rate_limits.pro.reads, 100);
        assert!(ok.auth.require_token && !ok.auth.tokens_cross_tenants);
        assert!(ok.routes[0].matches("/info") && ok.routes[0].matches("/info/x"));
        assert!(!ok.routes[0].matches("/information"));

        for (gateway, key) in [
            (
                r#"{"Routes":[{"Path":"/x","App":"nope"}]}"#,
                "TenantGateway.Routes[0].App",
            ),
            (
                r#"{"Routes":[{"Path":"x","Upstream":true}]}"#,
                "TenantGateway.Routes[0].Path",
            ),
            (
                r#"{"Apps":{"i":{"Component":"builtin:i"}},"Routes":[]}"#,
                "TenantGateway.Apps.i.Component",
            ),
            (
                r#"{"Tenants":{"B":{"Routes":[{"Path":"/l","Upstream":true}]}}}"#,
                "TenantGateway.Tenants.B.Routes[0].Upstream",
            ),
            (
                r#"{"Auth":{"SuperUser":{"Name":"admin","PasswordHash":"plain"}}}"#,
                "TenantGateway.Auth.SuperUser.PasswordHash",
            ),
            (
                r#"{"Auth":{"TokenLifetimeSeconds":0}}"#,
                "TenantGateway.Auth.TokenLifetimeSeconds",
            ),
            (
                r#"{"RateLimits":{"Basic":{"Reads":0}}}"#,
                "TenantGateway.RateLimits.Basic.Reads",
            ),
        ] {
            let e = with_gateway(gateway).unwrap_err();
            assert_eq!(e.key, key, "{gateway}: {e}");
        }
    }

    /// The settings schema in schemas/ accepts the sample and rejects what the
    /// parser rejects.
    #[test]
    fn settings_schema_matches_the_parser() {
        let schema: Value = serde_json::from_str(include_str!(
            "../../../schemas/gateway-settings.schema.json"
        ))
        .unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let sample: Value = serde_json::from_str(SAMPLE).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&sample)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        let mut bad = sample.clone();
        bad["TenantGateway"]["Bogus"] = 1.into();
        assert!(!validator.is_valid(&bad));
        assert!(Settings::parse(&bad.to_string()).is_err());
        let mut bad = sample.clone();
        bad["TenantGateway"]["Routes"] = serde_json::json!([{"Path": "/x"}]);
        assert!(!validator.is_valid(&bad));
        assert!(Settings::parse(&bad.to_string()).is_err());
        // The store: both engines, and what each refuses.
        for (store, ok) in [
            (serde_json::json!({"Engine": "Sqlite"}), true),
            (
                serde_json::json!({"Engine": "PostgreSql", "ConnectionString": "host=db user=gw"}),
                true,
            ),
            (serde_json::json!({"Engine": "PostgreSql"}), false),
            (
                serde_json::json!({"Engine": "Sqlite", "ConnectionString": "host=db"}),
                false,
            ),
            (serde_json::json!({"Engine": "Oracle"}), false),
            (
                serde_json::json!({"Engine": "PostgreSql", "ConnectionString": "host=db", "RootCertificate": "/etc/ca.pem"}),
                true,
            ),
            (
                serde_json::json!({"Engine": "Sqlite", "RootCertificate": "/etc/ca.pem"}),
                false,
            ),
        ] {
            let mut doc = sample.clone();
            doc["TenantGateway"]["Store"] = store.clone();
            assert_eq!(validator.is_valid(&doc), ok, "{store}");
            let parsed = Settings::parse(&doc.to_string());
            assert_eq!(parsed.is_ok(), ok, "{store}: {parsed:?}");
        }
    }

    #[test]
    fn the_store_connection_string_is_a_secret() {
        let s = Settings::parse(
            r#"{"TenantGateway":{"Store":{"Engine":"postgresql","ConnectionString":"postgresql://gw:hunter2@db/tenants"}}}"#,
        )
        .unwrap();
        let StoreSettings::Postgres { connection, .. } = &s.store else {
            panic!("{:?}", s.store);
        };
        assert_eq!(connection.expose(), "postgresql://gw:hunter2@db/tenants");
        assert!(!format!("{s:?}").contains("hunter2"));
        let e = Settings::parse(
            r#"{"TenantGateway":{"Store":{"Engine":"PostgreSql","ConnectionString":"host=db password=hunter2 port=x"}}}"#,
        )
        .unwrap_err();
        assert_eq!(e.key, "TenantGateway.Store.ConnectionString");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(Settings::parse("{}").unwrap().store, StoreSettings::Sqlite);
    }

    #[test]
    fn sample_parses_with_two_tenants() {
        let s = Settings::parse(SAMPLE).unwrap();
        assert!(s.multi_tenancy);
        assert_eq!(s.tenants.len(), 2);
        assert!(s.tenants.iter().all(|t| !t.connection_strings.is_empty()));
    }

    #[test]
    fn single_tenant_mode_is_the_default() {
        let s = Settings::parse(r#"{"ConnectionStrings":{"EdFi_Admin":"Server=x;Database=A"}}"#)
            .unwrap();
        assert!(!s.multi_tenancy);
        assert_eq!(s.tenants.len(), 1);
        assert_eq!(s.tenants[0].name.as_str(), SINGLE_TENANT_NAME);
        assert_eq!(
            s.tenants[0].connection_strings["EdFi_Admin"].expose(),
            "Server=x;Database=A"
        );
    }

    #[test]
    fn keys_are_case_insensitive_and_unknown_keys_tolerated() {
        let s = Settings::parse(
            r#"{"appsettings":{"multitenancy":"True","Other":1},"Logging":{},"tenants":{"A":{"connectionstrings":{}}}}"#,
        )
        .unwrap();
        assert!(s.multi_tenancy);
        assert_eq!(s.tenants[0].name.as_str(), "A");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (r#"{"AppSettings":{"MultiTenancy":true}}"#, "Tenants"),
            (
                r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"bad name":{}}}"#,
                "Tenants.bad name",
            ),
            (
                r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"a":{},"A":{}}}"#,
                "Tenants.A",
            ),
            (
                r#"{"AppSettings":{"MultiTenancy":1}}"#,
                "AppSettings.MultiTenancy",
            ),
            (
                r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"a":{"ConnectionStrings":{"x":1}}}}"#,
                "Tenants.a.ConnectionStrings.x",
            ),
            (r#"{"TenantGateway":{"Nope":1}}"#, "TenantGateway"),
            (
                r#"{"TenantGateway":{"Tenants":{"ghost":{}}}}"#,
                "TenantGateway.Tenants.ghost",
            ),
            (
                r#"{"TenantGateway":{"Limits":{"MaxBodyBytes":0}}}"#,
                "TenantGateway.Limits.MaxBodyBytes",
            ),
            (
                r#"{"TenantGateway":{"Tenants":{"default":{"Upstream":"ftp://x"}}}}"#,
                "TenantGateway.Tenants.default.Upstream",
            ),
            (
                r#"{"TenantGateway":{"Tenants":{"default":{"Upstream":"/relative"}}}}"#,
                "TenantGateway.Tenants.default.Upstream",
            ),
            (
                r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"a":{}},"SwaggerSettings":{"EnableSwagger":true}}"#,
                "SwaggerSettings.DefaultTenant",
            ),
            (
                r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"a":{}},"SwaggerSettings":{"EnableSwagger":true,"DefaultTenant":"b"}}"#,
                "SwaggerSettings.DefaultTenant",
            ),
        ];
        for (text, key) in cases {
            assert_eq!(Settings::parse(text).unwrap_err().key, key, "{text}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_like_dotnet_configuration() {
        let s = Settings::parse_with_env(
            SAMPLE,
            env(&[
                ("TENANTGATEWAY__LIMITS__MAXBODYBYTES", "1000"),
                ("Tenants__Tenant3__ConnectionStrings__EdFi_Admin", "12345"),
                ("TenantGateway__Tenants__Tenant3__Tier", "Pro"),
                ("SwaggerSettings__DefaultTenant", "Tenant2"),
                ("PATH", "/usr/bin"),
                ("SOME__OTHER__THING", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.limits.max_body_bytes, 1000);
        let t3 = s
            .tenants
            .iter()
            .find(|t| t.name.as_str() == "Tenant3")
            .unwrap();
        assert_eq!(t3.connection_strings["EdFi_Admin"].expose(), "12345");
        assert_eq!(t3.tier, Tier::Pro);
        assert_eq!(s.default_tenant.unwrap().as_str(), "Tenant2");
        let e = Settings::parse_with_env(
            SAMPLE,
            env(&[("TenantGateway__Limits__MaxBodyBytes", "lots")]),
        )
        .unwrap_err();
        assert_eq!(e.key, "TenantGateway.Limits.MaxBodyBytes");
        let e = Settings::parse_with_env(SAMPLE, env(&[("AppSettings__MultiTenancy", "maybe")]))
            .unwrap_err();
        assert_eq!(e.key, "AppSettings.MultiTenancy");
        let single = Settings::parse_with_env(
            r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"a":{}}}"#,
            env(&[("AppSettings__MultiTenancy", "false")]),
        )
        .unwrap();
        assert!(!single.multi_tenancy);
        assert_eq!(single.tenants[0].name.as_str(), SINGLE_TENANT_NAME);
    }

    /// Keys match in any case, in the file and from the environment, as .NET
    /// configuration's do; user-chosen names keep their spelling. (Before:
    /// `TENANTGATEWAY__STORE__ENGINE` failed with "unknown field STORE" when the
    /// file had no `Store` section.)
    #[test]
    fn keys_match_in_any_case() {
        let text = r#"{"appsettings":{"multitenancy":true},"TENANTS":{"Acme":{}},
            "tenantgateway":{"limits":{"maxbodybytes":1000},"apps":{"MyApp":{"COMPONENT":"builtin:tenant-app"}},
            "routes":[{"path":"/x","APP":"MyApp"}]}}"#;
        let s = Settings::parse_with_env(
            text,
            env(&[
                ("TENANTGATEWAY__STORE__ENGINE", "PostgreSql"),
                ("tenantgateway__store__connectionstring", "host=db user=gw"),
                ("TenantGateway__Tenants__Acme__TIER", "Pro"),
            ]),
        )
        .unwrap();
        assert!(s.multi_tenancy);
        assert_eq!(s.limits.max_body_bytes, 1000);
        assert!(
            matches!(s.store, StoreSettings::Postgres { .. }),
            "{:?}",
            s.store
        );
        assert!(s.apps.contains_key("MyApp"));
        assert_eq!(s.tenants[0].name.as_str(), "Acme");
        assert_eq!(s.tenants[0].tier, Tier::Pro);
        let twice =
            r#"{"TenantGateway":{"Limits":{"MaxBodyBytes":1},"limits":{"MaxBodyBytes":2}}}"#;
        let e = Settings::parse(twice).unwrap_err();
        assert!(e.to_string().contains("differ only in case"), "{e}");
    }

    #[test]
    fn tenant_names_that_read_as_uuids_are_refused() {
        for name in [
            "6f1c2b9e-8a4d-5e3f-9b2a-1c0d3e4f5a6b",
            "6F1C2B9E-8A4D-5E3F-9B2A-1C0D3E4F5A6B",
            "6f1c2b9e8a4d5e3f9b2a1c0d3e4f5a6b",
        ] {
            assert!(
                TenantName::parse(name).unwrap_err().contains("UUID"),
                "{name}"
            );
        }
        assert!(TenantName::parse("6f1c2b9e-8a4d-5e3f-9b2a-1c0d3e4f5a6").is_ok());
        assert!(TenantName::parse("tenant-6f1c2b9e").is_ok());
        let text = r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"00000000-0000-0000-0000-000000000001":{}}}"#;
        let e = Settings::parse(text).unwrap_err();
        assert!(e.to_string().contains("UUID"), "{e}");
    }

    #[test]
    fn new_tenants_are_connected_by_template() {
        let s = Settings::parse(SAMPLE).unwrap();
        let name = TenantName::parse("Acme").unwrap();
        let cs = s.new_tenants.connection_strings(&name);
        assert!(
            cs["EdFi_Admin"]
                .expose()
                .contains("Database=EdFi_Admin_Acme;"),
            "{:?}",
            cs["EdFi_Admin"].expose()
        );
        assert_eq!(s.new_tenants.upstream(&name), None);
        let text = r#"{"AppSettings":{"MultiTenancy":true},"Tenants":{"a":{}},
            "TenantGateway":{"NewTenants":{"Upstream":"http://10.0.0.5:8080/{tenant}/api"}}}"#;
        let s = Settings::parse(text).unwrap();
        assert_eq!(
            s.new_tenants.upstream(&name).unwrap().to_string(),
            "http://10.0.0.5:8080/Acme/api"
        );
        assert!(s.new_tenants.connection_strings(&name).is_empty());
        let e = Settings::parse(&text.replace("http://10", "ftp://10")).unwrap_err();
        assert_eq!(e.key, "TenantGateway.NewTenants.Upstream");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Settings::parse(SAMPLE).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("Database="), "{shown}");
    }
}
