//! Wire compatibility: bytes encoded by @hyperledger/fabric-protos (the npm package fabric-shim
//! uses) decode into the crate's generated types with the expected fields and re-encode to the
//! same bytes.
mod support;

use std::collections::HashMap;
use std::process::Command;

use chaincode_operator::proto::common::{ChannelHeader, Header, SignatureHeader};
use chaincode_operator::proto::kvrwset::KvrwSet;
use chaincode_operator::proto::msp::SerializedIdentity;
use chaincode_operator::proto::protos::chaincode_message::Type;
use chaincode_operator::proto::protos::chaincode_spec::Type as CcType;
use chaincode_operator::proto::protos::{
    ChaincodeAction, ChaincodeEvent, ChaincodeHeaderExtension, ChaincodeInput,
    ChaincodeInvocationSpec, ChaincodeMessage, ChaincodeProposalPayload, ChaincodeSpec,
    GetStateByRange, Proposal, ProposalResponse, ProposalResponsePayload, QueryMetadata,
    QueryResponse, QueryResponseMetadata, SignedProposal, StateMetadataResult,
};
use chaincode_operator::proto::queryresult::{KeyModification, Kv};
use chaincode_operator::proto::rwset::TxReadWriteSet;
use prost::Message;

fn npm_encoded() -> HashMap<String, Vec<u8>> {
    let dir = support::e2e_dir("wire");
    support::npm_ci(&dir);
    let out = Command::new("node")
        .arg("encode.js")
        .current_dir(&dir)
        .output()
        .expect("run node encode.js");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                v["name"].as_str().unwrap().to_string(),
                hex::decode(v["hex"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

/// Decodes `bytes` as `M` and checks that encoding it again gives the very same bytes.
fn round_trip<M: Message + Default>(name: &str, all: &HashMap<String, Vec<u8>>) -> M {
    let bytes = all
        .get(name)
        .unwrap_or_else(|| panic!("{name} not emitted"));
    let msg = M::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(&msg.encode_to_vec(), bytes, "{name} re-encodes differently");
    msg
}

#[test]
fn npm_fabric_protos_bytes_decode_and_round_trip() {
    let all = npm_encoded();

    let id: SerializedIdentity = round_trip("SerializedIdentity", &all);
    assert_eq!(id.mspid, "Org1MSP");

    let ch: ChannelHeader = round_trip("ChannelHeader", &all);
    assert_eq!(
        (ch.r#type, ch.channel_id.as_str(), ch.tx_id.as_str()),
        (3, "mychannel", "abc123")
    );
    assert_eq!(ch.timestamp.unwrap().nanos, 42);
    let ext = ChaincodeHeaderExtension::decode(ch.extension.as_slice()).unwrap();
    assert_eq!(ext.chaincode_id.unwrap().name, "mycc");

    let spec: ChaincodeSpec = round_trip("ChaincodeSpec", &all);
    assert_eq!(spec.r#type, CcType::Node as i32);
    let input = spec.input.unwrap();
    assert_eq!(input.args, [b"put".to_vec(), b"k".to_vec(), b"v".to_vec()]);
    assert!(input.is_init);

    let ccpp: ChaincodeProposalPayload = round_trip("ChaincodeProposalPayload", &all);
    assert_eq!(ccpp.transient_map.get("secret").unwrap(), b"s");
    let cis = ChaincodeInvocationSpec::decode(ccpp.input.as_slice()).unwrap();
    assert_eq!(
        cis.chaincode_spec.unwrap().chaincode_id.unwrap().name,
        "mycc"
    );

    let signed: SignedProposal = round_trip("SignedProposal", &all);
    let proposal = Proposal::decode(signed.proposal_bytes.as_slice()).unwrap();
    let header = Header::decode(proposal.header.as_slice()).unwrap();
    let sh = SignatureHeader::decode(header.signature_header.as_slice()).unwrap();
    assert_eq!(sh.nonce.len(), 24);
    assert_eq!(
        SerializedIdentity::decode(sh.creator.as_slice()).unwrap(),
        id
    );

    let msg: ChaincodeMessage = round_trip("ChaincodeMessage", &all);
    assert_eq!(msg.r#type, Type::Transaction as i32);
    assert_eq!(
        (msg.txid.as_str(), msg.channel_id.as_str()),
        ("abc123", "mychannel")
    );
    assert_eq!(msg.proposal.unwrap(), signed);
    let event: ChaincodeEvent = msg.chaincode_event.unwrap();
    assert_eq!(
        (event.event_name.as_str(), event.payload.as_slice()),
        ("Transfer", &b"ev"[..])
    );
    assert_eq!(
        ChaincodeInput::decode(msg.payload.as_slice())
            .unwrap()
            .args
            .len(),
        3
    );

    let range: GetStateByRange = round_trip("GetStateByRange", &all);
    assert_eq!(
        (range.start_key.as_str(), range.end_key.as_str()),
        ("a", "z")
    );
    let qm = QueryMetadata::decode(range.metadata.as_slice()).unwrap();
    assert_eq!((qm.page_size, qm.bookmark.as_str()), (30, "r0030"));

    let qr: QueryResponse = round_trip("QueryResponse", &all);
    assert!(qr.has_more);
    assert_eq!(qr.id, "it-1");
    let kv = Kv::decode(qr.results[0].result_bytes.as_slice()).unwrap();
    assert_eq!(
        (kv.namespace.as_str(), kv.key.as_str(), kv.value.as_slice()),
        ("mycc", "a", &b"1"[..])
    );
    let qrm = QueryResponseMetadata::decode(qr.metadata.as_slice()).unwrap();
    assert_eq!((qrm.fetched_records_count, qrm.bookmark.as_str()), (1, "b"));

    let km: KeyModification = round_trip("KeyModification", &all);
    assert!(km.is_delete);
    assert_eq!(km.tx_id, "abc123");

    let smr: StateMetadataResult = round_trip("StateMetadataResult", &all);
    assert_eq!(smr.entries[0].metakey, "VALIDATION_PARAMETER");

    let rw: TxReadWriteSet = round_trip("TxReadWriteSet", &all);
    let kvrw = KvrwSet::decode(rw.ns_rwset[0].rwset.as_slice()).unwrap();
    let v = kvrw.reads[0].version.unwrap();
    assert_eq!((v.block_num, v.tx_num), (5, 2));
    assert!(kvrw.writes[0].is_delete);

    let pr: ProposalResponse = round_trip("ProposalResponse", &all);
    assert_eq!(pr.version, 1);
    assert_eq!(pr.response.as_ref().unwrap().status, 500);
    let prp = ProposalResponsePayload::decode(pr.payload.as_slice()).unwrap();
    let action = ChaincodeAction::decode(prp.extension.as_slice()).unwrap();
    assert_eq!(
        TxReadWriteSet::decode(action.results.as_slice()).unwrap(),
        rw
    );
    assert_eq!(
        ChaincodeEvent::decode(action.events.as_slice()).unwrap(),
        event
    );
    assert_eq!(pr.endorsement.unwrap().endorser, id.encode_to_vec());
}
