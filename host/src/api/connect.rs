//! `POST /connect/register` and `POST /connect/token`, as Ed-Fi Admin API serves
//! them: form-encoded client registration for the request's tenant, and OAuth2
//! client credentials (RFC 6749 §4.4) exchanged for a Bearer token bound to the
//! client's tenant.

use crate::http::{
    Body, Gateway, Routes, Served, Surface, error, json_value, methods, mount, problem,
};
use crate::security::auth::{CheckFailure, CheckQuota, Refusal, SCOPES};
use crate::store::ClientRegistration;
use crate::tenancy::resolve::TENANT;
use axum::extract::{Request, State};
use axum::routing::post;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, PRAGMA, WWW_AUTHENTICATE,
};
use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// Largest accepted form body.
const MAX_FORM: usize = 8 * 1024;

/// The paths under `/connect` (reserved for these two), and their label;
/// errors outside the two endpoints' own are the config API's format.
struct Connect;

impl Surface for Connect {
    const ROUTE: &'static str = "connect";

    fn error(_: &Parts, status: StatusCode, message: &str) -> Response<Body> {
        error(status, message, None)
    }
}

/// `/connect/register` and `/connect/token`, POST only.
pub fn routes() -> Routes {
    mount::<Connect>(
        "/connect",
        [
            (
                "/register",
                methods::<Connect>(post(
                    |State(gw): State<Arc<Gateway>>, req: Request| async move {
                        let mut served = Served::default();
                        let resp = register(&gw, req, &mut served).await;
                        served.onto(resp)
                    },
                )),
            ),
            (
                "/token",
                methods::<Connect>(post(
                    |State(gw): State<Arc<Gateway>>, req: Request| async move {
                        let mut served = Served::default();
                        let resp = token(&gw, req, &mut served).await;
                        served.onto(resp)
                    },
                )),
            ),
        ],
    )
}

/// The form fields of a request, or the answer to send.
#[allow(clippy::result_large_err)]
async fn form(
    gw: &Gateway,
    req: Request,
) -> Result<(http::request::Parts, HashMap<String, String>), Response<Body>> {
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return Err(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The body must be application/x-www-form-urlencoded",
            None,
        ));
    }
    let (parts, bytes) = match crate::http::read_limited_to(gw, req, MAX_FORM).await {
        Ok(r) => r.into_parts(),
        Err(e) => return Err(problem(e.status(), &e.to_string(), None)),
    };
    let fields = form_urlencoded::parse(&bytes).into_owned().collect();
    Ok((parts, fields))
}

/// `POST /connect/register`: `ClientId`, `ClientSecret`, `DisplayName`.
async fn register(gw: &Gateway, req: Request, served: &mut Served) -> Response<Body> {
    let (parts, fields) = match form(gw, req).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let dir = gw.runtime.shared().directory.load_full();
    let from = crate::http::client_addr(&parts.extensions);
    let open_here = dir.allow_registration
        && dir
            .auth
            .open_registration_from
            .iter()
            .any(|net| net.contains(&from));
    // The super-user registers from anywhere, unlimited; others only where
    // registration is open, a few per minute.
    let super_user = if open_here && !parts.headers.contains_key(http::header::AUTHORIZATION) {
        None
    } else {
        Some(crate::http::authenticate(gw, &parts.headers, &parts.extensions, &dir, None).await)
    };
    if let Some(Err(refusal @ (Refusal::Throttled(_) | Refusal::Busy))) = super_user {
        let mut resp = problem(refusal.status(), &refusal.to_string(), None);
        crate::http::refused(&mut resp, refusal);
        return resp;
    }
    if !matches!(
        super_user,
        Some(Ok(crate::security::auth::Principal::SuperUser))
    ) {
        if !open_here {
            let why = if dir.allow_registration {
                "Client registration is open only to the addresses of TenantGateway.Auth.OpenRegistrationFrom; elsewhere only the super-user may register clients"
            } else {
                "Client registration is disabled (Authentication.AllowRegistration); only the super-user may register clients"
            };
            return problem(StatusCode::FORBIDDEN, why, None);
        }
        let per_minute = dir.auth.registrations_per_address_per_minute;
        if let Err(wait) = gw.registrations.check_key(from, per_minute, 4096) {
            let mut resp = problem(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("At most {per_minute} client registrations per minute from one address"),
                None,
            );
            crate::http::retry_after(&mut resp, wait.as_secs().max(1));
            return resp;
        }
    }
    let tenant = match dir.resolver.resolve(&parts.headers, parts.uri.path(), &dir) {
        Ok(t) => t,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e.to_string(), None),
    };
    served.tenant = Some(tenant.clone());
    let field = |name: &str| fields.get(name).map(|v| v.trim()).unwrap_or("");
    let (client_id, secret, display) = (
        field("ClientId").to_owned(),
        fields.get("ClientSecret").cloned().unwrap_or_default(),
        field("DisplayName").to_owned(),
    );
    let mut errors = serde_json::Map::new();
    if client_id.is_empty() || client_id.len() > 100 {
        errors.insert(
            "ClientId".into(),
            json!(["ClientId is required (at most 100 characters)"]),
        );
    }
    if let Some(p) = crate::security::auth::secret_problem(&secret) {
        errors.insert("ClientSecret".into(), json!([p]));
    }
    if display.is_empty() {
        errors.insert("DisplayName".into(), json!(["DisplayName is required"]));
    }
    if !errors.is_empty() {
        return problem(
            StatusCode::BAD_REQUEST,
            "Validation failed",
            Some(errors.into()),
        );
    }
    let store = gw.runtime.shared().store.clone();
    let created = gw
        .auth
        .register(
            store,
            client_id.clone(),
            secret,
            display,
            &tenant,
            dir.auth.max_clients_per_tenant,
            from,
            CheckQuota::from(&dir.auth),
        )
        .await;
    match created {
        Ok(ClientRegistration::Registered) => {
            tracing::info!(client_id = %client_id, tenant = %tenant.name, "client registered");
            json_value(
                StatusCode::OK,
                &json!({"title": format!("Registered client {client_id} successfully."), "status": 200}),
            )
        }
        Ok(ClientRegistration::Taken) => problem(
            StatusCode::BAD_REQUEST,
            "Validation failed",
            Some(
                json!({"ClientId": [format!("A client with ClientId {client_id} already exists")]}),
            ),
        ),
        Ok(ClientRegistration::Full) => problem(
            StatusCode::CONFLICT,
            &format!(
                "Tenant '{}' has the most clients it may have ({}, TenantGateway.Auth.MaxClientsPerTenant)",
                tenant.name, dir.auth.max_clients_per_tenant
            ),
            None,
        ),
        Err(CheckFailure::Refused(refusal)) => {
            gw.metrics.reject(crate::http::refusal_reason(refusal));
            let mut resp = problem(refusal.status(), &refusal.to_string(), None);
            crate::http::refused(&mut resp, refusal);
            resp
        }
        Err(CheckFailure::Store(e)) => {
            tracing::error!(error = %e, "storing a client failed");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "Storage failure", None)
        }
    }
}

