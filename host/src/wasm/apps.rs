//! Tenant apps: `wasi:http` components (Spin HTTP components) that serve tenant
//! traffic. One compiled app serves every tenant routed to it; each request gets
//! a fresh instance whose settings are the resolved tenant's own connection
//! settings, so an instance can never see another tenant's.
//!
//! The settings reach the app two ways, with the same values: as environment
//! variables (`wasi:cli/environment`, which every host provides: the sample app
//! reads these, so it runs unchanged on Spin and `wasmtime serve` too) and as
//! Spin variables (`fermyon:spin/variables`, for apps written against Spin's
//! own interface). Variables: `tenant_name`, `tenant_id`, `tenant_tier`, and one
//! per connection string, named after it in lower case with anything outside
//! `[a-z0-9]` as `_` (`EdFi_Admin` → `edfi_admin`); the environment has the same
//! names in upper case (`TENANT_NAME`, `EDFI_ADMIN`).

use super::bindings::app::fermyon::spin::variables;
use super::engine::store_limits;
use super::outbound::{self, Outbound};
use super::{Apps, CallError, Runtime};
use crate::config::allowed_hosts::AllowedHosts;
use crate::tenancy::Tenant;
use bytes::Bytes;
use std::sync::Arc;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// A loaded tenant app, ready to instantiate.
pub struct App {
    /// Name from the settings (`TenantGateway.Apps.{name}`).
    pub name: String,
    /// Where its component came from (for logs and reload decisions).
    pub source: crate::config::AppSource,
    /// SHA-256 of the component bytes, hex.
    pub sha256: String,
    /// Where it may send HTTP requests.
    pub allowed_outbound_hosts: Arc<AllowedHosts>,
    /// `app {name}`, for logs.
    pub(super) label: Arc<str>,
    /// `app:{name}`, the component label of its metrics.
    pub metric_label: Arc<str>,
    pub(super) pre: ProxyPre<AppState>,
}

impl App {
    /// The same compiled app under other grants (a settings reload that
    /// changed only `AllowedOutboundHosts`).
    pub fn with_allowed_outbound_hosts(&self, allowed: Arc<AllowedHosts>) -> Arc<Self> {
        Arc::new(Self {
            name: self.name.clone(),
            source: self.source.clone(),
            sha256: self.sha256.clone(),
            allowed_outbound_hosts: allowed,
            label: self.label.clone(),
            metric_label: self.metric_label.clone(),
            pre: self.pre.clone(),
        })
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("sha256", &self.sha256)
            .field("allowed_outbound_hosts", &self.allowed_outbound_hosts)
            .finish_non_exhaustive()
    }
}

/// Store data of one tenant app request.
pub struct AppState {
    pub(super) wasi: WasiCtx,
    pub(super) http: WasiHttpCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: StoreLimits,
    pub(super) tenant: Arc<Tenant>,
    pub(super) outbound: Outbound,
}

impl WasiView for AppState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for AppState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// The variable name of a connection string (Spin's `[a-z0-9_]` names).
pub fn variable_name(connection_name: &str) -> String {
    connection_name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '_',
        })
        .collect()
}

/// The environment of one tenant's app instance: the same settings as its
/// variables, under upper-case names.
pub fn environment(tenant: &Tenant) -> WasiCtx {
    let mut wasi = WasiCtx::builder();
    wasi.env("TENANT_NAME", tenant.name.as_str())
        .env("TENANT_ID", tenant.id.to_string())
        .env("TENANT_TIER", tenant.tier.as_str());
    for (key, cs) in tenant.connection_strings.entries() {
        wasi.env(variable_name(&key).to_ascii_uppercase(), cs.expose());
    }
    wasi.build()
}

fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A tenant's value of a variable.
pub fn lookup(tenant: &Tenant, name: &str) -> Result<String, variables::Error> {
    if !valid_name(name) {
        return Err(variables::Error::InvalidName(name.to_owned()));
    }
    match name {
        "tenant_name" => return Ok(tenant.name.as_str().to_owned()),
        "tenant_id" => return Ok(tenant.id.to_string()),
        "tenant_tier" => return Ok(tenant.tier.as_str().to_owned()),
        _ => {}
    }
    tenant
        .connection_strings
        .entries()
        .into_iter()
        .find(|(key, _)| variable_name(key) == name)
        .map(|(_, cs)| cs.expose().to_owned())
        .ok_or_else(|| variables::Error::Undefined(name.to_owned()))
}

impl variables::Host for AppState {
    fn get(&mut self, name: String) -> Result<String, variables::Error> {
        lookup(&self.tenant, &name)
    }
}

impl Runtime {
    /// The tenant apps loaded now.
    pub fn apps(&self) -> Arc<Apps> {
        self.apps.load_full()
    }

    /// The tenant app named `name`, if it is loaded.
    pub fn app(&self, name: &str) -> Option<Arc<App>> {
        self.apps.load().get(name).cloned()
    }

    /// Makes `apps` the tenant apps. A directory may name only loaded apps:
    /// publish the apps a new directory needs before it, and drop the ones
    /// only the old one named after it.
    pub fn publish_apps(&self, apps: Apps) {
        self.apps.store(Arc::new(apps));
    }

    /// Compiles a tenant app (blocking: run it off the async threads) from
    /// `bytes`, whose SHA-256 is `sha256` (hex); `None`: the built-in sample,
    /// loaded from its artifact in the binary. Fails when the component is not
    /// a `wasi:http` handler or imports what the gateway does not provide.
    pub fn load_app(
        &self,
        name: &str,
        source: crate::config::AppSource,
        allowed_outbound_hosts: Arc<crate::config::allowed_hosts::AllowedHosts>,
        bytes: Option<&[u8]>,
        sha256: String,
    ) -> anyhow::Result<Arc<App>> {
        use wasmtime::error::Context;
        let label = format!("app-{name}");
        let component = match bytes {
            Some(bytes) => self.loader.compile(&label, bytes)?.0,
            None => match self.loader.embedded(&super::builtin::TENANT_APP) {
                Some(component) => component,
                None => {
                    self.loader
                        .compile(&label, &super::builtin::TENANT_APP.wasm())?
                        .0
                }
            },
        };
        let pre = ProxyPre::new(
            self.loader
                .app_linker
                .instantiate_pre(&component)
                .with_context(|| format!("app {name}: imports"))?,
        )
        .with_context(|| format!("app {name} does not export wasi:http/incoming-handler"))?;
        Ok(Arc::new(App {
            name: name.to_owned(),
            source,
            sha256,
            allowed_outbound_hosts,
            label: format!("app {name}").into(),
            metric_label: format!("app:{name}").into(),
            pre,
        }))
    }

    /// Serves one tenant request with a tenant app: a fresh instance that sees
    /// only `tenant`'s variables.
    pub async fn serve_app(
        self: &Arc<Self>,
        app: &App,
        tenant: Arc<crate::tenancy::Tenant>,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, CallError> {
        let data = AppState {
            wasi: environment(&tenant),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: store_limits(&self.loader.limits),
            outbound: outbound::Outbound::new(
                app.allowed_outbound_hosts.clone(),
                &self.loader.limits,
                app.label.clone(),
                Some(tenant.clone()),
                self.loader.metrics.clone(),
            ),
            tenant,
        };
        self.serve_http(app.pre.clone(), data, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names() {
        assert_eq!(variable_name("EdFi_Admin"), "edfi_admin");
        assert_eq!(variable_name("Read-Only DB"), "read_only_db");
        assert!(valid_name("edfi_admin"));
        assert!(!valid_name("EdFi_Admin"));
        assert!(!valid_name("1x"));
    }
}
