//! `tenant-gateway spin-seed`: fills the `tenants` key-value store of the Spin
//! application in `spin.toml` from a settings file, so the config API serves
//! on Spin the same tenants, under the same UUIDs, as the gateway does.
//!
//! Spin gives a component its key-value stores empty, and `spin up --key-value`
//! reaches only the `default` store. This writes where Spin reads: the store
//! the runtime config file names for the label (`[key_value_store.tenants]`,
//! `type = "spin"`, a SQLite file, its relative path resolved against the
//! runtime config file's directory as Spin resolves it), in Spin's own table
//! and layout (created as Spin creates it when the file is new). Each tenant
//! gets one record under its UUID and one under its lower-case name, the record
//! the gateway publishes to the same component (no secrets). The store then
//! holds exactly the settings' tenants: records of tenants no longer in the
//! settings are removed; a tenant seeded before keeps its `created_at`.
//! Everything is written in one transaction, so a running Spin sees the old
//! set or the new one, never half.

use crate::config::Settings;
use crate::tenancy::tenant_id;
use anyhow::{Context, bail};
use rusqlite::{OptionalExtension, params};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Spin's SQLite key-value table, as Spin's `spin` store type creates it.
const SPIN_TABLE: &str = "CREATE TABLE IF NOT EXISTS spin_key_value (
    store TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (store, key)
)";

/// What a seed wrote.
#[derive(Debug)]
pub struct Seeded {
    /// The SQLite file written.
    pub path: PathBuf,
    /// Tenants written: (name, UUID).
    pub tenants: Vec<(String, String)>,
    /// Records removed (keys of tenants no longer in the settings).
    pub removed: usize,
}

/// The SQLite file the runtime config gives the key-value store `label`.
pub fn store_path(runtime_config: &Path, label: &str) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(runtime_config)
        .with_context(|| format!("reading {}", runtime_config.display()))?;
    let doc: toml::Table = toml::from_str(&text)
        .with_context(|| format!("{} is not valid TOML", runtime_config.display()))?;
    let Some(store) = doc
        .get("key_value_store")
        .and_then(|t| t.get(label))
        .and_then(|t| t.as_table())
    else {
        bail!(
            "{} has no [key_value_store.{label}] table: the config API's `{label}` store \
             must be declared there",
            runtime_config.display()
        );
    };
    match store.get("type").and_then(|t| t.as_str()) {
        Some("spin") => {}
        other => bail!(
            "[key_value_store.{label}] has type {}: only Spin's own SQLite store \
             (type = \"spin\") can be seeded; for another backend write the records \
             with its own tools (the record format is in spin.toml)",
            other.map_or_else(|| "none".to_owned(), |t| format!("\"{t}\""))
        ),
    }
    let Some(path) = store.get("path").and_then(|p| p.as_str()) else {
        bail!(
            "[key_value_store.{label}] has no `path`: Spin keeps such a store in memory, \
             where nothing can seed it"
        );
    };
    let path = Path::new(path);
    Ok(if path.is_absolute() {
        path.to_owned()
    } else {
        runtime_config.parent().unwrap_or(Path::new("")).join(path)
    })
}

