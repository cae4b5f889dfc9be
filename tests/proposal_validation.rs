//! Proposal pre-processing against proposals built the way Fabric's SDKs build them: what a
//! good proposal yields, and a clear error for each way a proposal can be bad.
mod proposal_support;

use std::time::{Duration, SystemTime};

use chaincode_operator::endorser::identity::{CreatorError, SignatureError, serialize_identity};
use chaincode_operator::endorser::node::devcrypto::{DevCa, LeafSpec};
use chaincode_operator::endorser::proposal::{
    BoundedReplayCache, ProposalError, proposal_hash, rejection_response,
};
use chaincode_operator::proto::common::Header;
use chaincode_operator::proto::protos::{ChaincodeProposalPayload, Proposal, SignedProposal};
use p256::ecdsa::Signature;
use proposal_support::*;
use prost::Message;
use sha2::{Digest, Sha256};

fn now() -> SystemTime {
    SystemTime::now()
}

#[test]
fn a_good_proposal_is_unpacked_with_creator_args_transient_and_hash() {
    let org = dev_org();
    let mut p = parts(org.user.serialized(), &[7; 24], &[b"put", b"k1", b"v1"]);
    p.transient_map.insert("secret".into(), b"shh".to_vec());
    let signed = signed(&p, &org.user);
    let validated = validator(&org)
        .validate_bytes(&signed.encode_to_vec(), now(), &BoundedReplayCache::new(16))
        .unwrap();
    assert_eq!(validated.channel_id(), CHANNEL);
    assert_eq!(validated.tx_id(), tx_id(&[7; 24], org.user.serialized()));
    assert_eq!(validated.chaincode_name(), "basic");
    assert_eq!(
        validated.args(),
        [b"put".to_vec(), b"k1".to_vec(), b"v1".to_vec()]
    );
    assert!(!validated.is_init());
    assert_eq!(validated.transient_map["secret"], b"shh");
    assert_eq!(validated.creator.mspid(), MSPID);
    assert_eq!(validated.creator_bytes(), org.user.serialized());
    assert_eq!(validated.signed_proposal, signed);

    // The hash, recomputed from the raw header bytes and a transient-free payload built here.
    let proposal = Proposal::decode(signed.proposal_bytes.as_slice()).unwrap();
    let header = Header::decode(proposal.header.as_slice()).unwrap();
    let payload = ChaincodeProposalPayload::decode(proposal.payload.as_slice()).unwrap();
    let mut hasher = Sha256::new();
    hasher.update(&header.channel_header);
    hasher.update(&header.signature_header);
    // Field 1 (input), length-delimited: tag 0x0a, varint length, bytes.
    let mut without_transient = vec![0x0a];
    prost::encoding::encode_varint(payload.input.len() as u64, &mut without_transient);
    without_transient.extend_from_slice(&payload.input);
    hasher.update(&without_transient);
    let expected: [u8; 32] = hasher.finalize().into();
    assert_eq!(validated.proposal_hash, expected);
    // The transient map is excluded: the full payload would hash differently.
    let mut with_transient = Sha256::new();
    with_transient.update(&header.channel_header);
    with_transient.update(&header.signature_header);
    with_transient.update(&proposal.payload);
    assert_ne!(<[u8; 32]>::from(with_transient.finalize()), expected);
}

#[test]
fn the_transient_map_does_not_change_the_proposal_hash() {
    let org = dev_org();
    let plain = parts(org.user.serialized(), &[1; 24], &[b"put", b"k", b"v"]);
    let mut private = parts(org.user.serialized(), &[1; 24], &[b"put", b"k", b"v"]);
    private.transient_map.insert("price".into(), b"42".to_vec());
    let validator = validator(&org);
    let a = validator
        .validate(
            signed(&plain, &org.user),
            now(),
            &BoundedReplayCache::new(4),
        )
        .unwrap();
    let b = validator
        .validate(
            signed(&private, &org.user),
            now(),
            &BoundedReplayCache::new(4),
        )
        .unwrap();
    assert_ne!(
        a.signed_proposal.proposal_bytes,
        b.signed_proposal.proposal_bytes
    );
    assert_eq!(a.proposal_hash, b.proposal_hash);
    let input = ChaincodeProposalPayload::decode(b.proposal.payload.as_slice())
        .unwrap()
        .input;
    assert_eq!(a.proposal_hash, proposal_hash(&a.header, &input));
}

fn refused(org: &Org, signed: &SignedProposal) -> ProposalError {
    validator(org)
        .validate_bytes(&signed.encode_to_vec(), now(), &BoundedReplayCache::new(16))
        .unwrap_err()
}

