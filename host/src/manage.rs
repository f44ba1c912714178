//! Tenant management: the one place where tenants are created, changed, deleted,
//! restored and purged, whichever API asks (Doradus `/_tenants`, Vespa
//! `/application/v2/tenant`, Hono tenant information). Every change is written
//! with its history record in one store transaction and then published as a new
//! directory snapshot, so routing, the config API and every other API see it at
//! once. Another instance sharing the store learns of it from the store's change
//! sequence ([`follow_store`]).

use crate::config::{TenantName, Tier};
use crate::store::{Change, Origin, StoreError, Subject, TenantDoc, TenantRow, TenantWrite};
use crate::tenancy::Shared;
use crate::tenancy::{Directory, Tenant, tenant_id};
use crate::wasm::{Runtime, Violation};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// How long a deleted tenant can be restored before it is purged.
pub const RESTORE_GRACE: std::time::Duration = std::time::Duration::from_secs(72 * 3600);

/// Tenant options a tenant may carry (Doradus `options`), and what each accepts.
pub const OPTIONS: [&str; 2] = ["ReplicationFactor", "Tier"];

/// Why a management request failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// No such (live) tenant.
    #[error("Tenant '{0}' does not exist")]
    NotFound(String),
    /// A tenant of that name exists (or was deleted and can still be restored).
    #[error("{}", exists_message(.name, *.deleted))]
    Exists {
        /// The existing tenant's name.
        name: String,
        /// It is deleted but restorable.
        deleted: bool,
    },
    /// The request is malformed or asks for something not allowed.
    #[error("{0}")]
    Invalid(String),
    /// The document breaks its schema or rules.
    #[error("{}", .0.iter().map(|v| format!("{}: {}", v.path, v.message)).collect::<Vec<_>>().join("; "))]
    Violations(Vec<Violation>),
    /// A trusted-CA subject DN belongs to another tenant.
    #[error("The trusted CA subject DN '{dn}' is already used by tenant '{tenant}'")]
    DnTaken {
        /// Canonical DN.
        dn: String,
        /// Its tenant.
        tenant: String,
    },
    /// Tenants can be managed only in multi-tenant mode.
    #[error(
        "Tenants cannot be created: the gateway runs in single-tenant mode (AppSettings.MultiTenancy is false)"
    )]
    SingleTenant,
    /// Every password-hashing slot is taken (503).
    #[error("The gateway is too busy hashing passwords; try again shortly")]
    Busy,
    /// The store or a component failed.
    #[error("internal error: {0:#}")]
    Failed(anyhow::Error),
}

impl ManageError {
    /// The HTTP status the management APIs answer with (Vespa maps its own).
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            ManageError::NotFound(_) => StatusCode::NOT_FOUND,
            ManageError::Exists { .. } | ManageError::DnTaken { .. } => StatusCode::CONFLICT,
            ManageError::Invalid(_) | ManageError::Violations(_) | ManageError::SingleTenant => {
                StatusCode::BAD_REQUEST
            }
            ManageError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ManageError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What a caller is told: the reason, except for internal failures, which
    /// are logged and answered without detail.
    pub fn public_message(&self) -> String {
        match self {
            ManageError::Failed(e) => {
                tracing::error!(error = %format!("{e:#}"), "tenant management failed");
                "Internal server error".into()
            }
            other => other.to_string(),
        }
    }
}

fn exists_message(name: &str, deleted: bool) -> String {
    if deleted {
        format!(
            "Tenant '{name}' was deleted and can still be restored: restore it (POST /_tenants/{name}/_restore) or purge it (DELETE /_tenants/{name}?purge=true) before creating it again"
        )
    } else {
        format!("Tenant '{name}' already exists")
    }
}

impl From<StoreError> for ManageError {
    fn from(e: StoreError) -> Self {
        ManageError::Failed(e.into())
    }
}

/// A user named in a request, with the password in clear (hashed before storing).
#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    /// User name.
    pub name: String,
    /// Password.
    pub password: String,
}

/// What a create asks for.
#[derive(Debug, Clone, Default)]
pub struct TenantSpec {
    /// Users to create.
    pub users: Vec<NewUser>,
    /// Options (names as given; checked against [`OPTIONS`]).
    pub options: Vec<(String, String)>,
    /// Hono tenant information (full document).
    pub hono: Option<Map<String, Value>>,
    /// With no users given, make one up and return its password once (Doradus).
    pub generate_user: bool,
}

