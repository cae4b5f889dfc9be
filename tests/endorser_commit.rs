//! The embedded commit path end to end: proposals endorsed by `process_proposal` (a scripted
//! chaincode on the real transaction simulator, dev-crypto identities), assembled into signed
//! envelopes with `build_transaction`, submitted to a `Committer` over a real world state and
//! block log in a temporary directory, and checked through statuses, the world state, the
//! logged blocks and a reopened committer.
mod proposal_support;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use chaincode_operator::endorser::chaincode::handle::{ExecuteOutcome, ExecuteRequest};
use chaincode_operator::endorser::chaincode::handler::Completion;
use chaincode_operator::endorser::commit::blocklog::{block_header_hash, transactions_filter};
use chaincode_operator::endorser::commit::genesis::is_config_block;
use chaincode_operator::endorser::commit::{
    ChannelLog, CommitError, CommitStats, Committer, CommitterConfig, EndorsementPolicy,
    EnvelopeError, MAX_PENDING, RequiredOrgs, SubmitError, TxStatus, build_transaction,
};
use chaincode_operator::endorser::identity::{
    Organization, SigningIdentity, TrustStore, load_organization, load_signing_identity,
};
use chaincode_operator::endorser::ledger::WorldState;
use chaincode_operator::endorser::node::devcrypto::{self, DevCryptoSpec};
use chaincode_operator::endorser::proposal::BoundedReplayCache;
use chaincode_operator::endorser::services::endorse::{
    ChaincodeRunner, EndorserContext, RunError, process_proposal,
};
use chaincode_operator::proto::common::{ChannelHeader, Envelope, Header, Payload};
use chaincode_operator::proto::kvrwset::Version;
use chaincode_operator::proto::protos::{
    ChaincodeActionPayload, ChaincodeEvent, ChaincodeId, Endorsement, Proposal, ProposalResponse,
    Response, SignedProposal, Transaction, TxValidationCode,
};
use futures::future::BoxFuture;
use proposal_support::*;
use prost::Message;

/// A chaincode `basic`: `put k v` writes, `copy from to` reads `from` and writes its value
/// suffixed with `to` into `to` (a read-then-write), `emit name payload k v` writes and sets an
/// event.
struct ScriptedChaincode;

impl ChaincodeRunner for ScriptedChaincode {
    fn run<'a>(
        &'a self,
        request: ExecuteRequest,
    ) -> BoxFuture<'a, Result<(ChaincodeId, ExecuteOutcome), RunError>> {
        Box::pin(async move {
            let args: Vec<String> = request
                .input
                .args
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let sim = &request.simulator;
            let fail = |e: &dyn std::fmt::Display| RunError::Unavailable(e.to_string());
            let mut event = None;
            match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["put", key, value] => sim
                    .put_state("basic", key, value.as_bytes().to_vec())
                    .map_err(|e| fail(&e))?,
                ["update", key, value] => {
                    sim.get_state("basic", key).map_err(|e| fail(&e))?;
                    sim.put_state("basic", key, value.as_bytes().to_vec())
                        .map_err(|e| fail(&e))?;
                }
                ["emit", name, payload, key, value] => {
                    sim.put_state("basic", key, value.as_bytes().to_vec())
                        .map_err(|e| fail(&e))?;
                    event = Some(ChaincodeEvent {
                        event_name: name.into(),
                        payload: payload.as_bytes().to_vec(),
                        ..ChaincodeEvent::default()
                    });
                }
                _ => return Err(RunError::Unavailable(format!("unknown function {args:?}"))),
            }
            let id = ChaincodeId {
                name: "basic".into(),
                ..ChaincodeId::default()
            };
            let response = Response {
                status: 200,
                message: String::new(),
                payload: Vec::new(),
            };
            Ok((id, Completion { response, event }))
        })
    }
}

struct Peer {
    org: Org,
    dir: tempfile::TempDir,
    world: WorldState,
    committer: Committer,
    endorser: EndorserContext,
}

fn world_path(dir: &Path) -> PathBuf {
    dir.join("ledger.redb")
}

fn blocks_dir(dir: &Path) -> PathBuf {
    dir.join("blocks")
}

fn log_file(dir: &Path) -> PathBuf {
    blocks_dir(dir).join(format!("{CHANNEL}.blocks"))
}

fn endorser_context(org: &Org, world: &WorldState, endorser: &SigningIdentity) -> EndorserContext {
    EndorserContext {
        validator: validator(org),
        replay: Arc::new(BoundedReplayCache::new(1024)),
        endorser: endorser.clone(),
        world: world.clone(),
        runner: Arc::new(ScriptedChaincode),
        lifecycle: None,
    }
}

impl Peer {
    fn start() -> Peer {
        let org = dev_org();
        let dir = tempfile::tempdir().unwrap();
        let world = WorldState::open(&world_path(dir.path())).unwrap();
        let committer =
            Committer::open(&blocks_dir(dir.path()), world.clone(), org.trust.clone()).unwrap();
        // As a node does for its channels: block 0 is the channel's config block.
        committer.create_channel(CHANNEL).unwrap();
        let endorser = endorser_context(&org, &world, &org.endorser);
        Peer {
            org,
            dir,
            world,
            committer,
            endorser,
        }
    }

    /// Closes everything and opens the same files again, as after a restart.
    fn restart(self) -> Peer {
        let (org, dir) = self.close();
        Peer::reopen(org, dir)
    }

    /// Closes the world state and the committer, keeping the organisation and the files.
    fn close(self) -> (Org, tempfile::TempDir) {
        let Peer {
            org,
            dir,
            world,
            committer,
            endorser,
        } = self;
        drop((world, committer, endorser));
        (org, dir)
    }

    fn reopen(org: Org, dir: tempfile::TempDir) -> Peer {
        let world = WorldState::open(&world_path(dir.path())).unwrap();
        let committer =
            Committer::open(&blocks_dir(dir.path()), world.clone(), org.trust.clone()).unwrap();
        let endorser = endorser_context(&org, &world, &org.endorser);
        Peer {
            org,
            dir,
            world,
            committer,
            endorser,
        }
    }

