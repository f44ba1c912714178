//! The change history of a tenant and the rollback of its configuration, served
//! under the config API's paths and in its error format:
//! - `GET /api/v1/tenants/{id}/history[?limit=N]`: newest first.
//! - `POST /api/v1/tenants/{id}/config/rollback` with `{"version": N}`: the
//!   configuration as it was at version N, validated again, written as a new
//!   version and recorded as `rolled-back`.

use crate::api::config::{ApiRefusals, TenantPath};
use crate::http::{Body, ErrorBody, Gateway, error, json_body};
use crate::store::{Change, Expect, HistoryEntry, Subject};
use crate::tenancy::Tenant;
use crate::wasm::CallError;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use utoipa::ToSchema;

/// Most entries one history request returns.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;
use crate::store::CONFIGS_BUCKET as CONFIGS;

/// A tenant's changes.
#[derive(Serialize, ToSchema)]
struct History<'a> {
    #[schema(format = "uuid")]
    tenant_id: &'a str,
    tenant: &'a str,
    /// Newest first.
    history: Vec<Item<'a>>,
}

/// One change.
#[derive(Serialize, ToSchema)]
#[schema(as = HistoryEntry)]
struct Item<'a> {
    /// Position in the store's change sequence.
    seq: i64,
    #[schema(format = DateTime)]
    at: &'a str,
    #[schema(examples("super-user", "client:my-client", "user:Tenant1/ops", "settings"))]
    principal: &'a str,
    subject: Subject,
    #[schema(examples("created", "updated", "deleted", "restored", "purged", "rolled-back"))]
    action: &'a str,
    /// The fields changed.
    fields: &'a [String],
    /// The configuration version written (config changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i64>,
}

impl<'a> From<&'a HistoryEntry> for Item<'a> {
    fn from(e: &'a HistoryEntry) -> Self {
        Item {
            seq: e.seq,
            at: &e.change.at,
            principal: &e.change.principal,
            subject: e.change.subject,
            action: &e.change.action,
            fields: &e.change.fields,
            version: e.version,
        }
    }
}

/// The body of a rollback.
#[derive(ToSchema)]
#[allow(dead_code)] // a document: the handler reads the object itself
struct RollbackRequest {
    /// A configuration version from the history.
    #[schema(minimum = 1)]
    version: i64,
}

/// A rollback done.
#[derive(Serialize, ToSchema)]
struct RollbackResult<'a> {
    #[schema(format = "uuid")]
    tenant_id: &'a str,
    message: String,
    /// The new configuration version.
    version: i64,
    updated_fields: &'a [String],
    #[schema(format = DateTime)]
    updated_at: &'a str,
}

fn internal(e: impl std::fmt::Display, tenant: &str) -> Response<Body> {
    tracing::error!(error = %e, "history request failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The change history could not be read or written",
        Some(tenant),
    )
}

/// Changes of the tenant and its configuration, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{id}/history", tag = "Configuration", operation_id = "getTenantHistory",
    params(TenantPath,
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000)),
    security(("bearerAuth" = []), ("clientCredentials" = []), ("superUser" = [])),
    responses(
        (status = 200, description = "The history", body = History),
        (status = 400, description = "Bad limit", body = ErrorBody),
        ApiRefusals))]
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
        Ok(Ok(entries)) => json_body(
            StatusCode::OK,
            &History {
                tenant_id: &id,
                tenant: tenant.name.as_str(),
                // A purge leaves only its own record, which belongs to the
                // tenant that is gone, not to one made again under its name.
                history: entries
                    .iter()
                    .filter(|e| e.change.action != "purged")
                    .map(Item::from)
                    .collect(),
            },
        ),
        Ok(Err(e)) => internal(e, &id),
        Err(e) => internal(e, &id),
    }
}

/// How many times a rollback retries when an update got in first.
const ROLLBACK_ATTEMPTS: usize = 16;

/// Restores the configuration of an earlier version (validated again, recorded in history).
#[utoipa::path(post, path = "/api/v1/tenants/{id}/config/rollback", tag = "Configuration", operation_id = "rollbackTenantConfig",
    params(TenantPath),
    security(("bearerAuth" = []), ("clientCredentials" = []), ("superUser" = [])),
    request_body = RollbackRequest,
    responses(
        (status = 200, description = "Rolled back", body = RollbackResult),
        (status = 400, description = "Bad body, or the old configuration breaks today's rules", body = ErrorBody),
        (status = 409, description = "Concurrent updates kept conflicting", body = ErrorBody),
        ApiRefusals))]
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
            Some(&tenant.key),
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
        Ok(Ok(Some((new_version, fields, now)))) => json_body(
            StatusCode::OK,
            &RollbackResult {
                tenant_id: &id,
                message: format!("Configuration rolled back to version {version}"),
                version: new_version,
                updated_fields: &fields,
                updated_at: &now,
            },
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
