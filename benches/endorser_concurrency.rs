//! `protos.Endorser/ProcessProposal` under concurrent load: Rust clients in this process send
//! prebuilt signed proposals (unique tx ids, signed before the timed phase) over TLS with N = 1,
//! 8, 32 and 128 in flight, to three pipelines:
//!
//! - `noop`: an in-process `ChaincodeRunner` that does no chaincode work (the cheapest path:
//!   TLS + gRPC + validate + empty simulation + endorse);
//! - `node get` / `node put`: the real Node chaincode `e2e/chaincodes/shim`, launched by the
//!   launcher through the process runtime, doing one GET or one PUT.
//!
//! Per case: endorsements/s, p50/p99 latency, the endorser's own CPU time per endorsement and the
//! Node chaincode process group's CPU time per endorsement.
//!
//! Endorser CPU: the endorser (its gRPC servers, the ChaincodeSupport stream, the launcher) runs
//! on its own tokio runtime whose threads are all named [`ENDORSER_THREAD`]; the clients run on
//! another runtime. The endorser's CPU is the sum of utime + stime of the threads with that name
//! in `/proc/self/task/*/stat`, read before and after the timed phase (clock ticks, 10 ms each,
//! so runs are long enough for that to be small).
//!
//! Beside it, the machine's ECDSA P-256 crypto limit in the same run: one ring verify of a
//! proposal signature plus one ring sign of an endorsement (what the endorser does per proposal),
//! on one thread and on every core, and the ratio of the cheapest path's rate to that limit.
//!
//! Run: `cargo bench --bench endorser_concurrency`; `BENCH_QUICK=1` for a fast smoke run;
//! `BENCH_PROPOSALS=n` sets the proposals per case; `BENCH_CONCURRENCY=1,128` picks the N and
//! `BENCH_PIPELINES=noop,node get` the pipelines (for a profile of one of them);
//! `BENCH_ENDORSER_THREADS=n` sets the endorser runtime's worker threads (default: one per core).
#[path = "../tests/proposal_support/mod.rs"]
mod proposal_support;
#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use common::{env_flag, env_usize, percentile};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chaincode_operator::endorser::chaincode::gate::LaunchingResolver;
use chaincode_operator::endorser::chaincode::handle::{ExecuteOutcome, ExecuteRequest};
use chaincode_operator::endorser::identity::ecdsa;
use chaincode_operator::endorser::ledger::{CommitTx, TxSimulator, WorldState};
use chaincode_operator::endorser::proposal::BoundedReplayCache;
use chaincode_operator::endorser::services::endorse::{
    ChaincodeRunner, EndorserContext, EndorserService, RunError, incoming_no_delay,
};
use chaincode_operator::proto::protos::endorser_client::EndorserClient;
use chaincode_operator::proto::protos::{ChaincodeId, Response, SignedProposal};
use futures::future::BoxFuture;
use proposal_support::{CHANNEL, Org, dev_org, good, validator};
use support::peer::{LaunchingPeer, PeerOptions};
use support::procs::{chaincode_group, group_cpu_seconds};
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};

/// Name of every endorser thread (at most 15 bytes: /proc truncates `comm` there).
const ENDORSER_THREAD: &str = "endorser-rt";
const CLIENT_THREAD: &str = "bench-client";
/// Clock ticks per second of /proc stat times (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;
const CONCURRENCY: [usize; 4] = [1, 8, 32, 128];
/// Client connections at most: clients share them as Fabric SDK users share a peer connection.
const MAX_CONNECTIONS: usize = 8;
const PACKAGE_ID: &str = "basic:shim-bench";
/// Keys committed before the run, so GETs find values.
const SEEDED_KEYS: usize = 1000;

/// The cheapest pipeline: the chaincode succeeds without touching the simulation.
struct NoopChaincode;

impl ChaincodeRunner for NoopChaincode {
    fn run<'a>(
        &'a self,
        request: ExecuteRequest,
    ) -> BoxFuture<'a, Result<(ChaincodeId, ExecuteOutcome), RunError>> {
        Box::pin(async move {
            let id = ChaincodeId {
                name: request.chaincode_name,
                ..ChaincodeId::default()
            };
            let response = Response {
                status: 200,
                ..Response::default()
            };
            Ok((
                id,
                ExecuteOutcome {
                    response,
                    event: None,
                },
            ))
        })
    }
}

