//! Bad proposals over gRPC with TLS: the EndorserService served on loopback with a server
//! certificate from the dev organisation's TLS CA, and a client that trusts only that root. Each
//! bad proposal (wrong signature, unknown org, expired certificate, tampered bytes, wrong tx id,
//! replayed tx id, non-protobuf bytes on the wire, a message over the configured limit) gets an
//! error that names the problem, and the next good proposal on the same connection (the server
//! counts accepted connections) is still endorsed.
mod proposal_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chaincode_operator::endorser::chaincode::handle::{ExecuteOutcome, ExecuteRequest};
use chaincode_operator::endorser::identity::{SigningIdentity, ecdsa, serialize_identity};
use chaincode_operator::endorser::ledger::WorldState;
use chaincode_operator::endorser::node::devcrypto::{DevCa, LeafSpec};
use chaincode_operator::endorser::proposal::BoundedReplayCache;
use chaincode_operator::endorser::services::endorse::{
    ChaincodeRunner, EndorserContext, EndorserService, RunError, incoming_no_delay,
};
use chaincode_operator::proto::protos::endorser_client::EndorserClient;
use chaincode_operator::proto::protos::{ChaincodeId, ProposalResponse, Response, SignedProposal};
use futures::StreamExt;
use futures::future::BoxFuture;
use proposal_support::*;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};

/// The service's message limit in these tests: above tonic's 4 MiB default, so a proposal between
/// the two proves the service applies its own limit.
const MAX_PROPOSAL_BYTES: usize = 8 * 1024 * 1024;

/// A chaincode whose every transaction writes `args[1] = args[2]` when given three arguments.
struct PutChaincode;

impl ChaincodeRunner for PutChaincode {
    fn run<'a>(
        &'a self,
        request: ExecuteRequest,
    ) -> BoxFuture<'a, Result<(ChaincodeId, ExecuteOutcome), RunError>> {
        Box::pin(async move {
            if let [_, key, value] = request.input.args.as_slice() {
                let key = String::from_utf8_lossy(key);
                request
                    .simulator
                    .put_state(&request.chaincode_name, &key, value.clone())
                    .map_err(|e| RunError::Unavailable(e.to_string()))?;
            }
            let id = ChaincodeId {
                name: request.chaincode_name.clone(),
                ..ChaincodeId::default()
            };
            let response = Response {
                status: 200,
                ..Response::default()
            };
            Ok((
                id,
                ExecuteOutcome {
                    response,
                    event: None,
                },
            ))
        })
    }
}

struct TlsEndorser {
    org: Org,
    channel: Channel,
    client: EndorserClient<Channel>,
    accepted: Arc<AtomicUsize>,
    _db: tempfile::TempDir,
}

async fn start() -> TlsEndorser {
    let org = dev_org();
    let db = tempfile::tempdir().unwrap();
    let world = WorldState::open(&db.path().join("ledger.redb")).unwrap();
    let service = EndorserService::new(EndorserContext {
        validator: validator(&org).with_max_proposal_bytes(MAX_PROPOSAL_BYTES),
        replay: Arc::new(BoundedReplayCache::new(1024)),
        endorser: org.endorser.clone(),
        world,
        runner: Arc::new(PutChaincode),
        lifecycle: None,
    });
    let server_identity = Identity::from_pem(
        &org.crypto.tls_server.cert_pem,
        &org.crypto.tls_server.key_pem,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let incoming = incoming_no_delay(listener).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    tokio::spawn(
        Server::builder()
            .tls_config(ServerTlsConfig::new().identity(server_identity))
            .unwrap()
            .add_service(service.into_server())
            .serve_with_incoming(incoming),
    );
    // The client trusts the TLS CA's root only, as a Fabric client given the org's tlscacerts.
    let tls_root = std::fs::read(org.crypto.paths.tls_root()).unwrap();
    let channel = Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(tls_root))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = EndorserClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
    TlsEndorser {
        org,
        channel,
        client,
        accepted,
        _db: db,
    }
}

