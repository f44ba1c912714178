//! HTTP/1.1 to upstreams, spoken by the request's own task: the request's
//! head (and body) written to a kept-alive connection, the answer's head read
//! and parsed (`httparse`, the parser hyper uses), and its body handed on
//! frame by frame as it is read ([`AnswerBody`]: a length, chunked, or up to
//! the connection's close).
//!
//! Written here rather than over hyper's client connection, which drives
//! each connection in a task of its own: every request went to that task and
//! its answer came back through channels (the request, the answer head and
//! each body frame), a task wake-up and a scheduling each way, and the task's
//! own polling — a fifth of the user-space CPU of a proxied request (`perf`
//! of the proxy benchmark). Here a request is written and its answer read in
//! the same task, with the same syscalls.
//!
//! What it takes from a peer is bounded: an answer's head (and a chunked
//! body's trailers) at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] fields, a
//! chunk-size line at most [`MAX_CHUNK_LINE`]; a body is never buffered
//! whole, only read as it is sent on. A request body is sent while the answer
//! is awaited, so an upstream answering early (a 413, say) is heard, and the
//! rest of the body is not sent.

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use hyper::body::{Body, Frame, SizeHint};
use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Largest answer head (status line and header fields), and largest trailer
/// section, taken from an upstream.
const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in an answer head (hyper's client default).
const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (with its extensions) taken.
const MAX_CHUNK_LINE: usize = 4096;
/// Room made for each read.
const READ_SIZE: usize = 16 * 1024;
/// Request body bytes gathered before they are written; a frame larger than
/// this is written as it is, not copied.
const GATHER: usize = 16 * 1024;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing failed; `answered`: whether any of an answer had
    /// come by then.
    #[error("{error}")]
    Io { error: io::Error, answered: bool },
    /// The upstream closed the connection; `answered` as above.
    #[error("the upstream closed the connection {}", if *.answered { "within its answer" } else { "before answering" })]
    Closed { answered: bool },
    /// The upstream's answer broke HTTP/1.1.
    #[error("the upstream's answer is malformed: {0}")]
    Malformed(&'static str),
    /// The client's request body failed on its way (its error, or a length
    /// it did not keep to).
    #[error("the request body failed")]
    RequestBody(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Whether the exchange failed before any of an answer came, on a
    /// connection that broke (closed, reset): an idle connection the
    /// upstream had let go of.
    pub(super) fn unanswered(&self) -> bool {
        matches!(
            self,
            Error::Closed { answered: false }
                | Error::Io {
                    answered: false,
                    ..
                }
        )
    }
}

/// A connection to an upstream, between exchanges or in one.
pub(super) struct Conn {
    io: TcpStream,
    /// Read and not yet used: an answer head being parsed, or body bytes.
    read: BytesMut,
    /// The request being written (kept for its room).
    write: Vec<u8>,
}

impl Conn {
    pub(super) fn new(io: TcpStream) -> Self {
        Self {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
        }
    }

    /// Whether this idle connection can take a request: nothing is waiting
    /// to be read on it. An upstream says nothing between exchanges, so
    /// anything there (its close, most often) means the connection is done.
    /// No syscall unless the reactor has seen something arrive.
    pub(super) fn is_usable(&self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Has `waker` woken when something arrives on this idle connection;
    /// `false` (and no waker kept) when it is not fit to be kept idle.
    pub(super) fn watch<W: std::task::Wake + Send + Sync + 'static>(
        &self,
        waker: &std::sync::Arc<W>,
    ) -> bool {
        let waker = std::task::Waker::from(waker.clone());
        let mut cx = Context::from_waker(&waker);
        // Readiness left from the last read (one that filled its room) is
        // cleared by `is_usable`'s probe when nothing is there; readiness
        // after it is something that came.
        self.is_usable() && self.io.poll_read_ready(&mut cx).is_pending()
    }
}

/// How a request's body goes to the upstream.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Sending {
    /// No body; `length_zero`: the client said `Content-Length: 0`, said again.
    Empty { length_zero: bool },
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked (the client's `Transfer-Encoding` passed on, or one of ours).
    Chunked,
}

/// An answer's head, and how its body is framed.
pub(super) struct Answer {
    pub(super) head: http::response::Parts,
    pub(super) body: AnswerBody,
}

/// Sends the request (`parts` and `body`; its target in origin form, its
/// `Host` set) on `conn` and reads the answer's head. The answer's body is
/// read from `conn` ([`AnswerBody`]), which holds it till the body ends.
pub(super) async fn exchange<B>(
    mut conn: Conn,
    parts: &http::request::Parts,
    body: &mut B,
) -> Result<Answer, Error>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let sending = sending(parts, body);
    encode_head(&mut conn.write, parts, sending);
    let head_request = parts.method == Method::HEAD;
    let Conn { io, read, write } = &mut conn;
    let (head, body_sent) = match sending {
        Sending::Empty { .. } => {
            if let Err(error) = io.write_all(write).await {
                return Err(Error::Io {
                    error,
                    answered: false,
                });
            }
            (read_head(io, read, head_request).await, true)
        }
        Sending::Length(_) | Sending::Chunked => {
            let (mut rd, mut wr) = io.split();
            let reading = read_head(&mut rd, read, head_request);
            let sent = send_body(&mut wr, write, body, sending);
            tokio::pin!(reading, sent);
            let mut sent_all = false;
            let mut write_failed = None;
            loop {
                tokio::select! {
                    biased;
                    head = &mut reading => break (head.map_err(|e| write_failed.take().unwrap_or(e)), sent_all),
                    done = &mut sent, if !sent_all && write_failed.is_none() => match done {
                        Ok(()) => sent_all = true,
                        Err(e @ Error::RequestBody(_)) => return Err(e),
                        // The upstream may have answered before it stopped
                        // reading: its answer is still read.
                        Err(e) => write_failed = Some(e),
                    },
                }
            }
        }
    };
    if write.capacity() > MAX_HEAD {
        *write = Vec::new();
    }
    match head {
        Ok(head) => {
            let keep = head.keep && body_sent;
            Ok(Answer {
                body: AnswerBody {
                    conn: Some(conn),
                    framing: head.framing,
                    keep,
                },
                head: head.parts,
            })
        }
        Err(e) => Err(e),
    }
}

/// How the body of the request goes on: the client's `Transfer-Encoding`
/// (hyper has checked it ends in `chunked`) stays chunked; a body of known
/// length keeps it; any other is chunked.
fn sending<B: Body>(parts: &http::request::Parts, body: &B) -> Sending {
    if parts.headers.contains_key(TRANSFER_ENCODING) {
        return Sending::Chunked;
    }
    if body.is_end_stream() {
        return Sending::Empty {
            length_zero: parts.headers.contains_key(CONTENT_LENGTH),
        };
    }
    match body.size_hint().exact() {
        Some(n) => Sending::Length(n),
        None => Sending::Chunked,
    }
}

/// The request line and header fields into `out`, the framing field ours:
/// a client's `Content-Length` is written from the body's own length.
fn encode_head(out: &mut Vec<u8>, parts: &http::request::Parts, sending: Sending) {
    out.clear();
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match sending {
        Sending::Empty { length_zero: true } => out.extend_from_slice(b"content-length: 0\r\n"),
        Sending::Empty { length_zero: false } | Sending::Chunked => {}
        Sending::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if sending == Sending::Chunked && !parts.headers.contains_key(TRANSFER_ENCODING) {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the head in `out` and then the body, framed as `sending` says.
/// Frames ready at once are gathered (up to [`GATHER`]) into one write; the
/// head goes as soon as the body makes the writer wait.
async fn send_body<W, B>(
    io: &mut W,
    out: &mut Vec<u8>,
    body: &mut B,
    sending: Sending,
) -> Result<(), Error>
where
    W: tokio::io::AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io_error = |error| Error::Io {
        error,
        answered: false,
    };
    let chunked = sending == Sending::Chunked;
    let mut left = match sending {
        Sending::Length(n) => Some(n),
        _ => None,
    };
    loop {
        let polled = poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await;
        let frame = match polled {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                io.write_all(out).await.map_err(io_error)?;
                out.clear();
                poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(Error::RequestBody(e.into())),
            // Trailers are not passed on.
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        if let Some(left) = &mut left {
            *left = left
                .checked_sub(data.len() as u64)
                .ok_or_else(|| Error::RequestBody("the body is longer than its length".into()))?;
        }
        if chunked {
            let mut size = [0u8; 16];
            out.extend_from_slice(hex(data.len(), &mut size));
            out.extend_from_slice(b"\r\n");
        }
        if data.len() > GATHER {
            io.write_all(out).await.map_err(io_error)?;
            out.clear();
            io.write_all(&data).await.map_err(io_error)?;
        } else {
            out.extend_from_slice(&data);
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= GATHER {
            io.write_all(out).await.map_err(io_error)?;
            out.clear();
        }
    }
    if left.is_some_and(|l| l > 0) {
        return Err(Error::RequestBody(
            "the body is shorter than its length".into(),
        ));
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    io.write_all(out).await.map_err(io_error)?;
    io.flush().await.map_err(io_error)
}

/// `n` in lower-case hex digits, in `buf`.
fn hex(mut n: usize, buf: &mut [u8; 16]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// A parsed answer head.
struct Head {
    parts: http::response::Parts,
    framing: Framing,
    /// Whether the connection may carry another exchange after this one.
    keep: bool,
}

/// Reads (into `buf`) and parses an answer's head, passing over interim
/// (1xx) answers.
async fn read_head<R>(io: &mut R, buf: &mut BytesMut, head_request: bool) -> Result<Head, Error>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut answered = !buf.is_empty();
    loop {
        if !buf.is_empty() {
            answered = true;
            if let Some(head) = parse_head(buf, head_request)? {
                return Ok(head);
            }
            if buf.len() >= MAX_HEAD {
                return Err(Error::Malformed("its head is too large"));
            }
        }
        let n = fill(io, buf)
            .await
            .map_err(|error| Error::Io { error, answered })?;
        if n == 0 {
            return Err(Error::Closed { answered });
        }
    }
}

/// Reads what has come into `buf` (making room first).
async fn fill<R: tokio::io::AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
) -> io::Result<usize> {
    poll_fn(|cx| poll_fill(Pin::new(&mut *io), cx, buf)).await
}

fn poll_fill<R: tokio::io::AsyncRead>(
    io: Pin<&mut R>,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    buf.reserve(READ_SIZE);
    tokio_util::io::poll_read_buf(io, cx, buf)
}

/// The head at the start of `buf`, taken off it; `None` while incomplete;
/// an interim (1xx) answer is taken off and passed over.
fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, Error> {
    loop {
        // Where each field's name and value lie in `buf`.
        let mut fields = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        let mut headers = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            &buf[..],
            &mut headers,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Error::Malformed("it has too many header fields"));
            }
            Err(_) => return Err(Error::Malformed("its head is not HTTP/1.1")),
        };
        let code = parsed.code.unwrap_or(0);
        let version = match parsed.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let start = buf.as_ptr() as usize;
        let count = parsed.headers.len();
        for (field, header) in fields.iter_mut().zip(parsed.headers.iter()) {
            let name = header.name.as_ptr() as usize - start;
            let value = header.value.as_ptr() as usize - start;
            // Within MAX_HEAD (or the first read past it): fits in u32.
            *field = (
                name as u32,
                (name + header.name.len()) as u32,
                value as u32,
                (value + header.value.len()) as u32,
            );
        }
        let head = buf.split_to(len).freeze();
        if (100..200).contains(&code) {
            if code == 101 {
                return Err(Error::Malformed("it switches protocols"));
            }
            continue;
        }
        let status = StatusCode::from_u16(code)
            .map_err(|_| Error::Malformed("its status code is not one"))?;
        let mut map = HeaderMap::with_capacity(count);
        for &(ns, ne, vs, ve) in &fields[..count] {
            let name = HeaderName::from_bytes(&head[ns as usize..ne as usize])
                .map_err(|_| Error::Malformed("a header field's name is not one"))?;
            let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize))
                .map_err(|_| Error::Malformed("a header field's value is not one"))?;
            map.append(name, value);
        }
        let (framing, keep) = framing(&mut map, version, status, head_request)?;
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = status;
        parts.version = version;
        parts.headers = map;
        return Ok(Some(Head {
            parts,
            framing,
            keep,
        }));
    }
}