/// utime + stime, in seconds, of this process's threads named `name`.
fn threads_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0.0;
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name start at field 3; utime is 14, stime 15.
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            for index in [11, 12] {
                ticks += fields
                    .get(index)
                    .and_then(|f| f.parse::<f64>().ok())
                    .unwrap_or(0.0);
            }
        }
    }
    ticks / TICKS_PER_SECOND
}

/// ECDSA operations per second: one proposal verify + one endorsement sign per operation, on
/// `threads` threads for `duration`.
fn crypto_rate(org: &Org, threads: usize, duration: Duration) -> f64 {
    let proposal = good(&org.user, &[b"put", b"key1", b"value"]);
    let user_key = ecdsa::public_key_bytes(org.user.verifying_key());
    // An endorsement's signed bytes: a response payload (about this size) || endorser.
    let payload = vec![7u8; 300];
    let start = Instant::now();
    let ops: u64 = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut ops = 0u64;
                    while start.elapsed() < duration {
                        ecdsa::verify_parts(
                            &user_key,
                            &[&proposal.proposal_bytes],
                            &proposal.signature,
                        )
                        .expect("own signature verifies");
                        std::hint::black_box(
                            org.endorser
                                .sign_parts(&[&payload, org.endorser.serialized()]),
                        );
                        ops += 1;
                    }
                    ops
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("crypto thread"))
            .sum()
    });
    ops as f64 / start.elapsed().as_secs_f64()
}

/// One pipeline the clients drive.
struct Target {
    label: &'static str,
    channels: Vec<Channel>,
    /// Arguments of proposal `i`.
    args: fn(usize) -> Vec<Vec<u8>>,
    /// Process group of the Node chaincode, if there is one.
    chaincode_pgid: Option<u32>,
}

struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
    endorser_cpu_ms: f64,
    client_cpu_ms: f64,
    chaincode_cpu_ms: Option<f64>,
}

fn proposals(org: &Org, target: &Target, count: usize) -> Vec<SignedProposal> {
    (0..count)
        .map(|i| {
            let args = (target.args)(i);
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            good(&org.user, &args)
        })
        .collect()
}

/// Sends `proposals` with `in_flight` concurrent clients; every one must be endorsed.
async fn drive(target: &Target, proposals: Vec<SignedProposal>, in_flight: usize) -> Figures {
    let count = proposals.len();
    let mut chunks: Vec<Vec<SignedProposal>> = (0..in_flight).map(|_| Vec::new()).collect();
    for (i, proposal) in proposals.into_iter().enumerate() {
        chunks[i % in_flight].push(proposal);
    }
    let cpu_before = threads_cpu_seconds(ENDORSER_THREAD);
    let client_before = threads_cpu_seconds(CLIENT_THREAD);
    let chaincode_before = target.chaincode_pgid.map(group_cpu_seconds);
    let start = Instant::now();
    let tasks: Vec<_> = chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut client =
                EndorserClient::new(target.channels[i % target.channels.len()].clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(chunk.len());
                for proposal in chunk {
                    let sent = Instant::now();
                    let response = client
                        .process_proposal(proposal)
                        .await
                        .expect("ProcessProposal call")
                        .into_inner();
                    latencies.push(sent.elapsed());
                    let answer = response.response.unwrap_or_default();
                    assert!(
                        answer.status == 200 && response.endorsement.is_some(),
                        "not endorsed: {} {}",
                        answer.status,
                        answer.message
                    );
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(count);
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    let elapsed = start.elapsed();
    let endorser_cpu = threads_cpu_seconds(ENDORSER_THREAD) - cpu_before;
    let client_cpu = threads_cpu_seconds(CLIENT_THREAD) - client_before;
    let chaincode_cpu = target
        .chaincode_pgid
        .zip(chaincode_before)
        .map(|(pgid, before)| group_cpu_seconds(pgid) - before);
    latencies.sort();
    let per_endorsement_ms = |seconds: f64| seconds * 1e3 / count as f64;
    Figures {
        rate: count as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        endorser_cpu_ms: per_endorsement_ms(endorser_cpu),
        client_cpu_ms: per_endorsement_ms(client_cpu),
        chaincode_cpu_ms: chaincode_cpu.map(per_endorsement_ms),
    }
}

/// Serves `context` with TLS on the current (endorser) runtime; returns the port.
async fn serve(org: &Org, context: EndorserContext) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    let identity = Identity::from_pem(
        &org.crypto.tls_server.cert_pem,
        &org.crypto.tls_server.key_pem,
    );
    tokio::spawn(
        Server::builder()
            .tls_config(ServerTlsConfig::new().identity(identity))
            .expect("server TLS config")
            .add_service(EndorserService::new(context).into_server())
            .serve_with_incoming(incoming_no_delay(listener)),
    );
    port
}

/// `count` TLS connections to the endorser on `port`, trusting the org's TLS CA. Called on the
/// client runtime: a channel's connection task runs where it was created.
async fn connect(org: &Org, port: u16, count: usize) -> Vec<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&org.crypto.tls_ca.cert_pem))
        .domain_name("localhost");
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = Endpoint::from_shared(format!("https://localhost:{port}"))
            .expect("endpoint")
            .tls_config(tls.clone())
            .expect("client TLS config")
            .connect()
            .await
            .expect("connect to the endorser");
        channels.push(channel);
    }
    channels
}

