//! The tenant directory: every known tenant, looked up by name (case-insensitive)
//! or UUID, with everything else a settings load decides (resolution rules,
//! routes, apps, auth, rate limits). Built once per settings load and published
//! as one immutable snapshot, so a reload changes all of it at once. A tenant
//! change publishes a copy with only that tenant replaced: the indexes are
//! persistent maps, so the copy shares every other entry and costs the same at
//! 10,000 tenants as at 10.

pub mod dn;
pub mod resolve;

use crate::config::{AuthSettings, RateLimits, Route, Settings, TenantName, Tier};
use crate::store::{Origin, Store, StoreError, TenantDoc, TenantRow};
use crate::tenancy::resolve::Resolver;
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap};
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
    /// The lower-case name the directory finds it by (the name's own bytes
    /// when it is lower case).
    pub key: Arc<str>,
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
    pub connection_strings: crate::config::ConnectionStringSet,
    /// Who owns it: the settings file or the management APIs.
    pub origin: Origin,
    /// Users (hashed), options, Hono information: `None` when it has none
    /// (most tenants; [`Tenant::doc`] reads it either way).
    doc: Option<Box<TenantDoc>>,
    /// Where the tenant's traffic is proxied, if anywhere.
    /// Shared by the tenants the settings give the same upstream.
    pub upstream: Option<Arc<http::Uri>>,
    /// The tenant's own routes (tried before the shared ones).
    pub routes: Vec<Route>,
    /// Its id as proxied requests carry it (`X-Tenant-Id`), made once; the
    /// hyphenated text, followed in the same allocation by its name.
    pub id_header: http::HeaderValue,
    /// Its name as proxied requests carry it (`X-Tenant-Name`): the rest of
    /// [`Tenant::id_header`]'s allocation.
    pub name_header: http::HeaderValue,
}

/// The length of a UUID's hyphenated text.
const ID_TEXT_LEN: usize = 36;
/// What a tenant with no users, options or Hono information reads.
static NO_DOC: TenantDoc = TenantDoc {
    users: std::collections::BTreeMap::new(),
    options: std::collections::BTreeMap::new(),
    hono: None,
    generation: None,
};

/// How long a client may cache a tenant's Hono information (Hono's
/// `cache_control`, over HTTP and AMQP alike).
pub const HONO_CACHE_DIRECTIVE: &str = "max-age=60";

/// A tenant's record as components read it.
#[derive(serde::Serialize)]
struct Record<'a> {
    id: Uuid,
    name: &'a str,
    tier: &'a str,
    enabled: bool,
    created_at: &'a str,
}

impl Tenant {
    /// Its users (hashed), options and Hono information.
    pub fn doc(&self) -> &TenantDoc {
        self.doc.as_deref().unwrap_or(&NO_DOC)
    }

    /// Its id, hyphenated.
    pub fn id_text(&self) -> &str {
        self.id_header.to_str().expect("a UUID's text")
    }

    /// The record published to components (the `tenants` key-value bucket),
    /// JSON: id, name, tier, enabled, created_at; no secret. Made when read
    /// (a config GET answered from a kept answer does not): kept with every
    /// tenant, it was some 180 bytes of each.
    pub fn record(&self) -> Vec<u8> {
        serde_json::to_vec(&Record {
            id: self.id,
            name: self.name.as_str(),
            tier: self.tier.as_str(),
            enabled: self.enabled,
            created_at: &self.created_at,
        })
        .expect("a record serializes")
    }

    /// Its Hono tenant information document: the stored members with
    /// `tenant-id` and `enabled` from the tenant itself (as Hono answers a
    /// disabled tenant: with `enabled: false`).
    pub fn hono_document(&self) -> serde_json::Value {
        let mut doc = self.doc().hono.as_deref().cloned().unwrap_or_default();
        doc.insert("tenant-id".into(), self.name.as_str().into());
        doc.insert("enabled".into(), self.enabled.into());
        serde_json::Value::Object(doc)
    }
}

/// Compares two names as their lower-case forms compare.
fn caseless_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let a = a.bytes().map(|b| b.to_ascii_lowercase());
    a.cmp(b.bytes().map(|b| b.to_ascii_lowercase()))
}

