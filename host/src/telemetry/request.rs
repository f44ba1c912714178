//! The request a log line is about, without a tracing span per request.
//!
//! Every line logged while a request is served names it (its id, method and
//! path), as a span around the request did: the server runs each request in a
//! task-local [`scope`], work the request hands to a task of its own
//! [`inherit`]s it, and the line formats ([`Text`], [`Json`]) write it. A span
//! per request (made, with its fields formatted, entered and left at every
//! poll, closed) cost about as much as the access line itself: a proxied
//! request's CPU fell by some 10 % without it, with the line unchanged.
//!
//! The lines are those of `tracing-subscriber`'s default formats with the
//! request where the span was: in text `request{id=… method=… path="…"}:`
//! before the target, in JSON a `span` object (and `spans`, a list of it).

use std::fmt;
use std::future::Future;
use tokio::task::futures::TaskLocalFuture;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The request being served: what its log lines name.
#[derive(Clone, Debug)]
pub struct Request {
    /// Its id (`x-request-id`).
    pub id: http::HeaderValue,
    /// Its method.
    pub method: http::Method,
    /// Its target (the path is logged).
    pub uri: http::Uri,
}

tokio::task_local! {
    /// `None` in a task that [`inherit`]ed no request.
    static REQUEST: Option<Request>;
}

/// What `f` makes of the request being served, if any.
fn current<R>(f: impl FnOnce(&Request) -> R) -> Option<R> {
    REQUEST.try_with(|r| r.as_ref().map(f)).ok().flatten()
}

/// The id of the request being served, if any.
pub fn id() -> Option<http::HeaderValue> {
    current(|r| r.id.clone())
}

/// Runs `fut` as the serving of `request`: the lines it logs name it. (The
/// scope's own future, not an `async fn` awaiting it, which would store `fut`
/// twice.)
pub fn scope<F: Future>(request: Request, fut: F) -> TaskLocalFuture<Option<Request>, F> {
    REQUEST.scope(Some(request), fut)
}

/// `fut`, to run in a task of its own, still naming the request being served
/// here (if any) on the lines it logs.
pub fn inherit<F: Future>(fut: F) -> TaskLocalFuture<Option<Request>, F> {
    REQUEST.scope(current(Clone::clone), fut)
}

impl Request {
    fn id(&self) -> &str {
        self.id.to_str().unwrap_or("")
    }
}

/// The log line formats: [`Text`] or [`Json`] with a timer.
pub enum Lines<T> {
    /// The time, the level, the request if any, the target, the fields.
    Text(T),
    /// A JSON object: `timestamp`, `level`, `fields`, `target`, and the
    /// request if any as `span` and `spans`.
    Json(T),
}

pub use Lines::{Json, Text};

impl<S, N, T> FormatEvent<S, N> for Lines<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        match self {
            Text(timer) => text(timer, ctx, w, event),
            Json(timer) => json(timer, w, event),
        }
    }
}

fn text<S, N>(
    timer: &impl FormatTime,
    ctx: &FmtContext<'_, S, N>,
    mut w: Writer<'_>,
    event: &Event<'_>,
) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let meta = event.metadata();
    timer.format_time(&mut w)?;
    let level = meta.level();
    if w.has_ansi_escapes() {
        let colour = match *level {
            Level::TRACE => 35,
            Level::DEBUG => 34,
            Level::INFO => 32,
            Level::WARN => 33,
            Level::ERROR => 31,
        };
        write!(w, " \x1b[{colour}m{level:>5}\x1b[0m ")?;
    } else {
        write!(w, " {level:>5} ")?;
    }
    current(|r| {
        write!(
            w,
            "request{{id={} method={} path={:?}}}: ",
            r.id(),
            r.method,
            r.uri.path()
        )
    })
    .unwrap_or(Ok(()))?;
    write!(w, "{}: ", meta.target())?;
    ctx.format_fields(w.by_ref(), event)?;
    writeln!(w)
}

fn json(timer: &impl FormatTime, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
    use serde_json::{Map, Value};
    let meta = event.metadata();
    let mut time = String::new();
    timer.format_time(&mut Writer::new(&mut time))?;
    let mut fields = Fields(Map::new());
    event.record(&mut fields);
    let mut line = Map::new();
    line.insert("timestamp".into(), Value::String(time));
    line.insert("level".into(), Value::String(meta.level().to_string()));
    line.insert("fields".into(), Value::Object(fields.0));
    line.insert("target".into(), Value::String(meta.target().into()));
    if let Some(span) = current(|r| {
        serde_json::json!({
            "id": r.id(),
            "method": r.method.as_str(),
            "path": r.uri.path(),
            "name": "request",
        })
    }) {
        line.insert("span".into(), span.clone());
        line.insert("spans".into(), Value::Array(vec![span]));
    }
    let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
    w.write_str(&text)?;
    writeln!(w)
}

/// An event's fields as JSON values.
struct Fields(serde_json::Map<String, serde_json::Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn request() -> Request {
        Request {
            id: http::HeaderValue::from_static("00ff-7"),
            method: http::Method::PUT,
            uri: "/api/v1/tenants/a%22b/config?x=1".parse().unwrap(),
        }
    }

    /// Logs one line outside a request and one in it (from a task of its
    /// own, as the config API's component runs), and returns them.
    fn logged(json: bool) -> Vec<String> {
        let out = Lines::default();
        let sink = out.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone());
        let dispatch = if json {
            tracing::Dispatch::new(builder.event_format(Json(())).finish())
        } else {
            tracing::Dispatch::new(builder.event_format(Text(())).finish())
        };
        tracing::dispatcher::with_default(&dispatch, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            tracing::info!(n = 1u64, "outside");
            rt.block_on(scope(request(), async {
                let inner = inherit(async {
                    tracing::warn!(route = "config", ok = true, "inside \"quoted\"")
                });
                tokio::spawn(inner).await.unwrap();
            }));
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn text_lines_name_the_request_where_the_span_was() {
        let lines = logged(false);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let (outside, inside) = (&lines[0], &lines[1]);
        assert!(
            outside.starts_with("  INFO tenant_gateway::telemetry::request::tests: outside n=1"),
            "{outside}"
        );
        assert_eq!(
            inside,
            "  WARN request{id=00ff-7 method=PUT path=\"/api/v1/tenants/a%22b/config\"}: \
             tenant_gateway::telemetry::request::tests: inside \"quoted\" route=\"config\" ok=true"
        );
    }

    #[test]
    fn json_lines_carry_the_request_as_their_span() {
        let lines = logged(true);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let outside: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(
            outside["fields"],
            serde_json::json!({"message": "outside", "n": 1})
        );
        assert_eq!(outside["level"], "INFO");
        assert!(outside.get("span").is_none(), "{outside}");
        let inside: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        let span = serde_json::json!({
            "id": "00ff-7", "method": "PUT", "path": "/api/v1/tenants/a%22b/config", "name": "request"
        });
        assert_eq!(inside["span"], span);
        assert_eq!(inside["spans"], serde_json::json!([span]));
        assert_eq!(
            inside["fields"],
            serde_json::json!({"message": "inside \"quoted\"", "route": "config", "ok": true})
        );
        assert_eq!(
            inside["target"],
            "tenant_gateway::telemetry::request::tests"
        );
    }
}
