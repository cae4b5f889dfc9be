//! Endorsed transactions as Fabric assembles and checks them.
//!
//! - [`build_transaction`]: a proposal plus its endorsed responses → the unsigned transaction
//!   `Payload` (Fabric's `protoutil.CreateSignedTx` without the signing step).
//! - [`accept_envelope`]: what an orderer's Broadcast checks before taking a transaction in
//!   (it decodes, it is an endorser transaction with a correct tx id, its creator is trusted and
//!   signed it). A refused envelope is never logged.
//! - [`validate_transaction`]: what a committing peer checks of an accepted transaction, giving a
//!   validation code that is recorded in the block (structure, proposal hash, endorsements
//!   against the [`EndorsementPolicy`], read/write set). MVCC is the store's part.
use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use prost::Message;
use sha2::{Digest, Sha256};

use super::signature_policy::{self, Signer};
use crate::endorser::identity::{CreatorError, SignatureError, TrustStore};
use crate::endorser::ledger::CollectionLookup;
use crate::endorser::proposal::endorse::ERROR_THRESHOLD;
use crate::endorser::proposal::validate::{TxIdError, check_tx_id};
use crate::proto::common::{
    ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader, SignaturePolicyEnvelope,
};
use crate::proto::kvrwset::{HashedRwSet, KvrwSet};
use crate::proto::protos::{
    ChaincodeAction, ChaincodeActionPayload, ChaincodeEndorsedAction, ChaincodeEvent,
    ChaincodeProposalPayload, Endorsement, Proposal, ProposalResponse, ProposalResponsePayload,
    Transaction, TransactionAction, TxValidationCode,
};
use crate::proto::rwset::TxReadWriteSet;

/// Fabric's lowest successful chaincode status (`shim.OK`).
const STATUS_OK: i32 = 200;
/// The NodeOU of endorsing peers' certificates.
const PEER_ROLE: &str = "peer";

/// Why a transaction could not be assembled from a proposal and its responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("at least one proposal response is required to build a transaction")]
    NoResponses,
    #[error("cannot decode the proposal's {message}: {reason}")]
    Malformed {
        message: &'static str,
        reason: String,
    },
    #[error("proposal response {index} was not successful: status {status}, message {message:?}")]
    NotSuccessful {
        index: usize,
        status: i32,
        message: String,
    },
    #[error("proposal response {index} is not endorsed")]
    NotEndorsed { index: usize },
    #[error(
        "proposal response {index} endorses a different result than response 0 (ProposalResponsePayloads differ)"
    )]
    PayloadMismatch { index: usize },
}

fn decode<M: Message + Default>(message: &'static str, bytes: &[u8]) -> Result<M, BuildError> {
    M::decode(bytes).map_err(|e| BuildError::Malformed {
        message,
        reason: e.to_string(),
    })
}

/// The chaincode proposal payload as it goes into a transaction: the same input, no transient map
/// (private inputs never reach the ledger).
fn proposal_payload_for_tx(payload: &[u8]) -> Result<Vec<u8>, BuildError> {
    let payload: ChaincodeProposalPayload = decode("ChaincodeProposalPayload", payload)?;
    Ok(ChaincodeProposalPayload {
        input: payload.input,
        transient_map: HashMap::new(),
    }
    .encode_to_vec())
}

/// Assembles the transaction for `proposal` from its endorsed `responses`, as Fabric's
/// `CreateSignedTx` does: every response must be successful (status 200..400), endorsed, and
/// carry the same `ProposalResponsePayload`. The result is the `Payload` the client signs into an
/// `Envelope`.
pub fn build_transaction(
    proposal: &Proposal,
    responses: &[ProposalResponse],
) -> Result<Payload, BuildError> {
    let first = responses.first().ok_or(BuildError::NoResponses)?;
    let mut endorsements = Vec::with_capacity(responses.len());
    for (index, response) in responses.iter().enumerate() {
        let status = response.response.as_ref().map(|r| r.status).unwrap_or(0);
        if !(STATUS_OK..ERROR_THRESHOLD).contains(&status) {
            return Err(BuildError::NotSuccessful {
                index,
                status,
                message: response
                    .response
                    .as_ref()
                    .map(|r| r.message.clone())
                    .unwrap_or_default(),
            });
        }
        if response.payload != first.payload {
            return Err(BuildError::PayloadMismatch { index });
        }
        let endorsement = response
            .endorsement
            .clone()
            .ok_or(BuildError::NotEndorsed { index })?;
        endorsements.push(endorsement);
    }
    let header: Header = decode("Header", &proposal.header)?;
    let action_payload = ChaincodeActionPayload {
        chaincode_proposal_payload: proposal_payload_for_tx(&proposal.payload)?,
        action: Some(ChaincodeEndorsedAction {
            proposal_response_payload: first.payload.clone(),
            endorsements,
        }),
    };
    let transaction = Transaction {
        actions: vec![TransactionAction {
            header: header.signature_header.clone(),
            payload: action_payload.encode_to_vec(),
        }],
    };
    Ok(Payload {
        header: Some(header),
        data: transaction.encode_to_vec(),
    })
}

