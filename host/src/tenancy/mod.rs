//! The tenant directory: every known tenant, looked up by name (case-insensitive)
//! or UUID, with everything else a settings load decides (resolution rules,
//! routes, apps, auth, rate limits). Built once per settings load and published
//! as one immutable snapshot, so a reload changes all of it at once.

pub mod dn;
pub mod resolve;

use crate::config::{AuthSettings, RateLimits, Route, Secret, Settings, TenantName, Tier};
use crate::store::{Origin, Store, StoreError, TenantDoc, TenantRow};
use crate::tenancy::resolve::Resolver;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use uuid::Uuid;

/// Namespace of tenant UUIDs: `uuid_v5(NAMESPACE, lower-case name)`, so a tenant
/// has the same id on every start and every machine.
pub const NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_3c2e_9d4a_4f57_a0c8_2e5b_7d91_c4e3);

/// The stable id of a tenant name.
pub fn tenant_id(name: &TenantName) -> Uuid {
    Uuid::new_v5(&NAMESPACE, name.key().as_bytes())
}

/// State every request shares: the store and the tenant directory.
pub struct Shared {
    /// Persistent store.
    pub store: Arc<dyn Store>,
    /// Current tenants.
    pub directory: arc_swap::ArcSwap<Directory>,
    /// Held while a new directory is built and published, so two publishers
    /// (a settings reload, a tenant change) never overwrite each other's work.
    pub publishing: std::sync::Mutex<()>,
    /// The store's change sequence the current directory reflects.
    pub seen_seq: std::sync::atomic::AtomicI64,
}

impl Shared {
    /// Shared state over `store`, with an empty directory.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            directory: arc_swap::ArcSwap::from_pointee(Directory::default()),
            publishing: std::sync::Mutex::new(()),
            seen_seq: std::sync::atomic::AtomicI64::new(0),
        }
    }
}

/// One tenant as the gateway serves it.
#[derive(Debug)]
pub struct Tenant {
    /// Name as configured.
    pub name: TenantName,
    /// The name as the label of its metrics (shared, not copied per request).
    pub label: Arc<str>,
    /// Stable UUID.
    pub id: Uuid,
    /// Service tier.
    pub tier: Tier,
    /// Whether requests for it are served.
    pub enabled: bool,
    /// When the store first saw it (RFC 3339).
    pub created_at: String,
    /// Which tenant of this name it is: random for tenants the management APIs
    /// create, else its creation time in seconds since the Unix epoch. A tenant
    /// purged and created again under the same name (and so the same UUID) is
    /// another generation: tokens and clients of the old one are refused.
    pub generation: u64,
    /// Connection settings; never serialized into a response or a log line.
    pub connection_strings: BTreeMap<String, Secret>,
    /// Who owns it: the settings file or the management APIs.
    pub origin: Origin,
    /// Users (hashed), options, Hono information.
    pub doc: TenantDoc,
    /// Where the tenant's traffic is proxied, if anywhere.
    pub upstream: Option<http::Uri>,
    /// The tenant's own routes (tried before the shared ones).
    pub routes: Vec<Route>,
    /// The record published to components (`tenants` key-value bucket): id, name,
    /// tier, enabled, created_at. Holds no secret.
    pub record: Bytes,
    /// Its name as proxied requests carry it (`X-Tenant-Name`), made once;
    /// `None` for a name that is not a header value.
    pub name_header: Option<http::HeaderValue>,
    /// Its id as proxied requests carry it (`X-Tenant-Id`), made once.
    pub id_header: http::HeaderValue,
}

/// How long a client may cache a tenant's Hono information (Hono's
/// `cache_control`, over HTTP and AMQP alike).
pub const HONO_CACHE_DIRECTIVE: &str = "max-age=60";

impl Tenant {
    /// Its Hono tenant information document: the stored members with
    /// `tenant-id` and `enabled` from the tenant itself (as Hono answers a
    /// disabled tenant: with `enabled: false`).
    pub fn hono_document(&self) -> serde_json::Value {
        let mut doc = self.doc.hono.clone().unwrap_or_default();
        doc.insert("tenant-id".into(), self.name.as_str().into());
        doc.insert("enabled".into(), self.enabled.into());
        serde_json::Value::Object(doc)
    }
}

