//! The Hono Tenant API over AMQP 1.0 (`TenantGateway.Amqp`): SASL PLAIN with
//! the gateway's own identities (`sasl.rs`), then request/reply links on the
//! address `tenant` answered from the same tenant directory as every other API.

pub mod sasl;
pub mod tenant;

use crate::http::Gateway;
use crate::security::auth::{Principal, Refusal};
use fe2o3_amqp::Sendable;
use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerSessionHandle, SessionAcceptor,
};
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::types::definitions::{AmqpError, Error as LinkError};
use fe2o3_amqp::types::definitions::{Role, SenderSettleMode};
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Data, Message, MessageId, Properties, TargetArchetype,
};
use fe2o3_amqp::types::performatives::Attach;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde_amqp::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// The address of the Tenant API's request links; replies go to links whose
/// source is `tenant/<reply-id>`.
pub const ADDRESS: &str = "tenant";
/// How long a client has for the protocol header, SASL and `open`.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Reply links one connection may hold (each has a task and a queue).
const MAX_REPLY_LINKS: usize = 64;
/// Request links one session may hold.
const MAX_REQUEST_LINKS: usize = 16;
/// How long closing connections are waited for at shutdown.
const CLOSING: Duration = Duration::from_secs(5);
/// Replies waiting for one reply link. When it is full the request links
/// feeding it wait, and so take no more requests: no more request credit is
/// granted to a client that does not read its replies.
const REPLY_QUEUE: usize = 64;
/// The credit of a request link: requests a client may send ahead of their
/// replies. Granted again each time half of it has been answered.
const REQUEST_CREDIT: u32 = 100;

/// The reply links of one connection, by source address; `None`: being attached.
type Replies = Arc<Mutex<HashMap<String, Option<mpsc::Sender<Message<Data>>>>>>;

/// What the AMQP listener counts (`/metrics`).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    connections: Gauge,
    sign_ins_refused: Counter,
    requests: Family<StatusLabel, Counter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

impl Metrics {
    /// The families, registered in `registry`.
    pub fn register(registry: &mut crate::telemetry::Registry) -> Self {
        let m = Self::default();
        registry.register(
            "tg_amqp_connections_open",
            "AMQP connections open now (signed in or signing in).",
            m.connections.clone(),
        );
        registry.register(
            "tg_amqp_sign_ins_refused",
            "AMQP connections whose SASL sign-in was refused or could not be checked.",
            m.sign_ins_refused.clone(),
        );
        registry.register(
            "tg_amqp_requests",
            "Tenant API requests answered over AMQP, by the reply's status.",
            m.requests.clone(),
        );
        m
    }
}

/// Counts one open connection while it lives.
struct Open(Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serves the Tenant API on `listener`, at most `Limits.MaxConnections`
/// connections at once, until `stop` turns true: then every connection is
/// closed with a `close` frame (at most [`CLOSING`] is waited for them).
pub async fn serve(
    listener: TcpListener,
    gw: Arc<Gateway>,
    metrics: Metrics,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let open = Arc::new(tokio::sync::Semaphore::new(gw.limits.max_connections));
    let listening = gw.amqp_listening.clone();
    let _serving = listening.serving();
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        // Finished connections are let go of as new ones come.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => {
                listening.accepted();
                a
            }
            Err(e) => {
                listening.accept_failed();
                tracing::warn!(error = %e, "AMQP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        let metrics = metrics.clone();
        metrics.connections.inc();
        let open = Open(metrics.connections.clone());
        let stop = stop.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _open = open;
            let served = match tls {
                // TLS from the first byte (amqps), as Hono's clients and Proton
                // start it; not AMQP's in-band TLS header.
                Some(tls) => match tokio::time::timeout(HANDSHAKE, tls.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let external = certificate_identity(stream.get_ref().1);
                        connection(gw, stream, peer, external, metrics, stop).await
                    }
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Err(anyhow::anyhow!("TLS handshake timed out")),
                },
                None => connection(gw, stream, peer, None, metrics, stop).await,
            };
            if let Err(e) = served {
                tracing::debug!(peer = %peer, error = %e, "AMQP connection ended");
            }
        });
    }
    drop(listener);
    let closed = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(CLOSING, closed).await.is_err() {
        tracing::warn!("AMQP connections still open after closing began; dropping them");
    }
}

