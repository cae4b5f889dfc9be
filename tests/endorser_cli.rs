//! The `endorser` subcommand as a process, configured the way an operator would: its own MSP
//! folder, a data directory and a TLS certificate. It endorses a proposal over TLS on its client
//! listener, its chaincode listener refuses a REGISTER that no launch expects, and it exits 0 on
//! SIGINT.
use std::process::Stdio;
use std::time::Duration;

use chaincode_operator::endorser::identity::load_signing_identity;
use chaincode_operator::endorser::node::devcrypto::{self, DevCryptoSpec};
use chaincode_operator::endorser::proposal::build::{ProposalSpec, signed_proposal};
use chaincode_operator::proto::protos::chaincode_message::Type;
use chaincode_operator::proto::protos::chaincode_support_client::ChaincodeSupportClient;
use chaincode_operator::proto::protos::endorser_client::EndorserClient;
use chaincode_operator::proto::protos::{ChaincodeId, ChaincodeMessage};
use prost::Message;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

fn address<'a>(line: &'a str, prefix: &str) -> &'a str {
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
}

#[tokio::test]
async fn endorser_endorses_over_tls_and_gates_chaincode_registration() {
    let work = tempfile::tempdir().unwrap();
    let crypto = devcrypto::generate(&work.path().join("crypto"), &DevCryptoSpec::default())
        .expect("dev crypto");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaincode-operator"))
        .args(["endorser", "--listen", "127.0.0.1:0"])
        .args(["--chaincode-listen", "127.0.0.1:0", "--runtime", "process"])
        .arg("--data-dir")
        .arg(work.path().join("data"))
        .arg("--msp-dir")
        .arg(&crypto.paths.endorser.dir)
        .arg("--tls-cert")
        .arg(&crypto.paths.tls_server_cert)
        .arg("--tls-key")
        .arg(&crypto.paths.tls_server_key)
        .arg("--chaincode-plaintext")
        .arg("--chaincode")
        .arg(format!(
            "shimcc={}/e2e/chaincodes/shim",
            env!("CARGO_MANIFEST_DIR")
        ))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run chaincode-operator endorser");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("endorser prints its addresses")
            .unwrap()
            .unwrap()
    };
    let client_line = next_line().await;
    let client_addr = address(&client_line, "Endorser and Gateway listening on ").to_string();
    let chaincode_line = next_line().await;
    let chaincode_addr = address(&chaincode_line, "ChaincodeSupport listening on ").to_string();

    // A proposal to an undefined chaincode over TLS: validated, then refused naming it.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&crypto.tls_ca.cert_pem))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://{client_addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS connection to the endorser");
    let user = load_signing_identity("Org1MSP", &crypto.paths.user.dir).unwrap();
    let (proposal, _) = signed_proposal(
        &user,
        &ProposalSpec::new("mychannel", "nosuchcc", [b"get".to_vec()]),
    )
    .unwrap();
    let response = EndorserClient::new(channel)
        .process_proposal(proposal)
        .await
        .expect("ProcessProposal answers")
        .into_inner();
    let response = response.response.expect("a response");
    assert_eq!(response.status, 500);
    assert!(
        response.message.contains("nosuchcc") && response.message.contains("mychannel"),
        "{}",
        response.message
    );

    let mut client = ChaincodeSupportClient::connect(format!("http://{chaincode_addr}"))
        .await
        .unwrap();
    let register = ChaincodeMessage {
        r#type: Type::Register as i32,
        payload: ChaincodeId {
            name: "unsolicited:1.0".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        ..Default::default()
    };
    let mut replies = client
        .register(tokio_stream::iter([register]).chain(tokio_stream::pending()))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.next().await.unwrap().unwrap();
    assert_eq!(reply.r#type, Type::Error as i32);
    assert_eq!(
        String::from_utf8_lossy(&reply.payload),
        "no launch of chaincode unsolicited:1.0 is pending: unsolicited REGISTER refused"
    );

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("endorser exits on SIGINT")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// A port in use is named with the flag that moves it, for each listener, and the process exits
/// non-zero instead of serving half of its services.
#[tokio::test]
async fn a_port_in_use_names_the_flag_that_changes_it() {
    let work = tempfile::tempdir().unwrap();
    let crypto = devcrypto::generate(&work.path().join("crypto"), &DevCryptoSpec::default())
        .expect("dev crypto");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    for (flag, other) in [
        ("--listen", "--chaincode-listen"),
        ("--chaincode-listen", "--listen"),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaincode-operator"))
            .arg("endorser")
            .args([flag, &port, other, "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(work.path().join(format!("data{flag}")))
            .arg("--msp-dir")
            .arg(&crypto.paths.endorser.dir)
            .env("RUST_LOG", "error")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(
            stderr.contains("the port is in use") && stderr.contains(&format!("with {flag} ")),
            "{flag}: {stderr}"
        );
    }
}