    async fn endorse_with(
        &self,
        context: &EndorserContext,
        args: &[&[u8]],
    ) -> (SignedProposal, ProposalResponse) {
        let proposal = good(&self.org.user, args);
        let response = process_proposal(context, proposal.clone(), SystemTime::now()).await;
        assert_eq!(
            response.response.as_ref().unwrap().status,
            200,
            "{response:?}"
        );
        (proposal, response)
    }

    /// A proposal endorsed by this peer, signed into an envelope by the user: the client's part.
    async fn transaction(&self, args: &[&[u8]]) -> (String, Envelope) {
        let (proposal, response) = self.endorse_with(&self.endorser, args).await;
        envelope(&self.org.user, &proposal, &[response])
    }

    fn value(&self, key: &str) -> Option<(Vec<u8>, Version)> {
        self.world
            .get(CHANNEL, "basic", key)
            .unwrap()
            .map(|v| (v.value, v.version))
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(log_file(self.dir.path()))
            .map(|m| m.len())
            .unwrap_or(0)
    }
}

fn envelope(
    signer: &SigningIdentity,
    proposal: &SignedProposal,
    responses: &[ProposalResponse],
) -> (String, Envelope) {
    let proposal = Proposal::decode(proposal.proposal_bytes.as_slice()).unwrap();
    let payload = build_transaction(&proposal, responses).unwrap();
    let header = payload.header.clone().unwrap();
    let tx_id = ChannelHeader::decode(header.channel_header.as_slice())
        .unwrap()
        .tx_id;
    let payload = payload.encode_to_vec();
    let envelope = Envelope {
        signature: signer.sign(&payload),
        payload,
    };
    (tx_id, envelope)
}

fn valid(block_number: u64) -> TxStatus {
    TxStatus {
        block_number,
        code: TxValidationCode::Valid,
    }
}

#[tokio::test]
async fn a_valid_transaction_commits_and_its_write_is_read_with_its_version() {
    let peer = Peer::start();
    let mut blocks = peer.committer.subscribe();
    let (tx_id, envelope) = peer
        .transaction(&[b"emit", b"Stored", b"k1", b"k1", b"v1"])
        .await;
    assert_eq!(peer.committer.status(CHANNEL, &tx_id), None);
    let status = peer.committer.submit(envelope.clone()).await.unwrap();
    // Block 0 is the channel's config block; transactions start at block 1.
    assert_eq!(status, valid(1));
    assert_eq!(peer.committer.status(CHANNEL, &tx_id), Some(status));
    assert_eq!(peer.committer.wait_status(CHANNEL, &tx_id).await, status);
    assert_eq!(
        peer.value("k1"),
        Some((
            b"v1".to_vec(),
            Version {
                block_num: 1,
                tx_num: 0
            }
        ))
    );

    let block = blocks.recv().await.unwrap();
    assert_eq!((block.channel.as_str(), block.number), (CHANNEL, 1));
    assert_eq!(block.txs.len(), 1);
    assert_eq!(block.txs[0].tx_id, tx_id);
    assert_eq!(block.txs[0].code, TxValidationCode::Valid);
    let event = &block.txs[0].chaincode_events[0];
    assert_eq!(
        (event.event_name.as_str(), event.payload.as_slice()),
        ("Stored", b"k1".as_slice())
    );
    assert_eq!(
        (event.chaincode_id.as_str(), event.tx_id.as_str()),
        ("basic", tx_id.as_str())
    );
    assert_eq!(peer.committer.blocks_from(CHANNEL, 1).unwrap(), vec![block]);
    // The config block holds no chaincode transaction.
    assert!(
        peer.committer.blocks_from(CHANNEL, 0).unwrap()[0]
            .txs
            .is_empty()
    );

    // The logged Fabric block holds the envelope as submitted and its validation code.
    let raw = peer.committer.raw_blocks_from(CHANNEL, 0).unwrap();
    assert!(is_config_block(&raw[0]));
    assert_eq!(
        raw[1].data.as_ref().unwrap().data,
        vec![envelope.encode_to_vec()]
    );
    assert_eq!(raw[1].metadata.as_ref().unwrap().metadata[2], vec![0]);
    assert_eq!(
        raw[1].header.as_ref().unwrap().previous_hash,
        block_header_hash(raw[0].header.as_ref().unwrap())
    );
}

#[tokio::test]
async fn a_waiter_is_woken_when_the_transaction_commits() {
    let peer = Peer::start();
    let (tx_id, envelope) = peer.transaction(&[b"put", b"k", b"v"]).await;
    let committer = peer.committer.clone();
    let waiter = tokio::spawn(async move { committer.wait_status(CHANNEL, &tx_id).await });
    tokio::task::yield_now().await;
    peer.committer.submit(envelope).await.unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(status, valid(1));
}

#[tokio::test]
async fn the_second_of_two_transactions_endorsed_on_the_same_read_is_an_mvcc_conflict() {
    let peer = Peer::start();
    let (_, first) = peer.transaction(&[b"put", b"k", b"v0"]).await;
    peer.committer.submit(first).await.unwrap();
    // Both read k at version (1, 0).
    let (_, a) = peer.transaction(&[b"update", b"k", b"from-a"]).await;
    let (b_id, b) = peer.transaction(&[b"update", b"k", b"from-b"]).await;
    assert_eq!(peer.committer.submit(a).await.unwrap(), valid(2));
    assert_eq!(
        peer.committer.submit(b).await.unwrap(),
        TxStatus {
            block_number: 3,
            code: TxValidationCode::MvccReadConflict
        }
    );
    assert_eq!(
        peer.committer.status(CHANNEL, &b_id).unwrap().code,
        TxValidationCode::MvccReadConflict
    );
    assert_eq!(
        peer.value("k"),
        Some((
            b"from-a".to_vec(),
            Version {
                block_num: 2,
                tx_num: 0
            }
        ))
    );
    // The conflicting transaction is in the log all the same, with its code.
    let block = &peer.committer.blocks_from(CHANNEL, 3).unwrap()[0];
    assert_eq!(block.txs[0].code, TxValidationCode::MvccReadConflict);
    assert!(block.txs[0].chaincode_events.is_empty());
}

