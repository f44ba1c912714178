//! The settings file: an Ed-Fi style `appsettings.json` (read as it is, unknown keys
//! tolerated, keys case-insensitive like .NET configuration) plus the gateway's own
//! `TenantGateway` section (strict: unknown keys are errors).
//!
//! `tenant.rs` and `gateway.rs` hold the typed settings, `file.rs` the
//! `TenantGateway` section as written, `read.rs` the reading and checking of
//! it all, `dotnet.rs` the .NET key and environment rules.

pub mod allowed_hosts;
mod dotnet;
mod file;
mod gateway;
mod read;
mod tenant;

pub use gateway::{
    AmqpSettings, AmqpTls, AuthSettings, Limits, Quota, RateLimits, StoreSettings, SuperUser,
};
pub use tenant::{
    AppSettings, AppSource, BUILTIN_APPS, ConnectionStringSet, Route, Secret, Target, TenantName,
    TenantSettings, Tier,
};

use read::upstream;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    /// `TenantGateway.Amqp`: `None` when no listener is set.
    pub amqp: Option<AmqpSettings>,
}

/// What a tenant created through a management API is connected to: templates in
/// which `{tenant}` stands for the tenant's name (`TenantGateway.NewTenants`).
/// They stay in the settings file; the store holds no connection string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewTenants {
    connection_strings: BTreeMap<String, Secret>,
    upstream: Option<String>,
    /// The upstream, parsed once, when the template names no tenant: every
    /// such tenant shares it.
    fixed_upstream: Option<std::sync::Arc<http::Uri>>,
}

/// The placeholder of [`NewTenants`] templates.
pub const TENANT_PLACEHOLDER: &str = "{tenant}";

impl NewTenants {
    /// The connection strings of tenant `name`.
    pub fn connection_strings(&self, name: &TenantName) -> ConnectionStringSet {
        self.connection_strings
            .iter()
            .map(|(k, v)| {
                let value = v.expose().replace(TENANT_PLACEHOLDER, name.as_str());
                (k.clone(), Secret::new(value))
            })
            .collect()
    }

    /// The upstream of tenant `name`.
    pub fn upstream(&self, name: &TenantName) -> Option<std::sync::Arc<http::Uri>> {
        if let Some(fixed) = &self.fixed_upstream {
            return Some(fixed.clone());
        }
        let template = self.upstream.as_deref()?;
        // Checked at load with a sample name; a tenant name ([A-Za-z0-9_-]) keeps it valid.
        upstream(&template.replace(TENANT_PLACEHOLDER, name.as_str()))
            .ok()
            .map(std::sync::Arc::new)
    }
}

/// Name of the one tenant in single-tenant mode unless `TenantGateway.SingleTenantName` says otherwise.
pub const SINGLE_TENANT_NAME: &str = "default";

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
}

#[cfg(test)]
mod tests;
