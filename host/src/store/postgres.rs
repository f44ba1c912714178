//! The shared store: PostgreSQL, for several gateway instances serving the same
//! tenants. The tables mirror the embedded store's. Every tenant change takes the
//! one row of `tenant_changes` first: that orders tenant writes (as SQLite's single
//! writer does), numbers them in commit order, and sends a `NOTIFY` on commit, so
//! the other instances rebuild their tenant directory at once instead of at their
//! next poll. Configuration writes lock only their own key.
//!
//! The tables live in the connection's current schema (`search_path`), so several
//! gateways, or test runs, can share one database under different schemas.
//!
//! Connections use TLS as libpq does: `sslmode=prefer` (the default) encrypts
//! when the server offers TLS, `require` insists, `disable` never. With a root
//! certificate the server must present a certificate that chains to it and names
//! the host (libpq's `verify-full`), and TLS is required; without one the
//! connection is encrypted but the server is not authenticated (libpq's
//! `prefer`/`require`), which the gateway logs as a warning.

use super::{
    Change, Expect, HistoryEntry, KeyPage, Origin, Store, StoreError, Subject, TenantDoc,
    TenantRow, TenantWrite, Versioned,
};
use postgres::config::SslMode;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row, Statement};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Statements prepared on one connection, by their text.
type Prepared = HashMap<&'static str, Statement>;

/// A pooled connection and the statements prepared on it: each statement is
/// parsed and planned once per connection, then every call is one round trip.
pub struct Conn {
    client: Client,
    prepared: Prepared,
}

/// Opens connections for the pool. A checked-out connection is not pinged (that
/// would double the round trips of a read): a connection the server dropped
/// fails its next use and is discarded, reads are retried once on a fresh one,
/// and writes ping before they begin.
struct Manager {
    config: postgres::Config,
    tls: MakeRustlsConnect,
}

/// A connection failure with its causes spelt out (the pool keeps only the
/// text of an error, and a driver error's own text omits its cause, e.g. which
/// certificate check failed).
#[derive(Debug)]
pub struct ConnectError(String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

impl From<postgres::Error> for ConnectError {
    fn from(e: postgres::Error) -> Self {
        Self(super::chain(&e))
    }
}

impl Conn {
    /// One round trip that the server answers only on a live connection.
    fn ping(&mut self) -> Result<(), postgres::Error> {
        self.client.simple_query("").map(|_| ())
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = ConnectError;

    fn connect(&self) -> Result<Conn, ConnectError> {
        Ok(Conn {
            client: self.config.connect(self.tls.clone())?,
            prepared: Prepared::new(),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), ConnectError> {
        Ok(conn.ping()?)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.is_closed()
    }
}

/// Runs statements by their text on a client or a transaction, preparing each
/// once per connection.
struct Run<'a, C> {
    client: &'a mut C,
    prepared: &'a mut Prepared,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<C: GenericClient> Run<'_, C> {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.prepared.insert(sql, s.clone());
        Ok(s)
    }

    fn execute(&mut self, sql: &'static str, params: Params<'_>) -> Result<u64, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.client.execute(&s, params)?)
    }

    fn query(&mut self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.client.query(&s, params)?)
    }

    fn query_one(&mut self, sql: &'static str, params: Params<'_>) -> Result<Row, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.client.query_one(&s, params)?)
    }

    fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.client.query_opt(&s, params)?)
    }
}

/// Accepts any server certificate while still checking the handshake's
/// signatures: encryption without authentication, as libpq's `sslmode=require`
/// without a root certificate.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS side of connections: verified against `root_certificate` when given
/// (TLS then required), encrypt-only otherwise.
fn tls(
    config: &mut postgres::Config,
    root_certificate: Option<&Path>,
) -> Result<MakeRustlsConnect, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Open(format!("TLS: {e}")))?;
    let client = match root_certificate {
        Some(file) => {
            if config.get_ssl_mode() == SslMode::Disable {
                return Err(StoreError::Open(
                    "a root certificate is set but the connection string says sslmode=disable"
                        .into(),
                ));
            }
            config.ssl_mode(SslMode::Require);
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    StoreError::Open(format!("root certificate {}: {e}", file.display()))
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(StoreError::Open(format!(
                    "root certificate {}: no certificate in it",
                    file.display()
                )));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            if config.get_ssl_mode() != SslMode::Disable {
                tracing::warn!(
                    "connections to PostgreSQL are encrypted when the server offers TLS, but the \
                     server is not authenticated: set TenantGateway.Store.RootCertificate"
                );
            }
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
                .with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(client))
}