/// Why an envelope was refused before ordering. Nothing of it is recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("malformed envelope: {0} is missing or empty")]
    Missing(&'static str),
    #[error("malformed envelope: cannot decode the {message}: {reason}")]
    Malformed {
        message: &'static str,
        reason: String,
    },
    #[error(
        "unsupported header type {0}: only ENDORSER_TRANSACTION (3) envelopes are committed here"
    )]
    HeaderType(i32),
    #[error("channel {0:?} is not served by this committer")]
    UnknownChannel(String),
    #[error(
        "incorrectly computed tx id {got:?}, expected {expected:?} (hex(sha256(nonce || creator)))"
    )]
    TxId { got: String, expected: String },
    #[error("access denied: channel [{channel}]: {source}")]
    Creator {
        channel: String,
        source: CreatorError,
    },
    #[error(
        "access denied: channel [{channel}] creator org [{mspid}]: signature over the envelope is not valid: {source}"
    )]
    Signature {
        channel: String,
        mspid: String,
        source: SignatureError,
    },
}

impl From<TxIdError> for EnvelopeError {
    fn from(error: TxIdError) -> Self {
        match error {
            TxIdError::Missing(field) => EnvelopeError::Missing(field),
            TxIdError::Mismatch { got, expected } => EnvelopeError::TxId { got, expected },
        }
    }
}

fn decode_envelope_part<M: Message + Default>(
    message: &'static str,
    bytes: &[u8],
) -> Result<M, EnvelopeError> {
    M::decode(bytes).map_err(|e| EnvelopeError::Malformed {
        message,
        reason: e.to_string(),
    })
}

/// An envelope whose header decoded: what the log stores and the committer indexes.
#[derive(Debug, Clone)]
pub struct EnvelopeHeader {
    pub header: Header,
    pub channel_header: ChannelHeader,
    pub signature_header: SignatureHeader,
    /// `Payload.data`: the encoded `Transaction`.
    pub data: Vec<u8>,
}

impl EnvelopeHeader {
    pub fn channel_id(&self) -> &str {
        &self.channel_header.channel_id
    }

    pub fn tx_id(&self) -> &str {
        &self.channel_header.tx_id
    }

    /// The channel header's timestamp (the client's), recorded in key history.
    pub fn timestamp(&self) -> prost_types::Timestamp {
        self.channel_header.timestamp.unwrap_or_default()
    }
}

/// Decodes an envelope's payload and header without checking signatures (for logged blocks,
/// which were checked when accepted).
pub fn decode_envelope(envelope: &Envelope) -> Result<EnvelopeHeader, EnvelopeError> {
    if envelope.payload.is_empty() {
        return Err(EnvelopeError::Missing("Envelope.payload"));
    }
    let payload: Payload = decode_envelope_part("Payload", &envelope.payload)?;
    let header = payload
        .header
        .ok_or(EnvelopeError::Missing("Payload.header"))?;
    let channel_header: ChannelHeader =
        decode_envelope_part("ChannelHeader", &header.channel_header)?;
    let signature_header: SignatureHeader =
        decode_envelope_part("SignatureHeader", &header.signature_header)?;
    Ok(EnvelopeHeader {
        header,
        channel_header,
        signature_header,
        data: payload.data,
    })
}

