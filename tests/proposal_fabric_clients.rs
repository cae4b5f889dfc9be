//! Wire compatibility with Hyperledger's own clients: proposals built and signed offline by npm
//! `fabric-common` 2.2 and `@hyperledger/fabric-gateway` 1.x (e2e/clients/proposals.js) pass our
//! validation with the creator, args, transient data and tx id the client put in; a tampered
//! byte or a wrong signature is refused; and fabric-common accepts our ProposalResponses as a
//! peer's answer (query result, transaction envelope) and refuses our error responses.
mod proposal_support;
mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use base64::Engine;
use chaincode_operator::endorser::identity::SignatureError;
use chaincode_operator::endorser::proposal::{
    BoundedReplayCache, ProposalError, SimulationOutcome, proposal_response,
};
use chaincode_operator::proto::common::{Envelope, Payload};
use chaincode_operator::proto::protos::{
    ChaincodeActionPayload, ChaincodeId, ProposalResponse, Response, SignedProposal, Transaction,
};
use proposal_support::*;
use prost::Message;
use serde::Deserialize;
use support::{e2e_dir, npm_ci};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    name: String,
    client: String,
    channel: String,
    chaincode: String,
    args: Vec<String>,
    transient: HashMap<String, String>,
    init: bool,
    tx_id: String,
}

fn node() -> Command {
    let dir = e2e_dir("clients");
    npm_ci(&dir);
    let mut command = Command::new("node");
    command.arg(dir.join("proposals.js")).current_dir(&dir);
    command
}

fn build_with_clients(org: &Org) -> (tempfile::TempDir, Vec<Case>) {
    let out = tempfile::tempdir().unwrap();
    let output = node()
        .arg("build")
        .arg(out.path())
        .arg(MSPID)
        .arg(&org.crypto.paths.user.cert)
        .arg(&org.crypto.paths.user.key)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "proposals.js build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest = std::fs::read(out.path().join("manifest.json")).unwrap();
    let cases: Vec<Case> = serde_json::from_slice(&manifest).unwrap();
    (out, cases)
}

#[test]
fn proposals_from_fabric_common_and_fabric_gateway_validate_with_what_the_client_put_in() {
    let org = dev_org();
    let (out, cases) = build_with_clients(&org);
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["put", "transient", "init", "get", "gateway"]);
    let validator = validator(&org);
    let replay = BoundedReplayCache::new(64);
    for case in &cases {
        let bytes = std::fs::read(out.path().join(format!("{}.bin", case.name))).unwrap();
        let validated = validator
            .validate_bytes(&bytes, SystemTime::now(), &replay)
            .unwrap_or_else(|e| panic!("{} ({}): {e}", case.name, case.client));
        let context = format!("{} ({})", case.name, case.client);
        assert_eq!(validated.channel_id(), case.channel, "{context}");
        assert_eq!(validated.chaincode_name(), case.chaincode, "{context}");
        assert_eq!(validated.tx_id(), case.tx_id, "{context}");
        let args: Vec<String> = validated
            .args()
            .iter()
            .map(|a| String::from_utf8(a.clone()).unwrap())
            .collect();
        assert_eq!(args, case.args, "{context}");
        let transient: HashMap<String, String> = validated
            .transient_map
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8(v.clone()).unwrap()))
            .collect();
        assert_eq!(transient, case.transient, "{context}");
        assert_eq!(validated.is_init(), case.init, "{context}");
        assert_eq!(validated.creator.mspid(), MSPID, "{context}");
        assert!(
            validated
                .creator
                .subject()
                .contains("User1@org1.example.com"),
            "{context}"
        );
        // The creator the client serialized is the user's certificate, byte for byte in DER.
        assert_eq!(
            validated.creator.cert_der(),
            org.user.cert_der(),
            "{context}"
        );
        // Replaying the same client bytes is refused.
        let error = validator
            .validate_bytes(&bytes, SystemTime::now(), &replay)
            .unwrap_err();
        assert!(
            matches!(error, ProposalError::Replayed { .. }),
            "{context}: {error}"
        );
    }
}

