//! The embedded commit path under concurrent submits: `Committer::submit` called in this process
//! with N = 1, 8 and 128 in flight (closed loop: each client submits its next transaction as soon
//! as the last one is answered), on a real world state and block log in a temporary directory on
//! the bench's disk (`BENCH_DIR`, default the system temp dir).
//!
//! The envelopes are endorsed and signed before the timed phase: `process_proposal` with a
//! chaincode that writes one key per transaction (no two transactions touch the same key, so all
//! are VALID), assembled with `build_transaction` and signed by the user, as a client would.
//! A submit therefore pays what the commit path does per transaction (creator signature,
//! endorsement policy, MVCC, block log append + fsync, world state apply), not endorsement.
//!
//! Per case: transactions/s, p50/p99 commit latency (submit to answer), transactions per block,
//! blocks (block log fsyncs) per second and the share of blocks that waited in the group-commit
//! window. References from the same run, so the figures are ratios: the disk's own fsync rate
//! (4 KiB append + fdatasync in a loop, in the same directory), the ratio of the commit path's
//! block rate to it, and the same commit path with the window off (`group_window` zero: each block
//! takes what queued during the previous one) beside the default window.
//!
//! Run: `cargo bench --bench endorser_submit`; `BENCH_QUICK=1` for a fast smoke run;
//! `BENCH_TXS=n` sets the transactions per case.
#[path = "../tests/proposal_support/mod.rs"]
mod proposal_support;

mod common;

use common::{env_flag, env_usize, percentile};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use chaincode_operator::endorser::chaincode::handle::{ExecuteOutcome, ExecuteRequest};
use chaincode_operator::endorser::commit::{
    Committer, CommitterConfig, DEFAULT_GROUP_WINDOW, build_transaction,
};
use chaincode_operator::endorser::ledger::WorldState;
use chaincode_operator::endorser::proposal::BoundedReplayCache;
use chaincode_operator::endorser::services::endorse::{
    ChaincodeRunner, EndorserContext, RunError, process_proposal,
};
use chaincode_operator::proto::common::Envelope;
use chaincode_operator::proto::protos::{ChaincodeId, Proposal, Response, TxValidationCode};
use futures::future::BoxFuture;
use proposal_support::{CHANNEL, Org, dev_org, good, validator};
use prost::Message;

const CONCURRENCY: [usize; 3] = [1, 8, 128];

/// `put key value`: one write, nothing read.
struct PutChaincode;

impl ChaincodeRunner for PutChaincode {
    fn run<'a>(
        &'a self,
        request: ExecuteRequest,
    ) -> BoxFuture<'a, Result<(ChaincodeId, ExecuteOutcome), RunError>> {
        Box::pin(async move {
            let args = &request.input.args;
            let (Some(key), Some(value)) = (args.get(1), args.get(2)) else {
                return Err(RunError::Unavailable("put needs a key and a value".into()));
            };
            let key = String::from_utf8_lossy(key).into_owned();
            request
                .simulator
                .put_state("basic", &key, value.clone())
                .map_err(|e| RunError::Unavailable(e.to_string()))?;
            let id = ChaincodeId {
                name: "basic".into(),
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

/// fdatasyncs per second of this disk: 4 KiB appended and synced in a loop for `duration`.
fn disk_fsync_rate(dir: &Path, duration: Duration) -> f64 {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).expect("probe file");
    let page = [7u8; 4096];
    let start = Instant::now();
    let mut syncs = 0u64;
    while start.elapsed() < duration {
        file.write_all(&page).expect("probe write");
        file.sync_data().expect("probe fsync");
        syncs += 1;
    }
    let rate = syncs as f64 / start.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(path);
    rate
}

/// `count` signed envelopes, each writing its own key `{prefix}{i}`.
async fn envelopes(org: &Org, world: &WorldState, prefix: &str, count: usize) -> Vec<Envelope> {
    let context = EndorserContext {
        validator: validator(org),
        replay: Arc::new(BoundedReplayCache::new(count.max(1024))),
        endorser: org.endorser.clone(),
        world: world.clone(),
        runner: Arc::new(PutChaincode),
        lifecycle: None,
    };
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("{prefix}{i}");
        let signed = good(&org.user, &[b"put", key.as_bytes(), b"value"]);
        let response = process_proposal(&context, signed.clone(), SystemTime::now()).await;
        assert_eq!(response.response.as_ref().map(|r| r.status), Some(200));
        let proposal = Proposal::decode(signed.proposal_bytes.as_slice()).expect("proposal");
        let payload = build_transaction(&proposal, &[response])
            .expect("transaction")
            .encode_to_vec();
        out.push(Envelope {
            signature: org.user.sign(&payload),
            payload,
        });
    }
    out
}

struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
    txs_per_block: f64,
    blocks_per_second: f64,
}

