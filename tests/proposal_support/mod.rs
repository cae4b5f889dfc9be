//! Test support: a dev organisation on disk, and proposals built the way Fabric's SDKs build
//! them (protoutil.CreateChaincodeProposalWithTxIDNonceAndTransient), with hooks to break them.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use chaincode_operator::endorser::identity::{
    SigningIdentity, TrustStore, load_organization, load_signing_identity,
};
use chaincode_operator::endorser::node::devcrypto::{self, DevCrypto, DevCryptoSpec};
use chaincode_operator::endorser::proposal::ProposalValidator;
use chaincode_operator::proto::common::{ChannelHeader, Header, HeaderType, SignatureHeader};
use chaincode_operator::proto::protos::{
    ChaincodeHeaderExtension, ChaincodeId, ChaincodeInput, ChaincodeInvocationSpec,
    ChaincodeProposalPayload, ChaincodeSpec, Proposal, SignedProposal,
};
use prost::Message;
use sha2::{Digest, Sha256};

pub const CHANNEL: &str = "mychannel";
pub const MSPID: &str = "Org1MSP";

pub struct Org {
    pub dir: tempfile::TempDir,
    pub crypto: DevCrypto,
    pub user: SigningIdentity,
    pub admin: SigningIdentity,
    pub endorser: SigningIdentity,
    pub trust: Arc<TrustStore>,
}

pub fn dev_org() -> Org {
    let dir = tempfile::tempdir().unwrap();
    let crypto = devcrypto::generate(dir.path(), &DevCryptoSpec::default()).unwrap();
    let load = |msp: &std::path::Path| load_signing_identity(MSPID, msp).unwrap();
    Org {
        user: load(&crypto.paths.user.dir),
        admin: load(&crypto.paths.admin.dir),
        endorser: load(&crypto.paths.endorser.dir),
        trust: Arc::new(TrustStore::new([load_organization(
            MSPID,
            &crypto.paths.endorser.dir,
        )
        .unwrap()])),
        crypto,
        dir,
    }
}

pub fn validator(org: &Org) -> ProposalValidator {
    ProposalValidator::new(org.trust.clone(), [CHANNEL.to_string()])
}

/// Every part of a proposal, editable before it is encoded and signed.
pub struct Parts {
    pub channel_header: ChannelHeader,
    pub signature_header: SignatureHeader,
    pub chaincode_spec: ChaincodeSpec,
    pub transient_map: HashMap<String, Vec<u8>>,
}

pub fn tx_id(nonce: &[u8], creator: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(nonce);
    hasher.update(creator);
    hex::encode(hasher.finalize())
}

pub fn parts(creator: &[u8], nonce: &[u8], args: &[&[u8]]) -> Parts {
    let chaincode_id = ChaincodeId {
        name: "basic".into(),
        ..ChaincodeId::default()
    };
    Parts {
        channel_header: ChannelHeader {
            r#type: HeaderType::EndorserTransaction as i32,
            channel_id: CHANNEL.into(),
            tx_id: tx_id(nonce, creator),
            epoch: 0,
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            extension: ChaincodeHeaderExtension {
                chaincode_id: Some(chaincode_id.clone()),
            }
            .encode_to_vec(),
            ..ChannelHeader::default()
        },
        signature_header: SignatureHeader {
            creator: creator.to_vec(),
            nonce: nonce.to_vec(),
        },
        chaincode_spec: ChaincodeSpec {
            r#type: 1,
            chaincode_id: Some(chaincode_id),
            input: Some(ChaincodeInput {
                args: args.iter().map(|a| a.to_vec()).collect(),
                ..ChaincodeInput::default()
            }),
            timeout: 0,
        },
        transient_map: HashMap::new(),
    }
}

/// Encodes the parts into Proposal bytes (what the creator signs).
pub fn proposal_bytes(parts: &Parts) -> Vec<u8> {
    let input = ChaincodeInvocationSpec {
        chaincode_spec: Some(parts.chaincode_spec.clone()),
    }
    .encode_to_vec();
    let header = Header {
        channel_header: parts.channel_header.encode_to_vec(),
        signature_header: parts.signature_header.encode_to_vec(),
    };
    Proposal {
        header: header.encode_to_vec(),
        payload: ChaincodeProposalPayload {
            input,
            transient_map: parts.transient_map.clone(),
        }
        .encode_to_vec(),
        extension: Vec::new(),
    }
    .encode_to_vec()
}

pub fn signed(parts: &Parts, signer: &SigningIdentity) -> SignedProposal {
    let proposal_bytes = proposal_bytes(parts);
    SignedProposal {
        signature: signer.sign(&proposal_bytes),
        proposal_bytes,
    }
}

/// A well-formed proposal by `signer` with a random-enough nonce.
pub fn good(signer: &SigningIdentity, args: &[&[u8]]) -> SignedProposal {
    let nonce: [u8; 24] =
        Sha256::digest(format!("{:?}{}", std::time::Instant::now(), rand_suffix()))[..24]
            .try_into()
            .unwrap();
    signed(&parts(signer.serialized(), &nonce, args), signer)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}
