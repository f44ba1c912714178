//! The gateway's own answers: the config API's error body (`{error, message,
//! code, tenant_id}`, also used by the paths that belong to no surface), RFC
//! 9457 problems and validation failures (Ed-Fi's), JSON values, and the
//! headers a refusal adds.

use super::{Body, full};
use crate::security::auth::Refusal;
use crate::telemetry::Rejection;
use crate::wasm::CallError;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A JSON error in the config API's format: `{error, message, code, tenant_id}`.
pub(crate) fn error(status: StatusCode, message: &str, tenant_id: Option<&str>) -> Response<Body> {
    error_details(status, message, tenant_id, &[])
}

/// [`error`] with the violations found, as `details` (`[{path, message}]`).
pub(crate) fn error_details(
    status: StatusCode,
    message: &str,
    tenant_id: Option<&str>,
    details: &[crate::wasm::Violation],
) -> Response<Body> {
    json_body(
        status,
        &ErrorBody {
            error: status.canonical_reason().unwrap_or("Error"),
            message,
            code: status.as_u16(),
            tenant_id,
            details: details
                .iter()
                .map(|v| Detail {
                    path: &v.path,
                    message: &v.message,
                })
                .collect(),
        },
    )
}

/// The body of a config API error, and of an answer from no surface.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody<'a> {
    /// The status's reason phrase.
    #[schema(example = "Bad Request")]
    error: &'a str,
    message: &'a str,
    /// The status code.
    code: u16,
    /// The tenant the request named, when it named one.
    tenant_id: Option<&'a str>,
    /// The violations an update was refused for.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    details: Vec<Detail<'a>>,
}

/// A violation: where in the document, and what is wrong.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Detail<'a> {
    /// JSONPath of the offending value.
    #[schema(example = "$.performance.cache_size_mb")]
    path: &'a str,
    message: &'a str,
}

/// `body` written as `application/json`.
pub(crate) fn json_body(status: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    // Writing a value of these types cannot fail (string keys, no maps of
    // other keys); an empty object stands in should it ever.
    let text = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    json(status, text)
}

/// A JSON text made already (a fixed one, or one kept).
pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, JSON);
    resp
}

const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

/// An RFC 9457 problem `{title, status}` (how the Ed-Fi surfaces word an
/// error that is not a validation failure).
pub(crate) fn problem(status: StatusCode, title: &str) -> Response<Body> {
    let mut resp = json_body(status, &Problem::titled(title, status));
    resp.headers_mut().insert(CONTENT_TYPE, PROBLEM_JSON);
    resp
}

/// Ed-Fi's validation failure: 400 `application/problem+json`
/// `{"title": "Validation failed", "errors": {"<field>": ["…"]}}`, the messages
/// of each field in the order given.
pub(crate) fn validation_failed<'a>(
    errors: impl IntoIterator<Item = (&'a str, String)>,
) -> Response<Body> {
    let mut fields = std::collections::BTreeMap::<&str, Vec<String>>::new();
    for (field, message) in errors {
        fields.entry(field).or_default().push(message);
    }
    let mut resp = json_body(
        StatusCode::BAD_REQUEST,
        &ValidationProblem {
            title: "Validation failed",
            errors: fields,
        },
    );
    resp.headers_mut().insert(CONTENT_TYPE, PROBLEM_JSON);
    resp
}

/// The answer to a request whose tenant could not be resolved, as Ed-Fi
/// answers it: 400 `application/problem+json`
/// `{"title": "Validation failed", "errors": {"Tenant": ["…"]}}`; counted.
pub(crate) fn unresolved(
    metrics: &crate::telemetry::Metrics,
    e: &crate::tenancy::resolve::ResolveError,
) -> Response<Body> {
    metrics.reject(e.rejection());
    validation_failed([("Tenant", e.to_string())])
}

/// RFC 9457 problem details as Ed-Fi writes them (also the body of a
/// successful registration).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Problem<'a> {
    title: &'a str,
    status: u16,
}

impl<'a> Problem<'a> {
    /// A problem of `status` titled `title`.
    pub(crate) fn titled(title: &'a str, status: StatusCode) -> Self {
        Self {
            title,
            status: status.as_u16(),
        }
    }
}

/// Ed-Fi's body of a request refused as invalid: the messages for each field
/// in error (the `Tenant` header's is under `Tenant`).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"title": "Validation failed", "errors": {"Tenant": ["Tenant header is missing: name the tenant of the request in a Tenant header"]}}))]
pub(crate) struct ValidationProblem<'a> {
    #[schema(example = "Validation failed")]
    title: &'a str,
    errors: std::collections::BTreeMap<&'a str, Vec<String>>,
}

/// Sets `Retry-After` (seconds).
pub(crate) fn retry_after(resp: &mut Response<Body>, secs: u64) {
    resp.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
}

/// A 401 with the challenge for `refusal` (429 or 503 with `Retry-After` when
/// no check was made), in the config API's error format.
pub(super) fn unauthorized(refusal: Refusal, tenant_id: Option<&str>) -> Response<Body> {
    let mut resp = error(refusal.status(), &refusal.to_string(), tenant_id);
    refused(&mut resp, refusal);
    resp
}

/// The headers a refusal adds to any surface's answer: the challenge of a
/// 401, the `Retry-After` of a 429 or 503.
pub(crate) fn refused(resp: &mut Response<Body>, refusal: Refusal) {
    match refusal.retry_after() {
        Some(secs) => retry_after(resp, secs),
        None => {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static(refusal.challenge()),
            );
        }
    }
}

/// Maps a failed component call to its answer, counting it; the answer names
/// the request's id (`telemetry::request`), so an operator can find its log.
pub(crate) fn component_failure(
    metrics: &crate::telemetry::Metrics,
    e: CallError,
    component: &str,
    tenant: Option<&str>,
) -> Response<Body> {
    if let CallError::Busy = e {
        metrics.reject(Rejection::Capacity);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The gateway is at capacity; retry shortly",
            tenant,
        );
    }
    let what = match &e {
        CallError::Store(_) => {
            tracing::error!(component, error = %e, "a write was not stored");
            ": the change could not be stored".to_owned()
        }
        _ => {
            // A plugin the component called is the one to name.
            let component = match &e {
                CallError::Plugin { component, .. } => component.as_str(),
                _ => component,
            };
            tracing::error!(component, error = %e, "component failed");
            format!(" in component {component}")
        }
    };
    let id = crate::telemetry::request::id();
    let request = id.as_ref().and_then(|id| id.to_str().ok()).unwrap_or("-");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("Internal server error{what} (request {request})"),
        tenant,
    )
}
