//! Persistent state behind one interface: tenants and a versioned key-value space
//! with compare-and-swap. SQLite is the embedded default; PostgreSQL is the shared
//! store for several gateway instances serving the same tenants.

/// A query of whole tenant rows (the columns both backends' `tenant_from`
/// read, in that order), `$rest` (its `WHERE` / `ORDER BY`) appended.
macro_rules! tenant_select {
    ($rest:literal) => {
        concat!(
            "SELECT id, name, tier, enabled, origin, created_at, updated_at, deleted_at, \
             version, doc FROM tenants ",
            $rest
        )
    };
}

mod committer;
mod postgres;
mod sqlite;
#[doc(hidden)]
pub mod testing;
mod write;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
use std::sync::Arc;

/// Connections each store's pool holds: how many of its calls run at once.
pub const POOL_SIZE: u32 = 8;

/// A stored value and the version it had when read; versions only grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: Vec<u8>,
    /// Incremented by every write of the key.
    pub version: i64,
}

/// Where a tenant came from: the settings file (which then owns its name, tier
/// and connection settings) or a management API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Seeded from the settings file.
    Settings,
    /// Created through a management API.
    Api,
}

impl Origin {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Settings => "settings",
            Origin::Api => "api",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "settings" {
            Origin::Settings
        } else {
            Origin::Api
        }
    }
}

/// The parts of a tenant the management APIs own, stored as one JSON document.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TenantDoc {
    /// Tenant users: name → Argon2id PHC hash (never a password).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub users: std::collections::BTreeMap<String, String>,
    /// Tenant options (Doradus `options`), e.g. `ReplicationFactor`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub options: std::collections::BTreeMap<String, String>,
    /// Hono tenant information, minus `tenant-id` and `enabled` (kept in the row).
    /// Boxed: most tenants have none, and an unboxed map is 72 bytes of every
    /// tenant in the directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hono: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// Random, set when the management APIs create the tenant: which tenant
    /// of its name this is (one purged and made again gets another), so its
    /// tokens and clients are not an earlier one's. Absent for tenants of the
    /// settings file and older records: their creation time stands in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// A tenant as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRow {
    /// Stable UUID, hyphenated lower case.
    pub id: String,
    /// Name as configured or created.
    pub name: String,
    /// Tier name.
    pub tier: String,
    /// Whether the tenant is served.
    pub enabled: bool,
    /// Who owns it.
    pub origin: Origin,
    /// First time the store saw the tenant (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// When it was deleted; a deleted tenant is kept for a grace period, restorable.
    pub deleted_at: Option<String>,
    /// Incremented by every write of the row (optimistic concurrency).
    pub version: i64,
    /// Users, options, Hono information.
    pub doc: TenantDoc,
}

/// What a change was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    /// The tenant itself (users, options, Hono information, existence).
    Tenant,
    /// The tenant's configuration (config API).
    Config,
}

impl Subject {
    fn as_str(self) -> &'static str {
        match self {
            Subject::Tenant => "tenant",
            Subject::Config => "config",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "config" {
            Subject::Config
        } else {
            Subject::Tenant
        }
    }
}

/// One recorded change, as written with the change itself (same transaction).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The tenant changed.
    pub tenant_id: String,
    /// Its name at the time.
    pub tenant_name: String,
    /// When (RFC 3339).
    pub at: String,
    /// Who: `super-user:NAME`, `client:ID`, `user:TENANT/NAME`, `settings`.
    pub principal: String,
    /// What kind of thing changed.
    pub subject: Subject,
    /// `created`, `updated`, `deleted`, `restored`, `purged`, `rolled-back`.
    pub action: String,
    /// What changed: dotted field names, never secret values.
    pub fields: Vec<String>,
    /// For configuration changes, the configuration before (absent for a first write).
    pub before: Option<Vec<u8>>,
}

/// A change as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// Position in the store's change sequence (grows with every change).
    pub seq: i64,
    /// The change.
    pub change: Change,
    /// Configuration changes: the configuration version written.
    pub version: Option<i64>,
}

