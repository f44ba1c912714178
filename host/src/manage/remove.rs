//! Deleting (restorable within the grace period), restoring and purging a
//! tenant, and the sweep that purges expired deletions.

use super::update::{UPDATE_ATTEMPTS, commit_update, current_dns};
use super::{ManageError, blocking, parse_name, publish, recorded};
use crate::store::{StoreError, TenantRow};
use crate::tenancy::{Shared, Tenant, tenant_id};
use crate::wasm::Runtime;
use std::sync::Arc;

/// Marks a tenant deleted: it stops being served at once and can be restored
/// (with its configuration) until it is purged.
pub async fn delete(rt: &Arc<Runtime>, principal: String, name: &str) -> Result<(), ManageError> {
    set_deleted(rt, principal, name, true).await.map(drop)
}

/// Brings a deleted tenant back, with its users, options and configuration.
pub async fn restore(
    rt: &Arc<Runtime>,
    principal: String,
    name: &str,
) -> Result<Arc<Tenant>, ManageError> {
    set_deleted(rt, principal, name, false)
        .await?
        .ok_or_else(|| ManageError::NotFound(name.to_owned()))
}

async fn set_deleted(
    rt: &Arc<Runtime>,
    principal: String,
    name: &str,
    deleted: bool,
) -> Result<Option<Arc<Tenant>>, ManageError> {
    let name = parse_name(name)?;
    let shared = rt.shared().clone();
    blocking(&shared, move |shared| {
        let store = shared.store.as_ref();
        let id = tenant_id(&name).to_string();
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(mut row) = store.tenant_row(&id)? else {
                return Err(ManageError::NotFound(name.to_string()));
            };
            if row.deleted_at.is_some() == deleted {
                return Err(ManageError::NotFound(name.to_string()));
            }
            // A settings tenant that left the settings file is not served; it
            // cannot be deleted or restored through an API either.
            let dir = shared.directory.load();
            if deleted && dir.get(&row.id).is_none() {
                return Err(ManageError::NotFound(name.to_string()));
            }
            let now = crate::now_rfc3339();
            row.deleted_at = deleted.then(|| now.clone());
            row.updated_at.clone_from(&now);
            let action = if deleted { "deleted" } else { "restored" };
            let change = recorded(&row, now, principal.clone(), action, Vec::new());
            let dns = current_dns(&row)?;
            if commit_update(shared, &row, &dns, &change)? {
                return Ok(shared.directory.load().get(&row.id).cloned());
            }
        }
        Err(ManageError::Failed(anyhow::anyhow!(
            "the tenant kept changing concurrently"
        )))
    })
    .await
}

/// Removes a deleted tenant for good (its configuration too). Its history stays.
pub async fn purge(rt: &Arc<Runtime>, principal: String, name: &str) -> Result<(), ManageError> {
    let name = parse_name(name)?;
    let shared = rt.shared().clone();
    blocking(&shared, move |shared| {
        let id = tenant_id(&name).to_string();
        match shared.store.tenant_row(&id)? {
            Some(row) if row.deleted_at.is_some() => {
                purge_row(shared, &row, principal)?;
                Ok(())
            }
            Some(_) => Err(ManageError::Invalid(format!(
                "Tenant '{name}' is not deleted; delete it first"
            ))),
            None => Err(ManageError::NotFound(name.to_string())),
        }
    })
    .await
}

fn purge_row(shared: &Shared, row: &TenantRow, principal: String) -> Result<(), StoreError> {
    let change = recorded(row, crate::now_rfc3339(), principal, "purged", Vec::new());
    shared.store.purge_tenant(&row.id, &change)?;
    publish(shared)
}

/// Purges deleted tenants whose grace period has passed (blocking). Returns how many.
/// Reads the deleted tenants only: the sweep runs at start and every ten
/// minutes, and reading every tenant (10,000: some 13 MB for a moment) left
/// the memory with the process.
pub fn purge_expired(shared: &Shared, grace: std::time::Duration) -> Result<usize, StoreError> {
    let now = std::time::SystemTime::now();
    let mut n = 0;
    for row in shared.store.deleted_tenant_rows()? {
        let expired = row
            .deleted_at
            .as_deref()
            .and_then(|at| humantime::parse_rfc3339(at).ok())
            .is_some_and(|at| now.duration_since(at).unwrap_or_default() >= grace);
        if expired {
            tracing::info!(tenant = %row.name, "purging a tenant deleted longer ago than the grace period");
            purge_row(shared, &row, "gateway".into())?;
            n += 1;
        }
    }
    Ok(n)
}
