//! The `_lifecycle` system chaincode over `protos.Endorser/ProcessProposal` on loopback, wired
//! like production: a real Fabric package of the Node contract chaincode (made with
//! `chaincode_operator::builders`) is installed by an admin-signed proposal, approved and
//! committed on the channel, and then launched by the process runtime when a proposal reaches
//! it; the endorsement names the defined version. Everything is still there after reopening.
//! `fabric_common_installs_approves_commits_and_invokes` has fabric-common 2.2 send the lifecycle
//! proposals with fabric-protos' own encoding of the lifecycle messages (e2e/clients/lifecycle.js).
mod proposal_support;
mod support;

use std::sync::Arc;

use chaincode_operator::builders::Limits;
use chaincode_operator::builders::package::package_source_dir;
use chaincode_operator::endorser::chaincode::gate::LaunchingResolver;
use chaincode_operator::endorser::chaincode::runtime::process::{
    ProcessRuntime, ProcessRuntimeConfig,
};
use chaincode_operator::endorser::identity::SigningIdentity;
use chaincode_operator::endorser::ledger::CommitTx;
use chaincode_operator::endorser::lifecycle::{INITIALIZED_KEY, Lifecycle};
use chaincode_operator::endorser::proposal::BoundedReplayCache;
use chaincode_operator::endorser::services::endorse::{EndorserContext, EndorserService};
use chaincode_operator::proto::kvrwset::KvrwSet;
use chaincode_operator::proto::lifecycle::{
    ApproveChaincodeDefinitionForMyOrgArgs, ChaincodeSource, CommitChaincodeDefinitionArgs,
    InstallChaincodeArgs, InstallChaincodeResult, QueryChaincodeDefinitionArgs,
    QueryChaincodeDefinitionResult, QueryInstalledChaincodesArgs, QueryInstalledChaincodesResult,
    chaincode_source,
};
use chaincode_operator::proto::protos::endorser_client::EndorserClient;
use chaincode_operator::proto::protos::{
    ChaincodeAction, ChaincodeHeaderExtension, ChaincodeId, ProposalResponse,
    ProposalResponsePayload, SignedProposal,
};
use chaincode_operator::proto::rwset::TxReadWriteSet;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use proposal_support::*;
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

struct Node {
    org: Org,
    peer: support::peer::LaunchingPeer,
    client: EndorserClient<Channel>,
}

async fn start(data_dir: &std::path::Path) -> Node {
    let org = dev_org();
    let peer = support::peer::LaunchingPeer::start(support::peer::PeerOptions::new(false)).await;
    let lifecycle = Arc::new(
        Lifecycle::open(
            data_dir,
            peer.runtime.clone(),
            &peer.dir.path().join("work"),
            MSPID,
        )
        .unwrap(),
    );
    let service = EndorserService::new(EndorserContext {
        validator: validator(&org),
        replay: Arc::new(BoundedReplayCache::new(1024)),
        endorser: org.endorser.clone(),
        world: peer.world.clone(),
        runner: Arc::new(LaunchingResolver {
            definitions: lifecycle.definitions(),
            launcher: peer.launcher.clone(),
        }),
        lifecycle: Some(lifecycle),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Node {
        client: EndorserClient::connect(addr).await.unwrap(),
        org,
        peer,
    }
}

/// A proposal by `signer` to `chaincode` on `channel` (empty: no channel).
fn proposal(
    signer: &SigningIdentity,
    channel: &str,
    chaincode: &str,
    args: &[&[u8]],
    is_init: bool,
) -> SignedProposal {
    let nonce: [u8; 24] = Sha256::digest(format!(
        "{channel}{chaincode}{args:?}{:?}",
        std::time::Instant::now()
    ))[..24]
        .try_into()
        .unwrap();
    let mut p = parts(signer.serialized(), &nonce, args);
    let id = ChaincodeId {
        name: chaincode.into(),
        ..ChaincodeId::default()
    };
    p.channel_header.channel_id = channel.into();
    p.channel_header.extension = ChaincodeHeaderExtension {
        chaincode_id: Some(id.clone()),
    }
    .encode_to_vec();
    p.chaincode_spec.chaincode_id = Some(id);
    if let Some(input) = p.chaincode_spec.input.as_mut() {
        input.is_init = is_init;
    }
    signed(&p, signer)
}

impl Node {
    async fn send(&mut self, proposal: SignedProposal) -> ProposalResponse {
        self.client
            .process_proposal(proposal)
            .await
            .unwrap()
            .into_inner()
    }

    async fn lifecycle_call(
        &mut self,
        signer: &SigningIdentity,
        channel: &str,
        function: &str,
        args: impl Message,
    ) -> ProposalResponse {
        let p = proposal(
            signer,
            channel,
            "_lifecycle",
            &[function.as_bytes(), &args.encode_to_vec()],
            false,
        );
        self.send(p).await
    }
}

fn status(response: &ProposalResponse) -> (i32, String) {
    let r = response.response.clone().unwrap();
    (r.status, r.message)
}

/// The endorsed chaincode action, after checking the endorser's signature.
fn endorsed_action(org: &Org, response: &ProposalResponse) -> ChaincodeAction {
    let endorsement = response.endorsement.clone().expect("endorsed");
    assert_eq!(endorsement.endorser, org.endorser.serialized());
    let key = org.endorser.verifying_key();
    let mut signed_bytes = response.payload.clone();
    signed_bytes.extend_from_slice(&endorsement.endorser);
    VerifyingKey::verify(
        key,
        &signed_bytes,
        &Signature::from_der(&endorsement.signature).unwrap(),
    )
    .unwrap();
    let payload = ProposalResponsePayload::decode(response.payload.as_slice()).unwrap();
    ChaincodeAction::decode(payload.extension.as_slice()).unwrap()
}

fn namespace_rwset(action: &ChaincodeAction, namespace: &str) -> KvrwSet {
    let tx = TxReadWriteSet::decode(action.results.as_slice()).unwrap();
    let ns = tx
        .ns_rwset
        .iter()
        .find(|ns| ns.namespace == namespace)
        .unwrap_or_else(|| panic!("{namespace} in the rwset"));
    KvrwSet::decode(ns.rwset.as_slice()).unwrap()
}

fn approve_args(sequence: i64, version: &str, init: bool, package_id: &str) -> impl Message {
    ApproveChaincodeDefinitionForMyOrgArgs {
        sequence,
        name: "basic".into(),
        version: version.into(),
        init_required: init,
        source: Some(ChaincodeSource {
            r#type: Some(chaincode_source::Type::LocalPackage(
                chaincode_source::Local {
                    package_id: package_id.into(),
                },
            )),
        }),
        ..Default::default()
    }
}

