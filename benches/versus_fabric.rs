//! Our endorser beside a stock Fabric v2.5.10 peer in the same run (issue #14).
//!
//! Starts the shipped Fabric network (the kit's `network.sh up` with a lab of its own under a
//! tempdir and free loopback ports; `deploy` of `e2e/chaincodes/shim` as `shim`) and our endorser
//! (`chaincode-operator dev --chaincode <copy of e2e/chaincodes/shim> --name shim`, the release
//! binary as a child process). Both run the same Node chaincode as local processes. One load client
//! in this process (tokio + tonic, a few shared TLS connections per side, like an SDK) signs as
//! each side's User1 (Fabric: `FABRIC_USER_CERT`/`KEY`, Org1MSP; ours: dev crypto's User1) and
//! drives the same closed-loop load against each, N = 1, 8 and 128 requests in flight:
//!
//! - `pp get` / `pp put`: `protos.Endorser/ProcessProposal` of `get key` / `put key value`;
//! - `gw evaluate`: `gateway.Gateway/Evaluate` of `get key`;
//! - `gw endorse`: `gateway.Gateway/Endorse` of `put key value`;
//! - `gw submit`: Endorse, then Submit of the signed envelope, then CommitStatus: the full commit
//!   latency as an SDK's `submitTransaction` sees it.
//!
//! Proposals are signed before each timed round (the submit envelope and the CommitStatus request
//! are signed inside it, as a client must). Each case runs in rounds that alternate between the two
//! sides (ours, fabric, ours, fabric), so noise on the shared machine hits both.
//!
//! Per case and side: throughput, p50 and p99 latency, the endorser's CPU per request (utime +
//! stime of the endorser process in `/proc/<pid>/stat`: our `dev` process — which also orders and
//! commits — and the stock `peer` from `$FABRIC_LAB/peer.pid`; for submit also the stock orderer's
//! from `orderer.pid`), and the chaincode's CPU per request (ours: every descendant process of our
//! endorser; Fabric: the process groups in `$FABRIC_LAB/cc-pids`). For submit, transactions per
//! block from the block numbers CommitStatus returns. VmRSS and VmHWM of both endorsers after the
//! warm-up and at the end. Then the #14 targets beside the measured figures.
//!
//! Run: `cargo bench --bench versus_fabric` (cargo builds the release `chaincode-operator` binary
//! beside the bench and this bench runs it; about 2 min once built). `BENCH_QUICK=1` for a short
//! run (under a minute); `BENCH_PROPOSALS=n` sets the requests per side of the endorsement cases
//! at N = 8 and 128.
//! `BENCH_SOAK_SECS=3600` runs the memory soak instead: N = 128 of put proposals, evaluates and
//! submits against our endorser for that long, printing RSS after 1 min under load and at the end
//! (and the stock peer's too, driven alternately, with `BENCH_SOAK_FABRIC=1`: each side's first
//! minute is then counted in the time it was under load); `BENCH_SOAK_KINDS` picks
//! other kinds, e.g. `pp-put,evaluate` (no commits) or `submit`; `BENCH_SOAK_REPORT_SECS` sets
//! how often it prints RSS (and the endorser's CPU per request since the last report) on the
//! way (300 s). `BENCH_DEV_ARGS` adds arguments to our side's
//! `dev` command (e.g. `--ledger-cache-mib 32`). `FABRIC_KIT` points at the
//! kit when it is not in `../shared/fabric` or `/work/shared/fabric`.
//!
//! Skips with a notice (exit 0) when the Fabric kit, `node`/`npm` or the release binary are
//! missing. Both sides are stopped (and the Fabric lab wiped) at the end, on a panic, and on
//! SIGINT or SIGTERM.
#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use common::{env_flag, env_usize};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chaincode_operator::endorser::identity::SigningIdentity;
use chaincode_operator::endorser::node::dev::DevInfo;
use chaincode_operator::endorser::proposal::build::{ProposalSpec, signed_proposal};
use chaincode_operator::proto::gateway::gateway_client::GatewayClient;
use chaincode_operator::proto::gateway::{
    CommitStatusRequest, EndorseRequest, EvaluateRequest, SignedCommitStatusRequest, SubmitRequest,
};
use chaincode_operator::proto::protos::SignedProposal;
use chaincode_operator::proto::protos::endorser_client::EndorserClient;
use prost::Message;
use support::fabric::FabricNetwork;
use support::procs::{descendants, group_members, pid_cpu_seconds, status_kib};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

const CHANNEL: &str = "mychannel";
const CHAINCODE: &str = "shim";
const CONCURRENCY: [usize; 3] = [1, 8, 128];
/// Client connections per side, shared by the clients as SDK users share a peer connection.
const CONNECTIONS: usize = 4;
/// Keys written (submitted) in the warm-up, so the GETs find values.
const SEEDED_KEYS: usize = 100;
/// Rounds per side and case; the sides alternate round by round.
const ROUNDS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    PpGet,
    PpPut,
    Evaluate,
    Endorse,
    Submit,
}

