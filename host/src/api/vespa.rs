//! Vespa config server Tenant API v2 over the one tenant model:
//! - `GET /application/v2/tenant/`: the names, as a JSON array.
//! - `GET /application/v2/tenant/{name}`: `{"message": "Tenant 'name' exists."}`.
//! - `PUT /application/v2/tenant/{name}`: creates, `{"message": "Tenant name created."}`.
//! - `DELETE /application/v2/tenant/{name}`: `{"message": "Tenant name deleted."}`.
//!
//! Errors: `{"error-code": "...", "message": "..."}` with 400 (bad name, exists),
//! 404 (unknown), 405 (wrong method), 401/403 (super-user only), 500.

use crate::http::{Body, Gateway, Param, Routes, SuperUser, Surface, json_body, methods, mount};
use crate::manage::{self, ManageError, TenantSpec};
use axum::extract::{FromRequestParts, State};
use axum::routing::get;
use http::request::Parts;
use http::{Response, StatusCode};
use serde::Serialize;
use std::sync::Arc;
use utoipa::{IntoResponses, OpenApi, ToSchema};

/// The API's path prefix.
pub const PREFIX: &str = "/application/v2/tenant";

fn vespa_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json_body(status, &VespaError { code, message })
}

fn message(text: String) -> Response<Body> {
    json_body(StatusCode::OK, &VespaMessage { message: &text })
}

/// What an operation did.
#[derive(Serialize, ToSchema)]
struct VespaMessage<'a> {
    #[schema(example = "Tenant 'mytenant' exists.")]
    message: &'a str,
}

/// Every error of the API.
#[derive(Serialize, ToSchema)]
struct VespaError<'a> {
    /// The status's name.
    #[serde(rename = "error-code")]
    #[schema(example = "NOT_FOUND")]
    code: &'a str,
    message: &'a str,
}

/// The refusals of every operation.
#[derive(IntoResponses)]
#[allow(dead_code)] // a document: what the handlers answer, never built
enum Refusals {
    /// Not the super-user's Basic credentials.
    #[response(status = 401)]
    Unauthorized(VespaError<'static>),
    /// Not the super-user.
    #[response(status = 403)]
    Forbidden(VespaError<'static>),
    /// Method not supported.
    #[response(status = 405)]
    NotAllowed(VespaError<'static>),
}

/// The API's part of `/openapi.json`.
#[derive(OpenApi)]
#[openapi(paths(list, read, create, delete))]
pub struct Doc;

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

/// The API's errors, and its label.
struct Vespa;

impl Surface for Vespa {
    const ROUTE: &'static str = "tenants";

    fn error(_: &Parts, status: StatusCode, message: &str) -> Response<Body> {
        coded(status, message)
    }
}

/// An error whose code is its status's name (`NOT_FOUND`, `METHOD_NOT_ALLOWED`).
fn coded(status: StatusCode, message: &str) -> Response<Body> {
    let code = status
        .canonical_reason()
        .unwrap_or("ERROR")
        .to_ascii_uppercase()
        .replace(' ', "_");
    vespa_error(status, &code, message)
}

/// The routes under [`PREFIX`] (super-user only), with or without a trailing `/`.
pub fn routes() -> Routes {
    mount::<Vespa>(
        PREFIX,
        [
            ("/", methods::<Vespa>(get(list))),
            (
                "/{name}",
                methods::<Vespa>(get(read).put(create).delete(delete)),
            ),
        ],
    )
}

/// A tenant name in the path, as Vespa allows them (else 400).
struct Name(String);

impl FromRequestParts<Arc<Gateway>> for Name {
    type Rejection = Response<Body>;

    async fn from_request_parts(
        parts: &mut Parts,
        gw: &Arc<Gateway>,
    ) -> Result<Self, Self::Rejection> {
        let Param(name, ..) = Param::<Vespa>::from_request_parts(parts, gw).await?;
        if valid_name(&name) {
            Ok(Name(name))
        } else {
            Err(vespa_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!(
                    "Illegal tenant name '{name}': only letters, digits, '_' and '-' are allowed (at most 50)"
                ),
            ))
        }
    }
}

/// Tenant names.
#[utoipa::path(get, path = "/application/v2/tenant/", tag = "Tenants (Vespa)", operation_id = "vespaListTenants",
    security(("superUser" = [])),
    responses((status = 200, description = "Tenant names", body = Vec<String>), Refusals))]
async fn list(State(gw): State<Arc<Gateway>>, _: SuperUser<Vespa>) -> Response<Body> {
    let dir = gw.runtime.shared().directory.load();
    let names: Vec<&str> = dir.iter().map(|t| t.name.as_str()).collect();
    json_body(StatusCode::OK, &names)
}

/// Whether the tenant exists.
#[utoipa::path(get, path = "/application/v2/tenant/{name}", tag = "Tenants (Vespa)", operation_id = "vespaGetTenant",
    params(("name" = String, Path, pattern = "^[a-zA-Z0-9_-]{1,50}$")), security(("superUser" = [])),
    responses(
        (status = 200, description = "Tenant 'name' exists.", body = VespaMessage),
        (status = 400, description = "Illegal name", body = VespaError),
        (status = 404, description = "No such tenant", body = VespaError),
        Refusals))]
async fn read(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Vespa>,
    Name(name): Name,
) -> Response<Body> {
    match gw.runtime.shared().directory.load().get(&name) {
        Some(t) => message(format!("Tenant '{}' exists.", t.name)),
        None => failure(ManageError::NotFound(name)),
    }
}

/// Creates a tenant.
#[utoipa::path(put, path = "/application/v2/tenant/{name}", tag = "Tenants (Vespa)", operation_id = "vespaCreateTenant",
    params(("name" = String, Path, pattern = "^[a-zA-Z0-9_-]{1,50}$")), security(("superUser" = [])),
    responses(
        (status = 200, description = "Tenant name created.", body = VespaMessage),
        (status = 400, description = "Illegal name, or the tenant exists", body = VespaError),
        Refusals))]
async fn create(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Vespa>,
    Name(name): Name,
) -> Response<Body> {
    match manage::create(
        &gw.runtime,
        &gw.auth.hasher,
        PRINCIPAL.to_owned(),
        &name,
        TenantSpec::default(),
    )
    .await
    {
        Ok(c) => message(format!("Tenant {} created.", c.tenant.name)),
        Err(e) => failure(e),
    }
}

/// Deletes a tenant (restorable through /_tenants/{tenant}/_restore).
#[utoipa::path(delete, path = "/application/v2/tenant/{name}", tag = "Tenants (Vespa)", operation_id = "vespaDeleteTenant",
    params(("name" = String, Path, pattern = "^[a-zA-Z0-9_-]{1,50}$")), security(("superUser" = [])),
    responses(
        (status = 200, description = "Tenant name deleted.", body = VespaMessage),
        (status = 400, description = "Illegal name", body = VespaError),
        (status = 404, description = "No such tenant", body = VespaError),
        Refusals))]
async fn delete(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Vespa>,
    Name(name): Name,
) -> Response<Body> {
    match manage::delete(&gw.runtime, PRINCIPAL.to_owned(), &name).await {
        Ok(()) => message(format!("Tenant {name} deleted.")),
        Err(e) => failure(e),
    }
}

/// Who the change history names for this API's changes.
const PRINCIPAL: &str = "super-user";
