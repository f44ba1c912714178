//! Hono tenant information over HTTP, over the one tenant model:
//! - `GET /hono/v1/tenants?tenant-id={id}` or `?subject-dn={dn}`: exactly one
//!   of the two, else 400. A subject DN matches a trusted CA of the tenant as an
//!   RFC 2253 name (attribute type case, spacing, escapes do not matter).
//! - `GET /hono/v1/tenants/{id}`: the same as `?tenant-id={id}`.
//! - `PUT /hono/v1/tenants/{id}`: sets a tenant's information (201 when this
//!   creates the tenant, 200 when it replaces the information of one). Checked
//!   against `schemas/hono-tenant.schema.json` by the validator component.
//!
//! Reads are for the super-user, and for a tenant's own users and clients about
//! their own tenant (403 otherwise); a successful read carries a
//! `Cache-Control` directive. Writes are for the super-user. Errors:
//! `{"error": "message"}`.

use crate::api::openapi::HonoTenant;
use crate::http::{
    Body, Gateway, Param, Routes, SuperUser, Surface, json_body, methods, mount, read_limited,
};
use crate::manage::{self, ManageError, TenantSpec, TenantUpdate};
use crate::security::auth::Principal;
use crate::telemetry::Rejection;
use crate::tenancy::Tenant;
use axum::extract::{Request, State};
use axum::routing::get;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use http::request::Parts;
use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use utoipa::{IntoResponses, OpenApi, ToSchema};

/// The API's path.
pub const PREFIX: &str = "/hono/v1/tenants";

use crate::tenancy::HONO_CACHE_DIRECTIVE as CACHE_DIRECTIVE;

fn fail(status: StatusCode, message: &str) -> Response<Body> {
    json_body(status, &HonoError { error: message })
}

/// Every error of the API.
#[derive(Serialize, ToSchema)]
struct HonoError<'a> {
    error: &'a str,
}