/// PostgreSQL-backed [`Store`].
pub struct PostgresStore {
    pool: r2d2::Pool<Manager>,
    config: postgres::Config,
    tls: MakeRustlsConnect,
    /// `NOTIFY` channel of this schema's tenant changes.
    channel: String,
    /// Tells the listener thread to end.
    closed: Arc<AtomicBool>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    name_key   TEXT COLLATE "C" NOT NULL UNIQUE,
    tier       TEXT NOT NULL,
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    origin     TEXT NOT NULL DEFAULT 'settings',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted_at TEXT,
    version    BIGINT NOT NULL DEFAULT 1,
    doc        TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS kv (
    bucket  TEXT COLLATE "C" NOT NULL,
    key     TEXT COLLATE "C" NOT NULL,
    value   BYTEA NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (bucket, key)
);
CREATE TABLE IF NOT EXISTS tenant_dns (
    dn        TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tenant_dns_tenant ON tenant_dns (tenant_id);
CREATE TABLE IF NOT EXISTS history (
    seq         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    tenant_name TEXT NOT NULL,
    at          TEXT NOT NULL,
    principal   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    action      TEXT NOT NULL,
    fields      TEXT NOT NULL,
    version     BIGINT,
    before      BYTEA,
    after       BYTEA
);
CREATE INDEX IF NOT EXISTS history_tenant ON history (tenant_id, seq);
CREATE TABLE IF NOT EXISTS tenant_changes (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO tenant_changes (id, seq) VALUES (1, 0) ON CONFLICT DO NOTHING;
"#;

macro_rules! tenant_select {
    ($rest:literal) => {
        concat!(
            "SELECT id, name, tier, enabled, origin, created_at, updated_at, deleted_at, \
             version, doc FROM tenants ",
            $rest
        )
    };
}
const TENANT_BY_ID: &str = tenant_select!("WHERE id = $1");

/// How often the listener checks whether the store was closed, and waits before
/// reconnecting after losing its connection.
const LISTEN_TICK: Duration = Duration::from_millis(500);

/// Tries of a configuration write that met a concurrent first write of its key.
const WRITE_TRIES: usize = 8;

fn tenant_from(r: &Row) -> Result<TenantRow, StoreError> {
    let doc: String = r.try_get(9)?;
    let doc: TenantDoc = serde_json::from_str(&doc)
        .map_err(|e| StoreError::Corrupt(format!("tenant document: {e}")))?;
    Ok(TenantRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        tier: r.try_get(2)?,
        enabled: r.try_get(3)?,
        origin: Origin::parse(r.try_get(4)?),
        created_at: r.try_get(5)?,
        updated_at: r.try_get(6)?,
        deleted_at: r.try_get(7)?,
        version: r.try_get(8)?,
        doc,
    })
}

fn record<C: GenericClient>(
    run: &mut Run<'_, C>,
    change: &Change,
    version: Option<i64>,
    after: Option<&[u8]>,
) -> Result<(), StoreError> {
    let fields = serde_json::to_string(&change.fields).expect("strings serialize");
    run.execute(
        "INSERT INTO history (tenant_id, tenant_name, at, principal, subject, action, fields, \
         version, before, after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &change.tenant_id,
            &change.tenant_name,
            &change.at,
            &change.principal,
            &change.subject.as_str(),
            &change.action,
            &fields,
            &version,
            &change.before,
            &after,
        ],
    )?;
    Ok(())
}

/// A `NOTIFY` channel name for a schema: lower-case letters, digits and `_`.
fn channel_for(schema: &str) -> String {
    let clean: String = schema
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("tenant_gateway_{clean}")
}

impl PostgresStore {
    /// Connects with `connection` (a `postgresql://` URL or `key=value` pairs),
    /// verifying the server against `root_certificate` if given (see the module
    /// documentation), and creates the tables if they are missing. The error
    /// never repeats the connection string (it may hold a password).
    pub fn open(connection: &str, root_certificate: Option<&Path>) -> Result<Self, StoreError> {
        let mut config: postgres::Config = connection.parse().map_err(|_| {
            StoreError::Open("the PostgreSQL connection string is not valid".into())
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("tenant-gateway");
        }
        let tls = tls(&mut config, root_certificate)?;
        let pool = r2d2::Pool::builder()
            .max_size(8)
            .min_idle(Some(1))
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(5))
            .build(Manager {
                config: config.clone(),
                tls: tls.clone(),
            })?;
        let mut conn = pool.get()?;
        let schema: Option<String> = conn
            .client
            .query_one("SELECT current_schema()", &[])?
            .get(0);
        let schema = schema.ok_or_else(|| {
            StoreError::Open("the connection's search_path names no existing schema".into())
        })?;
        // Two gateways starting together must not both create the tables.
        let mut tx = conn.client.transaction()?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('tenant-gateway:' || current_schema()))",
            &[],
        )?;
        tx.batch_execute(SCHEMA)?;
        tx.commit()?;
        drop(conn);
        Ok(Self {
            pool,
            config,
            tls,
            channel: channel_for(&schema),
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Runs a read. A pooled connection the server has dropped since its last
    /// use fails the read and is discarded; the read is then run once more on
    /// another connection.
    fn read<T>(
        &self,
        f: impl Fn(&mut Run<'_, Client>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get()?;
        let Conn { client, prepared } = &mut *conn;
        match f(&mut Run { client, prepared }) {
            Err(_) if client.is_closed() => {
                drop(conn);
                let mut conn = self.live()?;
                let Conn { client, prepared } = &mut *conn;
                f(&mut Run { client, prepared })
            }
            result => result,
        }
    }

    /// A pooled connection that answered a ping; dropped ones met on the way
    /// (after a server restart, every idle one) are discarded.
    fn live(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        let mut tries = self.pool.max_size();
        loop {
            let mut conn = self.pool.get()?;
            match conn.ping() {
                Ok(()) => return Ok(conn),
                Err(e) if tries == 0 => return Err(e.into()),
                Err(_) => tries -= 1,
            }
        }
    }

    /// Runs `f` in a transaction on a connection that answered a ping (a write is
    /// never retried, so it must not start on a dropped connection). `f` says
    /// whether to commit; an error rolls back.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Run<'_, postgres::Transaction<'_>>) -> Result<(T, bool), StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.live()?;
        let Conn { client, prepared } = &mut *conn;
        let mut tx = client.transaction()?;
        let (value, commit) = f(&mut Run {
            client: &mut tx,
            prepared,
        })?;
        if commit {
            tx.commit()?;
        } else {
            tx.rollback()?;
        }
        Ok(value)
    }

    /// Runs one statement on its own (it commits by itself) on a connection
    /// that answered a ping; returns the rows it changed.
    fn write_one(&self, sql: &'static str, params: Params<'_>) -> Result<u64, StoreError> {
        let mut conn = self.live()?;
        let Conn { client, prepared } = &mut *conn;
        Run { client, prepared }.execute(sql, params)
    }

    /// Takes the tenant-change row (held until the transaction ends), numbers the
    /// change and has PostgreSQL notify the listeners when it commits.
    fn tenant_change<C: GenericClient>(&self, run: &mut Run<'_, C>) -> Result<i64, StoreError> {
        let seq: i64 = run
            .query_one(
                "UPDATE tenant_changes SET seq = seq + 1 WHERE id = 1 RETURNING seq",
                &[],
            )?
            .try_get(0)?;
        run.execute(
            "SELECT pg_notify($1, $2)",
            &[&self.channel, &seq.to_string()],
        )?;
        Ok(seq)
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

/// Waits for notifications on `channel` and calls `wake` for each, reconnecting
/// when the connection is lost (and waking then too: a change may have been
/// missed meanwhile). Ends once `closed` is set.
fn listen(
    config: postgres::Config,
    tls: MakeRustlsConnect,
    channel: String,
    closed: Arc<AtomicBool>,
    wake: Arc<dyn Fn() + Send + Sync>,
) {
    let mut failing = false;
    while !closed.load(Ordering::Relaxed) {
        let mut client = match config.connect(tls.clone()) {
            Ok(c) => c,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %super::chain(&e), "cannot listen for tenant changes; retrying");
                    failing = true;
                }
                std::thread::sleep(LISTEN_TICK);
                continue;
            }
        };
        if let Err(e) = client.batch_execute(&format!("LISTEN \"{channel}\"")) {
            tracing::warn!(error = %e, "cannot listen for tenant changes; retrying");
            std::thread::sleep(LISTEN_TICK);
            continue;
        }
        if failing {
            tracing::info!("listening for tenant changes again");
            failing = false;
        }
        wake();
        while !closed.load(Ordering::Relaxed) {
            let mut notifications = client.notifications();
            match notifications.timeout_iter(LISTEN_TICK).next() {
                Ok(Some(_)) => wake(),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %super::chain(&e), "lost the tenant-change listener connection");
                    failing = true;
                    break;
                }
            }
        }
    }
}

