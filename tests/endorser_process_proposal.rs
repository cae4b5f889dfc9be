//! `protos.Endorser/ProcessProposal` over gRPC on loopback: signed proposals in, endorsements
//! out, checked independently (signature against the endorser's certificate, proposal hash
//! recomputed from the proposal bytes, rwset decoded). Most tests use a scripted
//! `ChaincodeRunner` working on the real transaction simulator, so the pipeline and the wire are
//! exercised without a chaincode process; `the_node_contract_chaincode_is_launched_and_endorsed`
//! runs the real Node contract chaincode through the launcher and the process runtime.
mod proposal_support;
mod support;

use std::sync::Arc;

use chaincode_operator::endorser::chaincode::handle::{
    ExecuteError, ExecuteOutcome, ExecuteRequest,
};
use chaincode_operator::endorser::chaincode::handler::{Completion, TxKind};
use chaincode_operator::endorser::ledger::WorldState;
use chaincode_operator::endorser::proposal::BoundedReplayCache;
use chaincode_operator::endorser::services::endorse::{
    ChaincodeRunner, EndorserContext, EndorserService, RunError,
};
use chaincode_operator::proto::common::Header;
use chaincode_operator::proto::kvrwset::KvrwSet;
use chaincode_operator::proto::msp::SerializedIdentity;
use chaincode_operator::proto::protos::endorser_client::EndorserClient;
use chaincode_operator::proto::protos::{
    ChaincodeAction, ChaincodeEvent, ChaincodeId, ChaincodeProposalPayload, Proposal,
    ProposalResponse, ProposalResponsePayload, Response, SignedProposal,
};
use chaincode_operator::proto::rwset::TxReadWriteSet;
use futures::future::BoxFuture;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use proposal_support::*;
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A chaincode `basic` that understands `put k v`, `get k`, `event name payload`, `kind` (answers
/// init or transaction), `fail msg` and `timeout` (the stream gives up);
/// any other name is undefined, as the launching resolver reports it.
struct ScriptedChaincode;

impl ScriptedChaincode {
    fn execute(request: &ExecuteRequest) -> Result<Completion, String> {
        let args: Vec<String> = request
            .input
            .args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let sim = &request.simulator;
        let ok = |payload: Vec<u8>| Response {
            status: 200,
            message: String::new(),
            payload,
        };
        let ns = request.chaincode_name.as_str();
        let mut event = None;
        let response = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["put", key, value] => {
                sim.put_state(ns, key, value.as_bytes().to_vec())
                    .map_err(|e| e.to_string())?;
                ok(Vec::new())
            }
            ["get", key] => ok(sim
                .get_state(ns, key)
                .map_err(|e| e.to_string())?
                .unwrap_or_default()),
            ["event", name, payload] => {
                event = Some(ChaincodeEvent {
                    event_name: name.into(),
                    payload: payload.as_bytes().to_vec(),
                    ..ChaincodeEvent::default()
                });
                ok(Vec::new())
            }
            ["kind"] => ok(match request.kind {
                TxKind::Init => b"init".to_vec(),
                TxKind::Transaction => b"transaction".to_vec(),
            }),
            ["fail", message] => Response {
                status: 500,
                message: message.into(),
                payload: Vec::new(),
            },
            _ => return Err(format!("unknown function {args:?}")),
        };
        Ok(Completion { response, event })
    }
}

impl ChaincodeRunner for ScriptedChaincode {
    fn run<'a>(
        &'a self,
        request: ExecuteRequest,
    ) -> BoxFuture<'a, Result<(ChaincodeId, ExecuteOutcome), RunError>> {
        Box::pin(async move {
            if request.chaincode_name != "basic" {
                return Err(RunError::Unavailable(format!(
                    "chaincode {} is not defined on channel {}",
                    request.chaincode_name, request.channel_id
                )));
            }
            if request.input.args.first().map(Vec::as_slice) == Some(b"timeout") {
                return Err(RunError::Execute(ExecuteError::Timeout(
                    std::time::Duration::from_secs(30),
                )));
            }
            assert!(request.proposal.is_some(), "the shim needs the proposal");
            let outcome = Self::execute(&request).map_err(RunError::Unavailable)?;
            let id = ChaincodeId {
                name: request.chaincode_name.clone(),
                ..ChaincodeId::default()
            };
            Ok((id, outcome))
        })
    }
}

struct Endorser {
    org: Org,
    client: EndorserClient<Channel>,
    _db: tempfile::TempDir,
}