/// Writes the settings' tenants into the Spin store `label` of `runtime_config`.
pub fn seed(settings: &Settings, runtime_config: &Path, label: &str) -> anyhow::Result<Seeded> {
    let path = store_path(runtime_config, label)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut db =
        rusqlite::Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
    // Spin may be serving from the file: wait for its writes rather than fail.
    db.busy_timeout(std::time::Duration::from_secs(10))?;
    db.execute(SPIN_TABLE, [])?;
    let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let now = crate::now_rfc3339();
    let mut records = BTreeMap::new();
    let mut tenants = Vec::new();
    for t in &settings.tenants {
        let id = tenant_id(&t.name).to_string();
        let before: Option<Vec<u8>> = tx
            .query_row(
                "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                params![label, id],
                |row| row.get(0),
            )
            .optional()?;
        let created_at = before
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("created_at")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| now.clone());
        let record = serde_json::to_vec(&serde_json::json!({
            "id": id,
            "name": t.name.as_str(),
            "tier": t.tier.as_str(),
            "enabled": true,
            "created_at": created_at,
        }))?;
        records.insert(t.name.key(), record.clone());
        records.insert(id.clone(), record);
        tenants.push((t.name.as_str().to_owned(), id));
    }
    let stale: Vec<String> = {
        let mut q = tx.prepare("SELECT key FROM spin_key_value WHERE store = ?1")?;
        q.query_map([label], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|k| !records.contains_key(k))
            .collect()
    };
    for key in &stale {
        tx.execute(
            "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2",
            params![label, key],
        )?;
    }
    for (key, value) in &records {
        tx.execute(
            "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            params![label, key, value],
        )?;
    }
    tx.commit()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Seeded {
        path,
        tenants,
        removed: stale.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(tenants: &[(&str, &str)]) -> Settings {
        let entries: Vec<String> = tenants
            .iter()
            .map(|(n, _)| format!(r#""{n}": {{"ConnectionStrings": {{"EdFi_Admin": "Database=A_{n}; Password=pw-{n}"}}}}"#))
            .collect();
        let tiers: Vec<String> = tenants
            .iter()
            .map(|(n, t)| format!(r#""{n}": {{"Tier": "{t}"}}"#))
            .collect();
        Settings::parse(&format!(
            r#"{{"AppSettings": {{"MultiTenancy": true}}, "Tenants": {{{}}},
                "TenantGateway": {{"Tenants": {{{}}}}},
                "SwaggerSettings": {{"EnableSwagger": false}}}}"#,
            entries.join(","),
            tiers.join(",")
        ))
        .unwrap()
    }

    fn rows(path: &Path) -> BTreeMap<(String, String), serde_json::Value> {
        let db = rusqlite::Connection::open(path).unwrap();
        let mut q = db
            .prepare("SELECT store, key, value FROM spin_key_value")
            .unwrap();
        q.query_map([], |r| {
            let v: Vec<u8> = r.get(2)?;
            Ok(((r.get(0)?, r.get(1)?), serde_json::from_slice(&v).unwrap()))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    #[test]
    fn seeds_exactly_the_settings_tenants_where_spin_reads() {
        let dir = tempfile::tempdir().unwrap();
        let rc = dir.path().join("rc.toml");
        std::fs::write(
            &rc,
            "[key_value_store.tenants]\ntype = \"spin\"\npath = \"state/t.db\"\n",
        )
        .unwrap();
        let out = seed(
            &settings(&[("Tenant1", "Enterprise"), ("Old", "Basic")]),
            &rc,
            "tenants",
        )
        .unwrap();
        assert_eq!(out.path, dir.path().join("state/t.db"));
        let first = rows(&out.path);
        assert_eq!(first.len(), 4, "{first:?}");
        let id = tenant_id(&crate::config::TenantName::parse("Tenant1").unwrap()).to_string();
        let by_name = &first[&("tenants".to_owned(), "tenant1".to_owned())];
        assert_eq!(by_name, &first[&("tenants".to_owned(), id.clone())]);
        assert_eq!(by_name["name"], "Tenant1");
        assert_eq!(by_name["tier"], "Enterprise");
        assert_eq!(by_name["id"], id.as_str());
        assert!(!by_name.to_string().contains("pw-"), "{by_name}");

        // Another store's rows are left alone; a tenant gone from the settings
        // goes; one that stays keeps its creation time.
        let db = rusqlite::Connection::open(&out.path).unwrap();
        db.execute(
            "INSERT INTO spin_key_value VALUES ('configs', 'k', x'7b7d')",
            [],
        )
        .unwrap();
        db.execute(
            "UPDATE spin_key_value SET value = ?1 WHERE key = ?2",
            params![
                serde_json::to_vec(&serde_json::json!({"created_at": "2020-01-01T00:00:00Z"}))
                    .unwrap(),
                id
            ],
        )
        .unwrap();
        let out = seed(&settings(&[("Tenant1", "Pro")]), &rc, "tenants").unwrap();
        assert_eq!(out.removed, 2);
        let second = rows(&out.path);
        assert_eq!(second.len(), 3, "{second:?}");
        assert!(second.contains_key(&("configs".to_owned(), "k".to_owned())));
        let t = &second[&("tenants".to_owned(), "tenant1".to_owned())];
        assert_eq!(t["tier"], "Pro");
        assert_eq!(t["created_at"], "2020-01-01T00:00:00Z");
    }

    #[test]
    fn refuses_stores_it_cannot_seed() {
        let dir = tempfile::tempdir().unwrap();
        let rc = dir.path().join("rc.toml");
        for (text, says) in [
            ("", "no [key_value_store.tenants]"),
            (
                "[key_value_store.tenants]\ntype = \"redis\"\nurl = \"redis://x\"\n",
                "type \"redis\"",
            ),
            ("[key_value_store.tenants]\ntype = \"spin\"\n", "no `path`"),
            ("not toml [", "not valid TOML"),
        ] {
            std::fs::write(&rc, text).unwrap();
            let e = seed(&settings(&[("A", "Basic")]), &rc, "tenants").unwrap_err();
            assert!(format!("{e:#}").contains(says), "{text}: {e:#}");
        }
    }
}
