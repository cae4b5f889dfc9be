//! The Gateway's and Deliver's refusals, over gRPC against a node started in-process on the real Node contract
//! chaincode: what a client that gets a detail wrong sees, and that nothing is committed for it.
//! The happy path with Hyperledger's client is tests/endorser_gateway.rs.
mod proposal_support;
mod support;

use std::time::{Duration, SystemTime};

use chaincode_operator::endorser::commit::genesis::is_config_block;
use chaincode_operator::endorser::identity::{SigningIdentity, load_signing_identity};
use chaincode_operator::endorser::node::devcrypto::{self, DevCryptoSpec};
use chaincode_operator::endorser::node::{self, NodeConfig, RunningNode};
use chaincode_operator::endorser::proposal::build::{ProposalSpec, signed_proposal};
use chaincode_operator::endorser::services::deliver::{Content, seek_envelope, seek_info};
use chaincode_operator::endorser::services::gateway::error_details;
use chaincode_operator::proto::common::Envelope;
use chaincode_operator::proto::common::Status as FabricStatus;
use chaincode_operator::proto::gateway::gateway_client::GatewayClient;
use chaincode_operator::proto::gateway::{
    ChaincodeEventsRequest, CommitStatusRequest, EndorseRequest, EvaluateRequest,
    SignedChaincodeEventsRequest, SignedCommitStatusRequest, SubmitRequest,
};
use chaincode_operator::proto::orderer::seek_info::SeekBehavior;
use chaincode_operator::proto::orderer::{
    SeekInfo, SeekNewest, SeekNextCommit, SeekPosition, SeekSpecified, seek_position,
};
use chaincode_operator::proto::protos::deliver_client::DeliverClient;
use chaincode_operator::proto::protos::endorser_client::EndorserClient;
use chaincode_operator::proto::protos::{
    DeliverResponse, TxValidationCode, deliver_response, filtered_transaction,
};
use proposal_support::{CHANNEL, MSPID, Org, dev_org};
use prost::Message;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

struct Node {
    org: Org,
    node: RunningNode,
    client: GatewayClient<Channel>,
}

async fn start() -> Node {
    start_with(dev_org()).await
}

/// A node for `org` with its data under the org's directory (so a second start reopens it).
async fn start_with(org: Org) -> Node {
    let data = org.dir.path().join("data");
    let mut config = NodeConfig::local(&data, org.endorser.clone(), vec![CHANNEL.to_string()]);
    config.organizations = vec![
        chaincode_operator::endorser::identity::load_organization(
            MSPID,
            &org.crypto.paths.endorser.dir,
        )
        .unwrap(),
    ];
    config.chaincode_plaintext = true;
    config.launcher.logging.level = "warning".into();
    let node = node::start(config).await.expect("node starts");
    let package_id = "basic:contract";
    node.runtime.as_ref().expect("process runtime").add_source(
        package_id,
        support::installed_e2e_dir("chaincodes/contract"),
    );
    node.lifecycle
        .definitions()
        .define(CHANNEL, "basic", package_id);
    let client = GatewayClient::connect(format!("http://{}", node.address))
        .await
        .unwrap();
    Node { org, node, client }
}

fn proposal(
    signer: &SigningIdentity,
    args: &[&str],
) -> (chaincode_operator::proto::protos::SignedProposal, String) {
    signed_proposal(
        signer,
        &ProposalSpec::new(CHANNEL, "basic", args.iter().map(|a| a.as_bytes().to_vec())),
    )
    .unwrap()
}

fn detail_messages(status: &tonic::Status) -> Vec<String> {
    error_details(status)
        .into_iter()
        .map(|detail| detail.message)
        .collect()
}

fn signed_status_request(
    signer: &SigningIdentity,
    identity: &[u8],
    tx_id: &str,
) -> SignedCommitStatusRequest {
    let request = CommitStatusRequest {
        transaction_id: tx_id.to_string(),
        channel_id: CHANNEL.to_string(),
        identity: identity.to_vec(),
    }
    .encode_to_vec();
    SignedCommitStatusRequest {
        signature: signer.sign(&request),
        request,
    }
}