/// `external`: who a verified client certificate says the client is (SASL
/// EXTERNAL).
async fn connection<S>(
    gw: Arc<Gateway>,
    mut stream: S,
    peer: SocketAddr,
    external: Option<String>,
    metrics: Metrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    let dir = gw.runtime.shared().directory.load_full();
    let auth = gw.auth.clone();
    let who = tokio::time::timeout(
        HANDSHAKE,
        sasl::negotiate(&mut stream, external, |credentials| async move {
            match credentials {
                sasl::Credentials::Plain { name, password } => {
                    match auth.sign_in(peer.ip(), &name, &password, &dir).await {
                        Ok(p) => sasl::Checked::Yes(p),
                        Err(Refusal::Throttled(_) | Refusal::Busy) => sasl::Checked::Later,
                        Err(_) => sasl::Checked::No,
                    }
                }
                sasl::Credentials::External { name } => {
                    match crate::security::auth::Authenticator::identify(&name, &dir) {
                        Some(p) => sasl::Checked::Yes(p),
                        None => sasl::Checked::No,
                    }
                }
            }
        }),
    )
    .await?
    .inspect_err(|_| {
        metrics.sign_ins_refused.inc();
    })?;
    let who = Arc::new(who);
    let acceptor = ConnectionAcceptor::builder()
        .container_id("tenant-gateway")
        .build();
    let mut connection = tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await??;
    let replies = Replies::default();
    let sessions = SessionAcceptor::new();
    let mut tasks = JoinSet::new();
    loop {
        let session = tokio::select! {
            s = sessions.accept(&mut connection) => s,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(session) = session else { break };
        tasks.spawn(links(
            gw.clone(),
            session,
            who.clone(),
            replies.clone(),
            metrics.clone(),
        ));
    }
    tasks.abort_all();
    let _ = connection.close().await;
    Ok(())
}

/// Why a link is refused, as the spec's preconditions say; a reply address
/// that is free is reserved for this link.
fn refusal(attach: &Attach, replies: &Replies) -> Option<LinkError> {
    let refuse = |condition: AmqpError, why: &str| {
        Some(LinkError::new(condition, Some(why.to_owned()), None))
    };
    match attach.role {
        // The client sends requests.
        Role::Sender => {
            let address = match attach.target.as_deref() {
                Some(TargetArchetype::Target(t)) => t.address.as_deref(),
                _ => None,
            };
            if address != Some(ADDRESS) {
                return refuse(AmqpError::NotFound, "no such node: requests go to 'tenant'");
            }
            if attach.snd_settle_mode == SenderSettleMode::Settled {
                return refuse(
                    AmqpError::PreconditionFailed,
                    "the request link must not be pre-settled",
                );
            }
            None
        }
        // The client receives replies.
        Role::Receiver => {
            let address = attach.source.as_ref().and_then(|s| s.address.as_deref());
            let reply_id = address.map(|a| (a, a.strip_prefix("tenant/")));
            let address = match reply_id {
                Some((a, Some(id))) if !id.is_empty() => a.to_owned(),
                Some((_, Some(_)) | (ADDRESS, None)) => {
                    return refuse(
                        AmqpError::InvalidField,
                        "the reply address must be tenant/<reply-id>",
                    );
                }
                _ => {
                    return refuse(
                        AmqpError::NotFound,
                        "no such node: replies come from 'tenant/<reply-id>'",
                    );
                }
            };
            let mut replies = replies.lock().unwrap_or_else(|e| e.into_inner());
            if replies.contains_key(&address) {
                return refuse(
                    AmqpError::IllegalState,
                    "this reply address is already subscribed on this connection",
                );
            }
            if replies.len() >= MAX_REPLY_LINKS {
                return refuse(
                    AmqpError::ResourceLimitExceeded,
                    "too many reply links on this connection",
                );
            }
            replies.insert(address, None);
            None
        }
    }
}

/// Attaches the links of one session and serves them.
async fn links(
    gw: Arc<Gateway>,
    mut session: ListenerSessionHandle,
    who: Arc<Principal>,
    replies: Replies,
    metrics: Metrics,
) {
    let acceptor = LinkAcceptor::new();
    let mut tasks = JoinSet::new();
    let mut request_links = JoinSet::new();
    while let Some(attach) = session.next_incoming_attach().await {
        while request_links.try_join_next().is_some() {}
        let refused = refusal(&attach, &replies).or_else(|| {
            (attach.role == Role::Sender && request_links.len() >= MAX_REQUEST_LINKS).then(|| {
                LinkError::new(
                    AmqpError::ResourceLimitExceeded,
                    Some("too many request links on this session".to_owned()),
                    None,
                )
            })
        });
        let reply_address = (attach.role == Role::Receiver && refused.is_none())
            .then(|| attach.source.as_ref().and_then(|s| s.address.clone()))
            .flatten();
        let link = match acceptor.accept_incoming_attach(attach, &mut session).await {
            Ok(link) => link,
            Err(e) => {
                if let Some(a) = &reply_address {
                    replies.lock().unwrap_or_else(|e| e.into_inner()).remove(a);
                }
                // The client waits for an attach that cannot come (a link
                // name used twice, a session gone): end the session, saying why.
                tracing::debug!(error = ?e, "AMQP link not attached");
                let why = LinkError::new(AmqpError::IllegalState, Some(e.to_string()), None);
                let _ = session.end_with_error(why).await;
                tasks.abort_all();
                request_links.abort_all();
                return;
            }
        };
        match (link, refused) {
            (LinkEndpoint::Receiver(r), Some(e)) => {
                let _ = r.close_with_error(e).await;
            }
            (LinkEndpoint::Sender(s), Some(e)) => {
                let _ = s.close_with_error(e).await;
            }
            (LinkEndpoint::Receiver(r), None) => {
                request_links.spawn(requests(
                    gw.clone(),
                    r,
                    who.clone(),
                    replies.clone(),
                    metrics.clone(),
                ));
            }
            (LinkEndpoint::Sender(s), None) => {
                let address = reply_address.unwrap_or_default();
                let (tx, rx) = mpsc::channel(REPLY_QUEUE);
                replies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(address.clone(), Some(tx));
                tasks.spawn(reply_link(s, rx, address, replies.clone()));
            }
        }
    }
    tasks.abort_all();
    request_links.abort_all();
    let _ = session.end().await;
}

/// Sends the replies queued for one reply link, pre-settled.
async fn reply_link(
    mut sender: Sender,
    mut queue: mpsc::Receiver<Message<Data>>,
    address: String,
    replies: Replies,
) {
    while let Some(message) = queue.recv().await {
        let sendable = Sendable::builder().message(message).settled(true).build();
        if sender.send(sendable).await.is_err() {
            break;
        }
    }
    replies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&address);
    let _ = sender.close().await;
}

