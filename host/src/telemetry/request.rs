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
use tracing_subscriber::field::VisitOutput;
use tracing_subscriber::fmt::format::{DefaultFields, DefaultVisitor, Writer};
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
    /// The address of the client it came from (kept here rather than in the
    /// request's extensions: the first extension allocates a map, a box and
    /// its table, three allocations per request).
    pub peer: std::net::SocketAddr,
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

/// The address of the client of the request being served, if any.
pub fn peer() -> Option<std::net::SocketAddr> {
    current(|r| r.peer)
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
        w.write_str(padded(level))?;
    }
    current(|r| request_text(&mut w, r)).unwrap_or(Ok(()))?;
    w.write_str(meta.target())?;
    w.write_str(": ")?;
    ctx.format_fields(w.by_ref(), event)?;
    writeln!(w)
}

/// `" {level:>5} "`, made already. (The text format writes every line's
/// parts as they are rather than through `write!`: with the access line on,
/// formatting was 4 % of a proxied request's CPU, `RUST_LOG=warn` against the
/// default.)
fn padded(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => " TRACE ",
        Level::DEBUG => " DEBUG ",
        Level::INFO => "  INFO ",
        Level::WARN => "  WARN ",
        Level::ERROR => " ERROR ",
    }
}

/// `request{id=… method=… path="…"}: `, the path as `Debug` writes it.
fn request_text(w: &mut impl fmt::Write, r: &Request) -> fmt::Result {
    w.write_str("request{id=")?;
    w.write_str(r.id())?;
    w.write_str(" method=")?;
    w.write_str(r.method.as_str())?;
    w.write_str(" path=")?;
    let path = r.uri.path();
    if quotes_as_is(path) {
        w.write_char('"')?;
        w.write_str(path)?;
        w.write_char('"')?;
    } else {
        write!(w, "{path:?}")?;
    }
    w.write_str("}: ")
}

/// Log line times: RFC 3339 in UTC with microseconds, what the default timer
/// writes. The date and time to the second are made once a second on each
/// thread (by humantime) and copied; the microseconds written after them.
/// (The default timer writes each field with its own `write!`; humantime's
/// whole stamp through `Display` was still 0.2 % of a proxied request's CPU.)
#[derive(Clone, Copy, Debug, Default)]
pub struct Rfc3339Micros;

impl Rfc3339Micros {
    /// `at` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub fn stamp(at: std::time::SystemTime) -> [u8; 27] {
        thread_local! {
            static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
        }
        let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (cached, mut head) = SECOND.get();
        if cached != secs {
            let whole = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            head.copy_from_slice(&text.as_bytes()[..19]);
            SECOND.set((secs, head));
        }
        let mut stamp = [0; 27];
        stamp[..19].copy_from_slice(&head);
        stamp[19] = b'.';
        let mut micros = since.subsec_micros();
        for digit in stamp[20..26].iter_mut().rev() {
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        stamp[26] = b'Z';
        stamp
    }
}

impl FormatTime for Rfc3339Micros {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let stamp = Self::stamp(std::time::SystemTime::now());
        w.write_str(std::str::from_utf8(&stamp).map_err(|_| fmt::Error)?)
    }
}

/// Where access lines go without the `tracing` dispatch (text lines without
/// colours, the format a log collector reads): set once, when logging is
/// set up.
static ACCESS: std::sync::OnceLock<super::log::Lines> = std::sync::OnceLock::new();

/// Has [`access_line`] write text access lines straight to `lines`.
pub fn access_lines_to(lines: super::log::Lines) {
    let _ = ACCESS.set(lines);
}

/// Writes a served request's access line (`served route=… tenant=…
/// status=… micros=…`, from `target`, at `INFO`, in the request's scope)
/// straight to the log, the very line [`Text`] and [`TextFields`] write
/// with [`Rfc3339Micros`]; `false` when it must go through `tracing`
/// instead: nothing set up for it ([`access_lines_to`]: JSON or colours), or
/// a tenant name that needs escaping. The caller has checked that the line
/// is enabled. Through `tracing`, the dispatch, the fields' visitor and its
/// dynamic writes were half the line's cost: 3.6 % of a proxied request's
/// CPU for the line (`perf`).
pub fn access_line(target: &str, served: &Access<'_>) -> bool {
    let Some(lines) = ACCESS.get() else {
        return false;
    };
    thread_local! {
        static LINE: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(256));
    }
    LINE.with_borrow_mut(|line| {
        let stamp = Rfc3339Micros::stamp(std::time::SystemTime::now());
        let stamp = std::str::from_utf8(&stamp).unwrap_or_default();
        if !access_text(line, stamp, target, served) {
            return false;
        }
        let _ = std::io::Write::write(&mut &*lines, line.as_bytes());
        true
    })
}