const KINDS: [Kind; 5] = [
    Kind::PpGet,
    Kind::PpPut,
    Kind::Evaluate,
    Kind::Endorse,
    Kind::Submit,
];

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::PpGet => "pp get",
            Kind::PpPut => "pp put",
            Kind::Evaluate => "gw evaluate",
            Kind::Endorse => "gw endorse",
            Kind::Submit => "gw submit",
        }
    }

    /// The name `BENCH_SOAK_KINDS` uses: `pp-get`, `pp-put`, `evaluate`, `endorse`, `submit`.
    fn from_name(name: &str) -> Option<Kind> {
        match name {
            "pp-get" => Some(Kind::PpGet),
            "pp-put" => Some(Kind::PpPut),
            "evaluate" => Some(Kind::Evaluate),
            "endorse" => Some(Kind::Endorse),
            "submit" => Some(Kind::Submit),
            _ => None,
        }
    }

    /// Chaincode arguments of request `i`.
    fn args(self, i: usize) -> Vec<Vec<u8>> {
        let key = format!("key{}", i % SEEDED_KEYS).into_bytes();
        match self {
            Kind::PpGet | Kind::Evaluate => vec![b"get".to_vec(), key],
            Kind::PpPut | Kind::Endorse | Kind::Submit => {
                vec![b"put".to_vec(), key, format!("value{i}").into_bytes()]
            }
        }
    }
}

/// One endorser under load: who signs, how to reach it, which processes to measure.
struct Side {
    name: &'static str,
    user: Arc<SigningIdentity>,
    channels: Vec<Channel>,
    endorser_pid: u32,
    orderer_pid: Option<u32>,
    chaincode_pids: Vec<u32>,
    /// Our endorser's /metrics (HOST:PORT), for the allocator's heap figures.
    metrics: Option<String>,
}

impl Side {
    fn chaincode_cpu(&self) -> f64 {
        self.chaincode_pids
            .iter()
            .map(|&p| pid_cpu_seconds(p))
            .sum()
    }

    fn chaincode_rss_kib(&self) -> u64 {
        self.chaincode_pids
            .iter()
            .filter_map(|&p| status_kib(p, "VmRSS"))
            .sum()
    }

    fn signed(&self, kind: Kind, from: usize, count: usize) -> Vec<(SignedProposal, String)> {
        (from..from + count)
            .map(|i| {
                signed_proposal(
                    &self.user,
                    &ProposalSpec::new(CHANNEL, CHAINCODE, kind.args(i)),
                )
                .expect("a nonce from the system's random source")
            })
            .collect()
    }
}

/// What one or more rounds of one case on one side measured.
#[derive(Default)]
struct Sample {
    count: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    endorser_cpu: f64,
    orderer_cpu: f64,
    chaincode_cpu: f64,
    blocks: BTreeSet<u64>,
}

impl Sample {
    fn add(&mut self, other: Sample) {
        self.count += other.count;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
        self.endorser_cpu += other.endorser_cpu;
        self.orderer_cpu += other.orderer_cpu;
        self.chaincode_cpu += other.chaincode_cpu;
        self.blocks.extend(other.blocks);
    }

    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted
            .get(index)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    }

    /// Milliseconds of CPU per request.
    fn per_request_ms(&self, seconds: f64) -> f64 {
        seconds * 1e3 / self.count as f64
    }

    fn tx_per_block(&self) -> f64 {
        self.count as f64 / self.blocks.len().max(1) as f64
    }
}

