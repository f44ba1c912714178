//! The `TenantGateway` section's shape as the file writes it (strict: unknown keys
//! are errors), before it is checked into [`Settings`](super::Settings).

use super::{
    AmqpSettings, AmqpTls, AuthSettings, Limits, RateLimits, Secret, SettingsError, StoreSettings,
    Tier, err,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(super) struct GatewaySection {
    pub(super) listen: Option<SocketAddr>,
    pub(super) admin_listen: Option<SocketAddr>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) components_dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) limits: Limits,
    #[serde(default)]
    pub(super) tenants: BTreeMap<String, GatewayTenant>,
    pub(super) single_tenant_name: Option<String>,
    #[serde(default)]
    pub(super) auth: AuthSettings,
    #[serde(default)]
    pub(super) rate_limits: RateLimits,
    #[serde(default)]
    pub(super) apps: BTreeMap<String, AppSection>,
    #[serde(default)]
    pub(super) routes: Vec<RouteSection>,
    #[serde(default)]
    pub(super) new_tenants: NewTenantsSection,
    #[serde(default)]
    pub(super) store: StoreSection,
    #[serde(default)]
    pub(super) amqp: AmqpSection,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(super) struct AmqpSection {
    pub(super) listen: Option<SocketAddr>,
    pub(super) certificate_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) client_ca_file: Option<PathBuf>,
}

impl AmqpSection {
    pub(super) fn parse(&self) -> Result<Option<AmqpSettings>, SettingsError> {
        let tls = match (&self.certificate_file, &self.key_file) {
            (Some(certificate), Some(key)) => Some(AmqpTls {
                certificate: certificate.clone(),
                key: key.clone(),
                client_ca: self.client_ca_file.clone(),
            }),
            (None, None) if self.client_ca_file.is_some() => {
                return Err(err(
                    "TenantGateway.Amqp.ClientCaFile",
                    "needs TLS: CertificateFile and KeyFile",
                ));
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(err(
                    "TenantGateway.Amqp.KeyFile",
                    "is required with CertificateFile",
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    "TenantGateway.Amqp.CertificateFile",
                    "is required with KeyFile",
                ));
            }
        };
        match self.listen {
            Some(listen) => Ok(Some(AmqpSettings { listen, tls })),
            None if tls.is_some() => Err(err(
                "TenantGateway.Amqp.Listen",
                "is required with CertificateFile and KeyFile",
            )),
            None => Ok(None),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(super) struct StoreSection {
    pub(super) engine: Option<String>,
    pub(super) connection_string: Option<String>,
    pub(super) root_certificate: Option<PathBuf>,
}

impl StoreSection {
    pub(super) fn parse(&self) -> Result<StoreSettings, SettingsError> {
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
pub(super) struct NewTenantsSection {
    #[serde(default)]
    pub(super) connection_strings: BTreeMap<String, String>,
    pub(super) upstream: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(super) struct AppSection {
    pub(super) component: String,
    #[serde(default)]
    pub(super) allowed_outbound_hosts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(super) struct RouteSection {
    pub(super) path: String,
    pub(super) app: Option<String>,
    #[serde(default)]
    pub(super) upstream: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(super) struct GatewayTenant {
    #[serde(default)]
    pub(super) tier: Tier,
    pub(super) upstream: Option<String>,
    #[serde(default)]
    pub(super) routes: Vec<RouteSection>,
}
