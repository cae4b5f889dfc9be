//! `chaincode-operator dev` driven by Hyperledger's own `@hyperledger/fabric-gateway` client
//! (e2e/clients/gateway.js) over TLS: the real Node contract chaincode is packaged, installed and
//! defined through `_lifecycle`, transactions are endorsed, submitted and committed through the
//! Gateway, every committed block is read back over the peer's Deliver service (fabric-gateway's
//! block events with checkpointers that resume after a restart, fabric-common's EventService),
//! and the committed state survives a restart of the endorser.
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

/// What a block stream must show: exactly these block numbers in order (no gap, no duplicate)
/// and these transactions (id, block, validation code, event name) in them.
struct Expected {
    blocks: std::ops::RangeInclusive<u64>,
    txs: Vec<(Value, Option<u64>, &'static str, Option<&'static str>)>,
}

impl Expected {
    fn check(&self, blocks: &Value, what: &str) {
        let numbers: Vec<u64> = blocks
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no blocks: {blocks}"))
            .iter()
            .map(|b| b["number"].as_u64().expect("a block number"))
            .collect();
        assert_eq!(numbers, self.blocks.clone().collect::<Vec<_>>(), "{what}");
        for (tx_id, number, code, event) in &self.txs {
            let number = number.expect("a block number");
            let block = &blocks[(number - self.blocks.start()) as usize];
            let tx = block["txs"]
                .as_array()
                .and_then(|txs| txs.iter().find(|tx| tx["id"] == *tx_id))
                .unwrap_or_else(|| panic!("{what}: {tx_id} not in block {number}: {block}"));
            assert_eq!(tx["code"], *code, "{what}: {tx}");
            assert_eq!(tx["type"], "ENDORSER_TRANSACTION", "{what}: {tx}");
            if let Some(name) = event {
                let names: Vec<&str> = tx["events"]
                    .as_array()
                    .map(|events| {
                        events
                            .iter()
                            .filter_map(|e| e.as_str().or_else(|| e["name"].as_str()))
                            .collect()
                    })
                    .unwrap_or_default();
                assert_eq!(names, [*name], "{what}: {tx}");
            }
        }
    }
}