/// The refusals of every read.
#[derive(IntoResponses)]
#[allow(dead_code)] // a document: what the handlers answer, never built
enum ReadRefusals {
    /// Not exactly one of tenant-id and subject-dn, or a malformed DN.
    #[response(status = 400)]
    BadRequest(HonoError<'static>),
    /// Missing or invalid credentials.
    #[response(status = 401)]
    Unauthorized(HonoError<'static>),
    /// The caller may not read this tenant's information.
    #[response(status = 403)]
    Forbidden(HonoError<'static>),
    /// No tenant matches.
    #[response(status = 404)]
    NotFound(HonoError<'static>),
}

/// The API's part of `/openapi.json`.
#[derive(OpenApi)]
#[openapi(paths(search, read_one, write_one))]
pub struct Doc;

fn found(status: StatusCode, tenant: &Tenant) -> Response<Body> {
    let mut resp = json_body(status, &tenant.hono_document());
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(CACHE_DIRECTIVE));
    resp
}

/// What a read looks for.
enum Criterion {
    TenantId(String),
    SubjectDn(String),
}

fn criterion(path_id: Option<&str>, query: Option<&str>) -> Result<Criterion, &'static str> {
    let mut found = path_id.map(|id| Criterion::TenantId(id.to_owned()));
    let mut count = usize::from(found.is_some());
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let c = match k.as_ref() {
            "tenant-id" => Criterion::TenantId(v.into_owned()),
            "subject-dn" => Criterion::SubjectDn(v.into_owned()),
            _ => continue,
        };
        count += 1;
        found = Some(c);
    }
    match found {
        Some(Criterion::TenantId(v) | Criterion::SubjectDn(v)) if v.is_empty() => {
            Err("The search criterion is empty")
        }
        Some(c) if count == 1 => Ok(c),
        _ => Err("Give exactly one search criterion: tenant-id or subject-dn"),
    }
}

async fn read(gw: &Gateway, req: &Parts, path_id: Option<&str>) -> Response<Body> {
    let criterion = match criterion(path_id, req.uri.query()) {
        Ok(c) => c,
        Err(message) => return fail(StatusCode::BAD_REQUEST, message),
    };
    let dir = gw.runtime.shared().directory.load_full();
    let tenant: Option<&Arc<Tenant>> = match &criterion {
        Criterion::TenantId(id) => dir.get(id),
        Criterion::SubjectDn(dn) => {
            if let Err(e) = crate::tenancy::dn::canonical(dn) {
                return fail(
                    StatusCode::BAD_REQUEST,
                    &format!("subject-dn is not an RFC 2253 distinguished name: {e}"),
                );
            }
            dir.by_subject_dn(dn)
        }
    };
    let principal =
        match crate::http::authenticate(gw, &req.headers, &dir, tenant.map(|t| t.as_ref())).await {
            Ok(p) => p,
            Err(refusal) => {
                gw.metrics.reject(crate::http::refusal_reason(refusal));
                let mut resp = fail(refusal.status(), &refusal.to_string());
                crate::http::refused(&mut resp, refusal);
                return resp;
            }
        };
    let entitled = match (&principal, tenant) {
        (Principal::SuperUser, _) => true,
        (Principal::Client(claims), Some(t)) => claims.tenant == t.id,
        (Principal::TenantUser { tenant: id, .. }, Some(t)) => *id == t.id,
        _ => false,
    };
    match tenant {
        _ if !entitled => {
            gw.metrics.reject(Rejection::Forbidden);
            fail(
                StatusCode::FORBIDDEN,
                "The caller may not read this tenant's information",
            )
        }
        Some(t) => found(StatusCode::OK, t),
        None => fail(
            StatusCode::NOT_FOUND,
            "No tenant matches the search criterion",
        ),
    }
}

fn failure(e: ManageError) -> Response<Body> {
    fail(e.status(), &e.public_message())
}

/// A write, by the super-user (checked by [`write_one`]'s [`SuperUser`]).
async fn write(gw: &Gateway, req: Request, name: &str) -> Response<Body> {
    let json_body = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if !json_body
        .as_deref()
        .is_some_and(|ct| ct == "application/json" || ct.ends_with("+json"))
    {
        return fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send the tenant information as application/json",
        );
    }
    let req = match read_limited(gw, req).await {
        Ok(r) => r,
        Err(e) => return fail(e.status(), &e.to_string()),
    };
    let doc = match crate::http::json::parse(req.body()) {
        Ok(Value::Object(doc)) => doc,
        Ok(_) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "The tenant information must be a JSON object",
            );
        }
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                &format!("The tenant information is not valid JSON: {e}"),
            );
        }
    };
    let rt = &gw.runtime;
    let principal = || "super-user".to_owned();
    let exists = rt.shared().directory.load().get(name).is_some();
    if !exists {
        let spec = TenantSpec {
            hono: Some(doc.clone()),
            ..TenantSpec::default()
        };
        match manage::create(rt, &gw.auth.hasher, principal(), name, spec).await {
            Ok(created) => {
                let mut resp = found(StatusCode::CREATED, &created.tenant);
                let location = format!("{PREFIX}/{}", created.tenant.name);
                if let Ok(v) = HeaderValue::from_str(&location) {
                    resp.headers_mut().insert(LOCATION, v);
                }
                return resp;
            }
            // Created by someone else meanwhile: replace its information.
            Err(ManageError::Exists { deleted: false, .. }) => {}
            Err(e) => return failure(e),
        }
    }
    let update = TenantUpdate {
        hono: Some(doc),
        ..TenantUpdate::default()
    };
    match manage::update(rt, &gw.auth.hasher, principal(), name, update).await {
        Ok(t) => found(StatusCode::OK, &t),
        Err(e) => failure(e),
    }
}

/// The API's errors, and its label.
struct Hono;

impl Surface for Hono {
    const ROUTE: &'static str = "hono";

