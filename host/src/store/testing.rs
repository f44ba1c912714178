//! What every [`Store`] must do, checked against each backend by its tests, and
//! a throw-away PostgreSQL schema for tests that need the shared store.

use super::{Change, Subject};
#[cfg(test)]
use super::{Expect, Store, TenantDoc, TenantRow, TenantWrite};

/// Where tests find PostgreSQL: `TG_TEST_POSTGRES` (`key=value` form), by default
/// the local server with trust authentication.
pub fn postgres_base() -> String {
    std::env::var("TG_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

/// A schema of its own in the test database, dropped with everything in it when
/// the value is dropped, so tests running at once never see each other's rows.
pub struct TestSchema {
    name: String,
    connection: String,
}

/// A plain connection to the test database, outside any test schema.
fn admin() -> Result<postgres::Client, postgres::Error> {
    postgres::Client::connect(&postgres_base(), postgres::NoTls)
}

impl TestSchema {
    /// Creates the schema; panics with a hint when PostgreSQL is not reachable.
    pub fn new() -> Self {
        let base = postgres_base();
        let mut admin = admin().unwrap_or_else(|e| {
            panic!(
                "the tests need PostgreSQL at `{base}` (set TG_TEST_POSTGRES to another \
                 server): {e}"
            )
        });
        let name = format!("tg_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .expect("creating a test schema");
        // The application name marks this test's connections (see
        // `drop_connections`).
        let connection = format!("{base} application_name={name} options='-c search_path={name}'");
        Self { name, connection }
    }

    /// How many of this schema's connections are encrypted, and how many not.
    pub fn connections_by_tls(&self) -> (i64, i64) {
        let row = admin()
            .expect("connecting to the test database")
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
                 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = $1",
                &[&self.name],
            )
            .expect("reading pg_stat_ssl");
        (row.get(0), row.get(1))
    }

    /// The server's own certificate file, when it offers TLS.
    pub fn server_certificate() -> Option<std::path::PathBuf> {
        let mut admin = admin().ok()?;
        let on: String = admin.query_one("SHOW ssl", &[]).ok()?.get(0);
        let file: String = admin.query_one("SHOW ssl_cert_file", &[]).ok()?.get(0);
        (on == "on").then(|| file.into())
    }

    /// Has the server end every connection made with [`Self::connection`], as a
    /// restart would; returns how many there were.
    pub fn drop_connections(&self) -> usize {
        let rows = admin()
            .expect("connecting to the test database")
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&self.name],
            )
            .expect("ending connections");
        // Let the ended backends go.
        std::thread::sleep(std::time::Duration::from_millis(200));
        rows.len()
    }

    /// A connection string whose tables live in this schema.
    pub fn connection(&self) -> &str {
        &self.connection
    }
}

