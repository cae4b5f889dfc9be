//! The ChaincodeSupport service against the real Node chaincode libraries (fabric-shim and
//! fabric-contract-api 2.5.x): chaincodes started by hand in plaintext, a DevModeGate, transactions
//! driven through ChaincodeHandle::execute and committed with WorldState::commit_block.
mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chaincode_operator::endorser::handle::{
    ChaincodeHandle, ExecuteError, ExecuteOutcome, ExecuteRequest,
};
use chaincode_operator::endorser::handler::TxKind;
use chaincode_operator::endorser::ledger::{CommitTx, TxSimulator, WorldState};
use chaincode_operator::endorser::registration::DevModeGate;
use chaincode_operator::endorser::support::{ChaincodeSupportService, SupportConfig};
use chaincode_operator::proto::kvrwset::KvrwSet;
use chaincode_operator::proto::protos::{ChaincodeInput, TxValidationCode};
use chaincode_operator::proto::rwset::TxReadWriteSet;
use prost::Message;
use serde_json::Value;
use tokio::process::{Child, Command};

const CHANNEL: &str = "mychannel";
static TX_COUNTER: AtomicU64 = AtomicU64::new(1);

struct Peer {
    gate: Arc<DevModeGate>,
    world: WorldState,
    port: u16,
    _dir: tempfile::TempDir,
}

