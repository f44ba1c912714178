//! Creating a tenant: its users hashed, options and Hono document checked, one
//! store write with its `created` record, then published.

use super::checks::{
    check_option, generated_user, hash_users, stored_hono, trusted_dns, validated_hono,
};
use super::{
    Created, ManageError, TenantSpec, blocking, live_tenant, parse_name, publish, recorded,
};
use crate::config::Tier;
use crate::store::{Origin, TenantDoc, TenantRow, TenantWrite};
use crate::tenancy::tenant_id;
use crate::wasm::Runtime;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Creates a tenant.
pub async fn create(
    rt: &Arc<Runtime>,
    hasher: &crate::security::password::Hasher,
    principal: String,
    name: &str,
    spec: TenantSpec,
) -> Result<Created, ManageError> {
    let name = parse_name(name)?;
    let shared = rt.shared().clone();
    if !shared.directory.load().settings.multi_tenancy {
        return Err(ManageError::SingleTenant);
    }
    let mut users = spec.users;
    let mut generated = None;
    if users.is_empty() && spec.generate_user {
        let user = generated_user();
        generated = Some(user.clone());
        users.push(user);
    }
    let hashed = hash_users(hasher, &users).await?;
    let mut options = BTreeMap::new();
    for (k, v) in &spec.options {
        let (k, v) = check_option(k, v, Origin::Api)?;
        options.insert(k, v);
    }
    let (hono, enabled, dns) = match spec.hono {
        Some(doc) => {
            let doc = validated_hono(rt, &name, doc, true).await?;
            let dns = trusted_dns(&doc)?;
            let (doc, enabled) = stored_hono(doc);
            (Some(doc), enabled.unwrap_or(true), dns)
        }
        None => (None, true, Vec::new()),
    };
    let tier = options
        .get("Tier")
        .cloned()
        .unwrap_or_else(|| Tier::Basic.as_str().to_owned());
    let id = tenant_id(&name).to_string();
    let key = name.key();
    blocking(&shared, move |shared| {
        let mut fields = vec!["name".to_owned(), "enabled".to_owned()];
        let mut doc = TenantDoc {
            options,
            hono: hono.map(Box::new),
            generation: Some(argon2::password_hash::rand_core::RngCore::next_u64(
                &mut argon2::password_hash::rand_core::OsRng,
            )),
            ..TenantDoc::default()
        };
        for (user, phc) in hashed {
            fields.push(format!("users.{user}"));
            doc.users.insert(user, phc);
        }
        fields.extend(doc.options.keys().map(|k| format!("options.{k}")));
        if doc.hono.is_some() {
            fields.push("hono".into());
        }
        let now = crate::now_rfc3339();
        let row = TenantRow {
            id,
            name: name.as_str().to_owned(),
            tier,
            enabled,
            origin: Origin::Api,
            created_at: now.clone(),
            updated_at: now.clone(),
            deleted_at: None,
            version: 1,
            doc,
        };
        let change = recorded(&row, now, principal, "created", fields);
        match shared.store.write_tenant(&row, None, &dns, &change)? {
            TenantWrite::Written(_) => {}
            TenantWrite::Exists(existing) => {
                return Err(ManageError::Exists {
                    name: existing.name,
                    deleted: existing.deleted_at.is_some(),
                });
            }
            TenantWrite::DnTaken { dn, tenant } => return Err(ManageError::DnTaken { dn, tenant }),
            TenantWrite::Stale => return Err(ManageError::Failed(anyhow::anyhow!("stale create"))),
        }
        publish(shared)?;
        let tenant = live_tenant(&shared.directory.load(), &key)?;
        Ok(Created { tenant, generated })
    })
    .await
}
