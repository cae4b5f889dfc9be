//! Throughput and latency of GET+PUT transactions through a registered real Node chaincode
//! (fabric-shim and fabric-contract-api 2.5.x) over the ChaincodeSupport stream, with the chaincode
//! process's CPU share. Reference in the same run: the same GET+PUT on the simulator in-process.
//! Run: `cargo bench --bench stream_throughput` (BENCH_TXS sets the transaction count).
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chaincode_operator::endorser::handle::{ChaincodeHandle, ExecuteRequest};
use chaincode_operator::endorser::handler::TxKind;
use chaincode_operator::endorser::ledger::{TxSimulator, WorldState};
use chaincode_operator::endorser::registration::DevModeGate;
use chaincode_operator::endorser::support::{ChaincodeSupportService, SupportConfig};
use chaincode_operator::proto::protos::ChaincodeInput;

const CHANNEL: &str = "bench";

fn request(sim: &TxSimulator, name: &str, i: usize) -> ExecuteRequest {
    let key = format!("key{}", i % 1000);
    let proposal = support::signed_proposal(CHANNEL, sim.tx_id(), &["getput", &key, "value"]);
    ExecuteRequest {
        channel_id: CHANNEL.into(),
        txid: sim.tx_id().to_string(),
        kind: TxKind::Transaction,
        chaincode_name: name.into(),
        input: ChaincodeInput {
            args: vec![b"getput".to_vec(), key.into_bytes(), b"value".to_vec()],
            ..Default::default()
        },
        proposal: Some(proposal),
        simulator: sim.clone(),
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

struct Figures {
    tps_sequential: f64,
    p50: Duration,
    p99: Duration,
    tps_concurrent: f64,
    cpu_share: f64,
}

async fn measure(
    world: &WorldState,
    handle: &ChaincodeHandle,
    name: &str,
    pid: u32,
    txs: usize,
) -> Figures {
    // Warm-up: JIT and connection.
    for i in 0..50 {
        let sim = TxSimulator::new(world.clone(), CHANNEL, &format!("{name}-warm-{i}"));
        handle
            .execute(request(&sim, name, i))
            .await
            .expect("warm-up tx");
    }
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(txs);
    for i in 0..txs {
        let sim = TxSimulator::new(world.clone(), CHANNEL, &format!("{name}-seq-{i}"));
        let t = Instant::now();
        let out = handle.execute(request(&sim, name, i)).await.expect("tx");
        assert_eq!(out.response.status, 200);
        latencies.push(t.elapsed());
    }
    let seq_elapsed = start.elapsed();
    latencies.sort();

    let concurrency = 16;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (world, handle, name) = (world.clone(), handle.clone(), name.to_string());
        tasks.push(tokio::spawn(async move {
            for i in (worker..txs).step_by(concurrency) {
                let sim = TxSimulator::new(world.clone(), CHANNEL, &format!("{name}-par-{i}"));
                handle.execute(request(&sim, &name, i)).await.expect("tx");
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let par_elapsed = start.elapsed();
    let cpu = cpu_seconds(pid) - cpu0;
    Figures {
        tps_sequential: txs as f64 / seq_elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        tps_concurrent: txs as f64 / par_elapsed.as_secs_f64(),
        cpu_share: cpu / (seq_elapsed + par_elapsed).as_secs_f64(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let txs: usize = std::env::var("BENCH_TXS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().expect("tempdir");
    let world = WorldState::open(&dir.path().join("state.redb")).expect("open world state");

    // Reference: GET+PUT on the simulator without any chaincode.
    let start = Instant::now();
    for i in 0..txs {
        let sim = TxSimulator::new(world.clone(), CHANNEL, &format!("ref-{i}"));
        let key = format!("key{}", i % 1000);
        let _ = sim.get_state("ref", &key).expect("get");
        sim.put_state("ref", &key, b"value".to_vec()).expect("put");
        let _ = sim.results().expect("rwset");
    }
    let reference_tps = txs as f64 / start.elapsed().as_secs_f64();

    let gate = Arc::new(DevModeGate::new());
    let service =
        ChaincodeSupportService::new(gate.clone(), gate.clone(), SupportConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    println!(
        "stream_throughput: {txs} GET+PUT transactions per run, 16 concurrent in the second run"
    );
    println!("reference (in-process simulator, no chaincode): {reference_tps:.0} tx/s");
    for (name, dir, contract) in [
        ("shimcc", "chaincodes/shim", false),
        ("contractcc", "chaincodes/contract", true),
    ] {
        let dir = support::e2e_dir(dir);
        support::npm_ci(&dir);
        let mut cmd = tokio::process::Command::new("node");
        if contract {
            cmd.args(["node_modules/fabric-shim/cli.js", "start"]);
        } else {
            cmd.arg("index.js");
        }
        let mut child = cmd
            .args(["--peer.address", &format!("127.0.0.1:{port}")])
            .current_dir(&dir)
            .env("CORE_CHAINCODE_ID_NAME", format!("{name}:1.0"))
            .env("CORE_PEER_TLS_ENABLED", "false")
            .env("CORE_CHAINCODE_LOGGING_LEVEL", "warning")
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node");
        let pid = child.id().expect("pid");
        let handle = gate
            .wait_ready(name, Duration::from_secs(60))
            .await
            .expect("chaincode registered");
        let f = measure(&world, &handle, name, pid, txs).await;
        println!(
            "{name:<11} sequential {:>6.0} tx/s (p50 {:>6.2} ms, p99 {:>6.2} ms) | 16 concurrent {:>6.0} tx/s | chaincode CPU {:>5.1}% of one core | reference/sequential {:.0}x",
            f.tps_sequential,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3,
            f.tps_concurrent,
            f.cpu_share * 100.0,
            reference_tps / f.tps_sequential,
        );
        let _ = child.kill().await;
    }
}
