//! `/_components`: the component registry over HTTP (super-user Basic auth).
//! - `GET /_components`: every slot with a component.
//! - `GET /_components/{name}`: one slot.
//! - `PUT /_components/{name}` with the `.wasm` as body: loads it (checks,
//!   compile, type check, self-test) and swaps it in atomically; a refused
//!   component gets 400 with the reason and the running one stays.
//! - `DELETE /_components/{name}`: back to the built-in component (a tenant's
//!   own: back to everyone's).
//! - `POST /_components/{name}/rollback`: back to the version before
//!   (`?to={sha256}`: to any kept version).
//!
//! Names: `validator`, `feature-gate`, `config-api`, `validator@{tenant}`,
//! `feature-gate@{tenant}`. Errors: `{"error": "...", "component": "name"}`.

use crate::http::{
    Body, BodyError, Gateway, Param, Routes, SuperUser, Surface, json_body, methods, mount,
    read_limited_to,
};
use crate::registry::{Entry, RegistryError, Version};
use crate::tenancy::Directory;
use crate::wasm::{Kind, LoadError, Slot, Source};
use axum::extract::{FromRequestParts, Request, State};
use axum::routing::{get, post};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{Response, StatusCode};
use serde::Serialize;
use std::sync::Arc;
use utoipa::{IntoResponses, OpenApi, ToSchema};

/// The API's path.
pub const PREFIX: &str = "/_components";

fn fail(status: StatusCode, message: &str, component: Option<&str>) -> Response<Body> {
    json_body(
        status,
        &ComponentError {
            error: message,
            component,
        },
    )
}

/// Every error of the API.
#[derive(Serialize, ToSchema)]
struct ComponentError<'a> {
    error: &'a str,
    /// The slot the request named.
    component: Option<&'a str>,
}

/// A slot and the component serving it.
#[derive(Serialize, ToSchema)]
#[schema(as = Component)]
struct Serving<'a> {
    #[schema(examples("validator", "validator@tenant1"))]
    name: String,
    kind: Kind,
    /// The tenant whose own slot it is.
    tenant: Option<String>,
    sha256: &'a str,
    size: usize,
    #[schema(format = DateTime)]
    loaded_at: &'a str,
    #[schema(examples("builtin", "api", "directory:validator.wasm"))]
    source: String,
    exports: &'a [String],
    /// false: loaded from a verified precompiled artifact.
    compiled: bool,
    /// The tenants it serves.
    tenants: Vec<String>,
    /// The rollback target.
    previous: Option<&'a Version>,
    /// The versions `rollback?to=` can return to.
    kept: &'a [Version],
}

/// Every slot with a component.
#[derive(Serialize, ToSchema)]
struct ComponentList<'a> {
    components: Vec<Serving<'a>>,
}

/// The tenants a slot's component serves.
fn users(dir: &Directory, slot: &Slot, overridden: &[Slot]) -> Vec<String> {
    let mut names: Vec<String> = match &slot.tenant {
        Some(t) => dir
            .get(t)
            .map(|t| vec![t.name.to_string()])
            .unwrap_or_default(),
        None => dir
            .iter()
            .filter(|t| {
                !overridden
                    .iter()
                    .any(|o| o.kind == slot.kind && o.tenant.as_deref() == Some(&*t.key))
            })
            .map(|t| t.name.to_string())
            .collect(),
    };
    names.sort();
    names
}

fn serving<'a>(e: &'a Entry, dir: &Directory, overridden: &[Slot]) -> Serving<'a> {
    let i = &e.info;
    Serving {
        name: i.slot.to_string(),
        kind: i.slot.kind,
        tenant: i
            .slot
            .tenant
            .as_ref()
            .map(|t| dir.get(t).map_or_else(|| t.clone(), |t| t.name.to_string())),
        sha256: &i.sha256,
        size: i.size,
        loaded_at: &i.loaded_at,
        source: i.source.to_string(),
        exports: &i.exports,
        compiled: i.compiled,
        tenants: users(dir, &i.slot, overridden),
        previous: e.previous.as_ref(),
        kept: &e.kept,
    }
}

