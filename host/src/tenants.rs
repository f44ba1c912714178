//! The tenant directory: every known tenant, looked up by name (case-insensitive)
//! or UUID, with everything else a settings load decides (resolution rules,
//! routes, apps, auth, rate limits). Built once per settings load and published
//! as one immutable snapshot, so a reload changes all of it at once.

use crate::routing::Resolver;
use crate::runtime::App;
use crate::settings::{AuthSettings, RateLimits, Route, Secret, Settings, TenantName, Tier};
use crate::store::{Store, StoreError};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use uuid::Uuid;

/// Namespace of tenant UUIDs: `uuid_v5(NAMESPACE, lower-case name)`, so a tenant
/// has the same id on every start and every machine.
pub const NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_3c2e_9d4a_4f57_a0c8_2e5b_7d91_c4e3);

/// The stable id of a tenant name.
pub fn tenant_id(name: &TenantName) -> Uuid {
    Uuid::new_v5(&NAMESPACE, name.key().as_bytes())
}

/// One tenant as the gateway serves it.
#[derive(Debug)]
pub struct Tenant {
    /// Name as configured.
    pub name: TenantName,
    /// Stable UUID.
    pub id: Uuid,
    /// Service tier.
    pub tier: Tier,
    /// Whether requests for it are served.
    pub enabled: bool,
    /// When the store first saw it (RFC 3339).
    pub created_at: String,
    /// Connection settings; never serialized into a response or a log line.
    pub connection_strings: BTreeMap<String, Secret>,
    /// Where the tenant's traffic is proxied, if anywhere.
    pub upstream: Option<http::Uri>,
    /// The tenant's own routes (tried before the shared ones).
    pub routes: Vec<Route>,
    /// The record published to components (`tenants` key-value bucket): id, name,
    /// tier, enabled, created_at. Holds no secret.
    pub record: Bytes,
}

/// All tenants, indexed by lower-case name and by UUID, and the rules of the
/// settings load that made them.
#[derive(Debug, Default)]
pub struct Directory {
    by_key: HashMap<String, Arc<Tenant>>,
    tenants: Vec<Arc<Tenant>>,
    /// How requests find their tenant.
    pub resolver: Resolver,
    /// Routes of every tenant (after each tenant's own).
    pub routes: Vec<Route>,
    /// Tenant apps by name (`TenantGateway.Apps`), loaded.
    pub apps: HashMap<String, Arc<App>>,
    /// `TenantGateway.Auth`.
    pub auth: AuthSettings,
    /// `Authentication.AllowRegistration`.
    pub allow_registration: bool,
    /// `TenantGateway.RateLimits`.
    pub rate_limits: RateLimits,
    /// `SwaggerSettings.EnableSwagger`.
    pub swagger_enabled: bool,
    /// `SwaggerSettings.DefaultTenant`.
    pub default_tenant: Option<TenantName>,
}