/// A created tenant.
#[derive(Debug)]
pub struct Created {
    /// As now served.
    pub tenant: Arc<Tenant>,
    /// The user and password made up for it, shown once.
    pub generated: Option<NewUser>,
}

fn random_text(len: usize, alphabet: &[u8]) -> String {
    let mut bytes = vec![0u8; len];
    OsRng.fill_bytes(&mut bytes);
    // 256 is a multiple of neither alphabet length; the bias is below 1/4 bit per
    // character with 62 symbols, irrelevant at this length.
    bytes
        .iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect()
}

fn generated_user() -> NewUser {
    const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    const ALL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    NewUser {
        name: format!("u{}", random_text(12, LOWER)),
        password: random_text(24, ALL),
    }
}

fn check_user(user: &NewUser) -> Result<(), ManageError> {
    let name_ok = !user.name.is_empty()
        && user.name.len() <= 64
        && user
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if !name_ok {
        return Err(ManageError::Invalid(format!(
            "User name '{}' is invalid: 1-64 letters, digits, '.', '_', '-' or '@'",
            user.name
        )));
    }
    if user.password.is_empty()
        || user.password.chars().count() > 256
        || user.password.chars().any(char::is_control)
    {
        return Err(ManageError::Invalid(format!(
            "The password of user '{}' must be 1-256 printable characters",
            user.name
        )));
    }
    Ok(())
}

/// Checks an option and returns its canonical name and value.
fn check_option(name: &str, value: &str, origin: Origin) -> Result<(String, String), ManageError> {
    let Some(canonical) = OPTIONS.iter().find(|o| o.eq_ignore_ascii_case(name)) else {
        return Err(ManageError::Invalid(format!(
            "Unknown tenant option '{name}'; supported: {}",
            OPTIONS.join(", ")
        )));
    };
    let value = value.trim();
    let value = match *canonical {
        "ReplicationFactor" => match value.parse::<u32>() {
            Ok(n) if (1..=100).contains(&n) => n.to_string(),
            _ => {
                return Err(ManageError::Invalid(format!(
                    "Option ReplicationFactor must be an integer from 1 to 100, not '{value}'"
                )));
            }
        },
        _ => {
            if origin == Origin::Settings {
                return Err(ManageError::Invalid(
                    "The tier of a tenant from the settings file is set there (TenantGateway.Tenants.{name}.Tier)".into(),
                ));
            }
            Tier::parse(value)
                .ok_or_else(|| {
                    ManageError::Invalid(format!(
                        "Option Tier must be Basic, Pro or Enterprise, not '{value}'"
                    ))
                })?
                .as_str()
                .to_owned()
        }
    };
    Ok(((*canonical).to_owned(), value))
}

/// The canonical trusted-CA DNs of a Hono document; two equal ones are an error.
fn trusted_dns(hono: &Map<String, Value>) -> Result<Vec<String>, ManageError> {
    let mut out: Vec<String> = Vec::new();
    let cas = hono.get("trusted-ca").and_then(Value::as_array);
    for (i, ca) in cas.into_iter().flatten().enumerate() {
        let Some(dn) = ca.get("subject-dn").and_then(Value::as_str) else {
            continue;
        };
        let canonical = crate::tenancy::dn::canonical(dn)
            .map_err(|e| ManageError::Invalid(format!("$.trusted-ca[{i}].subject-dn: {e}")))?;
        if out.contains(&canonical) {
            return Err(ManageError::Invalid(format!(
                "$.trusted-ca[{i}].subject-dn: the same CA is listed twice"
            )));
        }
        out.push(canonical);
    }
    Ok(out)
}

/// The Hono document as stored: without `tenant-id` and `enabled` (the tenant's
/// own name and flag).
fn stored_hono(mut doc: Map<String, Value>) -> (Map<String, Value>, Option<bool>) {
    doc.remove("tenant-id");
    let enabled = doc.remove("enabled").and_then(|v| v.as_bool());
    (doc, enabled)
}

/// Who made a change, as history records it (`None`: an unauthenticated caller,
/// where the settings allow one).
pub fn principal_label(p: Option<&crate::security::auth::Principal>) -> String {
    match p {
        Some(crate::security::auth::Principal::SuperUser) => "super-user".into(),
        Some(crate::security::auth::Principal::Client(c)) => format!("client:{}", c.client_id),
        Some(crate::security::auth::Principal::TenantUser { tenant, user }) => {
            format!("user:{tenant}/{user}")
        }
        None => "anonymous".into(),
    }
}