fn commit_args(sequence: i64, version: &str, init: bool) -> impl Message {
    CommitChaincodeDefinitionArgs {
        sequence,
        name: "basic".into(),
        version: version.into(),
        init_required: init,
        ..Default::default()
    }
}

fn contract_package() -> Vec<u8> {
    // Packaging leaves node_modules out; the process runtime installs the dependencies.
    let source = support::installed_e2e_dir("chaincodes/contract");
    package_source_dir(&source, "node", "basic_1.0", None, &Limits::default()).unwrap()
}

#[tokio::test]
async fn install_approve_commit_then_the_defined_chaincode_is_launched_and_endorsed() {
    let data = tempfile::tempdir().unwrap();
    let mut node = start(data.path()).await;
    let admin = node.org.admin.clone();
    let user = node.org.user.clone();
    let package = contract_package();

    // Install: admins only; the answer is label:sha256 of the package bytes.
    let install = InstallChaincodeArgs {
        chaincode_install_package: package.clone(),
    };
    let refused = node
        .lifecycle_call(&user, "", "InstallChaincode", install.clone())
        .await;
    let (code, message) = status(&refused);
    assert_eq!(code, 500);
    assert!(message.contains("[Admins]"), "{message}");
    let response = node
        .lifecycle_call(&admin, "", "InstallChaincode", install.clone())
        .await;
    assert_eq!(status(&response).0, 200, "{:?}", status(&response));
    let installed =
        InstallChaincodeResult::decode(response.response.unwrap().payload.as_slice()).unwrap();
    let package_id = format!("basic_1.0:{}", hex::encode(Sha256::digest(&package)));
    assert_eq!(installed.package_id, package_id);
    assert_eq!(installed.label, "basic_1.0");

    let again = node
        .lifecycle_call(&admin, "", "InstallChaincode", install)
        .await;
    assert!(
        status(&again).1.contains(&format!(
            "chaincode already successfully installed (package ID '{package_id}')"
        )),
        "{:?}",
        status(&again)
    );
    let garbage = node
        .lifecycle_call(
            &admin,
            "",
            "InstallChaincode",
            InstallChaincodeArgs {
                chaincode_install_package: b"\x1f\x8bnot really gzip".to_vec(),
            },
        )
        .await;
    let (code, message) = status(&garbage);
    assert_eq!(code, 500);
    assert!(message.contains("reading the package"), "{message}");

    let listed = node
        .lifecycle_call(
            &admin,
            "",
            "QueryInstalledChaincodes",
            QueryInstalledChaincodesArgs {},
        )
        .await;
    let listed =
        QueryInstalledChaincodesResult::decode(listed.response.unwrap().payload.as_slice())
            .unwrap();
    let ids: Vec<_> = listed
        .installed_chaincodes
        .iter()
        .map(|c| c.package_id.as_str())
        .collect();
    assert_eq!(ids, [package_id.as_str()]);

    // Before a definition, the chaincode is unknown on the channel, by name.
    let undefined = node
        .send(proposal(&user, CHANNEL, "basic", &[b"get", b"k1"], false))
        .await;
    let (code, message) = status(&undefined);
    assert_eq!(code, 500);
    assert!(
        message.contains("basic") && message.contains(CHANNEL),
        "{message}"
    );

    // Approve and commit sequence 1, version 1.0; a wrong sequence is refused by number.
    let approved = node
        .lifecycle_call(
            &admin,
            CHANNEL,
            "ApproveChaincodeDefinitionForMyOrg",
            approve_args(1, "1.0", false, &package_id),
        )
        .await;
    assert_eq!(status(&approved).0, 200, "{:?}", status(&approved));
    let action = endorsed_action(&node.org, &approved);
    assert_eq!(action.chaincode_id.unwrap().name, "_lifecycle");
    let wrong = node
        .lifecycle_call(
            &admin,
            CHANNEL,
            "CommitChaincodeDefinition",
            commit_args(2, "1.0", false),
        )
        .await;
    let (code, message) = status(&wrong);
    assert_eq!(code, 500);
    assert!(
        message.contains("requested sequence is 2, but new definition must be sequence 1"),
        "{message}"
    );
    let committed = node
        .lifecycle_call(
            &admin,
            CHANNEL,
            "CommitChaincodeDefinition",
            commit_args(1, "1.0", false),
        )
        .await;
    assert_eq!(status(&committed).0, 200, "{:?}", status(&committed));

    // The Node contract is launched on demand; the endorsement names the defined version.
    let put = node
        .send(proposal(
            &user,
            CHANNEL,
            "basic",
            &[b"put", b"k1", b"v1"],
            false,
        ))
        .await;
    assert_eq!(status(&put).0, 200, "{:?}", status(&put));
    let action = endorsed_action(&node.org, &put);
    let id = action.chaincode_id.clone().unwrap();
    assert_eq!((id.name.as_str(), id.version.as_str()), ("basic", "1.0"));
    assert_eq!(namespace_rwset(&action, "basic").writes[0].key, "k1");
    let init = node
        .send(proposal(&user, CHANNEL, "basic", &[b"initLedger"], true))
        .await;
    let (code, message) = status(&init);
    assert_eq!(code, 500);
    assert!(
        message.contains("does not require initialization but called as init"),
        "{message}"
    );

    // Sequence 2 requires init: invocations are refused until an init transaction commits.
    for (function, args) in [
        (
            "ApproveChaincodeDefinitionForMyOrg",
            approve_args(2, "2.0", true, &package_id).encode_to_vec(),
        ),
        (
            "CommitChaincodeDefinition",
            commit_args(2, "2.0", true).encode_to_vec(),
        ),
    ] {
        let p = proposal(
            &admin,
            CHANNEL,
            "_lifecycle",
            &[function.as_bytes(), &args],
            false,
        );
        let response = node.send(p).await;
        assert_eq!(
            status(&response).0,
            200,
            "{function}: {:?}",
            status(&response)
        );
    }
    let refused = node
        .send(proposal(&user, CHANNEL, "basic", &[b"get", b"k1"], false))
        .await;
    let (code, message) = status(&refused);
    assert_eq!(code, 500);
    assert!(
        message.contains(
            "chaincode 'basic' has not been initialized for this version, must call as init first"
        ),
        "{message}"
    );
    let init = node
        .send(proposal(&user, CHANNEL, "basic", &[b"initLedger"], true))
        .await;
    assert_eq!(status(&init).0, 200, "{:?}", status(&init));
    let action = endorsed_action(&node.org, &init);
    assert_eq!(action.chaincode_id.clone().unwrap().version, "2.0");
    let tx = TxReadWriteSet::decode(action.results.as_slice()).unwrap();
    let writes = namespace_rwset(&action, "basic").writes;
    let marker = writes
        .iter()
        .find(|w| w.key == INITIALIZED_KEY)
        .expect("the initialized marker is written by the init transaction");
    assert_eq!(marker.value, b"2.0");
    assert!(writes.iter().any(|w| w.key == "init"), "{writes:?}");
    node.peer
        .world
        .commit_block(
            CHANNEL,
            &[CommitTx {
                tx_id: "init-tx",
                timestamp: prost_types::Timestamp::default(),
                rwset: &tx,
            }],
        )
        .unwrap();
    let get = node
        .send(proposal(&user, CHANNEL, "basic", &[b"get", b"init"], false))
        .await;
    assert_eq!(status(&get), (200, String::new()));
    assert_eq!(get.response.unwrap().payload, b"done");

    // Reopened from the same data directory: the package and the definition are still there.
    let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig::new(
        node.peer.dir.path().join("work2"),
    )));
    let reopened = Lifecycle::open(
        data.path(),
        runtime,
        &node.peer.dir.path().join("work2"),
        MSPID,
    )
    .unwrap();
    assert_eq!(
        reopened.packages().get(&package_id).unwrap().package_id,
        package_id
    );
    let def = reopened.definitions().get(CHANNEL, "basic").unwrap();
    assert_eq!(
        (
            def.version.as_str(),
            def.sequence,
            def.init_required,
            def.package_id.as_str()
        ),
        ("2.0", 2, true, package_id.as_str())
    );
    let query = reopened.invoke(
        &chaincode_operator::endorser::lifecycle::Caller {
            mspid: MSPID.into(),
            subject: "CN=User1".into(),
            is_admin: false,
        },
        CHANNEL,
        &[
            b"QueryChaincodeDefinition".to_vec(),
            QueryChaincodeDefinitionArgs {
                name: "basic".into(),
            }
            .encode_to_vec(),
        ],
    );
    let query = QueryChaincodeDefinitionResult::decode(query.payload.as_slice()).unwrap();
    assert_eq!((query.sequence, query.version.as_str()), (2, "2.0"));
    node.peer.launcher.shutdown().await;
}

