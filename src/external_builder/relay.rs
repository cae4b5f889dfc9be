//! The registration relay of `builder run`: the chaincode dials the relay, the relay dials the
//! stock peer with the client certificate the peer issued in `chaincode.json`, and every message
//! is forwarded unchanged both ways. Watching the peer's side of the stream is what lets `run`
//! report `Registered=True` honestly: the peer answered REGISTER with READY.
//!
//! The chaincode gets certificates from the relay's own CA (a fresh one per run): the relay
//! presents a server certificate for the address the chaincode dials and requires a client
//! certificate from that CA. So the peer's chaincode key never leaves the peer's host (it used to
//! travel in the launch's Secret), and only the launched chaincode can use the relay.
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

use crate::builders::platform::ccaas::Connection;
use crate::endorser::chaincode::runtime::LaunchTls;
use crate::endorser::chaincode::runtime::ccaas::dial;
use crate::endorser::chaincode::support::DEFAULT_MAX_CHAINCODE_MESSAGE_BYTES;
use crate::endorser::chaincode::tls::ChaincodeCa;
use crate::proto::protos::ChaincodeMessage;
use crate::proto::protos::chaincode_message::Type;
use crate::proto::protos::chaincode_support_client::ChaincodeSupportClient;
use crate::proto::protos::chaincode_support_server::{ChaincodeSupport, ChaincodeSupportServer};

/// How long the relay tries to reach the peer for one chaincode stream (a Go duration, as
/// connection.json spells it).
const PEER_DIAL_TIMEOUT: &str = "10s";
/// The relay never limits a message the peer would take: the peer's own limit (100 MiB by
/// default) decides, and its error reaches the chaincode unchanged.
const TRANSPORT_LIMIT: usize = 2 * DEFAULT_MAX_CHAINCODE_MESSAGE_BYTES;

/// Where the peer's chaincode listener is and what `chaincode.json` says to present to it.
#[derive(Clone)]
pub struct Upstream {
    /// `peer_address` of chaincode.json (HOST:PORT).
    pub address: String,
    /// The peer-issued client certificate and key plus the peer's TLS root; None when the peer
    /// runs its chaincode listener without TLS.
    pub tls: Option<LaunchTls>,
}

/// The registration as the relay saw it on the peer's side of the latest stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// No stream has reached READY yet.
    Waiting,
    /// The peer sent READY on stream number `stream` (1 for the first).
    Ready { stream: u64 },
    /// A stream that had reached READY ended; the text says how.
    Closed { stream: u64, why: String },
}