/// Answers the requests of one request link.
async fn requests(
    gw: Arc<Gateway>,
    mut receiver: Receiver,
    who: Arc<Principal>,
    replies: Replies,
    metrics: Metrics,
) {
    // Auto mode: granted again once half of it has been disposed of, and a
    // request is disposed of once its reply is queued (see REPLY_QUEUE).
    if let Err(e) = receiver.set_credit(REQUEST_CREDIT).await {
        tracing::debug!(error = %e, "AMQP request link ended");
        return;
    }
    loop {
        let delivery = match receiver.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "AMQP request link ended");
                break;
            }
        };
        let message = delivery.message();
        let props = message.properties.as_ref();
        let id = props.and_then(|p| p.correlation_id.clone().or_else(|| p.message_id.clone()));
        let reply_to = props.and_then(|p| p.reply_to.clone());
        let (Some(id), Some(reply_to)) = (id, reply_to) else {
            let why = LinkError::new(
                AmqpError::InvalidField,
                Some("a request needs a message-id or correlation-id, and a reply-to".to_owned()),
                None,
            );
            let _ = receiver.reject(&delivery, why).await;
            continue;
        };
        let subject = props.and_then(|p| p.subject.clone());
        let body = data_of(&message.body);
        let answer = tenant::answer(
            &gw.runtime.shared().directory.load(),
            &who,
            subject.as_deref(),
            &body,
        );
        metrics
            .requests
            .get_or_create(&StatusLabel {
                status: answer.status,
            })
            .inc();
        let queue = replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&reply_to)
            .cloned()
            .flatten();
        // No reply link there: the reply is dropped, as a broker drops a
        // message to no one; the request is still accepted.
        if let Some(queue) = queue {
            let _ = queue.send(reply(id, reply_to, answer)).await;
        }
        if receiver.accept(&delivery).await.is_err() {
            break;
        }
    }
}