#[tokio::test]
async fn of_two_conflicting_transactions_submitted_together_exactly_one_is_valid() {
    let peer = Peer::start();
    let (_, first) = peer.transaction(&[b"put", b"k", b"v0"]).await;
    peer.committer.submit(first).await.unwrap();
    let (_, a) = peer.transaction(&[b"update", b"k", b"from-a"]).await;
    let (_, b) = peer.transaction(&[b"update", b"k", b"from-b"]).await;
    // Whether they share a block or not, the later one in the log read a stale version.
    let (a_status, b_status) = tokio::join!(peer.committer.submit(a), peer.committer.submit(b));
    let (a_status, b_status) = (a_status.unwrap(), b_status.unwrap());
    let winner = match (a_status.code, b_status.code) {
        (TxValidationCode::Valid, TxValidationCode::MvccReadConflict) => b"from-a",
        (TxValidationCode::MvccReadConflict, TxValidationCode::Valid) => b"from-b",
        codes => panic!("expected one VALID and one MVCC_READ_CONFLICT, got {codes:?}"),
    };
    assert_eq!(peer.value("k").unwrap().0, winner);
}

#[tokio::test]
async fn concurrent_submits_each_get_the_status_the_log_records() {
    let peer = Peer::start();
    let mut envelopes = Vec::new();
    for i in 0..20 {
        let key = format!("key{i}");
        envelopes.push(peer.transaction(&[b"put", key.as_bytes(), b"v"]).await);
    }
    let results = futures::future::join_all(envelopes.iter().map(|(_, envelope)| {
        let committer = peer.committer.clone();
        let envelope = envelope.clone();
        async move { committer.submit(envelope).await.unwrap() }
    }))
    .await;
    let logged: Vec<(String, TxStatus)> = peer
        .committer
        .blocks_from(CHANNEL, 0)
        .unwrap()
        .iter()
        .flat_map(|block| {
            block.txs.iter().map(|tx| {
                (
                    tx.tx_id.clone(),
                    TxStatus {
                        block_number: block.number,
                        code: tx.code,
                    },
                )
            })
        })
        .collect();
    assert_eq!(logged.len(), 20);
    for ((tx_id, _), status) in envelopes.iter().zip(&results) {
        assert_eq!(status.code, TxValidationCode::Valid);
        assert!(
            logged.contains(&(tx_id.clone(), *status)),
            "{tx_id} {status:?}"
        );
    }
}

#[tokio::test]
async fn a_bad_creator_signature_or_tampered_payload_is_refused_and_logs_nothing() {
    let peer = Peer::start();
    let (tx_id, envelope) = peer.transaction(&[b"put", b"k", b"original"]).await;
    let log_len = peer.log_len();

    let mut bad_signature = envelope.clone();
    bad_signature.signature = peer.org.user.sign(b"something else");
    let refused = peer.committer.submit(bad_signature).await.unwrap_err();
    assert!(
        matches!(
            refused,
            SubmitError::Refused(EnvelopeError::Signature { .. })
        ),
        "{refused}"
    );
    assert!(refused.to_string().contains("signature"), "{refused}");

    // The endorsed write changed after the user signed: the signature no longer matches.
    let mut payload = Payload::decode(envelope.payload.as_slice()).unwrap();
    payload.data = tamper(&payload.data, b"original", b"tampered");
    let tampered = Envelope {
        payload: payload.encode_to_vec(),
        signature: envelope.signature.clone(),
    };
    assert!(matches!(
        peer.committer.submit(tampered).await,
        Err(SubmitError::Refused(EnvelopeError::Signature { .. }))
    ));

    let garbage = Envelope {
        payload: b"not a payload".to_vec(),
        signature: envelope.signature.clone(),
    };
    assert!(matches!(
        peer.committer.submit(garbage).await,
        Err(SubmitError::Refused(EnvelopeError::Malformed { .. }))
    ));

    assert_eq!(peer.log_len(), log_len, "nothing appended");
    assert_eq!(peer.committer.height(CHANNEL), 1);
    assert_eq!(peer.committer.status(CHANNEL, &tx_id), None);
    assert_eq!(peer.value("k"), None);
    // The genuine envelope still commits afterwards.
    assert_eq!(peer.committer.submit(envelope).await.unwrap(), valid(1));
}

/// Signs `payload` as the user, as a client that built it itself would.
fn signed_envelope(signer: &SigningIdentity, payload: &Payload) -> Envelope {
    let payload = payload.encode_to_vec();
    Envelope {
        signature: signer.sign(&payload),
        payload,
    }
}

#[tokio::test]
async fn a_signed_but_broken_transaction_is_recorded_invalid_and_changes_nothing() {
    let peer = Peer::start();
    let (_, a) = peer.transaction(&[b"put", b"k", b"from-a"]).await;
    let (b_id, b) = peer.transaction(&[b"put", b"k", b"from-b"]).await;
    let a = Payload::decode(a.payload.as_slice()).unwrap();
    let b = Payload::decode(b.payload.as_slice()).unwrap();

    // B's header carrying A's endorsed action: the endorsements are for another proposal.
    let a_action = Transaction::decode(a.data.as_slice()).unwrap().actions[0].clone();
    let b_header = b.header.clone().unwrap();
    let reused = Payload {
        data: Transaction {
            actions: vec![chaincode_operator::proto::protos::TransactionAction {
                header: b_header.signature_header.clone(),
                payload: a_action.payload,
            }],
        }
        .encode_to_vec(),
        ..b.clone()
    };
    let status = peer
        .committer
        .submit(signed_envelope(&peer.org.user, &reused))
        .await
        .unwrap();
    assert_eq!(
        status,
        TxStatus {
            block_number: 1,
            code: TxValidationCode::InvalidEndorserTransaction
        }
    );

    // Not a transaction at all, under a fresh proposal's header.
    let (proposal, _) = peer
        .endorse_with(&peer.endorser, &[b"put", b"k", b"x"])
        .await;
    let header = Header::decode(
        Proposal::decode(proposal.proposal_bytes.as_slice())
            .unwrap()
            .header
            .as_slice(),
    )
    .unwrap();
    let garbage = Payload {
        header: Some(header),
        data: vec![0xff; 16],
    };
    let status = peer
        .committer
        .submit(signed_envelope(&peer.org.user, &garbage))
        .await
        .unwrap();
    assert_eq!(status.code, TxValidationCode::InvalidEndorserTransaction);
    assert_eq!(peer.value("k"), None);

    // B's tx id was spent by the broken transaction: B itself is now a duplicate.
    assert_eq!(
        peer.committer
            .submit(signed_envelope(&peer.org.user, &b))
            .await
            .unwrap()
            .code,
        TxValidationCode::DuplicateTxid
    );
    assert_eq!(
        peer.committer.status(CHANNEL, &b_id).unwrap().code,
        TxValidationCode::InvalidEndorserTransaction
    );
    assert_eq!(peer.value("k"), None);
}

