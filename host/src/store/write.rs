//! What a write means, once for both backends: versions and expectations,
//! names and subject DNs already taken, the client cap, and which change is
//! recorded. A backend supplies the statements of one open transaction in its
//! own dialect ([`Tx`]) and runs each step below in one, committing or rolling
//! back as the step says.

use super::{
    Change, ClientRegistration, Expect, StoreError, TenantRow, TenantWrite, client_marker,
};

/// Tries of a write that met a concurrent first write of its key (PostgreSQL:
/// there was no row to lock yet; SQLite has one writer and never retries).
pub(super) const WRITE_TRIES: usize = 8;

/// How a step ends its transaction.
pub(super) enum Step<T> {
    /// Commit, then answer `T`.
    Commit(T),
    /// Roll back (nothing to keep), then answer `T`.
    Rollback(T),
    /// Roll back and run the step again: another writer came in between.
    Retry,
}

/// The statements of one open write transaction, in a backend's dialect. The
/// transaction makes the steps atomic; a backend whose transactions do not
/// serialize writers on their own takes the locks asked for.
pub(super) trait Tx {
    /// Orders this tenant change after every other (PostgreSQL: takes and
    /// counts the tenant-change row, notifying listeners on commit).
    fn lock_tenants(&mut self) -> Result<(), StoreError>;
    /// Orders this registration after any other of `tenant_id`'s clients.
    fn lock_clients(&mut self, tenant_id: &str) -> Result<(), StoreError>;

    /// The tenant with `id`.
    fn tenant(&mut self, id: &str) -> Result<Option<TenantRow>, StoreError>;
    /// A tenant with `id`, or one whose name is `name` case-insensitively.
    fn tenant_named(&mut self, id: &str, name: &str) -> Result<Option<TenantRow>, StoreError>;
    /// Inserts a settings-file tenant unless `id` exists; whether it did.
    fn insert_seeded(
        &mut self,
        id: &str,
        name: &str,
        tier: &str,
        now: &str,
    ) -> Result<bool, StoreError>;
    /// Gives an existing tenant the settings file's name and tier (and the
    /// settings as origin); whether anything changed.
    fn reseed(&mut self, id: &str, name: &str, tier: &str) -> Result<bool, StoreError>;
    /// Inserts `row` at version 1, its document serialized as `doc`.
    fn insert_tenant(&mut self, row: &TenantRow, doc: &str) -> Result<(), StoreError>;
    /// Updates `row` if the stored one is still at `version` (raising it by one);
    /// whether it was.
    fn update_tenant(
        &mut self,
        row: &TenantRow,
        doc: &str,
        version: i64,
    ) -> Result<bool, StoreError>;
    /// Deletes tenant `id` and all it leaves behind: its DNs, configuration,
    /// history and clients. Whether there was one.
    fn delete_tenant(&mut self, id: &str) -> Result<bool, StoreError>;
    /// The tenant a subject DN belongs to.
    fn dn_owner(&mut self, dn: &str) -> Result<Option<String>, StoreError>;
    /// Makes `dns` the DNs of `tenant_id`, and only those.
    fn replace_dns(&mut self, tenant_id: &str, dns: &[String]) -> Result<(), StoreError>;

    /// The key's version, locked until the transaction ends where it exists.
    fn kv_version(&mut self, bucket: &str, key: &str) -> Result<Option<i64>, StoreError>;
    /// The key's version and value, locked as by [`Tx::kv_version`].
    fn kv_current(&mut self, bucket: &str, key: &str)
    -> Result<Option<(i64, Vec<u8>)>, StoreError>;
    /// Inserts the key at `version`; `false` when it exists already.
    fn kv_insert(
        &mut self,
        bucket: &str,
        key: &str,
        value: &[u8],
        version: i64,
    ) -> Result<bool, StoreError>;
    /// Overwrites the existing key, now at `version`.
    fn kv_update(
        &mut self,
        bucket: &str,
        key: &str,
        value: &[u8],
        version: i64,
    ) -> Result<(), StoreError>;
    /// Deletes the key.
    fn kv_delete(&mut self, bucket: &str, key: &str) -> Result<(), StoreError>;
    /// How many client records name `marker` (see [`client_marker`]).
    fn clients_marked(&mut self, marker: &str) -> Result<i64, StoreError>;