/// Runs one request of `kind`; the block number it was committed in, for submit.
async fn one(
    kind: Kind,
    endorser: &mut EndorserClient<Channel>,
    gateway: &mut GatewayClient<Channel>,
    user: &SigningIdentity,
    proposal: SignedProposal,
    tx_id: String,
) -> Result<Option<u64>, String> {
    match kind {
        Kind::PpGet | Kind::PpPut => {
            let response = endorser
                .process_proposal(proposal)
                .await
                .map_err(|s| format!("ProcessProposal: {s}"))?
                .into_inner();
            let answer = response.response.unwrap_or_default();
            if answer.status != 200 || response.endorsement.is_none() {
                return Err(format!(
                    "not endorsed: {} {}",
                    answer.status, answer.message
                ));
            }
            Ok(None)
        }
        Kind::Evaluate => {
            let response = gateway
                .evaluate(EvaluateRequest {
                    transaction_id: tx_id,
                    channel_id: CHANNEL.into(),
                    proposed_transaction: Some(proposal),
                    target_organizations: Vec::new(),
                })
                .await
                .map_err(|s| format!("Evaluate: {s}"))?
                .into_inner();
            let status = response.result.map_or(0, |r| r.status);
            if status != 200 {
                return Err(format!("Evaluate answered status {status}"));
            }
            Ok(None)
        }
        Kind::Endorse | Kind::Submit => {
            let prepared = gateway
                .endorse(EndorseRequest {
                    transaction_id: tx_id.clone(),
                    channel_id: CHANNEL.into(),
                    proposed_transaction: Some(proposal),
                    endorsing_organizations: Vec::new(),
                })
                .await
                .map_err(|s| format!("Endorse: {s}"))?
                .into_inner()
                .prepared_transaction
                .ok_or("Endorse returned no prepared transaction")?;
            if kind == Kind::Endorse {
                return Ok(None);
            }
            let mut envelope = prepared;
            envelope.signature = user.sign(&envelope.payload);
            gateway
                .submit(SubmitRequest {
                    transaction_id: tx_id.clone(),
                    channel_id: CHANNEL.into(),
                    prepared_transaction: Some(envelope),
                })
                .await
                .map_err(|s| format!("Submit: {s}"))?;
            let request = CommitStatusRequest {
                transaction_id: tx_id,
                channel_id: CHANNEL.into(),
                identity: user.serialized().to_vec(),
            }
            .encode_to_vec();
            let status = gateway
                .commit_status(SignedCommitStatusRequest {
                    signature: user.sign(&request),
                    request,
                })
                .await
                .map_err(|s| format!("CommitStatus: {s}"))?
                .into_inner();
            if status.result != 0 {
                return Err(format!(
                    "committed with validation code {} in block {}",
                    status.result, status.block_number
                ));
            }
            Ok(Some(status.block_number))
        }
    }
}

/// Sends `work` with `in_flight` concurrent clients over the side's connections; every request
/// must succeed.
async fn drive(
    side: &Side,
    kind: Kind,
    work: Vec<(SignedProposal, String)>,
    in_flight: usize,
) -> Sample {
    let count = work.len();
    let mut chunks: Vec<Vec<(SignedProposal, String)>> =
        (0..in_flight).map(|_| Vec::new()).collect();
    for (i, item) in work.into_iter().enumerate() {
        chunks[i % in_flight].push(item);
    }
    let endorser_before = pid_cpu_seconds(side.endorser_pid);
    let orderer_before = side.orderer_pid.map_or(0.0, pid_cpu_seconds);
    let chaincode_before = side.chaincode_cpu();
    let start = Instant::now();
    let tasks: Vec<_> = chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let channel = side.channels[i % side.channels.len()].clone();
            let mut endorser = EndorserClient::new(channel.clone());
            let mut gateway = GatewayClient::new(channel);
            let user = side.user.clone();
            let name = side.name;
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(chunk.len());
                let mut blocks = BTreeSet::new();
                for (proposal, tx_id) in chunk {
                    let sent = Instant::now();
                    let block = one(kind, &mut endorser, &mut gateway, &user, proposal, tx_id)
                        .await
                        .unwrap_or_else(|e| panic!("{name} {}: {e}", kind.label()));
                    latencies.push(sent.elapsed());
                    blocks.extend(block);
                }
                (latencies, blocks)
            })
        })
        .collect();
    let mut sample = Sample {
        count,
        ..Sample::default()
    };
    for task in tasks {
        let (latencies, blocks) = task.await.expect("a client task");
        sample.latencies.extend(latencies);
        sample.blocks.extend(blocks);
    }
    sample.elapsed = start.elapsed();
    sample.endorser_cpu = pid_cpu_seconds(side.endorser_pid) - endorser_before;
    sample.orderer_cpu = side.orderer_pid.map_or(0.0, pid_cpu_seconds) - orderer_before;
    sample.chaincode_cpu = side.chaincode_cpu() - chaincode_before;
    sample
}

/// `count` TLS connections to `endpoint` (HOST:PORT), trusting `ca_pem` for server name `domain`.
async fn connect(endpoint: &str, ca_pem: &[u8], domain: &str, count: usize) -> Vec<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(domain);
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = Endpoint::from_shared(format!("https://{endpoint}"))
            .expect("an endpoint URI")
            .tls_config(tls.clone())
            .expect("client TLS config")
            .tcp_nodelay(true)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"));
        channels.push(channel);
    }
    channels
}

/// Our endorser as a child process; SIGINT (then SIGKILL after 20 s) when dropped.
struct OurEndorser {
    child: Child,
    /// HOST:PORT of its /metrics.
    metrics: String,
    /// dev.json, once it printed `ready`.
    info: Option<DevInfo>,
}