/// The bytes of a message's Data sections (empty for any other body).
fn data_of(body: &Body<Value>) -> Vec<u8> {
    match body {
        Body::Data(sections) => sections.iter().flat_map(|d| d.0.iter().copied()).collect(),
        _ => Vec::new(),
    }
}

fn reply(id: MessageId, to: String, answer: tenant::Answer) -> Message<Data> {
    let content_type = if answer.document {
        "application/json"
    } else {
        "text/plain"
    };
    let properties = Properties::builder()
        .correlation_id(id)
        .to(to)
        .content_type(content_type)
        .build();
    let mut application = ApplicationProperties::builder().insert("status", answer.status as i32);
    if answer.document {
        application = application.insert("cache_control", crate::tenancy::HONO_CACHE_DIRECTIVE);
    }
    Message::builder()
        .properties(properties)
        .application_properties(application.build())
        .data(Data(answer.body.into()))
        .build()
}

/// The identity of a TLS client's certificate, verified against
/// `TenantGateway.Amqp.ClientCaFile` during the handshake: its subject's
/// (first) common name. `None` without a certificate or a common name.
fn certificate_identity(tls: &tokio_rustls::rustls::ServerConnection) -> Option<String> {
    let leaf = tls.peer_certificates()?.first()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let cn = certificate.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// The TLS acceptor of `TenantGateway.Amqp`'s certificate and key, asking
/// for (not requiring) client certificates from `ClientCaFile`'s CAs when it
/// is set (blocking: reads the files).
pub fn tls_acceptor(tls: &crate::config::AmqpTls) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(&tls.certificate)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "TenantGateway.Amqp.CertificateFile {}",
                tls.certificate.display()
            )
        })?;
    anyhow::ensure!(
        !chain.is_empty(),
        "TenantGateway.Amqp.CertificateFile {} holds no certificate",
        tls.certificate.display()
    );
    // The key's contents are never part of an error.
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|_| {
        anyhow::anyhow!(
            "TenantGateway.Amqp.KeyFile {}: no readable PEM private key",
            tls.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(file) => {
            let named = || format!("TenantGateway.Amqp.ClientCaFile {}", file.display());
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_file_iter(file).with_context(named)? {
                roots.add(ca.with_context(named)?).with_context(named)?;
            }
            anyhow::ensure!(!roots.is_empty(), "{} holds no certificate", named());
            // Optional: a client without a certificate signs in with PLAIN.
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()
                    .with_context(named)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .context("TenantGateway.Amqp: the certificate and key do not match")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