/// fabric-common's EventService from START to END (e2e/clients/events.js).
async fn event_service(dir: &Path, start: u64, end: u64, block_type: &str) -> Value {
    let clients = support::installed_e2e_dir("clients");
    let output = tokio::process::Command::new("node")
        .arg(clients.join("events.js"))
        .arg(dir.join("dev.json"))
        .args([start.to_string(), end.to_string(), block_type.to_string()])
        .current_dir(&clients)
        .output()
        .await
        .expect("run events.js");
    assert!(
        output.status.success(),
        "events.js failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("events.js prints JSON")
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

    // Every committed block over the peer's Deliver service, through fabric-gateway's three
    // block event streams (each with a file checkpointer) and fabric-common's EventService.
    let emit_block = event["blockNumber"]
        .as_u64()
        .expect("the event's block number");
    let checkpoint = dir.path().join("checkpoint");
    let checkpoint = checkpoint.to_str().expect("a UTF-8 path");
    let blocks = gateway_client(dir.path(), &["blocks", checkpoint, &emit_block.to_string()]).await;
    let expected = Expected {
        blocks: 0..=emit_block,
        txs: vec![
            (
                statuses[0]["transactionId"].clone(),
                statuses[0]["blockNumber"].as_u64(),
                "VALID",
                None,
            ),
            (
                statuses[1]["transactionId"].clone(),
                statuses[1]["blockNumber"].as_u64(),
                "MVCC_READ_CONFLICT",
                None,
            ),
            (
                seen["emitTransactionId"].clone(),
                Some(emit_block),
                "VALID",
                Some("created"),
            ),
        ],
    };
    for kind in ["full", "filtered", "private"] {
        expected.check(&blocks[kind], kind);
    }
    // Block 0 is the channel's config block; full blocks carry event payloads, filtered ones not.
    assert_eq!(blocks["full"][0]["txs"][0]["type"], "CONFIG", "{blocks}");
    assert_eq!(
        blocks["filtered"][0]["txs"][0]["type"], "CONFIG",
        "{blocks}"
    );
    let emitted = |kind: &str| blocks[kind][emit_block as usize]["txs"][0]["events"][0].clone();
    assert_eq!(emitted("full")["payloadLength"], "asset1".len());
    assert_eq!(emitted("filtered")["payloadLength"], 0);
    assert_eq!(
        blocks["private"][0]["privateDataEntries"], 0,
        "these transactions wrote no private data"
    );
    for block_type in ["full", "filtered", "private"] {
        let seen = event_service(dir.path(), 0, emit_block, block_type).await;
        expected.check(&seen["blocks"], &format!("EventService {block_type}"));
        let closed = seen["closed"].as_str().unwrap_or_default();
        assert!(closed.contains("end block"), "{seen}");
    }

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

    // The checkpointed block streams resume after the restart where they stopped: the new
    // transaction's block and nothing already seen.
    let put = gateway_client(dir.path(), &["put", "asset2", "v2"]).await;
    assert_eq!(put["code"], "VALID", "{put}");
    let put_block = put["blockNumber"].as_u64().expect("a block number");
    let resumed = gateway_client(dir.path(), &["blocks", checkpoint, &put_block.to_string()]).await;
    let expected = Expected {
        blocks: emit_block + 1..=put_block,
        txs: vec![(put["transactionId"].clone(), Some(put_block), "VALID", None)],
    };
    for kind in ["full", "filtered", "private"] {
        expected.check(&resumed[kind], &format!("resumed {kind}"));
    }
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

/// What a newcomer runs into before any chaincode works: a Go directory is told what to do, and
/// nothing is created for it; a second `dev` on the same directory names the first; the directory
/// keeps itself out of git; a chaincode that cannot start makes `dev` say so on the ready line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_says_what_is_wrong_before_and_at_ready() {
    let work = tempfile::tempdir().unwrap();

    // A Go chaincode directory: refused before crypto or a ledger exist.
    let go = work.path().join("gocc");
    std::fs::create_dir_all(&go).unwrap();
    std::fs::write(go.join("go.mod"), "module example.com/gocc\n\ngo 1.22\n").unwrap();
    let go_dir = work.path().join("go-state");
    let output = dev_command(&go_dir, &go, &[]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("dev runs Node chaincode; found go.mod") && stderr.contains("--ccaas"),
        "{stderr}"
    );
    assert!(!go_dir.exists(), "nothing created for refused input");

    // An invalid channel name: refused up front too.
    let bad_channel = work.path().join("bad-channel");
    let output = dev_command(
        &bad_channel,
        &go,
        &["--channel".into(), "My_Channel".into()],
    )
    .output()
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("channel name \"My_Channel\""));
    assert!(!bad_channel.exists());

    // One dev holds its directory; a second one on it is told who holds it.
    let dir = work.path().join("ccaas-state");
    let address = free_loopback_address();
    let first = spawn_dev(
        dev_ccaas_command(&dir, &address, "held", &[]),
        &dir,
        Duration::from_secs(60),
    )
    .await;
    let pid = first.child.id().unwrap();
    let output = dev_ccaas_command(&dir, &address, "held", &[])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!(
            "another chaincode-operator dev (pid {pid}) is using"
        )),
        "{stderr}"
    );
    let gitignore = std::fs::read_to_string(dir.join(".gitignore")).unwrap();
    assert!(gitignore.lines().any(|l| l == "*"), "{gitignore}");
    interrupt(first).await;

    // A Node chaincode whose start script exits at once: dev serves, but says it is not running.
    let broken = work.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("package.json"),
        r#"{"name":"broken","version":"1.0.0","scripts":{"start":"node -e \"console.error('boom'); process.exit(3)\""}}"#,
    )
    .unwrap();
    let state = work.path().join("broken-state");
    let dev = spawn_dev(
        dev_command(
            &state,
            &broken,
            &["--chaincode-listen".into(), "127.0.0.1:0".into()],
        ),
        &state,
        Duration::from_secs(180),
    )
    .await;
    let ready = dev.printed.last().cloned().unwrap_or_default();
    assert!(
        ready.starts_with("ready — chaincode NOT running: "),
        "{:?}",
        dev.printed
    );
    interrupt(dev).await;
}