async fn show(gw: &Gateway, only: Option<&Slot>) -> Response<Body> {
    let entries = gw.registry.entries().await;
    let dir = gw.runtime.shared().directory.load();
    let overridden: Vec<Slot> = entries
        .iter()
        .filter(|e| e.info.slot.tenant.is_some())
        .map(|e| e.info.slot.clone())
        .collect();
    match only {
        None => {
            let components = entries
                .iter()
                .map(|e| serving(e, &dir, &overridden))
                .collect();
            json_body(StatusCode::OK, &ComponentList { components })
        }
        Some(slot) => match entries.iter().find(|e| &e.info.slot == slot) {
            Some(e) => json_body(StatusCode::OK, &serving(e, &dir, &overridden)),
            None => fail(
                StatusCode::NOT_FOUND,
                &format!("No component of its own serves {slot}; everyone's does"),
                Some(&slot.to_string()),
            ),
        },
    }
}

fn failure(e: RegistryError, name: &str) -> Response<Body> {
    let status = match &e {
        RegistryError::Load(LoadError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        RegistryError::Load(_) => StatusCode::BAD_REQUEST,
        RegistryError::NoPrevious(_) => StatusCode::CONFLICT,
        RegistryError::NotKept(..) => StatusCode::NOT_FOUND,
        RegistryError::Missing(_) => StatusCode::GONE,
        RegistryError::Storage(_) => {
            tracing::error!(error = %e, "component registry failed");
            return fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
                Some(name),
            );
        }
    };
    fail(status, &e.to_string(), Some(name))
}

/// The API's errors, and its label.
struct Components;

impl Surface for Components {
    const ROUTE: &'static str = "components";

    fn error(_: &Parts, status: StatusCode, message: &str) -> Response<Body> {
        fail(status, message, None)
    }
}

/// The refusals of every operation.
#[derive(IntoResponses)]
#[allow(dead_code)] // a document: what the handlers answer, never built
enum Refusals {
    /// Not the super-user's Basic credentials.
    #[response(status = 401)]
    Unauthorized(ComponentError<'static>),
    /// Not the super-user.
    #[response(status = 403)]
    Forbidden(ComponentError<'static>),
    /// No such slot, or no such tenant.
    #[response(status = 404)]
    NotFound(ComponentError<'static>),
}

/// The API's part of `/openapi.json`.
#[derive(OpenApi)]
#[openapi(paths(list, read, upload, remove, rollback))]
pub struct Doc;

/// The routes under [`PREFIX`] (super-user only).
pub fn routes() -> Routes {
    mount::<Components>(
        PREFIX,
        [
            ("/", methods::<Components>(get(list))),
            (
                "/{name}",
                methods::<Components>(get(read).put(upload).delete(remove)),
            ),
            ("/{name}/rollback", methods::<Components>(post(rollback))),
        ],
    )
}

/// The slot a path names, with the name as given; a slot of a tenant that
/// does not exist is 404.
struct Named {
    name: String,
    slot: Slot,
}

impl FromRequestParts<Arc<Gateway>> for Named {
    type Rejection = Response<Body>;

    async fn from_request_parts(
        parts: &mut Parts,
        gw: &Arc<Gateway>,
    ) -> Result<Self, Self::Rejection> {
        let Param(name, ..) = Param::<Components>::from_request_parts(parts, gw).await?;
        let slot =
            Slot::parse(&name).map_err(|why| fail(StatusCode::NOT_FOUND, &why, Some(&name)))?;
        if let Some(t) = &slot.tenant
            && gw.runtime.shared().directory.load().get(t).is_none()
        {
            return Err(fail(
                StatusCode::NOT_FOUND,
                &format!("Tenant '{t}' does not exist"),
                Some(&name),
            ));
        }
        Ok(Named { name, slot })
    }
}

/// The component registry: what serves each slot.
#[utoipa::path(get, path = "/_components", tag = "Components", operation_id = "listComponents",
    security(("superUser" = [])),
    responses((status = 200, description = "Every slot with a component", body = ComponentList), Refusals))]
async fn list(State(gw): State<Arc<Gateway>>, _: SuperUser<Components>) -> Response<Body> {
    show(&gw, None).await
}

/// One slot.
#[utoipa::path(get, path = "/_components/{name}", tag = "Components", operation_id = "getComponent",
    params(("name" = String, Path, description = "validator, feature-gate, config-api, validator@{tenant} or feature-gate@{tenant}")), security(("superUser" = [])),
    responses((status = 200, description = "The slot", body = Serving), Refusals))]
