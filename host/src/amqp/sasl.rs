//! SASL on an AMQP connection, before the connection is handed to the AMQP
//! library: the protocol headers, the mechanisms offered (PLAIN; EXTERNAL
//! too when TLS verified a client certificate), the client's `sasl-init`,
//! and the outcome. Done here rather than through the library's
//! own SASL hook because that hook is synchronous, and a password check
//! (Argon2, tens of milliseconds) must run on the hashing pool, never on an
//! async worker. Frames are read to their exact length, so nothing the client
//! sends after its `sasl-init` is consumed here.

use bytes::{BufMut, BytesMut};
use fe2o3_amqp::frames::sasl::{Frame, FrameCodec};
use fe2o3_amqp_types::primitives::{Array, Symbol};
use fe2o3_amqp_types::sasl::{SaslCode, SaslMechanisms, SaslOutcome};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

/// The protocol header of the SASL layer (AMQP 1.0 part 5.3.2).
pub const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
/// The protocol header of plain AMQP, which a client sends after SASL.
pub const AMQP_HEADER: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
/// Largest SASL frame read: a `sasl-init` holds a user name and a password.
const MAX_FRAME: usize = 4096;

/// How SASL ended short of a signed-in client.
#[derive(Debug, thiserror::Error)]
pub enum Failed {
    /// The client did not speak SASL over AMQP 1.0 (it was told which header we do).
    #[error("the client sent another protocol header")]
    Header,
    /// A frame that is not the one expected, or malformed.
    #[error("malformed SASL exchange: {0}")]
    Malformed(&'static str),
    /// The credentials were refused (the client was told `auth`).
    #[error("credentials refused")]
    Refused,
    /// No check could be made now (the client was told `sys-temp`).
    #[error("credential check unavailable")]
    Unavailable,
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What the client offered to prove who it is.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials {
    /// PLAIN.
    Plain {
        /// The authentication identity.
        name: String,
        /// Its password.
        password: String,
    },
    /// EXTERNAL: the identity the TLS layer established (the client
    /// certificate's), which the client's authorization identity, if it gave
    /// one, matched.
    External {
        /// That identity.
        name: String,
    },
}

/// What a check of the credentials gives.
pub enum Checked<P> {
    /// Signed in as `P`.
    Yes(P),
    /// Wrong name or password.
    No,
    /// Throttled or busy: try later.
    Later,
}

/// Runs the SASL exchange on `stream`: `check` is given the credentials of
/// the client's `sasl-init`. `external` is who the TLS layer says the client
/// is (a verified client certificate's identity); with it EXTERNAL is offered
/// before PLAIN. On success the client is told `ok` and is next expected to
/// send [`AMQP_HEADER`].
pub async fn negotiate<S, P, F, Fut>(
    stream: &mut S,
    external: Option<String>,
    check: F,
) -> Result<P, Failed>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(Credentials) -> Fut,
    Fut: std::future::Future<Output = Checked<P>>,
{
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await?;
    // Whatever the client asked for, it is told the header spoken here.
    stream.write_all(&SASL_HEADER).await?;
    if header != SASL_HEADER {
        stream.flush().await?;
        return Err(Failed::Header);
    }
    let offered = match external {
        Some(_) => vec![Symbol::from("EXTERNAL"), Symbol::from("PLAIN")],
        None => vec![Symbol::from("PLAIN")],
    };
    let mechanisms = SaslMechanisms {
        sasl_server_mechanisms: Array(offered),
    };
    write_frame(stream, Frame::Mechanisms(mechanisms)).await?;
    let init = match read_frame(stream).await? {
        Frame::Init(init) => init,
        _ => return Err(Failed::Malformed("expected sasl-init")),
    };
    let response = init
        .initial_response
        .as_deref()
        .map_or(&[][..], Vec::as_slice);
    let credentials = match (init.mechanism.as_str(), external) {
        ("PLAIN", _) => {
            plain(response).map(|(name, password)| Credentials::Plain { name, password })
        }
        // RFC 4422 appendix A: the response is the authorization identity
        // asked for; empty, or the one the certificate gives.
        ("EXTERNAL", Some(name)) if response.is_empty() || response == name.as_bytes() => {
            Some(Credentials::External { name })
        }
        _ => None,
    };
    let outcome = match credentials {
        Some(credentials) => check(credentials).await,
        None => Checked::No,
    };
    let (code, result) = match outcome {
        Checked::Yes(p) => (SaslCode::Ok, Ok(p)),
        Checked::No => (SaslCode::Auth, Err(Failed::Refused)),
        Checked::Later => (SaslCode::SysTemp, Err(Failed::Unavailable)),
    };
    let outcome = SaslOutcome {
        code,
        additional_data: None,
    };
    write_frame(stream, Frame::Outcome(outcome)).await?;
    result
}

/// The user name and password of a PLAIN response (RFC 4616:
/// `[authzid] NUL authcid NUL passwd`); an authorization identity other than
/// the user's own is not supported.
fn plain(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|b| *b == 0);
    let (authz, name, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || name.is_empty() || !(authz.is_empty() || authz == name) {
        return None;
    }
    Some((
        String::from_utf8(name.to_vec()).ok()?,
        String::from_utf8(password.to_vec()).ok()?,
    ))
}

async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, frame: Frame) -> Result<(), Failed> {
    let mut body = BytesMut::new();
    let mut codec = FrameCodec {};
    codec
        .encode(frame, &mut body)
        .map_err(|_| Failed::Malformed("unencodable frame"))?;
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_u32(u32::try_from(4 + body.len()).expect("a small frame"));
    out.extend_from_slice(&body);
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok(())
}

async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Frame, Failed> {
    let size = stream.read_u32().await? as usize;
    if !(8..=MAX_FRAME).contains(&size) {
        return Err(Failed::Malformed("SASL frame size out of bounds"));
    }
    let mut body = BytesMut::zeroed(size - 4);
    stream.read_exact(&mut body).await?;
    let mut codec = FrameCodec {};
    match codec.decode(&mut body) {
        Ok(Some(frame)) => Ok(frame),
        _ => Err(Failed::Malformed("undecodable SASL frame")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::primitives::Binary;
    use fe2o3_amqp_types::sasl::SaslInit;

    async fn client(
        mut io: tokio::io::DuplexStream,
        mechanism: &str,
        response: &[u8],
        offered: &[&str],
    ) -> SaslCode {
        io.write_all(&SASL_HEADER).await.unwrap();
        let mut header = [0u8; 8];
        io.read_exact(&mut header).await.unwrap();
        assert_eq!(header, SASL_HEADER);
        match read_frame(&mut io).await.unwrap() {
            Frame::Mechanisms(m) => {
                let offered: Vec<Symbol> = offered.iter().map(|m| Symbol::from(*m)).collect();
                assert_eq!(m.sasl_server_mechanisms.0, offered)
            }
            other => panic!("{other:?}"),
        }
        let init = SaslInit {
            mechanism: Symbol::from(mechanism),
            initial_response: Some(Binary::from(response.to_vec())),
            hostname: None,
        };
        write_frame(&mut io, Frame::Init(init)).await.unwrap();
        let code = match read_frame(&mut io).await.unwrap() {
            Frame::Outcome(o) => o.code,
            other => panic!("{other:?}"),
        };
        // What follows the exchange is left for the AMQP layer.
        io.write_all(&AMQP_HEADER).await.unwrap();
        code
    }

    async fn run(
        mechanism: &'static str,
        response: &'static [u8],
    ) -> (SaslCode, Result<String, Failed>, [u8; 8]) {
        run_with(mechanism, response, None).await
    }

    async fn run_with(
        mechanism: &'static str,
        response: &'static [u8],
        external: Option<&'static str>,
    ) -> (SaslCode, Result<String, Failed>, [u8; 8]) {
        let (mut server, peer) = tokio::io::duplex(4096);
        let offered: &[&str] = if external.is_some() {
            &["EXTERNAL", "PLAIN"]
        } else {
            &["PLAIN"]
        };
        let client = tokio::spawn(client(peer, mechanism, response, offered));
        let external = external.map(str::to_owned);
        let result = negotiate(&mut server, external, |credentials| async move {
            match credentials {
                Credentials::Plain { name, password } => match (name.as_str(), password.as_str()) {
                    ("admin", "s3cret") => Checked::Yes(name),
                    ("busy", _) => Checked::Later,
                    _ => Checked::No,
                },
                Credentials::External { name } if name == "known" => Checked::Yes(name),
                Credentials::External { .. } => Checked::No,
            }
        })
        .await;
        let code = client.await.unwrap();
        let mut next = [0u8; 8];
        server.read_exact(&mut next).await.unwrap();
        (code, result, next)
    }

    #[tokio::test]
    async fn plain_credentials_sign_in_and_leave_the_amqp_header_unread() {
        let (code, result, next) = run("PLAIN", b"\0admin\0s3cret").await;
        assert_eq!(code, SaslCode::Ok);
        assert_eq!(result.unwrap(), "admin");
        assert_eq!(next, AMQP_HEADER);
    }

    #[tokio::test]
    async fn wrong_passwords_other_mechanisms_and_busy_checks_are_told_apart() {
        let (code, result, _) = run("PLAIN", b"\0admin\0wrong").await;
        assert_eq!(code, SaslCode::Auth);
        assert!(matches!(result, Err(Failed::Refused)));
        let (code, _, _) = run("ANONYMOUS", b"").await;
        assert_eq!(code, SaslCode::Auth);
        let (code, result, _) = run("PLAIN", b"\0busy\0x").await;
        assert_eq!(code, SaslCode::SysTemp);
        assert!(matches!(result, Err(Failed::Unavailable)));
    }

    #[tokio::test]
    async fn external_is_offered_and_taken_only_with_an_identity_from_tls() {
        let (code, result, next) = run_with("EXTERNAL", b"", Some("known")).await;
        assert_eq!(code, SaslCode::Ok);
        assert_eq!(result.unwrap(), "known");
        assert_eq!(next, AMQP_HEADER);
        // The authorization identity asked for must be the certificate's.
        let (code, _, _) = run_with("EXTERNAL", b"known", Some("known")).await;
        assert_eq!(code, SaslCode::Ok);
        let (code, _, _) = run_with("EXTERNAL", b"admin", Some("known")).await;
        assert_eq!(code, SaslCode::Auth);
        // An identity that names no one; no certificate at all.
        let (code, _, _) = run_with("EXTERNAL", b"", Some("stranger")).await;
        assert_eq!(code, SaslCode::Auth);
        let (code, _, _) = run("EXTERNAL", b"").await;
        assert_eq!(code, SaslCode::Auth);
        // PLAIN still works beside it.
        let (code, _, _) = run_with("PLAIN", b"\0admin\0s3cret", Some("known")).await;
        assert_eq!(code, SaslCode::Ok);
    }

    #[test]
    fn plain_responses_are_parsed_strictly() {
        assert_eq!(plain(b"\0u\0p"), Some(("u".into(), "p".into())));
        assert_eq!(plain(b"u\0u\0p"), Some(("u".into(), "p".into())));
        assert_eq!(plain(b"other\0u\0p"), None);
        assert_eq!(plain(b"\0\0p"), None);
        assert_eq!(plain(b"\0u"), None);
        assert_eq!(plain(b"\0u\0p\0x"), None);
    }

    #[tokio::test]
    async fn another_protocol_header_is_answered_with_ours() {
        let (mut server, mut peer) = tokio::io::duplex(4096);
        peer.write_all(&AMQP_HEADER).await.unwrap();
        let result = negotiate(&mut server, None, |_| async { Checked::Yes(()) }).await;
        assert!(matches!(result, Err(Failed::Header)));
        let mut header = [0u8; 8];
        peer.read_exact(&mut header).await.unwrap();
        assert_eq!(header, SASL_HEADER);
    }
}