impl Default for TestSchema {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        if let Ok(mut admin) = admin() {
            let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// A configuration change record for `tenant` (tests and the store benchmark).
pub fn config_change(tenant: &str) -> Change {
    Change {
        tenant_id: tenant.into(),
        tenant_name: tenant.into(),
        at: "2025-01-01T00:00:00Z".into(),
        principal: "test".into(),
        subject: Subject::Config,
        action: "updated".into(),
        fields: vec!["custom_settings".into()],
        before: None,
    }
}

#[cfg(test)]
fn tenant_change(row: &TenantRow, action: &str) -> Change {
    Change {
        subject: Subject::Tenant,
        action: action.into(),
        fields: vec!["options".into()],
        ..config_change(&row.id)
    }
}

/// The names of every tenant in `s`, deleted ones included, in name order.
#[cfg(test)]
fn tenant_names(s: &dyn Store) -> Vec<String> {
    s.tenant_rows()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect()
}

/// Key-value, compare-and-swap, tenant writes, DNs, history and purging.
#[cfg(test)]
pub fn contract(s: &dyn Store) {
    // Compare-and-swap only wins against the version it read.
    assert!(s.swap("b", "k", None, b"one").unwrap());
    assert!(!s.swap("b", "k", None, b"again").unwrap());
    let v = s.get("b", "k").unwrap().unwrap();
    assert_eq!((v.value.as_slice(), v.version), (&b"one"[..], 1));
    assert!(s.swap("b", "k", Some(1), b"two").unwrap());
    assert!(!s.swap("b", "k", Some(1), b"stale").unwrap());
    assert_eq!(s.get("b", "k").unwrap().unwrap().value, b"two");

    // Set, delete, and paged listing in byte order, per bucket.
    for k in ["a", "B", "b", "c"] {
        s.set("bucket", k, b"x").unwrap();
    }
    s.set("other", "z", b"x").unwrap();
    s.set("bucket", "a", b"y").unwrap();
    assert_eq!(s.get("bucket", "a").unwrap().unwrap().version, 2);
    let p = s.list_keys("bucket", None, 3).unwrap();
    assert_eq!(
        (p.keys.as_slice(), p.cursor.as_deref()),
        (&["B".to_owned(), "a".into(), "b".into()][..], Some("b"))
    );
    let p = s.list_keys("bucket", p.cursor.as_deref(), 3).unwrap();
    assert_eq!((p.keys, p.cursor), (vec!["c".to_owned()], None));
    s.delete("bucket", "b").unwrap();
    assert!(s.get("bucket", "b").unwrap().is_none());
    // Versions read together, in the order asked, none for a missing key or
    // another bucket's.
    assert_eq!(
        s.versions("bucket", &["a", "b", "c", "z", "a"]).unwrap(),
        vec![Some(2), None, Some(1), None, Some(2)]
    );
    assert_eq!(
        s.versions("bucket", &[]).unwrap(),
        Vec::<Option<i64>>::new()
    );

    // Tenants: create, refuse a duplicate name (any case), update at the version
    // read only, DNs unique across tenants.
    let seq = s.change_seq().unwrap();
    let acme = s
        .seed_tenant("id-1", "Acme", "Pro", "2025-01-01T00:00:00Z")
        .unwrap();
    assert_ne!(s.change_seq().unwrap(), seq, "a new tenant is a change");
    let other = TenantRow {
        id: "id-2".into(),
        name: "ACME".into(),
        tier: "Basic".into(),
        enabled: true,
        origin: super::Origin::Api,
        created_at: "2025-01-02T00:00:00Z".into(),
        updated_at: "2025-01-02T00:00:00Z".into(),
        deleted_at: None,
        version: 1,
        doc: TenantDoc::default(),
    };
    let w = s
        .write_tenant(&other, None, &[], &tenant_change(&other, "created"))
        .unwrap();
    assert!(
        matches!(w, TenantWrite::Exists(ref t) if t.id == "id-1"),
        "{w:?}"
    );
    let other = TenantRow {
        name: "Globex".into(),
        ..other
    };
    let dn = "CN=Globex CA".to_owned();
    let TenantWrite::Written(globex) = s
        .write_tenant(
            &other,
            None,
            std::slice::from_ref(&dn),
            &tenant_change(&other, "created"),
        )
        .unwrap()
    else {
        panic!("not written");
    };
    assert_eq!(s.tenant_by_dn(&dn).unwrap().as_deref(), Some("id-2"));
    let mut changed = acme.clone();
    changed
        .doc
        .options
        .insert("ReplicationFactor".into(), "3".into());
    let taken = s
        .write_tenant(
            &changed,
            Some(acme.version),
            std::slice::from_ref(&dn),
            &tenant_change(&changed, "updated"),
        )
        .unwrap();
    assert!(
        matches!(taken, TenantWrite::DnTaken { ref tenant, .. } if tenant == "Globex"),
        "{taken:?}"
    );
    let TenantWrite::Written(updated) = s
        .write_tenant(
            &changed,
            Some(acme.version),
            &[],
            &tenant_change(&changed, "updated"),
        )
        .unwrap()
    else {
        panic!("not written");
    };
    assert_eq!(updated.version, acme.version + 1);
    assert_eq!(updated.doc.options["ReplicationFactor"], "3");
    let stale = s
        .write_tenant(
            &changed,
            Some(acme.version),
            &[],
            &tenant_change(&changed, "updated"),
        )
        .unwrap();
    assert_eq!(stale, TenantWrite::Stale);
    assert_eq!(tenant_names(s), ["Acme", "Globex"]);

    // Recorded configuration writes: versions, expectations, history, config_at.
    let c = config_change("id-2");
    assert_eq!(
        s.write_recorded("configs", "id-2", Expect::Absent, Some(b"{\"a\":1}"), &c)
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        s.write_recorded("configs", "id-2", Expect::Absent, Some(b"{}"), &c)
            .unwrap(),
        None
    );
    assert_eq!(
        s.write_recorded("configs", "id-2", Expect::Version(7), Some(b"{}"), &c)
            .unwrap(),
        None
    );
    assert_eq!(
        s.write_recorded(
            "configs",
            "id-2",
            Expect::Version(1),
            Some(b"{\"a\":2}"),
            &c
        )
        .unwrap(),
        Some(2)
    );
    assert_eq!(s.version("configs", "id-2").unwrap(), Some(2));
    assert_eq!(s.version("configs", "id-9").unwrap(), None);
    assert_eq!(
        s.config_at("id-2", 1).unwrap().as_deref(),
        Some(&b"{\"a\":1}"[..])
    );
    let history = s.history("id-2", 10).unwrap();
    let actions: Vec<(&str, Option<i64>)> = history
        .iter()
        .map(|h| (h.change.action.as_str(), h.version))
        .collect();
    assert_eq!(
        actions,
        [
            ("updated", Some(2)),
            ("updated", Some(1)),
            ("created", None)
        ]
    );
    assert!(history.windows(2).all(|w| w[0].seq > w[1].seq));
    assert_eq!(s.history("id-2", 1).unwrap().len(), 1);

    // Expect::Same: the version and the value. A key deleted and written
    // again counts its versions from 1 again: only the value tells the new
    // version 2 from the old one.
    let write = |expected, value: Option<&[u8]>| {
        s.write_recorded("configs", "id-2", expected, value, &c)
            .unwrap()
    };
    let old = super::Versioned {
        value: b"{\"a\":2}".to_vec(),
        version: 2,
    };
    let unseen = Expect::Same {
        version: 2,
        digest: Expect::digest(b"{\"a\":9}"),
    };
    assert_eq!(write(unseen, Some(b"{\"a\":3}")), None);
    assert_eq!(write(Expect::same(&old), Some(b"{\"a\":3}")), Some(3));
    assert_eq!(write(Expect::same(&old), Some(b"{\"a\":4}")), None);
    assert_eq!(write(Expect::Any, None), Some(4));
    assert_eq!(write(Expect::Absent, Some(b"{\"b\":1}")), Some(1));
    assert_eq!(write(Expect::Version(1), Some(b"{\"b\":2}")), Some(2));
    assert_eq!(write(Expect::same(&old), Some(b"{\"a\":3}")), None);
    let now = s.get("configs", "id-2").unwrap().unwrap();
    assert_eq!((now.value.as_slice(), now.version), (&b"{\"b\":2}"[..], 2));
    assert_eq!(write(Expect::same(&now), Some(b"{\"b\":3}")), Some(3));
    assert_eq!(write(Expect::same(&now), None), None);

    // Purging removes the tenant, its DNs and its configuration.
    assert!(
        s.purge_tenant(&globex.id, &tenant_change(&globex, "purged"))
            .unwrap()
    );
    assert!(
        !s.purge_tenant(&globex.id, &tenant_change(&globex, "purged"))
            .unwrap()
    );
    assert!(s.tenant_row("id-2").unwrap().is_none());
    assert!(s.tenant_by_dn(&dn).unwrap().is_none());
    assert!(s.get("configs", "id-2").unwrap().is_none());
    // ...and its history but for the purge itself, so no version of it is
    // reachable by a tenant made again under its name.
    let left = s.history("id-2", 10).unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].change.action, "purged");
    assert!(s.config_at("id-2", 1).unwrap().is_none());