/// Outcome of [`Store::write_tenant`].
#[derive(Debug, Clone, PartialEq)]
pub enum TenantWrite {
    /// Written; the row as stored now.
    Written(TenantRow),
    /// Create: a tenant with that name exists (possibly deleted).
    Exists(TenantRow),
    /// Update: the row changed since it was read.
    Stale,
    /// A trusted-CA subject DN is already another tenant's.
    DnTaken {
        /// The canonical DN.
        dn: String,
        /// The tenant that has it.
        tenant: String,
    },
}

/// The configuration written last through one queue of configuration writes
/// (`http::turns`), so the next update of that key in the queue starts from it
/// instead of reading the store again. Its write expects it with
/// [`Expect::Same`]: if anything else wrote the key meanwhile (another
/// instance, a purge), that write fails and the update reads the store.
#[derive(Debug, Clone)]
pub struct Written {
    /// The key (a tenant's id) in the `configs` bucket.
    pub key: String,
    /// Its value and version as written.
    pub current: Versioned,
}

/// A turn of one queue of configuration writes, holding what was last
/// written through it (`Deref`s to it).
pub struct WriteTurn {
    guard: tokio::sync::OwnedMutexGuard<Option<Written>>,
    busy: Busy,
}

impl WriteTurn {
    /// The turn `guard` of the update counted by `busy`.
    pub fn new(guard: tokio::sync::OwnedMutexGuard<Option<Written>>, busy: Busy) -> Self {
        Self { guard, busy }
    }

    /// How many other updates are waiting for a turn or hold one: writes
    /// that will follow this one shortly.
    pub fn others(&self) -> usize {
        self.busy.others()
    }
}

impl std::ops::Deref for WriteTurn {
    type Target = Option<Written>;
    fn deref(&self) -> &Option<Written> {
        &self.guard
    }
}

impl std::ops::DerefMut for WriteTurn {
    fn deref_mut(&mut self) -> &mut Option<Written> {
        &mut self.guard
    }
}

/// One update counted among those waiting for or holding a turn, until
/// dropped.
pub struct Busy(Arc<std::sync::atomic::AtomicUsize>);

impl Busy {
    /// Counts one more in `count`.
    pub fn new(count: Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(count)
    }

