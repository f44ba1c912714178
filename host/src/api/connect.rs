//! `POST /connect/register` and `POST /connect/token`, as Ed-Fi Admin API 2.x
//! answers them: form-encoded client registration for the request's tenant,
//! and OAuth2 client credentials (RFC 6749 §4.4) exchanged for a Bearer token
//! bound to the client's tenant. Status codes, content types, field names and
//! messages are Ed-Fi's (README: "Compatibility with Ed-Fi Admin API 2.x"),
//! and so is the order of the token checks: grant type, client credentials
//! given, scopes known, client authenticated, a scope asked for.

use crate::api::openapi::TenantHeader;
use crate::http::{
    Body, BodyError, Gateway, Problem, Routes, Served, Surface, ValidationProblem, json_body,
    methods, mount, problem, validation_failed,
};
use crate::security::auth::{CheckFailure, CheckQuota, Refusal};
use crate::security::token::SCOPES;
use crate::store::ClientRegistration;
use axum::extract::{Request, State};
use axum::routing::post;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, PRAGMA, WWW_AUTHENTICATE,
};
use http::request::Parts;
use http::{Response, StatusCode};
use serde::Serialize;
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

/// A token refused (RFC 6749 §5.2). Ed-Fi answers an unknown client, a wrong
/// secret and an unsupported grant type alike: 401 `invalid_client`, "Access
/// Denied. Please review your information and try again."
#[derive(Serialize, ToSchema)]
struct TokenError<'a> {
    #[schema(examples("invalid_request", "invalid_client"))]
    error: &'a str,
    error_description: &'a str,
}

/// A token refused for its scope (400, `application/problem+json`): none
/// asked for, or one that is not [`SCOPES`].
#[derive(Serialize, ToSchema)]
struct InvalidScope {
    #[schema(example = "invalid_scope")]
    error: &'static str,
    #[schema(example = "The request is missing required scope claims or has invalid scope values")]
    error_description: &'static str,
    #[schema(example = 400)]
    status: u16,
    #[schema(example = "Invalid Scope")]
    title: &'static str,
}

/// The form of `/connect/register`.
#[derive(ToSchema)]
#[allow(non_snake_case, dead_code)] // a document: Ed-Fi's field names, read by `register`
struct Registration {
    #[schema(max_length = 100)]
    ClientId: String,
    /// At least one lower-case letter, one upper-case letter, one digit and
    /// one other character.
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
    scope: String,
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

/// What Ed-Fi tells a client it does not authenticate, whatever the reason.
const ACCESS_DENIED: &str = "Access Denied. Please review your information and try again.";

/// Ed-Fi's rule for a client secret, and its message.
const SECRET_RULE: &str = "ClientSecret must contain at least one lowercase letter, one uppercase letter, one number, and one special character, and must be 32 to 128 characters long.";

/// The paths under `/connect` (reserved for these two), and their label;
/// errors outside the two endpoints' own are RFC 9457 problems, as Ed-Fi's.
struct Connect;

impl Surface for Connect {
    const ROUTE: &'static str = "connect";

