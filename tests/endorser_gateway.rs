//! `chaincode-operator dev` driven by Hyperledger's own `@hyperledger/fabric-gateway` client
//! (e2e/clients/gateway.js) over TLS: the real Node contract chaincode is packaged, installed and
//! defined through `_lifecycle`, transactions are endorsed, submitted and committed through the
//! Gateway, and the committed state survives a restart of the endorser.
mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::dev::{
    Dev, copy_contract_source, dev_ccaas_command, dev_command, free_loopback_address, gateway,
    interrupt, kill, node_chaincode_server, spawn_dev, wait_listening,
};

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

/// Chaincode-as-a-service with Hyperledger's Node shim as the server: `dev --ccaas ADDRESS`
/// prints the package id, `fabric-chaincode-node server --chaincode-id <it>` is started by hand,
/// and the endorser dials it. fabric-gateway submits, evaluates, sees an MVCC conflict and an
/// event. Killed, the next invoke fails after the dial timeout naming the address; started
/// again, the next invoke dials it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccaas_node_chaincode_server_is_dialled_endorsed_committed_and_redialled() {
    support::installed_e2e_dir("clients");
    let dir = tempfile::tempdir().expect("tempdir");
    let address = free_loopback_address();
    let command = dev_ccaas_command(dir.path(), &address, "basic", &[]);
    let dev = spawn_dev(command, dir.path(), Duration::from_secs(120)).await;
    let package_id = dev.info.package_id.clone();
    assert!(package_id.starts_with("basic:"), "{package_id}");
    assert_eq!(dev.info.ccaas_address.as_deref(), Some(address.as_str()));
    assert!(
        dev.printed
            .iter()
            .any(|l| l.contains(&format!("CHAINCODE_ID={package_id}"))),
        "the package id to start the server with is printed: {:?}",
        dev.printed
    );

    let mut server = node_chaincode_server(&address, &package_id, &[]).await;
    let seen = gateway_client(dir.path(), &["run", "ccaas1"]).await;
    assert_eq!(seen["submitResult"], "ok");
    assert_eq!(seen["evaluated"], "v1");
    assert_eq!(seen["statuses"][0]["code"], "VALID");
    assert_eq!(seen["statuses"][1]["code"], "MVCC_READ_CONFLICT");
    assert_eq!(seen["afterConflict"], "first");
    assert_eq!(seen["emitStatus"], "VALID");
    assert_eq!(seen["event"]["chaincodeName"], "basic");
    assert_eq!(seen["event"]["payload"], "ccaas1");

    kill(&mut server).await;
    let started = std::time::Instant::now();
    let err = gateway(dir.path(), &["read", "ccaas1"])
        .await
        .expect_err("no chaincode server");
    let took = started.elapsed();
    assert!(
        err.contains(&format!(
            "could not connect to the chaincode server at {address} within the dial timeout of 10s"
        )),
        "{err}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");

    let mut server = node_chaincode_server(&address, &package_id, &[]).await;
    let read = gateway_client(dir.path(), &["read", "ccaas1"]).await;
    assert_eq!(read["value"], "first");
    kill(&mut server).await;
    interrupt(dev).await;
}

/// Chaincode-as-a-service in Python: Hyperledger's fabric-chaincode-python shim (PyPI, pinned in
/// e2e/chaincodes/python/requirements.txt; it only runs as a server) behind `dev --ccaas`,
/// endorsed and committed twice through fabric-gateway. (Its 2.5.4 handler never sends chaincode
/// events, so the event part of `run` is not asked of it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccaas_python_chaincode_server_is_endorsed_and_committed() {
    let python = match support::python_chaincode_env() {
        Ok(python) => python,
        Err(why) => {
            eprintln!("skipped ccaas_python_chaincode_server_is_endorsed_and_committed: {why}");
            return;
        }
    };
    support::installed_e2e_dir("clients");
    let dir = tempfile::tempdir().expect("tempdir");
    let address = free_loopback_address();
    let command = dev_ccaas_command(dir.path(), &address, "pycc", &[]);
    let dev = spawn_dev(command, dir.path(), Duration::from_secs(120)).await;
    let mut server = tokio::process::Command::new(python)
        .arg(support::e2e_dir("chaincodes/python/chaincode.py"))
        .env("CHAINCODE_ID", &dev.info.package_id)
        .env("CHAINCODE_SERVER_ADDRESS", &address)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python chaincode server");
    wait_listening(&address).await;

    let first = gateway_client(dir.path(), &["submit", "py1", "hello"]).await;
    assert_eq!(first["submitResult"], "ok");
    assert_eq!(first["status"], "VALID");
    assert_eq!(first["evaluated"], "hello");
    let second = gateway_client(dir.path(), &["submit", "py1", "again"]).await;
    assert_eq!(second["status"], "VALID");
    assert_eq!(second["evaluated"], "again");
    assert_eq!(
        second["blockNumber"].as_i64(),
        first["blockNumber"].as_i64().map(|n| n + 1)
    );
    kill(&mut server).await;
    interrupt(dev).await;
}