    fn others(&self) -> usize {
        self.0
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(1)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A [`Store::write_recorded`] handed over whole, for a store that takes
/// writes without blocking the caller ([`Store::submit_recorded`]).
#[derive(Debug, Clone)]
pub struct RecordedWrite {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// What the key must be.
    pub expected: Expect,
    /// The value to write (`None`: remove the key).
    pub value: Option<Vec<u8>>,
    /// The change to record with it.
    pub change: Change,
}

impl RecordedWrite {
    /// The write's statements, in a backend's transaction.
    fn step(&self, tx: &mut impl write::Tx) -> Result<write::Step<Option<i64>>, StoreError> {
        write::write_key(
            tx,
            &self.bucket,
            &self.key,
            self.expected,
            self.value.as_deref(),
            Some(&self.change),
        )
    }
}

type Answer = tokio::sync::oneshot::Receiver<Result<Option<i64>, StoreError>>;
/// Gives a submitted write its final answer.
type Reply = Box<dyn FnOnce(Result<Option<i64>, StoreError>) + Send>;

/// A write handed to [`Store::submit_recorded`], on its way.
pub struct Submitted {
    /// Its new version as soon as it is applied, before it is durable.
    applied: Option<tokio::sync::oneshot::Receiver<i64>>,
    /// What [`Store::write_recorded`] would answer, once durable.
    done: Answer,
}

/// A write applied and on its way to being durable.
pub struct Durable(Answer);

impl Submitted {
    /// A write on its way, and the two ends its store answers through: the
    /// version applied (called only when the write changed the key) and the
    /// final answer.
    fn channels() -> (Self, committer::Applied<Option<i64>>, Reply) {
        let (applied, applied_rx) = tokio::sync::oneshot::channel();
        let (done, done_rx) = tokio::sync::oneshot::channel();
        (
            Self {
                applied: Some(applied_rx),
                done: done_rx,
            },
            Box::new(move |version: &Option<i64>| {
                if let Some(version) = *version {
                    let _ = applied.send(version);
                }
            }),
            Box::new(move |answer| {
                let _ = done.send(answer);
            }),
        )
    }

    /// A write that failed before it was on its way.
    fn failed(e: StoreError) -> Self {
        let (done, done_rx) = tokio::sync::oneshot::channel();
        let _ = done.send(Err(e));
        Self {
            applied: None,
            done: done_rx,
        }
    }

    /// Waits for the write's outcome: what [`Store::write_recorded`]
    /// answers, and, when the write was applied but is not durable yet,
    /// what to wait on before anyone is told it was made.
    pub async fn outcome(self) -> Result<(Option<i64>, Option<Durable>), StoreError> {
        if let Some(applied) = self.applied
            && let Ok(version) = applied.await
        {
            return Ok((Some(version), Some(Durable(self.done))));
        }
        self.done
            .await
            .map_err(|_| committer::stopped())?
            .map(|v| (v, None))
    }
}

impl Durable {
    /// Waits until the write is durable; an error when it was lost.
    pub async fn wait(self) -> Result<(), StoreError> {
        self.0.await.map_err(|_| committer::stopped())?.map(drop)
    }
}

/// [`Store::write_recorded`] from async code: handed to the store's writer
/// when it takes writes that way, else run on the blocking pool. `more`:
/// other writes will follow shortly (a batching store may wait for them).
pub async fn write_recorded_async(
    store: &Arc<dyn Store>,
    write: RecordedWrite,
    more: bool,
) -> Result<(Option<i64>, Option<Durable>), StoreError> {
    match store.submit_recorded(Box::new(write), more) {
        Ok(submitted) => submitted.outcome().await,
        Err(write) => {
            let store = store.clone();
            let written = tokio::task::spawn_blocking(move || {
                store.write_recorded(
                    &write.bucket,
                    &write.key,
                    write.expected,
                    write.value.as_deref(),
                    &write.change,
                )
            })
            .await
            .map_err(|e| StoreError::Lost(format!("storage task failed: {e}")))??;
            Ok((written, None))
        }
    }
}

/// What a key-value write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Anything.
    Any,
    /// Nothing: create only.
    Absent,
    /// The key at this version.
    Version(i64),
    /// The key at this version and with this value (its [`Expect::digest`]).
    /// A key deleted and written again counts its versions from 1 again, so
    /// a version alone can match a value the writer never saw; a value
    /// remembered across requests is checked this way.
    Same {
        /// The version.
        version: i64,
        /// The value's SHA-256.
        digest: [u8; 32],
    },
}

impl Expect {
    /// The key as `current` has it: its version and value.
    pub fn same(current: &Versioned) -> Expect {
        Expect::Same {
            version: current.version,
            digest: Expect::digest(&current.value),
        }
    }