/// An orderer's checks of a submitted envelope: it decodes, it is an ENDORSER_TRANSACTION for a
/// served channel (`served(channel)`), its tx id is `hex(sha256(nonce || creator))`, its creator
/// is trusted at `now` and signed `Envelope.payload`.
pub fn accept_envelope(
    envelope: &Envelope,
    trust: &TrustStore,
    served: impl Fn(&str) -> bool,
    now: SystemTime,
) -> Result<EnvelopeHeader, EnvelopeError> {
    let unpacked = decode_envelope(envelope)?;
    let channel_header = &unpacked.channel_header;
    let signature_header = &unpacked.signature_header;
    if channel_header.r#type != HeaderType::EndorserTransaction as i32 {
        return Err(EnvelopeError::HeaderType(channel_header.r#type));
    }
    let channel = channel_header.channel_id.clone();
    if channel.is_empty() {
        return Err(EnvelopeError::Missing("ChannelHeader.channel_id"));
    }
    if !served(&channel) {
        return Err(EnvelopeError::UnknownChannel(channel));
    }
    check_tx_id(signature_header, &channel_header.tx_id)?;
    if envelope.signature.is_empty() {
        return Err(EnvelopeError::Missing("Envelope.signature"));
    }
    let creator = trust
        .validate_creator(&signature_header.creator, now)
        .map_err(|source| EnvelopeError::Creator {
            channel: channel.clone(),
            source,
        })?;
    creator
        .verify(&envelope.payload, &envelope.signature)
        .map_err(|source| EnvelopeError::Signature {
            channel,
            mspid: creator.mspid().to_string(),
            source,
        })?;
    Ok(unpacked)
}

/// The endorsed chaincode action inside a transaction.
#[derive(Debug, Clone)]
pub struct EndorsedAction {
    /// `ChaincodeEndorsedAction.proposal_response_payload`: what every endorser signed.
    pub proposal_response_payload: Vec<u8>,
    pub endorsements: Vec<Endorsement>,
    pub action: ChaincodeAction,
    /// `ChaincodeAction.results`, decoded.
    pub rwset: TxReadWriteSet,
    /// `ChaincodeAction.events`, decoded; `None` when the chaincode set no event.
    pub event: Option<ChaincodeEvent>,
}

/// Unpacks the single chaincode action of an endorser transaction, checking its structure the
/// way Fabric's `validateEndorserTransaction` does (any failure there is
/// INVALID_ENDORSER_TRANSACTION), then the chaincode action and its read/write set as Fabric's
/// committer does (BAD_RESPONSE_PAYLOAD, BAD_RWSET). The error is the code to record.
pub fn unpack_action(tx: &EnvelopeHeader) -> Result<EndorsedAction, TxValidationCode> {
    use TxValidationCode::{BadResponsePayload, BadRwset, InvalidEndorserTransaction};
    let transaction =
        Transaction::decode(tx.data.as_slice()).map_err(|_| InvalidEndorserTransaction)?;
    // Fabric 2.x supports exactly one action per transaction.
    let [action] = transaction.actions.as_slice() else {
        return Err(InvalidEndorserTransaction);
    };
    // The action is the creator's: its signature header is the envelope's.
    if action.header != tx.header.signature_header {
        return Err(InvalidEndorserTransaction);
    }
    let payload = ChaincodeActionPayload::decode(action.payload.as_slice())
        .map_err(|_| InvalidEndorserTransaction)?;
    let endorsed = payload.action.ok_or(InvalidEndorserTransaction)?;
    let response_payload =
        ProposalResponsePayload::decode(endorsed.proposal_response_payload.as_slice())
            .map_err(|_| InvalidEndorserTransaction)?;
    // The endorsements must be for this very proposal: channel header, signature header and
    // chaincode proposal payload as they are in the transaction.
    let mut hasher = Sha256::new();
    hasher.update(&tx.header.channel_header);
    hasher.update(&action.header);
    hasher.update(&payload.chaincode_proposal_payload);
    if hasher.finalize().as_slice() != response_payload.proposal_hash.as_slice() {
        return Err(InvalidEndorserTransaction);
    }
    let chaincode_action = ChaincodeAction::decode(response_payload.extension.as_slice())
        .map_err(|_| BadResponsePayload)?;
    let rwset =
        TxReadWriteSet::decode(chaincode_action.results.as_slice()).map_err(|_| BadRwset)?;
    // Fabric does not decode the event when validating; an event that cannot be delivered makes
    // the action unusable here.
    let event = if chaincode_action.events.is_empty() {
        None
    } else {
        Some(
            ChaincodeEvent::decode(chaincode_action.events.as_slice())
                .map_err(|_| BadResponsePayload)?,
        )
    };
    Ok(EndorsedAction {
        proposal_response_payload: endorsed.proposal_response_payload,
        endorsements: endorsed.endorsements,
        action: chaincode_action,
        rwset,
        event,
    })
}

/// How many trusted organisations must endorse a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequiredOrgs {
    /// At least one (the embedded single-node default: one endorser, one org).
    #[default]
    Any,
    /// More than half of the trusted organisations (Fabric's default channel policy,
    /// `MAJORITY Endorsement`).
    Majority,
    /// Every trusted organisation.
    All,
}