/// The indexes of `tenants` in the order of their lower-case names.
fn configured_order(tenants: &[crate::config::TenantSettings]) -> Arc<[u32]> {
    let mut order: Vec<u32> = (0..tenants.len() as u32).collect();
    order.sort_by(|&a, &b| {
        caseless_cmp(
            tenants[a as usize].name.as_str(),
            tenants[b as usize].name.as_str(),
        )
    });
    order.into()
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
#[derive(Debug, Default, Clone)]
pub struct Directory {
    /// Tenants by lower-case name (what requests find them by, and the
    /// order listings show).
    ///
    /// Persistent B-trees: a tenant change copies a path, not the map. Hash
    /// array mapped tries (`imbl::HashMap`) were some 110 bytes a tenant each
    /// at 1,000 tenants (their leaf nodes have room for 16 or 32 entries
    /// and most held a few); these are some 45, and a name's lookup is a
    /// dozen comparisons of short strings at 10,000 tenants.
    tenants: imbl::OrdMap<Arc<str>, Arc<Tenant>>,
    /// Tenants by UUID.
    by_id: imbl::OrdMap<Uuid, Arc<Tenant>>,
    /// Tenants by the canonical subject DN of each trusted CA (Hono).
    by_dn: imbl::HashMap<String, Arc<Tenant>>,
    /// The settings' tenants: their indexes in `settings.tenants`, in the
    /// order of their lower-case names (4 bytes a tenant, where a map by id
    /// was 51).
    configured: Arc<[u32]>,
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
        let (dir, _) = Self::seed(
            store,
            Arc::new(settings.clone()),
            BTreeSet::new(),
            "2025-01-01T00:00:00Z",
        )
        .unwrap();
        (dir, settings)
    }

    /// Records the settings' tenants in the store (creation times persist there)
    /// and builds the directory from the store; with it, the store's change
    /// sequence read just before the tenants it holds (a change after it is
    /// published later). The tenants are read once, and again only if
    /// recording wrote any: a restart with the same settings writes nothing.
    /// `apps`: the names of `settings.apps` loaded.
    pub fn seed(
        store: &dyn Store,
        settings: Arc<Settings>,
        apps: BTreeSet<String>,
        now: &str,
    ) -> Result<(Self, i64), StoreError> {
        let read = || Ok::<_, StoreError>((store.change_seq()?, store.tenant_rows()?));
        let (mut seq, mut rows) = read()?;
        if Self::record_settings_tenants(store, &settings, now, &rows)? {
            (seq, rows) = read()?;
        }
        Ok((Self::build_from(rows, settings, apps), seq))
    }

    /// Records the settings' tenants in the store: new ones created, known
    /// ones given the file's name and tier. `stored`: the store's tenants as
    /// just read; only the settings' tenants that are new or differ from
    /// them are written. Whether any was.
    fn record_settings_tenants(
        store: &dyn Store,
        settings: &Settings,
        now: &str,
        stored: &[TenantRow],
    ) -> Result<bool, StoreError> {
        let by_id: HashMap<&str, &TenantRow> = stored.iter().map(|r| (r.id.as_str(), r)).collect();
        let deleted = |name: &TenantName| {
            tracing::warn!(
                tenant = %name,
                "tenant from the settings file was deleted through the API; it stays deleted until restored"
            )
        };
        let mut changed = Vec::new();
        for t in &settings.tenants {
            let id = tenant_id(&t.name).to_string();
            match by_id.get(id.as_str()) {
                Some(row)
                    if row.name == t.name.as_str()
                        && row.tier == t.tier.as_str()
                        && row.origin == Origin::Settings =>
                {
                    if row.deleted_at.is_some() {
                        deleted(&t.name);
                    }
                }
                _ => changed.push((id, t)),
            }
        }
        // A few hundred to a transaction: one each made a start with 10,000
        // new tenants spend a fifth of its time here; one for all would hold
        // the store's write lock that much longer.
        const CHUNK: usize = 500;
        for chunk in changed.chunks(CHUNK) {
            let seeds: Vec<(&str, &str, &str)> = chunk
                .iter()
                .map(|(id, t)| (id.as_str(), t.name.as_str(), t.tier.as_str()))
                .collect();
            for ((_, t), row) in chunk.iter().zip(store.seed_tenants(&seeds, now)?) {
                if row.deleted_at.is_some() {
                    deleted(&t.name);
                }
            }
        }
        Ok(!changed.is_empty())
    }

    /// The same settings and apps over the store's current tenants: what a
    /// tenant change through an API publishes.
    pub fn rebuild(&self, store: &dyn Store) -> Result<Self, StoreError> {
        Self::build(store, self.settings.clone(), self.apps.clone())
    }

    /// The directory of `settings` (with `apps` loaded) over the store's
    /// current tenants.
    pub fn build(
        store: &dyn Store,
        settings: Arc<Settings>,
        apps: BTreeSet<String>,
    ) -> Result<Self, StoreError> {
        Ok(Self::build_from(store.tenant_rows()?, settings, apps))
    }

    /// The directory of `settings` (with `apps` loaded) over the tenants
    /// `rows`, as the store has them.
    fn build_from(rows: Vec<TenantRow>, settings: Arc<Settings>, apps: BTreeSet<String>) -> Self {
        let mut dir = Directory {
            resolver: Resolver::new(&settings),
            routes: settings.routes.clone(),
            apps,
            auth: settings.auth.clone(),
            allow_registration: settings.allow_registration,
            rate_limits: settings.rate_limits.clone(),
            swagger_enabled: settings.swagger_enabled,
            default_tenant: settings.default_tenant.clone(),
            configured: configured_order(&settings.tenants),
            settings,
            ..Directory::default()
        };
        for row in rows {
            if let Some(t) = dir.admit(row) {
                dir.insert(t);
            }
        }
        dir
    }

    /// This directory with the tenants of `changed` as the store now has them
    /// (`None`: purged): everything else is shared, not copied.
    pub fn with_changes(
        &self,
        changed: impl IntoIterator<Item = (Uuid, Option<TenantRow>)>,
    ) -> Self {
        let mut next = self.clone();
        for (id, row) in changed {
            next.remove(&id);
            if let Some(t) = row.and_then(|row| next.admit(row)) {
                next.insert(t);
            }
        }
        next
    }

    /// The tenant a stored row makes, if this directory serves it: not
    /// deleted, and (a settings tenant no longer in the settings file is gone;
    /// in single-tenant mode only the settings' tenant exists) still configured.
    fn admit(&self, row: TenantRow) -> Option<Tenant> {
        if row.deleted_at.is_some() {
            return None;
        }
        let from_settings = self.configured_tenant(&row);
        if from_settings.is_none()
            && (row.origin == Origin::Settings || !self.settings.multi_tenancy)
        {
            return None;
        }
        Self::tenant(row, from_settings, &self.settings.new_tenants)
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
        // The settings' tenant's name shares its bytes.
        let name = match settings {
            Some(t) if t.name == name => t.name.clone(),
            _ => name,
        };
        let id = Uuid::parse_str(&row.id).ok()?;
        let tier = settings
            .map(|t| t.tier)
            .or_else(|| Tier::parse(&row.tier))
            .unwrap_or_default();
        // A tenant created through an API is connected as `NewTenants` says.
        let (connection_strings, upstream) = match settings {
            Some(t) => (t.connection_strings.clone(), t.upstream.clone()),
            None => (
                new_tenants.connection_strings(&name),
                new_tenants.upstream(&name),
            ),
        };
        let mut doc = row.doc;
        let generation = doc
            .generation
            .take()
            .unwrap_or_else(|| generation_of(&row.created_at));
        // One allocation and its shared count for both, both made here: a
        // `Bytes` made from a vector allocates its shared count when first
        // cloned, which was at the tenant's first proxied request, amid the
        // request's temporaries (where it stayed).
        let mut text = Vec::with_capacity(ID_TEXT_LEN + name.as_str().len());
        text.extend_from_slice(
            id.hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        );
        text.extend_from_slice(name.as_str().as_bytes());
        let text = bytes::Bytes::from(text);
        let header = |range| {
            http::HeaderValue::from_maybe_shared(text.slice(range))
                .expect("a UUID and a tenant name are header values")
        };
        Some(Tenant {
            key: name.shared_key(),
            id_header: header(0..ID_TEXT_LEN),
            name_header: header(ID_TEXT_LEN..text.len()),
            name,
            id,
            tier,
            enabled: row.enabled,
            generation,
            created_at: row.created_at,
            origin: row.origin,
            doc: (doc != TenantDoc::default()).then(|| Box::new(doc)),
            connection_strings,
            upstream,
            routes: settings.map(|t| t.routes.clone()).unwrap_or_default(),
        })
    }

    /// The settings' tenant a stored row is, if it is one: the same
    /// lower-case name, and so the same id.
    fn configured_tenant(&self, row: &TenantRow) -> Option<&crate::config::TenantSettings> {
        let tenants = &self.settings.tenants;
        let at = self
            .configured
            .binary_search_by(|&i| caseless_cmp(tenants[i as usize].name.as_str(), &row.name))
            .ok()?;
        let t = &tenants[self.configured[at] as usize];
        (Uuid::parse_str(&row.id).ok()? == tenant_id(&t.name)).then_some(t)
    }

    fn insert(&mut self, tenant: Tenant) {
        let tenant = Arc::new(tenant);
        let key = tenant.key.clone();
        self.by_id.insert(tenant.id, tenant.clone());
        for dn in trusted_dns(tenant.doc()) {
            self.by_dn.insert(dn, tenant.clone());
        }
        self.tenants.insert(key, tenant);
    }

    /// Takes the tenant with `id` out, if it is in.
    fn remove(&mut self, id: &Uuid) {
        let Some(old) = self.by_id.remove(id) else {
            return;
        };
        self.tenants.remove(&*old.key);
        for dn in trusted_dns(old.doc()) {
            // A DN another tenant took over in the same batch stays its.
            if self.by_dn.get(&dn).is_some_and(|t| t.id == old.id) {
                self.by_dn.remove(&dn);
            }
        }
    }

    /// Finds a tenant by name (any case) or by hyphenated UUID (any case).
    pub fn get(&self, name_or_id: &str) -> Option<&Arc<Tenant>> {
        if let Some(t) = self.tenants.get(name_or_id) {
            return Some(t);
        }
        // 36 characters is the hyphenated form alone (no name has it).
        if name_or_id.len() == 36
            && let Ok(id) = Uuid::try_parse(name_or_id)
        {
            return self.by_id.get(&id);
        }
        if !name_or_id.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        // Lower-cased on the stack: a request's `Tenant` header is looked up
        // on every request. Keys are names, so a longer text is none.
        let mut buf = [0u8; crate::config::TenantName::MAX_LEN];
        let lower = buf.get_mut(..name_or_id.len())?;
        lower.copy_from_slice(name_or_id.as_bytes());
        lower.make_ascii_lowercase();
        // ASCII case changes keep UTF-8 valid.
        self.tenants.get(std::str::from_utf8(lower).ok()?)
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
                .as_deref()
                .map_or(Destination::None, Destination::Upstream),
        }
    }

    /// The tenant of a UUID.
    pub fn by_id(&self, id: &Uuid) -> Option<&Arc<Tenant>> {
        self.by_id.get(id)
    }

    /// Every tenant, by lower-case name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.tenants.values()
    }

    /// How many tenants there are.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    /// Whether there is no tenant.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }
}