    /// Adds `change` to the history: `version` and `after` for a
    /// configuration change.
    fn record(
        &mut self,
        change: &Change,
        version: Option<i64>,
        after: Option<&[u8]>,
    ) -> Result<(), StoreError>;
}

/// Runs `attempt` (one transaction each) until it is not retried, at most
/// [`WRITE_TRIES`] times.
pub(super) fn retried<T>(
    mut attempt: impl FnMut() -> Result<Option<T>, StoreError>,
) -> Result<T, StoreError> {
    for _ in 0..WRITE_TRIES {
        if let Some(done) = attempt()? {
            return Ok(done);
        }
    }
    Err(StoreError::Contended(format!(
        "a write met {WRITE_TRIES} concurrent first writes of its key"
    )))
}

/// A settings-file tenant: inserted (and recorded) when new, else given the
/// file's name and tier. Nothing changed: rolled back, so no change number is
/// spent and nobody is woken. The caller holds the tenant lock.
fn seed_tenant(
    tx: &mut impl Tx,
    id: &str,
    name: &str,
    tier: &str,
    now: &str,
) -> Result<Step<TenantRow>, StoreError> {
    let changed = if tx.insert_seeded(id, name, tier, now)? {
        tx.record(&Change::seeded(id, name, now), None, None)?;
        true
    } else {
        tx.reseed(id, name, tier)?
    };
    let row = stored(tx, id)?;
    Ok(if changed {
        Step::Commit(row)
    } else {
        Step::Rollback(row)
    })
}

/// [`seed_tenant`] of each `(id, name, tier)` in one transaction, committed
/// if any of them changed. The caller sends the tenants that are new or
/// differ from what it read ([`crate::tenancy::Directory::seed`]). The
/// tenant lock is taken once, so a batch that changes tenants wakes other
/// instances once (PostgreSQL delivers each numbered notification: one per
/// tenant woke them per tenant).
pub(super) fn seed_tenants(
    tx: &mut impl Tx,
    tenants: &[(&str, &str, &str)],
    now: &str,
) -> Result<Step<Vec<TenantRow>>, StoreError> {
    tx.lock_tenants()?;
    let mut rows = Vec::with_capacity(tenants.len());
    let mut changed = false;
    for &(id, name, tier) in tenants {
        match seed_tenant(tx, id, name, tier, now)? {
            Step::Commit(row) => {
                changed = true;
                rows.push(row);
            }
            Step::Rollback(row) => rows.push(row),
            Step::Retry => return Ok(Step::Retry),
        }
    }
    Ok(if changed {
        Step::Commit(rows)
    } else {
        Step::Rollback(rows)
    })
}

/// Creates (`expected` `None`: unless the id or the name is taken) or updates
/// (`expected`: the version read) a tenant, with its subject DNs (unless
/// another tenant has one of them), and records `change`.
pub(super) fn write_tenant(
    tx: &mut impl Tx,
    row: &TenantRow,
    expected: Option<i64>,
    dns: &[String],
    change: &Change,
) -> Result<Step<TenantWrite>, StoreError> {
    let doc = serde_json::to_string(&row.doc).expect("a tenant document serializes");
    tx.lock_tenants()?;
    match expected {
        None => {
            if let Some(existing) = tx.tenant_named(&row.id, &row.name)? {
                return Ok(Step::Rollback(TenantWrite::Exists(existing)));
            }
            tx.insert_tenant(row, &doc)?;
        }
        Some(version) => {
            if !tx.update_tenant(row, &doc, version)? {
                return Ok(Step::Rollback(TenantWrite::Stale));
            }
        }
    }
    for dn in dns {
        if let Some(owner) = tx.dn_owner(dn)?.filter(|o| *o != row.id) {
            let tenant = tx.tenant(&owner)?.map_or(owner, |t| t.name);
            return Ok(Step::Rollback(TenantWrite::DnTaken {
                dn: dn.clone(),
                tenant,
            }));
        }
    }
    tx.replace_dns(&row.id, dns)?;
    tx.record(change, None, None)?;
    Ok(Step::Commit(TenantWrite::Written(stored(tx, &row.id)?)))
}