/// The endorsement policy every transaction on the committer's channels must meet.
///
/// An endorsement counts when its endorser is a trusted identity at validation time (certificate
/// chains to a trusted org and is within its validity period), carries the `peer` NodeOU when
/// `peer_role_required` (so a client cannot endorse its own writes), and its signature over
/// `proposal_response_payload || endorser` verifies. Endorsements that do not count are ignored,
/// as Fabric's policy evaluation ignores them; the organisations of those that count must satisfy
/// `required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndorsementPolicy {
    pub required: RequiredOrgs,
    pub peer_role_required: bool,
}

impl Default for EndorsementPolicy {
    fn default() -> Self {
        Self {
            required: RequiredOrgs::Any,
            peer_role_required: true,
        }
    }
}

impl EndorsementPolicy {
    /// The organisations whose endorsements of `action` count.
    pub fn endorsing_orgs(
        &self,
        action: &EndorsedAction,
        trust: &TrustStore,
        now: SystemTime,
    ) -> HashSet<String> {
        self.endorsers(action, trust, now)
            .into_iter()
            .map(|s| s.mspid)
            .collect()
    }

    /// The endorsers of `action` that count, with their roles.
    pub fn endorsers(
        &self,
        action: &EndorsedAction,
        trust: &TrustStore,
        now: SystemTime,
    ) -> Vec<Signer> {
        let mut signers = Vec::new();
        for endorsement in &action.endorsements {
            let Ok(endorser) = trust.validate_creator(&endorsement.endorser, now) else {
                continue;
            };
            if self.peer_role_required
                && !endorser
                    .organizational_units()
                    .iter()
                    .any(|ou| ou == PEER_ROLE)
            {
                continue;
            }
            let signed = [
                action.proposal_response_payload.as_slice(),
                endorsement.endorser.as_slice(),
            ];
            if endorser
                .verify_parts(&signed, &endorsement.signature)
                .is_ok()
            {
                signers.push(Signer {
                    mspid: endorser.mspid().to_string(),
                    organizational_units: endorser.organizational_units().to_vec(),
                });
            }
        }
        signers
    }

    /// [`Self::is_satisfied`] with collection-level endorsement policies (Fabric's rule): writes
    /// to a collection that has its own policy must satisfy that policy; the node's policy
    /// applies when the transaction writes public state, writes a collection without its own
    /// policy, or writes nothing.
    pub fn is_satisfied_with_collections(
        &self,
        action: &EndorsedAction,
        trust: &TrustStore,
        now: SystemTime,
        channel: &str,
        collections: Option<&dyn CollectionLookup>,
    ) -> bool {
        let (needs_default, policies) =
            written_collection_policies(&action.rwset, channel, collections);
        if needs_default && !self.is_satisfied(action, trust, now) {
            return false;
        }
        if policies.is_empty() {
            return true;
        }
        let signers = self.endorsers(action, trust, now);
        policies
            .iter()
            .all(|policy| signature_policy::is_satisfied(policy, &signers))
    }
}