    /// The digest [`Expect::Same`] compares.
    pub fn digest(value: &[u8]) -> [u8; 32] {
        <sha2::Sha256 as sha2::Digest>::digest(value).into()
    }
}

/// A store failure; the request that met it gets a 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// PostgreSQL reported an error.
    #[error("database error: {}", chain(.0))]
    Postgres(#[from] ::postgres::Error),
    /// A stored value could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A write kept meeting concurrent writes of the same key.
    #[error("too much contention: {0}")]
    Contended(String),
    /// No connection could be had.
    #[error("connection pool error: {0}")]
    Pool(#[from] r2d2::Error),
    /// The store could not be opened.
    #[error("cannot open store: {0}")]
    Open(String),
    /// A write was not kept: its transaction failed to commit, or the
    /// store's writer stopped.
    #[error("write not stored: {0}")]
    Lost(String),
}

/// An error's text followed by its causes', `: `-separated.
/// What [`Store::register_client`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRegistration {
    /// Written.
    Registered,
    /// The client id is taken.
    Taken,
    /// The tenant has its most clients.
    Full,
}

/// The bucket of tenant configurations, keyed by tenant id.
pub const CONFIGS_BUCKET: &str = "configs";

/// The key-value bucket of registered clients (one JSON record per client id).
pub const CLIENTS_BUCKET: &str = "_clients";

/// What a client record of tenant `id` contains, exactly once: its
/// `"tenant_id":"<uuid>"` member as serde writes it (compact; a string value
/// can never hold it unescaped). Purging a tenant deletes the records holding it.
pub fn client_marker(id: &str) -> String {
    format!("\"tenant_id\":\"{id}\"")
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// One page of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys in ascending order.
    pub keys: Vec<String>,
    /// Pass back to get the next page; `None` on the last one.
    pub cursor: Option<String>,
}

impl KeyPage {
    /// A page of at most `limit` keys from up to `limit + 1` fetched (one more
    /// than fits tells that another page follows).
    fn of(mut keys: Vec<String>, limit: usize) -> Self {
        let cursor = if keys.len() > limit {
            keys.truncate(limit);
            keys.last().cloned()
        } else {
            None
        };
        Self { keys, cursor }
    }
}

/// What the gateway needs from persistent storage. Calls block: async code runs
/// them on the blocking pool.
pub trait Store: Send + Sync + 'static {
    /// Has `wake` called soon after any process (this one included) changes
    /// tenants, when the store can tell; a store only this process uses needs
    /// no such signal (its changes are published where they are made), and
    /// [`Store::change_seq`] polling stays the fallback either way.
    fn on_change(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        let _ = wake;
    }
    /// Records a tenant from the settings file: inserted on first sight (keeping its
    /// creation time forever after, and recording its creation), name and tier
    /// refreshed on later starts. A tenant deleted through an API stays deleted.
    fn seed_tenant(
        &self,
        id: &str,
        name: &str,
        tier: &str,
        now: &str,
    ) -> Result<TenantRow, StoreError> {
        self.seed_tenants(&[(id, name, tier)], now)?
            .pop()
            .ok_or_else(|| StoreError::Corrupt(format!("seeding tenant {id} returned no row")))
    }
    /// [`Store::seed_tenant`] of each `(id, name, tier)` in one transaction,
    /// their rows in the same order (a start with 10,000 tenants in the
    /// settings made 10,000 transactions of one each).
    fn seed_tenants(
        &self,
        tenants: &[(&str, &str, &str)],
        now: &str,
    ) -> Result<Vec<TenantRow>, StoreError>;
    /// Every tenant, deleted ones included, by name.
    fn tenant_rows(&self) -> Result<Vec<TenantRow>, StoreError>;
    /// The deleted tenants (awaiting their purge), by name.
    fn deleted_tenant_rows(&self) -> Result<Vec<TenantRow>, StoreError>;
    /// One tenant by id, deleted or not.
    fn tenant_row(&self, id: &str) -> Result<Option<TenantRow>, StoreError>;
    /// Creates (`expected` `None`) or updates (`expected` = the version read) a
    /// tenant, sets the trusted-CA DNs it owns to `dns` (canonical forms, unique
    /// across tenants) and records `change`, all in one transaction.
    fn write_tenant(
        &self,
        row: &TenantRow,
        expected: Option<i64>,
        dns: &[String],
        change: &Change,
    ) -> Result<TenantWrite, StoreError>;
    /// Removes a tenant for good: its row, DNs and configuration; records `change`.
    /// `Ok(false)`: no such tenant.
    fn purge_tenant(&self, id: &str, change: &Change) -> Result<bool, StoreError>;
    /// The tenant owning a trusted-CA DN (canonical form), if any.
    fn tenant_by_dn(&self, dn: &str) -> Result<Option<String>, StoreError>;
    /// A tenant's recorded changes, newest first, at most `limit` (without the
    /// stored configurations: `before` is `None`).
    fn history(&self, tenant_id: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError>;
    /// The configuration a tenant had at `version`, from its history.
    fn config_at(&self, tenant_id: &str, version: i64) -> Result<Option<Vec<u8>>, StoreError>;
    /// The number of the newest recorded tenant change (0: none yet): a
    /// cheap way for an instance to learn that another one changed tenants.
    /// Tenant changes are numbered in the order they commit.
    fn change_seq(&self) -> Result<i64, StoreError>;
    /// The tenant changes numbered after `after`, oldest first, at most
    /// `limit`: each change's number and tenant id. What an instance applies
    /// to its directory one tenant at a time.
    fn tenant_changes(&self, after: i64, limit: usize) -> Result<Vec<(i64, String)>, StoreError>;
    /// Reads a key.
    fn get(&self, bucket: &str, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// A key's version, without its value.
    fn version(&self, bucket: &str, key: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.get(bucket, key)?.map(|v| v.version))
    }
    /// The versions of `keys`, in their order: what [`Store::version`] says
    /// of each, read together (a backend may read them in one transaction).
    fn versions(&self, bucket: &str, keys: &[&str]) -> Result<Vec<Option<i64>>, StoreError> {
        keys.iter().map(|k| self.version(bucket, k)).collect()
    }
    /// Writes a key unconditionally.
    fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Removes a key (no error if absent).
    fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError>;
    /// Lists keys after `cursor`, at most `limit`.
    fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, StoreError>;
    /// Writes `value` only if the key still has `expected` version (`None`: only
    /// if absent). Returns whether it wrote.
    fn swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<i64>,
        value: &[u8],
    ) -> Result<bool, StoreError>;
    /// Registers a client of `tenant_id`: writes `record` (its JSON, holding
    /// [`client_marker`]) under `client_id` in [`CLIENTS_BUCKET`], unless the id
    /// is taken or the tenant already has `max` clients, in one transaction.
    fn register_client(
        &self,
        client_id: &str,
        tenant_id: &str,
        record: &[u8],
        max: u32,
    ) -> Result<ClientRegistration, StoreError>;
    /// Writes (`Some`) or removes (`None`) a key if it is as `expected`, and records
    /// `change` with the version written, in one transaction. `Ok(None)`: not as
    /// expected, nothing written.
    fn write_recorded(
        &self,
        bucket: &str,
        key: &str,
        expected: Expect,
        value: Option<&[u8]>,
        change: &Change,
    ) -> Result<Option<i64>, StoreError>;
    /// Takes [`Store::write_recorded`] without blocking the caller, when
    /// this store can: its outcome comes as soon as it is applied, in order
    /// with this store's other writes, and separately once it is durable
    /// (see [`Submitted::outcome`]). `more`: other writes will follow
    /// shortly. `Err`: not this store; run `write_recorded` instead.
    fn submit_recorded(
        &self,
        write: Box<RecordedWrite>,
        more: bool,
    ) -> Result<Submitted, Box<RecordedWrite>> {
        let _ = more;
        Err(write)
    }
}

