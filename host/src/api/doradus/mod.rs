//! Doradus-style tenant management at `/_tenants`, over the one tenant model:
//! - `POST /_tenants`: creates (201; 409 when the name is taken). With no users
//!   given, a user and password are made up and shown in this response only.
//! - `GET /_tenants`: every tenant with its applications (the apps its routes
//!   lead to, and `upstream`).
//! - `GET /_tenants/{tenant}`: name, user names, options. Passwords are never
//!   returned: they are stored as Argon2id hashes.
//! - `PUT /_tenants/{tenant}`: adds users, changes passwords, sets options.
//! - `DELETE /_tenants/{tenant}`: stops serving the tenant at once; it can be
//!   restored with its configuration (`POST /_tenants/{tenant}/_restore`) for
//!   the restore grace period, or purged now with `?purge=true`.
//!
//! XML by default; JSON with `?format=json` or an `Accept` that prefers it.
//! Request bodies are read as XML or JSON by their `Content-Type` (415 for any
//! other). Errors: `<error>message</error>` or `{"error": "message"}`.
//! Super-user Basic credentials only.

mod document;

#[cfg(test)]
pub(crate) use document::{parse_json, parse_xml};

use crate::http::{
    Body, BodyError, Gateway, Param, Routes, SuperUser, Surface, full, methods, mount, read_limited,
};
use crate::manage::{self, ManageError, TenantSpec, TenantUpdate};
use crate::tenancy::Tenant;
use axum::extract::{Request, State};
use axum::routing::{get, post};
use bytes::Bytes;
use document::{
    Definition, Format, JsonError, JsonTenant, JsonTenants, Parsed, created_document,
    stored_document,
};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use http::request::Parts;
use http::{Response, StatusCode};
use std::sync::Arc;

/// The API's path.
pub const PREFIX: &str = "/_tenants";

/// Who history names as the author of changes made here.
const PRINCIPAL: &str = "super-user";

fn answer(status: StatusCode, format: Format, body: String) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp
}

fn fail(status: StatusCode, format: Format, message: &str) -> Response<Body> {
    answer(status, format, document::error_document(format, message))
}

fn failure(format: Format, e: ManageError) -> Response<Body> {
    fail(e.status(), format, &e.public_message())
}

/// Reads and parses the body of a create or update.
#[allow(clippy::result_large_err)]
async fn definition(
    gw: &Gateway,
    req: Request,
    format: Format,
    path_tenant: Option<&str>,
) -> Result<Definition, Response<Body>> {
    let req = read_limited(gw, req)
        .await
        .map_err(|e: BodyError| fail(e.status(), format, &e.to_string()))?;
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?"));
    match Definition::parse(content_type, req.body(), path_tenant) {
        Parsed::Ok(def) => Ok(def),
        Parsed::Invalid(message) => Err(fail(StatusCode::BAD_REQUEST, format, &message)),
        Parsed::Unsupported => Err(fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format,
            "Send the tenant definition as application/xml or application/json",
        )),
    }
}

/// The API's errors (in the request's format), and its label.
struct Doradus;

impl Surface for Doradus {
    const ROUTE: &'static str = "tenants";

    fn error(parts: &Parts, status: StatusCode, message: &str) -> Response<Body> {
        fail(status, Format::of(&parts.uri, &parts.headers), message)
    }
}

/// The API's part of `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, create, read, update, delete, restore))]
pub struct Doc;

/// The routes under [`PREFIX`] (super-user only).
pub fn routes() -> Routes {
    mount::<Doradus>(
        PREFIX,
        [
            ("/", methods::<Doradus>(get(list).post(create))),
            (
                "/{tenant}",
                methods::<Doradus>(get(read).put(update).delete(delete)),
            ),
            ("/{tenant}/_restore", methods::<Doradus>(post(restore))),
        ],
    )
}

impl<State: Send + Sync> axum::extract::FromRequestParts<State> for Format {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &State) -> Result<Self, Self::Rejection> {
        Ok(Format::of(&parts.uri, &parts.headers))
    }
}

/// Every tenant with its applications (the apps its routes lead to, and upstream).
#[utoipa::path(get, path = "/_tenants", tag = "Tenants (Doradus)", operation_id = "doradusListTenants",
    params(("format" = Option<String>, Query, description = "Answer format (xml or json); without it, Accept decides, else XML")), security(("superUser" = [])),
    responses(
        (status = 200, description = "Every tenant with its applications", content((JsonTenants = "application/json"), (String = "application/xml"))),
        (status = 401, description = "Not the super-user's Basic credentials (see WWW-Authenticate)", content((JsonError = "application/json"), (String = "application/xml"))),
        (status = 403, description = "Valid credentials, but not the super-user's", content((JsonError = "application/json"), (String = "application/xml")))))]