async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Arc<Shared>) -> Result<T, ManageError> + Send + 'static,
) -> Result<T, ManageError> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || f(&shared))
        .await
        .map_err(|e| ManageError::Failed(e.into()))?
}

/// Rebuilds the directory from the store and publishes it (blocking).
pub fn publish(shared: &Shared) -> Result<(), StoreError> {
    let _guard = shared.publishing.lock().expect("poisoned");
    let seq = shared.store.change_seq()?;
    let next = shared.directory.load().rebuild(shared.store.as_ref())?;
    shared.directory.store(Arc::new(next));
    shared.seen_seq.store(seq, Ordering::Release);
    Ok(())
}

fn live_tenant(dir: &Directory, name: &str) -> Result<Arc<Tenant>, ManageError> {
    dir.get(name)
        .cloned()
        .ok_or_else(|| ManageError::NotFound(name.to_owned()))
}

fn parse_name(name: &str) -> Result<TenantName, ManageError> {
    TenantName::parse(name)
        .map_err(|why| ManageError::Invalid(format!("Tenant name '{name}' is invalid: it {why}")))
}

/// Validates a Hono document with the validator component; returns it with
/// `tenant-id` set to `name` when absent.
async fn validated_hono(
    rt: &Runtime,
    name: &TenantName,
    mut doc: Map<String, Value>,
    enabled: bool,
) -> Result<Map<String, Value>, ManageError> {
    match doc.get("tenant-id") {
        None => {
            doc.insert("tenant-id".into(), Value::String(name.as_str().to_owned()));
        }
        Some(Value::String(id)) if id.eq_ignore_ascii_case(name.as_str()) => {}
        Some(other) => {
            return Err(ManageError::Invalid(format!(
                "tenant-id {other} does not match the tenant '{name}' of the path"
            )));
        }
    }
    doc.entry("enabled").or_insert(Value::Bool(enabled));
    let text = Value::Object(doc.clone()).to_string();
    match rt.validate_tenant_info(&text, Some(&name.key())).await {
        Ok(Ok(())) => Ok(doc),
        Ok(Err(violations)) => Err(ManageError::Violations(violations)),
        Err(e) => Err(ManageError::Failed(anyhow::anyhow!("validator: {e}"))),
    }
}

/// Creates a tenant.
pub async fn create(
    rt: &Arc<Runtime>,
    hasher: &crate::security::auth::Hasher,
    principal: String,
    name: &str,
    spec: TenantSpec,
) -> Result<Created, ManageError> {
    let name = parse_name(name)?;
    let shared = rt.shared().clone();
    if !shared.directory.load().settings.multi_tenancy {
        return Err(ManageError::SingleTenant);
    }
    let mut users = spec.users;
    for u in &users {
        check_user(u)?;
    }
    check_user_count(users.len())?;
    let mut generated = None;
    if users.is_empty() && spec.generate_user {
        let user = generated_user();
        generated = Some(user.clone());
        users.push(user);
    }
    let hashed = hash_users(hasher, &users).await?;
    let mut options = BTreeMap::new();
    for (k, v) in &spec.options {
        let (k, v) = check_option(k, v, Origin::Api)?;
        options.insert(k, v);
    }
    let (hono, enabled, dns) = match spec.hono {
        Some(doc) => {
            let doc = validated_hono(rt, &name, doc, true).await?;
            let dns = trusted_dns(&doc)?;
            let (doc, enabled) = stored_hono(doc);
            (Some(doc), enabled.unwrap_or(true), dns)
        }
        None => (None, true, Vec::new()),
    };
    let tier = options
        .get("Tier")
        .cloned()
        .unwrap_or_else(|| Tier::Basic.as_str().to_owned());
    let id = tenant_id(&name).to_string();
    let key = name.key();
    blocking(&shared, move |shared| {
        let mut fields = vec!["name".to_owned(), "enabled".to_owned()];
        let mut doc = TenantDoc {
            options,
            hono,
            generation: Some(argon2::password_hash::rand_core::RngCore::next_u64(
                &mut argon2::password_hash::rand_core::OsRng,
            )),
            ..TenantDoc::default()
        };
        for (user, phc) in hashed {
            fields.push(format!("users.{user}"));
            doc.users.insert(user, phc);
        }
        fields.extend(doc.options.keys().map(|k| format!("options.{k}")));
        if doc.hono.is_some() {
            fields.push("hono".into());
        }
        let now = crate::now_rfc3339();
        let row = TenantRow {
            id: id.clone(),
            name: name.as_str().to_owned(),
            tier,
            enabled,
            origin: Origin::Api,
            created_at: now.clone(),
            updated_at: now.clone(),
            deleted_at: None,
            version: 1,
            doc,
        };
        let change = Change {
            tenant_id: id,
            tenant_name: name.as_str().to_owned(),
            at: now,
            principal,
            subject: Subject::Tenant,
            action: "created".into(),
            fields,
            before: None,
        };
        match shared.store.write_tenant(&row, None, &dns, &change)? {
            TenantWrite::Written(_) => {}
            TenantWrite::Exists(existing) => {
                return Err(ManageError::Exists {
                    name: existing.name,
                    deleted: existing.deleted_at.is_some(),
                });
            }
            TenantWrite::DnTaken { dn, tenant } => return Err(ManageError::DnTaken { dn, tenant }),
            TenantWrite::Stale => return Err(ManageError::Failed(anyhow::anyhow!("stale create"))),
        }
        publish(shared)?;
        let tenant = live_tenant(&shared.directory.load(), &key)?;
        Ok(Created { tenant, generated })
    })
    .await
}