/// Submits `envelopes` with `in_flight` closed-loop clients; every one must be VALID.
async fn drive(committer: &Committer, envelopes: Vec<Envelope>, in_flight: usize) -> Figures {
    let count = envelopes.len();
    let envelopes = Arc::new(envelopes);
    let next = Arc::new(AtomicUsize::new(0));
    let height_before = committer.height(CHANNEL);
    let start = Instant::now();
    let clients: Vec<_> = (0..in_flight)
        .map(|_| {
            let (committer, envelopes, next) = (committer.clone(), envelopes.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(envelope) = envelopes.get(i) else {
                        return latencies;
                    };
                    let sent = Instant::now();
                    let status = committer.submit(envelope.clone()).await.expect("committed");
                    assert_eq!(status.code, TxValidationCode::Valid);
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(count);
    for client in clients {
        latencies.extend(client.await.expect("client"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let blocks = committer.height(CHANNEL) - height_before;
    latencies.sort();
    Figures {
        rate: count as f64 / elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        txs_per_block: count as f64 / blocks.max(1) as f64,
        blocks_per_second: blocks as f64 / elapsed,
    }
}

fn main() {
    let quick = env_flag("BENCH_QUICK");
    let per_case = env_usize("BENCH_TXS").unwrap_or(if quick { 300 } else { 3000 });
    let probe_time = Duration::from_millis(if quick { 300 } else { 2000 });
    let base = std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let org = dev_org();

    let probe_dir = tempfile::tempdir_in(&base).expect("bench directory");
    let fsync_rate = disk_fsync_rate(probe_dir.path(), probe_time);
    println!(
        "disk: {fsync_rate:.0} fsyncs/s ({:.2} ms each), {} cores",
        1000.0 / fsync_rate,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    println!(
        "{:<7} {:>4} {:>8} {:>8} {:>8} {:>8} {:>8} {:>13} {:>8}",
        "window",
        "N",
        "tx/s",
        "p50 ms",
        "p99 ms",
        "tx/block",
        "blocks/s",
        "blocks/fsyncs",
        "waited"
    );
    // The same commit path without and with the group-commit window, each on its own ledger.
    // The same commit path without and with the group-commit window, each on its own ledger,
    // taking turns per N so that load from elsewhere on the machine hits both alike.
    let mut ledgers = Vec::new();
    for (label, window) in [("none", Duration::ZERO), ("default", DEFAULT_GROUP_WINDOW)] {
        let dir = tempfile::tempdir_in(&base).expect("bench directory");
        let world = WorldState::open(&dir.path().join("ledger.redb")).expect("world state");
        let config = CommitterConfig {
            group_window: window,
            ..CommitterConfig::default()
        };
        let committer = Committer::open_with(
            &dir.path().join("blocks"),
            world.clone(),
            org.trust.clone(),
            config,
        )
        .expect("committer");
        committer.create_channel(CHANNEL).expect("channel");
        ledgers.push((label, dir, world, committer));
    }
    for in_flight in CONCURRENCY {
        for (label, _dir, world, committer) in &ledgers {
            let prefix = format!("n{in_flight}-");
            let batch = runtime.block_on(envelopes(&org, world, &prefix, per_case));
            let before = committer.stats();
            let f = runtime.block_on(drive(committer, batch, in_flight));
            let after = committer.stats();
            let blocks = (after.blocks - before.blocks).max(1) as f64;
            println!(
                "{:<7} {:>4} {:>8.0} {:>8.2} {:>8.2} {:>8.1} {:>8.0} {:>13.2} {:>7.0}%",
                label,
                in_flight,
                f.rate,
                f.p50.as_secs_f64() * 1000.0,
                f.p99.as_secs_f64() * 1000.0,
                f.txs_per_block,
                f.blocks_per_second,
                f.blocks_per_second / fsync_rate,
                100.0 * (after.windows - before.windows) as f64 / blocks,
            );
        }
    }
}