/// What an access line says of a served request.
pub struct Access<'a> {
    /// The route that served it.
    pub route: &'a str,
    /// The tenant it was for, if one was resolved.
    pub tenant: Option<&'a str>,
    /// The answer's status.
    pub status: u16,
    /// How long it took, in microseconds.
    pub micros: u64,
}

/// The access line into `line` (emptied first), after `stamp`; `false`
/// (and nothing) for a tenant name (or route) that needs escaping.
fn access_text(line: &mut String, stamp: &str, target: &str, served: &Access<'_>) -> bool {
    let &Access {
        route,
        tenant,
        status,
        micros,
    } = served;
    line.clear();
    if !quotes_as_is(route) || tenant.is_some_and(|t| !quotes_as_is(t)) {
        return false;
    }
    line.push_str(stamp);
    line.push_str(padded(&Level::INFO));
    let _ = current(|r| request_text(line, r));
    line.push_str(target);
    line.push_str(": ");
    // The fields as `TextFields` writes them: the message, then each.
    let _ = write_plain(line, "", "message", "served", false);
    let mut status_text = itoa::Buffer::new();
    let mut micros_text = itoa::Buffer::new();
    let fields = [
        Some(("route", route, true)),
        tenant.map(|t| ("tenant", t, true)),
        Some(("status", status_text.format(status), false)),
        Some(("micros", micros_text.format(micros), false)),
    ];
    for (name, value, quoted) in fields.into_iter().flatten() {
        let _ = write_plain(line, " ", name, value, quoted);
    }
    line.push('\n');
    true
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

/// The fields of a text line, exactly as `tracing-subscriber`'s
/// `DefaultFields` writes them (the message, then `name=value` for the rest),
/// without its formatting machinery where none is needed: a string with
/// nothing to escape is copied as it is (between quotes unless it is the
/// message), a message given as a format string is formatted on the stack
/// and copied when it is printable ASCII, an integer is written by `itoa`, a
/// bool as a word. Anything else
/// goes to `DefaultFields`' own visitor, as does every field with colours (a
/// terminal). `DefaultFields` sent every name, `=` and value through
/// `write!` and a no-op ANSI style: 2.7 % of a proxied request's CPU
/// (`perf`), for the access line's few fields.
#[derive(Clone, Copy, Debug, Default)]
pub struct TextFields;

impl<'w> FormatFields<'w> for TextFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        w: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        if w.has_ansi_escapes() {
            return DefaultFields::new().format_fields(w, fields);
        }
        let mut visitor = TextVisitor {
            w,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct TextVisitor<'w> {
    w: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

/// Printable ASCII: what `Display` and `Debug` (but for `"` and `\`) write
/// as it is, and `tracing-subscriber` does not escape.
fn printable(s: &str) -> bool {
    s.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// Whether `Debug` writes `s` as it is between quotes: printable ASCII with
/// no `"` or `\`.
fn quotes_as_is(s: &str) -> bool {
    printable(s) && !s.contains(['"', '\\'])
}

/// Longest message written without `DefaultFields` when given as a format
/// string (it is formatted here first, to see whether it needs escaping).
const MESSAGE_BUFFER: usize = 256;

impl TextVisitor<'_> {
    /// Whether `field` is not written: after a failed write, or `log` crate
    /// metadata, which `DefaultFields` leaves out too.
    fn skips(&self, field: &Field) -> bool {
        self.result.is_err() || field.name().starts_with("log.")
    }

    /// Writes `value` of `field` (`message`: the value alone), quoted or not.
    fn plain(&mut self, field: &Field, value: &str, quoted: bool) {
        let sep = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        self.result = write_plain(&mut self.w, sep, field.name(), value, quoted);
    }

    /// Has `DefaultFields`' visitor write `field`.
    fn default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut visitor = DefaultVisitor::new(self.w.by_ref(), self.first);
        record(&mut visitor);
        self.result = visitor.finish();
        self.first = false;
    }

    /// Writes a value that `Debug` writes as the text `value` (a number, a
    /// bool).
    fn bare(&mut self, field: &Field, value: &str) {
        if self.skips(field) {
        } else if field.name() == "message" {
            self.default(|v| v.record_debug(field, &format_args!("{value}")));
        } else {
            self.plain(field, value, false);
        }
    }
}

fn write_plain(
    w: &mut impl fmt::Write,
    sep: &str,
    name: &str,
    value: &str,
    quoted: bool,
) -> fmt::Result {
    w.write_str(sep)?;
    if name != "message" {
        w.write_str(name.strip_prefix("r#").unwrap_or(name))?;
        w.write_char('=')?;
    }
    if quoted {
        w.write_char('"')?;
        w.write_str(value)?;
        w.write_char('"')
    } else {
        w.write_str(value)
    }
}

/// A message's text, formatted into a buffer on the stack: `None` when it
/// does not fit.
fn message_text<'b>(
    value: &dyn fmt::Debug,
    buffer: &'b mut [u8; MESSAGE_BUFFER],
) -> Option<&'b str> {
    use std::io::Write as _;
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    write!(cursor, "{value:?}").ok()?;
    let len = usize::try_from(cursor.position()).ok()?;
    std::str::from_utf8(&buffer[..len]).ok()
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.skips(field) {
            return;
        }
        let message = field.name() == "message";
        if (message && printable(value)) || quotes_as_is(value) {
            self.plain(field, value, !message);
        } else {
            self.default(|v| v.record_str(field, value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.bare(field, itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.bare(field, itoa::Buffer::new().format(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.bare(field, if value { "true" } else { "false" });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if !self.skips(field) {
            self.default(|v| v.record_error(field, value));
        }
    }

    /// A message given as a format string comes here: written as it is when
    /// its text is printable ASCII, as `DefaultFields` would write it.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.skips(field) {
            return;
        }
        if field.name() == "message" {
            let mut buffer = [0; MESSAGE_BUFFER];
            if let Some(text) = message_text(value, &mut buffer).filter(|t| printable(t)) {
                self.plain(field, text, false);
                return;
            }
        }
        self.default(|v| v.record_debug(field, value));
    }
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
            peer: std::net::SocketAddr::from(([192, 0, 2, 7], 50123)),
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
            tracing::Dispatch::new(
                builder
                    .fmt_fields(TextFields)
                    .event_format(Text(()))
                    .finish(),
            )
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
    fn the_request_is_written_as_the_format_string_wrote_it() {
        let mut escaped = 0;
        for target in [
            "/",
            "/items/1?x=\"y\"",
            "/a%22b/c d",
            "/a\"b",
            "/a\\b",
            "/a{b}|c^",
        ] {
            let Ok(uri) = target.parse::<http::Uri>() else {
                continue;
            };
            let r = Request { uri, ..request() };
            escaped += usize::from(!quotes_as_is(r.uri.path()));
            let mut text = String::new();
            request_text(&mut Writer::new(&mut text), &r).unwrap();
            let expected = format!(
                "request{{id={} method={} path={:?}}}: ",
                r.id(),
                r.method,
                r.uri.path()
            );
            assert_eq!(text, expected, "{target}");
        }
        // Paths that `Debug` escapes are among them.
        assert!(escaped > 0);
        for level in [
            Level::TRACE,
            Level::DEBUG,
            Level::INFO,
            Level::WARN,
            Level::ERROR,
        ] {
            assert_eq!(padded(&level), format!(" {level:>5} "));
        }
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

    /// The access line written directly is the one `tracing` writes in the
    /// text format, with a tenant and without, in a request's scope and out
    /// of one; a tenant name that needs escaping is left to `tracing`.
    #[test]
    fn the_access_line_written_directly_is_the_line_tracing_writes() {
        fn access<'a>(
            route: &'a str,
            tenant: Option<&'a str>,
            status: u16,
            micros: u64,
        ) -> Access<'a> {
            Access {
                route,
                tenant,
                status,
                micros,
            }
        }
        fn events() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(scope(request(), async {
                tracing::info!(
                    route = "upstream",
                    tenant = "Tenant1",
                    status = 200u16,
                    micros = 466u64,
                    "served"
                );
                tracing::info!(route = "other", status = 404u16, micros = 7u64, "served");
            }));
            tracing::info!(route = "other", status = 400u16, micros = 0u64, "served");
        }
        let through_tracing = text_lines(TextFields, events);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let target = module_path!();
        // (in a request's scope, the line's fields), as `events` logs them.
        let cases = [
            (true, access("upstream", Some("Tenant1"), 200, 466)),
            (true, access("other", None, 404, 7)),
            (false, access("other", None, 400, 0)),
        ];
        let mut line = String::new();
        let mut direct = Vec::new();
        for (in_scope, served) in &cases {
            let mut write = || {
                assert!(access_text(&mut line, "", target, served));
                assert!(line.ends_with('\n'));
                direct.push(line.trim_end().to_owned());
            };
            if *in_scope {
                rt.block_on(scope(request(), async { write() }));
            } else {
                write();
            }
        }
        assert_eq!(direct, through_tracing);
        let escaped = access("upstream", Some("a\"b"), 200, 1);
        assert!(!access_text(&mut line, "", target, &escaped));
        assert!(line.is_empty());
    }

    #[test]
    fn stamps_are_rfc3339_with_microseconds() {
        let base = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_000_000);
        for offset_us in [0, 1, 999_999, 1_000_000, 1_000_001, 86_400_000_123, 7] {
            let at = base + std::time::Duration::from_micros(offset_us);
            assert_eq!(
                std::str::from_utf8(&Rfc3339Micros::stamp(at)).unwrap(),
                humantime::format_rfc3339_micros(at).to_string(),
            );
        }
    }

    /// The lines `events` logs in the text format, its fields written by
    /// `fields`.
    fn text_lines<F>(fields: F, events: fn()) -> Vec<String>
    where
        F: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let out = Lines::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .fmt_fields(fields)
            .event_format(Text(()))
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[derive(Debug)]
    struct Failure(&'static str, Option<Box<Failure>>);

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Failure {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn text_fields_are_written_as_the_default_fields_write_them() {
        fn events() {
            let caused = Failure("outer \"x\"", Some(Box::new(Failure("inner", None))));
            let alone = Failure("alone\x1b[31m", None);
            tracing::info!(
                route = "upstream",
                tenant = "Tenant1",
                status = 200u64,
                micros = 73u64,
                "served"
            );
            tracing::info!(
                a = "quote \" here",
                b = "back\\slash",
                c = "new\nline",
                d = "esc\x1b[2J"
            );
            tracing::info!(
                e = "caf\u{e9}",
                f = "c1\u{85}",
                g = "",
                h = -12i64,
                i = true,
                j = false
            );
            tracing::info!(message = "a str message \x1b[31m red", k = 1u64);
            tracing::info!(message = "plain str message", r#type = "raw", l = i64::MIN);
            tracing::info!(message = "a \"quoted\" str message with a \\", s = "x");
            tracing::info!(m = 7u64, "args {} \"{}\"", 1, "two");
            tracing::warn!(
                error = &caused as &(dyn std::error::Error + 'static),
                "failed"
            );
            tracing::warn!(
                error = &alone as &(dyn std::error::Error + 'static),
                "failed"
            );
            tracing::info!(n = ?vec!["x"], o = %"shown", p = 1.5f64, "mixed");
            tracing::info!(log.target = "skipped", q = "after the log field");
            tracing::info!(message = 12u64);
            tracing::info!("{} long", "x".repeat(super::MESSAGE_BUFFER));
            tracing::info!(t = 1u64, "a tab\there and {}", "\u{1b}[31m");
        }
        let ours = text_lines(TextFields, events);
        let theirs = text_lines(DefaultFields::new(), events);
        assert_eq!(ours.len(), 14, "{ours:#?}");
        assert_eq!(ours, theirs);
        assert!(
            ours[0]
                .ends_with(": served route=\"upstream\" tenant=\"Tenant1\" status=200 micros=73"),
            "{}",
            ours[0]
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