/// What an update changes; `None`s leave things as they are.
#[derive(Debug, Clone, Default)]
pub struct TenantUpdate {
    /// Users to add or whose password to change.
    pub users: Vec<NewUser>,
    /// Options to set.
    pub options: Vec<(String, String)>,
    /// New Hono information (replaces the old one whole).
    pub hono: Option<Map<String, Value>>,
}

/// Users one request may add or change: each costs a password hash (tens of
/// milliseconds of CPU), so one request cannot occupy the hashing threads for
/// long (a create with 1,900 users used to hash for 55 s).
pub const MAX_USERS_PER_REQUEST: usize = 16;

fn check_user_count(n: usize) -> Result<(), ManageError> {
    if n > MAX_USERS_PER_REQUEST {
        return Err(ManageError::Invalid(format!(
            "A request may add or change at most {MAX_USERS_PER_REQUEST} users ({n} given)"
        )));
    }
    Ok(())
}

/// The users' passwords hashed on the hashing threads: (name, PHC hash).
async fn hash_users(
    hasher: &crate::security::auth::Hasher,
    users: &[NewUser],
) -> Result<Vec<(String, String)>, ManageError> {
    let mut hashed = Vec::with_capacity(users.len());
    for u in users {
        let password = u.password.clone();
        let phc = hasher
            .run(move || crate::security::auth::hash_password(&password))
            .await
            .map_err(|_| ManageError::Busy)?;
        hashed.push((u.name.clone(), phc));
    }
    Ok(hashed)
}

/// How many times an update is retried when another one got in first.
const UPDATE_ATTEMPTS: usize = 16;

/// Changes a live tenant.
pub async fn update(
    rt: &Arc<Runtime>,
    hasher: &crate::security::auth::Hasher,
    principal: String,
    name: &str,
    update: TenantUpdate,
) -> Result<Arc<Tenant>, ManageError> {
    let shared = rt.shared().clone();
    let tenant = live_tenant(&shared.directory.load(), name)?;
    for u in &update.users {
        check_user(u)?;
    }
    check_user_count(update.users.len())?;
    let hashed = hash_users(hasher, &update.users).await?;
    let mut options = Vec::new();
    for (k, v) in &update.options {
        options.push(check_option(k, v, tenant.origin)?);
    }
    let hono = match update.hono {
        Some(doc) => {
            let doc = validated_hono(rt, &tenant.name, doc, tenant.enabled).await?;
            let dns = trusted_dns(&doc)?;
            Some((stored_hono(doc), dns))
        }
        None => None,
    };
    blocking(&shared, move |shared| {
        let store = shared.store.as_ref();
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(mut row) = store.tenant_row(&tenant.id.to_string())? else {
                return Err(ManageError::NotFound(tenant.name.to_string()));
            };
            if row.deleted_at.is_some() {
                return Err(ManageError::NotFound(tenant.name.to_string()));
            }
            let mut fields = Vec::new();
            for (user, hash) in &hashed {
                fields.push(format!("users.{user}"));
                row.doc.users.insert(user.clone(), hash.clone());
            }
            for (k, v) in &options {
                if row.doc.options.get(k) != Some(v) {
                    fields.push(format!("options.{k}"));
                    row.doc.options.insert(k.clone(), v.clone());
                }
                if k == "Tier" {
                    row.tier.clone_from(v);
                }
            }
            let mut dns = current_dns(&row)?;
            if let Some(((doc, enabled), new_dns)) = &hono {
                let before = row.doc.hono.clone().unwrap_or_default();
                fields.extend(changed_members(&before, doc).map(|k| format!("hono.{k}")));
                if let Some(enabled) = enabled
                    && *enabled != row.enabled
                {
                    fields.push("enabled".into());
                    row.enabled = *enabled;
                }
                row.doc.hono = Some(doc.clone());
                dns.clone_from(new_dns);
            }
            let now = crate::now_rfc3339();
            row.updated_at.clone_from(&now);
            let change = Change {
                tenant_id: row.id.clone(),
                tenant_name: row.name.clone(),
                at: now,
                principal: principal.clone(),
                subject: Subject::Tenant,
                action: "updated".into(),
                fields,
                before: None,
            };
            if commit_update(shared, &row, &dns, &change)? {
                return live_tenant(&shared.directory.load(), &tenant.name.key());
            }
        }
        Err(ManageError::Failed(anyhow::anyhow!(
            "the tenant kept changing concurrently"
        )))
    })
    .await
}

