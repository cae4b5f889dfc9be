//! Endorsements: the ProposalResponse a Fabric client receives, checked independently of the
//! code that built it (signature with p256 against the certificate in `endorser`, proposal hash
//! recomputed from the proposal's raw bytes), plus the failure shapes Fabric uses.
mod proposal_support;

use std::time::SystemTime;

use chaincode_operator::endorser::proposal::{
    BoundedReplayCache, SimulationOutcome, ValidatedProposal, proposal_response,
    system_error_response,
};
use chaincode_operator::proto::common::Header;
use chaincode_operator::proto::msp::SerializedIdentity;
use chaincode_operator::proto::protos::{
    ChaincodeAction, ChaincodeEvent, ChaincodeId, ChaincodeProposalPayload, Proposal,
    ProposalResponse, ProposalResponsePayload, Response,
};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::scalar::IsHigh;
use proposal_support::*;
use prost::Message;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

fn validated(org: &Org) -> ValidatedProposal {
    let mut p = parts(org.user.serialized(), &[11; 24], &[b"put", b"k1", b"v1"]);
    p.transient_map.insert("t".into(), b"private".to_vec());
    validator(org)
        .validate(
            signed(&p, &org.user),
            SystemTime::now(),
            &BoundedReplayCache::new(4),
        )
        .unwrap()
}

fn outcome(status: i32, message: &str) -> SimulationOutcome {
    SimulationOutcome {
        chaincode_id: ChaincodeId {
            name: "basic".into(),
            version: "1.0".into(),
            ..ChaincodeId::default()
        },
        response: Response {
            status,
            message: message.into(),
            payload: b"result".to_vec(),
        },
        results: b"rwset bytes".to_vec(),
        event: Some(ChaincodeEvent {
            event_name: "Stored".into(),
            payload: b"k1".to_vec(),
            ..ChaincodeEvent::default()
        }),
    }
}

fn timestamp() -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: 1_800_000_000,
        nanos: 5,
    }
}

/// The endorser's public key, taken from the PEM inside `endorsement.endorser`.
fn key_of(serialized: &[u8]) -> VerifyingKey {
    let identity = SerializedIdentity::decode(serialized).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&identity.id_bytes).unwrap();
    let (_, cert) = X509Certificate::from_der(&pem.contents).unwrap();
    VerifyingKey::from_sec1_bytes(&cert.public_key().subject_public_key.data).unwrap()
}

/// Fabric's proposal hash, recomputed from the signed proposal alone.
fn recomputed_hash(proposal_bytes: &[u8]) -> Vec<u8> {
    let proposal = Proposal::decode(proposal_bytes).unwrap();
    let header = Header::decode(proposal.header.as_slice()).unwrap();
    let payload = ChaincodeProposalPayload::decode(proposal.payload.as_slice()).unwrap();
    let stripped = ChaincodeProposalPayload {
        input: payload.input,
        ..Default::default()
    };
    let mut hasher = Sha256::new();
    hasher.update(&header.channel_header);
    hasher.update(&header.signature_header);
    hasher.update(stripped.encode_to_vec());
    hasher.finalize().to_vec()
}

#[test]
fn a_successful_outcome_is_endorsed_and_the_signature_verifies_with_the_endorser_certificate() {
    let org = dev_org();
    let proposal = validated(&org);
    let response = proposal_response(&proposal, &outcome(200, "OK"), &org.endorser, timestamp());
    // Over the wire and back, as a client sees it.
    let response = ProposalResponse::decode(response.encode_to_vec().as_slice()).unwrap();
    assert_eq!(response.version, 1);
    assert_eq!(response.timestamp, Some(timestamp()));
    let top = response.response.clone().unwrap();
    assert_eq!((top.status, top.message.as_str()), (200, "OK"));
    assert_eq!(top.payload, b"result");

    let endorsement = response.endorsement.unwrap();
    assert_eq!(endorsement.endorser, org.endorser.serialized());
    let identity = SerializedIdentity::decode(endorsement.endorser.as_slice()).unwrap();
    assert_eq!(identity.mspid, MSPID);
    let key = key_of(&endorsement.endorser);
    let signature = Signature::from_der(&endorsement.signature).unwrap();
    assert!(!bool::from(signature.s().is_high()), "high-S endorsement");
    let mut signed_bytes = response.payload.clone();
    signed_bytes.extend_from_slice(&endorsement.endorser);
    key.verify(&signed_bytes, &signature).unwrap();
    assert!(key.verify(&response.payload, &signature).is_err());

    let payload = ProposalResponsePayload::decode(response.payload.as_slice()).unwrap();
    assert_eq!(
        payload.proposal_hash,
        recomputed_hash(&proposal.signed_proposal.proposal_bytes)
    );
    let action = ChaincodeAction::decode(payload.extension.as_slice()).unwrap();
    assert_eq!(action.results, b"rwset bytes");
    assert_eq!(action.response, Some(top));
    let id = action.chaincode_id.unwrap();
    assert_eq!((id.name.as_str(), id.version.as_str()), ("basic", "1.0"));
    let event = ChaincodeEvent::decode(action.events.as_slice()).unwrap();
    assert_eq!(event.event_name, "Stored");
    assert_eq!(event.payload, b"k1");
    // Filled in by the peer, as Fabric does: the shim leaves them empty.
    assert_eq!(event.chaincode_id, "basic");
    assert_eq!(event.tx_id, proposal.tx_id());
}

#[test]
fn no_event_means_empty_event_bytes() {
    let org = dev_org();
    let proposal = validated(&org);
    let mut quiet = outcome(200, "");
    quiet.event = None;
    let response = proposal_response(&proposal, &quiet, &org.endorser, timestamp());
    let payload = ProposalResponsePayload::decode(response.payload.as_slice()).unwrap();
    let action = ChaincodeAction::decode(payload.extension.as_slice()).unwrap();
    assert!(action.events.is_empty());
}

#[test]
fn chaincode_errors_are_not_endorsed_and_carry_status_and_message() {
    let org = dev_org();
    let proposal = validated(&org);
    let response = proposal_response(
        &proposal,
        &outcome(404, "asset k1 does not exist"),
        &org.endorser,
        timestamp(),
    );
    assert!(response.endorsement.is_none());
    assert!(response.payload.is_empty());
    assert_eq!(response.version, 0);
    let top = response.response.unwrap();
    assert_eq!(top.status, 404);
    assert_eq!(top.message, "asset k1 does not exist");

    // status >= 500: Fabric still returns the (unsigned) payload for diagnosis.
    let response = proposal_response(&proposal, &outcome(500, "boom"), &org.endorser, timestamp());
    assert!(response.endorsement.is_none());
    let payload = ProposalResponsePayload::decode(response.payload.as_slice()).unwrap();
    assert_eq!(
        payload.proposal_hash,
        recomputed_hash(&proposal.signed_proposal.proposal_bytes)
    );
    assert_eq!(response.response.unwrap().status, 500);
}

#[test]
fn system_errors_are_status_500_with_the_message() {
    let response = system_error_response("chaincode basic:1.0 did not register within 300s");
    let top = response.response.unwrap();
    assert_eq!(top.status, 500);
    assert_eq!(
        top.message,
        "chaincode basic:1.0 did not register within 300s"
    );
    assert!(response.endorsement.is_none());
}
