//! Signed proposals built the way Fabric's SDKs build them
//! (protoutil.CreateChaincodeProposalWithTxIDNonceAndTransient), for the endorser's own callers:
//! `dev` installs and defines chaincode through admin-signed `_lifecycle` proposals, and the
//! benchmarks prebuild their load.
use std::collections::HashMap;
use std::time::SystemTime;

use prost::Message;
use ring::rand::{SecureRandom, SystemRandom};

use super::validate::compute_tx_id;
use crate::endorser::identity::SigningIdentity;
use crate::proto::common::{ChannelHeader, Header, HeaderType, SignatureHeader};
use crate::proto::protos::{
    ChaincodeHeaderExtension, ChaincodeId, ChaincodeInput, ChaincodeInvocationSpec,
    ChaincodeProposalPayload, ChaincodeSpec, Proposal, SignedProposal, chaincode_spec,
};

/// What to propose.
#[derive(Debug, Clone, Default)]
pub struct ProposalSpec {
    /// Empty for channel-less system chaincode calls (e.g. `_lifecycle` InstallChaincode).
    pub channel: String,
    pub chaincode: String,
    pub args: Vec<Vec<u8>>,
    pub transient: HashMap<String, Vec<u8>>,
    pub is_init: bool,
}

impl ProposalSpec {
    pub fn new(channel: &str, chaincode: &str, args: impl IntoIterator<Item = Vec<u8>>) -> Self {
        Self {
            channel: channel.to_string(),
            chaincode: chaincode.to_string(),
            args: args.into_iter().collect(),
            ..Self::default()
        }
    }
}

/// `at` as a protobuf timestamp (times before 1970 become the epoch).
pub fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

/// A fresh 24-byte nonce, as the SDKs use.
pub fn nonce() -> Result<[u8; 24], ring::error::Unspecified> {
    let mut nonce = [0u8; 24];
    SystemRandom::new().fill(&mut nonce)?;
    Ok(nonce)
}

/// The SignedProposal for `spec` by `signer` with `nonce`, and its transaction id.
pub fn signed_proposal_with_nonce(
    signer: &SigningIdentity,
    spec: &ProposalSpec,
    nonce: &[u8],
    now: SystemTime,
) -> (SignedProposal, String) {
    let tx_id = compute_tx_id(nonce, signer.serialized());
    let chaincode_id = ChaincodeId {
        name: spec.chaincode.clone(),
        ..ChaincodeId::default()
    };
    let channel_header = ChannelHeader {
        r#type: HeaderType::EndorserTransaction as i32,
        channel_id: spec.channel.clone(),
        tx_id: tx_id.clone(),
        timestamp: Some(timestamp(now)),
        extension: ChaincodeHeaderExtension {
            chaincode_id: Some(chaincode_id.clone()),
        }
        .encode_to_vec(),
        ..ChannelHeader::default()
    };
    let header = Header {
        channel_header: channel_header.encode_to_vec(),
        signature_header: SignatureHeader {
            creator: signer.serialized().to_vec(),
            nonce: nonce.to_vec(),
        }
        .encode_to_vec(),
    };
    let input = ChaincodeInvocationSpec {
        chaincode_spec: Some(ChaincodeSpec {
            r#type: chaincode_spec::Type::Node as i32,
            chaincode_id: Some(chaincode_id),
            input: Some(ChaincodeInput {
                args: spec.args.clone(),
                is_init: spec.is_init,
                ..ChaincodeInput::default()
            }),
            timeout: 0,
        }),
    };
    let proposal_bytes = Proposal {
        header: header.encode_to_vec(),
        payload: ChaincodeProposalPayload {
            input: input.encode_to_vec(),
            transient_map: spec.transient.clone(),
        }
        .encode_to_vec(),
        extension: Vec::new(),
    }
    .encode_to_vec();
    let signed = SignedProposal {
        signature: signer.sign(&proposal_bytes),
        proposal_bytes,
    };
    (signed, tx_id)
}

/// The SignedProposal for `spec` by `signer` with a fresh nonce, and its transaction id.
pub fn signed_proposal(
    signer: &SigningIdentity,
    spec: &ProposalSpec,
) -> Result<(SignedProposal, String), ring::error::Unspecified> {
    Ok(signed_proposal_with_nonce(
        signer,
        spec,
        &nonce()?,
        SystemTime::now(),
    ))
}