/// An answer made from one directory snapshot, kept until the directory is
/// replaced (settings reloaded, tenants changed): made once per change, not
/// per request.
#[derive(Default)]
pub struct PerDirectory(arc_swap::ArcSwapOption<(Arc<Directory>, Bytes)>);

impl PerDirectory {
    /// The answer for `dir`, made with `make` now if this snapshot has none yet.
    pub fn of(&self, dir: Arc<Directory>, make: impl FnOnce(&Directory) -> Bytes) -> Bytes {
        if let Some(hit) = &*self.0.load()
            && Arc::ptr_eq(&hit.0, &dir)
        {
            return hit.1.clone();
        }
        let made = make(&dir);
        self.0.store(Some(Arc::new((dir, made.clone()))));
        made
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
        let (dir, _) = Directory::seed(
            &store,
            Arc::new(settings),
            BTreeSet::new(),
            "2025-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(dir.iter().count(), 2);
        let t = dir.get("tenant1").unwrap();
        assert_eq!(t.name.as_str(), "Tenant1");
        // Its name is the settings' tenant's bytes; its key, lower case, its own.
        let configured = dir.settings.tenants.iter().find(|s| s.name == t.name);
        assert!(Arc::ptr_eq(
            configured.unwrap().name.shared(),
            t.name.shared()
        ));
        assert_eq!(&*t.key, "tenant1");
        let lower = TenantName::parse("acme").unwrap();
        assert!(std::ptr::eq(
            lower.shared_key().as_ptr(),
            lower.as_str().as_ptr()
        ));
        assert!(Arc::ptr_eq(t, dir.get(&t.id.to_string()).unwrap()));
        assert!(Arc::ptr_eq(
            t,
            dir.get(&t.id.to_string().to_uppercase()).unwrap()
        ));
        assert!(dir.get("tenant3").is_none());
        // Any case; a text longer than a name is none.
        assert!(Arc::ptr_eq(t, dir.get("TeNaNt1").unwrap()));
        assert!(dir.get("TENANT3").is_none());
        assert!(dir.get(&"T".repeat(50)).is_none() && dir.get(&"T".repeat(51)).is_none());
        assert!(dir.get("Tenant1\u{e9}").is_none());
        // Only the hyphenated form names a tenant by id.
        let simple = t.id.simple().to_string();
        let braced = t.id.braced().to_string();
        assert!(dir.get(&simple).is_none() && dir.get(&braced).is_none());
        assert!(Arc::ptr_eq(t, dir.by_id(&t.id).unwrap()));
        let record = t.record();
        let record = std::str::from_utf8(&record).unwrap();
        assert!(!record.contains("Database"), "{record}");
        assert!(record.contains("\"tier\":\"Enterprise\""), "{record}");
    }

    /// A tenant the management APIs would create, owning `dn` when given.
    fn api_row(name: &str, dn: Option<&str>) -> TenantRow {
        let hono = dn.map(|dn| {
            serde_json::json!({"trusted-ca": [{"subject-dn": dn}]})
                .as_object()
                .unwrap()
                .clone()
        });
        TenantRow {
            id: tenant_id(&TenantName::parse(name).unwrap()).to_string(),
            name: name.into(),
            tier: "Basic".into(),
            enabled: true,
            origin: Origin::Api,
            created_at: "2025-01-02T00:00:00Z".into(),
            updated_at: "2025-01-02T00:00:00Z".into(),
            deleted_at: None,
            version: 1,
            doc: TenantDoc {
                hono: hono.map(Box::new),
                ..TenantDoc::default()
            },
        }
    }

    fn change(row: &TenantRow, action: &str) -> crate::store::Change {
        crate::store::Change {
            tenant_id: row.id.clone(),
            tenant_name: row.name.clone(),
            at: "2025-01-02T00:00:00Z".into(),
            principal: "test".into(),
            subject: crate::store::Subject::Tenant,
            action: action.into(),
            fields: Vec::new(),
            before: None,
        }
    }

    fn names(dir: &Directory) -> Vec<String> {
        dir.iter().map(|t| t.name.as_str().to_owned()).collect()
    }

    /// The sample's tenants in a new store, published as of `seen` (0: the
    /// store's start, the seeding still to publish).
    fn sample_shared(tmp: &tempfile::TempDir) -> (Arc<dyn Store>, Shared, i64) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(tmp.path()).unwrap());
        let settings = Settings::parse(crate::config::SAMPLE).unwrap();
        let shared = Shared::new(store.clone());
        let seq = store.change_seq().unwrap();
        let (dir, _) = Directory::seed(
            &*store,
            Arc::new(settings),
            BTreeSet::new(),
            "2025-01-01T00:00:00Z",
        )
        .unwrap();
        shared.directory.store(Arc::new(dir));
        (store, shared, seq)
    }

    #[test]
    fn a_tenant_change_replaces_that_tenant_only_and_matches_a_rebuild() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, shared, seq) = sample_shared(&tmp);
        shared
            .seen_seq
            .store(seq, std::sync::atomic::Ordering::Release);
        // The seeding itself was recorded after `seq`: publishing it again
        // changes nothing a reader sees.
        crate::manage::publish(&shared).unwrap();
        let before = shared.directory.load_full();
        assert_eq!(names(&before), ["Tenant1", "Tenant2"]);

        let dn = "CN=Acme CA,O=Acme";
        let acme = api_row("Acme", Some(dn));
        store
            .write_tenant(
                &acme,
                None,
                &[dn::canonical(dn).unwrap()],
                &change(&acme, "created"),
            )
            .unwrap();
        let zeta = api_row("Zeta", None);
        store
            .write_tenant(&zeta, None, &[], &change(&zeta, "created"))
            .unwrap();
        crate::manage::publish(&shared).unwrap();
        let after = shared.directory.load_full();
        assert_eq!(names(&after), ["Acme", "Tenant1", "Tenant2", "Zeta"]);
        // The tenants no change touched are the very same ones, not copies.
        for name in ["Tenant1", "Tenant2"] {
            assert!(Arc::ptr_eq(
                before.get(name).unwrap(),
                after.get(name).unwrap()
            ));
        }
        assert_eq!(after.by_subject_dn(dn).unwrap().name.as_str(), "Acme");
        assert_eq!(after.len(), 4);

        // In one batch Acme gives up its CA and Zeta takes it; Tenant2 is
        // deleted (restorably): each is applied, whatever the order.
        let mut acme = store.tenant_row(&acme.id).unwrap().unwrap();
        acme.doc.hono = None;
        store
            .write_tenant(&acme, Some(acme.version), &[], &change(&acme, "updated"))
            .unwrap();
        let mut zeta = store.tenant_row(&zeta.id).unwrap().unwrap();
        zeta.doc.hono = api_row("Zeta", Some(dn)).doc.hono;
        store
            .write_tenant(
                &zeta,
                Some(zeta.version),
                &[dn::canonical(dn).unwrap()],
                &change(&zeta, "updated"),
            )
            .unwrap();
        let t2 = tenant_id(&TenantName::parse("Tenant2").unwrap()).to_string();
        let mut gone = store.tenant_row(&t2).unwrap().unwrap();
        gone.deleted_at = Some("2025-01-03T00:00:00Z".into());
        store
            .write_tenant(&gone, Some(gone.version), &[], &change(&gone, "deleted"))
            .unwrap();
        crate::manage::publish(&shared).unwrap();
        let after = shared.directory.load_full();
        assert_eq!(after.by_subject_dn(dn).unwrap().name.as_str(), "Zeta");
        assert!(after.get("tenant2").is_none());
        assert!(after.by_id(&Uuid::parse_str(&t2).unwrap()).is_none());
        // Purged: gone from every index.
        store
            .purge_tenant(&acme.id, &change(&acme, "purged"))
            .unwrap();
        crate::manage::publish(&shared).unwrap();
        let after = shared.directory.load_full();
        assert!(after.get("acme").is_none());
        assert_eq!(names(&after), ["Tenant1", "Zeta"]);

        // The same as building it from every row.
        let rebuilt = after.rebuild(&*store).unwrap();
        assert_eq!(names(&rebuilt), names(&after));
        for t in rebuilt.iter() {
            let mine = after.get(&t.id.to_string()).unwrap();
            assert_eq!(
                (&mine.name, mine.enabled, mine.record()),
                (&t.name, t.enabled, t.record())
            );
        }
        assert_eq!(
            rebuilt.by_subject_dn(dn).map(|t| t.id),
            after.by_subject_dn(dn).map(|t| t.id)
        );
        assert_eq!(
            shared.seen_seq.load(std::sync::atomic::Ordering::Acquire),
            store.change_seq().unwrap()
        );
    }

    #[test]
    fn an_instance_far_behind_rebuilds_and_catches_up() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, shared, _) = sample_shared(&tmp);
        for i in 0..300 {
            let row = api_row(&format!("T{i:03}"), None);
            store
                .write_tenant(&row, None, &[], &change(&row, "created"))
                .unwrap();
        }
        crate::manage::publish(&shared).unwrap();
        assert_eq!(shared.directory.load().len(), 302);
        assert_eq!(
            shared.seen_seq.load(std::sync::atomic::Ordering::Acquire),
            store.tenant_changes(0, 1000).unwrap()[256].0
        );
        crate::manage::publish(&shared).unwrap();
        assert_eq!(
            shared.seen_seq.load(std::sync::atomic::Ordering::Acquire),
            store.change_seq().unwrap()
        );
        assert_eq!(shared.directory.load().len(), 302);
    }
}