impl TlsEndorser {
    async fn send(&mut self, proposal: SignedProposal) -> Result<ProposalResponse, tonic::Status> {
        self.client
            .process_proposal(proposal)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Sends a proposal the service answers with status 500; returns the message.
    async fn refused(&mut self, proposal: SignedProposal) -> String {
        let response = self.send(proposal).await.expect("a ProposalResponse");
        assert!(response.endorsement.is_none(), "refused yet endorsed");
        let answer = response.response.expect("a response");
        assert_eq!(answer.status, 500, "{answer:?}");
        answer.message
    }

    /// Sends `proposal` and checks it was endorsed: status 200 and the endorser's signature over
    /// payload || endorser.
    async fn endorsed(&mut self, proposal: SignedProposal) {
        let response = self.send(proposal).await.expect("a ProposalResponse");
        assert_eq!(response.response.as_ref().map(|r| r.status), Some(200));
        let endorsement = response.endorsement.expect("endorsed");
        assert_eq!(endorsement.endorser, self.org.endorser.serialized());
        ecdsa::verify_parts(
            &ecdsa::public_key_bytes(self.org.endorser.verifying_key()),
            &[&response.payload, &endorsement.endorser],
            &endorsement.signature,
        )
        .expect("the endorser's signature verifies");
    }

    /// A fresh good proposal is endorsed, and every exchange so far used the one connection.
    async fn next_good_one_is_endorsed_on_the_same_connection(&mut self) {
        let next = good(&self.org.user, &[b"put", b"next", b"value"]);
        self.endorsed(next).await;
        assert_eq!(
            self.accepted.load(Ordering::SeqCst),
            1,
            "the client reconnected"
        );
    }
}

#[tokio::test]
async fn a_signature_by_another_key_is_refused_naming_the_signature() {
    let mut endorser = start().await;
    let p = parts(
        endorser.org.user.serialized(),
        &[1; 24],
        &[b"put", b"k", b"v"],
    );
    let message = endorser.refused(signed(&p, &endorser.org.admin)).await;
    assert!(
        message.contains("signature over the proposal is not valid"),
        "{message}"
    );
    assert!(message.contains(MSPID), "{message}");
    endorser
        .next_good_one_is_endorsed_on_the_same_connection()
        .await;
}

#[tokio::test]
async fn an_unknown_organisation_is_refused_naming_it() {
    let mut endorser = start().await;
    let creator = serialize_identity("Org9MSP", endorser.org.user.cert_pem());
    let p = parts(&creator, &[2; 24], &[b"put", b"k", b"v"]);
    let message = endorser.refused(signed(&p, &endorser.org.user)).await;
    assert!(message.contains("\"Org9MSP\" is not trusted"), "{message}");
    endorser
        .next_good_one_is_endorsed_on_the_same_connection()
        .await;
}

#[tokio::test]
async fn an_expired_certificate_from_the_trusted_ca_is_refused_as_expired() {
    let mut endorser = start().await;
    // Issued by the organisation's own CA, so only its validity window is wrong.
    let ca = DevCa::from_pem(
        &endorser.org.crypto.ca.cert_pem,
        &endorser.org.crypto.ca.key_pem,
    )
    .unwrap();
    let mut leaf = LeafSpec::identity("Expired@org1.example.com", "client");
    let now = time::OffsetDateTime::now_utc();
    leaf.not_before = now - time::Duration::days(30);
    leaf.not_after = now - time::Duration::days(1);
    let issued = ca.issue(&leaf).unwrap();
    let expired =
        SigningIdentity::from_pem(MSPID, issued.cert_pem.as_bytes(), &issued.key_pem).unwrap();
    let message = endorser
        .refused(good(&expired, &[b"put", b"k", b"v"]))
        .await;
    assert!(message.contains("has expired"), "{message}");
    assert!(message.contains("Expired@org1.example.com"), "{message}");
    endorser
        .next_good_one_is_endorsed_on_the_same_connection()
        .await;
}

#[tokio::test]
async fn tampered_bytes_are_refused_and_do_not_burn_the_genuine_tx_id() {
    let mut endorser = start().await;
    let genuine = good(&endorser.org.user, &[b"put", b"key", b"value"]);
    let mut tampered = genuine.clone();
    let at = tampered
        .proposal_bytes
        .windows(5)
        .position(|w| w == b"value")
        .unwrap();
    tampered.proposal_bytes[at] = b'V';
    let message = endorser.refused(tampered).await;
    assert!(
        message.contains("signature over the proposal is not valid"),
        "{message}"
    );
    // The forged copy carried the genuine tx id; the genuine proposal still goes through.
    endorser.endorsed(genuine).await;
    endorser
        .next_good_one_is_endorsed_on_the_same_connection()
        .await;
}

#[tokio::test]
async fn a_wrong_tx_id_is_refused_with_the_expected_value() {
    let mut endorser = start().await;
    let user = endorser.org.user.clone();
    let mut p = parts(user.serialized(), &[3; 24], &[b"put", b"k", b"v"]);
    p.channel_header.tx_id = tx_id(&[4; 24], user.serialized());
    let message = endorser.refused(signed(&p, &user)).await;
    assert!(message.contains("incorrectly computed tx id"), "{message}");
    assert!(
        message.contains(&tx_id(&[3; 24], user.serialized())),
        "{message}"
    );
    endorser
        .next_good_one_is_endorsed_on_the_same_connection()
        .await;
}

#[tokio::test]
async fn a_replayed_tx_id_is_refused_as_a_duplicate() {
    let mut endorser = start().await;
    let proposal = good(&endorser.org.user, &[b"put", b"k", b"v"]);
    endorser.endorsed(proposal.clone()).await;
    let message = endorser.refused(proposal).await;
    assert!(message.contains("duplicate transaction"), "{message}");
    endorser
        .next_good_one_is_endorsed_on_the_same_connection()
        .await;
}

/// Writes the request bytes as the gRPC message as they are; reads a ProposalResponse.
struct RawBytesCodec;

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

struct ResponseDecoder;

impl Decoder for ResponseDecoder {
    type Item = ProposalResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> Result<Option<ProposalResponse>, tonic::Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        ProposalResponse::decode(bytes)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Codec for RawBytesCodec {
    type Encode = Vec<u8>;
    type Decode = ProposalResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

async fn send_raw(channel: &Channel, bytes: &[u8]) -> Result<ProposalResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(bytes.to_vec()),
        tonic::codegen::http::uri::PathAndQuery::from_static("/protos.Endorser/ProcessProposal"),
        RawBytesCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn bytes_that_are_no_protobuf_get_a_decode_error_status() {
    let mut endorser = start().await;
    // 0xff starts a field tag with wire type 7, which does not exist.
    for garbage in [&b"\xff\xff\xff\xff\xff"[..], b"GET / HTTP/1.1\r\n\r\n"] {
        let status = send_raw(&endorser.channel, garbage)
            .await
            .expect_err("garbage is not a SignedProposal");
        assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
        assert!(
            status
                .message()
                .contains("failed to decode Protobuf message"),
            "{status:?}"
        );
    }
    // Valid protobuf whose proposal bytes are not a Proposal: the service's own 500.
    let inner_garbage = SignedProposal {
        proposal_bytes: b"\xff\xff\xff".to_vec(),
        signature: vec![1],
    };
    let response = send_raw(&endorser.channel, &inner_garbage.encode_to_vec())
        .await
        .unwrap();
    let answer = response.response.unwrap();
    assert_eq!(answer.status, 500);
    assert!(
        answer
            .message
            .contains("malformed proposal: cannot decode the Proposal"),
        "{answer:?}"
    );
    endorser
        .next_good_one_is_endorsed_on_the_same_connection()
        .await;
}

#[tokio::test]
async fn a_message_over_the_configured_limit_is_refused_before_decoding() {
    let mut endorser = start().await;
    // Over tonic's 4 MiB default but under the service's limit: accepted.
    let big_value = vec![b'x'; 5 * 1024 * 1024];
    endorser
        .endorsed(good(&endorser.org.user, &[b"put", b"big", &big_value]))
        .await;

    let huge_value = vec![b'x'; MAX_PROPOSAL_BYTES + 1];
    let status = endorser
        .send(good(&endorser.org.user, &[b"put", b"huge", &huge_value]))
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("message length too large")
            && status
                .message()
                .contains(&format!("the limit is: {MAX_PROPOSAL_BYTES} bytes")),
        "{status:?}"
    );
    endorser
        .next_good_one_is_endorsed_on_the_same_connection()
        .await;
}

/// Idle clients cannot use up the client port. Connections that send nothing hold every slot of
/// a node capped at four; a real client then waits (it is not refused, and the node keeps running)
/// until the first-byte deadline closes them, and is served. A connection that spoke HTTP/2 and
/// went quiet is closed after the idle deadline. Before these limits, such connections stayed open
/// forever and 1,005 of them used up `ulimit -n 1024`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed_and_capped() {
    use chaincode_operator::endorser::identity::load_signing_identity;
    use chaincode_operator::endorser::node::listener::ConnectionLimits;
    use chaincode_operator::endorser::node::{self, NodeConfig, devcrypto};
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let crypto = devcrypto::generate(
        &dir.path().join("crypto"),
        &devcrypto::DevCryptoSpec::default(),
    )
    .unwrap();
    let signing = load_signing_identity("Org1MSP", &crypto.paths.endorser.dir).unwrap();
    let mut config = NodeConfig::local(
        &dir.path().join("data"),
        signing.clone(),
        vec!["mychannel".to_string()],
    );
    config.organizations = vec![
        chaincode_operator::endorser::identity::load_organization(
            "Org1MSP",
            &crypto.paths.endorser.dir,
        )
        .unwrap(),
    ];
    let first_byte = Duration::from_secs(1);
    let idle = Duration::from_secs(2);
    config.client_limits = ConnectionLimits {
        max_connections: 4,
        first_byte_timeout: first_byte,
        idle_timeout: Some(idle),
    };
    let node = node::start(config).await.expect("node starts");
    let address = node.address;