    fn error(_: &Parts, status: StatusCode, message: &str) -> Response<Body> {
        problem(status, message)
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

/// Why a request's form could not be read.
enum FormError {
    /// The body is not `application/x-www-form-urlencoded`.
    NotForm,
    /// Too large, cut off or too slow.
    Body(BodyError),
}

/// The form fields of a request.
async fn form(
    gw: &Gateway,
    req: Request,
) -> Result<(http::request::Parts, HashMap<String, String>), FormError> {
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
        return Err(FormError::NotForm);
    }
    let (parts, bytes) = crate::http::read_limited_to(gw, req, MAX_FORM)
        .await
        .map_err(FormError::Body)?
        .into_parts();
    let fields = form_urlencoded::parse(&bytes).into_owned().collect();
    Ok((parts, fields))
}

/// Ed-Fi's messages for a registration's fields: each field's first fault.
fn registration_errors(
    client_id: &str,
    secret: &str,
    display_name: &str,
) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    if client_id.is_empty() {
        errors.push(("ClientId", "'Client Id' must not be empty.".to_owned()));
    } else if client_id.len() > 100 {
        errors.push((
            "ClientId",
            "'Client Id' must be 100 characters or fewer.".to_owned(),
        ));
    }
    if secret.trim().is_empty() {
        errors.push((
            "ClientSecret",
            "'Client Secret' must not be empty.".to_owned(),
        ));
    } else if !crate::security::token::secret_follows_rule(secret) {
        errors.push(("ClientSecret", SECRET_RULE.to_owned()));
    }
    if display_name.is_empty() {
        errors.push((
            "DisplayName",
            "'Display Name' must not be empty.".to_owned(),
        ));
    }
    errors
}

/// Registers client credentials for the request's tenant (Authentication.AllowRegistration, or the super-user).
#[utoipa::path(post, path = "/connect/register", tag = "Auth", operation_id = "registerClient",
    params(TenantHeader),
    security((), ("superUser" = [])),
    request_body(content = Registration, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Registered: `Registered client {ClientId} successfully.`", body = Problem),
        (status = 400, description = "Validation failed: a field (`ClientId`, `ClientSecret`, `DisplayName`) or the `Tenant` header", body = ValidationProblem, content_type = "application/problem+json"),
        (status = 403, description = "Registration is disabled, or not open to this address", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant has the most clients it may have", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not a form", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many registrations from this address (see Retry-After)", body = Problem, content_type = "application/problem+json")))]
async fn register(gw: &Gateway, req: Request, served: &mut Served) -> Response<Body> {
    let (parts, fields) = match form(gw, req).await {
        Ok(f) => f,
        Err(FormError::NotForm) => {
            return problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "The body must be application/x-www-form-urlencoded",
            );
        }
        Err(FormError::Body(e)) => return problem(e.status(), &e.to_string()),
    };
    let dir = gw.runtime.shared().directory.load_full();
    let from = crate::http::client_addr();
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
        Some(crate::http::authenticate(gw, &parts.headers, &dir, None).await)
    };
    if let Some(Err(refusal @ (Refusal::Throttled(_) | Refusal::Busy))) = super_user {
        let mut resp = problem(refusal.status(), &refusal.to_string());
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
            return problem(StatusCode::FORBIDDEN, why);
        }
        let per_minute = dir.auth.registrations_per_address_per_minute;
        if let Err(wait) = gw.registrations.check_key(from, per_minute, 4096) {
            let mut resp = problem(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("At most {per_minute} client registrations per minute from one address"),
            );
            crate::http::retry_after(&mut resp, wait.as_secs().max(1));
            return resp;
        }
    }
    let tenant = match dir.resolver.resolve(&parts.headers, parts.uri.path(), &dir) {
        Ok(t) => t,
        Err(e) => return crate::http::unresolved(&gw.metrics, &e),
    };
    served.tenant = Some(tenant.clone());
    let field = |name: &str| fields.get(name).map(|v| v.trim()).unwrap_or("");
    let (client_id, display) = (field("ClientId"), field("DisplayName"));
    let secret = fields.get("ClientSecret").map_or("", String::as_str);
    let errors = registration_errors(client_id, secret, display);
    if !errors.is_empty() {
        return validation_failed(errors);
    }
    let store = gw.runtime.shared().store.clone();
    let created = gw
        .auth
        .register(
            store,
            client_id.to_owned(),
            secret.to_owned(),
            display.to_owned(),
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
        Ok(ClientRegistration::Taken) => {
            validation_failed([("ClientId", format!("ClientId {client_id} already exists"))])
        }
        Ok(ClientRegistration::Full) => problem(
            StatusCode::CONFLICT,
            &format!(
                "Tenant '{}' has the most clients it may have ({}, TenantGateway.Auth.MaxClientsPerTenant)",
                tenant.name, dir.auth.max_clients_per_tenant
            ),
        ),
        Err(CheckFailure::Refused(refusal)) => {
            gw.metrics.reject(crate::http::refusal_reason(refusal));
            let mut resp = problem(refusal.status(), &refusal.to_string());
            crate::http::refused(&mut resp, refusal);
            resp
        }
        Err(CheckFailure::Store(e)) => {
            tracing::error!(error = %e, "storing a client failed");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "Storage failure")
        }
    }
}