fn token_error(status: StatusCode, code: &str, description: &str) -> Response<Body> {
    let mut resp = json_value(
        status,
        &json!({"error": code, "error_description": description}),
    );
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="tenant-gateway""#),
        );
    }
    resp
}

/// `POST /connect/token`: `grant_type=client_credentials`, the client's id and
/// secret in the form or as HTTP Basic, optional `scope`.
async fn token(gw: &Gateway, req: Request, served: &mut Served) -> Response<Body> {
    let (parts, fields) = match form(gw, req).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    match fields.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Only grant_type=client_credentials is supported",
            );
        }
        None => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
    }
    if let Some(scope) = fields.get("scope")
        && !scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .all(|s| SCOPES.contains(&s))
    {
        return token_error(StatusCode::BAD_REQUEST, "invalid_scope", "Unknown scope");
    }
    let basic = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(crate::security::auth::basic);
    let (client_id, secret) = match (basic, fields.get("client_id"), fields.get("client_secret")) {
        (Some(pair), _, _) => pair,
        (None, Some(id), Some(secret)) => (id.clone(), secret.clone()),
        _ => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_id and client_secret are required",
            );
        }
    };
    let dir = gw.runtime.shared().directory.load_full();
    // The tenant named by the request, if any, must be the client's own.
    let named = if parts.headers.contains_key(TENANT) {
        match dir.resolver.resolve(&parts.headers, parts.uri.path(), &dir) {
            Ok(t) => Some(t),
            Err(e) => {
                return token_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string());
            }
        }
    } else {
        None
    };
    let lifetime = dir.auth.token_lifetime_seconds;
    let quota = CheckQuota::from(&dir.auth);
    let from = crate::http::client_addr(&parts.extensions);
    let store = gw.runtime.shared().store.clone();
    let named_id = named.as_ref().map(|t| t.id);
    let issued = gw
        .auth
        .token(
            store, &client_id, &secret, named_id, &dir, lifetime, from, quota,
        )
        .await;
    match issued {
        Ok(Ok((token, _, tenant_id))) => {
            served.tenant = dir.by_id(&tenant_id).cloned();
            let mut resp = json_value(
                StatusCode::OK,
                &json!({
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": lifetime,
                    "scope": fields.get("scope").map(String::as_str).unwrap_or(SCOPES[0]),
                }),
            );
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp.headers_mut()
                .insert(PRAGMA, HeaderValue::from_static("no-cache"));
            resp
        }
        Ok(Err(e)) => {
            gw.metrics
                .reject(crate::telemetry::Rejection::Unauthenticated);
            token_error(StatusCode::UNAUTHORIZED, e.code, &e.description)
        }
        Err(CheckFailure::Refused(refusal)) => {
            gw.metrics.reject(crate::http::refusal_reason(refusal));
            // RFC 6749 has no code for this: `temporarily_unavailable` is the
            // authorization endpoint's, and the nearest in meaning.
            let mut resp = token_error(
                refusal.status(),
                "temporarily_unavailable",
                &refusal.to_string(),
            );
            crate::http::refused(&mut resp, refusal);
            resp
        }
        Err(CheckFailure::Store(e)) => {
            tracing::error!(error = %e, "reading a client failed");
            token_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "Storage failure",
            )
        }
    }
}