    /// Reads until the server closes the connection; None if it is still open after `within`.
    async fn closed_after(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<()> {
        let mut buf = [0u8; 4096];
        tokio::time::timeout(within, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .ok()
    }

    let started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(tokio::net::TcpStream::connect(address).await.unwrap());
    }
    // A garbage proposal gets an answer (an error) only once the client gets a slot.
    let waiting_client = tokio::spawn(async move {
        let mut client = EndorserClient::connect(format!("http://{address}"))
            .await
            .expect("connects");
        let answer = client
            .process_proposal(SignedProposal {
                proposal_bytes: b"not a proposal".to_vec(),
                signature: Vec::new(),
            })
            .await;
        // Refused as a bad proposal: answered by the endorser, not a transport failure.
        let refused = match answer {
            Ok(response) => response.into_inner().response.map(|r| r.status),
            Err(status) => Some(status.code() as i32),
        };
        (refused, Instant::now())
    });
    for stream in &mut silent {
        assert!(
            closed_after(stream, Duration::from_secs(20))
                .await
                .is_some(),
            "a connection that sent nothing was not closed"
        );
    }
    let (refused, at) = tokio::time::timeout(Duration::from_secs(20), waiting_client)
        .await
        .expect("the waiting client is served once the silent ones are closed")
        .unwrap();
    assert!(
        refused.is_some_and(|code| code != tonic::Code::Unavailable as i32),
        "{refused:?}"
    );
    assert!(
        at.duration_since(started) >= first_byte,
        "the fifth connection was served while four held every slot"
    );

    // HTTP/2 preface and an empty SETTINGS frame, then nothing: closed as idle, not before.
    let mut quiet = tokio::net::TcpStream::connect(address).await.unwrap();
    quiet
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let spoke = Instant::now();
    assert!(
        closed_after(&mut quiet, Duration::from_secs(20))
            .await
            .is_some(),
        "an idle connection was not closed"
    );
    assert!(spoke.elapsed() >= idle / 2, "closed before it was idle");
    node.shutdown().await;
}

/// A node on loopback trusting `org`, with `max_message_bytes` and a client byte budget.
async fn start_node_with_budget(
    org: &Org,
    data: &std::path::Path,
    max_message_bytes: usize,
    max_inflight_bytes: usize,
) -> chaincode_operator::endorser::node::RunningNode {
    use chaincode_operator::endorser::identity::load_organization;
    use chaincode_operator::endorser::node::{self, NodeConfig};

    let mut config = NodeConfig::local(data, org.endorser.clone(), vec![CHANNEL.to_string()]);
    config.organizations =
        vec![load_organization(MSPID, &org.crypto.paths.endorser.dir).expect("org loads")];
    config.max_message_bytes = max_message_bytes;
    config.max_inflight_bytes = Some(max_inflight_bytes);
    node::start(config).await.expect("node starts")
}

/// Sends `proposal` on a connection of its own; the endorser's answer, or the failure.
async fn propose_alone(
    address: std::net::SocketAddr,
    proposal: SignedProposal,
) -> Result<ProposalResponse, tonic::Status> {
    let mut client = EndorserClient::connect(format!("http://{address}"))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?
        .max_encoding_message_size(usize::MAX);
    client
        .process_proposal(proposal)
        .await
        .map(tonic::Response::into_inner)
}

/// Six clients send ~5 MiB proposals at once to a node whose client byte budget (8 MiB) holds
/// one and a half of them: every proposal is received whole and answered by the endorser (none
/// fails for want of budget), and the bytes held undecoded never exceeded the budget plus one
/// message in overdraft plus a DATA frame per client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_proposals_wait_for_the_byte_budget_and_all_complete() {
    const MIB: usize = 1024 * 1024;
    const BUDGET: usize = 8 * MIB;
    const LIMIT: usize = 6 * MIB;
    const CLIENTS: usize = 6;
    let org = dev_org();
    let data = tempfile::tempdir().unwrap();
    let node = start_node_with_budget(&org, data.path(), LIMIT, BUDGET).await;
    let budget = node.request_budget.clone().expect("a budget is configured");
    let value = vec![b'v'; 5 * MIB];
    let sends = (0..CLIENTS).map(|i| {
        let proposal = good(&org.user, &[b"put", format!("k{i}").as_bytes(), &value]);
        tokio::spawn(propose_alone(node.address, proposal))
    });
    let answers = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        futures::future::join_all(sends),
    )
    .await
    .expect("every large proposal is answered");
    for answer in answers {
        let answer = answer.expect("client task");
        // Validated (the signature covers every byte), then refused: no chaincode is defined.
        let response = answer.expect("answered by the endorser, not failed in transport");
        let response = response.response.expect("a response");
        assert!(
            response.message.contains("basic"),
            "answered about the chaincode: {response:?}"
        );
    }
    assert_eq!(budget.held_bytes(), 0, "everything given back");
    const FRAME: usize = 16 * 1024;
    assert!(
        budget.peak_held_bytes() <= BUDGET + LIMIT + CLIENTS * FRAME,
        "held {} bytes undecoded at once, over the budget of {BUDGET} plus one message",
        budget.peak_held_bytes()
    );
    node.shutdown().await;
}

/// A proposal larger than the whole budget is still received (through the overdraft), and a
/// garbage message over the budget gets the same decode error as without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_the_whole_budget_still_gets_through() {
    const MIB: usize = 1024 * 1024;
    let org = dev_org();
    let data = tempfile::tempdir().unwrap();
    let node = start_node_with_budget(&org, data.path(), 8 * MIB, MIB).await;
    let value = vec![b'v'; 5 * MIB];
    let response = propose_alone(node.address, good(&org.user, &[b"put", b"k", &value]))
        .await
        .expect("answered by the endorser");
    assert!(response.response.is_some(), "{response:?}");

    let channel = Endpoint::from_shared(format!("http://{}", node.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = send_raw(&channel, &vec![0xff; 5 * MIB])
        .await
        .expect_err("garbage is not a SignedProposal");
    assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
    assert_eq!(
        node.request_budget.as_ref().map(|b| b.held_bytes()),
        Some(0)
    );
    node.shutdown().await;
}