/// Commits `SEEDED_KEYS` keys in namespace `basic`, so the GETs read existing values.
fn seed(world: &WorldState) {
    let simulator = TxSimulator::new(world.clone(), CHANNEL, "seed");
    for i in 0..SEEDED_KEYS {
        simulator
            .put_state("basic", &format!("key{i}"), b"seeded value".to_vec())
            .expect("seed put");
    }
    let rwset = simulator.results().expect("seed rwset");
    world
        .commit_block(
            CHANNEL,
            &[CommitTx {
                tx_id: "seed",
                timestamp: prost_types::Timestamp::default(),
                rwset: &rwset,
            }],
        )
        .expect("commit seed block");
}

fn context(org: &Org, world: WorldState, runner: Arc<dyn ChaincodeRunner>) -> EndorserContext {
    EndorserContext {
        validator: validator(org),
        replay: Arc::new(BoundedReplayCache::default()),
        endorser: org.endorser.clone(),
        world,
        runner,
        lifecycle: None,
    }
}

fn main() {
    let quick = env_flag("BENCH_QUICK");
    let per_case = env_usize("BENCH_PROPOSALS").unwrap_or(if quick { 200 } else { 3000 });
    let crypto_time = Duration::from_millis(if quick { 300 } else { 2000 });
    let cores = thread::available_parallelism().map_or(1, usize::from);
    let concurrency: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .filter(|list: &Vec<usize>| !list.is_empty())
        .unwrap_or_else(|| CONCURRENCY.to_vec());

    let endorser_threads = env_usize("BENCH_ENDORSER_THREADS").unwrap_or(cores).max(1);
    let endorser_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(endorser_threads)
        .thread_name(ENDORSER_THREAD)
        // An exited thread's CPU time leaves /proc: keep idle blocking threads alive.
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        .enable_all()
        .build()
        .expect("endorser runtime");
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name(CLIENT_THREAD)
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        .enable_all()
        .build()
        .expect("client runtime");

    let org = dev_org();
    let shim_source = support::installed_e2e_dir("chaincodes/shim");

    let single_before = crypto_rate(&org, 1, crypto_time);
    let all_before = crypto_rate(&org, cores, crypto_time);

    // Everything the endorser runs is spawned on its runtime: the chaincode stream server and
    // launcher tasks (LaunchingPeer::start and the first launch), and the two endorser servers.
    let (peer, noop_port, node_port, pgid) = endorser_rt.block_on(async {
        let peer = LaunchingPeer::start(PeerOptions::new(false)).await;
        seed(&peer.world);
        peer.install("basic", PACKAGE_ID, &shim_source);
        let launch = Instant::now();
        peer.handle(PACKAGE_ID).await;
        println!(
            "node shim chaincode launched (build + start + REGISTER) in {:.1} s",
            launch.elapsed().as_secs_f64()
        );
        let pgid = chaincode_group(PACKAGE_ID);
        let noop_db = tempfile::tempdir().expect("tempdir");
        let noop_world =
            WorldState::open(&noop_db.path().join("noop.redb")).expect("open world state");
        let noop = serve(&org, context(&org, noop_world, Arc::new(NoopChaincode))).await;
        let resolver = LaunchingResolver {
            definitions: peer.definitions.clone(),
            launcher: peer.launcher.clone(),
        };
        let node = serve(&org, context(&org, peer.world.clone(), Arc::new(resolver))).await;
        std::mem::forget(noop_db); // lives as long as the server
        (peer, noop, node, pgid)
    });
    let noop_channels = client_rt.block_on(connect(&org, noop_port, MAX_CONNECTIONS));
    let node_channels = client_rt.block_on(connect(&org, node_port, MAX_CONNECTIONS));

    let targets = [
        Target {
            label: "noop",
            channels: noop_channels,
            args: |i| vec![b"put".to_vec(), format!("key{i}").into_bytes()],
            chaincode_pgid: None,
        },
        Target {
            label: "node get",
            channels: node_channels.clone(),
            args: |i| {
                vec![
                    b"get".to_vec(),
                    format!("key{}", i % SEEDED_KEYS).into_bytes(),
                ]
            },
            chaincode_pgid: Some(pgid),
        },
        Target {
            label: "node put",
            channels: node_channels,
            args: |i| {
                vec![
                    b"put".to_vec(),
                    format!("key{}", i % SEEDED_KEYS).into_bytes(),
                    b"new value".to_vec(),
                ]
            },
            chaincode_pgid: Some(pgid),
        },
    ];

    println!(
        "endorser_concurrency: {per_case} signed proposals per case over TLS, {cores} cores, \
         endorser on its own runtime ({cores} threads), clients on another ({cores} threads), \
         up to {MAX_CONNECTIONS} connections{}",
        if quick { " (quick mode)" } else { "" }
    );
    println!(
        "{:<9} {:>4} {:>10} {:>9} {:>9} {:>13} {:>11} {:>13}",
        "pipeline",
        "N",
        "endorse/s",
        "p50 ms",
        "p99 ms",
        "endorser ms",
        "client ms",
        "chaincode ms"
    );
    let mut best_noop: f64 = 0.0;
    let mut noop_cpu: Vec<f64> = Vec::new();
    let mut all_cpu: Vec<(String, f64)> = Vec::new();
    let pipelines = std::env::var("BENCH_PIPELINES").ok();
    let picked = |label: &str| {
        pipelines
            .as_deref()
            .is_none_or(|list| list.split(',').any(|p| p.trim() == label))
    };
    for target in targets.iter().filter(|t| picked(t.label)) {
        // Warm-up: creator cache, connections, the chaincode's JIT.
        let warm = proposals(&org, target, 64);
        client_rt.block_on(drive(target, warm, 8));
        for &in_flight in &concurrency {
            let count = per_case.max(in_flight * 4);
            let batch = proposals(&org, target, count);
            let f = client_rt.block_on(drive(target, batch, in_flight));
            println!(
                "{:<9} {:>4} {:>10.0} {:>9.2} {:>9.2} {:>13.3} {:>11.3} {:>13}",
                target.label,
                in_flight,
                f.rate,
                f.p50.as_secs_f64() * 1e3,
                f.p99.as_secs_f64() * 1e3,
                f.endorser_cpu_ms,
                f.client_cpu_ms,
                f.chaincode_cpu_ms
                    .map_or("-".to_string(), |ms| format!("{ms:.3}")),
            );
            if target.label == "noop" {
                best_noop = best_noop.max(f.rate);
                noop_cpu.push(f.endorser_cpu_ms);
            }
            all_cpu.push((format!("{} N={in_flight}", target.label), f.endorser_cpu_ms));
        }
    }

    endorser_rt.block_on(peer.launcher.shutdown());
    let single_after = crypto_rate(&org, 1, crypto_time);
    let all_after = crypto_rate(&org, cores, crypto_time);
    let single = (single_before + single_after) / 2.0;
    let all = (all_before + all_after) / 2.0;
    println!(
        "crypto limit (ring: 1 proposal verify + 1 endorsement sign): one thread {single:.0}/s \
         ({:.1} us; {single_before:.0} before, {single_after:.0} after), {cores} cores {all:.0}/s \
         ({all_before:.0} before, {all_after:.0} after)",
        1e6 / single
    );
    println!(
        "cheapest path (noop) best rate {best_noop:.0}/s = {:.0}% of the {cores}-core crypto limit \
         (target >= 60%; clients share the cores)",
        100.0 * best_noop / all
    );
    let crypto_ms = 1e3 / single;
    if !noop_cpu.is_empty() {
        let noop_mean_cpu = noop_cpu.iter().sum::<f64>() / noop_cpu.len() as f64;
        println!(
            "noop endorser CPU {noop_mean_cpu:.3} ms/endorsement (mean over N), of which crypto \
             {crypto_ms:.3} ms: crypto is {:.0}% of the endorser's own work",
            100.0 * crypto_ms / noop_mean_cpu
        );
    }
    let worst = all_cpu
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .cloned()
        .unwrap_or_default();
    println!(
        "endorser CPU per endorsement: worst {:.3} ms ({}); target <= 0.2 ms",
        worst.1, worst.0
    );
}