async fn start() -> Endorser {
    let org = dev_org();
    let db = tempfile::tempdir().unwrap();
    let world = WorldState::open(&db.path().join("ledger.redb")).unwrap();
    let service = EndorserService::new(EndorserContext {
        validator: validator(&org),
        replay: Arc::new(BoundedReplayCache::new(1024)),
        endorser: org.endorser.clone(),
        world,
        runner: Arc::new(ScriptedChaincode),
        lifecycle: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let client = EndorserClient::connect(addr).await.unwrap();
    Endorser {
        org,
        client,
        _db: db,
    }
}

impl Endorser {
    async fn send(&mut self, proposal: SignedProposal) -> ProposalResponse {
        self.client
            .process_proposal(proposal)
            .await
            .unwrap()
            .into_inner()
    }
}

fn status(response: &ProposalResponse) -> (i32, String) {
    let r = response.response.clone().unwrap();
    (r.status, r.message)
}

/// Checks the endorsement as a client would and returns the chaincode action it endorses.
fn verified_action(
    org: &Org,
    proposal: &SignedProposal,
    response: &ProposalResponse,
) -> ChaincodeAction {
    let endorsement = response.endorsement.clone().expect("endorsed");
    assert_eq!(endorsement.endorser, org.endorser.serialized());
    let identity = SerializedIdentity::decode(endorsement.endorser.as_slice()).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&identity.id_bytes).unwrap();
    let (_, cert) = X509Certificate::from_der(&pem.contents).unwrap();
    let key = VerifyingKey::from_sec1_bytes(&cert.public_key().subject_public_key.data).unwrap();
    let mut signed_bytes = response.payload.clone();
    signed_bytes.extend_from_slice(&endorsement.endorser);
    key.verify(
        &signed_bytes,
        &Signature::from_der(&endorsement.signature).unwrap(),
    )
    .unwrap();

    let p = Proposal::decode(proposal.proposal_bytes.as_slice()).unwrap();
    let header = Header::decode(p.header.as_slice()).unwrap();
    let payload = ChaincodeProposalPayload::decode(p.payload.as_slice()).unwrap();
    let mut hasher = Sha256::new();
    hasher.update(&header.channel_header);
    hasher.update(&header.signature_header);
    hasher.update(
        ChaincodeProposalPayload {
            input: payload.input,
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let response_payload = ProposalResponsePayload::decode(response.payload.as_slice()).unwrap();
    assert_eq!(response_payload.proposal_hash, hasher.finalize().to_vec());
    ChaincodeAction::decode(response_payload.extension.as_slice()).unwrap()
}

fn basic_rwset(action: &ChaincodeAction) -> KvrwSet {
    let tx = TxReadWriteSet::decode(action.results.as_slice()).unwrap();
    let ns = tx
        .ns_rwset
        .iter()
        .find(|ns| ns.namespace == "basic")
        .expect("basic namespace in the rwset");
    KvrwSet::decode(ns.rwset.as_slice()).unwrap()
}

#[tokio::test]
async fn put_is_endorsed_with_its_write_in_the_rwset() {
    let mut endorser = start().await;
    let proposal = good(&endorser.org.user, &[b"put", b"k1", b"v1"]);
    let response = endorser.send(proposal.clone()).await;
    assert_eq!(status(&response).0, 200);
    let action = verified_action(&endorser.org, &proposal, &response);
    let rwset = basic_rwset(&action);
    assert_eq!(rwset.writes.len(), 1);
    assert_eq!(
        (
            rwset.writes[0].key.as_str(),
            rwset.writes[0].value.as_slice()
        ),
        ("k1", b"v1".as_slice())
    );
    assert_eq!(action.chaincode_id.unwrap().name, "basic");
}

#[tokio::test]
async fn get_records_the_read_and_returns_the_value_payload() {
    let mut endorser = start().await;
    let proposal = good(&endorser.org.user, &[b"get", b"missing"]);
    let response = endorser.send(proposal.clone()).await;
    assert_eq!(status(&response).0, 200);
    let action = verified_action(&endorser.org, &proposal, &response);
    let rwset = basic_rwset(&action);
    assert_eq!(rwset.reads.len(), 1);
    assert_eq!(rwset.reads[0].key, "missing");
    assert_eq!(
        rwset.reads[0].version, None,
        "an absent key reads with no version"
    );
    assert!(rwset.writes.is_empty());
}

#[tokio::test]
async fn the_event_is_endorsed_with_chaincode_and_tx_id() {
    let mut endorser = start().await;
    let proposal = good(&endorser.org.user, &[b"event", b"Stored", b"k1"]);
    let response = endorser.send(proposal.clone()).await;
    let action = verified_action(&endorser.org, &proposal, &response);
    let event = ChaincodeEvent::decode(action.events.as_slice()).unwrap();
    assert_eq!(event.event_name, "Stored");
    assert_eq!(event.payload, b"k1");
    assert_eq!(event.chaincode_id, "basic");
    let p = Proposal::decode(proposal.proposal_bytes.as_slice()).unwrap();
    let header = Header::decode(p.header.as_slice()).unwrap();
    let channel_header =
        chaincode_operator::proto::common::ChannelHeader::decode(header.channel_header.as_slice())
            .unwrap();
    assert_eq!(event.tx_id, channel_header.tx_id);
}

#[tokio::test]
async fn a_chaincode_error_is_not_endorsed_and_keeps_its_status_and_message() {
    let mut endorser = start().await;
    let response = endorser
        .send(good(
            &endorser.org.user,
            &[b"fail", b"asset k9 does not exist"],
        ))
        .await;
    assert_eq!(status(&response), (500, "asset k9 does not exist".into()));
    assert!(response.endorsement.is_none());
}

#[tokio::test]
async fn an_undefined_chaincode_gets_a_500_naming_it() {
    let mut endorser = start().await;
    let user = &endorser.org.user;
    let mut p = parts(user.serialized(), &[7; 24], &[b"get", b"k"]);
    let other = ChaincodeId {
        name: "nosuchcc".into(),
        ..ChaincodeId::default()
    };
    p.channel_header.extension = chaincode_operator::proto::protos::ChaincodeHeaderExtension {
        chaincode_id: Some(other.clone()),
    }
    .encode_to_vec();
    p.chaincode_spec.chaincode_id = Some(other);
    let response = endorser.send(signed(&p, user)).await;
    let (code, message) = status(&response);
    assert_eq!(code, 500);
    assert!(message.contains("nosuchcc"), "{message}");
    assert!(message.contains(CHANNEL), "{message}");
    assert!(response.endorsement.is_none());
}

#[tokio::test]
async fn an_init_proposal_runs_as_init_and_an_invocation_as_transaction() {
    let mut endorser = start().await;
    let user = endorser.org.user.clone();
    let mut init = parts(user.serialized(), &[3; 24], &[b"kind"]);
    if let Some(input) = init.chaincode_spec.input.as_mut() {
        input.is_init = true;
    }
    let response = endorser.send(signed(&init, &user)).await;
    assert_eq!(response.response.unwrap().payload, b"init");
    let response = endorser.send(good(&user, &[b"kind"])).await;
    assert_eq!(response.response.unwrap().payload, b"transaction");
}

#[tokio::test]
async fn a_system_failure_is_a_500_with_its_reason_and_the_service_keeps_serving() {
    let mut endorser = start().await;
    let response = endorser.send(good(&endorser.org.user, &[b"timeout"])).await;
    let (code, message) = status(&response);
    assert_eq!(code, 500);
    assert!(message.contains("timed out"), "{message}");
    assert!(response.endorsement.is_none());
    let next = endorser
        .send(good(&endorser.org.user, &[b"put", b"k", b"v"]))
        .await;
    assert_eq!(status(&next).0, 200);
}

#[tokio::test]
async fn garbage_and_tampered_proposals_get_a_clear_error_and_the_next_good_one_succeeds() {
    let mut endorser = start().await;
    let garbage = SignedProposal {
        proposal_bytes: vec![0xff, 0x01, 0x02],
        signature: vec![1, 2, 3],
    };
    let (code, message) = status(&endorser.send(garbage).await);
    assert_eq!(code, 500);
    assert!(!message.is_empty());

    let mut tampered = good(&endorser.org.user, &[b"put", b"k1", b"v1"]);
    let last = tampered.proposal_bytes.len() - 1;
    tampered.proposal_bytes[last] ^= 0x01;
    let response = endorser.send(tampered).await;
    assert_eq!(status(&response).0, 500);
    assert!(response.endorsement.is_none());

    let replayed = good(&endorser.org.user, &[b"put", b"k2", b"v2"]);
    assert_eq!(status(&endorser.send(replayed.clone()).await).0, 200);
    let (code, message) = status(&endorser.send(replayed).await);
    assert_eq!(code, 500, "a replayed proposal is refused: {message}");

    let next = good(&endorser.org.user, &[b"put", b"k3", b"v3"]);
    let response = endorser.send(next.clone()).await;
    assert_eq!(status(&response).0, 200);
    verified_action(&endorser.org, &next, &response);
}

/// The production wiring: the launcher resolves `basic` through the channel definitions, starts
/// the Node contract chaincode with the process runtime, and the endorser runs proposals on it.
/// An endorser whose chaincode `basic` is the Node contract chaincode, launched on demand.
/// Commits `pairs` to the `basic` namespace on the channel as one block.
fn seed(world: &WorldState, pairs: &[(&str, &str)]) {
    use chaincode_operator::endorser::ledger::{CommitTx, TxSimulator};
    let sim = TxSimulator::new(world.clone(), CHANNEL, "seed");
    for (key, value) in pairs {
        sim.put_state("basic", key, value.as_bytes().to_vec())
            .unwrap();
    }
    let rwset = sim.results().unwrap();
    let block = world
        .commit_block(
            CHANNEL,
            &[CommitTx {
                tx_id: "seed",
                timestamp: prost_types::Timestamp::default(),
                rwset: &rwset,
            }],
        )
        .unwrap();
    assert_eq!(
        block.validation,
        [chaincode_operator::proto::protos::TxValidationCode::Valid]
    );
}

async fn start_on_node_contract() -> (support::peer::LaunchingPeer, Endorser, String) {
    let peer = support::peer::LaunchingPeer::start(support::peer::PeerOptions::new(false)).await;
    peer.install(
        "basic",
        "basic:1",
        &support::installed_e2e_dir("chaincodes/contract"),
    );
    let org = dev_org();
    let service = EndorserService::new(EndorserContext {
        validator: validator(&org),
        replay: Arc::new(BoundedReplayCache::new(1024)),
        endorser: org.endorser.clone(),
        world: peer.world.clone(),
        runner: Arc::new(
            chaincode_operator::endorser::chaincode::gate::LaunchingResolver {
                definitions: peer.definitions.clone(),
                launcher: peer.launcher.clone(),
            },
        ),
        lifecycle: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_port = listener.local_addr().unwrap().to_string();
    let addr = format!("http://{host_port}");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let endorser = Endorser {
        client: EndorserClient::connect(addr).await.unwrap(),
        org,
        _db: tempfile::tempdir().unwrap(),
    };
    (peer, endorser, host_port)
}

#[tokio::test]
async fn the_node_contract_chaincode_is_launched_and_endorsed() {
    let (peer, mut endorser, _) = start_on_node_contract().await;

    let put = good(&endorser.org.user, &[b"put", b"k1", b"v1"]);
    let response = endorser.send(put.clone()).await;
    assert_eq!(status(&response).0, 200, "{:?}", status(&response));
    let rwset = basic_rwset(&verified_action(&endorser.org, &put, &response));
    assert_eq!(rwset.writes.len(), 1);
    assert_eq!(rwset.writes[0].key, "k1");
    assert_eq!(rwset.writes[0].value, b"v1");

    let get = good(&endorser.org.user, &[b"get", b"k1"]);
    let response = endorser.send(get.clone()).await;
    assert_eq!(status(&response).0, 200, "{:?}", status(&response));
    let rwset = basic_rwset(&verified_action(&endorser.org, &get, &response));
    assert_eq!(rwset.reads.len(), 1);
    assert_eq!(rwset.reads[0].key, "k1");

    let emit = good(&endorser.org.user, &[b"emit", b"Transfer", b"payload-1"]);
    let response = endorser.send(emit.clone()).await;
    let action = verified_action(&endorser.org, &emit, &response);
    let event = ChaincodeEvent::decode(action.events.as_slice()).unwrap();
    assert_eq!(
        (event.chaincode_id.as_str(), event.event_name.as_str()),
        ("basic", "Transfer")
    );
    assert_eq!(event.payload, b"payload-1");

    let response = endorser
        .send(good(&endorser.org.user, &[b"fail", b"boom"]))
        .await;
    let (code, message) = status(&response);
    assert_eq!(code, 500);
    assert!(message.contains("boom"), "{message}");
    assert!(response.endorsement.is_none());

    let garbage = SignedProposal {
        proposal_bytes: vec![0xff; 8],
        signature: Vec::new(),
    };
    assert_eq!(status(&endorser.send(garbage).await).0, 500);
    let again = good(&endorser.org.user, &[b"put", b"k2", b"v2"]);
    assert_eq!(status(&endorser.send(again).await).0, 200);

    // A name with no definition on the channel: the resolver's error, naming it.
    let user = &endorser.org.user;
    let mut p = parts(user.serialized(), &[9; 24], &[b"get", b"k"]);
    let other = ChaincodeId {
        name: "nosuchcc".into(),
        ..ChaincodeId::default()
    };
    p.channel_header.extension = chaincode_operator::proto::protos::ChaincodeHeaderExtension {
        chaincode_id: Some(other.clone()),
    }
    .encode_to_vec();
    p.chaincode_spec.chaincode_id = Some(other);
    let (code, message) = status(&endorser.send(signed(&p, user)).await);
    assert_eq!(code, 500);
    assert!(
        message.contains("chaincode nosuchcc is not defined on channel mychannel"),
        "{message}"
    );
    peer.launcher.shutdown().await;
}

/// fabric-common 2.2 itself sends its proposals to the endorser over gRPC and reads the answers.
#[tokio::test]
async fn fabric_common_sends_proposals_and_gets_endorsements() {
    let (peer, endorser, host_port) = start_on_node_contract().await;
    seed(
        &peer.world,
        &[("asset1", "seeded-1"), ("asset2", "seeded-2")],
    );
    let host = format!("grpc://{host_port}");
    let reports = support::client_reports(
        "proposals.js",
        &[
            "send".as_ref(),
            MSPID.as_ref(),
            endorser.org.crypto.paths.user.cert.as_os_str(),
            endorser.org.crypto.paths.user.key.as_os_str(),
            host.as_ref(),
        ],
    )
    .await;
    for case in ["put", "get", "range", "emit", "whoami"] {
        let report = &reports[case];
        assert_eq!(
            report["statuses"],
            serde_json::json!([200]),
            "{case}: {report}"
        );
        assert_eq!(
            report["endorsed"],
            serde_json::json!([true]),
            "{case}: {report}"
        );
    }
    // What fabric-common received, checked independently: the endorsement signature against the
    // endorser's certificate, the proposal hash recomputed from fabric-common's proposal bytes,
    // and the rwset's contents.
    let decoded = |case: &str| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let report = &reports[case];
        let proposal = SignedProposal::decode(
            b64.decode(report["signedProposal"].as_str().unwrap())
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        let response = ProposalResponse::decode(
            b64.decode(report["proposalResponses"][0].as_str().unwrap())
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        let action = verified_action(&endorser.org, &proposal, &response);
        let payload = response.response.unwrap().payload;
        (action, String::from_utf8(payload).unwrap())
    };
    let (put, _) = decoded("put");
    let writes = basic_rwset(&put).writes;
    assert_eq!(
        (
            writes.len(),
            writes[0].key.as_str(),
            writes[0].value.as_slice()
        ),
        (1, "asset1", b"blue".as_slice())
    );
    let (get, value) = decoded("get");
    assert_eq!(
        value, "seeded-1",
        "the committed value, not the unsubmitted put"
    );
    assert_eq!(basic_rwset(&get).reads[0].key, "asset1");
    let (range, keys) = decoded("range");
    assert_eq!(keys, r#"["asset1","asset2"]"#);
    let range_info = &basic_rwset(&range).range_queries_info;
    assert_eq!(
        (
            range_info[0].start_key.as_str(),
            range_info[0].end_key.as_str()
        ),
        ("asset0", "asset9")
    );
    let (emit, _) = decoded("emit");
    let event = ChaincodeEvent::decode(emit.events.as_slice()).unwrap();
    assert_eq!(
        (event.event_name.as_str(), event.payload.as_slice()),
        ("Transfer", b"payload-1".as_slice())
    );
    let (_, whoami) = decoded("whoami");
    let whoami: serde_json::Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(whoami["mspid"], MSPID);
    assert!(
        whoami["id"]
            .as_str()
            .unwrap()
            .contains("CN=User1@org1.example.com"),
        "{whoami}"
    );
    let fail = &reports["fail"];
    assert_eq!(fail["statuses"], serde_json::json!([500]), "{fail}");
    assert!(
        fail["messages"][0].as_str().unwrap().contains("boom"),
        "{fail}"
    );
    assert_eq!(fail["endorsed"], serde_json::json!([false]), "{fail}");
    peer.launcher.shutdown().await;
}
