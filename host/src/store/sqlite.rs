//! The embedded store: one SQLite file in the data directory, WAL journal,
//! synchronous commits (a write answered 200 survives a crash of the process).

use super::{KeyPage, Store, StoreError, TenantRow, Versioned};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{OptionalExtension, params};
use std::path::Path;
use std::time::Duration;

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    pool: r2d2::Pool<SqliteConnectionManager>,
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
";

impl SqliteStore {
    /// Opens (creating if needed) `gateway.db` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Open(format!("{}: {e}", dir.display())))?;
        let manager = SqliteConnectionManager::file(dir.join("gateway.db")).with_init(|c| {
            c.busy_timeout(Duration::from_secs(5))?;
            c.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
            )
        });
        let pool = r2d2::Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(5))
            .build(manager)?;
        pool.get()?.execute_batch(SCHEMA)?;
        Ok(Self { pool })
    }
}

impl Store for SqliteStore {
    fn seed_tenant(
        &self,
        id: &str,
        name: &str,
        tier: &str,
        now: &str,
    ) -> Result<TenantRow, StoreError> {
        let conn = self.pool.get()?;
        let row = conn.query_row(
            "INSERT INTO tenants (id, name, name_key, tier, enabled, created_at, updated_at)
             VALUES (?1, ?2, lower(?2), ?3, 1, ?4, ?4)
             ON CONFLICT(id) DO UPDATE SET name = excluded.name, tier = excluded.tier
             RETURNING id, name, tier, enabled, created_at",
            params![id, name, tier, now],
            |r| {
                Ok(TenantRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    tier: r.get(2)?,
                    enabled: r.get(3)?,
                    created_at: r.get(4)?,
                })
            },
        )?;
        Ok(row)
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

    fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let conn = self.pool.get()?;
        conn.prepare_cached(
            "INSERT INTO kv (bucket, key, value, version) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT(bucket, key) DO UPDATE SET value = excluded.value, version = kv.version + 1",
        )?
        .execute(params![bucket, key, value])?;
        Ok(())
    }

    fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        let conn = self.pool.get()?;
        conn.prepare_cached("DELETE FROM kv WHERE bucket = ?1 AND key = ?2")?
            .execute(params![bucket, key])?;
        Ok(())
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
        let mut keys = stmt
            .query_map(params![bucket, cursor.unwrap_or(""), fetch], |r| {
                r.get::<_, String>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let cursor = if keys.len() > limit {
            keys.truncate(limit);
            keys.last().cloned()
        } else {
            None
        };
        Ok(KeyPage { keys, cursor })
    }

    fn swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<i64>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let conn = self.pool.get()?;
        let changed = match expected {
            None => conn
                .prepare_cached(
                    "INSERT INTO kv (bucket, key, value, version) VALUES (?1, ?2, ?3, 1)
                     ON CONFLICT(bucket, key) DO NOTHING",
                )?
                .execute(params![bucket, key, value])?,
            Some(version) => conn
                .prepare_cached(
                    "UPDATE kv SET value = ?3, version = version + 1
                     WHERE bucket = ?1 AND key = ?2 AND version = ?4",
                )?
                .execute(params![bucket, key, value, version])?,
        };
        Ok(changed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn swap_only_wins_against_the_version_it_read() {
        let (_d, s) = store();
        assert!(s.swap("b", "k", None, b"one").unwrap());
        assert!(!s.swap("b", "k", None, b"again").unwrap());
        let v = s.get("b", "k").unwrap().unwrap();
        assert_eq!((v.value.as_slice(), v.version), (&b"one"[..], 1));
        assert!(s.swap("b", "k", Some(1), b"two").unwrap());
        assert!(!s.swap("b", "k", Some(1), b"stale").unwrap());
        assert_eq!(s.get("b", "k").unwrap().unwrap().value, b"two");
    }

    #[test]
    fn set_delete_and_paged_listing() {
        let (_d, s) = store();
        for k in ["a", "b", "c"] {
            s.set("bucket", k, b"x").unwrap();
        }
        s.set("other", "z", b"x").unwrap();
        s.set("bucket", "a", b"y").unwrap();
        assert_eq!(s.get("bucket", "a").unwrap().unwrap().version, 2);
        let p = s.list_keys("bucket", None, 2).unwrap();
        assert_eq!(
            (p.keys.clone(), p.cursor.clone()),
            (vec!["a".to_owned(), "b".to_owned()], Some("b".to_owned()))
        );
        let p = s.list_keys("bucket", p.cursor.as_deref(), 2).unwrap();
        assert_eq!((p.keys, p.cursor), (vec!["c".to_owned()], None));
        s.delete("bucket", "b").unwrap();
        assert!(s.get("bucket", "b").unwrap().is_none());
    }

    #[test]
    fn seeding_keeps_creation_time_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SqliteStore::open(dir.path()).unwrap();
            let row = s
                .seed_tenant("id-1", "Acme", "Pro", "2025-01-01T00:00:00Z")
                .unwrap();
            assert_eq!(row.created_at, "2025-01-01T00:00:00Z");
            s.set("configs", "id-1", b"{}").unwrap();
        }
        let s = SqliteStore::open(dir.path()).unwrap();
        let row = s
            .seed_tenant("id-1", "ACME", "Enterprise", "2026-01-01T00:00:00Z")
            .unwrap();
        assert_eq!(
            (
                row.created_at.as_str(),
                row.tier.as_str(),
                row.name.as_str()
            ),
            ("2025-01-01T00:00:00Z", "Enterprise", "ACME")
        );
        assert_eq!(s.get("configs", "id-1").unwrap().unwrap().value, b"{}");
    }
}
