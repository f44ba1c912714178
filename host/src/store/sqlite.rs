//! The embedded store: one SQLite file in the data directory, WAL journal,
//! synchronous commits (a write answered 200 survives a crash of the process
//! and of the machine). Reads come from a pool of connections; every write
//! goes to one writer thread, which commits the writes that queue together
//! ([`super::committer`]).

use super::committer::{Committer, Job, Sql};
use super::write::{self, Step, Tx};
use super::{
    Change, Expect, HistoryEntry, KeyPage, Origin, RecordedWrite, Store, StoreError, Subject,
    Submitted, TenantDoc, TenantRow, TenantWrite, Versioned,
};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{OptionalExtension, params};
use std::path::Path;
use std::time::Duration;

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    pool: r2d2::Pool<SqliteConnectionManager>,
    /// This process's one writer. SQLite has one writer; left to itself, a
    /// writer that finds the lock taken sleeps in `busy_timeout`'s growing
    /// steps (up to 100 ms each) and a burst of writes waited hundreds of
    /// milliseconds. Queued to one thread, the next write starts the moment
    /// the last one is applied, and a burst is committed at once. (Another
    /// process sharing the file still meets `busy_timeout`.)
    writer: Committer,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    name_key   TEXT NOT NULL UNIQUE,
    tier       TEXT NOT NULL,
    enabled    INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    bucket  TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   BLOB NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tenant_dns (
    dn        TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tenant_dns_tenant ON tenant_dns (tenant_id);
CREATE TABLE IF NOT EXISTS history (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL,
    tenant_name TEXT NOT NULL,
    at          TEXT NOT NULL,
    principal   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    action      TEXT NOT NULL,
    fields      TEXT NOT NULL,
    version     INTEGER,
    before      BLOB,
    after       BLOB
);
CREATE INDEX IF NOT EXISTS history_tenant ON history (tenant_id, seq);
CREATE INDEX IF NOT EXISTS history_tenant_changes ON history (seq) WHERE subject = 'tenant';
";

/// Columns added to `tenants` after its first release, with their definitions:
/// added to older files on open.
const TENANT_COLUMNS: [(&str, &str); 4] = [
    ("origin", "TEXT NOT NULL DEFAULT 'settings'"),
    ("deleted_at", "TEXT"),
    ("version", "INTEGER NOT NULL DEFAULT 1"),
    ("doc", "TEXT NOT NULL DEFAULT '{}'"),
];

const TENANT_BY_ID: &str = tenant_select!("WHERE id = ?1");

fn tenant_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<TenantRow> {
    let doc: String = r.get(9)?;
    let doc: TenantDoc = serde_json::from_str(&doc).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(TenantRow {
        id: r.get(0)?,
        name: r.get(1)?,
        tier: r.get(2)?,
        enabled: r.get(3)?,
        origin: Origin::parse(&r.get::<_, String>(4)?),
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
        deleted_at: r.get(7)?,
        version: r.get(8)?,
        doc,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) `gateway.db` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Open(format!("{}: {e}", dir.display())))?;
        let file = dir.join("gateway.db");
        let manager = SqliteConnectionManager::file(&file).with_init(init);
        let pool = r2d2::Pool::builder()
            .max_size(super::POOL_SIZE)
            .connection_timeout(Duration::from_secs(5))
            .build(manager)?;
        let conn = pool.get()?;
        conn.execute_batch(SCHEMA)?;
        let existing: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('tenants')")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for (column, definition) in TENANT_COLUMNS {
            if !existing.iter().any(|c| c == column) {
                conn.execute_batch(&format!(
                    "ALTER TABLE tenants ADD COLUMN {column} {definition}"
                ))?;
            }
        }
        // The purge sweep's query: without it, it read every tenant's page
        // into its connection's cache (some 120 bytes a tenant, for good) to
        // find the few deleted ones.
        conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS tenants_deleted ON tenants (name_key) \
             WHERE deleted_at IS NOT NULL",
        )?;
        drop(conn);
        let open = || -> Result<rusqlite::Connection, StoreError> {
            let mut conn = rusqlite::Connection::open(&file)?;
            init(&mut conn)?;
            Ok(conn)
        };
        Ok(Self {
            pool,
            writer: Committer::start(open()?, open()?)?,
        })
    }

    /// Runs `step` on the writer thread, in a savepoint of the batch's
    /// `IMMEDIATE` transaction (the write lock taken at its start: another
    /// process's writers wait for `busy_timeout`), kept or undone as the step
    /// says; answers once the batch is committed. Blocks: not on an async
    /// worker.
    fn transact<T: Send + 'static>(
        &self,
        step: impl FnMut(&mut Sql<'_>) -> Result<Step<T>, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        self.writer.submit(Job::new(step, false, None, move |r| {
            let _ = answer.send(r);
        }))?;
        answered.recv().map_err(|_| super::committer::stopped())?
    }
}