/// A running relay; it stops when dropped.
pub struct Relay {
    /// HOST:PORT the chaincode dials.
    pub address: String,
    /// What the chaincode presents and trusts (issued by the relay's CA); None without TLS.
    pub chaincode_tls: Option<LaunchTls>,
    registration: watch::Receiver<Registration>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Relay {
    /// Binds `listen` and serves until dropped. `advertise_host` is the host the chaincode dials
    /// (its certificate names it); the port is the one bound.
    pub async fn start(
        upstream: Upstream,
        listen: SocketAddr,
        advertise_host: &str,
        chaincode_id: &str,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the registration relay to {listen}"))?;
        let port = listener.local_addr()?.port();
        let address = if advertise_host.contains(':') && !advertise_host.starts_with('[') {
            format!("[{advertise_host}]:{port}")
        } else {
            format!("{advertise_host}:{port}")
        };
        let (registration_tx, registration) = watch::channel(Registration::Waiting);
        let service = RelayService {
            upstream: Arc::new(upstream.clone()),
            registration: Arc::new(registration_tx),
            streams: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        let mut server = Server::builder().tcp_nodelay(true);
        let chaincode_tls = match &upstream.tls {
            Some(_) => {
                let ca = ChaincodeCa::generate("chaincode-operator builder relay")
                    .context("generating the relay's CA")?;
                let server_cert = ca
                    .issue_listener(&address)
                    .context("issuing the relay's server certificate")?;
                let client = ca
                    .issue_client(chaincode_id)
                    .context("issuing the chaincode's client certificate")?;
                server = server
                    .tls_config(ca.tonic_server_tls(&server_cert))
                    .context("the relay's TLS settings")?;
                Some(LaunchTls {
                    client_cert_pem: client.cert_pem,
                    client_key_pem: client.key_pem,
                    root_cert_pem: ca.root_pem().to_string(),
                })
            }
            None => None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let router = server.add_service(
            ChaincodeSupportServer::new(service)
                .max_decoding_message_size(TRANSPORT_LIMIT)
                .max_encoding_message_size(TRANSPORT_LIMIT),
        );
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
            {
                tracing::warn!(%error, "the registration relay stopped");
            }
        });
        Ok(Self {
            address,
            chaincode_tls,
            registration,
            _stop: stop,
        })
    }

    /// Follows the registration: changes as streams reach READY and end.
    pub fn registration(&self) -> watch::Receiver<Registration> {
        self.registration.clone()
    }
}

#[derive(Clone)]
struct RelayService {
    upstream: Arc<Upstream>,
    registration: Arc<watch::Sender<Registration>>,
    streams: Arc<std::sync::atomic::AtomicU64>,
}

type MessageStream = Pin<Box<dyn Stream<Item = Result<ChaincodeMessage, Status>> + Send>>;

impl RelayService {
    /// Dials the peer as the chaincode would have: its address, root and issued certificate.
    async fn dial_peer(&self) -> Result<ChaincodeSupportClient<tonic::transport::Channel>, String> {
        let upstream = &self.upstream;
        let tls = upstream.tls.as_ref();
        let connection = Connection {
            address: upstream.address.clone(),
            dial_timeout: PEER_DIAL_TIMEOUT.to_string(),
            tls_required: tls.is_some(),
            client_auth_required: tls.is_some(),
            client_key: tls
                .map(|t| pkcs8_pem(&t.client_key_pem))
                .unwrap_or_default(),
            client_cert: tls.map(|t| t.client_cert_pem.clone()).unwrap_or_default(),
            root_cert: tls.map(|t| t.root_cert_pem.clone()).unwrap_or_default(),
        };
        let channel = dial(&connection, Instant::now() + connection.dial_timeout())
            .await
            .map_err(|why| why.replace("chaincode server", "peer"))?;
        Ok(ChaincodeSupportClient::new(channel)
            .max_decoding_message_size(TRANSPORT_LIMIT)
            .max_encoding_message_size(TRANSPORT_LIMIT))
    }
}

/// The peer's key as a PKCS#8 `PRIVATE KEY` PEM. Fabric's peer writes a PKCS#8 key under an
/// `EC PRIVATE KEY` label (Go and OpenSSL read it by content; rustls trusts the label and fails),
/// so the key is re-encoded by content; any other key is passed on as it is.
fn pkcs8_pem(key_pem: &str) -> String {
    rcgen::KeyPair::from_pem(key_pem)
        .map(|key| key.serialize_pem())
        .unwrap_or_else(|_| key_pem.to_string())
}

#[tonic::async_trait]
impl ChaincodeSupport for RelayService {
    type RegisterStream = MessageStream;