/// A token answer that may not be cached (RFC 6749 §5.1).
fn no_store(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn token_error(status: StatusCode, code: &str, description: &str) -> Response<Body> {
    let mut resp = no_store(json_body(
        status,
        &TokenError {
            error: code,
            error_description: description,
        },
    ));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="tenant-gateway""#),
        );
    }
    resp
}

/// Ed-Fi's refusal of a client it does not authenticate: 401 `invalid_client`.
fn access_denied() -> Response<Body> {
    token_error(StatusCode::UNAUTHORIZED, "invalid_client", ACCESS_DENIED)
}

/// Ed-Fi's refusal of a scope: 400 `application/problem+json`.
fn invalid_scope() -> Response<Body> {
    let mut resp = no_store(json_body(
        StatusCode::BAD_REQUEST,
        &InvalidScope {
            error: "invalid_scope",
            error_description: "The request is missing required scope claims or has invalid scope values",
            status: 400,
            title: "Invalid Scope",
        },
    ));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

/// OAuth2 client credentials: a Bearer token bound to the client's tenant.
#[utoipa::path(post, path = "/connect/token", tag = "Auth", operation_id = "issueToken",
    params(TenantHeader),
    security(()),
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A token", body = TokenResponse),
        (status = 400, description = "`invalid_request`: no grant type, no client id or secret, or not a form", body = TokenError),
        (status = 400, description = "`invalid_scope`: no scope asked for, or one that is not known", body = InvalidScope, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_client`: unknown client, wrong secret, or a grant type other than client_credentials", body = TokenError)))]
async fn token(gw: &Gateway, req: Request, served: &mut Served) -> Response<Body> {
    let (parts, fields) = match form(gw, req).await {
        Ok(f) => f,
        Err(FormError::NotForm) => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The body must be application/x-www-form-urlencoded",
            );
        }
        Err(FormError::Body(e)) => {
            return token_error(e.status(), "invalid_request", &e.to_string());
        }
    };
    match fields.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        None | Some("") => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The mandatory 'grant_type' parameter is missing.",
            );
        }
        // Ed-Fi answers any other grant as an unauthenticated client.
        Some(_) => return access_denied(),
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
        _ => (String::new(), String::new()),
    };
    if client_id.is_empty() || secret.is_empty() {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The 'client_id' and 'client_secret' parameters are required when using the client credentials grant.",
        );
    }
    let scope = fields.get("scope").map_or("", |s| s.trim());
    if !scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .all(|s| SCOPES.contains(&s))
    {
        return invalid_scope();
    }
    let dir = gw.runtime.shared().directory.load_full();
    // The tenant named by the request, if any, must be the client's own.
    let named = match dir.resolver.named(&parts.headers, parts.uri.path(), &dir) {
        Ok(t) => t,
        Err(e) => return crate::http::unresolved(&gw.metrics, &e),
    };
    let lifetime = dir.auth.token_lifetime_seconds;
    let quota = CheckQuota::from(&dir.auth);
    let from = crate::http::client_addr();
    let store = gw.runtime.shared().store.clone();
    let named_id = named.as_ref().map(|t| t.id);
    let issued = gw
        .auth
        .token(
            store, &client_id, &secret, named_id, &dir, lifetime, from, quota,
        )
        .await;
    match issued {
        // As Ed-Fi, a client is authenticated before it is told that it
        // asked for no scope.
        Ok(Ok(_)) if scope.is_empty() => invalid_scope(),
        Ok(Ok((token, _, tenant_id))) => {
            served.tenant = dir.by_id(&tenant_id).cloned();
            no_store(json_body(
                StatusCode::OK,
                &TokenResponse {
                    access_token: &token,
                    token_type: "Bearer",
                    expires_in: lifetime,
                    scope,
                },
            ))
        }
        Ok(Err(_)) => {
            gw.metrics
                .reject(crate::telemetry::Rejection::Unauthenticated);
            access_denied()
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