impl OurEndorser {
    fn start(binary: &Path, source: &Path, dir: &Path) -> Self {
        let log = std::fs::File::create(dir.with_extension("log")).expect("create dev.log");
        let metrics = support::dev::free_loopback_address();
        let mut child = Command::new(binary)
            .arg("dev")
            .arg("--chaincode")
            .arg(source)
            .args(["--name", CHAINCODE, "--channel", CHANNEL])
            .args(["--listen", "127.0.0.1:0"])
            .arg("--chaincode-listen")
            .arg(support::dev::free_loopback_address())
            .arg("--dir")
            .arg(dir)
            .args(["--metrics-listen", &metrics])
            .args(
                std::env::var("BENCH_DEV_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("run {} dev: {e}", binary.display()));
        let stdout = child.stdout.take().expect("dev's stdout");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if line.starts_with("ready") {
                    let _ = ready_tx.send(line);
                    break;
                }
            }
            // Keep draining, so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let mut endorser = Self {
            child,
            metrics,
            info: None,
        };
        let line = ready_rx
            .recv_timeout(Duration::from_secs(600))
            .unwrap_or_else(|_| {
                panic!(
                    "our endorser was not ready within 10 min (see {})",
                    dir.with_extension("log").display()
                )
            });
        assert_eq!(
            line,
            "ready",
            "our endorser's chaincode did not start (see {})",
            dir.with_extension("log").display()
        );
        let text = std::fs::read_to_string(dir.join("dev.json")).expect("dev.json written");
        endorser.info = Some(serde_json::from_str(&text).expect("dev.json parses"));
        endorser
    }