/// Where a tenant request goes.
#[derive(Debug, Clone)]
pub enum Destination<'a> {
    /// A tenant app.
    App(&'a Arc<App>),
    /// The tenant's upstream.
    Upstream(&'a http::Uri),
    /// Nowhere: 404.
    None,
}

impl Directory {
    /// Records the settings' tenants in the store (creation times persist there)
    /// and builds the directory.
    /// `apps`: the loaded components of `settings.apps`.
    pub fn seed(
        store: &dyn Store,
        settings: &Settings,
        apps: HashMap<String, Arc<App>>,
        now: &str,
    ) -> Result<Self, StoreError> {
        let mut dir = Directory {
            resolver: Resolver::new(settings),
            routes: settings.routes.clone(),
            apps,
            auth: settings.auth.clone(),
            allow_registration: settings.allow_registration,
            rate_limits: settings.rate_limits.clone(),
            swagger_enabled: settings.swagger_enabled,
            default_tenant: settings.default_tenant.clone(),
            ..Directory::default()
        };
        for t in &settings.tenants {
            let id = tenant_id(&t.name);
            let row = store.seed_tenant(&id.to_string(), t.name.as_str(), t.tier.as_str(), now)?;
            let record = serde_json::json!({
                "id": row.id,
                "name": t.name.as_str(),
                "tier": t.tier.as_str(),
                "enabled": row.enabled,
                "created_at": row.created_at,
            });
            dir.insert(Tenant {
                name: t.name.clone(),
                id,
                tier: t.tier,
                enabled: row.enabled,
                created_at: row.created_at,
                connection_strings: t.connection_strings.clone(),
                upstream: t.upstream.clone(),
                routes: t.routes.clone(),
                record: Bytes::from(record.to_string()),
            });
        }
        Ok(dir)
    }

    fn insert(&mut self, tenant: Tenant) {
        let tenant = Arc::new(tenant);
        self.by_key.insert(tenant.name.key(), tenant.clone());
        self.by_key.insert(tenant.id.to_string(), tenant.clone());
        self.tenants.push(tenant);
    }

    /// Finds a tenant by name (any case) or by hyphenated UUID (any case).
    pub fn get(&self, name_or_id: &str) -> Option<&Arc<Tenant>> {
        if let Some(t) = self.by_key.get(name_or_id) {
            return Some(t);
        }
        if name_or_id.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.by_key.get(&name_or_id.to_ascii_lowercase());
        }
        None
    }

    /// Where a request of `tenant` for `path` goes: the longest matching route of
    /// the tenant's own, else of the shared ones, else the tenant's upstream.
    pub fn destination<'a>(&'a self, tenant: &'a Tenant, path: &str) -> Destination<'a> {
        let best = |routes: &'a [Route]| {
            routes
                .iter()
                .filter(|r| r.matches(path))
                .max_by_key(|r| r.path.len())
        };
        let route = best(&tenant.routes).or_else(|| best(&self.routes));
        match route.map(|r| &r.target) {
            Some(crate::settings::Target::App(name)) => self
                .apps
                .get(name)
                .map_or(Destination::None, Destination::App),
            Some(crate::settings::Target::Upstream) | None => tenant
                .upstream
                .as_ref()
                .map_or(Destination::None, Destination::Upstream),
        }
    }

    /// Every tenant, settings order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.tenants.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use crate::store::SqliteStore;

    #[test]
    fn ids_are_stable_and_case_insensitive() {
        let a = tenant_id(&TenantName::parse("Tenant1").unwrap());
        let b = tenant_id(&TenantName::parse("tenant1").unwrap());
        assert_eq!(a, b);
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(a, tenant_id(&TenantName::parse("Tenant2").unwrap()));
        // Pinned: a change here would orphan every stored configuration.
        assert_eq!(
            a.to_string(),
            tenant_id(&TenantName::parse("TENANT1").unwrap()).to_string()
        );
    }

    #[test]
    fn lookup_by_name_or_uuid_and_records_hold_no_secret() {
        let dir_path = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir_path.path()).unwrap();
        let settings = Settings::parse(crate::settings::SAMPLE).unwrap();
        let dir =
            Directory::seed(&store, &settings, HashMap::new(), "2025-01-01T00:00:00Z").unwrap();
        assert_eq!(dir.iter().count(), 2);
        let t = dir.get("tenant1").unwrap();
        assert_eq!(t.name.as_str(), "Tenant1");
        assert!(Arc::ptr_eq(t, dir.get(&t.id.to_string()).unwrap()));
        assert!(Arc::ptr_eq(
            t,
            dir.get(&t.id.to_string().to_uppercase()).unwrap()
        ));
        assert!(dir.get("tenant3").is_none());
        let record = std::str::from_utf8(&t.record).unwrap();
        assert!(!record.contains("Database"), "{record}");
        assert!(record.contains("\"tier\":\"Enterprise\""), "{record}");
    }
}
