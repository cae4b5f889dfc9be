//! Pre-processing a SignedProposal the way Fabric's endorser does (`UnpackProposal` then
//! `Validate`), as one pure function over bytes, trusted organisations, the time and a replay
//! cache.
//!
//! Order: size, decoding (every nested message), header type, epoch, channel, nonce and creator
//! present, tx id, creator's certificate, signature, replay. Cheap structural checks come before
//! any cryptography, and the tx id is recorded as seen only when everything else passed.
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use prost::Message;
use sha2::{Digest, Sha256};

use super::replay::ReplayCache;
use crate::endorser::identity::{Creator, CreatorError, SignatureError, TrustStore};
use crate::proto::common::{ChannelHeader, Header, HeaderType, SignatureHeader};
use crate::proto::protos::{
    ChaincodeHeaderExtension, ChaincodeId, ChaincodeInput, ChaincodeInvocationSpec,
    ChaincodeProposalPayload, ChaincodeSpec, Proposal, SignedProposal,
};

/// The default limit on an encoded SignedProposal, the same as Fabric's peer
/// (`peer.maxRecvMsgSize`, 100 MiB). The gRPC service refuses larger messages before decoding
/// them (see [`crate::endorser::services::endorse::EndorserService::into_server`]).
pub const DEFAULT_MAX_PROPOSAL_BYTES: usize = 100 * 1024 * 1024;

/// Why a proposal was refused. The message is what the client sees (status 500, like Fabric).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    #[error("proposal of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed proposal: cannot decode the {message}: {reason}")]
    Malformed {
        message: &'static str,
        reason: String,
    },
    #[error("malformed proposal: {0} is missing or empty")]
    Missing(&'static str),
    #[error("invalid header type {0}: only ENDORSER_TRANSACTION (3) proposals are endorsed")]
    HeaderType(i32),
    #[error("invalid proposal: epoch is {0}, must be 0")]
    Epoch(u64),
    #[error("channel {0:?} is not served by this endorser")]
    UnknownChannel(String),
    #[error("proposal for chaincode {0} has no channel id")]
    NoChannel(String),
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
        "access denied: channel [{channel}] creator org [{mspid}]: signature over the proposal is not valid: {source}"
    )]
    Signature {
        channel: String,
        mspid: String,
        source: SignatureError,
    },
    #[error(
        "duplicate transaction {tx_id} on channel [{channel}]: this proposal was already received"
    )]
    Replayed { channel: String, tx_id: String },
}

/// A proposal that passed every check, unpacked for simulation and endorsement.
#[derive(Debug, Clone)]
pub struct ValidatedProposal {
    /// As received: the chaincode gets it in every INIT/TRANSACTION message.
    pub signed_proposal: SignedProposal,
    pub proposal: Proposal,
    pub header: Header,
    pub channel_header: ChannelHeader,
    pub signature_header: SignatureHeader,
    pub creator: Arc<Creator>,
    /// From the channel header extension: the chaincode the proposal is addressed to.
    pub chaincode_id: ChaincodeId,
    /// The invocation's chaincode spec (type, id, input).
    pub chaincode_spec: ChaincodeSpec,
    pub input: ChaincodeInput,
    /// Private inputs; passed to the chaincode, never part of the proposal hash.
    pub transient_map: HashMap<String, Vec<u8>>,
    /// sha256(channel header bytes || signature header bytes || payload without transient map).
    pub proposal_hash: [u8; 32],
}

impl ValidatedProposal {
    pub fn channel_id(&self) -> &str {
        &self.channel_header.channel_id
    }

    pub fn tx_id(&self) -> &str {
        &self.channel_header.tx_id
    }

    pub fn chaincode_name(&self) -> &str {
        &self.chaincode_id.name
    }

    /// The serialized creator (`SignatureHeader.creator`).
    pub fn creator_bytes(&self) -> &[u8] {
        &self.signature_header.creator
    }

    /// Whether this is a chaincode initialisation (`ChaincodeInput.is_init`): INIT, not TRANSACTION.
    pub fn is_init(&self) -> bool {
        self.input.is_init
    }

    /// The arguments; the first is conventionally the function name.
    pub fn args(&self) -> &[Vec<u8>] {
        &self.input.args
    }
}