/// Writes an updated row (read at `row.version`) and publishes the result.
/// `Ok(false)`: another change got in first; read again and retry.
fn commit_update(
    shared: &Shared,
    row: &TenantRow,
    dns: &[String],
    change: &Change,
) -> Result<bool, ManageError> {
    match shared
        .store
        .write_tenant(row, Some(row.version), dns, change)?
    {
        TenantWrite::Written(_) => {
            publish(shared)?;
            Ok(true)
        }
        TenantWrite::Stale => Ok(false),
        TenantWrite::DnTaken { dn, tenant } => Err(ManageError::DnTaken { dn, tenant }),
        TenantWrite::Exists(_) => unreachable!("an update never reports Exists"),
    }
}

/// The top-level members that differ between two Hono documents.
fn changed_members<'a>(
    before: &'a Map<String, Value>,
    after: &'a Map<String, Value>,
) -> impl Iterator<Item = &'a String> + 'a {
    let mut keys: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
}

fn current_dns(row: &TenantRow) -> Result<Vec<String>, ManageError> {
    match &row.doc.hono {
        Some(h) => trusted_dns(h),
        None => Ok(Vec::new()),
    }
}

/// Marks a tenant deleted: it stops being served at once and can be restored
/// (with its configuration) until it is purged.
pub async fn delete(rt: &Arc<Runtime>, principal: String, name: &str) -> Result<(), ManageError> {
    set_deleted(rt, principal, name, true).await.map(drop)
}

/// Brings a deleted tenant back, with its users, options and configuration.
pub async fn restore(
    rt: &Arc<Runtime>,
    principal: String,
    name: &str,
) -> Result<Arc<Tenant>, ManageError> {
    set_deleted(rt, principal, name, false)
        .await?
        .ok_or_else(|| ManageError::NotFound(name.to_owned()))
}

async fn set_deleted(
    rt: &Arc<Runtime>,
    principal: String,
    name: &str,
    deleted: bool,
) -> Result<Option<Arc<Tenant>>, ManageError> {
    let name = parse_name(name)?;
    let shared = rt.shared().clone();
    blocking(&shared, move |shared| {
        let store = shared.store.as_ref();
        let id = tenant_id(&name).to_string();
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(mut row) = store.tenant_row(&id)? else {
                return Err(ManageError::NotFound(name.to_string()));
            };
            if row.deleted_at.is_some() == deleted {
                return Err(ManageError::NotFound(name.to_string()));
            }
            // A settings tenant that left the settings file is not served; it
            // cannot be deleted or restored through an API either.
            let dir = shared.directory.load();
            if deleted && dir.get(&row.id).is_none() {
                return Err(ManageError::NotFound(name.to_string()));
            }
            let now = crate::now_rfc3339();
            row.deleted_at = deleted.then(|| now.clone());
            row.updated_at.clone_from(&now);
            let change = Change {
                tenant_id: row.id.clone(),
                tenant_name: row.name.clone(),
                at: now,
                principal: principal.clone(),
                subject: Subject::Tenant,
                action: if deleted { "deleted" } else { "restored" }.into(),
                fields: Vec::new(),
                before: None,
            };
            let dns = current_dns(&row)?;
            if commit_update(shared, &row, &dns, &change)? {
                return Ok(shared.directory.load().get(&row.id).cloned());
            }
        }
        Err(ManageError::Failed(anyhow::anyhow!(
            "the tenant kept changing concurrently"
        )))
    })
    .await
}

