//! Tenant management: the one place where tenants are created, changed, deleted,
//! restored and purged, whichever API asks (Doradus `/_tenants`, Vespa
//! `/application/v2/tenant`, Hono tenant information). Every change is written
//! with its history record in one store transaction and then published as a new
//! directory snapshot, so routing, the config API and every other API see it at
//! once. Another instance sharing the store learns of it from the store's change
//! sequence (`app`'s store follower).
//!
//! `checks.rs` checks what a request gives; `create.rs`, `update.rs` and
//! `remove.rs` (delete, restore, purge) write it.

mod checks;
mod create;
mod remove;
mod update;

pub use checks::MAX_USERS_PER_REQUEST;
pub use create::create;
pub use remove::{delete, purge, purge_expired, restore};
pub use update::update;

use crate::config::TenantName;
use crate::store::{Change, StoreError, Subject, TenantRow};
use crate::tenancy::{Directory, Shared, Tenant};
use crate::wasm::Violation;
use serde_json::{Map, Value};
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

/// At most this many tenant changes since the last publish are applied one
/// tenant at a time; more (an instance that fell far behind) rebuild the
/// directory from every row.
const CHANGES_APPLIED_ONE_BY_ONE: usize = 256;

/// Publishes the tenant changes the store recorded since the directory was
/// last published (blocking): the changed tenants, read again, replace their
/// old selves in a copy that shares every other one. Whoever changed a tenant,
/// this instance or another, the result is the same.
pub fn publish(shared: &Shared) -> Result<(), StoreError> {
    let _guard = shared.publishing.lock().expect("poisoned");
    let seen = shared.seen_seq.load(Ordering::Acquire);
    let changes = shared
        .store
        .tenant_changes(seen, CHANGES_APPLIED_ONE_BY_ONE + 1)?;
    let Some(&(last, _)) = changes.last() else {
        return Ok(());
    };
    let current = shared.directory.load();
    // Rows read after the changes were listed are at least that new.
    let next = if changes.len() > CHANGES_APPLIED_ONE_BY_ONE {
        current.rebuild(shared.store.as_ref())?
    } else {
        let mut ids: Vec<&str> = changes.iter().map(|(_, id)| id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            let Ok(uuid) = uuid::Uuid::parse_str(id) else {
                continue;
            };
            rows.push((uuid, shared.store.tenant_row(id)?));
        }
        current.with_changes(rows)
    };
    shared.directory.store(Arc::new(next));
    shared.seen_seq.store(last, Ordering::Release);
    Ok(())
}

/// The history record of a change to the tenant of `row`, made at `at`.
fn recorded(
    row: &TenantRow,
    at: String,
    principal: String,
    action: &str,
    fields: Vec<String>,
) -> Change {
    Change {
        tenant_id: row.id.clone(),
        tenant_name: row.name.clone(),
        at,
        principal,
        subject: Subject::Tenant,
        action: action.into(),
        fields,
        before: None,
    }
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
