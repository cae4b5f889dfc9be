//! `chaincode-operator dev` driven by Hyperledger's own `@hyperledger/fabric-gateway` client
//! (e2e/clients/gateway.js) over TLS: the real Node contract chaincode is packaged, installed and
//! defined through `_lifecycle`, transactions are endorsed, submitted and committed through the
//! Gateway, and the committed state survives a restart of the endorser.
mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::dev::{Dev, copy_contract_source, dev_command, gateway, interrupt, spawn_dev};

/// Starts `dev` on loopback ports in `dir` for the chaincode in `source` and waits for it to say
/// it is ready.
async fn start_dev(dir: &Path, source: &Path) -> Dev {
    let args = ["--chaincode-listen", "127.0.0.1:0"].map(String::from);
    let mut command = dev_command(dir, source, &args);
    command.env("RUST_LOG", "warn");
    let dev = spawn_dev(command, dir, Duration::from_secs(300)).await;
    assert!(
        dev.printed.iter().any(|l| l.contains(&dev.info.endpoint)),
        "the endpoint is printed too: {:?}",
        dev.printed
    );
    dev
}

async fn gateway_client(dir: &Path, args: &[&str]) -> Value {
    gateway(dir, args)
        .await
        .unwrap_or_else(|stderr| panic!("gateway.js {args:?} failed: {stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fabric_gateway_submits_evaluates_sees_conflicts_and_events_and_state_survives_restart() {
    support::installed_e2e_dir("clients");
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("src");
    copy_contract_source(&source);
    let dev = start_dev(dir.path(), &source).await;
    let info = dev.info.clone();
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
    interrupt(dev).await;
    let dev = start_dev(dir.path(), &source).await;
    let restarted = &dev.info;
    assert_eq!(restarted.package_id, info.package_id);
    assert_eq!(restarted.sequence, 1);
    assert_eq!(restarted.cert_path, info.cert_path);
    let read = gateway_client(dir.path(), &["read", "asset1"]).await;
    assert_eq!(read["value"], "first");
    interrupt(dev).await;

    // The developer's loop: changed source, restart, the new package is defined as the next
    // sequence and serves the same committed state.
    let index = source.join("index.js");
    let code = std::fs::read_to_string(&index).expect("read index.js");
    std::fs::write(&index, format!("{code}\n// changed by the test\n")).expect("edit index.js");
    let dev = start_dev(dir.path(), &source).await;
    let changed = &dev.info;
    assert_ne!(changed.package_id, info.package_id);
    assert_eq!(changed.sequence, 2);
    let read = gateway_client(dir.path(), &["read", "asset1"]).await;
    assert_eq!(read["value"], "first");
    interrupt(dev).await;
}