/// Asks the kernel not to run this thread the moment it is woken
/// (`SCHED_BATCH`: a fair share of the CPU as before, no wake-up preemption),
/// for a thread serving store calls queued by async code: a request queues
/// its call and goes on; the thread runs when the worker that queued it
/// waits or its time slice ends, and serves what queued meanwhile in one go.
/// Woken preemptively, it switched in and out once for every call (the
/// config GETs' version reads, `http::config_reads`).
pub(crate) fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid `sched_param` for the duration of the
        // call; pid 0 is the calling thread.
        #[allow(unsafe_code)]
        let failed = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0;
        if failed {
            tracing::debug!(error = %std::io::Error::last_os_error(), "SCHED_BATCH refused");
        }
    }
}

/// The leaf fields (dotted) that differ between two configuration documents
/// (JSON text), leaving out the read-only `tenant_id` and `updated_at`: a
/// section's changed members as `section.member`, or the whole `section` when
/// it is new, gone or not an object on one side. In name order; a missing
/// member equals `null`, and a document that is not an object counts as empty.
///
/// Equal text is an equal value, so the documents are read only as far as
/// their text differs: sections and members are compared as text first, and
/// only text that differs is parsed, to tell an equal value written otherwise
/// (`1.0` and `1e0`, members in another order) from a change. A path is made
/// only for a field that changed. (Both documents parsed whole cost 5 % of a
/// `PUT …/config`'s CPU.)
pub fn changed_fields(before: Option<&[u8]>, after: Option<&[u8]>) -> Vec<String> {
    let (a, b) = (members(before), members(after));
    let mut out = Vec::new();
    for (section, x, y) in paired(&a, &b) {
        if section == "tenant_id" || section == "updated_at" || same_text(x, y) {
            continue;
        }
        let (inner_x, inner_y) = (x.and_then(object), y.and_then(object));
        match (inner_x, inner_y) {
            (Some(x), Some(y)) => {
                for (member, u, v) in paired(&x, &y) {
                    if !same_text(u, v) && !same_value(u, v) {
                        out.push(format!("{section}.{member}"));
                    }
                }
            }
            _ if !same_value(x, y) => out.push(section.to_owned()),
            _ => {}
        }
    }
    out
}