impl Store for PostgresStore {
    fn on_change(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        let config = self.config.clone();
        let tls = self.tls.clone();
        let channel = self.channel.clone();
        let closed = self.closed.clone();
        std::thread::Builder::new()
            .name("tg-pg-listen".into())
            .spawn(move || listen(config, tls, channel, closed, wake))
            .expect("spawning a thread");
    }

    fn seed_tenant(
        &self,
        id: &str,
        name: &str,
        tier: &str,
        now: &str,
    ) -> Result<TenantRow, StoreError> {
        self.write(|run| {
            self.tenant_change(run)?;
            let inserted = run.execute(
                "INSERT INTO tenants (id, name, name_key, tier, enabled, created_at, updated_at, \
                 origin, version, doc) VALUES ($1, $2, lower($2), $3, TRUE, $4, $4, 'settings', \
                 1, '{}') ON CONFLICT (id) DO NOTHING",
                &[&id, &name, &tier, &now],
            )?;
            let changed = if inserted == 1 {
                record(run, &Change::seeded(id, name, now), None, None)?;
                true
            } else {
                run.execute(
                    "UPDATE tenants SET name = $2, tier = $3, origin = 'settings' \
                     WHERE id = $1 AND (name <> $2 OR tier <> $3 OR origin <> 'settings')",
                    &[&id, &name, &tier],
                )? == 1
            };
            let row = tenant_from(&run.query_one(TENANT_BY_ID, &[&id])?)?;
            // Nothing changed: roll back, so no change number is spent and
            // nobody is woken.
            Ok((row, changed))
        })
    }