/// Deletes tenant `id` and everything it leaves behind, recording `change`;
/// whether there was one.
pub(super) fn purge_tenant(
    tx: &mut impl Tx,
    id: &str,
    change: &Change,
) -> Result<Step<bool>, StoreError> {
    tx.lock_tenants()?;
    if !tx.delete_tenant(id)? {
        return Ok(Step::Rollback(false));
    }
    // The purge itself is recorded (the change feed counts it).
    tx.record(change, None, None)?;
    Ok(Step::Commit(true))
}

/// Writes (`value`) or deletes (`None`) a key if it is as `expected`, at the
/// next version, recording `change` with that version when given. `None`: it
/// was not as expected.
pub(super) fn write_key(
    tx: &mut impl Tx,
    bucket: &str,
    key: &str,
    expected: Expect,
    value: Option<&[u8]>,
    change: Option<&Change>,
) -> Result<Step<Option<i64>>, StoreError> {
    // One read of the row: its value only where the expectation names it.
    let current = match expected {
        Expect::Same { digest, .. } => match tx.kv_current(bucket, key)? {
            Some((version, value)) if Expect::digest(&value) == digest => Some(version),
            Some(_) => return Ok(Step::Rollback(None)),
            None => None,
        },
        _ => tx.kv_version(bucket, key)?,
    };
    if !expected.holds(current) {
        return Ok(Step::Rollback(None));
    }
    let version = current.unwrap_or(0) + 1;
    match (value, current) {
        (Some(value), None) => {
            if !tx.kv_insert(bucket, key, value, version)? {
                return Ok(Step::Retry);
            }
        }
        (Some(value), Some(_)) => tx.kv_update(bucket, key, value, version)?,
        (None, Some(_)) => tx.kv_delete(bucket, key)?,
        (None, None) => {}
    }
    if let Some(change) = change {
        tx.record(change, Some(version), value)?;
    }
    Ok(Step::Commit(Some(version)))
}

/// Registers client `client_id` of `tenant_id` (its `record`) unless the id is
/// taken or the tenant has `max` clients.
pub(super) fn register_client(
    tx: &mut impl Tx,
    client_id: &str,
    tenant_id: &str,
    record: &[u8],
    max: u32,
) -> Result<Step<ClientRegistration>, StoreError> {
    use ClientRegistration as R;
    // The count below stays true until this registration commits.
    tx.lock_clients(tenant_id)?;
    if tx.kv_version(super::CLIENTS_BUCKET, client_id)?.is_some() {
        return Ok(Step::Rollback(R::Taken));
    }
    if tx.clients_marked(&client_marker(tenant_id))? >= i64::from(max) {
        return Ok(Step::Rollback(R::Full));
    }
    Ok(
        if tx.kv_insert(super::CLIENTS_BUCKET, client_id, record, 1)? {
            Step::Commit(R::Registered)
        } else {
            Step::Rollback(R::Taken)
        },
    )
}

/// The row just written, inside the transaction that wrote it.
fn stored(tx: &mut impl Tx, id: &str) -> Result<TenantRow, StoreError> {
    tx.tenant(id)?
        .ok_or_else(|| StoreError::Corrupt(format!("tenant {id} vanished while written")))
}

impl Expect {
    /// Whether a key at `current` (`None`: absent) is as expected.
    fn holds(self, current: Option<i64>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Version(v) | Expect::Same { version: v, .. } => current == Some(v),
        }
    }
}

impl Change {
    /// A settings-file tenant seen for the first time.
    fn seeded(id: &str, name: &str, now: &str) -> Self {
        Self {
            tenant_id: id.to_owned(),
            tenant_name: name.to_owned(),
            at: now.to_owned(),
            principal: "settings".into(),
            subject: super::Subject::Tenant,
            action: "created".into(),
            fields: vec!["name".into(), "tier".into()],
            before: None,
        }
    }
}