/// What every connection is set to: WAL, full synchronous commits, foreign
/// keys, and a wait for another process's write lock.
/// The tenants deleted but not purged yet (the purge sweep's query).
const DELETED_TENANTS: &str = tenant_select!("WHERE deleted_at IS NOT NULL ORDER BY name_key");

fn init(c: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    c.busy_timeout(Duration::from_secs(5))?;
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
}

/// The tenants a `tenant_select!` query finds.
fn tenants(conn: &rusqlite::Connection, query: &str) -> Result<Vec<TenantRow>, StoreError> {
    let mut stmt = conn.prepare_cached(query)?;
    let rows = stmt.query_map([], tenant_from)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

impl Store for SqliteStore {
    fn seed_tenants(
        &self,
        tenants: &[(&str, &str, &str)],
        now: &str,
    ) -> Result<Vec<TenantRow>, StoreError> {
        let tenants: Vec<(String, String, String)> = tenants
            .iter()
            .map(|&(id, name, tier)| (id.to_owned(), name.to_owned(), tier.to_owned()))
            .collect();
        let now = now.to_owned();
        self.transact(move |tx| {
            let tenants: Vec<(&str, &str, &str)> = tenants
                .iter()
                .map(|(id, name, tier)| (id.as_str(), name.as_str(), tier.as_str()))
                .collect();
            write::seed_tenants(tx, &tenants, &now)
        })
    }

    fn tenant_rows(&self) -> Result<Vec<TenantRow>, StoreError> {
        let conn = self.pool.get()?;
        let rows = tenants(&conn, tenant_select!("ORDER BY name_key"))?;
        // Reading every tenant (a start, a settings reload) filled this
        // connection's page cache with the whole table, which no request
        // reads again: up to 2 MiB kept per pooled connection (3.6 MB of a
        // start's live heap with 10,000 tenants, by a heap profile).
        conn.execute_batch("PRAGMA shrink_memory")?;
        Ok(rows)
    }

    fn deleted_tenant_rows(&self) -> Result<Vec<TenantRow>, StoreError> {
        let conn = self.pool.get()?;
        tenants(&conn, DELETED_TENANTS)
    }

    fn tenant_row(&self, id: &str) -> Result<Option<TenantRow>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(TENANT_BY_ID)?;
        Ok(stmt.query_row([id], tenant_from).optional()?)
    }

    fn write_tenant(
        &self,
        row: &TenantRow,
        expected: Option<i64>,
        dns: &[String],
        change: &Change,
    ) -> Result<TenantWrite, StoreError> {
        let (row, dns, change) = (row.clone(), dns.to_vec(), change.clone());
        self.transact(move |tx| write::write_tenant(tx, &row, expected, &dns, &change))
    }

    fn purge_tenant(&self, id: &str, change: &Change) -> Result<bool, StoreError> {
        let (id, change) = (id.to_owned(), change.clone());
        self.transact(move |tx| write::purge_tenant(tx, &id, &change))
    }

    fn tenant_by_dn(&self, dn: &str) -> Result<Option<String>, StoreError> {
        let conn = self.pool.get()?;
        Ok(conn
            .prepare_cached("SELECT tenant_id FROM tenant_dns WHERE dn = ?1")?
            .query_row([dn], |r| r.get(0))
            .optional()?)
    }

    fn history(&self, tenant_id: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT seq, tenant_id, tenant_name, at, principal, subject, action, fields, \
             version FROM history WHERE tenant_id = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![tenant_id, limit], |r| {
                let fields: String = r.get(7)?;
                Ok(HistoryEntry {
                    seq: r.get(0)?,
                    change: Change {
                        tenant_id: r.get(1)?,
                        tenant_name: r.get(2)?,
                        at: r.get(3)?,
                        principal: r.get(4)?,
                        subject: Subject::parse(&r.get::<_, String>(5)?),
                        action: r.get(6)?,
                        fields: serde_json::from_str(&fields).unwrap_or_default(),
                        // Listings never show stored configurations.
                        before: None,
                    },
                    version: r.get(8)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn config_at(&self, tenant_id: &str, version: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = self.pool.get()?;
        Ok(conn
            .prepare_cached(
                "SELECT after FROM history WHERE tenant_id = ?1 AND subject = 'config' \
                 AND version = ?2 AND after IS NOT NULL ORDER BY seq DESC LIMIT 1",
            )?
            .query_row(params![tenant_id, version], |r| r.get(0))
            .optional()?)
    }

    fn change_seq(&self) -> Result<i64, StoreError> {
        let conn = self.pool.get()?;
        Ok(conn
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM history WHERE subject = 'tenant'")?
            .query_row([], |r| r.get(0))?)
    }

    fn tenant_changes(&self, after: i64, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
        let conn = self.pool.get()?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare_cached(
            "SELECT seq, tenant_id FROM history WHERE subject = 'tenant' AND seq > ?1 \
             ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn get(&self, bucket: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt =
            conn.prepare_cached("SELECT value, version FROM kv WHERE bucket = ?1 AND key = ?2")?;
        Ok(stmt
            .query_row(params![bucket, key], |r| {
                Ok(Versioned {
                    value: r.get(0)?,
                    version: r.get(1)?,
                })
            })
            .optional()?)
    }

    fn version(&self, bucket: &str, key: &str) -> Result<Option<i64>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt =
            conn.prepare_cached("SELECT version FROM kv WHERE bucket = ?1 AND key = ?2")?;
        Ok(stmt
            .query_row(params![bucket, key], |r| r.get(0))
            .optional()?)
    }

    /// In one read transaction: SQLite takes and drops its file locks once
    /// (two `fcntl` calls) for all of them.
    fn versions(&self, bucket: &str, keys: &[&str]) -> Result<Vec<Option<i64>>, StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction()?;
        let found = {
            let mut stmt =
                tx.prepare_cached("SELECT version FROM kv WHERE bucket = ?1 AND key = ?2")?;
            keys.iter()
                .map(|key| {
                    stmt.query_row(params![bucket, key], |r| r.get(0))
                        .optional()
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        tx.commit()?;
        Ok(found)
    }

    fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let (bucket, key, value) = (bucket.to_owned(), key.to_owned(), value.to_vec());
        self.transact(move |tx| {
            tx.prepare_cached(
                "INSERT INTO kv (bucket, key, value, version) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT(bucket, key) DO UPDATE SET value = excluded.value, version = kv.version + 1",
            )?
            .execute(params![bucket, key, value])?;
            Ok(Step::Commit(()))
        })
    }

    fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.transact(move |tx| {
            tx.prepare_cached("DELETE FROM kv WHERE bucket = ?1 AND key = ?2")?
                .execute(params![bucket, key])?;
            Ok(Step::Commit(()))
        })
    }

    fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT key FROM kv WHERE bucket = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
        )?;
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let keys = stmt
            .query_map(params![bucket, cursor.unwrap_or(""), fetch], |r| {
                r.get::<_, String>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KeyPage::of(keys, limit))
    }

    fn swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<i64>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let expected = expected.map_or(Expect::Absent, Expect::Version);
        let (bucket, key, value) = (bucket.to_owned(), key.to_owned(), value.to_vec());
        let written = self.transact(move |tx| {
            write::write_key(tx, &bucket, &key, expected, Some(&value), None)
        })?;
        Ok(written.is_some())
    }

    fn register_client(
        &self,
        client_id: &str,
        tenant_id: &str,
        record: &[u8],
        max: u32,
    ) -> Result<super::ClientRegistration, StoreError> {
        let (client_id, tenant_id) = (client_id.to_owned(), tenant_id.to_owned());
        let record = record.to_vec();
        self.transact(move |tx| write::register_client(tx, &client_id, &tenant_id, &record, max))
    }

    fn write_recorded(
        &self,
        bucket: &str,
        key: &str,
        expected: Expect,
        value: Option<&[u8]>,
        change: &Change,
    ) -> Result<Option<i64>, StoreError> {
        let write = RecordedWrite {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            expected,
            value: value.map(<[u8]>::to_vec),
            change: change.clone(),
        };
        self.transact(move |tx| write.step(tx))
    }

    fn submit_recorded(
        &self,
        write: Box<RecordedWrite>,
        more: bool,
    ) -> Result<Submitted, Box<RecordedWrite>> {
        let (submitted, applied, answer) = Submitted::channels();
        let job = Job::new(move |tx| write.step(tx), more, Some(applied), answer);
        match self.writer.submit_async(job) {
            Ok(()) => Ok(submitted),
            Err(e) => Ok(Submitted::failed(e)),
        }
    }
}

/// The statements of the shared write steps, in SQLite's dialect. An
/// `IMMEDIATE` transaction holds the one write lock from its start, so the
/// steps need no locks of their own.
impl Tx for Sql<'_> {
    fn lock_tenants(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn lock_clients(&mut self, _: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn tenant(&mut self, id: &str) -> Result<Option<TenantRow>, StoreError> {
        Ok(self
            .prepare_cached(TENANT_BY_ID)?
            .query_row([id], tenant_from)
            .optional()?)
    }

    fn tenant_named(&mut self, id: &str, name: &str) -> Result<Option<TenantRow>, StoreError> {
        Ok(self
            .prepare_cached(tenant_select!("WHERE id = ?1 OR name_key = lower(?2)"))?
            .query_row(params![id, name], tenant_from)
            .optional()?)
    }

    fn insert_seeded(
        &mut self,
        id: &str,
        name: &str,
        tier: &str,
        now: &str,
    ) -> Result<bool, StoreError> {
        let n = self
            .prepare_cached(
                "INSERT INTO tenants (id, name, name_key, tier, enabled, created_at, updated_at, \
                 origin, version, doc) VALUES (?1, ?2, lower(?2), ?3, 1, ?4, ?4, 'settings', 1, '{}')
                 ON CONFLICT(id) DO NOTHING",
            )?
            .execute(params![id, name, tier, now])?;
        Ok(n == 1)
    }

    fn reseed(&mut self, id: &str, name: &str, tier: &str) -> Result<bool, StoreError> {
        let n = self
            .prepare_cached(
                "UPDATE tenants SET name = ?2, tier = ?3, origin = 'settings' \
                 WHERE id = ?1 AND (name <> ?2 OR tier <> ?3 OR origin <> 'settings')",
            )?
            .execute(params![id, name, tier])?;
        Ok(n == 1)
    }

    fn insert_tenant(&mut self, row: &TenantRow, doc: &str) -> Result<(), StoreError> {
        self.prepare_cached(
            "INSERT INTO tenants (id, name, name_key, tier, enabled, created_at, \
             updated_at, origin, deleted_at, version, doc) \
             VALUES (?1, ?2, lower(?2), ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9)",
        )?
        .execute(params![
            row.id,
            row.name,
            row.tier,
            row.enabled,
            row.created_at,
            row.updated_at,
            row.origin.as_str(),
            row.deleted_at,
            doc
        ])?;
        Ok(())
    }

    fn update_tenant(
        &mut self,
        row: &TenantRow,
        doc: &str,
        version: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .prepare_cached(
                "UPDATE tenants SET tier = ?2, enabled = ?3, updated_at = ?4, \
                 deleted_at = ?5, doc = ?6, version = version + 1 \
                 WHERE id = ?1 AND version = ?7",
            )?
            .execute(params![
                row.id,
                row.tier,
                row.enabled,
                row.updated_at,
                row.deleted_at,
                doc,
                version
            ])?;
        Ok(n == 1)
    }

    fn delete_tenant(&mut self, id: &str) -> Result<bool, StoreError> {
        if self.execute("DELETE FROM tenants WHERE id = ?1", [id])? == 0 {
            return Ok(false);
        }
        self.execute("DELETE FROM tenant_dns WHERE tenant_id = ?1", [id])?;
        self.execute("DELETE FROM kv WHERE bucket = 'configs' AND key = ?1", [id])?;
        // Nothing of it is left for a tenant made again under its name: its
        // history (and so every version rollback could reach) and its clients.
        self.execute("DELETE FROM history WHERE tenant_id = ?1", [id])?;
        self.execute(
            "DELETE FROM kv WHERE bucket = ?1 AND instr(CAST(value AS TEXT), ?2) > 0",
            params![super::CLIENTS_BUCKET, super::client_marker(id)],
        )?;
        Ok(true)
    }

    fn dn_owner(&mut self, dn: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .prepare_cached("SELECT tenant_id FROM tenant_dns WHERE dn = ?1")?
            .query_row([dn], |r| r.get(0))
            .optional()?)
    }

    fn replace_dns(&mut self, tenant_id: &str, dns: &[String]) -> Result<(), StoreError> {
        self.prepare_cached("DELETE FROM tenant_dns WHERE tenant_id = ?1")?
            .execute([tenant_id])?;
        for dn in dns {
            self.prepare_cached(
                "INSERT OR IGNORE INTO tenant_dns (dn, tenant_id) VALUES (?1, ?2)",
            )?
            .execute(params![dn, tenant_id])?;
        }
        Ok(())
    }

    fn kv_version(&mut self, bucket: &str, key: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .prepare_cached("SELECT version FROM kv WHERE bucket = ?1 AND key = ?2")?
            .query_row(params![bucket, key], |r| r.get(0))
            .optional()?)
    }

    fn kv_current(
        &mut self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        Ok(self
            .prepare_cached("SELECT version, value FROM kv WHERE bucket = ?1 AND key = ?2")?
            .query_row(params![bucket, key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn kv_insert(
        &mut self,
        bucket: &str,
        key: &str,
        value: &[u8],
        version: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .prepare_cached(
                "INSERT INTO kv (bucket, key, value, version) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(bucket, key) DO NOTHING",
            )?
            .execute(params![bucket, key, value, version])?;
        Ok(n == 1)
    }

    fn kv_update(
        &mut self,
        bucket: &str,
        key: &str,
        value: &[u8],
        version: i64,
    ) -> Result<(), StoreError> {
        self.prepare_cached(
            "UPDATE kv SET value = ?3, version = ?4 WHERE bucket = ?1 AND key = ?2",
        )?
        .execute(params![bucket, key, value, version])?;
        Ok(())
    }

    fn kv_delete(&mut self, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.prepare_cached("DELETE FROM kv WHERE bucket = ?1 AND key = ?2")?
            .execute(params![bucket, key])?;
        Ok(())
    }

    fn clients_marked(&mut self, marker: &str) -> Result<i64, StoreError> {
        Ok(self
            .prepare_cached(
                "SELECT count(*) FROM kv WHERE bucket = ?1 AND instr(CAST(value AS TEXT), ?2) > 0",
            )?
            .query_row(params![super::CLIENTS_BUCKET, marker], |r| r.get(0))?)
    }

    fn record(
        &mut self,
        change: &Change,
        version: Option<i64>,
        after: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let fields = serde_json::to_string(&change.fields).expect("strings serialize");
        self.prepare_cached(
            "INSERT INTO history (tenant_id, tenant_name, at, principal, subject, action, \
             fields, version, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            change.tenant_id,
            change.tenant_name,
            change.at,
            change.principal,
            change.subject.as_str(),
            change.action,
            fields,
            version,
            change.before,
            after,
        ])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_store_keeps_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        super::super::testing::contract(&SqliteStore::open(dir.path()).unwrap());
    }

    #[test]
    fn clients_are_capped_per_tenant() {
        let dir = tempfile::tempdir().unwrap();
        super::super::testing::clients_are_capped_per_tenant(
            &SqliteStore::open(dir.path()).unwrap(),
        );
    }

    #[test]
    fn purging_removes_the_tenants_clients() {
        let dir = tempfile::tempdir().unwrap();
        super::super::testing::purge_removes_the_tenants_clients(
            &SqliteStore::open(dir.path()).unwrap(),
        );
    }

    #[test]
    fn a_reopened_store_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        super::super::testing::seeding_survives_reopen(|| SqliteStore::open(dir.path()).unwrap());
    }

    /// The purge sweep finds deleted tenants by its index, not by reading
    /// every tenant (which left their pages in the connection's cache).
    #[test]
    fn deleted_tenants_are_found_without_reading_every_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let conn = store.pool.get().unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {DELETED_TENANTS}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            plan,
            ["SCAN tenants USING INDEX tenants_deleted"],
            "{plan:?}"
        );
    }

    #[test]
    fn concurrent_config_writes_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = SqliteStore::open(dir.path()).unwrap();
        let b = SqliteStore::open(dir.path()).unwrap();
        super::super::testing::no_lost_writes(&a, &b);
    }
}