    fn error(_: &Parts, status: StatusCode, message: &str) -> Response<Body> {
        fail(status, message)
    }
}

/// The routes under [`PREFIX`].
pub fn routes() -> Routes {
    mount::<Hono>(
        PREFIX,
        [
            ("/", methods::<Hono>(get(search))),
            ("/{id}", methods::<Hono>(get(read_one).put(write_one))),
        ],
    )
}

/// Tenant information by tenant-id or by the subject DN of a trusted CA (RFC 2253 comparison): exactly one.
#[utoipa::path(get, path = "/hono/v1/tenants", tag = "Tenants (Hono)", operation_id = "honoFindTenant",
    params(
        ("tenant-id" = Option<String>, Query),
        ("subject-dn" = Option<String>, Query, example = "CN=devices,O=ACME Corporation")),
    security(("bearerAuth" = []), ("clientCredentials" = []), ("superUser" = [])),
    responses(
        (status = 200, description = "The tenant's information (Cache-Control: max-age=60)", body = HonoTenant),
        ReadRefusals))]
async fn search(State(gw): State<Arc<Gateway>>, req: Request) -> Response<Body> {
    read(&gw, &req.into_parts().0, None).await
}

/// Tenant information by tenant-id.
#[utoipa::path(get, path = "/hono/v1/tenants/{id}", tag = "Tenants (Hono)", operation_id = "honoGetTenant",
    params(("id" = String, Path)),
    security(("bearerAuth" = []), ("clientCredentials" = []), ("superUser" = [])),
    responses(
        (status = 200, description = "The tenant's information (Cache-Control: max-age=60)", body = HonoTenant),
        ReadRefusals))]
async fn read_one(
    State(gw): State<Arc<Gateway>>,
    Param(id, ..): Param<Hono>,
    req: Request,
) -> Response<Body> {
    read(&gw, &req.into_parts().0, Some(&id)).await
}

/// Sets a tenant's information, creating the tenant when new; validated by the validator component.
#[utoipa::path(put, path = "/hono/v1/tenants/{id}", tag = "Tenants (Hono)", operation_id = "honoSetTenant",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,50}$")),
    security(("superUser" = [])),
    request_body = HonoTenant,
    responses(
        (status = 200, description = "Replaced", body = HonoTenant),
        (status = 201, description = "Created the tenant with this information", body = HonoTenant),
        (status = 400, description = "Breaks the schema or its rules (one adapter per type, tenant-id matching the path)", body = HonoError),
        (status = 401, description = "Not the super-user's Basic credentials", body = HonoError),
        (status = 403, description = "Not the super-user", body = HonoError),
        (status = 409, description = "A trusted CA's subject DN belongs to another tenant", body = HonoError),
        (status = 415, description = "Not application/json", body = HonoError)))]
async fn write_one(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Hono>,
    Param(id, ..): Param<Hono>,
    req: Request,
) -> Response<Body> {
    write(&gw, req, &id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_criterion() {
        assert!(matches!(
            criterion(None, Some("tenant-id=a")),
            Ok(Criterion::TenantId(id)) if id == "a"
        ));
        assert!(matches!(
            criterion(None, Some("subject-dn=CN%3Dca%2C%20O%3DACME")),
            Ok(Criterion::SubjectDn(dn)) if dn == "CN=ca, O=ACME"
        ));
        assert!(matches!(
            criterion(Some("a"), None),
            Ok(Criterion::TenantId(id)) if id == "a"
        ));
        for (path, query) in [
            (None, None),
            (None, Some("other=1")),
            (None, Some("tenant-id=a&subject-dn=CN%3Dx")),
            (None, Some("tenant-id=a&tenant-id=b")),
            (Some("a"), Some("subject-dn=CN%3Dx")),
            (None, Some("tenant-id=")),
        ] {
            assert!(criterion(path, query).is_err(), "{path:?} {query:?}");
        }
    }
}