    fn tenant_rows(&self) -> Result<Vec<TenantRow>, StoreError> {
        self.read(|run| {
            run.query(tenant_select!("ORDER BY name_key"), &[])?
                .iter()
                .map(tenant_from)
                .collect()
        })
    }

    fn tenant_row(&self, id: &str) -> Result<Option<TenantRow>, StoreError> {
        self.read(|run| {
            run.query_opt(TENANT_BY_ID, &[&id])?
                .as_ref()
                .map(tenant_from)
                .transpose()
        })
    }

    fn write_tenant(
        &self,
        row: &TenantRow,
        expected: Option<i64>,
        dns: &[String],
        change: &Change,
    ) -> Result<TenantWrite, StoreError> {
        let doc = serde_json::to_string(&row.doc).expect("a tenant document serializes");
        self.write(|run| {
            self.tenant_change(run)?;
            match expected {
                None => {
                    let existing = run.query_opt(
                        tenant_select!("WHERE id = $1 OR name_key = lower($2)"),
                        &[&row.id, &row.name],
                    )?;
                    if let Some(existing) = existing {
                        return Ok((TenantWrite::Exists(tenant_from(&existing)?), false));
                    }
                    run.execute(
                        "INSERT INTO tenants (id, name, name_key, tier, enabled, created_at, \
                         updated_at, origin, deleted_at, version, doc) \
                         VALUES ($1, $2, lower($2), $3, $4, $5, $6, $7, $8, 1, $9)",
                        &[
                            &row.id,
                            &row.name,
                            &row.tier,
                            &row.enabled,
                            &row.created_at,
                            &row.updated_at,
                            &row.origin.as_str(),
                            &row.deleted_at,
                            &doc,
                        ],
                    )?;
                }
                Some(version) => {
                    let n = run.execute(
                        "UPDATE tenants SET tier = $2, enabled = $3, updated_at = $4, \
                         deleted_at = $5, doc = $6, version = version + 1 \
                         WHERE id = $1 AND version = $7",
                        &[
                            &row.id,
                            &row.tier,
                            &row.enabled,
                            &row.updated_at,
                            &row.deleted_at,
                            &doc,
                            &version,
                        ],
                    )?;
                    if n != 1 {
                        return Ok((TenantWrite::Stale, false));
                    }
                }
            }
            for dn in dns {
                let owner: Option<String> = run
                    .query_opt("SELECT tenant_id FROM tenant_dns WHERE dn = $1", &[dn])?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                if let Some(owner) = owner.filter(|o| *o != row.id) {
                    let tenant = run
                        .query_opt("SELECT name FROM tenants WHERE id = $1", &[&owner])?
                        .map(|r| r.try_get(0))
                        .transpose()?
                        .unwrap_or(owner);
                    let taken = TenantWrite::DnTaken {
                        dn: dn.clone(),
                        tenant,
                    };
                    return Ok((taken, false));
                }
            }
            run.execute("DELETE FROM tenant_dns WHERE tenant_id = $1", &[&row.id])?;
            for dn in dns {
                run.execute(
                    "INSERT INTO tenant_dns (dn, tenant_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[dn, &row.id],
                )?;
            }
            record(run, change, None, None)?;
            let stored = tenant_from(&run.query_one(TENANT_BY_ID, &[&row.id])?)?;
            Ok((TenantWrite::Written(stored), true))
        })
    }