    async fn register(
        &self,
        request: Request<Streaming<ChaincodeMessage>>,
    ) -> Result<Response<Self::RegisterStream>, Status> {
        let stream = self
            .streams
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let mut client = self.dial_peer().await.map_err(|why| {
            tracing::warn!(stream, %why, "the relay could not reach the peer");
            Status::unavailable(format!("chaincode-operator relay: {why}"))
        })?;
        // The chaincode's messages go to the peer as they come; a broken chaincode side ends the
        // peer's stream too (the peer then sees the chaincode go, as without the relay).
        let from_chaincode = request
            .into_inner()
            .take_while(|message| futures::future::ready(message.is_ok()))
            .filter_map(|message| futures::future::ready(message.ok()));
        let from_peer = client.register(from_chaincode).await.map_err(|status| {
            tracing::warn!(stream, %status, "the peer refused the chaincode's stream");
            status
        })?;
        let watcher = StreamWatch {
            stream,
            registration: self.registration.clone(),
            ready: false,
            ended: None,
        };
        let to_chaincode = from_peer.into_inner().scan(watcher, |watcher, message| {
            watcher.observe(&message);
            futures::future::ready(Some(message))
        });
        Ok(Response::new(Box::pin(to_chaincode)))
    }
}

/// Follows one stream's messages from the peer; reports READY and, when dropped after it, the
/// stream's end.
struct StreamWatch {
    stream: u64,
    registration: Arc<watch::Sender<Registration>>,
    ready: bool,
    ended: Option<String>,
}

impl StreamWatch {
    fn observe(&mut self, message: &Result<ChaincodeMessage, Status>) {
        match message {
            Ok(message) if message.r#type == Type::Ready as i32 && !self.ready => {
                self.ready = true;
                tracing::info!(stream = self.stream, "the peer sent READY to the chaincode");
                self.registration.send_replace(Registration::Ready {
                    stream: self.stream,
                });
            }
            Ok(message) if message.r#type == Type::Error as i32 && !self.ready => {
                let text = String::from_utf8_lossy(&message.payload).into_owned();
                tracing::warn!(stream = self.stream, %text, "the peer refused the registration");
            }
            Ok(_) => {}
            Err(status) => self.ended = Some(format!("{}: {}", status.code(), status.message())),
        }
    }
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        if !self.ready {
            return;
        }
        let why = self
            .ended
            .take()
            .unwrap_or_else(|| "the stream between the chaincode and the peer ended".into());
        let stream = self.stream;
        // A later stream that is already READY stays the current registration.
        self.registration.send_if_modified(|current| match current {
            Registration::Ready { stream: s } if *s == stream => {
                *current = Registration::Closed { stream, why };
                true
            }
            _ => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

    use super::*;
    use crate::endorser::chaincode::tls::{CertHash, cert_hash};

    /// A stand-in for the peer's chaincode listener: mutual TLS with its own CA, a stream is only
    /// accepted with the client certificate it issued (Fabric's binding), REGISTER is answered
    /// with REGISTERED and READY, and every later message comes back as a RESPONSE.
    struct FakePeer {
        issued: CertHash,
    }

    #[tonic::async_trait]
    impl ChaincodeSupport for FakePeer {
        type RegisterStream = MessageStream;

        async fn register(
            &self,
            request: Request<Streaming<ChaincodeMessage>>,
        ) -> Result<Response<Self::RegisterStream>, Status> {
            let presented = request
                .peer_certs()
                .and_then(|certs| certs.first().map(|c| cert_hash(c)));
            if presented != Some(self.issued) {
                return Err(Status::unauthenticated(
                    "not the certificate this peer issued",
                ));
            }
            let mut inbound = request.into_inner();
            let (tx, rx) = mpsc::channel(8);
            tokio::spawn(async move {
                while let Some(Ok(message)) = inbound.next().await {
                    let replies = if message.r#type == Type::Register as i32 {
                        vec![Type::Registered, Type::Ready]
                    } else {
                        vec![Type::Response]
                    };
                    for kind in replies {
                        let reply = ChaincodeMessage {
                            r#type: kind as i32,
                            payload: message.payload.clone(),
                            ..Default::default()
                        };
                        if tx.send(Ok(reply)).await.is_err() {
                            return;
                        }
                    }
                }
            });
            Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
        }
    }

    /// Starts the fake peer on 127.0.0.1; returns its address and what chaincode.json would hold.
    async fn fake_peer() -> (String, LaunchTls) {
        let ca = ChaincodeCa::generate("fake peer").expect("CA");
        let server = ca.issue_listener("127.0.0.1:0").expect("server cert");
        let client = ca.issue_client("cc:1").expect("client cert");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let router = Server::builder()
            .tls_config(ca.tonic_server_tls(&server))
            .expect("TLS")
            .add_service(
                ChaincodeSupportServer::new(FakePeer {
                    issued: client.hash,
                })
                .max_decoding_message_size(TRANSPORT_LIMIT)
                .max_encoding_message_size(TRANSPORT_LIMIT),
            );
        tokio::spawn(
            router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        // As Fabric's peer writes chaincode.json: a PKCS#8 key under an `EC PRIVATE KEY` label.
        let fabric_key = client
            .key_pem
            .replace("BEGIN PRIVATE KEY", "BEGIN EC PRIVATE KEY")
            .replace("END PRIVATE KEY", "END EC PRIVATE KEY");
        let tls = LaunchTls {
            client_cert_pem: client.cert_pem.clone(),
            client_key_pem: fabric_key,
            root_cert_pem: ca.root_pem().to_string(),
        };
        (address, tls)
    }

    /// A channel to the relay as the chaincode dials it, with `identity` as its client certificate.
    async fn dial_relay(relay: &Relay, identity: Option<(&str, &str)>) -> Result<Channel, String> {
        let tls = relay.chaincode_tls.as_ref().expect("relay TLS");
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&tls.root_cert_pem))
            .domain_name("127.0.0.1");
        if let Some((cert, key)) = identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        Endpoint::from_shared(format!("https://{}", relay.address))
            .map_err(|e| e.to_string())?
            .tls_config(config)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| e.to_string())
    }

    fn message(kind: Type, payload: Vec<u8>) -> ChaincodeMessage {
        ChaincodeMessage {
            r#type: kind as i32,
            payload,
            ..Default::default()
        }
    }

    /// A relay on 127.0.0.1 in front of a fake peer; returns it and chaincode.json's TLS.
    async fn relay_to_fake_peer() -> (Relay, LaunchTls) {
        let (peer, peer_tls) = fake_peer().await;
        let upstream = Upstream {
            address: peer,
            tls: Some(peer_tls.clone()),
        };
        let listen = "127.0.0.1:0".parse().expect("address");
        let relay = Relay::start(upstream, listen, "127.0.0.1", "cc:1")
            .await
            .expect("relay");
        (relay, peer_tls)
    }

    async fn next_change(registration: &mut watch::Receiver<Registration>) -> Registration {
        tokio::time::timeout(Duration::from_secs(10), registration.changed())
            .await
            .expect("a registration change within 10 s")
            .expect("relay alive");
        registration.borrow_and_update().clone()
    }

    #[tokio::test]
    async fn a_stream_through_the_relay_reaches_the_peer_and_its_ready_and_end_are_reported() {
        let (relay, peer_tls) = relay_to_fake_peer().await;
        let chaincode = relay.chaincode_tls.clone().expect("relay TLS");
        assert_ne!(
            chaincode.root_cert_pem, peer_tls.root_cert_pem,
            "the chaincode trusts the relay's CA, not the peer's"
        );
        assert_ne!(chaincode.client_key_pem, peer_tls.client_key_pem);
        let mut registration = relay.registration();
        assert_eq!(*registration.borrow(), Registration::Waiting);

        let channel = dial_relay(
            &relay,
            Some((&chaincode.client_cert_pem, &chaincode.client_key_pem)),
        )
        .await
        .expect("the chaincode's certificate is accepted");
        let mut client = ChaincodeSupportClient::new(channel)
            .max_decoding_message_size(TRANSPORT_LIMIT)
            .max_encoding_message_size(TRANSPORT_LIMIT);
        let (tx, rx) = mpsc::channel(4);
        tx.send(message(Type::Register, b"cc:1".to_vec()))
            .await
            .expect("send");
        let mut from_peer = client
            .register(ReceiverStream::new(rx))
            .await
            .expect("the peer accepted the peer-issued certificate the relay presented")
            .into_inner();
        let kinds = [
            from_peer
                .next()
                .await
                .expect("REGISTERED")
                .expect("ok")
                .r#type,
            from_peer.next().await.expect("READY").expect("ok").r#type,
        ];
        assert_eq!(kinds, [Type::Registered as i32, Type::Ready as i32]);
        assert_eq!(
            next_change(&mut registration).await,
            Registration::Ready { stream: 1 }
        );

        // A message over tonic's 4 MiB default passes both ways unchanged.
        let large = vec![7u8; 5 * 1024 * 1024];
        tx.send(message(Type::Transaction, large.clone()))
            .await
            .expect("send");
        let echoed = from_peer.next().await.expect("RESPONSE").expect("ok");
        assert_eq!(echoed.r#type, Type::Response as i32);
        assert!(echoed.payload == large, "the payload arrived unchanged");

        // The chaincode goes: the peer's side ends and the registration is reported closed.
        drop(tx);
        assert!(from_peer.next().await.is_none_or(|m| m.is_err()));
        assert!(matches!(
            next_change(&mut registration).await,
            Registration::Closed { stream: 1, .. }
        ));
    }

    #[tokio::test]
    async fn only_the_certificate_the_relay_issued_gets_through() {
        let (relay, peer_tls) = relay_to_fake_peer().await;
        for identity in [
            None,
            Some((
                peer_tls.client_cert_pem.as_str(),
                peer_tls.client_key_pem.as_str(),
            )),
        ] {
            let refused = match dial_relay(&relay, identity).await {
                Err(_) => true,
                Ok(channel) => {
                    let (tx, rx) = mpsc::channel(1);
                    let _ = tx.send(message(Type::Register, Vec::new())).await;
                    ChaincodeSupportClient::new(channel)
                        .register(ReceiverStream::new(rx))
                        .await
                        .is_err()
                }
            };
            assert!(
                refused,
                "a stream without the relay's client certificate is refused"
            );
        }
        assert_eq!(*relay.registration().borrow(), Registration::Waiting);
    }

    #[tokio::test]
    async fn a_peer_that_cannot_be_reached_fails_the_stream_with_its_address() {
        // A port nothing listens on: bind, note it, close.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("address")
            .to_string();
        let upstream = Upstream {
            address: closed.clone(),
            tls: None,
        };
        let listen = "127.0.0.1:0".parse().expect("address");
        let relay = Relay::start(upstream, listen, "127.0.0.1", "cc:1")
            .await
            .expect("relay");
        assert!(
            relay.chaincode_tls.is_none(),
            "no TLS when the peer has none"
        );
        let channel = Endpoint::from_shared(format!("http://{}", relay.address))
            .expect("endpoint")
            .connect()
            .await
            .expect("plaintext relay");
        let (tx, rx) = mpsc::channel(1);
        tx.send(message(Type::Register, Vec::new()))
            .await
            .expect("send");
        let status = ChaincodeSupportClient::new(channel)
            .register(ReceiverStream::new(rx))
            .await
            .expect_err("no peer to forward to");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains(&closed), "{}", status.message());
    }
}
