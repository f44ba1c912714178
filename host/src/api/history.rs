//! The change history of a tenant and the rollback of its configuration, served
//! under the config API's paths and in its error format:
//! - `GET /api/v1/tenants/{id}/history[?limit=N]`: newest first.
//! - `POST /api/v1/tenants/{id}/config/rollback` with `{"version": N}`: the
//!   configuration as it was at version N, validated again, written as a new
//!   version and recorded as `rolled-back`.

use crate::http::{Body, Gateway, error, json_value};
use crate::store::{Change, Expect, HistoryEntry, Subject};
use crate::tenancy::Tenant;
use crate::wasm::CallError;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Most entries one history request returns.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;
const CONFIGS: &str = "configs";

fn entry_json(e: &HistoryEntry) -> Value {
    let mut v = json!({
        "seq": e.seq,
        "at": e.change.at,
        "principal": e.change.principal,
        "subject": e.change.subject,
        "action": e.change.action,
        "fields": e.change.fields,
    });
    if let Some(version) = e.version {
        v["version"] = json!(version);
    }
    v
}

fn internal(e: impl std::fmt::Display, tenant: &str) -> Response<Body> {
    tracing::error!(error = %e, "history request failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The change history could not be read or written",
        Some(tenant),
    )
}

/// `GET …/history`.
pub(crate) async fn list(
    gw: &Gateway,
    tenant: &Arc<Tenant>,
    query: Option<&str>,
) -> Response<Body> {
    let id = tenant.id.to_string();
    let limit = match query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        .find(|(k, _)| k == "limit")
    {
        None => DEFAULT_LIMIT,
        Some((_, v)) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                    Some(&id),
                );
            }
        },
    };
    let store = gw.runtime.shared().store.clone();
    let key = id.clone();
    let entries = tokio::task::spawn_blocking(move || store.history(&key, limit)).await;
    match entries {
        Ok(Ok(entries)) => json_value(
            StatusCode::OK,
            &json!({
                "tenant_id": id,
                "tenant": tenant.name.as_str(),
                // A purge leaves only its own record, which belongs to the
                // tenant that is gone, not to one made again under its name.
                "history": entries
                    .iter()
                    .filter(|e| e.change.action != "purged")
                    .map(entry_json)
                    .collect::<Vec<_>>(),
            }),
        ),
        Ok(Err(e)) => internal(e, &id),
        Err(e) => internal(e, &id),
    }
}

/// How many times a rollback retries when an update got in first.
const ROLLBACK_ATTEMPTS: usize = 16;

/// `POST …/config/rollback`.
pub(crate) async fn rollback(
    gw: &Gateway,
    tenant: &Arc<Tenant>,
    req: Request<Bytes>,
    principal: String,
) -> Response<Body> {
    let id = tenant.id.to_string();
    let bad = |msg: &str| error(StatusCode::BAD_REQUEST, msg, Some(&id));
    let version = match serde_json::from_slice::<Value>(req.body()) {
        Ok(Value::Object(o)) => match o.get("version").and_then(Value::as_i64) {
            Some(v) if v >= 1 && o.len() == 1 => v,
            _ => {
                return bad(
                    "The body must be {\"version\": N} with N a configuration version from the history",
                );
            }
        },
        _ => return bad("The body must be a JSON object: {\"version\": N}"),
    };
    let store = gw.runtime.shared().store.clone();
    let key = id.clone();
    let old = match tokio::task::spawn_blocking(move || store.config_at(&key, version)).await {
        Ok(Ok(Some(old))) => old,
        Ok(Ok(None)) => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("Configuration version {version} is not in the history of this tenant"),
                Some(&id),
            );
        }
        Ok(Err(e)) => return internal(e, &id),
        Err(e) => return internal(e, &id),
    };
    let Ok(Value::Object(mut sections)) = serde_json::from_slice::<Value>(&old) else {
        return internal("stored configuration is unreadable", &id);
    };
    sections.shift_remove("tenant_id");
    sections.shift_remove("updated_at");
    // The rules may have changed since: an old configuration is checked again.
    match gw
        .runtime
        .validate_config(
            &Value::Object(sections.clone()).to_string(),
            Some(&tenant.name.key()),
        )
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(violations)) => {
            let message: Vec<&str> = violations.iter().map(|v| v.message.as_str()).collect();
            return crate::http::error_details(
                StatusCode::BAD_REQUEST,
                &format!(
                    "Configuration version {version} no longer passes validation: {}",
                    message.join("; ")
                ),
                Some(&id),
                &violations,
            );
        }
        Err(e) => {
            let CallError::Busy = e else {
                tracing::error!(error = %e, "validator failed during a rollback");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error in component validator",
                    Some(&id),
                );
            };
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The gateway is at capacity; retry shortly",
                Some(&id),
            );
        }
    }
    let store = gw.runtime.shared().store.clone();
    let (key, name) = (id.clone(), tenant.name.to_string());
    let written = tokio::task::spawn_blocking(move || {
        for _ in 0..ROLLBACK_ATTEMPTS {
            let current = store.get(CONFIGS, &key)?;
            let now = crate::now_rfc3339();
            let mut doc = Map::with_capacity(sections.len() + 2);
            doc.insert("tenant_id".into(), Value::String(key.clone()));
            doc.extend(sections.clone());
            doc.insert("updated_at".into(), Value::String(now.clone()));
            let value = Value::Object(doc).to_string().into_bytes();
            let before = current.as_ref().map(|c| c.value.clone());
            let fields = crate::store::changed_fields(before.as_deref(), Some(&value));
            let change = Change {
                tenant_id: key.clone(),
                tenant_name: name.clone(),
                at: now.clone(),
                principal: principal.clone(),
                subject: Subject::Config,
                action: "rolled-back".into(),
                fields: fields.clone(),
                before,
            };
            let expected = current
                .as_ref()
                .map_or(Expect::Absent, |c| Expect::Version(c.version));
            if let Some(v) = store.write_recorded(CONFIGS, &key, expected, Some(&value), &change)? {
                return Ok(Some((v, fields, now)));
            }
        }
        Ok::<_, crate::store::StoreError>(None)
    })
    .await;
    match written {
        Ok(Ok(Some((new_version, fields, now)))) => json_value(
            StatusCode::OK,
            &json!({
                "tenant_id": id,
                "message": format!("Configuration rolled back to version {version}"),
                "version": new_version,
                "updated_fields": fields,
                "updated_at": now,
            }),
        ),
        Ok(Ok(None)) => error(
            StatusCode::CONFLICT,
            "The configuration kept changing concurrently; retry the rollback",
            Some(&id),
        ),
        Ok(Err(e)) => internal(e, &id),
        Err(e) => internal(e, &id),
    }
}