/// How an answer's body is framed (RFC 9112 §6.3), and whether its
/// connection may be kept. Both `Transfer-Encoding` and `Content-Length`:
/// the first rules, the second is dropped, and the connection is not kept.
fn framing(
    headers: &mut HeaderMap,
    version: Version,
    status: StatusCode,
    head_request: bool,
) -> Result<(Framing, bool), Error> {
    let close = connection_has(headers, "close");
    let mut keep = if version == Version::HTTP_10 {
        !close && connection_has(headers, "keep-alive")
    } else {
        !close
    };
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Length(0), keep));
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        if headers.remove(CONTENT_LENGTH).is_some() {
            keep = false;
        }
        let last = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim);
        return Ok(match last {
            Some(coding) if coding.eq_ignore_ascii_case("chunked") => {
                (Framing::Chunked(Chunk::Size), keep)
            }
            _ => (Framing::Close, false),
        });
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = parse_length(part.trim_ascii())
                .ok_or(Error::Malformed("its Content-Length is not a length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::Malformed("it has differing Content-Lengths"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), keep),
        None => (Framing::Close, false),
    })
}

/// A `Content-Length` value: decimal digits only.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether a `Connection` field names `option`.
fn connection_has(headers: &HeaderMap, option: &str) -> bool {
    connection_options(headers).any(|o| o.eq_ignore_ascii_case(option))
}