#[test]
fn wrong_header_type_epoch_channel_and_chaincode_id_are_refused() {
    let org = dev_org();
    let base = || parts(org.user.serialized(), &[2; 24], &[b"get", b"k"]);

    let mut p = base();
    p.channel_header.r#type = 1; // CONFIG
    assert_eq!(
        refused(&org, &signed(&p, &org.user)),
        ProposalError::HeaderType(1)
    );

    let mut p = base();
    p.channel_header.epoch = 5;
    assert_eq!(
        refused(&org, &signed(&p, &org.user)),
        ProposalError::Epoch(5)
    );

    let mut p = base();
    p.channel_header.channel_id = "otherchannel".into();
    let error = refused(&org, &signed(&p, &org.user));
    assert_eq!(error, ProposalError::UnknownChannel("otherchannel".into()));
    assert!(error.to_string().contains("otherchannel"));

    let mut p = base();
    p.channel_header.channel_id = String::new();
    assert_eq!(
        refused(&org, &signed(&p, &org.user)),
        ProposalError::NoChannel("basic".into())
    );

    let mut p = base();
    p.channel_header.extension = Vec::new();
    assert!(matches!(
        refused(&org, &signed(&p, &org.user)),
        ProposalError::Missing(_)
    ));

    let mut p = base();
    p.chaincode_spec.input = None;
    assert_eq!(
        refused(&org, &signed(&p, &org.user)),
        ProposalError::Missing("ChaincodeSpec.input")
    );
}

#[test]
fn lifecycle_may_be_addressed_without_a_channel() {
    let org = dev_org();
    let mut p = parts(org.admin.serialized(), &[3; 24], &[b"InstallChaincode"]);
    p.channel_header.channel_id = String::new();
    let lifecycle = chaincode_operator::proto::protos::ChaincodeId {
        name: "_lifecycle".into(),
        ..Default::default()
    };
    p.channel_header.extension = chaincode_operator::proto::protos::ChaincodeHeaderExtension {
        chaincode_id: Some(lifecycle),
    }
    .encode_to_vec();
    let validated = validator(&org)
        .validate(signed(&p, &org.admin), now(), &BoundedReplayCache::new(4))
        .unwrap();
    assert_eq!(validated.channel_id(), "");
    assert_eq!(validated.chaincode_name(), "_lifecycle");
    assert!(validated.creator.is_admin());
}

#[test]
fn a_wrong_tx_id_is_refused_with_the_expected_value() {
    let org = dev_org();
    let mut p = parts(org.user.serialized(), &[4; 24], &[b"get", b"k"]);
    p.channel_header.tx_id = tx_id(&[5; 24], org.user.serialized());
    match refused(&org, &signed(&p, &org.user)) {
        ProposalError::TxId { got, expected } => {
            assert_eq!(got, tx_id(&[5; 24], org.user.serialized()));
            assert_eq!(expected, tx_id(&[4; 24], org.user.serialized()));
        }
        other => panic!("{other}"),
    }
    let mut p = parts(org.user.serialized(), &[4; 24], &[b"get", b"k"]);
    p.signature_header.nonce.clear();
    assert_eq!(
        refused(&org, &signed(&p, &org.user)),
        ProposalError::Missing("SignatureHeader.nonce")
    );
}