    fn info(&self) -> &DevInfo {
        self.info.as_ref().expect("started")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for OurEndorser {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A [`FabricNetwork`]'s script, lab and environment.
type NetworkParts = (PathBuf, PathBuf, Vec<(String, String)>);

/// On SIGINT or SIGTERM: stops our endorser (SIGINT, SIGKILL after 20 s) and the Fabric network
/// (`network.sh down --wipe`), removes the work directory and exits 130.
async fn stop_on_signal(fabric: Option<NetworkParts>, dev_pid: Arc<AtomicU32>, work: PathBuf) {
    use nix::sys::signal::{Signal, kill};
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    use nix::unistd::Pid;
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("versus_fabric: interrupted: stopping our endorser and the Fabric network");
    let cleanup = tokio::task::spawn_blocking(move || {
        let pid = dev_pid.load(Ordering::SeqCst);
        if pid != 0 {
            let pid = Pid::from_raw(pid as i32);
            let _ = kill(pid, Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline
                && matches!(
                    waitpid(pid, Some(WaitPidFlag::WNOHANG)),
                    Ok(WaitStatus::StillAlive)
                )
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = kill(pid, Signal::SIGKILL);
        }
        if let Some((script, lab, env)) = fabric {
            drop(FabricNetwork { script, lab, env });
        }
        let _ = std::fs::remove_dir_all(&work);
    });
    let _ = cleanup.await;
    std::process::exit(130);
}

/// Loopback ports nothing listens on (yet), all different.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// Copies the shim chaincode's sources (not node_modules) to `to`.
fn copy_shim(to: &Path) {
    let from = support::e2e_dir("chaincodes/shim");
    std::fs::create_dir_all(to).expect("create the chaincode copy");
    for name in ["index.js", "package.json", "package-lock.json"] {
        std::fs::copy(from.join(name), to.join(name)).expect("copy a chaincode file");
    }
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or_else(|| panic!("a pid in {}", path.display()))
}

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.0}", k as f64 / 1024.0))
}

fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 && ours.is_finite() && theirs.is_finite() {
        format!("{:.2}", ours / theirs)
    } else {
        "-".into()
    }
}

/// Requests per side (over all rounds) of `kind` at `in_flight`.
fn case_count(kind: Kind, in_flight: usize, quick: bool) -> usize {
    let count = match (kind, in_flight, quick) {
        (Kind::Submit, 1, true) => 16,
        (Kind::Submit, 1, false) => 100,
        (Kind::Submit, 8, true) => 64,
        (Kind::Submit, 8, false) => 400,
        (Kind::Submit, _, true) => 512,
        (Kind::Submit, _, false) => 4096,
        (_, 1, true) => 150,
        (_, 1, false) => 2000,
        (_, _, quick) => env_usize("BENCH_PROPOSALS").unwrap_or(if quick { 500 } else { 5000 }),
    };
    count.max(in_flight * 2 * ROUNDS)
}

fn print_rss(label: &str, sides: &[&Side]) {
    for side in sides {
        println!(
            "{label}: {:<6} endorser VmRSS {} MiB, VmHWM {} MiB{}; chaincode VmRSS {} MiB{}",
            side.name,
            mib(status_kib(side.endorser_pid, "VmRSS")),
            mib(status_kib(side.endorser_pid, "VmHWM")),
            heap(side),
            mib(Some(side.chaincode_rss_kib())),
            side.orderer_pid.map_or(String::new(), |pid| format!(
                "; orderer VmRSS {} MiB",
                mib(status_kib(pid, "VmRSS"))
            )),
        );
    }
}

fn main() {
    let quick = env_flag("BENCH_QUICK");
    let soak_secs = env_usize("BENCH_SOAK_SECS");
    let soak_fabric = env_flag("BENCH_SOAK_FABRIC");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_chaincode-operator"));
    let with_fabric = soak_secs.is_none() || soak_fabric;
    let kit = support::fabric::kit();
    if with_fabric && kit.is_none() {
        println!(
            "versus_fabric skipped: no Fabric kit (set FABRIC_KIT, or put it in ../shared/fabric)"
        );
        return;
    }
    if !runs("node") || !runs("npm") {
        println!("versus_fabric skipped: node and npm are needed to run the Node chaincode");
        return;
    }
    if !binary.is_file() {
        println!(
            "versus_fabric skipped: no release binary at {} (cargo bench builds it)",
            binary.display()
        );
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .expect("client runtime");

    // Dropped in reverse order: our endorser and the Fabric network stop before the tempdir goes.
    let work = tempfile::tempdir().expect("tempdir");
    let fabric_source = work.path().join("fabric-cc").join(CHAINCODE);
    let our_source = work.path().join("our-cc").join(CHAINCODE);
    copy_shim(&fabric_source);
    copy_shim(&our_source);

    let network = kit.filter(|_| with_fabric).map(|kit| {
        let ports = free_ports(6);
        let names = [
            "PEER_PORT",
            "PEER_CHAINCODE_PORT",
            "PEER_OPERATIONS_PORT",
            "ORDERER_PORT",
            "ORDERER_ADMIN_PORT",
            "ORDERER_OPERATIONS_PORT",
        ];
        FabricNetwork {
            script: kit.join("network.sh"),
            lab: work.path().join("fabric-lab"),
            env: names
                .iter()
                .zip(ports)
                .map(|(name, port)| (name.to_string(), port.to_string()))
                .collect(),
        }
    });
    // Ctrl-C or SIGTERM skip the Drop guards: this task does their work instead.
    let dev_pid = Arc::new(AtomicU32::new(0));
    runtime.spawn(stop_on_signal(
        network
            .as_ref()
            .map(|n| (n.script.clone(), n.lab.clone(), n.env.clone())),
        dev_pid.clone(),
        work.path().to_path_buf(),
    ));

    let setup = Instant::now();
    if let Some(network) = &network {
        network.run(&["up"]);
        network.run(&[
            "deploy",
            &fabric_source.display().to_string(),
            CHAINCODE,
            "--probe",
            "get",
            "probe",
        ]);
    }
    let fabric_ready = setup.elapsed();
    let ours = OurEndorser::start(&binary, &our_source, &work.path().join("dev"));
    dev_pid.store(ours.pid(), Ordering::SeqCst);
    let our_ready = setup.elapsed() - fabric_ready;
    match &network {
        Some(_) => println!(
            "versus_fabric: setup: stock Fabric v2.5.10 network up + shim deployed in {:.1} s, our \
             endorser (dev, release build) ready in {:.1} s",
            fabric_ready.as_secs_f64(),
            our_ready.as_secs_f64()
        ),
        None => println!(
            "versus_fabric: setup: our endorser (dev, release build) ready in {:.1} s",
            our_ready.as_secs_f64()
        ),
    }

    let mut sides: Vec<Side> = Vec::new();
    {
        let info = ours.info();
        let user = SigningIdentity::from_pem(
            &info.msp_id,
            &std::fs::read(&info.cert_path).expect("our User1 certificate"),
            &std::fs::read_to_string(&info.key_path).expect("our User1 key"),
        )
        .expect("our User1 identity");
        let ca = std::fs::read(info.tls_root_cert.as_ref().expect("dev serves TLS"))
            .expect("our TLS root certificate");
        let domain = info.tls_host_name.clone().unwrap_or("localhost".into());
        let channels = runtime.block_on(connect(&info.endpoint, &ca, &domain, CONNECTIONS));
        sides.push(Side {
            name: "ours",
            user: Arc::new(user),
            channels,
            endorser_pid: ours.pid(),
            orderer_pid: None,
            metrics: Some(ours.metrics.clone()),
            chaincode_pids: Vec::new(),
        });
    }
    if let Some(network) = &network {
        let env = network.network_env();
        let var = |name: &str| {
            env.get(name)
                .cloned()
                .unwrap_or_else(|| panic!("{name} in network.env"))
        };
        let user = SigningIdentity::from_pem(
            &var("FABRIC_MSPID"),
            &std::fs::read(var("FABRIC_USER_CERT")).expect("Fabric's User1 certificate"),
            &std::fs::read_to_string(var("FABRIC_USER_KEY")).expect("Fabric's User1 key"),
        )
        .expect("Fabric's User1 identity");
        let ca = std::fs::read(var("FABRIC_TLS_CA_CERT")).expect("the peer's TLS CA");
        let channels = runtime.block_on(connect(
            &var("FABRIC_PEER_ENDPOINT"),
            &ca,
            &var("FABRIC_PEER_HOSTNAME"),
            CONNECTIONS,
        ));
        sides.push(Side {
            name: "fabric",
            user: Arc::new(user),
            channels,
            endorser_pid: read_pid(&network.lab.join("peer.pid")),
            orderer_pid: Some(read_pid(&network.lab.join("orderer.pid"))),
            metrics: None,
            chaincode_pids: Vec::new(),
        });
    }

    // Warm-up: seed the keys (submits), then every kind once at N = 8; then find the chaincode.
    let mut next = 0usize;
    for side in &mut sides {
        let seed = side.signed(Kind::Submit, 0, SEEDED_KEYS);
        runtime.block_on(drive(side, Kind::Submit, seed, 16));
        for kind in KINDS {
            let warm = side.signed(kind, SEEDED_KEYS, 64);
            runtime.block_on(drive(side, kind, warm, 8));
        }
        side.chaincode_pids = match (side.name, &network) {
            ("fabric", Some(network)) => {
                let text =
                    std::fs::read_to_string(network.lab.join("cc-pids")).expect("cc-pids written");
                text.lines()
                    .filter_map(|line| line.split_whitespace().nth(1)?.parse().ok())
                    .flat_map(group_members)
                    .collect()
            }
            _ => descendants(side.endorser_pid),
        };
        assert!(
            !side.chaincode_pids.is_empty(),
            "{}: no chaincode process found",
            side.name
        );
    }
    let side_refs: Vec<&Side> = sides.iter().collect();
    print_rss("RSS after warm-up", &side_refs);

    if let Some(secs) = soak_secs {
        soak(
            &runtime,
            &sides,
            Duration::from_secs(secs as u64),
            &mut next,
        );
        return;
    }

    println!(
        "{cores} cores; {CONNECTIONS} TLS connections per side; {ROUNDS} alternating rounds per \
         case and side{}; requests per side: {} at N=1, {} at N=8/128, submits {}/{}/{}",
        if quick { " (quick mode)" } else { "" },
        case_count(Kind::PpGet, 1, quick),
        case_count(Kind::PpGet, 128, quick),
        case_count(Kind::Submit, 1, quick),
        case_count(Kind::Submit, 8, quick),
        case_count(Kind::Submit, 128, quick),
    );
    println!(
        "first figure ours, then the stock peer's, ratio = ours / fabric; latency in ms; cpu = \
         endorser CPU ms per request (our dev process / the stock peer process), cc = chaincode \
         CPU ms per request (the Node processes)"
    );
    println!(
        "{:<11} {:>3} | {:>7} {:>7} {:>5} | {:>7} {:>7} {:>5} | {:>7} {:>7} {:>5} | {:>6} {:>6} {:>5} | {:>6} {:>6} {:>5}",
        "case",
        "N",
        "tx/s",
        "fabric",
        "ratio",
        "p50 ms",
        "fabric",
        "ratio",
        "p99 ms",
        "fabric",
        "ratio",
        "cpu ms",
        "fabric",
        "ratio",
        "cc ms",
        "fabric",
        "ratio"
    );
    let mut results: Vec<(Kind, usize, Sample, Sample)> = Vec::new();
    for kind in KINDS {
        for in_flight in CONCURRENCY {
            let per_round = case_count(kind, in_flight, quick) / ROUNDS;
            let mut totals: Vec<Sample> = sides.iter().map(|_| Sample::default()).collect();
            for _ in 0..ROUNDS {
                for (side, total) in sides.iter().zip(&mut totals) {
                    let work = side.signed(kind, next, per_round);
                    next += per_round;
                    total.add(runtime.block_on(drive(side, kind, work, in_flight)));
                }
            }
            let mut totals = totals.into_iter();
            let us = totals.next().expect("our sample");
            let them = totals.next().expect("fabric's sample");
            println!(
                "{:<11} {:>3} | {:>7.0} {:>7.0} {:>5} | {:>7.2} {:>7.2} {:>5} | {:>7.2} {:>7.2} {:>5} | {:>6.3} {:>6.3} {:>5} | {:>6.3} {:>6.3} {:>5}",
                kind.label(),
                in_flight,
                us.rate(),
                them.rate(),
                ratio(us.rate(), them.rate()),
                us.percentile_ms(0.5),
                them.percentile_ms(0.5),
                ratio(us.percentile_ms(0.5), them.percentile_ms(0.5)),
                us.percentile_ms(0.99),
                them.percentile_ms(0.99),
                ratio(us.percentile_ms(0.99), them.percentile_ms(0.99)),
                us.per_request_ms(us.endorser_cpu),
                them.per_request_ms(them.endorser_cpu),
                ratio(
                    us.per_request_ms(us.endorser_cpu),
                    them.per_request_ms(them.endorser_cpu)
                ),
                us.per_request_ms(us.chaincode_cpu),
                them.per_request_ms(them.chaincode_cpu),
                ratio(
                    us.per_request_ms(us.chaincode_cpu),
                    them.per_request_ms(them.chaincode_cpu)
                ),
            );
            if kind == Kind::Submit {
                let peer_and_orderer = them.per_request_ms(them.endorser_cpu + them.orderer_cpu);
                println!(
                    "{:<15} | tx/block ours {:.1} ({} blocks), fabric {:.1} ({} blocks); fabric \
                     orderer CPU {:.3} ms/tx, peer + orderer {:.3} ms/tx (ours / that {})",
                    "",
                    us.tx_per_block(),
                    us.blocks.len(),
                    them.tx_per_block(),
                    them.blocks.len(),
                    them.per_request_ms(them.orderer_cpu),
                    peer_and_orderer,
                    ratio(us.per_request_ms(us.endorser_cpu), peer_and_orderer),
                );
            }
            let _ = std::io::stdout().flush();
            results.push((kind, in_flight, us, them));
        }
    }
    print_rss("RSS at the end", &side_refs);
    print_targets(&results);
}

/// The #14 targets beside the measured figures.
fn print_targets(results: &[(Kind, usize, Sample, Sample)]) {
    let find = |kind: Kind, n: usize| {
        results
            .iter()
            .find(|(k, i, _, _)| *k == kind && *i == n)
            .map(|(_, _, us, them)| (us, them))
            .expect("every case ran")
    };
    let endorsing = [Kind::PpGet, Kind::PpPut, Kind::Evaluate, Kind::Endorse];
    for (n, target) in [(128, 0.15), (1, 0.25)] {
        let worst = endorsing
            .iter()
            .map(|&kind| {
                let (us, them) = find(kind, n);
                (
                    kind,
                    us.per_request_ms(us.endorser_cpu),
                    them.per_request_ms(them.endorser_cpu),
                )
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("endorsement cases");
        let all: Vec<String> = endorsing
            .iter()
            .map(|&kind| {
                let (us, _) = find(kind, n);
                format!("{} {:.3}", kind.label(), us.per_request_ms(us.endorser_cpu))
            })
            .collect();
        println!(
            "target endorser CPU <= {target} ms/endorsement at N={n}: ours worst {:.3} ms ({}; \
             fabric {:.3}) [{}] -> {}",
            worst.1,
            worst.0.label(),
            worst.2,
            all.join(", "),
            if worst.1 <= target { "met" } else { "NOT met" }
        );
    }
    let (us, them) = find(Kind::Submit, 128);
    let throughput = us.rate() / them.rate();
    let p99 = us.percentile_ms(0.99) / them.percentile_ms(0.99);
    println!(
        "target submit N=128 throughput >= 2x the stock peer: ours {:.0} tx/s, fabric {:.0} tx/s = \
         {throughput:.2}x -> {}",
        us.rate(),
        them.rate(),
        if throughput >= 2.0 { "met" } else { "NOT met" }
    );
    println!(
        "target submit N=128 p99 commit latency <= 0.7x the stock peer's: ours {:.1} ms, fabric \
         {:.1} ms = {p99:.2}x -> {}",
        us.percentile_ms(0.99),
        them.percentile_ms(0.99),
        if p99 <= 0.7 { "met" } else { "NOT met" }
    );
    let (us, them) = find(Kind::Evaluate, 1);
    println!(
        "target evaluate p50 <= 1.5 ms at N=1: ours {:.2} ms (fabric {:.2} ms) -> {}",
        us.percentile_ms(0.5),
        them.percentile_ms(0.5),
        if us.percentile_ms(0.5) <= 1.5 {
            "met"
        } else {
            "NOT met"
        }
    );
}

/// ", heap in use X MiB, held free Y MiB" from our endorser's /metrics (glibc's own account), or
/// nothing for a side without it: tells a filling cache from allocator fragmentation.
fn heap(side: &Side) -> String {
    use std::io::Read;
    let Some(address) = &side.metrics else {
        return String::new();
    };
    let fetch = || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    };
    let text = match fetch() {
        Ok(text) => text,
        Err(error) => return format!(", heap: /metrics unreadable ({error})"),
    };
    let gauge = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
            .map_or("?".to_string(), |bytes| {
                format!("{:.0}", bytes / (1024.0 * 1024.0))
            })
    };
    format!(
        ", heap in use {} MiB, held free {} MiB",
        gauge("chaincode_endorser_heap_in_use_bytes "),
        gauge("chaincode_endorser_heap_free_bytes ")
    )
}

/// ", N threads" of the side's endorser: every thread keeps its own allocator cache.
fn threads(side: &Side) -> String {
    // /proc/PID/status's "Threads:" is a count; status_kib only parses the number.
    status_kib(side.endorser_pid, "Threads").map_or(String::new(), |n| format!(", {n} threads"))
}

/// N = 128 of put proposals, evaluates and submits in turn (or the kinds in `BENCH_SOAK_KINDS`;
/// batches signed just before they are sent) for `length`, against every side (alternating batch
/// by batch); RSS after a side's first minute under load and at the end. With two sides each is
/// under load about half the time, so its first minute is counted in its own load time.
fn soak(runtime: &tokio::runtime::Runtime, sides: &[Side], length: Duration, next: &mut usize) {
    const BATCH: usize = 1024;
    let kinds: Vec<Kind> = match std::env::var("BENCH_SOAK_KINDS") {
        Ok(names) => names
            .split(',')
            .map(|name| {
                Kind::from_name(name.trim()).unwrap_or_else(|| {
                    panic!(
                        "BENCH_SOAK_KINDS: {name:?} is none of pp-get, pp-put, evaluate, endorse, \
                         submit"
                    )
                })
            })
            .collect(),
        Err(_) => vec![Kind::PpPut, Kind::Evaluate, Kind::Submit],
    };
    println!(
        "soak: N=128 for {} s against {} ({} in turn, batches of {BATCH})",
        length.as_secs(),
        sides
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(" and "),
        kinds
            .iter()
            .map(|k| k.label())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rss = |side: &Side| {
        (
            status_kib(side.endorser_pid, "VmRSS").unwrap_or(0),
            status_kib(side.endorser_pid, "VmHWM").unwrap_or(0),
        )
    };
    let report_every =
        Duration::from_secs(env_usize("BENCH_SOAK_REPORT_SECS").unwrap_or(300) as u64);
    let start = Instant::now();
    let mut at_minute: Vec<Option<(u64, u64)>> = vec![None; sides.len()];
    let mut loaded = vec![Duration::ZERO; sides.len()];
    let mut last_report = Instant::now();
    let mut done = vec![0usize; sides.len()];
    // (endorser CPU seconds, requests) at the last report: each report gives the CPU per request
    // since, over tens of thousands of requests rather than a default case's few thousand.
    let mut since: Vec<(f64, usize)> = sides
        .iter()
        .map(|side| (pid_cpu_seconds(side.endorser_pid), 0))
        .collect();
    let mut turn = 0usize;
    while start.elapsed() < length {
        let kind = kinds[turn % kinds.len()];
        turn += 1;
        for (i, side) in sides.iter().enumerate() {
            let work = side.signed(kind, *next, BATCH);
            *next += BATCH;
            let driving = Instant::now();
            runtime.block_on(drive(side, kind, work, 128));
            loaded[i] += driving.elapsed();
            done[i] += BATCH;
            if at_minute[i].is_none() && loaded[i] >= Duration::from_secs(60) {
                let (rss, hwm) = rss(side);
                println!(
                    "soak {:>6.0} s: {:<6} VmRSS {} MiB, VmHWM {} MiB{}{} (after 1 min under load)",
                    start.elapsed().as_secs_f64(),
                    side.name,
                    mib(Some(rss)),
                    mib(Some(hwm)),
                    heap(side),
                    threads(side)
                );
                at_minute[i] = Some((rss, hwm));
            }
        }
        if last_report.elapsed() >= report_every {
            last_report = Instant::now();
            for ((side, &done), since) in sides.iter().zip(&done).zip(&mut since) {
                let (rss, hwm) = rss(side);
                let cpu = pid_cpu_seconds(side.endorser_pid);
                let per_request_ms = (cpu - since.0) * 1000.0 / (done - since.1).max(1) as f64;
                *since = (cpu, done);
                println!(
                    "soak {:>6.0} s: {:<6} VmRSS {} MiB, VmHWM {} MiB{}{}, {done} requests, \
                     endorser CPU {per_request_ms:.3} ms/request since the last report",
                    start.elapsed().as_secs_f64(),
                    side.name,
                    mib(Some(rss)),
                    mib(Some(hwm)),
                    heap(side),
                    threads(side)
                );
            }
            let _ = std::io::stdout().flush();
        }
    }
    for (i, side) in sides.iter().enumerate() {
        let (rss2, hwm2) = rss(side);
        let rss1 = at_minute[i].map_or(rss2, |(rss1, _)| rss1);
        let growth = rss2 as f64 / rss1.max(1) as f64;
        println!(
            "soak result {:<6}: VmRSS after 1 min under load {} MiB, after {:.0} s ({:.0} s under \
             load) {} MiB (VmHWM {} MiB{}) = {growth:.2}x; {} requests; target <= 1.2x -> {}",
            side.name,
            mib(Some(rss1)),
            start.elapsed().as_secs_f64(),
            loaded[i].as_secs_f64(),
            mib(Some(rss2)),
            mib(Some(hwm2)),
            heap(side),
            done[i],
            if growth <= 1.2 { "met" } else { "NOT met" }
        );
    }
}