    // The tenant changes since `seq`, in order, configuration writes left
    // out, the purge (whose tenant's own records are gone) in.
    let changes = s.tenant_changes(seq, 100).unwrap();
    let ids: Vec<&str> = changes.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.first(), Some(&"id-1"), "{changes:?}");
    assert_eq!(ids.last(), Some(&"id-2"), "{changes:?}");
    assert!(changes.windows(2).all(|w| w[0].0 < w[1].0), "{changes:?}");
    let last = changes.last().unwrap().0;
    assert_eq!(s.change_seq().unwrap(), last);
    assert_eq!(s.tenant_changes(seq, 1).unwrap(), changes[..1]);
    assert!(s.tenant_changes(last, 100).unwrap().is_empty());
    s.write_recorded(
        "configs",
        "id-1",
        Expect::Any,
        Some(b"{}"),
        &config_change("id-1"),
    )
    .unwrap();
    assert_eq!(
        s.change_seq().unwrap(),
        last,
        "a configuration write is no tenant change"
    );
    assert!(s.tenant_changes(last, 100).unwrap().is_empty());
    // Only deleted tenants are listed as awaiting their purge.
    assert!(s.deleted_tenant_rows().unwrap().is_empty());
    let gone = TenantRow {
        id: "id-3".into(),
        name: "Initech".into(),
        deleted_at: Some("2025-01-03T00:00:00Z".into()),
        ..other.clone()
    };
    assert!(matches!(
        s.write_tenant(&gone, None, &[], &tenant_change(&gone, "created"))
            .unwrap(),
        TenantWrite::Written(_)
    ));
    let deleted: Vec<String> = s
        .deleted_tenant_rows()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(deleted, ["Initech"]);
    assert!(tenant_names(s).contains(&"Acme".to_owned()));
}