#[test]
fn a_signature_by_another_key_or_over_tampered_bytes_is_refused() {
    let org = dev_org();
    let p = parts(org.user.serialized(), &[6; 24], &[b"put", b"key", b"value"]);
    // The user's creator, signed with the admin's key.
    let error = refused(&org, &signed(&p, &org.admin));
    assert!(
        matches!(
            &error,
            ProposalError::Signature {
                source: SignatureError::Invalid,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("access denied"), "{error}");

    // One byte of the value changed after signing (still decodes, so the signature catches it).
    let mut tampered = signed(&p, &org.user);
    let at = tampered
        .proposal_bytes
        .windows(5)
        .position(|w| w == b"value")
        .unwrap();
    tampered.proposal_bytes[at] = b'V';
    assert!(matches!(
        refused(&org, &tampered),
        ProposalError::Signature {
            source: SignatureError::Invalid,
            ..
        }
    ));

    // The high-S twin of the genuine signature: valid ECDSA, refused like Fabric does.
    let mut twin = signed(&p, &org.user);
    let signature = Signature::from_der(&twin.signature).unwrap();
    let (r, s) = signature.split_scalars();
    twin.signature = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes())
        .unwrap()
        .to_der()
        .as_bytes()
        .to_vec();
    assert!(matches!(
        refused(&org, &twin),
        ProposalError::Signature {
            source: SignatureError::HighS,
            ..
        }
    ));

    let mut unsigned = signed(&p, &org.user);
    unsigned.signature.clear();
    assert_eq!(
        refused(&org, &unsigned),
        ProposalError::Missing("SignedProposal.signature")
    );
}

#[test]
fn unknown_org_expired_and_untrusted_creators_are_refused() {
    let org = dev_org();
    // Unknown organisation: same certificate, another mspid.
    let creator = serialize_identity("Org9MSP", org.user.cert_pem());
    let p = parts(&creator, &[8; 24], &[b"get", b"k"]);
    let error = refused(&org, &signed(&p, &org.user));
    assert!(
        matches!(
            &error,
            ProposalError::Creator {
                source: CreatorError::UnknownOrganization(mspid),
                ..
            } if mspid == "Org9MSP"
        ),
        "{error}"
    );

    // The genuine user, but the endorser's clock says eleven years later.
    let p = parts(org.user.serialized(), &[9; 24], &[b"get", b"k"]);
    let error = validator(&org)
        .validate(
            signed(&p, &org.user),
            now() + Duration::from_secs(11 * 365 * 24 * 3600),
            &BoundedReplayCache::new(4),
        )
        .unwrap_err();
    assert!(
        matches!(
            &error,
            ProposalError::Creator {
                source: CreatorError::Expired { .. },
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("expired"), "{error}");

    // A certificate from a CA the organisation does not list.
    let stranger_ca = DevCa::generate("ca.org1.example.com", "org1.example.com").unwrap();
    let stranger = stranger_ca
        .issue(&LeafSpec::identity("User1@org1.example.com", "client"))
        .unwrap();
    let stranger = chaincode_operator::endorser::identity::SigningIdentity::from_pem(
        MSPID,
        stranger.cert_pem.as_bytes(),
        &stranger.key_pem,
    )
    .unwrap();
    let error = refused(&org, &good(&stranger, &[b"get", b"k"]));
    assert!(
        matches!(
            &error,
            ProposalError::Creator {
                source: CreatorError::Untrusted { .. },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_replayed_proposal_is_refused_and_the_next_good_one_succeeds() {
    let org = dev_org();
    let validator = validator(&org);
    let replay = BoundedReplayCache::new(1024);
    let first = good(&org.user, &[b"put", b"a", b"1"]);
    validator.validate(first.clone(), now(), &replay).unwrap();
    let error = validator
        .validate(first.clone(), now(), &replay)
        .unwrap_err();
    assert!(matches!(error, ProposalError::Replayed { .. }), "{error}");
    assert!(
        error.to_string().contains("duplicate transaction"),
        "{error}"
    );
    validator
        .validate(good(&org.user, &[b"put", b"a", b"2"]), now(), &replay)
        .unwrap();
}

#[test]
fn a_forged_copy_does_not_burn_the_genuine_tx_id() {
    let org = dev_org();
    let validator = validator(&org);
    let replay = BoundedReplayCache::new(1024);
    let genuine = good(&org.user, &[b"put", b"a", b"1"]);
    let mut forged = genuine.clone();
    forged.signature = org.admin.sign(&forged.proposal_bytes);
    validator.validate(forged, now(), &replay).unwrap_err();
    validator.validate(genuine, now(), &replay).unwrap();
}

#[test]
fn garbage_and_oversized_messages_are_refused_and_answered_with_status_500() {
    let org = dev_org();
    let replay = BoundedReplayCache::new(16);
    for garbage in [
        &b"\xff\xff\xff\xff"[..],
        b"\x0a\x05abc",                   // truncated length-delimited field
        b"\x0a\x03\x0a\x01\xff\x12\x01x", // proposal bytes that are no Proposal
    ] {
        let error = validator(&org)
            .validate_bytes(garbage, now(), &replay)
            .unwrap_err();
        assert!(matches!(error, ProposalError::Malformed { .. }), "{error}");
        let response = rejection_response(&error).response.unwrap();
        assert_eq!(response.status, 500);
        assert!(response.message.contains("malformed proposal"));
    }
    let big = good(&org.user, &[b"put", b"k", &vec![b'x'; 4096]]).encode_to_vec();
    let error = validator(&org)
        .with_max_proposal_bytes(1024)
        .validate_bytes(&big, now(), &replay)
        .unwrap_err();
    assert_eq!(
        error,
        ProposalError::TooLarge {
            size: big.len(),
            limit: 1024
        }
    );
    // Nothing above consumed state: the next good proposal is accepted.
    validator(&org)
        .validate(good(&org.user, &[b"get", b"k"]), now(), &replay)
        .unwrap();
}