/// The transaction with every occurrence of `from` replaced by `to` (same length).
fn tamper(transaction: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = transaction.to_vec();
    let mut at = 0;
    while let Some(found) = out[at..].windows(from.len()).position(|w| w == from) {
        out[at + found..at + found + to.len()].copy_from_slice(to);
        at += found + from.len();
    }
    assert_ne!(
        out, transaction,
        "the value to tamper with is in the transaction"
    );
    out
}

/// A second organisation (`Org2MSP`) with its own CA and endorsing peer.
struct Org2 {
    _dir: tempfile::TempDir,
    organization: Organization,
    endorser: SigningIdentity,
}

fn org2() -> Org2 {
    let dir = tempfile::tempdir().unwrap();
    let spec = DevCryptoSpec {
        mspid: "Org2MSP".into(),
        domain: "org2.example.com".into(),
        ..DevCryptoSpec::default()
    };
    let crypto = devcrypto::generate(dir.path(), &spec).unwrap();
    Org2 {
        endorser: load_signing_identity("Org2MSP", &crypto.paths.endorser.dir).unwrap(),
        organization: load_organization("Org2MSP", &crypto.paths.endorser.dir).unwrap(),
        _dir: dir,
    }
}

#[tokio::test]
async fn endorsements_that_do_not_count_fail_the_policy_and_change_nothing() {
    let peer = Peer::start();
    let stranger = org2();
    let untrusted = endorser_context(&peer.org, &peer.world, &stranger.endorser);
    // A client cannot endorse its own transaction: the endorser must be a peer.
    let self_endorsed = endorser_context(&peer.org, &peer.world, &peer.org.user);

    let mut statuses = Vec::new();
    for (key, context) in [("by-stranger", &untrusted), ("by-client", &self_endorsed)] {
        let (proposal, response) = peer
            .endorse_with(context, &[b"put", key.as_bytes(), b"v"])
            .await;
        let (tx_id, envelope) = envelope(&peer.org.user, &proposal, &[response]);
        statuses.push((tx_id, peer.committer.submit(envelope).await.unwrap()));
    }
    let (proposal, mut response) = peer
        .endorse_with(&peer.endorser, &[b"put", b"bad-signature", b"v"])
        .await;
    let endorsement = response.endorsement.as_mut().unwrap();
    endorsement.signature = peer.org.endorser.sign(b"not the response payload");
    let (tx_id, bad) = envelope(&peer.org.user, &proposal, &[response]);
    statuses.push((tx_id, peer.committer.submit(bad).await.unwrap()));

    for (number, (tx_id, status)) in statuses.iter().enumerate() {
        let expected = TxStatus {
            block_number: number as u64 + 1,
            code: TxValidationCode::EndorsementPolicyFailure,
        };
        assert_eq!(*status, expected);
        assert_eq!(peer.committer.status(CHANNEL, tx_id), Some(expected));
    }
    for key in ["by-stranger", "by-client", "bad-signature"] {
        assert_eq!(peer.value(key), None, "{key} must not be written");
    }
}

#[tokio::test]
async fn a_majority_policy_needs_more_than_half_of_the_trusted_orgs() {
    let peer = Peer::start();
    let org2 = org2();
    let trust = Arc::new(TrustStore::new([
        load_organization(MSPID, &peer.org.crypto.paths.endorser.dir).unwrap(),
        org2.organization.clone(),
    ]));
    // A second node (its own log and world state) trusting both organisations.
    let dir = tempfile::tempdir().unwrap();
    let world = WorldState::open(&world_path(dir.path())).unwrap();
    let committer = Committer::open_with(
        dir.path(),
        world.clone(),
        trust,
        CommitterConfig {
            policy: EndorsementPolicy {
                required: RequiredOrgs::Majority,
                peer_role_required: true,
            },
            channels: None,
            ..CommitterConfig::default()
        },
    )
    .unwrap();
    // Org2's peer endorses the same result: it signs the same response payload.
    let endorsed_by_both = |by_org1: &ProposalResponse| ProposalResponse {
        endorsement: Some(Endorsement {
            endorser: org2.endorser.serialized().to_vec(),
            signature: org2
                .endorser
                .sign_parts(&[&by_org1.payload, org2.endorser.serialized()]),
        }),
        ..by_org1.clone()
    };

    // One of two organisations is half, not a majority.
    let (proposal, by_org1) = peer
        .endorse_with(&peer.endorser, &[b"put", b"k", b"v"])
        .await;
    let (_, one) = envelope(&peer.org.user, &proposal, std::slice::from_ref(&by_org1));
    assert_eq!(
        committer.submit(one).await.unwrap().code,
        TxValidationCode::EndorsementPolicyFailure
    );
    // Its tx id is spent, valid or not.
    let by_org2 = endorsed_by_both(&by_org1);
    let (_, again) = envelope(&peer.org.user, &proposal, &[by_org1, by_org2]);
    assert_eq!(
        committer.submit(again).await.unwrap().code,
        TxValidationCode::DuplicateTxid
    );

    let (proposal, by_org1) = peer
        .endorse_with(&peer.endorser, &[b"put", b"k", b"v"])
        .await;
    let by_org2 = endorsed_by_both(&by_org1);
    let (_, both) = envelope(&peer.org.user, &proposal, &[by_org1, by_org2]);
    assert_eq!(
        committer.submit(both).await.unwrap().code,
        TxValidationCode::Valid
    );
    let written = world.get(CHANNEL, "basic", "k").unwrap().unwrap();
    assert_eq!(written.value, b"v");
}