/// Client registration: once per id, at most `max` per tenant, counted per
/// tenant.
#[cfg(test)]
pub fn clients_are_capped_per_tenant<S: Store>(s: &S) {
    use super::ClientRegistration as R;
    let record = |tenant: &str| format!(r#"{{"tenant_id":"{tenant}","display_name":"x"}}"#);
    let a = record("id-a");
    assert_eq!(
        s.register_client("a-1", "id-a", a.as_bytes(), 2).unwrap(),
        R::Registered
    );
    assert_eq!(
        s.register_client("a-1", "id-a", a.as_bytes(), 2).unwrap(),
        R::Taken
    );
    assert_eq!(
        s.register_client("a-2", "id-a", a.as_bytes(), 2).unwrap(),
        R::Registered
    );
    assert_eq!(
        s.register_client("a-3", "id-a", a.as_bytes(), 2).unwrap(),
        R::Full
    );
    let b = record("id-b");
    assert_eq!(
        s.register_client("b-1", "id-b", b.as_bytes(), 2).unwrap(),
        R::Registered
    );
    assert!(s.get(super::CLIENTS_BUCKET, "a-3").unwrap().is_none());
}

/// Purging a tenant deletes its registered clients and no one else's.
#[cfg(test)]
pub fn purge_removes_the_tenants_clients<S: Store>(s: &S) {
    let now = "2025-01-01T00:00:00Z";
    let a = s.seed_tenant("id-a", "A", "Basic", now).unwrap();
    s.seed_tenant("id-b", "B", "Basic", now).unwrap();
    let record = |tenant: &str, name: &str| {
        format!(
            r#"{{"tenant_id":"{tenant}","generation":1,"display_name":"{name}","secret_hash":"x","created_at":"{now}"}}"#
        )
    };
    s.set(
        super::CLIENTS_BUCKET,
        "a-1",
        record("id-a", "one").as_bytes(),
    )
    .unwrap();
    s.set(
        super::CLIENTS_BUCKET,
        "a-2",
        record("id-a", "two").as_bytes(),
    )
    .unwrap();
    // A name that quotes the other tenant's member is still B's client.
    let tricky = record("id-b", r#"\"tenant_id\":\"id-a\""#);
    s.set(super::CLIENTS_BUCKET, "b-1", tricky.as_bytes())
        .unwrap();
    assert!(s.purge_tenant(&a.id, &tenant_change(&a, "purged")).unwrap());
    assert!(s.get(super::CLIENTS_BUCKET, "a-1").unwrap().is_none());
    assert!(s.get(super::CLIENTS_BUCKET, "a-2").unwrap().is_none());
    assert!(s.get(super::CLIENTS_BUCKET, "b-1").unwrap().is_some());
}

/// Seeding keeps a tenant's creation time and the data survives reopening.
#[cfg(test)]
pub fn seeding_survives_reopen<S: Store>(open: impl Fn() -> S) {
    {
        let s = open();
        let row = s
            .seed_tenant("id-1", "Acme", "Pro", "2025-01-01T00:00:00Z")
            .unwrap();
        assert_eq!(row.created_at, "2025-01-01T00:00:00Z");
        s.set("configs", "id-1", b"{}").unwrap();
    }
    let s = open();
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
    // Seeded together: the same as one by one, rows in the order given, the
    // known tenant refreshed, the new ones created now (and recorded once).
    let rows = s
        .seed_tenants(
            &[
                ("id-2", "Beta", "Basic"),
                ("id-1", "Acme", "Pro"),
                ("id-3", "Gamma", "Enterprise"),
            ],
            "2027-01-01T00:00:00Z",
        )
        .unwrap();
    let seen: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.id.as_str(),
                r.name.as_str(),
                r.tier.as_str(),
                r.created_at.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("id-2", "Beta", "Basic", "2027-01-01T00:00:00Z"),
            ("id-1", "Acme", "Pro", "2025-01-01T00:00:00Z"),
            ("id-3", "Gamma", "Enterprise", "2027-01-01T00:00:00Z"),
        ]
    );
    drop(s);
    let s = open();
    assert_eq!(tenant_names(&s), ["Acme", "Beta", "Gamma"]);
    let again = s
        .seed_tenants(&[("id-3", "Gamma", "Enterprise")], "2028-01-01T00:00:00Z")
        .unwrap();
    assert_eq!(again[0].created_at, "2027-01-01T00:00:00Z");
}