/// The generation of a tenant created at `created_at` (RFC 3339): seconds
/// since the Unix epoch, 0 if unreadable.
pub fn generation_of(created_at: &str) -> u64 {
    humantime::parse_rfc3339_weak(created_at)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// All tenants, indexed by lower-case name and by UUID, and the rules of the
/// settings load that made them.
#[derive(Debug, Default)]
pub struct Directory {
    by_key: HashMap<String, Arc<Tenant>>,
    /// Tenants by the canonical subject DN of each trusted CA (Hono).
    by_dn: HashMap<String, Arc<Tenant>>,
    tenants: Vec<Arc<Tenant>>,
    /// How requests find their tenant.
    pub resolver: Resolver,
    /// Routes of every tenant (after each tenant's own).
    pub routes: Vec<Route>,
    /// The tenant apps (`TenantGateway.Apps`) loaded when it was built, by
    /// name; the runtime holds the components.
    pub apps: BTreeSet<String>,
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
    /// The settings this directory was built from (a rebuild after a tenant
    /// change keeps them).
    pub settings: Arc<Settings>,
}

/// Where a tenant request goes.
#[derive(Debug, Clone)]
pub enum Destination<'a> {
    /// A tenant app, by name.
    App(&'a str),
    /// The tenant's upstream.
    Upstream(&'a http::Uri),
    /// Nowhere: 404.
    None,
}

impl Directory {
    /// The sample settings' directory over `store` (tests).
    #[cfg(test)]
    pub(crate) fn sample(store: &dyn Store) -> (Self, Settings) {
        let settings = Settings::parse(crate::config::SAMPLE).unwrap();
        let dir = Self::seed(store, &settings, BTreeSet::new(), "2025-01-01T00:00:00Z").unwrap();
        (dir, settings)
    }

    /// Records the settings' tenants in the store (creation times persist there)
    /// and builds the directory from the store.
    /// `apps`: the names of `settings.apps` loaded.
    pub fn seed(
        store: &dyn Store,
        settings: &Settings,
        apps: BTreeSet<String>,
        now: &str,
    ) -> Result<Self, StoreError> {
        for t in &settings.tenants {
            let id = tenant_id(&t.name);
            let row = store.seed_tenant(&id.to_string(), t.name.as_str(), t.tier.as_str(), now)?;
            if row.deleted_at.is_some() {
                tracing::warn!(
                    tenant = %t.name,
                    "tenant from the settings file was deleted through the API; it stays deleted until restored"
                );
            }
        }
        Self::build(store, Arc::new(settings.clone()), apps)
    }

    /// The same settings and apps over the store's current tenants: what a
    /// tenant change through an API publishes.
    pub fn rebuild(&self, store: &dyn Store) -> Result<Self, StoreError> {
        Self::build(store, self.settings.clone(), self.apps.clone())
    }

    fn build(
        store: &dyn Store,
        settings: Arc<Settings>,
        apps: BTreeSet<String>,
    ) -> Result<Self, StoreError> {
        let mut dir = Directory {
            resolver: Resolver::new(&settings),
            routes: settings.routes.clone(),
            apps,
            auth: settings.auth.clone(),
            allow_registration: settings.allow_registration,
            rate_limits: settings.rate_limits.clone(),
            swagger_enabled: settings.swagger_enabled,
            default_tenant: settings.default_tenant.clone(),
            settings: settings.clone(),
            ..Directory::default()
        };
        let configured: HashMap<String, &crate::config::TenantSettings> = settings
            .tenants
            .iter()
            .map(|t| (tenant_id(&t.name).to_string(), t))
            .collect();
        for row in store.tenant_rows()? {
            if row.deleted_at.is_some() {
                continue;
            }
            let from_settings = configured.get(&row.id).copied();
            // A settings tenant no longer in the settings file is gone; in
            // single-tenant mode only the settings' tenant exists.
            if from_settings.is_none()
                && (row.origin == Origin::Settings || !settings.multi_tenancy)
            {
                continue;
            }
            if let Some(t) = Self::tenant(row, from_settings, &settings.new_tenants) {
                dir.insert(t);
            }
        }
        Ok(dir)
    }

    fn tenant(
        row: TenantRow,
        settings: Option<&crate::config::TenantSettings>,
        new_tenants: &crate::config::NewTenants,
    ) -> Option<Tenant> {
        let Ok(name) = TenantName::parse(&row.name) else {
            tracing::warn!(id = %row.id, "stored tenant has an invalid name; skipped");
            return None;
        };
        let id = Uuid::parse_str(&row.id).ok()?;
        let tier = settings
            .map(|t| t.tier)
            .or_else(|| Tier::parse(&row.tier))
            .unwrap_or_default();
        let record = serde_json::json!({
            "id": row.id,
            "name": name.as_str(),
            "tier": tier.as_str(),
            "enabled": row.enabled,
            "created_at": row.created_at,
        });
        // A tenant created through an API is connected as `NewTenants` says.
        let (connection_strings, upstream) = match settings {
            Some(t) => (t.connection_strings.clone(), t.upstream.clone()),
            None => (
                new_tenants.connection_strings(&name),
                new_tenants.upstream(&name),
            ),
        };
        Some(Tenant {
            label: Arc::from(name.as_str()),
            name_header: http::HeaderValue::from_str(name.as_str()).ok(),
            id_header: http::HeaderValue::from_str(&id.to_string())
                .expect("a UUID is a header value"),
            name,
            id,
            tier,
            enabled: row.enabled,
            generation: row
                .doc
                .generation
                .unwrap_or_else(|| generation_of(&row.created_at)),
            created_at: row.created_at,
            origin: row.origin,
            doc: row.doc,
            connection_strings,
            upstream,
            routes: settings.map(|t| t.routes.clone()).unwrap_or_default(),
            record: Bytes::from(record.to_string()),
        })
    }

    fn insert(&mut self, tenant: Tenant) {
        let tenant = Arc::new(tenant);
        self.by_key.insert(tenant.name.key(), tenant.clone());
        self.by_key.insert(tenant.id.to_string(), tenant.clone());
        for dn in trusted_dns(&tenant.doc) {
            self.by_dn.insert(dn, tenant.clone());
        }
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

    /// The tenant whose trusted CA has this subject DN (any RFC 2253 spelling).
    pub fn by_subject_dn(&self, dn: &str) -> Option<&Arc<Tenant>> {
        self.by_dn.get(&crate::tenancy::dn::canonical(dn).ok()?)
    }

    /// What serves a tenant's traffic, by name, sorted: the apps its routes and
    /// the shared routes lead to, and `upstream` when it has one (Doradus calls
    /// these a tenant's applications).
    pub fn applications(&self, tenant: &Tenant) -> Vec<String> {
        let mut out: Vec<String> = tenant
            .routes
            .iter()
            .chain(&self.routes)
            .filter_map(|r| match &r.target {
                crate::config::Target::App(name) if self.apps.contains(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        if tenant.upstream.is_some() {
            out.push("upstream".into());
        }
        out.sort();
        out.dedup();
        out
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
            Some(crate::config::Target::App(name)) => self
                .apps
                .get(name)
                .map_or(Destination::None, |n| Destination::App(n.as_str())),
            Some(crate::config::Target::Upstream) | None => tenant
                .upstream
                .as_ref()
                .map_or(Destination::None, Destination::Upstream),
        }
    }

    /// The tenant of a UUID.
    pub fn by_id(&self, id: &Uuid) -> Option<&Arc<Tenant>> {
        let mut buf = Uuid::encode_buffer();
        self.by_key.get(&*id.hyphenated().encode_lower(&mut buf))
    }

    /// Every tenant, as a slice.
    pub fn tenants(&self) -> &[Arc<Tenant>] {
        &self.tenants
    }

    /// Every tenant.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.tenants.iter()
    }
}

/// The canonical subject DNs of a tenant's trusted CAs (unparseable ones, which
/// writes refuse, are skipped).
fn trusted_dns(doc: &TenantDoc) -> impl Iterator<Item = String> + '_ {
    doc.hono
        .iter()
        .filter_map(|h| h.get("trusted-ca")?.as_array())
        .flatten()
        .filter_map(|ca| crate::tenancy::dn::canonical(ca.get("subject-dn")?.as_str()?).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
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
        let settings = Settings::parse(crate::config::SAMPLE).unwrap();
        let dir =
            Directory::seed(&store, &settings, BTreeSet::new(), "2025-01-01T00:00:00Z").unwrap();
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