/// The collection endorsement policies `rwset`'s private writes must meet, and whether the
/// node's own policy applies too (see [`EndorsementPolicy::is_satisfied_with_collections`]).
fn written_collection_policies(
    rwset: &TxReadWriteSet,
    channel: &str,
    collections: Option<&dyn CollectionLookup>,
) -> (bool, Vec<SignaturePolicyEnvelope>) {
    let mut needs_default = false;
    let mut wrote = false;
    let mut policies = Vec::new();
    for ns in &rwset.ns_rwset {
        // Undecodable sets are BAD_RWSET later; the node's policy still applies to them.
        match KvrwSet::decode(ns.rwset.as_slice()) {
            Ok(kv) if kv.writes.is_empty() && kv.metadata_writes.is_empty() => {}
            _ => {
                needs_default = true;
                wrote = true;
            }
        }
        let defined = collections
            .and_then(|l| l.collections(channel, &ns.namespace).ok())
            .unwrap_or_default();
        for coll in &ns.collection_hashed_rwset {
            let writes = HashedRwSet::decode(coll.hashed_rwset.as_slice())
                .map(|h| !h.hashed_writes.is_empty() || !h.metadata_writes.is_empty())
                .unwrap_or(true);
            if !writes {
                continue;
            }
            wrote = true;
            match defined
                .iter()
                .find(|d| d.name == coll.collection_name)
                .and_then(|d| d.endorsement_policy.clone())
            {
                Some(policy) => policies.push(policy),
                None => needs_default = true,
            }
        }
    }
    (needs_default || !wrote, policies)
}

impl EndorsementPolicy {
    /// Whether the counted endorsements of `action` satisfy the policy.
    pub fn is_satisfied(
        &self,
        action: &EndorsedAction,
        trust: &TrustStore,
        now: SystemTime,
    ) -> bool {
        let endorsing = self.endorsing_orgs(action, trust, now).len();
        let trusted = trust.organization_count();
        endorsing > 0
            && match self.required {
                RequiredOrgs::Any => true,
                RequiredOrgs::Majority => endorsing * 2 > trusted,
                RequiredOrgs::All => endorsing >= trusted,
            }
    }
}

