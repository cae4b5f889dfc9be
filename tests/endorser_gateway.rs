//! `chaincode-operator dev` driven by Hyperledger's own `@hyperledger/fabric-gateway` client
//! (e2e/clients/gateway.js) over TLS: the real Node contract chaincode is packaged, installed and
//! defined through `_lifecycle`, transactions are endorsed, submitted and committed through the
//! Gateway, and the committed state survives a restart of the endorser.
mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use chaincode_operator::endorser::node::dev::DevInfo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Copies the contract chaincode's sources (not its node_modules) to `to`.
fn copy_contract_source(to: &Path) {
    let from = support::e2e_dir("chaincodes/contract");
    std::fs::create_dir_all(to).expect("create the source copy");
    for name in ["index.js", "package.json", "package-lock.json"] {
        std::fs::copy(from.join(name), to.join(name)).expect("copy a chaincode file");
    }
}

/// Starts `dev` on loopback ports in `dir` for the chaincode in `source` and waits for it to say
/// it is ready.
async fn start_dev(dir: &Path, source: &Path) -> (Child, DevInfo) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chaincode-operator"))
        .arg("dev")
        .arg("--chaincode")
        .arg(source)
        .args(["--name", "basic", "--listen", "127.0.0.1:0"])
        .args(["--chaincode-listen", "127.0.0.1:0"])
        .arg("--dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run chaincode-operator dev");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(line) = lines.next_line().await.expect("read dev output") {
            if line == "ready" {
                return true;
            }
            printed.push(line);
        }
        false
    })
    .await
    .expect("dev gets ready within 5 minutes");
    assert!(
        ready,
        "dev exited before it was ready; it printed {printed:?}"
    );
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let text = std::fs::read_to_string(dir.join("dev.json")).expect("dev.json written");
    let info: DevInfo = serde_json::from_str(&text).expect("dev.json parses");
    assert!(
        printed.iter().any(|l| l.contains(&info.endpoint)),
        "the endpoint is printed too: {printed:?}"
    );
    (child, info)
}

async fn stop(mut child: Child) {
    let pid = child.id().expect("dev still running") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("send SIGINT");
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("dev stops after SIGINT")
        .expect("wait for dev");
    assert!(status.success(), "dev exits 0 on SIGINT, got {status}");
}

async fn gateway_client(dir: &Path, args: &[&str]) -> Value {
    let clients = support::installed_e2e_dir("clients");
    let output = Command::new("node")
        .arg(clients.join("gateway.js"))
        .arg(dir.join("dev.json"))
        .args(args)
        .current_dir(&clients)
        .output()
        .await
        .expect("run gateway.js");
    assert!(
        output.status.success(),
        "gateway.js {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("gateway.js prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fabric_gateway_submits_evaluates_sees_conflicts_and_events_and_state_survives_restart() {
    support::installed_e2e_dir("clients");
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("src");
    copy_contract_source(&source);
    let (child, info) = start_dev(dir.path(), &source).await;
    assert!(info.tls_root_cert.is_some(), "dev serves TLS by default");
    assert_eq!(
        (
            info.channel.as_str(),
            info.chaincode.as_str(),
            info.sequence
        ),
        ("mychannel", "basic", 1)
    );
    assert!(info.package_id.starts_with("basic:"), "{}", info.package_id);

    let seen = gateway_client(dir.path(), &["run", "asset1"]).await;

    // submitTransaction then evaluateTransaction sees the committed value.
    assert_eq!(seen["submitResult"], "ok");
    assert_eq!(seen["evaluated"], "v1");

    // Both endorsed against version of v1: the first commits, the second is a read conflict and
    // changes nothing.
    assert_eq!(
        (&seen["firstRead"], &seen["secondRead"]),
        (&"v1".into(), &"v1".into())
    );
    let statuses = seen["statuses"].as_array().expect("statuses");
    assert_eq!(statuses[0]["code"], "VALID", "{seen}");
    assert_eq!(statuses[0]["successful"], true);
    assert_eq!(statuses[1]["code"], "MVCC_READ_CONFLICT", "{seen}");
    assert_eq!(statuses[1]["successful"], false);
    assert!(statuses[1]["blockNumber"].as_u64() > statuses[0]["blockNumber"].as_u64());
    assert_eq!(seen["afterConflict"], "first");

    // A chaincode error reaches the client as a gateway error carrying the chaincode's message.
    let evaluate_error = &seen["evaluateError"];
    assert_eq!(evaluate_error["type"], "GatewayError", "{evaluate_error}");
    let detail = evaluate_error["details"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(detail.contains("boom"), "{evaluate_error}");
    assert_eq!(evaluate_error["details"][0]["mspId"], "Org1MSP");
    let submit_error = &seen["submitError"];
    assert_eq!(submit_error["type"], "EndorseError", "{submit_error}");
    assert!(
        submit_error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("boom")
            || submit_error["details"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("boom"),
        "{submit_error}"
    );

    // The emitted event arrives over ChaincodeEvents from the committed block.
    assert_eq!(seen["emitStatus"], "VALID");
    let event = &seen["event"];
    assert_eq!(event["chaincodeName"], "basic", "{seen}");
    assert_eq!(event["eventName"], "created");
    assert_eq!(event["payload"], "asset1");
    assert_eq!(event["transactionId"], seen["emitTransactionId"]);

    // Committed state is still there after the endorser restarts on the same directory, which
    // reuses its crypto and definition (the chaincode is not redefined).
    stop(child).await;
    let (child, restarted) = start_dev(dir.path(), &source).await;
    assert_eq!(restarted.package_id, info.package_id);
    assert_eq!(restarted.sequence, 1);
    assert_eq!(restarted.cert_path, info.cert_path);
    let read = gateway_client(dir.path(), &["read", "asset1"]).await;
    assert_eq!(read["value"], "first");
    stop(child).await;

    // The developer's loop: changed source, restart, the new package is defined as the next
    // sequence and serves the same committed state.
    let index = source.join("index.js");
    let code = std::fs::read_to_string(&index).expect("read index.js");
    std::fs::write(&index, format!("{code}\n// changed by the test\n")).expect("edit index.js");
    let (child, changed) = start_dev(dir.path(), &source).await;
    assert_ne!(changed.package_id, info.package_id);
    assert_eq!(changed.sequence, 2);
    let read = gateway_client(dir.path(), &["read", "asset1"]).await;
    assert_eq!(read["value"], "first");
    stop(child).await;
}
