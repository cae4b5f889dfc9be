//! The `endorser` subcommand as a process: it serves ChaincodeSupport gated by the launcher, so a
//! REGISTER that no launch expects is refused, and it exits cleanly on SIGINT.
use std::process::Stdio;
use std::time::Duration;

use chaincode_operator::proto::protos::chaincode_message::Type;
use chaincode_operator::proto::protos::chaincode_support_client::ChaincodeSupportClient;
use chaincode_operator::proto::protos::{ChaincodeId, ChaincodeMessage};
use prost::Message;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_stream::StreamExt;

#[tokio::test]
async fn endorser_serves_chaincode_support_with_the_launcher_as_gate() {
    let work = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaincode-operator"))
        .args([
            "endorser",
            "--listen",
            "127.0.0.1:0",
            "--runtime",
            "process",
        ])
        .args(["--chaincode-plaintext", "--chaincode-work-dir"])
        .arg(work.path())
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
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("endorser prints its address")
        .unwrap()
        .unwrap();
    let addr = first
        .strip_prefix("ChaincodeSupport listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));

    let mut client = ChaincodeSupportClient::connect(format!("http://{addr}"))
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