    fn purge_tenant(&self, id: &str, change: &Change) -> Result<bool, StoreError> {
        self.write(|run| {
            self.tenant_change(run)?;
            if run.execute("DELETE FROM tenants WHERE id = $1", &[&id])? == 0 {
                return Ok((false, false));
            }
            run.execute("DELETE FROM tenant_dns WHERE tenant_id = $1", &[&id])?;
            run.execute(
                "DELETE FROM kv WHERE bucket = 'configs' AND key = $1",
                &[&id],
            )?;
            // Nothing of it is left for a tenant made again under its name:
            // its history (and so every version rollback could reach) and
            // its clients.
            run.execute("DELETE FROM history WHERE tenant_id = $1", &[&id])?;
            run.execute(
                "DELETE FROM kv WHERE bucket = $1 AND position($2::bytea in value) > 0",
                &[
                    &super::CLIENTS_BUCKET,
                    &super::client_marker(id).into_bytes(),
                ],
            )?;
            // The purge itself is recorded.
            record(run, change, None, None)?;
            Ok((true, true))
        })
    }

    fn tenant_by_dn(&self, dn: &str) -> Result<Option<String>, StoreError> {
        self.read(|run| {
            Ok(run
                .query_opt("SELECT tenant_id FROM tenant_dns WHERE dn = $1", &[&dn])?
                .map(|r| r.try_get(0))
                .transpose()?)
        })
    }

