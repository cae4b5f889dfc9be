//! Throughput and latency of GET+PUT transactions through a registered real Node chaincode
//! (fabric-shim and fabric-contract-api 2.5.x) launched by the launcher through the process runtime,
//! over the ChaincodeSupport stream in plaintext and with mutual TLS, with the CPU share of the
//! chaincode's process group. Reference in the same run: the same GET+PUT on the simulator
//! in-process, without a chaincode.
//! Run: `cargo bench --bench stream_throughput` (BENCH_TXS sets the transaction count).
#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use common::percentile;
use std::time::{Duration, Instant};

use chaincode_operator::endorser::chaincode::handle::ChaincodeHandle;
use chaincode_operator::endorser::chaincode::handler::TxKind;
use chaincode_operator::endorser::ledger::{TxSimulator, WorldState};
use support::peer::{LaunchingPeer, PeerOptions};
use support::procs::{chaincode_group, group_cpu_seconds};
use support::tx::{CHANNEL, request};

struct Figures {
    tps_sequential: f64,
    p50: Duration,
    p99: Duration,
    tps_concurrent: f64,
    cpu_share: f64,
}

async fn getput(world: &WorldState, handle: &ChaincodeHandle, name: &str, txid: String, i: usize) {
    let sim = TxSimulator::new(world.clone(), CHANNEL, &txid);
    let key = format!("key{}", i % 1000);
    let out = handle
        .execute(request(
            &sim,
            name,
            TxKind::Transaction,
            &["getput", &key, "value"],
        ))
        .await
        .expect("GET+PUT transaction");
    assert_eq!(out.response.status, 200, "{:?}", out.response);
}

async fn measure(
    world: &WorldState,
    handle: &ChaincodeHandle,
    name: &str,
    pgid: u32,
    txs: usize,
) -> Figures {
    // Warm-up: JIT and connection.
    for i in 0..50 {
        getput(world, handle, name, format!("{name}-warm-{i}"), i).await;
    }
    let cpu0 = group_cpu_seconds(pgid);
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(txs);
    for i in 0..txs {
        let t = Instant::now();
        getput(world, handle, name, format!("{name}-seq-{i}"), i).await;
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
                getput(&world, &handle, &name, format!("{name}-par-{i}"), i).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let par_elapsed = start.elapsed();
    let cpu = group_cpu_seconds(pgid) - cpu0;
    Figures {
        tps_sequential: txs as f64 / seq_elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        tps_concurrent: txs as f64 / par_elapsed.as_secs_f64(),
        cpu_share: cpu / (seq_elapsed + par_elapsed).as_secs_f64(),
    }
}

/// GET+PUT on the simulator without any chaincode, in transactions per second.
fn reference_tps(world: &WorldState, txs: usize) -> f64 {
    let start = Instant::now();
    for i in 0..txs {
        let sim = TxSimulator::new(world.clone(), CHANNEL, &format!("ref-{i}"));
        let key = format!("key{}", i % 1000);
        let _ = sim.get_state("ref", &key).expect("get");
        sim.put_state("ref", &key, b"value".to_vec()).expect("put");
        let _ = sim.results().expect("rwset");
    }
    txs as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let txs: usize = std::env::var("BENCH_TXS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let sources = [
        ("shimcc", support::installed_e2e_dir("chaincodes/shim")),
        (
            "contractcc",
            support::installed_e2e_dir("chaincodes/contract"),
        ),
    ];
    println!(
        "stream_throughput: {txs} GET+PUT transactions per run, 16 concurrent in the second run; \
         chaincode launched by the launcher through the process runtime"
    );
    for tls in [false, true] {
        let peer = LaunchingPeer::start(PeerOptions::new(tls)).await;
        let reference = reference_tps(&peer.world, txs);
        let mode = if tls { "mutual TLS" } else { "plaintext" };
        println!("{mode}: reference (in-process simulator, no chaincode) {reference:.0} tx/s");
        for (name, source) in &sources {
            let package_id = format!("{name}:bench-{}", if tls { "tls" } else { "plain" });
            peer.install(name, &package_id, source);
            let launch = Instant::now();
            let handle = peer.handle(&package_id).await;
            let launch_time = launch.elapsed();
            let pgid = chaincode_group(&package_id);
            let f = measure(&peer.world, &handle, name, pgid, txs).await;
            println!(
                "  {name:<11} sequential {:>6.0} tx/s (p50 {:>6.2} ms, p99 {:>6.2} ms) | 16 concurrent {:>6.0} tx/s | chaincode CPU {:>5.1}% of one core | reference/sequential {:.0}x | launch (build + start + REGISTER) {:.1} s",
                f.tps_sequential,
                f.p50.as_secs_f64() * 1e3,
                f.p99.as_secs_f64() * 1e3,
                f.tps_concurrent,
                f.cpu_share * 100.0,
                reference / f.tps_sequential,
                launch_time.as_secs_f64(),
            );
        }
        peer.launcher.shutdown().await;
    }
}