async fn start_peer(config: SupportConfig) -> Peer {
    let dir = tempfile::tempdir().unwrap();
    let world = WorldState::open(&dir.path().join("state.redb")).unwrap();
    let gate = Arc::new(DevModeGate::new());
    let service = ChaincodeSupportService::new(gate.clone(), gate.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Peer {
        gate,
        world,
        port,
        _dir: dir,
    }
}

fn install(dir: &str) -> std::path::PathBuf {
    let dir = support::e2e_dir(dir);
    support::npm_ci(&dir);
    dir
}

/// Starts a chaincode the way a peer's launcher would, in plaintext.
fn spawn_chaincode(dir: &Path, package_id: &str, port: u16, contract: bool) -> Child {
    let mut cmd = Command::new("node");
    if contract {
        cmd.arg("node_modules/fabric-shim/cli.js").arg("start");
    } else {
        cmd.arg("index.js");
    }
    cmd.arg("--peer.address")
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(dir)
        .env("CORE_CHAINCODE_ID_NAME", package_id)
        .env("CORE_PEER_TLS_ENABLED", "false")
        .env("CORE_CHAINCODE_LOGGING_LEVEL", "warning")
        .kill_on_drop(true);
    cmd.spawn().expect("spawn node chaincode")
}

fn next_txid() -> String {
    format!("tx{:04}", TX_COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn request(sim: &TxSimulator, name: &str, kind: TxKind, args: &[&str]) -> ExecuteRequest {
    ExecuteRequest {
        channel_id: CHANNEL.into(),
        txid: sim.tx_id().to_string(),
        kind,
        chaincode_name: name.into(),
        input: ChaincodeInput {
            args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            ..Default::default()
        },
        proposal: Some(support::signed_proposal(CHANNEL, sim.tx_id(), args)),
        simulator: sim.clone(),
    }
}

struct Done {
    txid: String,
    outcome: ExecuteOutcome,
    rwset: Option<TxReadWriteSet>,
}

impl Done {
    fn payload(&self) -> String {
        String::from_utf8(self.outcome.response.payload.clone()).unwrap()
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.payload())
            .unwrap_or_else(|e| panic!("{e}: {:?}", self.outcome.response))
    }
    fn kv(&self, ns: &str) -> KvrwSet {
        let set = self
            .rwset
            .as_ref()
            .expect("rwset of a successful transaction");
        let ns = set
            .ns_rwset
            .iter()
            .find(|n| n.namespace == ns)
            .unwrap_or_else(|| panic!("namespace {ns} in rwset"));
        KvrwSet::decode(ns.rwset.as_slice()).unwrap()
    }
}

/// Executes one transaction and commits its write set as a block when it succeeded.
async fn run(
    world: &WorldState,
    h: &ChaincodeHandle,
    name: &str,
    kind: TxKind,
    args: &[&str],
) -> Done {
    let txid = next_txid();
    let sim = TxSimulator::new(world.clone(), CHANNEL, &txid);
    let outcome = h
        .execute(request(&sim, name, kind, args))
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let rwset = sim.results().ok();
    if let Some(set) = &rwset {
        let block = world
            .commit_block(
                CHANNEL,
                &[CommitTx {
                    tx_id: &txid,
                    timestamp: prost_types::Timestamp::default(),
                    rwset: set,
                }],
            )
            .unwrap();
        assert_eq!(block.validation, [TxValidationCode::Valid], "{args:?}");
    }
    Done {
        txid,
        outcome,
        rwset,
    }
}

async fn ready(peer: &Peer, name: &str) -> ChaincodeHandle {
    peer.gate
        .wait_ready(name, Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("chaincode {name} did not register"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_and_shim_chaincodes_serve_state_queries_events_and_errors() {
    let contract_dir = install("chaincodes/contract");
    let shim_dir = install("chaincodes/shim");
    let peer = start_peer(SupportConfig::default()).await;
    let _contract = spawn_chaincode(&contract_dir, "contractcc:1.0", peer.port, true);
    let _shim = spawn_chaincode(&shim_dir, "shimcc:1.0", peer.port, false);
    let cc = ready(&peer, "contractcc").await;
    let low = ready(&peer, "shimcc").await;
    let w = &peer.world;
    let t = TxKind::Transaction;

    // INIT through the contract API.
    let init = run(w, &cc, "contractcc", TxKind::Init, &["initLedger"]).await;
    assert_eq!(
        init.outcome.response.status, 200,
        "{:?}",
        init.outcome.response
    );
    assert_eq!(init.payload(), "initialized");
    assert_eq!(init.kv("contractcc").writes[0].key, "init");

    // put then get: the read carries the version of the block that wrote the key.
    let put = run(w, &cc, "contractcc", t, &["put", "k1", "v1"]).await;
    assert_eq!(put.outcome.response.status, 200);
    let writes = put.kv("contractcc").writes;
    assert_eq!(
        (writes[0].key.as_str(), writes[0].value.as_slice()),
        ("k1", &b"v1"[..])
    );
    let put_block = w.height(CHANNEL).unwrap() - 1;
    let get = run(w, &cc, "contractcc", t, &["get", "k1"]).await;
    assert_eq!(get.payload(), "v1");
    let reads = get.kv("contractcc").reads;
    assert_eq!(reads[0].key, "k1");
    assert_eq!(reads[0].version.unwrap().block_num, put_block);

    // Range across several QUERY_STATE_NEXT batches (250 keys, 100 per batch).
    run(w, &cc, "contractcc", t, &["putMany", "r", "250"]).await;
    let range = run(w, &cc, "contractcc", t, &["range", "r", "s"]).await;
    let keys: Vec<String> = serde_json::from_value(range.json()).unwrap();
    assert_eq!(keys.len(), 250);
    assert_eq!((keys[0].as_str(), keys[249].as_str()), ("r0000", "r0249"));
    let info = &range.kv("contractcc").range_queries_info;
    assert_eq!(info.len(), 1);
    assert!(info[0].itr_exhausted);

    // Paged range: page size and bookmark.
    let page1 = run(w, &cc, "contractcc", t, &["rangePage", "r", "s", "30", ""])
        .await
        .json();
    assert_eq!(page1["keys"].as_array().unwrap().len(), 30);
    assert_eq!(page1["fetched"], 30);
    assert_eq!(page1["bookmark"], "r0030");
    let page2 = run(
        w,
        &cc,
        "contractcc",
        t,
        &["rangePage", "r", "s", "30", "r0030"],
    )
    .await
    .json();
    assert_eq!(page2["keys"][0], "r0030");
    let last = run(
        w,
        &cc,
        "contractcc",
        t,
        &["rangePage", "r", "s", "30", "r0240"],
    )
    .await
    .json();
    assert_eq!(last["keys"].as_array().unwrap().len(), 10);
    assert_eq!(last["bookmark"], "");

    // Delete, then the key's history, newest first.
    let del = run(w, &cc, "contractcc", t, &["del", "k1"]).await;
    assert!(del.kv("contractcc").writes[0].is_delete);
    assert_eq!(
        run(w, &cc, "contractcc", t, &["get", "k1"]).await.payload(),
        ""
    );
    let history = run(w, &cc, "contractcc", t, &["history", "k1"])
        .await
        .json();
    assert_eq!(history[0]["txId"], del.txid.as_str());
    assert_eq!(history[0]["isDelete"], true);
    assert_eq!(history[1]["txId"], put.txid.as_str());
    assert_eq!(history[1]["value"], "v1");

    // Event: the peer side fills chaincode_id and tx_id.
    let ev = run(w, &cc, "contractcc", t, &["emit", "Transfer", "payload-1"]).await;
    let event = ev.outcome.event.clone().expect("event");
    assert_eq!(event.chaincode_id, "contractcc");
    assert_eq!(event.tx_id, ev.txid);
    assert_eq!(event.event_name, "Transfer");
    assert_eq!(event.payload, b"payload-1");

    // Failure: status 500, and the transaction's write is gone.
    let txid = next_txid();
    let sim = TxSimulator::new(w.clone(), CHANNEL, &txid);
    let failed = cc
        .execute(request(&sim, "contractcc", t, &["fail", "boom"]))
        .await
        .unwrap();
    assert_eq!(failed.response.status, 500);
    assert!(
        failed.response.message.contains("boom"),
        "{}",
        failed.response.message
    );
    assert!(
        sim.results().is_err(),
        "a failed transaction must not hand out writes"
    );
    assert!(
        w.get(CHANNEL, "contractcc", "failed-write")
            .unwrap()
            .is_none()
    );

    // Creator from the signed proposal.
    let me = run(w, &cc, "contractcc", t, &["whoami"]).await.json();
    assert_eq!(me["mspid"], "Org1MSP");
    assert!(me["id"].as_str().unwrap().starts_with("x509::"));

    // Rich query: a clear refusal.
    let txid = next_txid();
    let sim = TxSimulator::new(w.clone(), CHANNEL, &txid);
    let rich = cc
        .execute(request(
            &sim,
            "contractcc",
            t,
            &["richQuery", "{\"selector\":{}}"],
        ))
        .await
        .unwrap();
    assert_eq!(rich.response.status, 500);
    assert!(
        rich.response
            .message
            .contains("rich queries are not supported by this state database")
    );

    // Contract calls the low-level chaincode in the same simulation.
    let call = run(
        w,
        &cc,
        "contractcc",
        t,
        &["callOther", "shimcc", "put", "x", "y"],
    )
    .await;
    assert_eq!(call.json()["status"], 200);
    assert_eq!(call.json()["payload"], "ok");
    let x = call.kv("shimcc").writes;
    assert_eq!((x[0].key.as_str(), x[0].value.as_slice()), ("x", &b"y"[..]));
    assert_eq!(w.get(CHANNEL, "shimcc", "x").unwrap().unwrap().value, b"y");

    // Another channel: the callee reads that channel's state and its writes are dropped.
    let far = run(
        w,
        &cc,
        "contractcc",
        t,
        &["callOtherOn", "shimcc", "otherchannel", "put", "x", "far"],
    )
    .await;
    assert_eq!(far.json()["status"], 200);
    let far_set = far.rwset.as_ref().unwrap();
    assert!(
        far_set.ns_rwset.iter().all(|n| n.namespace != "shimcc"),
        "{far_set:?}"
    );
    assert!(w.get("otherchannel", "shimcc", "x").unwrap().is_none());
    let far_get = run(
        w,
        &cc,
        "contractcc",
        t,
        &["callOtherOn", "shimcc", "otherchannel", "get", "x", ""],
    )
    .await;
    assert_eq!(far_get.json()["payload"], "");

    // The low-level shim chaincode on its own.
    let init = run(w, &low, "shimcc", TxKind::Init, &["init"]).await;
    assert_eq!(init.payload(), "initialized");
    assert_eq!(
        run(w, &low, "shimcc", t, &["get", "x"]).await.payload(),
        "y"
    );
    assert_eq!(
        run(w, &low, "shimcc", t, &["whoami"]).await.payload(),
        "Org1MSP"
    );
    run(w, &low, "shimcc", t, &["put", "x", "z"]).await;
    let h = run(w, &low, "shimcc", t, &["history", "x"]).await.json();
    assert_eq!(
        (h[0]["value"].as_str(), h[1]["value"].as_str()),
        (Some("z"), Some("y"))
    );
    let low_ev = run(w, &low, "shimcc", t, &["emit", "E", "p"]).await;
    assert_eq!(
        low_ev.outcome.event.as_ref().unwrap().chaincode_id,
        "shimcc"
    );
    let txid = next_txid();
    let sim = TxSimulator::new(w.clone(), CHANNEL, &txid);
    let failed = low
        .execute(request(&sim, "shimcc", t, &["fail", "nope"]))
        .await
        .unwrap();
    assert_eq!(
        (failed.response.status, failed.response.message.as_str()),
        (500, "nope")
    );
    assert!(sim.results().is_err());

    // Many concurrent transactions on one stream, and a duplicate (channel, txid) refused.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (cc, w) = (cc.clone(), w.clone());
        tasks.push(tokio::spawn(async move {
            let txid = format!("parallel-{i}");
            let sim = TxSimulator::new(w, CHANNEL, &txid);
            cc.execute(request(
                &sim,
                "contractcc",
                TxKind::Transaction,
                &["get", "init"],
            ))
            .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().response.payload, b"done");
    }
    let sim = TxSimulator::new(w.clone(), CHANNEL, "dup-tx");
    let slow = {
        let (cc, req) = (
            cc.clone(),
            request(&sim, "contractcc", t, &["sleep", "700"]),
        );
        tokio::spawn(async move { cc.execute(req).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sim2 = TxSimulator::new(w.clone(), CHANNEL, "dup-tx");
    let dup = cc
        .execute(request(&sim2, "contractcc", t, &["get", "init"]))
        .await;
    assert!(
        matches!(dup, Err(ExecuteError::Duplicate { .. })),
        "{dup:?}"
    );
    assert_eq!(slow.await.unwrap().unwrap().response.payload, b"awake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_and_crash_fail_the_transaction_and_leave_no_writes() {
    let contract_dir = install("chaincodes/contract");
    let peer = start_peer(SupportConfig {
        execute_timeout: Duration::from_millis(1500),
    })
    .await;
    let mut child = spawn_chaincode(&contract_dir, "slowcc:1.0", peer.port, true);
    let cc = ready(&peer, "slowcc").await;
    let w = &peer.world;

    // Timeout: that transaction fails, its write is dropped, the next one works.
    let sim = TxSimulator::new(w.clone(), CHANNEL, "slow-1");
    let res = cc
        .execute(request(
            &sim,
            "slowcc",
            TxKind::Transaction,
            &["sleep", "4000"],
        ))
        .await;
    assert!(matches!(res, Err(ExecuteError::Timeout(_))), "{res:?}");
    assert!(sim.results().is_err());
    let ok = run(w, &cc, "slowcc", TxKind::Transaction, &["put", "a", "b"]).await;
    assert_eq!(ok.outcome.response.status, 200);

    // Crash mid-transaction: clear error, no writes, the registration is gone.
    let sim = TxSimulator::new(w.clone(), CHANNEL, "crash-1");
    let pending = {
        let (cc, req) = (
            cc.clone(),
            request(&sim, "slowcc", TxKind::Transaction, &["sleep", "1000"]),
        );
        tokio::spawn(async move { cc.execute(req).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().await.unwrap();
    let res = pending.await.unwrap();
    assert!(
        matches!(res, Err(ExecuteError::ChaincodeGone(_))),
        "{res:?}"
    );
    assert!(sim.results().is_err());
    assert!(w.get(CHANNEL, "slowcc", "slept").unwrap().is_none());
    assert!(peer.gate.wait_gone("slowcc", Duration::from_secs(10)).await);
    assert!(!cc.is_connected());
}