    fn history(&self, tenant_id: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|run| {
            run.query(
                "SELECT seq, tenant_id, tenant_name, at, principal, subject, action, fields, \
                 version FROM history WHERE tenant_id = $1 ORDER BY seq DESC LIMIT $2",
                &[&tenant_id, &limit],
            )?
            .iter()
            .map(|r| {
                let fields: String = r.try_get(7)?;
                Ok(HistoryEntry {
                    seq: r.try_get(0)?,
                    change: Change {
                        tenant_id: r.try_get(1)?,
                        tenant_name: r.try_get(2)?,
                        at: r.try_get(3)?,
                        principal: r.try_get(4)?,
                        subject: Subject::parse(r.try_get(5)?),
                        action: r.try_get(6)?,
                        fields: serde_json::from_str(&fields).unwrap_or_default(),
                        // Listings never show stored configurations.
                        before: None,
                    },
                    version: r.try_get(8)?,
                })
            })
            .collect()
        })
    }

    fn config_at(&self, tenant_id: &str, version: i64) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|run| {
            Ok(run
                .query_opt(
                    "SELECT after FROM history WHERE tenant_id = $1 AND subject = 'config' \
                     AND version = $2 AND after IS NOT NULL ORDER BY seq DESC LIMIT 1",
                    &[&tenant_id, &version],
                )?
                .map(|r| r.try_get(0))
                .transpose()?)
        })
    }

    fn change_seq(&self) -> Result<i64, StoreError> {
        self.read(|run| {
            Ok(run
                .query_one("SELECT seq FROM tenant_changes WHERE id = 1", &[])?
                .try_get(0)?)
        })
    }

    fn get(&self, bucket: &str, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.read(|run| {
            run.query_opt(
                "SELECT value, version FROM kv WHERE bucket = $1 AND key = $2",
                &[&bucket, &key],
            )?
            .map(|r| {
                Ok(Versioned {
                    value: r.try_get(0)?,
                    version: r.try_get(1)?,
                })
            })
            .transpose()
        })
    }

    fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write_one(
            "INSERT INTO kv (bucket, key, value, version) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value, \
             version = kv.version + 1",
            &[&bucket, &key, &value],
        )?;
        Ok(())
    }

    fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.write_one(
            "DELETE FROM kv WHERE bucket = $1 AND key = $2",
            &[&bucket, &key],
        )?;
        Ok(())
    }

    fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, StoreError> {
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let after = cursor.unwrap_or("");
        let keys = self.read(|run| {
            run.query(
                "SELECT key FROM kv WHERE bucket = $1 AND key > $2 ORDER BY key LIMIT $3",
                &[&bucket, &after, &fetch],
            )?
            .iter()
            .map(|r| Ok(r.try_get::<_, String>(0)?))
            .collect::<Result<Vec<_>, StoreError>>()
        })?;
        Ok(KeyPage::of(keys, limit))
    }

    fn swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<i64>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let changed = match expected {
            None => self.write_one(
                "INSERT INTO kv (bucket, key, value, version) VALUES ($1, $2, $3, 1) \
                 ON CONFLICT (bucket, key) DO NOTHING",
                &[&bucket, &key, &value],
            )?,
            Some(version) => self.write_one(
                "UPDATE kv SET value = $3, version = version + 1 \
                 WHERE bucket = $1 AND key = $2 AND version = $4",
                &[&bucket, &key, &value, &version],
            )?,
        };
        Ok(changed == 1)
    }

    fn register_client(
        &self,
        client_id: &str,
        tenant_id: &str,
        record: &[u8],
        max: u32,
    ) -> Result<super::ClientRegistration, StoreError> {
        use super::ClientRegistration as R;
        let marker = super::client_marker(tenant_id).into_bytes();
        self.write(|run| {
            // One registration of a tenant at a time, across instances: the
            // count below stays true until this one commits.
            run.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                &[&tenant_id],
            )?;
            let inserted = run.query_opt(
                "SELECT 1 FROM kv WHERE bucket = $1 AND key = $2",
                &[&super::CLIENTS_BUCKET, &client_id],
            )?;
            if inserted.is_some() {
                return Ok((R::Taken, false));
            }
            let clients: i64 = run
                .query_one(
                    "SELECT count(*) FROM kv WHERE bucket = $1 AND position($2::bytea in value) > 0",
                    &[&super::CLIENTS_BUCKET, &marker],
                )?
                .try_get(0)?;
            if clients >= i64::from(max) {
                return Ok((R::Full, false));
            }
            let written = run.execute(
                "INSERT INTO kv (bucket, key, value, version) VALUES ($1, $2, $3, 1) \
                 ON CONFLICT (bucket, key) DO NOTHING",
                &[&super::CLIENTS_BUCKET, &client_id, &record],
            )?;
            Ok(if written == 1 {
                (R::Registered, true)
            } else {
                (R::Taken, false)
            })
        })
    }

    fn write_recorded(
        &self,
        bucket: &str,
        key: &str,
        expected: Expect,
        value: Option<&[u8]>,
        change: &Change,
    ) -> Result<Option<i64>, StoreError> {
        for _ in 0..WRITE_TRIES {
            // `None`: another writer created the key between the read and the
            // insert (there was no row to lock yet); read it again.
            let outcome = self.write(|run| {
                // The key's row stays locked until commit: no other write of it
                // can come between this read and the write below.
                let current: Option<i64> = run
                    .query_opt(
                        "SELECT version FROM kv WHERE bucket = $1 AND key = $2 FOR UPDATE",
                        &[&bucket, &key],
                    )?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                if !expected.holds(current) {
                    return Ok((Some(None), false));
                }
                let version = current.unwrap_or(0) + 1;
                match (value, current) {
                    (Some(value), None) => {
                        let n = run.execute(
                            "INSERT INTO kv (bucket, key, value, version) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT (bucket, key) DO NOTHING",
                            &[&bucket, &key, &value, &version],
                        )?;
                        if n == 0 {
                            return Ok((None, false));
                        }
                    }
                    (Some(value), Some(_)) => {
                        run.execute(
                            "UPDATE kv SET value = $3, version = $4 \
                             WHERE bucket = $1 AND key = $2",
                            &[&bucket, &key, &value, &version],
                        )?;
                    }
                    (None, _) => {
                        run.execute(
                            "DELETE FROM kv WHERE bucket = $1 AND key = $2",
                            &[&bucket, &key],
                        )?;
                    }
                }
                record(run, change, Some(version), value)?;
                Ok((Some(Some(version)), true))
            })?;
            if let Some(written) = outcome {
                return Ok(written);
            }
        }
        Err(StoreError::Contended(format!(
            "a write of {bucket}/{key} met {WRITE_TRIES} concurrent first writes"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn channel_names_are_plain_identifiers() {
        assert_eq!(channel_for("public"), "tenant_gateway_public");
        assert_eq!(channel_for("Tg-Test.1"), "tenant_gateway_tg_test_1");
        assert!(channel_for(&"x".repeat(200)).len() < 63);
    }

    #[test]
    fn the_shared_store_keeps_the_store_contract() {
        let db = super::super::testing::TestSchema::new();
        let store = PostgresStore::open(db.connection(), None).unwrap();
        super::super::testing::contract(&store);
    }

    #[test]
    fn clients_are_capped_per_tenant() {
        let db = super::super::testing::TestSchema::new();
        let store = PostgresStore::open(db.connection(), None).unwrap();
        super::super::testing::clients_are_capped_per_tenant(&store);
    }

    #[test]
    fn purging_removes_the_tenants_clients() {
        let db = super::super::testing::TestSchema::new();
        let store = PostgresStore::open(db.connection(), None).unwrap();
        super::super::testing::purge_removes_the_tenants_clients(&store);
    }

    #[test]
    fn a_reopened_store_keeps_its_data() {
        let db = super::super::testing::TestSchema::new();
        super::super::testing::seeding_survives_reopen(|| {
            PostgresStore::open(db.connection(), None).unwrap()
        });
    }

    #[test]
    fn concurrent_config_writes_from_two_instances_lose_nothing() {
        let db = super::super::testing::TestSchema::new();
        let a = PostgresStore::open(db.connection(), None).unwrap();
        let b = PostgresStore::open(db.connection(), None).unwrap();
        super::super::testing::no_lost_writes(&a, &b);
    }

    #[test]
    fn another_instance_hears_of_tenant_changes_at_once() {
        let db = super::super::testing::TestSchema::new();
        let a = PostgresStore::open(db.connection(), None).unwrap();
        let b = PostgresStore::open(db.connection(), None).unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        b.on_change(Arc::new(move || {
            let _ = tx.lock().unwrap().send(());
        }));
        // The listener wakes once when it starts listening.
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the listener started");
        let before = b.change_seq().unwrap();
        let started = std::time::Instant::now();
        a.seed_tenant("id-1", "Acme", "Pro", "2025-01-01T00:00:00Z")
            .unwrap();
        rx.recv_timeout(Duration::from_secs(1))
            .expect("woken within a second");
        let heard = started.elapsed();
        assert!(b.change_seq().unwrap() > before);
        assert_eq!(b.tenant_row("id-1").unwrap().unwrap().tier, "Pro");
        eprintln!("tenant change heard by the other instance after {heard:?}");
        // Seeding the same tenant again changes nothing and wakes nobody.
        let seq = a.change_seq().unwrap();
        a.seed_tenant("id-1", "Acme", "Pro", "2025-02-01T00:00:00Z")
            .unwrap();
        assert_eq!(a.change_seq().unwrap(), seq);
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        // A configuration write is not a tenant change.
        let change = super::super::testing::config_change("id-1");
        a.write_recorded("configs", "id-1", Expect::Any, Some(b"{}"), &change)
            .unwrap();
        assert_eq!(a.change_seq().unwrap(), seq);
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    }

    #[test]
    fn connections_the_server_drops_are_replaced() {
        let db = super::super::testing::TestSchema::new();
        let store = PostgresStore::open(db.connection(), None).unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        store.on_change(Arc::new(move || {
            let _ = tx.lock().unwrap().send(());
        }));
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the listener started");
        // Several pooled connections, all idle.
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| store.set("b", "k", b"v").unwrap());
            }
        });
        // As after a server restart: every connection is gone.
        assert!(db.drop_connections() >= 2);
        assert_eq!(store.get("b", "k").unwrap().unwrap().value, b"v");
        db.drop_connections();
        store.set("b", "k", b"w").unwrap();
        assert_eq!(store.get("b", "k").unwrap().unwrap().value, b"w");
        // The listener reconnected (and woke, as a change may have been missed),
        // and hears changes again.
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the listener came back");
        while rx.try_recv().is_ok() {}
        store
            .seed_tenant("id-1", "Acme", "Pro", "2025-01-01T00:00:00Z")
            .unwrap();
        rx.recv_timeout(Duration::from_secs(2))
            .expect("woken after reconnecting");
    }

    fn server_certificate() -> std::path::PathBuf {
        super::super::testing::TestSchema::server_certificate()
            .expect("these tests need the test server to offer TLS (ssl = on)")
    }

    #[test]
    fn connections_are_encrypted_unless_disabled() {
        server_certificate();
        let db = super::super::testing::TestSchema::new();
        let store = PostgresStore::open(db.connection(), None).unwrap();
        store.set("b", "k", b"v").unwrap();
        let (encrypted, plain) = db.connections_by_tls();
        assert!(encrypted >= 1 && plain == 0, "{encrypted} / {plain}");
        drop(store);
        db.drop_connections();
        let store =
            PostgresStore::open(&format!("{} sslmode=disable", db.connection()), None).unwrap();
        assert_eq!(store.get("b", "k").unwrap().unwrap().value, b"v");
        let (encrypted, plain) = db.connections_by_tls();
        assert!(encrypted == 0 && plain >= 1, "{encrypted} / {plain}");
    }

    #[test]
    fn a_root_certificate_authenticates_the_server() {
        let cert = server_certificate();
        let db = super::super::testing::TestSchema::new();
        // The server's certificate names localhost.
        let by_name = db
            .connection()
            .replace("host=127.0.0.1", "host=localhost hostaddr=127.0.0.1");
        assert_ne!(by_name, db.connection());
        let store = PostgresStore::open(&by_name, Some(&cert)).unwrap();
        store.set("b", "k", b"v").unwrap();
        assert!(db.connections_by_tls().0 >= 1);
        drop(store);
        // Refused: a certificate for another name, another authority, no
        // certificate at all, and TLS turned off.
        let refused = |connection: &str, root: &Path| {
            let Err(e) = PostgresStore::open(connection, Some(root)) else {
                panic!("connected with {}", root.display());
            };
            eprintln!("refused: {e}");
            e.to_string()
        };
        let e = refused(db.connection(), &cert);
        assert!(e.contains("certificate"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.pem");
        let bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap();
        let first = &bundle[..bundle.find("-----END CERTIFICATE-----").unwrap() + 25];
        std::fs::write(&other, first).unwrap();
        let e = refused(&by_name, &other);
        assert!(e.contains("certificate"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        assert!(refused(&by_name, &junk).contains("no certificate"));
        let e = refused(&format!("{by_name} sslmode=disable"), &cert);
        assert!(e.contains("sslmode=disable"), "{e}");
    }

    #[test]
    fn a_search_path_naming_no_schema_is_refused() {
        let base = super::super::testing::postgres_base();
        let Err(e) = PostgresStore::open(
            &format!("{base} options='-c search_path=tg_no_such_schema'"),
            None,
        ) else {
            panic!("opened");
        };
        assert!(e.to_string().contains("no existing schema"), "{e}");
    }

    #[test]
    fn a_bad_connection_string_is_refused_without_repeating_it() {
        let Err(e) = PostgresStore::open("host=127.0.0.1 password=hunter2 port=notaport", None)
        else {
            panic!("opened");
        };
        let text = e.to_string();
        assert!(text.contains("not valid"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
