//! Changing a live tenant: users, options, Hono information; a lost race with
//! another writer is read again and retried.

use super::checks::{check_option, hash_users, stored_hono, trusted_dns, validated_hono};
use super::{ManageError, TenantUpdate, blocking, live_tenant, publish, recorded};
use crate::store::{Change, TenantRow, TenantWrite};
use crate::tenancy::{Shared, Tenant};
use crate::wasm::Runtime;
use serde_json::{Map, Value};
use std::sync::Arc;

/// How many times an update is retried when another one got in first.
pub(super) const UPDATE_ATTEMPTS: usize = 16;

/// Changes a live tenant.
pub async fn update(
    rt: &Arc<Runtime>,
    hasher: &crate::security::password::Hasher,
    principal: String,
    name: &str,
    update: TenantUpdate,
) -> Result<Arc<Tenant>, ManageError> {
    let shared = rt.shared().clone();
    let tenant = live_tenant(&shared.directory.load(), name)?;
    let hashed = hash_users(hasher, &update.users).await?;
    let mut options = Vec::new();
    for (k, v) in &update.options {
        options.push(check_option(k, v, tenant.origin)?);
    }
    let hono = match update.hono {
        Some(doc) => {
            let doc = validated_hono(rt, &tenant.name, doc, tenant.enabled).await?;
            let dns = trusted_dns(&doc)?;
            Some((stored_hono(doc), dns))
        }
        None => None,
    };
    blocking(&shared, move |shared| {
        let store = shared.store.as_ref();
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(mut row) = store.tenant_row(&tenant.id.to_string())? else {
                return Err(ManageError::NotFound(tenant.name.to_string()));
            };
            if row.deleted_at.is_some() {
                return Err(ManageError::NotFound(tenant.name.to_string()));
            }
            let mut fields = Vec::new();
            for (user, hash) in &hashed {
                fields.push(format!("users.{user}"));
                row.doc.users.insert(user.clone(), hash.clone());
            }
            for (k, v) in &options {
                if row.doc.options.get(k) != Some(v) {
                    fields.push(format!("options.{k}"));
                    row.doc.options.insert(k.clone(), v.clone());
                }
                if k == "Tier" {
                    row.tier.clone_from(v);
                }
            }
            let mut dns = current_dns(&row)?;
            if let Some(((doc, enabled), new_dns)) = &hono {
                let before = row.doc.hono.clone().unwrap_or_default();
                fields.extend(changed_members(&before, doc).map(|k| format!("hono.{k}")));
                if let Some(enabled) = enabled
                    && *enabled != row.enabled
                {
                    fields.push("enabled".into());
                    row.enabled = *enabled;
                }
                row.doc.hono = Some(Box::new(doc.clone()));
                dns.clone_from(new_dns);
            }
            let now = crate::now_rfc3339();
            row.updated_at.clone_from(&now);
            let change = recorded(&row, now, principal.clone(), "updated", fields);
            if commit_update(shared, &row, &dns, &change)? {
                return live_tenant(&shared.directory.load(), &tenant.key);
            }
        }
        Err(ManageError::Failed(anyhow::anyhow!(
            "the tenant kept changing concurrently"
        )))
    })
    .await
}

/// Writes an updated row (read at `row.version`) and publishes the result.
/// `Ok(false)`: another change got in first; read again and retry.
pub(super) fn commit_update(
    shared: &Shared,
    row: &TenantRow,
    dns: &[String],
    change: &Change,
) -> Result<bool, ManageError> {
    match shared
        .store
        .write_tenant(row, Some(row.version), dns, change)?
    {
        TenantWrite::Written(_) => {
            publish(shared)?;
            Ok(true)
        }
        TenantWrite::Stale => Ok(false),
        TenantWrite::DnTaken { dn, tenant } => Err(ManageError::DnTaken { dn, tenant }),
        TenantWrite::Exists(_) => unreachable!("an update never reports Exists"),
    }
}

/// The top-level members that differ between two Hono documents.
fn changed_members<'a>(
    before: &'a Map<String, Value>,
    after: &'a Map<String, Value>,
) -> impl Iterator<Item = &'a String> + 'a {
    let mut keys: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
}

pub(super) fn current_dns(row: &TenantRow) -> Result<Vec<String>, ManageError> {
    match &row.doc.hono {
        Some(h) => trusted_dns(h),
        None => Ok(Vec::new()),
    }
}
