//! Operations: `/healthz` (`/health`), `/readyz` and `/metrics`, on the main
//! listener and on the admin listener (`TenantGateway.AdminListen`), where
//! they need no credentials.

use crate::http::{
    Body, ErrorBody, Gateway, Router, Routes, error, json, require_super_user, served,
};
use axum::extract::{Request, State};
use axum::routing::any;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use std::sync::Arc;

/// A health answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a document: the handlers write fixed texts
struct Status {
    #[schema(examples("ok", "ready", "draining", "store unreachable"))]
    status: String,
}

/// The API's part of `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz, metrics))]
pub struct Doc;

/// The main listener's routes.
pub fn routes() -> Routes {
    health().route("/metrics", any(metrics))
}

/// Liveness and readiness, on both listeners.
fn health() -> Routes {
    Routes::new()
        .route("/healthz", any(healthz))
        .route("/health", any(healthz))
        .route("/readyz", any(readyz))
}

/// The admin listener's routes: the same without credentials, nothing else.
pub fn admin_routes() -> Router {
    health()
        .into_router()
        .route(
            "/metrics",
            any(
                |State(gw): State<Arc<Gateway>>, req: Request| async move { exposition(&gw, &req) },
            ),
        )
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "The admin listener serves /metrics, /healthz and /readyz",
                None,
            )
        })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "Operations", security(()),
    responses((status = 200, description = "Yes", body = Status)))]
async fn healthz() -> Response<Body> {
    served(json(StatusCode::OK, r#"{"status":"ok"}"#), "health", None)
}

/// Readiness: components loaded, store reachable, the listeners (HTTP, and
/// AMQP when configured) taking connections, not draining.
#[utoipa::path(get, path = "/readyz", tag = "Operations", security(()),
    responses(
        (status = 200, description = "Yes", body = Status),
        (status = 503, description = "No", body = Status)))]
async fn readyz(State(gw): State<Arc<Gateway>>) -> Response<Body> {
    let resp = if gw.draining() {
        json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#)
    } else {
        let store = gw.runtime.shared().store.clone();
        let reachable = tokio::task::spawn_blocking(move || store.get("_gateway", "ready").is_ok())
            .await
            .unwrap_or(false);
        use crate::http::listening::Unready;
        let unready = |status: &'static str| json(StatusCode::SERVICE_UNAVAILABLE, status);
        match (
            reachable,
            gw.http_listening.check(),
            gw.amqp_listening.check(),
        ) {
            (false, _, _) => unready(r#"{"status":"store unreachable"}"#),
            (_, Err(Unready::AcceptFailing), _) => {
                unready(r#"{"status":"http listener failing to accept connections"}"#)
            }
            (_, _, Err(Unready::AcceptFailing)) => {
                unready(r#"{"status":"amqp listener failing to accept connections"}"#)
            }
            (_, _, Err(Unready::Stopped)) => unready(r#"{"status":"amqp listener stopped"}"#),
            // The HTTP listener stopped: only at shutdown (draining, above).
            (true, _, Ok(())) => json(StatusCode::OK, r#"{"status":"ready"}"#),
        }
    };
    served(resp, "health", None)
}

/// Prometheus metrics (super-user; or without credentials on TenantGateway.AdminListen, and then not here).
///
/// It names every tenant, so on the main listener it is the super-user's.
#[utoipa::path(get, path = "/metrics", tag = "Operations", security(("superUser" = [])),
    responses(
        (status = 200, description = "Text exposition format (OpenMetrics when asked for)", body = String, content_type = "text/plain"),
        (status = 401, description = "Not the super-user's Basic credentials", body = ErrorBody),
        (status = 404, description = "Served on the admin listener instead", body = ErrorBody)))]
async fn metrics(State(gw): State<Arc<Gateway>>, req: Request) -> Response<Body> {
    let resp = if gw.admin_listener {
        error(
            StatusCode::NOT_FOUND,
            "Metrics are served on the admin listener (TenantGateway.AdminListen)",
            None,
        )
    } else if let Err(denied) = require_super_user(&gw, req.headers()).await {
        denied.challenge(error(denied.status, denied.message, None))
    } else {
        exposition(&gw, &req)
    };
    served(resp, "metrics", None)
}

/// Every layer's metrics. OpenMetrics text, labelled as such for scrapers that
/// ask for it (Prometheus does); others get it as the classic text format,
/// which reads it the same (its `# EOF` is a comment there).
fn exposition(gw: &Gateway, req: &Request) -> Response<Body> {
    let text = crate::telemetry::encode(&gw.exposition);
    let open_metrics = req
        .headers()
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let mut resp = Response::new(Body::from(Bytes::from(text)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(if open_metrics {
            crate::telemetry::CONTENT_TYPE
        } else {
            "text/plain; version=0.0.4; charset=utf-8"
        }),
    );
    resp
}
