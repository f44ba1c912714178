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
    Body, BodyError, Gateway, Param, Routes, SuperUser, Surface, json_value, methods, mount,
    read_limited_to,
};
use crate::registry::{Entry, RegistryError, Version};
use crate::tenancy::Directory;
use crate::wasm::{LoadError, Slot, Source};
use axum::extract::{FromRequestParts, Request, State};
use axum::routing::{get, post};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

/// The API's path.
pub const PREFIX: &str = "/_components";

fn fail(status: StatusCode, message: &str, component: Option<&str>) -> Response<Body> {
    json_value(status, &json!({ "error": message, "component": component }))
}

fn version_json(v: &Version) -> Value {
    json!({
        "sha256": v.sha256,
        "size": v.size,
        "source": v.source,
        "loaded_at": v.loaded_at,
    })
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
                    .any(|o| o.kind == slot.kind && o.tenant.as_deref() == Some(&t.name.key()))
            })
            .map(|t| t.name.to_string())
            .collect(),
    };
    names.sort();
    names
}

fn entry_json(e: &Entry, dir: &Directory, overridden: &[Slot]) -> Value {
    let i = &e.info;
    json!({
        "name": i.slot.to_string(),
        "kind": i.slot.kind.as_str(),
        "tenant": i.slot.tenant.as_ref().map(|t| dir.get(t).map_or_else(|| t.clone(), |t| t.name.to_string())),
        "sha256": i.sha256,
        "size": i.size,
        "loaded_at": i.loaded_at,
        "source": i.source.to_string(),
        "exports": i.exports,
        "compiled": i.compiled,
        "tenants": users(dir, &i.slot, overridden),
        "previous": e.previous.as_ref().map(version_json),
        "kept": e.kept.iter().map(version_json).collect::<Vec<_>>(),
    })
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
            let all: Vec<Value> = entries
                .iter()
                .map(|e| entry_json(e, &dir, &overridden))
                .collect();
            json_value(StatusCode::OK, &json!({ "components": all }))
        }
        Some(slot) => match entries.iter().find(|e| &e.info.slot == slot) {
            Some(e) => json_value(StatusCode::OK, &entry_json(e, &dir, &overridden)),
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

async fn list(State(gw): State<Arc<Gateway>>, _: SuperUser<Components>) -> Response<Body> {
    show(&gw, None).await
}

async fn read(
    State(gw): State<Arc<Gateway>>,
    _: SuperUser<Components>,
    Named { slot, .. }: Named,
) -> Response<Body> {
    show(&gw, Some(&slot)).await
}

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