async fn read(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Components>,
    Named { slot, .. }: Named,
) -> Response<Body> {
    show(&gw, Some(&slot)).await
}

/// Loads a component into the slot while traffic is served.
#[utoipa::path(put, path = "/_components/{name}", tag = "Components", operation_id = "putComponent",
    params(("name" = String, Path, description = "validator, feature-gate, config-api, validator@{tenant} or feature-gate@{tenant}")), security(("superUser" = [])),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses(
        (status = 200, description = "Loaded, self-tested and swapped in", body = Serving),
        (status = 400, description = "Refused (not a component, does not compile, wrong exports or imports, failed its self-test); the running one stays", body = ComponentError),
        (status = 413, description = "Over TenantGateway.Limits.MaxComponentBytes", body = ComponentError),
        (status = 415, description = "Not application/wasm", body = ComponentError),
        Refusals))]
async fn upload(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Components>,
    Named { name, slot }: Named,
    req: Request,
) -> Response<Body> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if !matches!(
        content_type.as_deref(),
        None | Some("application/wasm" | "application/octet-stream")
    ) {
        return fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send the component as application/wasm",
            Some(&name),
        );
    }
    let max = gw.runtime.max_component_bytes();
    let body = match read_limited_to(&gw, req, max).await {
        Ok(r) => r.into_body(),
        Err(e @ BodyError::TooLarge(_)) => {
            return fail(
                e.status(),
                &format!(
                    "The component is over the limit of {max} bytes (TenantGateway.Limits.MaxComponentBytes)"
                ),
                Some(&name),
            );
        }
        Err(e) => return fail(e.status(), &e.to_string(), Some(&name)),
    };
    match gw.registry.put(slot.clone(), body, Source::Api).await {
        Ok(_) => show(&gw, Some(&slot)).await,
        Err(e) => failure(e, &name),
    }
}

/// Back to the built-in component (a tenant's: back to everyone's).
#[utoipa::path(delete, path = "/_components/{name}", tag = "Components", operation_id = "deleteComponent",
    params(("name" = String, Path, description = "validator, feature-gate, config-api, validator@{tenant} or feature-gate@{tenant}")), security(("superUser" = [])),
    responses((status = 200, description = "What serves the slot now", body = Serving), Refusals))]
async fn remove(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Components>,
    Named { name, slot }: Named,
) -> Response<Body> {
    match gw.registry.remove(slot).await {
        Ok(serving) => show(&gw, Some(&Slot::global(serving.slot.kind))).await,
        Err(e) => failure(e, &name),
    }
}

/// Back to the version before, or to a kept one.
#[utoipa::path(post, path = "/_components/{name}/rollback", tag = "Components", operation_id = "rollbackComponent",
    params(("name" = String, Path, description = "validator, feature-gate, config-api, validator@{tenant} or feature-gate@{tenant}"),
        ("to" = Option<String>, Query, description = "The sha256 of a kept version (default: the previous one)")),
    security(("superUser" = [])),
    responses(
        (status = 200, description = "The version rolled back to serves again", body = Serving),
        (status = 409, description = "No previous version", body = ComponentError),
        (status = 410, description = "The kept bytes are gone", body = ComponentError),
        Refusals))]
async fn rollback(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Components>,
    Named { name, slot }: Named,
    req: Request,
) -> Response<Body> {
    let to = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "to")
            .map(|(_, v)| v.into_owned())
    });
    match gw.registry.rollback(slot.clone(), to.as_deref()).await {
        Ok(_) => show(&gw, Some(&slot)).await,
        Err(e) => failure(e, &name),
    }
}