/// An object's member name, borrowed from the text unless it has escapes.
#[derive(serde::Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct Name<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

/// An object's members by name (the last of a repeated name, as a parse
/// keeps), their values as unparsed text.
type Members<'a> = std::collections::BTreeMap<Name<'a>, &'a serde_json::value::RawValue>;

/// The members of a document; none if it is no object.
fn members(text: Option<&[u8]>) -> Members<'_> {
    text.and_then(|t| serde_json::from_slice(t).ok())
        .unwrap_or_default()
}

/// The members of a value, if it is an object.
fn object(raw: &serde_json::value::RawValue) -> Option<Members<'_>> {
    raw.get()
        .starts_with('{')
        .then(|| serde_json::from_str(raw.get()).ok())
        .flatten()
}

/// Every name of either, in order, with its value on each side.
fn paired<'m, 'a>(
    x: &'m Members<'a>,
    y: &'m Members<'a>,
) -> impl Iterator<
    Item = (
        &'m str,
        Option<&'a serde_json::value::RawValue>,
        Option<&'a serde_json::value::RawValue>,
    ),
> + 'm {
    let mut names: Vec<&Name<'a>> = x.keys().chain(y.keys()).collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|n| (&*n.0, x.get(n).copied(), y.get(n).copied()))
}

fn same_text(
    x: Option<&serde_json::value::RawValue>,
    y: Option<&serde_json::value::RawValue>,
) -> bool {
    x.map(|r| r.get()) == y.map(|r| r.get())
}

/// Equal as JSON values; a missing one is `null`.
fn same_value(
    x: Option<&serde_json::value::RawValue>,
    y: Option<&serde_json::value::RawValue>,
) -> bool {
    let value = |r: Option<&serde_json::value::RawValue>| {
        r.and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    value(x) == value(y)
}

#[cfg(test)]
mod tests {
    use super::changed_fields;

    #[test]
    fn changed_fields_are_the_differing_members_in_name_order() {
        let before = br#"{"tenant_id":"a","updated_at":"t1",
            "performance":{"cache_size_mb":512,"workers":4,"tags":[1,2]},
            "security":{"tls":true},"gone":{"x":1},"plain":1}"#;
        let after = br#"{"tenant_id":"b","updated_at":"t2",
            "performance":{"workers":4,"cache_size_mb":2048,"tags":[1,3],"new":null},
            "security":{"tls":true},"added":{"y":2},"plain":2}"#;
        assert_eq!(
            changed_fields(Some(before), Some(after)),
            [
                "added",
                "gone",
                "performance.cache_size_mb",
                "performance.tags",
                "plain"
            ]
        );
        // Nothing before (or text that is no object) is an empty document.
        assert_eq!(
            changed_fields(None, Some(br#"{"tenant_id":"a","b":{"c":1},"a":1}"#)),
            ["a", "b"]
        );
        assert_eq!(
            changed_fields(Some(b"[1]"), Some(br#"{"a":{"b":1}}"#)),
            ["a"]
        );
        assert!(changed_fields(Some(after), Some(after)).is_empty());
        assert!(changed_fields(None, None).is_empty());
    }

    #[test]
    fn values_written_otherwise_are_not_changes() {
        // Same values, other text: spacing, member order inside a value,
        // escapes in names and strings; and one real change among them.
        let before = br#"{"s":{"m":{"x":1,"y":[1,2]},"k":"\u0041","q":2,"n\u0061me":1},
            "t":{"a":1}, "u":[1, 2]}"#;
        let after = br#"{ "u" : [1,2], "t":{"a":1},
            "s":{"name":1,"k":"A","q":3,"m":{ "y":[1, 2],"x":1 }}}"#;
        assert_eq!(changed_fields(Some(before), Some(after)), ["s.q"]);
        // A section that stops being an object is a change of the section.
        assert_eq!(
            changed_fields(Some(br#"{"s":{"a":1}}"#), Some(br#"{"s":[{"a":1}]}"#)),
            ["s"]
        );
        // A member set to null equals a member left out.
        assert!(
            changed_fields(
                Some(br#"{"s":{"a":1}}"#),
                Some(br#"{"s":{"a":1,"b":null}}"#)
            )
            .is_empty()
        );
    }
}
