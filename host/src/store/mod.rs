//! Persistent state behind one interface: tenants and a versioned key-value space
//! with compare-and-swap. SQLite is the embedded default; a shared backend (e.g.
//! PostgreSQL) implements the same trait.

mod sqlite;

pub use sqlite::SqliteStore;

/// A stored value and the version it had when read; versions only grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: Vec<u8>,
    /// Incremented by every write of the key.
    pub version: i64,
}

/// A tenant as the store keeps it (settings-defined fields are refreshed on start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    /// Stable UUID, hyphenated lower case.
    pub id: String,
    /// Name as configured.
    pub name: String,
    /// Tier name.
    pub tier: String,
    /// Whether the tenant is served.
    pub enabled: bool,
    /// First time the store saw the tenant (RFC 3339).
    pub created_at: String,
}

/// A store failure; the request that met it gets a 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// No connection could be had.
    #[error("connection pool error: {0}")]
    Pool(#[from] r2d2::Error),
    /// The store could not be opened.
    #[error("cannot open store: {0}")]
    Open(String),
}

/// One page of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys in ascending order.
    pub keys: Vec<String>,
    /// Pass back to get the next page; `None` on the last one.
    pub cursor: Option<String>,
}

/// What the gateway needs from persistent storage. Calls block: async code runs
/// them on the blocking pool.
pub trait Store: Send + Sync + 'static {
    /// Records a tenant from the settings file: inserted on first sight (keeping its
    /// creation time forever after), name and tier refreshed on later starts.
    fn seed_tenant(
        &self,
        id: &str,
        name: &str,
        tier: &str,
        now: &str,
    ) -> Result<TenantRow, StoreError>;
    /// Reads a key.
    fn get(&self, bucket: &str, key: &str) -> Result<Option<Versioned>, StoreError>;
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
}