/// A committing peer's checks of an accepted transaction (everything but MVCC): the code to
/// record, and the action when the transaction is still a candidate for VALID.
pub fn validate_transaction(
    tx: &EnvelopeHeader,
    trust: &TrustStore,
    policy: &EndorsementPolicy,
    now: SystemTime,
) -> Result<EndorsedAction, TxValidationCode> {
    let action = unpack_action(tx)?;
    if !policy.is_satisfied(&action, trust, now) {
        return Err(TxValidationCode::EndorsementPolicyFailure);
    }
    Ok(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    mod collection_policies {
        use super::super::written_collection_policies;
        use crate::endorser::ledger::rwset::{PrivateWrite, RwSetBuilder};
        use crate::endorser::ledger::{CollectionDefinition, CollectionLookup};
        use crate::endorser::lifecycle::collections::signature_policy_from_str;

        struct Defined;

        impl CollectionLookup for Defined {
            fn collections(&self, _: &str, _: &str) -> Result<Vec<CollectionDefinition>, String> {
                let def = |name: &str, policy: Option<&str>| CollectionDefinition {
                    name: name.into(),
                    members: Default::default(),
                    member_only_read: false,
                    member_only_write: false,
                    block_to_live: 0,
                    endorsement_policy: policy.map(|p| signature_policy_from_str(p).unwrap()),
                };
                Ok(vec![
                    def("own", Some("OR('Org1MSP.peer')")),
                    def("plain", None),
                ])
            }
        }

        fn write(b: &mut RwSetBuilder, collection: &str) {
            b.collection("cc", collection).writes.insert(
                "k".into(),
                PrivateWrite {
                    value: Some(vec![1]),
                    purge: false,
                },
            );
        }

        #[test]
        fn only_writes_to_collections_with_their_own_policy_skip_the_nodes_policy() {
            let lookup = Some(&Defined as &dyn CollectionLookup);
            let mut own = RwSetBuilder::default();
            write(&mut own, "own");
            let (default, policies) = written_collection_policies(&own.build(), "ch", lookup);
            assert!(!default);
            assert_eq!(policies.len(), 1);

            let mut mixed = own.clone();
            write(&mut mixed, "plain");
            let (default, policies) = written_collection_policies(&mixed.build(), "ch", lookup);
            assert!(default);
            assert_eq!(policies.len(), 1);

            let mut public = own.clone();
            public.add_write("cc", "pub", Some(vec![1]));
            assert!(written_collection_policies(&public.build(), "ch", lookup).0);

            let mut reads = RwSetBuilder::default();
            reads.add_read("cc", "k", None);
            let (default, policies) = written_collection_policies(&reads.build(), "ch", lookup);
            assert!(
                default && policies.is_empty(),
                "read-only: the node's policy"
            );
            // Without definitions, every collection write falls back to the node's policy.
            assert!(written_collection_policies(&own.build(), "ch", None).0);
        }
    }
    use crate::proto::protos::Response;

    fn response(status: i32, payload: &[u8]) -> ProposalResponse {
        ProposalResponse {
            version: 1,
            response: Some(Response {
                status,
                message: format!("status {status}"),
                payload: Vec::new(),
            }),
            payload: payload.to_vec(),
            endorsement: Some(Endorsement {
                endorser: b"endorser".to_vec(),
                signature: b"signature".to_vec(),
            }),
            ..ProposalResponse::default()
        }
    }

    fn proposal() -> Proposal {
        Proposal {
            header: Header {
                channel_header: b"ch".to_vec(),
                signature_header: b"sh".to_vec(),
            }
            .encode_to_vec(),
            payload: ChaincodeProposalPayload {
                input: b"input".to_vec(),
                transient_map: HashMap::from([("secret".to_string(), b"value".to_vec())]),
            }
            .encode_to_vec(),
            extension: Vec::new(),
        }
    }

    #[test]
    fn the_transaction_carries_the_endorsements_and_no_transient_data() {
        let payload =
            build_transaction(&proposal(), &[response(200, b"prp"), response(200, b"prp")])
                .unwrap();
        assert_eq!(payload.header.unwrap().signature_header, b"sh");
        let tx = Transaction::decode(payload.data.as_slice()).unwrap();
        assert_eq!(tx.actions.len(), 1);
        assert_eq!(tx.actions[0].header, b"sh");
        let action = ChaincodeActionPayload::decode(tx.actions[0].payload.as_slice()).unwrap();
        let ccpp =
            ChaincodeProposalPayload::decode(action.chaincode_proposal_payload.as_slice()).unwrap();
        assert_eq!(ccpp.input, b"input");
        assert!(ccpp.transient_map.is_empty());
        let endorsed = action.action.unwrap();
        assert_eq!(endorsed.proposal_response_payload, b"prp");
        assert_eq!(endorsed.endorsements.len(), 2);
    }

    #[test]
    fn failed_differing_or_missing_responses_are_refused() {
        let p = proposal();
        assert_eq!(build_transaction(&p, &[]), Err(BuildError::NoResponses));
        assert!(matches!(
            build_transaction(&p, &[response(200, b"a"), response(500, b"a")]),
            Err(BuildError::NotSuccessful {
                index: 1,
                status: 500,
                ..
            })
        ));
        assert!(matches!(
            build_transaction(&p, &[response(0, b"a")]),
            Err(BuildError::NotSuccessful { status: 0, .. })
        ));
        assert_eq!(
            build_transaction(&p, &[response(200, b"a"), response(200, b"b")]),
            Err(BuildError::PayloadMismatch { index: 1 })
        );
        let mut unendorsed = response(200, b"a");
        unendorsed.endorsement = None;
        assert_eq!(
            build_transaction(&p, &[unendorsed]),
            Err(BuildError::NotEndorsed { index: 0 })
        );
    }

    #[test]
    fn a_garbage_envelope_is_refused_with_the_part_that_failed() {
        let trust = TrustStore::new([]);
        let now = SystemTime::now();
        let empty = Envelope::default();
        assert_eq!(
            accept_envelope(&empty, &trust, |_| true, now).unwrap_err(),
            EnvelopeError::Missing("Envelope.payload")
        );
        let garbage = Envelope {
            payload: vec![0xff, 0xff, 0xff],
            signature: Vec::new(),
        };
        assert!(matches!(
            accept_envelope(&garbage, &trust, |_| true, now),
            Err(EnvelopeError::Malformed {
                message: "Payload",
                ..
            })
        ));
        let config = Envelope {
            payload: Payload {
                header: Some(Header {
                    channel_header: ChannelHeader {
                        r#type: HeaderType::Config as i32,
                        ..ChannelHeader::default()
                    }
                    .encode_to_vec(),
                    signature_header: Vec::new(),
                }),
                data: Vec::new(),
            }
            .encode_to_vec(),
            signature: Vec::new(),
        };
        assert_eq!(
            accept_envelope(&config, &trust, |_| true, now).unwrap_err(),
            EnvelopeError::HeaderType(HeaderType::Config as i32)
        );
    }
}