#[test]
fn a_tampered_byte_or_a_wrong_signature_on_client_proposals_is_refused() {
    let org = dev_org();
    let (out, _cases) = build_with_clients(&org);
    let validator = validator(&org);
    let bytes = std::fs::read(out.path().join("put.bin")).unwrap();
    let original = SignedProposal::decode(bytes.as_slice()).unwrap();

    // Flip one byte of the argument "blue" to "blua": still decodes, signature no longer matches.
    let mut tampered = original.clone();
    let at = tampered
        .proposal_bytes
        .windows(4)
        .position(|w| w == b"blue")
        .unwrap();
    tampered.proposal_bytes[at + 3] ^= 0x01;
    let error = validator
        .validate(tampered, SystemTime::now(), &BoundedReplayCache::new(4))
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProposalError::Signature {
                source: SignatureError::Invalid,
                ..
            }
        ),
        "{error}"
    );

    // The admin signs the user's proposal: wrong key for the creator.
    let mut wrong_signer = original.clone();
    wrong_signer.signature = org.admin.sign(&wrong_signer.proposal_bytes);
    let error = validator
        .validate(wrong_signer, SystemTime::now(), &BoundedReplayCache::new(4))
        .unwrap_err();
    assert!(matches!(error, ProposalError::Signature { .. }), "{error}");

    // Every single-byte corruption of the signed bytes is refused, one way or another.
    for position in (0..original.proposal_bytes.len()).step_by(7) {
        let mut corrupt = original.clone();
        corrupt.proposal_bytes[position] ^= 0x80;
        assert!(
            validator
                .validate(corrupt, SystemTime::now(), &BoundedReplayCache::new(4))
                .is_err(),
            "corruption at byte {position} accepted"
        );
    }

    // The untouched proposal still passes.
    validator
        .validate(original, SystemTime::now(), &BoundedReplayCache::new(4))
        .unwrap();
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    case: String,
    errors: Vec<String>,
    statuses: Vec<i32>,
    messages: Vec<String>,
    query_results: Vec<String>,
    envelope: Option<String>,
    commit_error: Option<String>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

#[test]
fn fabric_common_accepts_our_endorsements_and_refuses_our_error_responses() {
    let org = dev_org();
    let mut child = node()
        .arg("roundtrip")
        .arg(MSPID)
        .arg(&org.crypto.paths.user.cert)
        .arg(&org.crypto.paths.user.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let validator = validator(&org);
    let replay = BoundedReplayCache::new(16);
    let mut reports = HashMap::new();
    let mut payloads = HashMap::new();
    for _ in 0..4 {
        let request: serde_json::Value =
            serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let case = request["case"].as_str().unwrap().to_string();
        let bytes = unb64(request["signedProposal"].as_str().unwrap());
        let proposal = validator
            .validate_bytes(&bytes, SystemTime::now(), &replay)
            .unwrap();
        let (status, message) = match case.as_str() {
            "failing" => (404, "asset x does not exist"),
            "status0" => (0, ""),
            _ => (200, "OK"),
        };
        let outcome = SimulationOutcome {
            chaincode_id: ChaincodeId {
                name: "basic".into(),
                version: "1.0".into(),
                ..ChaincodeId::default()
            },
            response: Response {
                status,
                message: message.into(),
                payload: format!("result of {case}").into_bytes(),
            },
            results: b"rwset".to_vec(),
            event: None,
        };
        let response = proposal_response(
            &proposal,
            &outcome,
            &org.endorser,
            prost_types::Timestamp::default(),
        );
        payloads.insert(case.clone(), response.clone());
        let answer = serde_json::json!({ "proposalResponse": b64(&response.encode_to_vec()) });
        writeln!(stdin, "{answer}").unwrap();
        let report: Report = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(report.case, case);
        reports.insert(case, report);
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());

    // put: accepted as an endorsement and built into a transaction envelope carrying our
    // ProposalResponsePayload and endorsement unchanged.
    let put = &reports["put"];
    assert!(put.errors.is_empty(), "{put:?}");
    assert_eq!(put.statuses, [200]);
    let envelope = Envelope::decode(unb64(put.envelope.as_ref().unwrap()).as_slice()).unwrap();
    let payload = Payload::decode(envelope.payload.as_slice()).unwrap();
    let transaction = Transaction::decode(payload.data.as_slice()).unwrap();
    let action = ChaincodeActionPayload::decode(transaction.actions[0].payload.as_slice()).unwrap();
    let endorsed = action.action.unwrap();
    let ours: &ProposalResponse = &payloads["put"];
    assert_eq!(endorsed.proposal_response_payload, ours.payload);
    assert_eq!(
        endorsed.endorsements,
        vec![ours.endorsement.clone().unwrap()]
    );

    // get: fabric-common's Query reads the result from our response.
    let get = &reports["get"];
    assert!(get.errors.is_empty(), "{get:?}");
    assert_eq!(get.query_results, [b64(b"result of get")]);

    // A chaincode error: fabric-common reports the status and message, and has nothing to commit.
    let failing = &reports["failing"];
    assert_eq!(failing.statuses, [404]);
    assert_eq!(failing.messages, ["asset x does not exist"]);
    assert_eq!(
        failing.commit_error.as_deref(),
        Some("No valid endorsements found")
    );

    // Status 0 is what fabric-common refuses outright (why errors must carry a real status).
    let status0 = &reports["status0"];
    assert!(status0.statuses.is_empty(), "{status0:?}");
    assert_eq!(status0.errors.len(), 1, "{status0:?}");
}