fn decode<M: Message + Default>(message: &'static str, bytes: &[u8]) -> Result<M, ProposalError> {
    M::decode(bytes).map_err(|e| ProposalError::Malformed {
        message,
        reason: e.to_string(),
    })
}

/// Fabric's proposal hash: sha256(channel header bytes || signature header bytes ||
/// `ChaincodeProposalPayload{input}` re-encoded without the transient map).
pub fn proposal_hash(header: &Header, chaincode_proposal_payload_input: &[u8]) -> [u8; 32] {
    // That payload's encoding is field 1's key and length, then the input (nothing when the input
    // is empty): hashed as is rather than copying the input into a payload to encode.
    let mut key_and_length = Vec::with_capacity(11);
    if !chaincode_proposal_payload_input.is_empty() {
        prost::encoding::encode_key(
            1,
            prost::encoding::WireType::LengthDelimited,
            &mut key_and_length,
        );
        prost::encoding::encode_varint(
            chaincode_proposal_payload_input.len() as u64,
            &mut key_and_length,
        );
    }
    let mut hasher = Sha256::new();
    hasher.update(&header.channel_header);
    hasher.update(&header.signature_header);
    hasher.update(&key_and_length);
    hasher.update(chaincode_proposal_payload_input);
    hasher.finalize().into()
}

/// Fabric's tx id: hex(sha256(nonce || creator)).
pub fn compute_tx_id(nonce: &[u8], creator: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(nonce);
    hasher.update(creator);
    hex::encode(hasher.finalize())
}

/// Why a header's tx id does not stand: proposals and transactions are checked alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxIdError {
    /// The nonce or the creator is empty.
    Missing(&'static str),
    Mismatch {
        got: String,
        expected: String,
    },
}

/// Fabric's `CheckTxID` with its preconditions: nonce and creator present and
/// `tx_id == hex(sha256(nonce || creator))`.
pub fn check_tx_id(signature_header: &SignatureHeader, tx_id: &str) -> Result<(), TxIdError> {
    if signature_header.nonce.is_empty() {
        return Err(TxIdError::Missing("SignatureHeader.nonce"));
    }
    if signature_header.creator.is_empty() {
        return Err(TxIdError::Missing("SignatureHeader.creator"));
    }
    let expected = compute_tx_id(&signature_header.nonce, &signature_header.creator);
    if tx_id != expected {
        return Err(TxIdError::Mismatch {
            got: tx_id.to_string(),
            expected,
        });
    }
    Ok(())
}

impl From<TxIdError> for ProposalError {
    fn from(error: TxIdError) -> Self {
        match error {
            TxIdError::Missing(field) => ProposalError::Missing(field),
            TxIdError::Mismatch { got, expected } => ProposalError::TxId { got, expected },
        }
    }
}

/// What the endorser accepts: trusted organisations, served channels, size limit.
#[derive(Debug)]
pub struct ProposalValidator {
    trust: Arc<TrustStore>,
    /// The trusted organisations' MSP ids, which every simulation's private data access checks
    /// (built once: the trust store does not change).
    msp_ids: Arc<BTreeSet<String>>,
    channels: HashSet<String>,
    /// Chaincodes addressed without a channel (Fabric's `_lifecycle` install and queries).
    channelless_chaincodes: HashSet<String>,
    max_proposal_bytes: usize,
}

impl ProposalValidator {
    /// A validator for `channels`; `_lifecycle` may be addressed without a channel.
    pub fn new(trust: Arc<TrustStore>, channels: impl IntoIterator<Item = String>) -> Self {
        let msp_ids = Arc::new(
            trust
                .organizations()
                .iter()
                .map(|org| org.mspid().to_string())
                .collect(),
        );
        Self {
            trust,
            msp_ids,
            channels: channels.into_iter().collect(),
            channelless_chaincodes: HashSet::from(["_lifecycle".to_string()]),
            max_proposal_bytes: DEFAULT_MAX_PROPOSAL_BYTES,
        }
    }

    /// Refuses encoded SignedProposals over `limit` bytes.
    pub fn with_max_proposal_bytes(mut self, limit: usize) -> Self {
        self.max_proposal_bytes = limit;
        self
    }

    /// The largest encoded SignedProposal accepted, in bytes.
    pub fn max_proposal_bytes(&self) -> usize {
        self.max_proposal_bytes
    }