/// fabric-common 2.2 drives the lifecycle with the lifecycle messages encoded by fabric-protos:
/// install, list, approve with a private data collection, readiness, commit, query, invoke.
#[tokio::test]
async fn fabric_common_installs_approves_commits_and_invokes() {
    let data = tempfile::tempdir().unwrap();
    let org = dev_org();
    let peer = support::peer::LaunchingPeer::start(support::peer::PeerOptions::new(false)).await;
    let lifecycle = Arc::new(
        Lifecycle::open(
            data.path(),
            peer.runtime.clone(),
            &peer.dir.path().join("work"),
            MSPID,
        )
        .unwrap(),
    );
    let service = EndorserService::new(EndorserContext {
        validator: validator(&org),
        replay: Arc::new(BoundedReplayCache::new(1024)),
        endorser: org.endorser.clone(),
        world: peer.world.clone(),
        runner: Arc::new(LaunchingResolver {
            definitions: lifecycle.definitions(),
            launcher: peer.launcher.clone(),
        }),
        lifecycle: Some(lifecycle.clone()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_port = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let package = contract_package();
    let package_file = data.path().join("basic.tar.gz");
    std::fs::write(&package_file, &package).unwrap();
    let package_id = format!("basic_1.0:{}", hex::encode(Sha256::digest(&package)));

    let host = format!("grpc://{host_port}");
    let reports = support::client_reports(
        "lifecycle.js",
        &[
            "send".as_ref(),
            MSPID.as_ref(),
            org.crypto.paths.admin.cert.as_os_str(),
            org.crypto.paths.admin.key.as_os_str(),
            host.as_ref(),
            package_file.as_os_str(),
        ],
    )
    .await;
    for case in [
        "install",
        "queryinstalled",
        "approve",
        "checkcommitreadiness",
        "commit",
        "querycommitted",
        "invoke",
    ] {
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
    assert_eq!(
        reports["install"]["result"]["package_id"],
        package_id.as_str()
    );
    assert_eq!(reports["install"]["result"]["label"], "basic_1.0");
    assert_eq!(
        reports["queryinstalled"]["result"]["installed_chaincodes"][0]["package_id"],
        package_id.as_str()
    );
    assert_eq!(
        reports["checkcommitreadiness"]["result"]["approvals"],
        serde_json::json!({ MSPID: true })
    );
    let committed = &reports["querycommitted"]["result"];
    assert_eq!(committed["sequence"], 1);
    assert_eq!(committed["version"], "1.0");
    assert_eq!(committed["endorsement_plugin"], "escc");
    assert_eq!(
        committed["collection_names"],
        serde_json::json!(["private1"])
    );
    assert_eq!(committed["approvals"], serde_json::json!({ MSPID: true }));
    assert_eq!(reports["invoke"]["result"], "ok");

    let def = lifecycle.definitions().get(CHANNEL, "basic").unwrap();
    assert_eq!(def.package_id, package_id);
    assert_eq!(def.collections.len(), 1);
    peer.launcher.shutdown().await;
}