/// The options (header names, `close`, `keep-alive`) that a message's
/// `Connection` fields list, trimmed; empty entries included.
pub(super) fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// How the rest of an answer's body is framed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    /// This many bytes left (0: the body has ended).
    Length(u64),
    /// Chunked, at this point of it.
    Chunked(Chunk),
    /// Up to the connection's close.
    Close,
    /// Ended.
    Done,
}

/// Where a chunked body is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Chunk {
    /// At a chunk-size line.
    Size,
    /// Within a chunk's data: this many bytes left.
    Data(u64),
    /// At the line end after a chunk's data.
    DataEnd,
    /// At the trailer section (after the last chunk).
    Trailers,
}

/// An answer's body, read from its connection as it is polled; once ended,
/// [`AnswerBody::take_kept`] gives the connection back for another exchange
/// (if it may carry one).
pub(super) struct AnswerBody {
    conn: Option<Conn>,
    framing: Framing,
    keep: bool,
}

impl AnswerBody {
    /// The connection, once the body has ended and the connection can carry
    /// another exchange (nothing more came on it).
    pub(super) fn take_kept(&mut self) -> Option<Conn> {
        if !self.ended() || !self.keep {
            return None;
        }
        self.conn.take().filter(|c| c.read.is_empty())
    }

    fn ended(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Length(0))
    }
}

