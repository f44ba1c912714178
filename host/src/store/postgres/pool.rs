//! The connection pool: connections that keep their prepared statements, and
//! [`Run`], which runs a statement by its text, preparing it once per connection.

use crate::store::StoreError;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row, Statement};
use std::collections::HashMap;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Statements prepared on one connection, by their text.
pub(super) type Prepared = HashMap<&'static str, Statement>;

/// A pooled connection and the statements prepared on it: each statement is
/// parsed and planned once per connection, then every call is one round trip.
pub struct Conn {
    pub(super) client: Client,
    pub(super) prepared: Prepared,
}

/// Opens connections for the pool. A checked-out connection is not pinged (that
/// would double the round trips of a read): a connection the server dropped
/// fails its next use and is discarded, reads are retried once on a fresh one,
/// and writes ping before they begin.
pub(super) struct Manager {
    pub(super) config: postgres::Config,
    pub(super) tls: MakeRustlsConnect,
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
        Self(crate::store::chain(&e))
    }
}

impl Conn {
    /// One round trip that the server answers only on a live connection.
    pub(super) fn ping(&mut self) -> Result<(), postgres::Error> {
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
pub(super) struct Run<'a, C> {
    pub(super) client: &'a mut C,
    pub(super) prepared: &'a mut Prepared,
}

pub(super) type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<C: GenericClient> Run<'_, C> {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.prepared.insert(sql, s.clone());
        Ok(s)
    }

    pub(super) fn execute(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<u64, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.client.execute(&s, params)?)
    }

    pub(super) fn query(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.client.query(&s, params)?)
    }

    pub(super) fn query_one(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Row, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.client.query_one(&s, params)?)
    }

    pub(super) fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.client.query_opt(&s, params)?)
    }
}
