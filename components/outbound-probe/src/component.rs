//! The HTTP export (the export macro expands to the ABI glue, which is unsafe).
#![allow(unsafe_code)]

use crate::{SCRATCH_BYTES, answered, failed, leftover_then_fill, memory_report, target};
use spin_sdk::http::{Request, Response, SendError, send};
use spin_sdk::http_component;

fn reply(status: u16, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body)
        .build()
}

/// The memory probe's buffer: zero in the initial image (`.bss`).
static SCRATCH: std::sync::Mutex<[u8; SCRATCH_BYTES]> = std::sync::Mutex::new([0; SCRATCH_BYTES]);

#[http_component]
async fn handle(req: Request) -> Response {
    if req.path().ends_with("/memory") {
        let mut scratch = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
        return reply(200, memory_report(leftover_then_fill(&mut scratch[..])));
    }
    let Some(url) = target(req.query()) else {
        return reply(400, failed("usage", "?url=<absolute URL>"));
    };
    let outbound = Request::get(url).build();
    match send::<_, Response>(outbound).await {
        Ok(answer) => reply(200, answered(*answer.status(), answer.body().len())),
        // The error code the host gave the outbound request, by name.
        Err(SendError::Http(code)) => reply(502, failed("send", &format!("{code:?}"))),
        Err(SendError::ResponseConversion(e)) => reply(502, failed("body", &e.to_string())),
        Err(e) => reply(502, failed("other", &e.to_string())),
    }
}