async fn list(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Doradus>,
    format: Format,
) -> Response<Body> {
    answer(
        StatusCode::OK,
        format,
        document::list_document(format, &gw.runtime.shared().directory.load()),
    )
}

/// Creates a tenant; with no users given, makes one up and returns its password once.
#[utoipa::path(post, path = "/_tenants", tag = "Tenants (Doradus)", operation_id = "doradusCreateTenant",
    params(("format" = Option<String>, Query, description = "Answer format (xml or json); without it, Accept decides, else XML")), security(("superUser" = [])),
    request_body(content((JsonTenant = "application/json"), (String = "application/xml", example = json!("<tenant name=\"HelloKitty\"><users><user name=\"Katniss\" password=\"Everdeen-1\"/></users></tenant>")))),
    responses(
        (status = 201, description = "Created: the definition, with the made-up user's password when none was given (shown this once)", content((JsonTenant = "application/json"), (String = "application/xml"))),
        (status = 400, description = "Invalid definition", content((JsonError = "application/json"), (String = "application/xml"))),
        (status = 409, description = "The tenant exists, or was deleted and can still be restored", content((JsonError = "application/json"), (String = "application/xml"))),
        (status = 415, description = "Neither XML nor JSON", content((JsonError = "application/json"), (String = "application/xml"))),
        (status = 401, description = "Not the super-user's Basic credentials (see WWW-Authenticate)", content((JsonError = "application/json"), (String = "application/xml"))),
        (status = 403, description = "Valid credentials, but not the super-user's", content((JsonError = "application/json"), (String = "application/xml")))))]
async fn create(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Doradus>,
    format: Format,
    req: Request,
) -> Response<Body> {
    let def = match definition(&gw, req, format, None).await {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    let Some(name) = def.name else {
        return fail(
            StatusCode::BAD_REQUEST,
            format,
            "The tenant definition needs a name",
        );
    };
    let spec = TenantSpec {
        users: def.users.clone(),
        options: def.options,
        hono: None,
        generate_user: true,
    };
    match manage::create(
        &gw.runtime,
        &gw.auth.hasher,
        PRINCIPAL.to_owned(),
        &name,
        spec,
    )
    .await
    {
        Ok(created) => {
            let body = created_document(format, &created, &def.users);
            let mut resp = answer(StatusCode::CREATED, format, body);
            let location = format!("{PREFIX}/{}", created.tenant.name);
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(LOCATION, v);
            }
            // It may carry a generated password.
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => failure(format, e),
    }
}

/// A tenant as stored (200), or why not.
fn stored(format: Format, result: Result<Arc<Tenant>, ManageError>) -> Response<Body> {
    match result {
        Ok(t) => answer(StatusCode::OK, format, stored_document(format, &t)),
        Err(e) => failure(format, e),
    }
}

/// Brings a deleted tenant back with its users, options and configuration.
#[utoipa::path(post, path = "/_tenants/{tenant}/_restore", tag = "Tenants (Doradus)", operation_id = "doradusRestoreTenant",
    params(("tenant" = String, Path, pattern = "^[A-Za-z0-9_-]{1,50}$"), ("format" = Option<String>, Query, description = "Answer format (xml or json); without it, Accept decides, else XML")), security(("superUser" = [])),
    responses(
        (status = 200, description = "Restored", content((JsonTenant = "application/json"), (String = "application/xml"))),
        (status = 404, description = "No deleted tenant of that name", content((JsonError = "application/json"), (String = "application/xml"))),
        (status = 401, description = "Not the super-user's Basic credentials (see WWW-Authenticate)", content((JsonError = "application/json"), (String = "application/xml"))),
        (status = 403, description = "Valid credentials, but not the super-user's", content((JsonError = "application/json"), (String = "application/xml")))))]
async fn restore(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Doradus>,
    format: Format,
    Param(name, ..): Param<Doradus>,
) -> Response<Body> {
    stored(
        format,
        manage::restore(&gw.runtime, PRINCIPAL.to_owned(), &name).await,
    )
}

/// One tenant.
#[utoipa::path(get, path = "/_tenants/{tenant}", tag = "Tenants (Doradus)", operation_id = "doradusGetTenant",
    params(("tenant" = String, Path, pattern = "^[A-Za-z0-9_-]{1,50}$"), ("format" = Option<String>, Query, description = "Answer format (xml or json); without it, Accept decides, else XML")), security(("superUser" = [])),
    responses(
        (status = 200, description = "Name, user names (never passwords), options", content((JsonTenant = "application/json"), (String = "application/xml"))),
        (status = 404, description = "No such tenant", content((JsonError = "application/json"), (String = "application/xml"))),
        (status = 401, description = "Not the super-user's Basic credentials (see WWW-Authenticate)", content((JsonError = "application/json"), (String = "application/xml"))),
        (status = 403, description = "Valid credentials, but not the super-user's", content((JsonError = "application/json"), (String = "application/xml")))))]
