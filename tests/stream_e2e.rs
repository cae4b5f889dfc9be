//! End to end through the launcher and the process runtime: the real Node chaincodes
//! (fabric-contract-api and fabric-shim 2.5.x, installed from the committed lockfiles) are built and
//! started by the process runtime when a transaction needs them, register with the ChaincodeSupport
//! service whose gate is the launcher, and serve transactions. Plaintext and mutual TLS.
mod support;

use std::collections::HashMap;
use std::time::Duration;

use chaincode_operator::endorser::chaincode::handle::ExecuteError;
use chaincode_operator::endorser::chaincode::handler::TxKind;
use chaincode_operator::endorser::ledger::TxSimulator;
use support::peer::{LaunchingPeer, PeerOptions};
use support::procs::{chaincode_group, chaincode_pids};
use support::tx::{CHANNEL, next_txid, request, run};

fn contract_source() -> std::path::PathBuf {
    support::installed_e2e_dir("chaincodes/contract")
}

fn shim_source() -> std::path::PathBuf {
    support::installed_e2e_dir("chaincodes/shim")
}

/// INIT, put/get/delete, a range over several QUERY_STATE_NEXT batches, paging, history, an event,
/// status 500, and calls from the contract chaincode into the shim chaincode, which the first call
/// launches on demand.
async fn drive_both_chaincodes(peer: &LaunchingPeer, contract_pkg: &str, shim_pkg: &str) {
    peer.install("contractcc", contract_pkg, &contract_source());
    peer.install("shimcc", shim_pkg, &shim_source());
    let cc = peer.handle(contract_pkg).await;
    assert!(
        !peer.launcher.is_running(shim_pkg),
        "launched only on demand"
    );
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
    assert!(get.kv("contractcc").writes.is_empty());

    // Range across several QUERY_STATE_NEXT batches (250 keys, 100 per batch).
    run(w, &cc, "contractcc", t, &["putMany", "r", "250"]).await;
    let range = run(w, &cc, "contractcc", t, &["range", "r", "s"]).await;
    let keys: Vec<String> = serde_json::from_value(range.json()).unwrap();
    assert_eq!(keys.len(), 250);
    assert_eq!((keys[0].as_str(), keys[249].as_str()), ("r0000", "r0249"));
    let info = &range.kv("contractcc").range_queries_info;
    assert_eq!(info.len(), 1);
    assert_eq!(
        (info[0].start_key.as_str(), info[0].end_key.as_str()),
        ("r", "s")
    );
    assert!(info[0].itr_exhausted);

    // Paged range: page size and bookmark.
    let page1 = run(w, &cc, "contractcc", t, &["rangePage", "r", "s", "30", ""])
        .await
        .json();
    assert_eq!(page1["keys"].as_array().unwrap().len(), 30);
    assert_eq!(page1["fetched"], 30);
    assert_eq!(page1["bookmark"], "r0030");
    let last = run(
        w,
        &cc,
        "contractcc",
        t,
        &["rangePage", "r", "s", "30", "r0240"],
    )
    .await
    .json();
    assert_eq!(last["keys"][0], "r0240");
    assert_eq!(last["keys"].as_array().unwrap().len(), 10);
    assert_eq!(last["bookmark"], "");

    // Delete, then the key's history over the committed blocks, newest first.
    let del = run(w, &cc, "contractcc", t, &["del", "k1"]).await;
    assert!(del.kv("contractcc").writes[0].is_delete);
    assert_eq!(
        run(w, &cc, "contractcc", t, &["get", "k1"]).await.payload(),
        ""
    );
    let history = run(w, &cc, "contractcc", t, &["history", "k1"])
        .await
        .json();
    assert_eq!(history.as_array().unwrap().len(), 2);
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

    // Creator from the signed proposal; rich queries are refused clearly.
    let me = run(w, &cc, "contractcc", t, &["whoami"]).await.json();
    assert_eq!(me["mspid"], "Org1MSP");
    assert!(me["id"].as_str().unwrap().starts_with("x509::"));
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
            .contains("rich queries are not supported by this state database"),
        "{}",
        rich.response.message
    );

    // The contract calls the shim chaincode, which is launched for it, in the same simulation.
    let call = run(
        w,
        &cc,
        "contractcc",
        t,
        &["callOther", "shimcc", "put", "x", "y"],
    )
    .await;
    assert_eq!(call.json()["status"], 200, "{:?}", call.outcome.response);
    assert_eq!(call.json()["payload"], "ok");
    let x = call.kv("shimcc").writes;
    assert_eq!((x[0].key.as_str(), x[0].value.as_slice()), ("x", &b"y"[..]));
    assert_eq!(w.get(CHANNEL, "shimcc", "x").unwrap().unwrap().value, b"y");
    assert!(peer.launcher.is_running(shim_pkg));

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

    // The low-level shim chaincode directly, through the same launch.
    let low = peer.handle(shim_pkg).await;
    let init = run(w, &low, "shimcc", TxKind::Init, &["init"]).await;
    assert_eq!(init.payload(), "initialized");
    assert_eq!(
        run(w, &low, "shimcc", t, &["whoami"]).await.payload(),
        "Org1MSP"
    );
    assert_eq!(
        run(w, &low, "shimcc", t, &["get", "x"]).await.payload(),
        "y"
    );
    run(w, &low, "shimcc", t, &["put", "x", "z"]).await;
    run(w, &low, "shimcc", t, &["del", "x"]).await;
    let h = run(w, &low, "shimcc", t, &["history", "x"]).await.json();
    assert_eq!(h.as_array().unwrap().len(), 3, "{h}");
    assert_eq!(
        (h[1]["value"].as_str(), h[2]["value"].as_str()),
        (Some("z"), Some("y"))
    );
    let range = run(w, &low, "shimcc", t, &["range", "r", "s"]).await;
    assert_eq!(
        range.json().as_array().unwrap().len(),
        0,
        "namespaces are apart"
    );
    let low_ev = run(w, &low, "shimcc", t, &["emit", "E", "p"]).await;
    let low_event = low_ev.outcome.event.as_ref().expect("event");
    assert_eq!(
        (low_event.chaincode_id.as_str(), low_event.tx_id.as_str()),
        ("shimcc", low_ev.txid.as_str())
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

    // Many concurrent transactions on one stream.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (cc, w) = (cc.clone(), w.clone());
        tasks.push(tokio::spawn(async move {
            let sim = TxSimulator::new(w, CHANNEL, &format!("parallel-{i}"));
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

    // A second transaction with an in-flight (channel, txid) is refused.
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
    peer.launcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_launches_both_chaincodes_through_the_process_runtime() {
    let peer = LaunchingPeer::start(PeerOptions::new(false)).await;
    drive_both_chaincodes(&peer, "contractcc:e2e-plain", "shimcc:e2e-plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_launches_both_chaincodes_through_the_process_runtime() {
    let peer = LaunchingPeer::start(PeerOptions::new(true)).await;
    drive_both_chaincodes(&peer, "contractcc:e2e-tls", "shimcc:e2e-tls").await;
}

/// The environment of a live process.
fn environ(pid: u32) -> HashMap<String, String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    raw.split(|b| *b == 0)
        .filter_map(|var| {
            let (k, v) = std::str::from_utf8(var).ok()?.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Starts the shim chaincode by hand with exactly `env`.
fn spawn_shim_with(env: &HashMap<String, String>) -> tokio::process::Child {
    tokio::process::Command::new("node")
        .arg("index.js")
        .arg("--peer.address")
        .arg(&env["CORE_PEER_ADDRESS"])
        .current_dir(shim_source())
        .env_clear()
        .envs(env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node")
}

async fn wait_for_pid(package_id: &str) -> u32 {
    for _ in 0..1200 {
        if let Some(pid) = chaincode_pids(package_id).first() {
            return *pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no process of {package_id} started");
}

/// A chaincode process presenting launch A's certificate while registering as launch B's
/// chaincode is refused; the same process with B's own files registers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaincode_presenting_another_launchs_certificate_is_refused() {
    let peer = LaunchingPeer::start(PeerOptions::new(true)).await;
    let (a, b) = ("shimcc:cert-a", "sleeper:cert-b");
    peer.install("shimcc", a, &shim_source());
    // B's instance starts and never registers, so its launch stays pending with B's certificate.
    let sleeper = peer.dir.path().join("sleeper");
    std::fs::create_dir_all(&sleeper).unwrap();
    std::fs::write(sleeper.join("build.sh"), "true\n").unwrap();
    std::fs::write(sleeper.join("start.sh"), "exec sleep 600\n").unwrap();
    peer.install("sleeper", b, &sleeper);

    peer.handle(a).await;
    let a_env = environ(wait_for_pid(a).await);
    assert_eq!(a_env["CORE_PEER_TLS_ENABLED"], "true");
    let b_launch = {
        let launcher = peer.launcher.clone();
        tokio::spawn(async move { launcher.ensure_registered(b).await })
    };
    let b_env = environ(wait_for_pid(b).await);
    assert_ne!(
        a_env["CORE_TLS_CLIENT_CERT_PATH"],
        b_env["CORE_TLS_CLIENT_CERT_PATH"]
    );

    let mut impostor_env = a_env.clone();
    impostor_env.insert("CORE_CHAINCODE_ID_NAME".into(), b.into());
    let impostor = spawn_shim_with(&impostor_env);
    let output = tokio::time::timeout(Duration::from_secs(60), impostor.wait_with_output())
        .await
        .expect("the refused chaincode exits")
        .unwrap();
    // fabric-shim 2.5 logs the peer's answer to REGISTER (ERROR = type 7) and exits, with status 0.
    let log = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(
        log.contains("can only process messages of type \"registered\", but received \"7\""),
        "{log}"
    );
    assert!(!peer.launcher.is_running(b));
    assert!(
        !b_launch.is_finished(),
        "launch B still waits for its own chaincode"
    );

    // Control: the same chaincode with B's own certificate is accepted.
    let _genuine = spawn_shim_with(&b_env);
    let handle = tokio::time::timeout(Duration::from_secs(60), b_launch)
        .await
        .expect("B registers")
        .unwrap()
        .expect("launch B succeeds");
    let done = run(
        &peer.world,
        &handle,
        "sleeper",
        TxKind::Transaction,
        &["put", "k", "v"],
    )
    .await;
    assert_eq!(done.outcome.response.status, 200);
    peer.launcher.shutdown().await;
}

/// Killing the chaincode's process group mid-transaction: that transaction fails with a clear
/// error and leaves no writes; the next call relaunches the chaincode as a new process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaincode_killed_mid_transaction_is_relaunched_by_the_next_call() {
    let peer = LaunchingPeer::start(PeerOptions::new(false)).await;
    let pkg = "contractcc:e2e-kill";
    peer.install("contractcc", pkg, &contract_source());
    let cc = peer.handle(pkg).await;
    let w = &peer.world;
    let ok = run(
        w,
        &cc,
        "contractcc",
        TxKind::Transaction,
        &["put", "a", "b"],
    )
    .await;
    assert_eq!(ok.outcome.response.status, 200);
    let first_group = chaincode_group(pkg);

    let sim = TxSimulator::new(w.clone(), CHANNEL, "killed-1");
    let pending = {
        let (cc, req) = (
            cc.clone(),
            request(&sim, "contractcc", TxKind::Transaction, &["sleep", "5000"]),
        );
        tokio::spawn(async move { cc.execute(req).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pgid = nix::unistd::Pid::from_raw(i32::try_from(first_group).unwrap());
    nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL).unwrap();

    let res = pending.await.unwrap();
    let Err(err @ ExecuteError::ChaincodeGone(_)) = &res else {
        panic!("expected ChaincodeGone, got {res:?}");
    };
    assert_eq!(
        err.to_string(),
        "chaincode contractcc:e2e-kill stream closed before the transaction completed"
    );
    assert!(
        sim.results().is_err(),
        "the killed transaction hands out no writes"
    );
    assert!(!cc.is_connected());

    // The very next call launches a new process.
    let relaunched = peer.handle(pkg).await;
    assert!(relaunched.is_connected());
    let second_group = chaincode_group(pkg);
    assert_ne!(first_group, second_group, "a new chaincode process");
    let get = run(
        w,
        &relaunched,
        "contractcc",
        TxKind::Transaction,
        &["get", "a"],
    )
    .await;
    assert_eq!(get.payload(), "b");
    peer.launcher.shutdown().await;
}

/// A chaincode stuck in a busy loop blocks every later call on it too. Through the endorser's
/// runner (what Endorser and Gateway use), the transaction that times out fails with an error
/// saying the chaincode was stopped; its processes are gone, and the next call runs on a fresh
/// launch long before the loop would have ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaincode_stuck_in_a_loop_is_stopped_and_the_next_call_relaunches_it() {
    use chaincode_operator::endorser::chaincode::gate::LaunchingResolver;
    use chaincode_operator::endorser::services::endorse::{ChaincodeRunner, RunError};

    let mut options = PeerOptions::new(false);
    options.execute_timeout = Duration::from_secs(3);
    let peer = LaunchingPeer::start(options).await;
    let pkg = "contractcc:e2e-spin";
    peer.install("contractcc", pkg, &contract_source());
    let runner = LaunchingResolver {
        definitions: peer.definitions.clone(),
        launcher: peer.launcher.clone(),
    };
    let w = &peer.world;
    let warm = TxSimulator::new(w.clone(), CHANNEL, &next_txid());
    runner
        .run(request(
            &warm,
            "contractcc",
            TxKind::Transaction,
            &["put", "a", "b"],
        ))
        .await
        .expect("the chaincode runs");
    let stuck_group = chaincode_group(pkg);

    let spin = TxSimulator::new(w.clone(), CHANNEL, &next_txid());
    let res = runner
        .run(request(
            &spin,
            "contractcc",
            TxKind::Transaction,
            &["spin", "600000"],
        ))
        .await;
    let Err(RunError::Execute(err @ ExecuteError::TimedOutRestarted(_))) = &res else {
        panic!("expected TimedOutRestarted, got {res:?}");
    };
    assert!(
        err.to_string().contains("was stopped"),
        "the caller is told: {err}"
    );

    let after = TxSimulator::new(w.clone(), CHANNEL, &next_txid());
    let (_, outcome) = tokio::time::timeout(
        Duration::from_secs(120),
        runner.run(request(
            &after,
            "contractcc",
            TxKind::Transaction,
            &["spin", "0"],
        )),
    )
    .await
    .expect("the next call is not stuck behind the loop")
    .expect("the next call succeeds");
    assert_eq!(outcome.response.status, 200);
    assert_eq!(outcome.response.payload, b"spun");
    assert_ne!(chaincode_group(pkg), stuck_group, "a fresh launch");
    // Stopped in the background: SIGTERM, then SIGKILL after the grace period.
    let old_pgid = nix::unistd::Pid::from_raw(i32::try_from(stuck_group).unwrap());
    let mut gone = false;
    for _ in 0..300 {
        gone = nix::sys::signal::killpg(old_pgid, None) == Err(nix::errno::Errno::ESRCH);
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the stuck processes are gone");
    peer.launcher.shutdown().await;
}