#[tokio::test]
async fn the_same_transaction_twice_is_a_duplicate_and_keeps_its_first_status() {
    let peer = Peer::start();
    let (tx_id, envelope) = peer.transaction(&[b"put", b"k", b"v"]).await;
    assert_eq!(
        peer.committer.submit(envelope.clone()).await.unwrap(),
        valid(1)
    );
    assert_eq!(
        peer.committer.submit(envelope).await.unwrap(),
        TxStatus {
            block_number: 2,
            code: TxValidationCode::DuplicateTxid
        }
    );
    assert_eq!(peer.committer.status(CHANNEL, &tx_id), Some(valid(1)));
    assert_eq!(
        peer.value("k").unwrap().1,
        Version {
            block_num: 1,
            tx_num: 0
        }
    );
}

#[tokio::test]
async fn statuses_state_and_blocks_survive_a_restart() {
    let peer = Peer::start();
    let (a_id, a) = peer.transaction(&[b"put", b"a", b"1"]).await;
    peer.committer.submit(a.clone()).await.unwrap();
    let (b_id, b) = peer.transaction(&[b"emit", b"Evt", b"p", b"b", b"2"]).await;
    peer.committer.submit(b).await.unwrap();
    peer.committer.submit(a.clone()).await.unwrap();
    let blocks = peer.committer.blocks_from(CHANNEL, 0).unwrap();

    let peer = peer.restart();
    assert_eq!(peer.committer.status(CHANNEL, &a_id), Some(valid(1)));
    assert_eq!(peer.committer.status(CHANNEL, &b_id), Some(valid(2)));
    assert_eq!(peer.committer.blocks_from(CHANNEL, 0).unwrap(), blocks);
    assert_eq!(peer.value("a").unwrap().0, b"1");
    assert_eq!(peer.value("b").unwrap().0, b"2");
    // The index came back too: a resubmission is still a duplicate, and the chain continues.
    assert_eq!(
        peer.committer.submit(a).await.unwrap().code,
        TxValidationCode::DuplicateTxid
    );
    let raw = peer.committer.raw_blocks_from(CHANNEL, 0).unwrap();
    assert_eq!(raw.len(), 5);
    assert!(is_config_block(&raw[0]));
    for pair in raw.windows(2) {
        assert_eq!(
            pair[1].header.as_ref().unwrap().previous_hash,
            block_header_hash(pair[0].header.as_ref().unwrap())
        );
    }
}

#[tokio::test]
async fn a_torn_append_is_cut_off_on_restart() {
    let peer = Peer::start();
    let (a_id, a) = peer.transaction(&[b"put", b"a", b"1"]).await;
    peer.committer.submit(a).await.unwrap();
    let complete = peer.log_len();
    // A crash in the middle of writing the next frame: a length, a checksum and half a block.
    let mut torn = 4096u32.to_le_bytes().to_vec();
    torn.extend_from_slice(&[0xab; 4]);
    torn.extend_from_slice(&[0x0a; 100]);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(log_file(peer.dir.path()))
        .unwrap();
    std::io::Write::write_all(&mut file, &torn).unwrap();
    drop(file);

    let peer = peer.restart();
    assert_eq!(peer.log_len(), complete);
    assert_eq!(peer.committer.height(CHANNEL), 2);
    assert_eq!(peer.committer.status(CHANNEL, &a_id), Some(valid(1)));
    let (_, b) = peer.transaction(&[b"put", b"b", b"2"]).await;
    assert_eq!(peer.committer.submit(b).await.unwrap(), valid(2));
}

#[tokio::test]
async fn blocks_logged_but_not_applied_are_applied_on_open() {
    let peer = Peer::start();
    let (_, a) = peer.transaction(&[b"put", b"a", b"1"]).await;
    peer.committer.submit(a).await.unwrap();
    let (org, dir) = peer.close();
    // Keep the world state as it was after block 1.
    let before = dir.path().join("before.redb");
    std::fs::copy(world_path(dir.path()), &before).unwrap();

    let peer = Peer::reopen(org, dir);
    let (b_id, b) = peer.transaction(&[b"put", b"b", b"2"]).await;
    peer.committer.submit(b).await.unwrap();
    let (org, dir) = peer.close();
    // The crash: block 2 reached the log but not the world state.
    std::fs::copy(&before, world_path(dir.path())).unwrap();
    let stale = WorldState::open(&world_path(dir.path())).unwrap();
    assert_eq!(stale.height(CHANNEL).unwrap(), 2);
    assert_eq!(stale.get(CHANNEL, "basic", "b").unwrap(), None);
    drop(stale);

    let peer = Peer::reopen(org, dir);
    assert_eq!(peer.world.height(CHANNEL).unwrap(), 3);
    assert_eq!(
        peer.value("b"),
        Some((
            b"2".to_vec(),
            Version {
                block_num: 2,
                tx_num: 0
            }
        ))
    );
    assert_eq!(peer.committer.status(CHANNEL, &b_id), Some(valid(2)));
}

