//! Vespa config server Tenant API v2 over the one tenant model:
//! - `GET /application/v2/tenant/`: the names, as a JSON array.
//! - `GET /application/v2/tenant/{name}`: `{"message": "Tenant 'name' exists."}`.
//! - `PUT /application/v2/tenant/{name}`: creates, `{"message": "Tenant name created."}`.
//! - `DELETE /application/v2/tenant/{name}`: `{"message": "Tenant name deleted."}`.
//!
//! Errors: `{"error-code": "...", "message": "..."}` with 400 (bad name, exists),
//! 404 (unknown), 405 (wrong method), 401/403 (super-user only), 500.

use crate::http::{Body, Gateway, json_value, require_super_user};
use crate::manage::{self, ManageError, TenantSpec};
use http::{Method, Request, Response, StatusCode};
use serde_json::json;

/// The API's path prefix.
pub const PREFIX: &str = "/application/v2/tenant";

fn vespa_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json_value(status, &json!({"error-code": code, "message": message}))
}

fn message(text: String) -> Response<Body> {
    json_value(StatusCode::OK, &json!({ "message": text }))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= crate::config::TenantName::MAX_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn failure(e: ManageError) -> Response<Body> {
    match e {
        ManageError::NotFound(name) => vespa_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Tenant '{name}' was not found."),
        ),
        ManageError::Exists {
            name,
            deleted: false,
        } => vespa_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!("Tenant '{name}' already exists."),
        ),
        ManageError::Failed(e) => {
            tracing::error!(error = %format!("{e:#}"), "tenant API failed");
            vespa_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                "Internal server error",
            )
        }
        ManageError::Busy => vespa_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            &ManageError::Busy.to_string(),
        ),
        other => vespa_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &other.to_string()),
    }
}

/// Serves one request under [`PREFIX`] (super-user only).
pub(crate) async fn serve(gw: &Gateway, req: &Request<hyper::body::Incoming>) -> Response<Body> {
    if let Err(denied) = require_super_user(gw, req).await {
        let code = denied
            .status
            .canonical_reason()
            .unwrap_or("ERROR")
            .to_ascii_uppercase();
        let resp = vespa_error(denied.status, &code, denied.message);
        return denied.challenge(resp);
    }
    let rest = req.uri().path()[PREFIX.len()..].trim_start_matches('/');
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        if req.method() != Method::GET {
            return vespa_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                &format!("Method '{}' is not supported", req.method()),
            );
        }
        let dir = gw.runtime.shared().directory.load();
        let names: Vec<&str> = dir.iter().map(|t| t.name.as_str()).collect();
        return json_value(StatusCode::OK, &json!(names));
    }
    if rest.contains('/') {
        return vespa_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Nothing at '{}'", req.uri().path()),
        );
    }
    if !valid_name(rest) {
        return vespa_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!(
                "Illegal tenant name '{rest}': only letters, digits, '_' and '-' are allowed (at most 50)"
            ),
        );
    }
    let principal = "super-user".to_owned();
    match *req.method() {
        Method::GET => match gw.runtime.shared().directory.load().get(rest) {
            Some(t) => message(format!("Tenant '{}' exists.", t.name)),
            None => failure(ManageError::NotFound(rest.to_owned())),
        },
        Method::PUT => {
            match manage::create(
                &gw.runtime,
                &gw.auth.hasher,
                principal,
                rest,
                TenantSpec::default(),
            )
            .await
            {
                Ok(c) => message(format!("Tenant {} created.", c.tenant.name)),
                Err(e) => failure(e),
            }
        }
        Method::DELETE => match manage::delete(&gw.runtime, principal, rest).await {
            Ok(()) => message(format!("Tenant {rest} deleted.")),
            Err(e) => failure(e),
        },
        _ => vespa_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            &format!("Method '{}' is not supported", req.method()),
        ),
    }
}
