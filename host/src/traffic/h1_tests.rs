use super::*;
use http::Request;
use http_body_util::BodyExt;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How long any one step of these tests may take (they wait on conditions,
/// this only bounds a failure).
const STEP: Duration = Duration::from_secs(10);

/// A parsed head of `bytes`, fed one byte at a time (every split point a
/// read could leave), and what was left after it.
fn head_fed_bytewise(bytes: &[u8], head_request: bool) -> Result<(Head, BytesMut), Error> {
    let mut buf = BytesMut::new();
    for &b in bytes {
        buf.extend_from_slice(&[b]);
        if let Some(head) = parse_head(&mut buf, head_request)? {
            return Ok((head, buf));
        }
    }
    Err(Error::Closed { answered: true })
}

/// A body's data, its trailers, and the bytes left after it.
type Read = (Vec<u8>, Option<HeaderMap>, usize);

/// The body (and trailers) framed as `framing` in `bytes`, fed a byte at a
/// time, and how many bytes it left; `None` once the bytes run out before
/// its end.
fn body_fed_bytewise(mut framing: Framing, bytes: &[u8]) -> Result<Option<Read>, io::Error> {
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut trailers = None;
    let mut fed = bytes.iter();
    loop {
        while let Some(frame) = frame(&mut framing, &mut buf)? {
            match frame.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        if framing == Framing::Done {
            return Ok(Some((data, trailers, buf.len() + fed.len())));
        }
        match fed.next() {
            Some(&b) => buf.extend_from_slice(&[b]),
            None => return Ok(None),
        }
    }
}

#[test]
fn heads_are_parsed_at_every_split_and_framed_as_rfc_9112_says() {
    type Case = (&'static str, bool, &'static str, u16, Framing, bool);
    let cases: [Case; 9] = [
        (
            "length",
            false,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\n",
            200,
            Framing::Length(5),
            true,
        ),
        (
            "chunked",
            false,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            200,
            Framing::Chunked(Chunk::Size),
            true,
        ),
        (
            "not chunked last: to the close",
            false,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            200,
            Framing::Close,
            false,
        ),
        (
            "no length: to the close",
            false,
            "HTTP/1.1 200 OK\r\nX-A: b\r\n\r\n",
            200,
            Framing::Close,
            false,
        ),
        (
            "interim answers passed over",
            false,
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            204,
            Framing::Length(0),
            true,
        ),
        (
            "HEAD: no body whatever the length",
            true,
            "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
            200,
            Framing::Length(0),
            true,
        ),
        (
            "HTTP/1.0 without keep-alive",
            false,
            "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
            200,
            Framing::Length(2),
            false,
        ),
        (
            "Connection: close",
            false,
            "HTTP/1.1 304 Not Modified\r\nConnection: keep-alive, close\r\n\r\n",
            304,
            Framing::Length(0),
            false,
        ),
        (
            "both framings: chunked, the length dropped, not kept",
            false,
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            200,
            Framing::Chunked(Chunk::Size),
            false,
        ),
    ];
    for (name, head_request, text, status, framing, keep) in cases {
        let (head, left) = head_fed_bytewise(text.as_bytes(), head_request)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(head.parts.status.as_u16(), status, "{name}");
        assert_eq!(head.framing, framing, "{name}");
        assert_eq!(head.keep, keep, "{name}");
        assert!(left.is_empty(), "{name}: the whole head taken");
        if framing == Framing::Chunked(Chunk::Size) {
            assert!(!head.parts.headers.contains_key(CONTENT_LENGTH), "{name}");
        }
    }
    // Header values are kept as sent, and shared with the read buffer.
    let (head, _) = head_fed_bytewise(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\nX-A: c\r\n\r\n",
        false,
    )
    .unwrap();
    let values: Vec<_> = head.parts.headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["b", "c"]);
    assert_eq!(head.parts.version, Version::HTTP_11);
}

#[test]
fn malformed_heads_are_refused() {
    let many = format!(
        "HTTP/1.1 200 OK\r\n{}\r\n",
        "X-A: b\r\n".repeat(MAX_HEADERS + 1)
    );
    let cases: [(&str, &str); 6] = [
        (
            "a length that is not one",
            "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n",
        ),
        (
            "a signed length",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
        ),
        (
            "differing lengths",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        ),
        (
            "switching protocols",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        ),
        ("not HTTP", "SSH-2.0-OpenSSH\r\n\r\n"),
        ("too many fields", &many),
    ];
    for (name, text) in cases {
        match head_fed_bytewise(text.as_bytes(), false) {
            Err(Error::Malformed(_)) => {}
            Err(e) => panic!("{name}: {e}"),
            Ok(_) => panic!("{name}: taken"),
        }
    }
    // Repeated equal lengths are one length.
    let (head, _) = head_fed_bytewise(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
        false,
    )
    .unwrap();
    assert_eq!(head.framing, Framing::Length(5));
}

#[test]
fn bodies_are_read_at_every_split_to_their_end_and_no_further() {
    let chunked = Framing::Chunked(Chunk::Size);
    type Case = (&'static str, Framing, &'static str, &'static str, usize);
    let cases: [Case; 5] = [
        ("length", Framing::Length(5), "hello", "hello", 0),
        (
            "length, the next bytes left",
            Framing::Length(5),
            "helloHTTP",
            "hello",
            4,
        ),
        (
            "chunked, extensions and upper-case sizes",
            chunked,
            "5;a=b\r\nhello\r\nB\r\n, the world\r\n0\r\n\r\n",
            "hello, the world",
            0,
        ),
        (
            "chunked, trailers",
            chunked,
            "3\r\nabc\r\n0\r\nX-Sum: 9\r\n\r\n",
            "abc",
            0,
        ),
        (
            "chunked, the next bytes left",
            chunked,
            "1\r\na\r\n0\r\n\r\nHTTP",
            "a",
            4,
        ),
    ];
    for (name, framing, bytes, body, left) in cases {
        let (data, trailers, rest) = body_fed_bytewise(framing, bytes.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: did not end"));
        assert_eq!(String::from_utf8(data).unwrap(), body, "{name}");
        assert_eq!(rest, left, "{name}");
        if name.contains("trailers") {
            assert_eq!(trailers.unwrap()["x-sum"], "9", "{name}");
        } else {
            assert!(trailers.is_none(), "{name}");
        }
    }
    // To the close: everything, and only the close ends it.
    assert!(body_fed_bytewise(Framing::Close, b"abc").unwrap().is_none());
}

#[test]
fn malformed_chunked_bodies_are_refused() {
    let long_line = format!("1;{}\r\na\r\n0\r\n\r\n", "x".repeat(MAX_CHUNK_LINE));
    let cases: [(&str, &str); 5] = [
        ("not a size", "zz\r\nab\r\n0\r\n\r\n"),
        ("no size", "\r\nab\r\n0\r\n\r\n"),
        ("data longer than its size", "1\r\nab\r\n0\r\n\r\n"),
        ("a size past u64", "10000000000000000\r\n"),
        ("an endless size line", &long_line),
    ];
    for (name, bytes) in cases {
        match body_fed_bytewise(Framing::Chunked(Chunk::Size), bytes.as_bytes()) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{name}"),
            Ok(r) => panic!("{name}: taken ({:?})", r.map(|r| r.0)),
        }
    }
}

/// A body of the given frames, ready at once, its size unknown; after them
/// it ends, or (`stalls`) never does.
struct Frames {
    frames: VecDeque<Bytes>,
    stalls: bool,
}

impl Body for Frames {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.frames.pop_front() {
            Some(d) => Poll::Ready(Some(Ok(Frame::data(d)))),
            None if self.stalls => Poll::Pending,
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && !self.stalls
    }
}

/// Reads from `stream` until `bytes` end with `end` (or it closes).
async fn read_until(stream: &mut TcpStream, bytes: &mut Vec<u8>, end: &[u8]) {
    let mut buf = [0u8; 4096];
    while !bytes.ends_with(end) {
        let n = tokio::time::timeout(STEP, stream.read(&mut buf))
            .await
            .expect("the request in time")
            .unwrap();
        if n == 0 {
            return;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
}

/// `f`'s output, or a failure once it takes longer than [`STEP`].
async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f).await.expect("done in time")
}

/// A connection to a listener, and the listener's end of it.
async fn pair() -> (Conn, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (Conn::new(client), server)
}

fn request(method: Method, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut req = Request::builder()
        .method(method)
        .uri("/a/b?c=d")
        .header("host", "up.example");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    req.body(()).unwrap().into_parts().0
}

/// What the upstream end does in [`served`]: reads the request up to `end`,
/// writes `answer`, and closes its side if `close`.
struct Upstream<'a> {
    end: &'a [u8],
    answer: &'a [u8],
    close: bool,
}

/// `parts` and `body` exchanged on `conn` while `server` plays `up`: the
/// answer, and the request as the upstream got it.
async fn served<B>(
    conn: Conn,
    parts: &http::request::Parts,
    body: &mut B,
    server: &mut TcpStream,
    up: Upstream<'_>,
) -> (Result<Answer, Error>, String)
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let serving = async {
        let mut got = Vec::new();
        read_until(server, &mut got, up.end).await;
        // The answer may be cut short by the gateway closing (a head too large).
        let _ = server.write_all(up.answer).await;
        if up.close {
            let _ = server.shutdown().await;
        }
        String::from_utf8(got).unwrap()
    };
    within(async { tokio::join!(exchange(conn, parts, body), serving) }).await
}