#[tokio::test]
async fn a_world_state_ahead_of_its_block_log_is_refused_on_open() {
    let peer = Peer::start();
    let (_, a) = peer.transaction(&[b"put", b"a", b"1"]).await;
    peer.committer.submit(a).await.unwrap();
    let (org, dir) = peer.close();
    std::fs::remove_file(log_file(dir.path())).unwrap();
    let world = WorldState::open(&world_path(dir.path())).unwrap();
    let error = Committer::open(&blocks_dir(dir.path()), world, org.trust.clone()).unwrap_err();
    assert!(
        matches!(
            error,
            CommitError::StateAheadOfLog {
                state_height: 2,
                log_height: 0,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains(CHANNEL), "{error}");
}

#[test]
fn the_envelope_is_the_proposal_header_and_the_endorsed_action() {
    // build_transaction keeps the creator's header: the committer indexes by its tx id.
    let user = dev_org().user;
    let proposal = good(&user, &[b"put", b"k", b"v"]);
    let decoded = Proposal::decode(proposal.proposal_bytes.as_slice()).unwrap();
    let response = ProposalResponse {
        version: 1,
        response: Some(Response {
            status: 200,
            ..Response::default()
        }),
        payload: b"prp".to_vec(),
        endorsement: Some(Default::default()),
        ..ProposalResponse::default()
    };
    let payload = build_transaction(&decoded, &[response]).unwrap();
    assert_eq!(
        payload.header.unwrap(),
        Header::decode(decoded.header.as_slice()).unwrap()
    );
    let tx = Transaction::decode(payload.data.as_slice()).unwrap();
    let action = ChaincodeActionPayload::decode(tx.actions[0].payload.as_slice()).unwrap();
    assert_eq!(action.action.unwrap().proposal_response_payload, b"prp");
}

/// fabric-common 2.2 (e2e/clients/proposals.js `roundtrip`) sends its proposals to a stub peer
/// that answers with our endorsements, then builds and signs the transaction envelope itself.
/// Our `build_transaction` must produce the same transaction, and the committer must commit the
/// SDK's envelope.
#[tokio::test]
async fn fabric_common_builds_the_same_transaction_and_its_envelope_commits() {
    let peer = Peer::start();
    let dir = support::e2e_dir("clients");
    support::npm_ci(&dir);
    let mut child = Command::new("node")
        .arg(dir.join("proposals.js"))
        .current_dir(&dir)
        .arg("roundtrip")
        .arg(MSPID)
        .arg(&peer.org.crypto.paths.user.cert)
        .arg(&peer.org.crypto.paths.user.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut put = None;
    // The script's four cases (put, get, failing, status0); only `put` matters here.
    for _ in 0..4 {
        let request: serde_json::Value =
            serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let bytes = b64
            .decode(request["signedProposal"].as_str().unwrap())
            .unwrap();
        let signed = SignedProposal::decode(bytes.as_slice()).unwrap();
        let response = process_proposal(&peer.endorser, signed.clone(), SystemTime::now()).await;
        let answer =
            serde_json::json!({ "proposalResponse": b64.encode(response.encode_to_vec()) });
        writeln!(stdin, "{answer}").unwrap();
        let report: serde_json::Value =
            serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if request["case"] == "put" {
            put = Some((signed, response, report));
        }
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());

    let (signed, response, report) = put.expect("the put case");
    assert_eq!(response.response.as_ref().unwrap().status, 200);
    let sdk_envelope = Envelope::decode(
        b64.decode(
            report["envelope"]
                .as_str()
                .expect("fabric-common built an envelope"),
        )
        .unwrap()
        .as_slice(),
    )
    .unwrap();
    let sdk_payload = Payload::decode(sdk_envelope.payload.as_slice()).unwrap();
    let proposal = Proposal::decode(signed.proposal_bytes.as_slice()).unwrap();
    let ours = build_transaction(&proposal, std::slice::from_ref(&response)).unwrap();
    assert_eq!(ours, sdk_payload);
    assert_eq!(ours.encode_to_vec(), sdk_envelope.payload);

    let tx_id = ChannelHeader::decode(ours.header.as_ref().unwrap().channel_header.as_slice())
        .unwrap()
        .tx_id;
    assert_eq!(peer.committer.submit(sdk_envelope).await.unwrap(), valid(1));
    assert_eq!(peer.committer.status(CHANNEL, &tx_id), Some(valid(1)));
    assert_eq!(peer.value("asset1").unwrap().0, b"blue");
}

/// Our logged blocks as fabric-common 2.2's `BlockDecoder` reads them
/// (e2e/clients/blocks.js): numbers, the hash chain (data hash and ASN.1 header hash computed
/// independently in Node with jsrsasign), the transactions filter, tx ids, writes and events,
/// and block 0 as the channel's CONFIG block with the organisation's MSP.
#[tokio::test]
async fn fabric_common_decodes_the_logged_blocks() {
    let peer = Peer::start();
    let (put_id, put) = peer.transaction(&[b"put", b"k", b"v0"]).await;
    peer.committer.submit(put).await.unwrap();
    let (emit_id, emit) = peer
        .transaction(&[b"emit", b"Stored", b"hello", b"k2", b"v2"])
        .await;
    let (a_id, a) = peer.transaction(&[b"update", b"k", b"from-a"]).await;
    let (b_id, b) = peer.transaction(&[b"update", b"k", b"from-b"]).await;
    peer.committer.submit(emit).await.unwrap();
    peer.committer.submit(a).await.unwrap();
    peer.committer.submit(b).await.unwrap();
    let blocks = peer.committer.raw_blocks_from(CHANNEL, 0).unwrap();
    assert_eq!(blocks.len(), 5);

    let dir = support::e2e_dir("clients");
    support::npm_ci(&dir);
    let mut child = Command::new("node")
        .arg(dir.join("blocks.js"))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut stdin = child.stdin.take().unwrap();
    for block in &blocks {
        writeln!(stdin, "{}", b64.encode(block.encode_to_vec())).unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let decoded: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(decoded.len(), 5);

    let mut previous_hash = String::new();
    for (number, block) in decoded.iter().enumerate() {
        assert_eq!(block["number"], number.to_string());
        assert_eq!(block["dataHash"], block["computedDataHash"], "{block}");
        assert_eq!(block["previousHash"], previous_hash, "block {number}");
        previous_hash = block["computedHeaderHash"].as_str().unwrap().to_string();
        let tx = &block["txs"][0];
        assert_eq!(tx["channel"], CHANNEL);
        let expected_type = if number == 0 {
            "CONFIG"
        } else {
            "ENDORSER_TRANSACTION"
        };
        assert_eq!(tx["type"], expected_type, "block {number}");
    }
    // Our own header hash is the one Node computed.
    let last = blocks[4].header.as_ref().unwrap();
    assert_eq!(hex::encode(block_header_hash(last)), previous_hash);

    // Block 0: the channel's config, with this node's organisation and Fabric's policy names.
    let config = &decoded[0]["txs"][0]["config"];
    assert_eq!(config["sequence"], "0");
    assert_eq!(config["hashingAlgorithm"], "SHA256");
    assert_eq!(
        config["policies"],
        serde_json::json!(["Admins", "Readers", "Writers"])
    );
    assert_eq!(
        config["applicationPolicies"],
        serde_json::json!([
            "Admins",
            "Endorsement",
            "LifecycleEndorsement",
            "Readers",
            "Writers"
        ])
    );
    assert_eq!(
        config["orgs"][MSPID],
        serde_json::json!({"mspName": MSPID, "rootCerts": 1, "policies": ["Admins", "Endorsement", "Readers", "Writers"]})
    );

    let tx = |n: usize| &decoded[n + 1]["txs"][0];
    assert_eq!(tx(0)["txId"], put_id);
    assert_eq!(
        tx(0)["writes"],
        serde_json::json!([{"namespace": "basic", "key": "k", "value": "v0"}])
    );
    assert_eq!(tx(1)["txId"], emit_id);
    assert_eq!(
        tx(1)["events"],
        serde_json::json!([{"chaincodeId": "basic", "txId": emit_id, "name": "Stored", "payload": "hello"}])
    );
    assert_eq!(tx(2)["txId"], a_id);
    assert_eq!(tx(3)["txId"], b_id);
    let filters: Vec<&serde_json::Value> = decoded.iter().map(|b| &b["filter"]).collect();
    let valid = TxValidationCode::Valid as i32;
    let conflict = TxValidationCode::MvccReadConflict as i32;
    assert_eq!(
        filters,
        [
            &serde_json::json!([valid]),
            &serde_json::json!([valid]),
            &serde_json::json!([valid]),
            &serde_json::json!([valid]),
            &serde_json::json!([conflict]),
        ]
    );
}

/// A block log from before channels had a config block (block 0 a transaction block) is refused
/// with what to do, rather than served with block numbers that do not match Fabric's.
#[tokio::test]
async fn a_block_log_without_a_config_block_is_refused_on_open() {
    let peer = Peer::start();
    let (_, a) = peer.transaction(&[b"put", b"a", b"1"]).await;
    let (org, dir) = peer.close();
    std::fs::remove_file(log_file(dir.path())).unwrap();
    std::fs::remove_file(world_path(dir.path())).unwrap();
    let (mut log, _) =
        chaincode_operator::endorser::commit::ChannelLog::open(&log_file(dir.path())).unwrap();
    log.append(&chaincode_operator::endorser::commit::blocklog::new_block(
        0,
        Vec::new(),
        vec![a.encode_to_vec()],
        &[TxValidationCode::Valid],
    ))
    .unwrap();
    drop(log);
    let world = WorldState::open(&world_path(dir.path())).unwrap();
    let error = Committer::open(&blocks_dir(dir.path()), world, org.trust.clone()).unwrap_err();
    assert!(
        matches!(error, CommitError::NoConfigBlock { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(CHANNEL) && message.contains("Move the data directory away"),
        "{message}"
    );
}

/// The Deliver service over this committer: a follower that starts on the log, keeps up with
/// concurrent commits and one that reads only after they all happened both see every block
/// exactly once and in order (the log is the one source; the broadcast only wakes them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_followers_see_every_block_once_in_order_across_log_and_live_commits() {
    use chaincode_operator::endorser::services::deliver::{
        DeliverService, seek_envelope, seek_info,
    };
    use chaincode_operator::proto::orderer::seek_info::SeekBehavior;
    use chaincode_operator::proto::orderer::{SeekOldest, seek_position};
    use chaincode_operator::proto::protos::deliver_client::DeliverClient;
    use chaincode_operator::proto::protos::deliver_response;
    use tokio_stream::StreamExt;

    let peer = Peer::start();
    let (_, first) = peer.transaction(&[b"put", b"k0", b"v"]).await;
    peer.committer.submit(first).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let service = DeliverService::new(peer.committer.clone(), peer.org.trust.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let follow = || {
        let request = seek_envelope(
            &peer.org.user,
            CHANNEL,
            seek_info(
                seek_position::Type::Oldest(SeekOldest {}),
                u64::MAX,
                SeekBehavior::BlockUntilReady,
            ),
            SystemTime::now(),
        );
        async move {
            DeliverClient::connect(format!("http://{address}"))
                .await
                .unwrap()
                .deliver(tokio_stream::iter([request]))
                .await
                .unwrap()
                .into_inner()
        }
    };
    // Reads blocks until it has seen `txs` transactions; returns block numbers and tx ids.
    async fn read(
        stream: &mut tonic::Streaming<chaincode_operator::proto::protos::DeliverResponse>,
        txs: usize,
    ) -> (Vec<u64>, Vec<String>) {
        let (mut numbers, mut tx_ids) = (Vec::new(), Vec::new());
        while tx_ids.len() < txs {
            let response = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
                .await
                .expect("a block in time")
                .expect("stream open")
                .expect("no error");
            let Some(deliver_response::Type::Block(block)) = response.r#type else {
                panic!("expected a block, got {response:?}");
            };
            numbers.push(block.header.as_ref().unwrap().number);
            if numbers.len() == 1 {
                continue; // block 0: the config block
            }
            for envelope in &block.data.as_ref().unwrap().data {
                let envelope = Envelope::decode(envelope.as_slice()).unwrap();
                let payload = Payload::decode(envelope.payload.as_slice()).unwrap();
                let header = ChannelHeader::decode(
                    payload.header.as_ref().unwrap().channel_header.as_slice(),
                )
                .unwrap();
                tx_ids.push(header.tx_id);
            }
        }
        (numbers, tx_ids)
    }

    // The live follower reads while 40 transactions commit concurrently (in several blocks).
    let mut live = follow().await;
    let live_reader = tokio::spawn(async move {
        let seen = read(&mut live, 41).await;
        (seen, live)
    });
    let mut envelopes = Vec::new();
    for i in 0..40 {
        let key = format!("key{i}");
        envelopes.push(peer.transaction(&[b"put", key.as_bytes(), b"v"]).await);
    }
    let statuses = futures::future::join_all(envelopes.iter().map(|(_, envelope)| {
        let committer = peer.committer.clone();
        let envelope = envelope.clone();
        async move { committer.submit(envelope).await.unwrap() }
    }))
    .await;
    let height = peer.committer.height(CHANNEL);
    assert_eq!(
        statuses.iter().map(|s| s.block_number).max(),
        Some(height - 1)
    );
    // The late follower starts when everything is in the log.
    let mut late = follow().await;
    let late_seen = read(&mut late, 41).await;
    let (live_seen, mut live) = live_reader.await.unwrap();

    for (name, (numbers, tx_ids), stream) in [
        ("live", live_seen, &mut live),
        ("late", late_seen, &mut late),
    ] {
        assert_eq!(numbers, (0..height).collect::<Vec<_>>(), "{name}");
        for (tx_id, _) in &envelopes {
            assert_eq!(
                tx_ids.iter().filter(|id| *id == tx_id).count(),
                1,
                "{name}: {tx_id} exactly once"
            );
        }
        // Nothing more until the next commit.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), stream.next())
                .await
                .is_err(),
            "{name}: no block twice"
        );
    }
}

/// The tx ids and codes of block `number` of a copy of the block log.
fn logged_block(copy: &Path, number: u64) -> Option<Vec<(String, TxValidationCode)>> {
    let (log, _) = ChannelLog::open(copy).unwrap();
    let block = log.read_range(number, 1).unwrap().pop()?;
    let codes = transactions_filter(&block);
    let data = block.data.unwrap().data;
    let ids = data.iter().map(|bytes| {
        let payload = Payload::decode(
            Envelope::decode(bytes.as_slice())
                .unwrap()
                .payload
                .as_slice(),
        )
        .unwrap();
        ChannelHeader::decode(payload.header.unwrap().channel_header.as_slice())
            .unwrap()
            .tx_id
    });
    Some(ids.zip(codes).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_share_blocks_and_each_is_answered_only_once_its_block_is_logged() {
    const N: usize = 64;
    let peer = Peer::start();
    let mut envelopes = Vec::new();
    for i in 0..N {
        let key = format!("key{i}");
        envelopes.push(peer.transaction(&[b"put", key.as_bytes(), b"v"]).await);
    }
    let snapshots = tempfile::tempdir().unwrap();
    let log = log_file(peer.dir.path());
    let results =
        futures::future::join_all(envelopes.iter().enumerate().map(|(i, (_, envelope))| {
            let committer = peer.committer.clone();
            let envelope = envelope.clone();
            let (log, copy) = (log.clone(), snapshots.path().join(format!("{i}.blocks")));
            async move {
                let status = committer.submit(envelope).await.unwrap();
                // The log as it is the moment the answer arrives.
                std::fs::copy(&log, &copy).unwrap();
                (status, copy)
            }
        }))
        .await;
    for ((tx_id, _), (status, copy)) in envelopes.iter().zip(&results) {
        assert_eq!(status.code, TxValidationCode::Valid);
        let block = logged_block(copy, status.block_number).unwrap_or_else(|| {
            panic!(
                "{tx_id} answered before block {} was logged",
                status.block_number
            )
        });
        assert!(
            block.contains(&(tx_id.clone(), TxValidationCode::Valid)),
            "{tx_id} {status:?}"
        );
    }
    // One fsync per block, and concurrent submits share them.
    let stats = peer.committer.stats();
    assert_eq!(stats.transactions, N as u64);
    assert_eq!(stats.blocks, peer.committer.height(CHANNEL) - 1);
    assert!(stats.blocks < N as u64, "{stats:?}");

    // A crash that loses the whole world state: every answered transaction is found again from
    // the log at the block and with the code it was answered with.
    let (org, dir) = peer.close();
    std::fs::remove_file(world_path(dir.path())).unwrap();
    let peer = Peer::reopen(org, dir);
    for (i, ((tx_id, _), (status, _))) in envelopes.iter().zip(&results).enumerate() {
        assert_eq!(peer.committer.status(CHANNEL, tx_id), Some(*status));
        let (value, version) = peer.value(&format!("key{i}")).unwrap();
        assert_eq!(
            (value.as_slice(), version.block_num),
            (b"v".as_slice(), status.block_number)
        );
    }
}

#[tokio::test]
async fn a_submit_on_an_idle_channel_is_cut_at_once_in_a_block_of_its_own() {
    let peer = Peer::start();
    for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
        let (tx_id, envelope) = peer.transaction(&[b"put", key.as_bytes(), b"1"]).await;
        let status = peer.committer.submit(envelope).await.unwrap();
        let block = i as u64 + 1;
        assert_eq!(status, valid(block));
        let logged = &peer.committer.blocks_from(CHANNEL, block).unwrap()[0];
        assert_eq!(logged.txs.len(), 1);
        assert_eq!(logged.txs[0].tx_id, tx_id);
    }
    // No block waited for company: the group-commit window only opens on a busy channel.
    assert_eq!(
        peer.committer.stats(),
        CommitStats {
            blocks: 3,
            transactions: 3,
            windows: 0
        }
    );
}

#[tokio::test]
async fn a_conflict_within_one_block_invalidates_the_later_transaction() {
    let peer = Peer::start();
    let (_, first) = peer.transaction(&[b"put", b"k", b"v0"]).await;
    peer.committer.submit(first).await.unwrap();
    // All three read k at version (1, 0); the second and third also write k.
    let (_, a) = peer.transaction(&[b"update", b"k", b"from-a"]).await;
    let (_, b) = peer.transaction(&[b"update", b"k", b"from-b"]).await;
    let (_, c) = peer.transaction(&[b"put", b"other", b"x"]).await;
    let results = peer.committer.submit_all(vec![a, b, c]).await;
    let codes: Vec<TxStatus> = results.into_iter().map(Result::unwrap).collect();
    let conflict = TxStatus {
        block_number: 2,
        code: TxValidationCode::MvccReadConflict,
    };
    assert_eq!(codes, vec![valid(2), conflict, valid(2)]);
    assert_eq!(peer.value("k").unwrap().0, b"from-a");
    let version = peer.value("other").unwrap().1;
    assert_eq!((version.block_num, version.tx_num), (2, 2));
}

#[tokio::test]
async fn submits_beyond_the_queue_bound_are_refused_and_nothing_is_logged() {
    let peer = Peer::start();
    let (tx_id, envelope) = peer.transaction(&[b"put", b"k", b"v"]).await;
    let log_len = peer.log_len();
    let results = peer
        .committer
        .submit_all(vec![envelope.clone(); MAX_PENDING + 1])
        .await;
    for result in results {
        assert!(
            matches!(&result, Err(SubmitError::Busy { limit, .. }) if *limit == MAX_PENDING),
            "{result:?}"
        );
    }
    assert_eq!(peer.log_len(), log_len);
    assert_eq!(peer.committer.status(CHANNEL, &tx_id), None);
    // The channel is not stuck: the same transaction commits afterwards.
    assert_eq!(peer.committer.submit(envelope).await.unwrap(), valid(1));
}