/// Read-modify-write loops on one key from two stores (or two handles of one)
/// at once: every increment lands.
#[cfg(test)]
pub fn no_lost_writes(a: &dyn Store, b: &dyn Store) {
    const EACH: usize = 25;
    std::thread::scope(|scope| {
        for store in [a, b, a, b] {
            scope.spawn(move || {
                let mut done = 0;
                while done < EACH {
                    let current = store.get("configs", "t").unwrap();
                    let (n, expected) = match &current {
                        Some(v) => (
                            std::str::from_utf8(&v.value)
                                .unwrap()
                                .parse::<usize>()
                                .unwrap(),
                            Expect::Version(v.version),
                        ),
                        None => (0, Expect::Absent),
                    };
                    let next = (n + 1).to_string();
                    let written = store
                        .write_recorded(
                            "configs",
                            "t",
                            expected,
                            Some(next.as_bytes()),
                            &config_change("t"),
                        )
                        .unwrap();
                    if written.is_some() {
                        done += 1;
                    }
                }
            });
        }
    });
    let v = a.get("configs", "t").unwrap().unwrap();
    assert_eq!(
        std::str::from_utf8(&v.value).unwrap(),
        (4 * EACH).to_string()
    );
    assert_eq!(v.version, (4 * EACH) as i64);
}