/// The whole body of `answer`, and its connection if kept.
async fn body_of(answer: Result<Answer, Error>) -> (Bytes, Option<Conn>) {
    let mut body = answer.unwrap().body;
    let data = within((&mut body).collect()).await.unwrap().to_bytes();
    (data, body.take_kept())
}

#[tokio::test]
async fn requests_are_written_with_their_framing_and_connections_kept() {
    let (conn, mut server) = pair().await;
    // A body of known length keeps it (the client's own value replaced).
    let parts = request(Method::POST, &[("content-length", "999"), ("x-a", "b")]);
    let mut body = http_body_util::Full::new(Bytes::from_static(b"hello"));
    let up = Upstream {
        end: b"hello",
        answer: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        close: false,
    };
    let (answer, got) = served(conn, &parts, &mut body, &mut server, up).await;
    assert_eq!(
        got,
        "POST /a/b?c=d HTTP/1.1\r\nhost: up.example\r\nx-a: b\r\ncontent-length: 5\r\n\r\nhello"
    );
    let (data, conn) = body_of(answer).await;
    assert_eq!(&data[..], b"ok");
    let conn = conn.expect("kept");
    assert!(conn.is_usable());

    // On the same connection: a body of unknown length goes chunked.
    let parts = request(Method::PUT, &[]);
    let mut body = Frames {
        frames: VecDeque::from([
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from(vec![b'x'; 17]),
        ]),
        stalls: false,
    };
    let up = Upstream {
        end: b"0\r\n\r\n",
        answer: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        close: false,
    };
    let (answer, got) = served(conn, &parts, &mut body, &mut server, up).await;
    assert_eq!(
        got,
        format!(
            "PUT /a/b?c=d HTTP/1.1\r\nhost: up.example\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n11\r\n{}\r\n0\r\n\r\n",
            "x".repeat(17)
        )
    );
    let (data, conn) = body_of(answer).await;
    assert_eq!(&data[..], b"ok");
    let mut conn = conn.expect("kept after a chunked answer");

    // No body: no framing field, unless the client said `Content-Length: 0`.
    for (headers, framing) in [
        (&[][..], ""),
        (&[("content-length", "0")][..], "content-length: 0\r\n"),
    ] {
        let parts = request(Method::DELETE, headers);
        let mut body = http_body_util::Empty::<Bytes>::new();
        let up = Upstream {
            end: b"\r\n\r\n",
            answer: b"HTTP/1.1 204 No Content\r\n\r\n",
            close: false,
        };
        let (answer, got) = served(conn, &parts, &mut body, &mut server, up).await;
        assert_eq!(
            got,
            format!("DELETE /a/b?c=d HTTP/1.1\r\nhost: up.example\r\n{framing}\r\n")
        );
        let (data, kept) = body_of(answer).await;
        assert!(data.is_empty());
        conn = kept.expect("kept after a 204");
    }

    // The upstream lets go of the idle connection: no longer usable.
    drop(server);
    within(async {
        while conn.is_usable() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn an_early_answer_is_heard_and_the_rest_of_the_body_not_sent() {
    let (conn, mut server) = pair().await;
    let parts = request(Method::POST, &[]);
    // Answered, though the body never ends.
    let mut body = Frames {
        frames: VecDeque::from([Bytes::from_static(b"first")]),
        stalls: true,
    };
    let up = Upstream {
        end: b"first\r\n",
        answer: b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig",
        close: false,
    };
    let (answer, _) = served(conn, &parts, &mut body, &mut server, up).await;
    let status = answer.as_ref().map(|a| a.head.status).ok();
    assert_eq!(status, Some(StatusCode::PAYLOAD_TOO_LARGE));
    let (data, kept) = body_of(answer).await;
    assert_eq!(&data[..], b"big");
    assert!(kept.is_none(), "half a request sent: not kept");
}

#[tokio::test]
async fn a_close_before_or_within_an_answer_is_told_apart() {
    let parts = request(Method::GET, &[]);
    let mut body = http_body_util::Empty::<Bytes>::new();
    let field = format!("X-A: {}\r\n", "a".repeat(1000));
    let too_large = format!(
        "HTTP/1.1 200 OK\r\n{}",
        field.repeat(MAX_HEAD / field.len() + 2)
    );
    // What the upstream answers before it closes; whether the exchange
    // fails unanswered (a pool may send it again), or as malformed.
    let cases: [(&str, &[u8], Option<bool>); 3] = [
        ("before answering", b"", Some(true)),
        ("within the head", b"HTTP/1.1 200 OK\r\nCont", Some(false)),
        ("a head too large", too_large.as_bytes(), None),
    ];
    for (name, answer, unanswered) in cases {
        let (conn, mut server) = pair().await;
        let up = Upstream {
            end: b"\r\n\r\n",
            answer,
            close: true,
        };
        let (answer, _) = served(conn, &parts, &mut body, &mut server, up).await;
        match (answer.err(), unanswered) {
            (Some(e), Some(u)) => assert_eq!(e.unanswered(), u, "{name}: {e}"),
            (Some(Error::Malformed(_)), None) => {}
            (e, _) => panic!("{name}: {e:?}"),
        }
    }

    // Closed within the body: the body fails.
    let (conn, mut server) = pair().await;
    let up = Upstream {
        end: b"\r\n\r\n",
        answer: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        close: true,
    };
    let (answer, _) = served(conn, &parts, &mut body, &mut server, up).await;
    let mut answer_body = answer.unwrap().body;
    let e = within((&mut answer_body).collect())
        .await
        .expect_err("cut short");
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    assert!(answer_body.take_kept().is_none());
}

/// A pooled connection the upstream lets go of once it has the request (its
/// idle close crossing the request) costs a request without a body and with
/// an idempotent method nothing: it is sent again on a new connection. Any
/// other request could have been acted on, and fails.
#[tokio::test]
async fn a_kept_connection_let_go_of_under_a_request_is_retried_only_when_safe() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: http::uri::Authority =
        listener.local_addr().unwrap().to_string().parse().unwrap();
    // Each connection answers one request (with its number), then reads the
    // next and closes without answering.
    let upstream = tokio::spawn(async move {
        for n in 1.. {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut got = Vec::new();
                read_until(&mut s, &mut got, b"\r\n\r\n").await;
                let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{n}");
                s.write_all(answer.as_bytes()).await.unwrap();
                got.clear();
                read_until(&mut s, &mut got, b"\r\n\r\n").await;
            });
        }
    });
    let pools = super::super::pool::Pools::new(4, Duration::from_secs(60));
    let up = pools.upstream(&authority);
    let send = |method: Method| {
        let up = up.clone();
        async move {
            let req = Request::builder()
                .method(method)
                .uri("/")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            let resp = within(up.send(req)).await?;
            let body = within(resp.into_body().collect()).await.unwrap();
            Ok::<_, super::super::pool::SendError>(body.to_bytes())
        }
    };
    assert_eq!(send(Method::GET).await.unwrap(), "1");
    // Kept, let go of under the next GET: sent again on a new connection.
    assert_eq!(send(Method::GET).await.unwrap(), "2");
    // Kept, let go of under a POST: not sent again.
    let e = send(Method::POST)
        .await
        .expect_err("a POST is not sent twice");
    assert!(
        matches!(&e, super::super::pool::SendError::Exchange(e) if e.unanswered()),
        "{e}"
    );
    // The broken connection is not kept: the next request opens another.
    assert_eq!(send(Method::GET).await.unwrap(), "3");
    upstream.abort();
}
