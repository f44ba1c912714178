//! `POST /connect/register` and `POST /connect/token`, as Ed-Fi Admin API serves
//! them: form-encoded client registration for the request's tenant, and OAuth2
//! client credentials (RFC 6749 §4.4) exchanged for a Bearer token bound to the
//! client's tenant.

use crate::api::openapi::TenantHeader;
use crate::http::{
    Body, Gateway, Problem, Routes, Served, Surface, error, json_body, methods, mount, problem,
};
use crate::security::auth::{CheckFailure, CheckQuota, Refusal};
use crate::security::token::SCOPES;
use crate::store::ClientRegistration;
use crate::tenancy::resolve::TENANT;
use axum::extract::{Request, State};
use axum::routing::post;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, PRAGMA, WWW_AUTHENTICATE,
};
use http::request::Parts;
use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};

/// A token issued.
#[derive(Serialize, ToSchema)]
struct TokenResponse<'a> {
    access_token: &'a str,
    #[schema(example = "Bearer")]
    token_type: &'a str,
    /// Seconds.
    expires_in: u64,
    scope: &'a str,
}

/// A token refused (RFC 6749 §5.2).
#[derive(Serialize, ToSchema)]
struct TokenError<'a> {
    #[schema(examples(
        "invalid_request",
        "invalid_client",
        "unsupported_grant_type",
        "invalid_scope"
    ))]
    error: &'a str,
    error_description: &'a str,
}

/// The form of `/connect/register`.
#[derive(ToSchema)]
#[allow(non_snake_case, dead_code)] // a document: Ed-Fi's field names, read by `register`
struct Registration {
    ClientId: String,
    #[schema(min_length = 32, max_length = 128)]
    ClientSecret: String,
    DisplayName: String,
}

/// The form of `/connect/token` (the client's id and secret here or as HTTP Basic).
#[derive(ToSchema)]
#[allow(dead_code)] // a document: read by `token`
struct TokenRequest {
    #[schema(example = "client_credentials")]
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    #[schema(schema_with = scopes)]
    scope: Option<String>,
}

/// The scopes a token may be asked for.
fn scopes() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(SCOPES))
        .build()
}

/// The API's part of `/openapi.json`.
#[derive(OpenApi)]
#[openapi(paths(register, token))]
pub struct Doc;

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

/// Registers client credentials for the request's tenant (Authentication.AllowRegistration, or the super-user).
#[utoipa::path(post, path = "/connect/register", tag = "Auth", operation_id = "registerClient",
    params(TenantHeader),
    security((), ("superUser" = [])),
    request_body(content = Registration, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Registered", body = Problem),
        (status = 400, description = "Validation failed, or unknown tenant", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Registration is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant has the most clients it may have", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not a form", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many registrations from this address (see Retry-After)", body = Problem, content_type = "application/problem+json")))]
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
    if let Some(p) = crate::security::token::secret_problem(&secret) {
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
            let title = format!("Registered client {client_id} successfully.");
            json_body(StatusCode::OK, &Problem::titled(&title, StatusCode::OK))
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
    let mut resp = json_body(
        status,
        &TokenError {
            error: code,
            error_description: description,
        },
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

/// OAuth2 client credentials: a Bearer token bound to the client's tenant.
#[utoipa::path(post, path = "/connect/token", tag = "Auth", operation_id = "issueToken",
    params(TenantHeader),
    security(()),
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A token", body = TokenResponse),
        (status = 400, description = "Bad request", body = TokenError),
        (status = 401, description = "Client authentication failed", body = TokenError)))]
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
            let mut resp = json_body(
                StatusCode::OK,
                &TokenResponse {
                    access_token: &token,
                    token_type: "Bearer",
                    expires_in: lifetime,
                    scope: fields.get("scope").map_or(SCOPES[0], String::as_str),
                },
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