/// Private data in Org1's implicit collection through the real contract API and fabric-gateway:
/// the value travels in the transient map, is committed to the node's private store, reads back
/// with its SHA-256 as GET_PRIVATE_DATA_HASH, and neither it nor the transient input is in the
/// committed block (only its hash is). A member of another trusted org gets neither read nor
/// write access, only the hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_data_in_an_implicit_collection_stays_out_of_the_block_and_away_from_other_orgs() {
    use base64::Engine;
    use chaincode_operator::endorser::ledger::rwset::sha256;
    use chaincode_operator::endorser::node::devcrypto::{self, DevCryptoSpec};
    use chaincode_operator::proto::kvrwset::KvrwSet;
    use prost::Message;

    support::installed_e2e_dir("clients");
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("src");
    copy_contract_source(&source);
    let org2_dir = dir.path().join("org2");
    let org2 = devcrypto::generate(
        &org2_dir,
        &DevCryptoSpec {
            mspid: "Org2MSP".into(),
            domain: "org2.example.com".into(),
            ..DevCryptoSpec::default()
        },
    )
    .expect("org2 crypto");
    let trust = format!("Org2MSP={}", org2.paths.endorser.dir.display());
    // An explicit collection as fabric-samples configure one: Org1's members only.
    let collections = dir.path().join("collections_config.json");
    std::fs::write(
        &collections,
        r#"[{"name": "assetCollection", "policy": "OR('Org1MSP.member')", "requiredPeerCount": 0,
             "maxPeerCount": 1, "blockToLive": 1000000, "memberOnlyRead": true,
             "memberOnlyWrite": true,
             "endorsementPolicy": {"signaturePolicy": "OR('Org1MSP.peer')"}},
            {"name": "bothOrgs", "policy": "OR('Org1MSP.member', 'Org2MSP.member')",
             "endorsementPolicy": {"signaturePolicy": "AND('Org1MSP.peer', 'Org2MSP.peer')"}}]"#,
    )
    .unwrap();
    let collections = collections.to_str().unwrap();
    let args = [
        "--chaincode-listen",
        "127.0.0.1:0",
        "--trust",
        &trust,
        "--collections",
        collections,
    ]
    .map(String::from);
    let mut command = dev_command(dir.path(), &source, &args);
    command.env("RUST_LOG", "warn");
    let dev = spawn_dev(command, dir.path(), Duration::from_secs(300)).await;

    let collection = "_implicit_org_Org1MSP";
    let value = "s3cr3t-transient-value";
    let seen = gateway_client(dir.path(), &["private", collection, "secret-key", value]).await;
    assert_eq!(seen["put"]["code"], "VALID", "{seen}");
    assert_eq!(seen["put"]["result"], "stored");
    assert_eq!(seen["get"], value);
    assert_eq!(
        seen["hash"],
        hex::encode(sha256(value.as_bytes())),
        "{seen}"
    );
    assert_eq!(seen["range"], serde_json::json!(["secret-key"]));
    assert_eq!(seen["delCode"], "VALID", "{seen}");
    assert_eq!(seen["afterDelete"], "");
    assert_eq!(seen["hashAfterDelete"], "");
    assert_eq!(seen["putAgainCode"], "VALID", "{seen}");
    assert_eq!(seen["purgeCode"], "VALID", "{seen}");
    assert_eq!(seen["afterPurge"], "");
    assert_eq!(seen["hashAfterPurge"], "");

    let block = base64::engine::general_purpose::STANDARD
        .decode(seen["block"].as_str().expect("the put's block"))
        .expect("base64 block");
    let contains = |needle: &[u8]| block.windows(needle.len()).any(|w| w == needle);
    assert!(
        !contains(value.as_bytes()),
        "the private value is not in the block"
    );
    assert!(contains(&sha256(value.as_bytes())), "its hash is");
    assert!(contains(collection.as_bytes()));

    // DeliverWithPrivateData hands Org1 the put's private write set, with the clear value.
    let private_block = &seen["privateBlock"];
    let put_block = seen["put"]["blockNumber"]
        .as_u64()
        .expect("the put's block");
    assert_eq!(private_block["number"].as_u64(), Some(put_block), "{seen}");
    let entries = private_block["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{private_block}");
    assert_eq!(entries[0]["index"], 0);
    assert_eq!(entries[0]["namespace"], "basic");
    assert_eq!(entries[0]["collection"], collection);
    let rwset = base64::engine::general_purpose::STANDARD
        .decode(entries[0]["rwset"].as_str().unwrap())
        .unwrap();
    let rwset = KvrwSet::decode(rwset.as_slice()).expect("a KVRWSet");
    assert_eq!(rwset.writes[0].key, "secret-key");
    assert_eq!(rwset.writes[0].value, value.as_bytes());

    // The explicit collection works the same way.
    let explicit = gateway_client(
        dir.path(),
        &["private", "assetCollection", "asset1", "blue"],
    )
    .await;
    assert_eq!(explicit["put"]["code"], "VALID", "{explicit}");
    assert_eq!(explicit["get"], "blue");
    assert_eq!(explicit["hash"], hex::encode(sha256(b"blue")));

    // A collection whose own endorsement policy needs Org2's peer too: this node (Org1's) alone
    // cannot endorse writes to it.
    let both = gateway_client(dir.path(), &["private", "bothOrgs", "k", "v"]).await;
    assert_eq!(both["put"]["code"], "ENDORSEMENT_POLICY_FAILURE", "{both}");
    assert_eq!(both["get"], "");

    // An Org2 client, on the same node.
    let org2_client = dir.path().join("org2-client");
    std::fs::create_dir_all(&org2_client).unwrap();
    let mut info = serde_json::to_value(&dev.info).unwrap();
    info["mspId"] = "Org2MSP".into();
    info["certPath"] = org2.paths.user.cert.to_str().unwrap().into();
    info["keyPath"] = org2.paths.user.key.to_str().unwrap().into();
    std::fs::write(org2_client.join("dev.json"), info.to_string()).unwrap();
    // Org1 stores "x" under `kept` (getPrivate evaluates, then submits putPrivate "x").
    let own = gateway_client(dir.path(), &["getPrivate", collection, "kept"]).await;
    assert_eq!(own["submit"]["value"], "stored", "{own}");
    // Org2 is not a member of Org1's implicit collection: no private data for it in that block.
    let put_block = put_block.to_string();
    let stranger_block = gateway_client(&org2_client, &["privateBlock", &put_block]).await;
    assert_eq!(
        stranger_block["entries"],
        serde_json::json!([]),
        "{stranger_block}"
    );
    let stranger = gateway_client(&org2_client, &["getPrivate", collection, "kept"]).await;
    let read_error = stranger["evaluate"]["error"].to_string();
    assert!(
        read_error.contains("does not have read access"),
        "{stranger}"
    );
    let write_error = stranger["submit"]["error"].to_string();
    assert!(
        write_error.contains("does not have write access"),
        "{stranger}"
    );
    // The hash is public.
    assert_eq!(stranger["hash"], hex::encode(sha256(b"x")), "{stranger}");
    let own = gateway_client(dir.path(), &["getPrivate", collection, "kept"]).await;
    assert_eq!(own["evaluate"]["value"], "x", "{own}");
    let stranger = gateway_client(&org2_client, &["getPrivate", "assetCollection", "asset1"]).await;
    assert!(
        stranger["evaluate"]["error"]
            .to_string()
            .contains("does not have read access"),
        "{stranger}"
    );
    assert!(
        stranger["submit"]["error"]
            .to_string()
            .contains("does not have write access"),
        "{stranger}"
    );
    // Not a collection of this chaincode.
    let unknown = gateway(dir.path(), &["getPrivate", "nope", "k"])
        .await
        .unwrap_err();
    assert!(
        unknown.contains("collection \"nope\" is not defined for chaincode \"basic\""),
        "{unknown}"
    );
    interrupt(dev).await;
}