/// The next frame of a body framed as `framing`, from `buf`, or `None` for more to be read first.
fn frame(framing: &mut Framing, buf: &mut BytesMut) -> Result<Option<Frame<Bytes>>, io::Error> {
    loop {
        match *framing {
            Framing::Length(0) | Framing::Done => {
                *framing = Framing::Done;
                return Ok(None);
            }
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = left.min(buf.len() as u64);
                *framing = Framing::Length(left - n);
                return Ok(Some(Frame::data(buf.split_to(n as usize).freeze())));
            }
            Framing::Close => {
                if buf.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(Frame::data(buf.split().freeze())));
            }
            Framing::Chunked(Chunk::Size) => match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((len, size)))
                    if buf.first().is_some_and(u8::is_ascii_hexdigit) =>
                {
                    let _ = buf.split_to(len);
                    *framing = Framing::Chunked(if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    });
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_CHUNK_LINE => {
                    return Ok(None);
                }
                _ => return Err(malformed("a chunk size is not one")),
            },
            Framing::Chunked(Chunk::Data(left)) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = left.min(buf.len() as u64);
                *framing = Framing::Chunked(if n == left {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - n)
                });
                return Ok(Some(Frame::data(buf.split_to(n as usize).freeze())));
            }
            Framing::Chunked(Chunk::DataEnd) => {
                if buf.len() < 2 {
                    return Ok(None);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(malformed("a chunk does not end where its size says"));
                }
                let _ = buf.split_to(2);
                *framing = Framing::Chunked(Chunk::Size);
            }
            Framing::Chunked(Chunk::Trailers) => {
                let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match httparse::parse_headers(buf, &mut fields) {
                    Ok(httparse::Status::Complete((len, fields))) => {
                        let trailers = trailers(fields);
                        let _ = buf.split_to(len);
                        *framing = Framing::Done;
                        if let Some(trailers) = trailers {
                            return Ok(Some(Frame::trailers(trailers)));
                        }
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {
                        return Ok(None);
                    }
                    _ => return Err(malformed("its trailer section is not one")),
                }
            }
        }
    }
}

/// A chunked body's trailer fields (those that are valid), if any.
fn trailers(fields: &[httparse::Header<'_>]) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    for field in fields {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_bytes(field.value),
        ) {
            map.append(name, value);
        }
    }
    (!map.is_empty()).then_some(map)
}

fn malformed(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Error::Malformed(why))
}

impl Body for AnswerBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match frame(&mut this.framing, &mut conn.read) {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) if this.framing == Framing::Done => return Poll::Ready(None),
                Ok(None) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let n = match ready!(poll_fill(Pin::new(&mut conn.io), cx, &mut conn.read)) {
                Ok(n) => n,
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            };
            if n == 0 {
                this.conn = None;
                if this.framing == Framing::Close {
                    this.framing = Framing::Done;
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    Error::Closed { answered: true },
                ))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