/// Removes a deleted tenant for good (its configuration too). Its history stays.
pub async fn purge(rt: &Arc<Runtime>, principal: String, name: &str) -> Result<(), ManageError> {
    let name = parse_name(name)?;
    let shared = rt.shared().clone();
    blocking(&shared, move |shared| {
        let id = tenant_id(&name).to_string();
        match shared.store.tenant_row(&id)? {
            Some(row) if row.deleted_at.is_some() => {
                purge_row(shared, &row, principal)?;
                Ok(())
            }
            Some(_) => Err(ManageError::Invalid(format!(
                "Tenant '{name}' is not deleted; delete it first"
            ))),
            None => Err(ManageError::NotFound(name.to_string())),
        }
    })
    .await
}

fn purge_row(shared: &Shared, row: &TenantRow, principal: String) -> Result<(), StoreError> {
    let change = Change {
        tenant_id: row.id.clone(),
        tenant_name: row.name.clone(),
        at: crate::now_rfc3339(),
        principal,
        subject: Subject::Tenant,
        action: "purged".into(),
        fields: Vec::new(),
        before: None,
    };
    shared.store.purge_tenant(&row.id, &change)?;
    publish(shared)
}

/// Purges deleted tenants whose grace period has passed (blocking). Returns how many.
pub fn purge_expired(shared: &Shared, grace: std::time::Duration) -> Result<usize, StoreError> {
    let now = std::time::SystemTime::now();
    let mut n = 0;
    for row in shared.store.tenant_rows()? {
        let expired = row
            .deleted_at
            .as_deref()
            .and_then(|at| humantime::parse_rfc3339(at).ok())
            .is_some_and(|at| now.duration_since(at).unwrap_or_default() >= grace);
        if expired {
            tracing::info!(tenant = %row.name, "purging a tenant deleted longer ago than the grace period");
            purge_row(shared, &row, "gateway".into())?;
            n += 1;
        }
    }
    Ok(n)
}

/// Keeps this instance's directory in step with tenant changes other instances
/// make in a shared store, and purges expired deletions. Looks at the store's
/// change number every `interval`, and at once when `changed` is notified (a
/// shared store's change signal); a new number rebuilds the directory.
pub async fn follow_store(
    shared: Arc<Shared>,
    interval: std::time::Duration,
    changed: Arc<tokio::sync::Notify>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep = std::time::Instant::now() - RESTORE_GRACE;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = changed.notified() => {}
        }
        let s = shared.clone();
        let sweep = last_sweep.elapsed() >= std::time::Duration::from_secs(600);
        if sweep {
            last_sweep = std::time::Instant::now();
        }
        let result = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            if sweep {
                purge_expired(&s, RESTORE_GRACE)?;
            }
            let seq = s.store.change_seq()?;
            if seq != s.seen_seq.load(Ordering::Acquire) {
                publish(&s)?;
            }
            Ok(())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "following tenant changes in the store failed")
            }
            Err(e) => tracing::warn!(error = %e, "following tenant changes panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_and_canonical() {
        assert_eq!(
            check_option("replicationfactor", " 3 ", Origin::Api).unwrap(),
            ("ReplicationFactor".to_owned(), "3".to_owned())
        );
        assert_eq!(check_option("tier", "pro", Origin::Api).unwrap().1, "Pro");
        assert!(check_option("Tier", "pro", Origin::Settings).is_err());
        assert!(check_option("ReplicationFactor", "0", Origin::Api).is_err());
        assert!(check_option("Colour", "red", Origin::Api).is_err());
    }

    #[test]
    fn generated_users_are_random_and_valid() {
        let a = generated_user();
        let b = generated_user();
        assert_ne!(a.password, b.password);
        assert_eq!(a.password.len(), 24);
        check_user(&a).unwrap();
        assert!(
            check_user(&NewUser {
                name: "bad name".into(),
                password: "x".into()
            })
            .is_err()
        );
    }

    #[test]
    fn duplicate_dns_in_one_document_are_refused() {
        let doc: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "trusted-ca": [
                {"subject-dn": "CN=ca,O=Acme", "public-key": "AA=="},
                {"subject-dn": "cn = CA , o=acme", "public-key": "AA=="}
            ]
        }))
        .unwrap();
        assert!(matches!(trusted_dns(&doc), Err(ManageError::Invalid(_))));
    }
}