/// Endorses `args` as the user and returns the prepared (unsigned) transaction and its id.
async fn endorse(n: &mut Node, args: &[&str]) -> (Envelope, String) {
    let (signed, tx_id) = proposal(&n.org.user, args);
    endorse_signed(n, signed, &tx_id).await
}

async fn endorse_signed(
    n: &mut Node,
    signed: chaincode_operator::proto::protos::SignedProposal,
    tx_id: &str,
) -> (Envelope, String) {
    let tx_id = tx_id.to_string();
    let prepared = n
        .client
        .endorse(EndorseRequest {
            transaction_id: tx_id.clone(),
            channel_id: CHANNEL.into(),
            proposed_transaction: Some(signed),
            endorsing_organizations: Vec::new(),
        })
        .await
        .expect("endorsed")
        .into_inner()
        .prepared_transaction
        .expect("a prepared transaction");
    (prepared, tx_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_refusals_are_clear_and_commit_nothing() {
    let mut n = start().await;

    // Nothing to evaluate.
    let err = n
        .client
        .evaluate(EvaluateRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    // An undefined chaincode: ABORTED, and the detail names it.
    let (undefined, tx_id) = signed_proposal(
        &n.org.user,
        &ProposalSpec::new(CHANNEL, "nosuchcc", [b"get".to_vec()]),
    )
    .unwrap();
    let err = n
        .client
        .endorse(EndorseRequest {
            transaction_id: tx_id,
            channel_id: CHANNEL.into(),
            proposed_transaction: Some(undefined),
            endorsing_organizations: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err}");
    let details = detail_messages(&err);
    assert!(
        details
            .iter()
            .any(|d| d.contains("chaincode nosuchcc is not defined on channel mychannel")),
        "{details:?}"
    );

    // A proposal may be evaluated and then endorsed (evaluation records nothing)...
    let (put_proposal, put_tx) = proposal(&n.org.user, &["put", "k", "v"]);
    let evaluated = n
        .client
        .evaluate(EvaluateRequest {
            transaction_id: put_tx.clone(),
            channel_id: CHANNEL.into(),
            proposed_transaction: Some(put_proposal.clone()),
            target_organizations: Vec::new(),
        })
        .await
        .expect("evaluated")
        .into_inner();
    assert_eq!(evaluated.result.map(|r| r.payload), Some(b"ok".to_vec()));
    let (mut prepared, tx_id) = endorse_signed(&mut n, put_proposal.clone(), &put_tx).await;
    // ...but not endorsed twice.
    let err = n
        .client
        .endorse(EndorseRequest {
            transaction_id: put_tx.clone(),
            channel_id: CHANNEL.into(),
            proposed_transaction: Some(put_proposal.clone()),
            endorsing_organizations: Vec::new(),
        })
        .await
        .unwrap_err();
    assert!(
        detail_messages(&err)
            .iter()
            .any(|d| d.contains("duplicate transaction")),
        "{err}"
    );

    // Submitting without the client's signature, or signed by someone other than the creator.
    let err = n
        .client
        .submit(SubmitRequest {
            transaction_id: tx_id.clone(),
            channel_id: CHANNEL.into(),
            prepared_transaction: Some(prepared.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let mut forged = prepared.clone();
    forged.signature = n.org.admin.sign(&forged.payload);
    let err = n
        .client
        .submit(SubmitRequest {
            transaction_id: tx_id.clone(),
            channel_id: CHANNEL.into(),
            prepared_transaction: Some(forged),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err}");
    assert!(err.message().contains("signature"), "{}", err.message());
    assert_eq!(
        n.node.committer.status(CHANNEL, &tx_id),
        None,
        "nothing appended"
    );
    // Only the channel's config block (block 0).
    assert_eq!(n.node.committer.height(CHANNEL), 1);

    // Signed properly: committed, and CommitStatus says so to its creator.
    prepared.signature = n.org.user.sign(&prepared.payload);
    n.client
        .submit(SubmitRequest {
            transaction_id: tx_id.clone(),
            channel_id: CHANNEL.into(),
            prepared_transaction: Some(prepared),
        })
        .await
        .expect("submitted");
    let user_identity = n.org.user.serialized().to_vec();
    let status = n
        .client
        .commit_status(signed_status_request(&n.org.user, &user_identity, &tx_id))
        .await
        .expect("commit status")
        .into_inner();
    assert_eq!(status.result, TxValidationCode::Valid as i32);
    // Block 0 is the channel's config block.
    assert_eq!(status.block_number, 1);

    // CommitStatus signed by a key other than the identity's, or by an untrusted organisation.
    let err = n
        .client
        .commit_status(signed_status_request(&n.org.admin, &user_identity, &tx_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger_org = devcrypto::generate(
        stranger_dir.path(),
        &DevCryptoSpec {
            mspid: "Org2MSP".into(),
            domain: "org2.example.com".into(),
            ..DevCryptoSpec::default()
        },
    )
    .unwrap();
    let stranger = load_signing_identity("Org2MSP", &stranger_org.paths.user.dir).unwrap();
    let err = n
        .client
        .commit_status(signed_status_request(
            &stranger,
            stranger.serialized(),
            &tx_id,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.message().contains("untrusted"), "{}", err.message());

    // Events already in the log are replayed from the requested block.
    let (mut emit, emit_tx) = endorse(&mut n, &["emit", "created", "k"]).await;
    emit.signature = n.org.user.sign(&emit.payload);
    n.client
        .submit(SubmitRequest {
            transaction_id: emit_tx.clone(),
            channel_id: CHANNEL.into(),
            prepared_transaction: Some(emit),
        })
        .await
        .expect("submitted");
    let request = ChaincodeEventsRequest {
        channel_id: CHANNEL.into(),
        chaincode_id: "basic".into(),
        identity: user_identity.clone(),
        start_position: Some(SeekPosition {
            r#type: Some(seek_position::Type::Specified(SeekSpecified { number: 0 })),
        }),
        after_transaction_id: String::new(),
    }
    .encode_to_vec();
    let mut events = n
        .client
        .chaincode_events(SignedChaincodeEventsRequest {
            signature: n.org.user.sign(&request),
            request,
        })
        .await
        .expect("event stream")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event from the log")
        .expect("stream open")
        .expect("no error");
    assert_eq!(first.block_number, 2);
    assert_eq!(first.events.len(), 1);
    assert_eq!(
        (
            first.events[0].event_name.as_str(),
            first.events[0].tx_id.as_str()
        ),
        ("created", emit_tx.as_str())
    );
    drop(events);

    // After a restart the recent-proposal cache is empty, but a committed transaction's proposal
    // is still refused (the block log is the record), and a new one is endorsed.
    let Node { org, node, .. } = n;
    node.shutdown().await;
    let mut n = start_with(org).await;
    let replayed = EndorserClient::connect(format!("http://{}", n.node.address))
        .await
        .unwrap()
        .process_proposal(put_proposal)
        .await
        .expect("answered")
        .into_inner()
        .response
        .expect("a response");
    assert_eq!(replayed.status, 500);
    assert!(
        replayed.message.contains("duplicate transaction"),
        "{}",
        replayed.message
    );
    let (_, fresh_tx) = endorse(&mut n, &["get", "k"]).await;
    assert_ne!(fresh_tx, tx_id);
    n.node.shutdown().await;
}

type DeliverStream = tonic::Streaming<DeliverResponse>;

/// Opens a Deliver stream (full, filtered or with private data) and sends `envelope` on it;
/// the returned sender keeps the client's side open for further requests.
async fn open_deliver(
    n: &Node,
    kind: Content,
    envelope: Envelope,
) -> (tokio::sync::mpsc::Sender<Envelope>, DeliverStream) {
    let mut client = DeliverClient::connect(format!("http://{}", n.node.address))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(envelope).await.unwrap();
    let requests = tokio_stream::wrappers::ReceiverStream::new(rx);
    let stream = match kind {
        Content::Blocks => client.deliver(requests).await,
        Content::Filtered => client.deliver_filtered(requests).await,
        Content::WithPrivateData => client.deliver_with_private_data(requests).await,
    }
    .expect("a deliver stream")
    .into_inner();
    (tx, stream)
}

async fn next_response(stream: &mut DeliverStream) -> Option<deliver_response::Type> {
    tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("a deliver response in time")
        .map(|r| r.expect("no gRPC error").r#type.expect("a response type"))
}

async fn next_status(stream: &mut DeliverStream) -> FabricStatus {
    match next_response(stream).await {
        Some(deliver_response::Type::Status(code)) => FabricStatus::try_from(code).unwrap(),
        other => panic!("expected a status, got {other:?}"),
    }
}

fn seek(start: seek_position::Type, stop: u64, behavior: SeekBehavior) -> SeekInfo {
    seek_info(start, stop, behavior)
}

fn specified(number: u64) -> seek_position::Type {
    seek_position::Type::Specified(SeekSpecified { number })
}

/// The peer's Deliver service over gRPC: Fabric's statuses for requests it refuses (each ends
/// the stream), block 0 as the channel's config block, several requests on one stream, a
/// filtered stream following a commit, and a follower that does not block the node's shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_refuses_bad_requests_and_streams_committed_blocks() {
    let mut n = start().await;
    let now = SystemTime::now();
    let user = n.org.user.clone();
    let one = |start, stop| seek(start, stop, SeekBehavior::BlockUntilReady);

    // Unsigned: FORBIDDEN, then the stream ends.
    let mut unsigned = seek_envelope(&user, CHANNEL, one(specified(0), 0), now);
    unsigned.signature.clear();
    let (_keep, mut stream) = open_deliver(&n, Content::Blocks, unsigned).await;
    assert_eq!(next_status(&mut stream).await, FabricStatus::Forbidden);
    assert!(
        next_response(&mut stream).await.is_none(),
        "the stream ends"
    );
    // Signed by an organisation the channel does not have.
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = devcrypto::generate(
        stranger_dir.path(),
        &DevCryptoSpec {
            mspid: "Org2MSP".into(),
            domain: "org2.example.com".into(),
            ..DevCryptoSpec::default()
        },
    )
    .unwrap();
    let stranger = load_signing_identity("Org2MSP", &stranger.paths.user.dir).unwrap();
    let envelope = seek_envelope(&stranger, CHANNEL, one(specified(0), 0), now);
    let (_keep, mut stream) = open_deliver(&n, Content::Filtered, envelope).await;
    assert_eq!(next_status(&mut stream).await, FabricStatus::Forbidden);
    // Unknown channel.
    let envelope = seek_envelope(&user, "nochannel", one(specified(0), 0), now);
    let (_keep, mut stream) = open_deliver(&n, Content::Blocks, envelope).await;
    assert_eq!(next_status(&mut stream).await, FabricStatus::NotFound);
    // A block not committed yet, without waiting.
    let envelope = seek_envelope(
        &user,
        CHANNEL,
        seek(specified(1), 1, SeekBehavior::FailIfNotReady),
        now,
    );
    let (_keep, mut stream) = open_deliver(&n, Content::WithPrivateData, envelope).await;
    assert_eq!(next_status(&mut stream).await, FabricStatus::NotFound);
    // Stop before start; and an envelope that is not one.
    let envelope = seek_envelope(&user, CHANNEL, one(specified(1), 0), now);
    let (_keep, mut stream) = open_deliver(&n, Content::Blocks, envelope).await;
    assert_eq!(next_status(&mut stream).await, FabricStatus::BadRequest);
    let garbage = Envelope {
        payload: b"garbage".to_vec(),
        signature: Vec::new(),
    };
    let (_keep, mut stream) = open_deliver(&n, Content::Blocks, garbage).await;
    assert_eq!(next_status(&mut stream).await, FabricStatus::BadRequest);

    // Block 0 is the channel's config block; after SUCCESS the same stream takes another request.
    let envelope = seek_envelope(&user, CHANNEL, one(specified(0), 0), now);
    let (requests, mut stream) = open_deliver(&n, Content::Blocks, envelope).await;
    let Some(deliver_response::Type::Block(block)) = next_response(&mut stream).await else {
        panic!("expected block 0");
    };
    assert_eq!(block.header.as_ref().unwrap().number, 0);
    assert!(is_config_block(&block));
    assert_eq!(next_status(&mut stream).await, FabricStatus::Success);
    requests
        .send(seek_envelope(
            &user,
            CHANNEL,
            seek(
                seek_position::Type::Newest(SeekNewest {}),
                0,
                SeekBehavior::BlockUntilReady,
            ),
            now,
        ))
        .await
        .unwrap();
    // Newest (0) to 0 again.
    assert!(matches!(
        next_response(&mut stream).await,
        Some(deliver_response::Type::Block(_))
    ));
    assert_eq!(next_status(&mut stream).await, FabricStatus::Success);
    drop(requests);
    assert!(next_response(&mut stream).await.is_none());

    // A filtered follower from the next commit sees the transaction with its code and event.
    let envelope = seek_envelope(
        &user,
        CHANNEL,
        one(seek_position::Type::NextCommit(SeekNextCommit {}), u64::MAX),
        now,
    );
    let (_follow, mut follower) = open_deliver(&n, Content::Filtered, envelope).await;
    let (mut emit, emit_tx) = endorse(&mut n, &["emit", "created", "k"]).await;
    emit.signature = n.org.user.sign(&emit.payload);
    n.client
        .submit(SubmitRequest {
            transaction_id: emit_tx.clone(),
            channel_id: CHANNEL.into(),
            prepared_transaction: Some(emit),
        })
        .await
        .expect("submitted");
    let Some(deliver_response::Type::FilteredBlock(filtered)) = next_response(&mut follower).await
    else {
        panic!("expected a filtered block");
    };
    assert_eq!(
        (filtered.channel_id.as_str(), filtered.number),
        (CHANNEL, 1)
    );
    let tx = &filtered.filtered_transactions[0];
    assert_eq!(tx.txid, emit_tx);
    assert_eq!(tx.tx_validation_code, TxValidationCode::Valid as i32);
    let Some(filtered_transaction::Data::TransactionActions(actions)) = &tx.data else {
        panic!("no actions: {tx:?}");
    };
    let event = actions.chaincode_actions[0]
        .chaincode_event
        .as_ref()
        .unwrap();
    assert_eq!(
        (event.chaincode_id.as_str(), event.event_name.as_str()),
        ("basic", "created")
    );
    assert!(event.payload.is_empty(), "filtered events carry no payload");

    // The follower waits for more; shutting down does not wait for it.
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(20), n.node.shutdown())
        .await
        .expect("shutdown is not blocked by an open Deliver stream");
    assert!(started.elapsed() < Duration::from_secs(20));
    match tokio::time::timeout(Duration::from_secs(10), follower.next()).await {
        Ok(Some(Ok(response))) => assert_eq!(
            response.r#type,
            Some(deliver_response::Type::Status(
                FabricStatus::ServiceUnavailable as i32
            ))
        ),
        Ok(_) => {}
        Err(_) => panic!("the follower's stream did not end"),
    }
}

/// A node whose chaincode stream uses per-launch TLS (the default), with no chaincode defined.
async fn start_ccaas_node(org: &Org) -> (RunningNode, GatewayClient<Channel>) {
    let data = org.dir.path().join("data");
    let mut config = NodeConfig::local(&data, org.endorser.clone(), vec![CHANNEL.to_string()]);
    config.organizations = vec![
        chaincode_operator::endorser::identity::load_organization(
            MSPID,
            &org.crypto.paths.endorser.dir,
        )
        .unwrap(),
    ];
    let node = node::start(config).await.expect("node starts");
    let client = GatewayClient::connect(format!("http://{}", node.address))
        .await
        .unwrap();
    (node, client)
}

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, PEM:
/// (ca, server cert, server key, client cert, client key).
fn ccaas_certificates() -> (String, String, String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        SanType,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    // Distinct subjects: a leaf named like its issuer looks self-signed to OpenSSL.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ccaas test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |server: bool| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let name = if server {
            "ccaas server"
        } else {
            "endorser client"
        };
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        if server {
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(true);
    let (client_cert, client_key) = leaf(false);
    (ca.pem(), server_cert, server_key, client_cert, client_key)
}

fn install_ccaas(node: &RunningNode, label: &str, connection: &serde_json::Value) -> String {
    let bytes = chaincode_operator::builders::package::ccaas_package(
        label,
        connection.to_string().as_bytes(),
    )
    .unwrap();
    node.lifecycle
        .install(&bytes)
        .expect("ccaas package installs")
        .package_id
}

/// Chaincode-as-a-service over mutual TLS: Hyperledger's `fabric-chaincode-node server` with a
/// certificate from a CA made here and requiring client certificates; connection.json carries
/// the root and the endorser's client certificate. Endorsed, submitted and committed through the
/// Gateway, while the endorser's own per-launch stream identity check stays on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccaas_over_mutual_tls_is_endorsed_and_committed() {
    let org = dev_org();
    let (node, client) = start_ccaas_node(&org).await;
    let (ca, server_cert, server_key, client_cert, client_key) = ccaas_certificates();
    let files = tempfile::tempdir().unwrap();
    for (name, pem) in [
        ("ca.crt", &ca),
        ("server.crt", &server_cert),
        ("server.key", &server_key),
    ] {
        std::fs::write(files.path().join(name), pem).unwrap();
    }
    let address = support::dev::free_loopback_address();
    let package_id = install_ccaas(
        &node,
        "tlscc",
        &serde_json::json!({
            "address": address,
            "dial_timeout": "10s",
            "tls_required": true,
            "client_auth_required": true,
            "root_cert": ca,
            "client_cert": client_cert,
            "client_key": client_key,
        }),
    );
    node.lifecycle
        .definitions()
        .define(CHANNEL, "basic", &package_id);
    let path = |name: &str| files.path().join(name).to_string_lossy().into_owned();
    let (cert, key, client_ca) = (path("server.crt"), path("server.key"), path("ca.crt"));
    let mut server = support::dev::node_chaincode_server(
        &address,
        &package_id,
        &[
            "--chaincode-tls-cert-file",
            &cert,
            "--chaincode-tls-key-file",
            &key,
            "--chaincode-tls-client-cacert-file",
            &client_ca,
        ],
    )
    .await;

    let mut n = Node { org, node, client };
    put_committed_and_read(&mut n, "tls-key", "over-mtls").await;

    // Hyperledger's Python shim as a mutual-TLS server too (its TLS comes from
    // CORE_TLS_CLIENT_KEY_PATH / CORE_TLS_CLIENT_CERT_PATH, client CA CORE_PEER_TLS_ROOTCERT_FILE).
    match support::python_chaincode_env() {
        Err(why) => eprintln!("skipped the Python part of the mutual TLS test: {why}"),
        Ok(python) => {
            let py_address = support::dev::free_loopback_address();
            let py_package = install_ccaas(
                &n.node,
                "pytls",
                &serde_json::json!({
                    "address": py_address,
                    "dial_timeout": "10s",
                    "tls_required": true,
                    "client_auth_required": true,
                    "root_cert": ca,
                    "client_cert": client_cert,
                    "client_key": client_key,
                }),
            );
            let mut py_server = tokio::process::Command::new(python)
                .arg(support::e2e_dir("chaincodes/python/chaincode.py"))
                .env("CHAINCODE_ID", &py_package)
                .env("CHAINCODE_SERVER_ADDRESS", &py_address)
                .env("CORE_TLS_CLIENT_KEY_PATH", &key)
                .env("CORE_TLS_CLIENT_CERT_PATH", &cert)
                .env("CORE_PEER_TLS_ROOTCERT_FILE", &client_ca)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("start the Python chaincode server");
            support::dev::wait_listening(&py_address).await;
            // Redefining `basic` to the Python package: the next proposal dials it.
            n.node
                .lifecycle
                .definitions()
                .define(CHANNEL, "basic", &py_package);
            put_committed_and_read(&mut n, "py-tls-key", "python-over-mtls").await;
            support::dev::kill(&mut py_server).await;
        }
    }

    // Without the client certificate the server requires, the handshake fails and the launch
    // says where and why.
    let no_client_cert = install_ccaas(
        &n.node,
        "tlsnocert",
        &serde_json::json!({
            "address": address,
            "dial_timeout": "2s",
            "tls_required": true,
            "root_cert": ca,
        }),
    );
    let err = n
        .node
        .launch(&no_client_cert)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&address), "{err}");
    support::dev::kill(&mut server).await;
    n.node.shutdown().await;
}

/// Endorses put(key, value), submits it, checks it committed VALID, and evaluates get(key).
async fn put_committed_and_read(n: &mut Node, key: &str, value: &str) {
    let (mut prepared, tx_id) = endorse(n, &["put", key, value]).await;
    prepared.signature = n.org.user.sign(&prepared.payload);
    n.client
        .submit(SubmitRequest {
            transaction_id: tx_id.clone(),
            channel_id: CHANNEL.into(),
            prepared_transaction: Some(prepared),
        })
        .await
        .expect("submitted");
    let user_identity = n.org.user.serialized().to_vec();
    let status = n
        .client
        .commit_status(signed_status_request(&n.org.user, &user_identity, &tx_id))
        .await
        .expect("commit status")
        .into_inner();
    assert_eq!(status.result, TxValidationCode::Valid as i32);
    let (get, get_tx) = proposal(&n.org.user, &["get", key]);
    let evaluated = n
        .client
        .evaluate(EvaluateRequest {
            transaction_id: get_tx,
            channel_id: CHANNEL.into(),
            proposed_transaction: Some(get),
            target_organizations: Vec::new(),
        })
        .await
        .expect("evaluated")
        .into_inner();
    assert_eq!(
        evaluated.result.expect("a result").payload,
        value.as_bytes().to_vec()
    );
}

/// What goes wrong with a chaincode server is said at once and names the server: malformed
/// connection.json at install, nothing listening (within dial_timeout), a server registering as
/// another chaincode (without waiting for the startup timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccaas_failures_are_clear_and_quick() {
    let org = dev_org();
    let (node, _client) = start_ccaas_node(&org).await;
    let install = |label: &str, connection: &str| {
        let bytes =
            chaincode_operator::builders::package::ccaas_package(label, connection.as_bytes())
                .unwrap();
        node.lifecycle.install(&bytes).map(|p| p.package_id)
    };
    for (connection, expected) in [
        ("{not json", "connection.json is invalid"),
        (r#"{"address":"nowhere"}"#, "is not host:port"),
        (
            r#"{"address":"a:1","dial_timeout":"ten seconds"}"#,
            "dial_timeout",
        ),
        (
            r#"{"address":"a:1","tls_required":true,"root_cert":"not a certificate"}"#,
            "root_cert holds no PEM certificate",
        ),
        (
            r#"{"address":"{{.peername}}:1"}"#,
            "CHAINCODE_AS_A_SERVICE_BUILDER_CONFIG has no key peername",
        ),
    ] {
        let err = install("bad", connection).unwrap_err().to_string();
        assert!(err.contains(expected), "{connection}: {err}");
    }

    // Nothing listening: fails once the 1 s dial timeout is spent, naming the address.
    let silent = support::dev::free_loopback_address();
    let package_id = install(
        "silent",
        &serde_json::json!({"address": silent, "dial_timeout": "1s"}).to_string(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = node.launch(&package_id).await.unwrap_err().to_string();
    let took = started.elapsed();
    assert!(
        err.contains(&format!(
            "could not connect to the chaincode server at {silent} within the dial timeout of 1s"
        )),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );

    // A server started with another chaincode id is refused as soon as it registers.
    let address = support::dev::free_loopback_address();
    let package_id = install(
        "wrongid",
        &serde_json::json!({"address": address, "dial_timeout": "5s"}).to_string(),
    )
    .unwrap();
    let mut server = support::dev::node_chaincode_server(&address, "other:1", &[]).await;
    let started = std::time::Instant::now();
    let err = node.launch(&package_id).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "registered as \"other:1\", but it was dialled for package {package_id}"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("chaincode server at {address}")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    support::dev::kill(&mut server).await;
    node.shutdown().await;
}
