//! The Spin HTTP export (the export macro expands to the ABI glue, which is unsafe).
#![allow(unsafe_code)]

use crate::{query_param, report, variable_name};
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;
use spin_sdk::variables;

fn json(status: u16, body: &serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}

#[http_component]
fn handle(req: Request) -> Response {
    let tenant = variables::get("tenant_name").unwrap_or_default();
    let connection = query_param(req.query(), "connection").unwrap_or("EdFi_Admin");
    let connection_string = match variables::get(&variable_name(connection)) {
        Ok(cs) => Some(cs),
        Err(variables::Error::Undefined(_)) | Err(variables::Error::InvalidName(_)) => None,
        Err(_) => {
            let body = serde_json::json!({
                "error": "Internal Server Error",
                "message": "The variables provider failed",
                "code": 500,
            });
            return json(500, &body);
        }
    };
    let (status, body) = report(&tenant, connection, connection_string.as_deref());
    json(status, &body)
}
