//! Turning a chaincode's outcome into the `ProposalResponse` Fabric clients expect.
//!
//! Fabric's rules (core/endorser, `shim.ERRORTHRESHOLD` = 400, `shim.ERROR` = 500):
//! - status >= 500: not endorsed; the response plus the unsigned payload.
//! - status >= 400, or a proposal without a channel: not endorsed; the response only.
//! - otherwise: version 1, payload = ProposalResponsePayload{proposal_hash, ChaincodeAction},
//!   endorsement = {endorser, signature over payload || endorser}.
//! - a proposal refused before simulation, or a system failure: status 500 and a message.
use prost::Message;

use super::validate::{ProposalError, ValidatedProposal};
use crate::endorser::identity::SigningIdentity;
use crate::proto::protos::{
    ChaincodeAction, ChaincodeEvent, ChaincodeId, Endorsement, ProposalResponse,
    ProposalResponsePayload, Response,
};

/// Chaincode status at or above which the transaction failed (`shim.ERRORTHRESHOLD`).
pub const ERROR_THRESHOLD: i32 = 400;
/// Chaincode status at or above which the payload is still returned (`shim.ERROR`).
pub const ERROR: i32 = 500;

/// What simulating a proposal produced.
#[derive(Debug, Clone, Default)]
pub struct SimulationOutcome {
    /// The chaincode as defined on the channel: name and version.
    pub chaincode_id: ChaincodeId,
    /// The chaincode's COMPLETED response (status, message, payload).
    pub response: Response,
    /// Encoded `TxReadWriteSet`.
    pub results: Vec<u8>,
    /// The event the chaincode set, if any.
    pub event: Option<ChaincodeEvent>,
}

/// The encoded `ProposalResponsePayload` for `proposal` and `outcome`. The event is stamped with
/// the chaincode name and tx id, which the shim leaves empty and Fabric's peer fills in.
pub fn response_payload(proposal: &ValidatedProposal, outcome: &SimulationOutcome) -> Vec<u8> {
    let events = outcome
        .event
        .as_ref()
        .map(|event| {
            ChaincodeEvent {
                chaincode_id: outcome.chaincode_id.name.clone(),
                tx_id: proposal.tx_id().to_string(),
                ..event.clone()
            }
            .encode_to_vec()
        })
        .unwrap_or_default();
    let action = ChaincodeAction {
        results: outcome.results.clone(),
        events,
        response: Some(outcome.response.clone()),
        chaincode_id: Some(outcome.chaincode_id.clone()),
    };
    ProposalResponsePayload {
        proposal_hash: proposal.proposal_hash.to_vec(),
        extension: action.encode_to_vec(),
    }
    .encode_to_vec()
}

/// The response to a validated, simulated proposal; endorsed (signed by `endorser`) only when
/// the chaincode succeeded on a channel.
pub fn proposal_response(
    proposal: &ValidatedProposal,
    outcome: &SimulationOutcome,
    endorser: &SigningIdentity,
    timestamp: prost_types::Timestamp,
) -> ProposalResponse {
    let status = outcome.response.status;
    if status >= ERROR {
        return ProposalResponse {
            timestamp: Some(timestamp),
            response: Some(outcome.response.clone()),
            payload: response_payload(proposal, outcome),
            ..ProposalResponse::default()
        };
    }
    if status >= ERROR_THRESHOLD || proposal.channel_id().is_empty() {
        return ProposalResponse {
            timestamp: Some(timestamp),
            response: Some(outcome.response.clone()),
            ..ProposalResponse::default()
        };
    }
    let payload = response_payload(proposal, outcome);
    let signature = endorser.sign_parts(&[&payload, endorser.serialized()]);
    ProposalResponse {
        version: 1,
        timestamp: Some(timestamp),
        response: Some(outcome.response.clone()),
        payload,
        endorsement: Some(Endorsement {
            endorser: endorser.serialized().to_vec(),
            signature,
        }),
        interest: None,
    }
}

/// A status 500 response carrying `message`: a system failure (launch, simulation, timeout).
pub fn system_error_response(message: impl std::fmt::Display) -> ProposalResponse {
    ProposalResponse {
        response: Some(Response {
            status: ERROR,
            message: message.to_string(),
            payload: Vec::new(),
        }),
        ..ProposalResponse::default()
    }
}

/// The response to a proposal refused by validation: status 500 and the reason, like Fabric.
pub fn rejection_response(error: &ProposalError) -> ProposalResponse {
    system_error_response(error)
}