    pub fn with_channelless_chaincodes(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.channelless_chaincodes = names.into_iter().collect();
        self
    }

    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// The trusted organisations' MSP ids.
    pub fn msp_ids(&self) -> &Arc<BTreeSet<String>> {
        &self.msp_ids
    }

    /// Validates an encoded SignedProposal.
    pub fn validate_bytes(
        &self,
        signed_proposal: &[u8],
        now: SystemTime,
        replay: &dyn ReplayCache,
    ) -> Result<ValidatedProposal, ProposalError> {
        self.check_size(signed_proposal.len())?;
        let signed: SignedProposal = decode("SignedProposal", signed_proposal)?;
        self.validate(signed, now, replay)
    }

    fn check_size(&self, size: usize) -> Result<(), ProposalError> {
        if size > self.max_proposal_bytes {
            return Err(ProposalError::TooLarge {
                size,
                limit: self.max_proposal_bytes,
            });
        }
        Ok(())
    }

    /// Validates a decoded SignedProposal (as tonic hands it over).
    pub fn validate(
        &self,
        signed: SignedProposal,
        now: SystemTime,
        replay: &dyn ReplayCache,
    ) -> Result<ValidatedProposal, ProposalError> {
        self.check_size(signed.proposal_bytes.len() + signed.signature.len())?;
        if signed.proposal_bytes.is_empty() {
            return Err(ProposalError::Missing("SignedProposal.proposal_bytes"));
        }
        let proposal: Proposal = decode("Proposal", &signed.proposal_bytes)?;
        let header: Header = decode("Header", &proposal.header)?;
        let channel_header: ChannelHeader = decode("ChannelHeader", &header.channel_header)?;
        let signature_header: SignatureHeader =
            decode("SignatureHeader", &header.signature_header)?;
        let extension: ChaincodeHeaderExtension =
            decode("ChaincodeHeaderExtension", &channel_header.extension)?;
        let chaincode_id = extension
            .chaincode_id
            .filter(|id| !id.name.is_empty())
            .ok_or(ProposalError::Missing(
                "ChaincodeHeaderExtension.chaincode_id.name",
            ))?;
        let payload: ChaincodeProposalPayload =
            decode("ChaincodeProposalPayload", &proposal.payload)?;
        let invocation: ChaincodeInvocationSpec =
            decode("ChaincodeInvocationSpec", &payload.input)?;
        let mut chaincode_spec = invocation.chaincode_spec.ok_or(ProposalError::Missing(
            "ChaincodeInvocationSpec.chaincode_spec",
        ))?;
        let input = chaincode_spec
            .input
            .take()
            .ok_or(ProposalError::Missing("ChaincodeSpec.input"))?;

        if channel_header.r#type != HeaderType::EndorserTransaction as i32 {
            return Err(ProposalError::HeaderType(channel_header.r#type));
        }
        if channel_header.epoch != 0 {
            return Err(ProposalError::Epoch(channel_header.epoch));
        }
        let channel = channel_header.channel_id.clone();
        if channel.is_empty() {
            if !self.channelless_chaincodes.contains(&chaincode_id.name) {
                return Err(ProposalError::NoChannel(chaincode_id.name));
            }
        } else if !self.channels.contains(&channel) {
            return Err(ProposalError::UnknownChannel(channel));
        }
        check_tx_id(&signature_header, &channel_header.tx_id)?;
        if signed.signature.is_empty() {
            return Err(ProposalError::Missing("SignedProposal.signature"));
        }
        let creator = self
            .trust
            .validate_creator(&signature_header.creator, now)
            .map_err(|source| ProposalError::Creator {
                channel: channel.clone(),
                source,
            })?;
        creator
            .verify(&signed.proposal_bytes, &signed.signature)
            .map_err(|source| ProposalError::Signature {
                channel: channel.clone(),
                mspid: creator.mspid().to_string(),
                source,
            })?;
        if !replay.record(&channel, &channel_header.tx_id) {
            return Err(ProposalError::Replayed {
                channel,
                tx_id: channel_header.tx_id,
            });
        }
        let proposal_hash = proposal_hash(&header, &payload.input);
        Ok(ValidatedProposal {
            signed_proposal: signed,
            proposal,
            header,
            channel_header,
            signature_header,
            creator,
            chaincode_id,
            chaincode_spec,
            input,
            transient_map: payload.transient_map,
            proposal_hash,
        })
    }
}
