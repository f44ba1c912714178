//! The HTTP export (the export macro expands to the ABI glue, which is unsafe).
#![allow(unsafe_code)]

use crate::{query_param, report, variable_name};
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(req: Request) -> Response {
    let tenant = std::env::var("TENANT_NAME").unwrap_or_else(|_| "default".into());
    let connection = query_param(req.query(), "connection").unwrap_or("EdFi_Admin");
    let connection_string = variable_name(connection).and_then(|v| std::env::var(v).ok());
    let (status, body) = report(&tenant, connection, connection_string.as_deref());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}