async fn read(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Doradus>,
    format: Format,
    Param(name, ..): Param<Doradus>,
) -> Response<Body> {
    match gw.runtime.shared().directory.load().get(&name) {
        Some(t) => answer(StatusCode::OK, format, stored_document(format, t)),
        None => failure(format, ManageError::NotFound(name)),
    }
}

/// Adds users, changes passwords, sets options.
#[utoipa::path(put, path = "/_tenants/{tenant}", tag = "Tenants (Doradus)", operation_id = "doradusUpdateTenant",
    params(("tenant" = String, Path, pattern = "^[A-Za-z0-9_-]{1,50}$"), ("format" = Option<String>, Query, description = "Answer format (xml or json); without it, Accept decides, else XML")), security(("superUser" = [])),
    request_body(content((JsonTenant = "application/json"), (String = "application/xml", example = json!("<tenant name=\"HelloKitty\"><users><user name=\"Katniss\" password=\"Everdeen-1\"/></users></tenant>")))),
    responses(
        (status = 200, description = "Name, user names (never passwords), options", content((JsonTenant = "application/json"), (String = "application/xml"))),
        (status = 400, description = "Invalid definition", content((JsonError = "application/json"), (String = "application/xml"))),
        (status = 404, description = "No such tenant", content((JsonError = "application/json"), (String = "application/xml"))),
        (status = 415, description = "Neither XML nor JSON", content((JsonError = "application/json"), (String = "application/xml"))),
        (status = 401, description = "Not the super-user's Basic credentials (see WWW-Authenticate)", content((JsonError = "application/json"), (String = "application/xml"))),
        (status = 403, description = "Valid credentials, but not the super-user's", content((JsonError = "application/json"), (String = "application/xml")))))]
async fn update(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Doradus>,
    format: Format,
    Param(name, ..): Param<Doradus>,
    req: Request,
) -> Response<Body> {
    let def = match definition(&gw, req, format, Some(&name)).await {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    if let Some(other) = def.name.as_deref()
        && !other.eq_ignore_ascii_case(&name)
    {
        return fail(
            StatusCode::BAD_REQUEST,
            format,
            &format!("The document names tenant '{other}', the path '{name}'"),
        );
    }
    let update = TenantUpdate {
        users: def.users,
        options: def.options,
        hono: None,
    };
    let updated = manage::update(
        &gw.runtime,
        &gw.auth.hasher,
        PRINCIPAL.to_owned(),
        &name,
        update,
    )
    .await;
    stored(format, updated)
}

/// Stops serving the tenant; restorable with its configuration for 72 hours.
#[utoipa::path(delete, path = "/_tenants/{tenant}", tag = "Tenants (Doradus)", operation_id = "doradusDeleteTenant",
    params(("tenant" = String, Path, pattern = "^[A-Za-z0-9_-]{1,50}$"), ("format" = Option<String>, Query, description = "Answer format (xml or json); without it, Accept decides, else XML"), ("purge" = Option<bool>, Query, description = "Remove it and its configuration for good now")), security(("superUser" = [])),
    responses(
        (status = 204, description = "Deleted (restorable for 72 hours unless purge=true)"),
        (status = 404, description = "No such tenant", content((JsonError = "application/json"), (String = "application/xml"))),
        (status = 401, description = "Not the super-user's Basic credentials (see WWW-Authenticate)", content((JsonError = "application/json"), (String = "application/xml"))),
        (status = 403, description = "Valid credentials, but not the super-user's", content((JsonError = "application/json"), (String = "application/xml")))))]
async fn delete(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Doradus>,
    format: Format,
    Param(name, ..): Param<Doradus>,
    req: Request,
) -> Response<Body> {
    let rt = &gw.runtime;
    let principal = || PRINCIPAL.to_owned();
    let purge = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .any(|(k, v)| k == "purge" && v.eq_ignore_ascii_case("true"));
    let result = match manage::delete(rt, principal(), &name).await {
        Ok(()) if !purge => Ok(()),
        Ok(()) | Err(ManageError::NotFound(_)) if purge => {
            manage::purge(rt, principal(), &name).await
        }
        other => other,
    };
    match result {
        Ok(()) => {
            let mut resp = Response::new(full(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp
        }
        Err(e) => failure(format, e),
    }
}
