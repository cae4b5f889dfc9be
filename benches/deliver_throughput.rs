//! Deliver throughput: blocks/s a gRPC client receives when it replays a channel's block log
//! over `protos.Deliver/Deliver` (full blocks) and `DeliverFiltered`, beside the block log's raw
//! read rate (`Committer::raw_blocks_range` in the same 64-block batches Deliver reads) measured
//! in the same run on the same log. Plaintext loopback, client and server in one process on the
//! same runtime. Prints its figures; asserts only that every block arrived once and in order.
//!
//! Run: `cargo bench --bench deliver_throughput` (`BENCH_QUICK=1`: 300 blocks; `BENCH_BLOCKS=n`).
#[path = "../tests/proposal_support/mod.rs"]
mod proposal_support;

use std::time::{Duration, Instant, SystemTime};

use chaincode_operator::endorser::commit::blocklog::new_block;
use chaincode_operator::endorser::commit::genesis::config_block;
use chaincode_operator::endorser::commit::{ChannelLog, Committer};
use chaincode_operator::endorser::ledger::WorldState;
use chaincode_operator::endorser::services::deliver::{DeliverService, seek_envelope, seek_info};
use chaincode_operator::proto::common::{ChannelHeader, Envelope, Header, HeaderType, Payload};
use chaincode_operator::proto::common::{SignatureHeader, Status as FabricStatus};
use chaincode_operator::proto::orderer::seek_info::SeekBehavior;
use chaincode_operator::proto::orderer::{SeekOldest, seek_position};
use chaincode_operator::proto::protos::deliver_client::DeliverClient;
use chaincode_operator::proto::protos::{TxValidationCode, deliver_response};
use proposal_support::*;
use prost::Message;
use tokio_stream::StreamExt;

/// Transactions per block and bytes of transaction data each (a typical endorsed transaction
/// with two endorsements and a small write set is 3-4 KB).
const TXS_PER_BLOCK: usize = 10;
const TX_DATA_BYTES: usize = 3000;
const READ_BATCH: u64 = 64;

/// An envelope with a real header and opaque data, logged as INVALID_ENDORSER_TRANSACTION so
/// the committer indexes it without unpacking an endorsed action.
fn envelope(org: &Org, block: usize, index: usize) -> Vec<u8> {
    let channel_header = ChannelHeader {
        r#type: HeaderType::EndorserTransaction as i32,
        channel_id: CHANNEL.into(),
        tx_id: format!("{block:08}-{index:04}"),
        ..ChannelHeader::default()
    };
    let payload = Payload {
        header: Some(Header {
            channel_header: channel_header.encode_to_vec(),
            signature_header: SignatureHeader {
                creator: org.user.serialized().to_vec(),
                nonce: vec![7; 24],
            }
            .encode_to_vec(),
        }),
        data: (0..TX_DATA_BYTES).map(|i| (i * 31 + block) as u8).collect(),
    };
    Envelope {
        payload: payload.encode_to_vec(),
        signature: vec![0x30; 71],
    }
    .encode_to_vec()
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let blocks: u64 = std::env::var("BENCH_BLOCKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if std::env::var_os("BENCH_QUICK").is_some() {
            300
        } else {
            2000
        });
    let org = dev_org();
    let dir = tempfile::tempdir().expect("tempdir");
    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir).expect("blocks dir");
    {
        let (mut log, _) =
            ChannelLog::open(&blocks_dir.join(format!("{CHANNEL}.blocks"))).expect("log");
        log.append(&config_block(
            CHANNEL,
            org.trust.organizations(),
            SystemTime::now(),
            &[1; 24],
        ))
        .expect("block 0");
        let codes = vec![TxValidationCode::InvalidEndorserTransaction; TXS_PER_BLOCK];
        for number in 1..blocks {
            let txs = (0..TXS_PER_BLOCK)
                .map(|i| envelope(&org, number as usize, i))
                .collect();
            let block = new_block(number, log.last_hash().to_vec(), txs, &codes);
            log.append(&block).expect("append");
        }
    }
    let log_bytes = std::fs::metadata(blocks_dir.join(format!("{CHANNEL}.blocks")))
        .expect("log size")
        .len();
    let world = WorldState::open(&dir.path().join("ledger.redb")).expect("world state");
    let committer = Committer::open(&blocks_dir, world, org.trust.clone()).expect("committer");
    assert_eq!(committer.height(CHANNEL), blocks);

    // Reference: the log's raw read rate, in Deliver's batches, on this thread.
    let started = Instant::now();
    let mut read = 0u64;
    while read < blocks {
        read += committer
            .raw_blocks_range(CHANNEL, read, READ_BATCH)
            .expect("read")
            .len() as u64;
    }
    let raw = started.elapsed();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let service = DeliverService::new(committer.clone(), org.trust.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    // HTTP/2 flow control windows as the client sets them: h2's default 64 KiB stream window
    // (what tonic clients get unless they ask) holds one or two of these blocks, so the sender
    // waits for a window update every block; gRPC clients with BDP probing (grpc-go, grpc-js)
    // grow theirs. Both are measured.
    let small = DeliverClient::connect(format!("http://{address}"))
        .await
        .expect("connect");
    let large = DeliverClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .expect("endpoint")
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(16 << 20)
            .connect()
            .await
            .expect("connect"),
    );

    println!(
        "deliver_throughput: {blocks} blocks of {TXS_PER_BLOCK} transactions ({:.1} MB log)",
        log_bytes as f64 / 1e6
    );
    println!(
        "  block log raw read:                {:>9.0} blocks/s  {:>7.1} MB/s",
        rate(blocks, raw),
        log_bytes as f64 / 1e6 / raw.as_secs_f64()
    );
    for (window, filtered, mut client) in [
        ("64 KiB", false, small.clone()),
        ("64 KiB", true, small),
        ("8 MiB", false, large.clone()),
        ("8 MiB", true, large),
    ] {
        let request = seek_envelope(
            &org.user,
            CHANNEL,
            seek_info(
                seek_position::Type::Oldest(SeekOldest {}),
                blocks - 1,
                SeekBehavior::BlockUntilReady,
            ),
            SystemTime::now(),
        );
        let started = Instant::now();
        let requests = tokio_stream::iter([request]);
        let mut stream = if filtered {
            client.deliver_filtered(requests).await
        } else {
            client.deliver(requests).await
        }
        .expect("deliver stream")
        .into_inner();
        let mut next = 0u64;
        while let Some(response) = stream.next().await {
            match response.expect("no gRPC error").r#type {
                Some(deliver_response::Type::Block(block)) => {
                    assert_eq!(block.header.map(|h| h.number), Some(next));
                    next += 1;
                }
                Some(deliver_response::Type::FilteredBlock(block)) => {
                    assert_eq!(block.number, next);
                    next += 1;
                }
                Some(deliver_response::Type::Status(status)) => {
                    assert_eq!(status, FabricStatus::Success as i32);
                    break;
                }
                other => panic!("unexpected response {other:?}"),
            }
        }
        let elapsed = started.elapsed();
        assert_eq!(next, blocks, "every block once, in order");
        let deliver_rate = rate(blocks, elapsed);
        println!(
            "  {:<16} {:>6} window: {:>9.0} blocks/s  {:>7.1} MB/s of log  = {:.2} of the raw read rate",
            if filtered {
                "DeliverFiltered,"
            } else {
                "Deliver (full),"
            },
            window,
            deliver_rate,
            log_bytes as f64 / 1e6 / elapsed.as_secs_f64(),
            deliver_rate / rate(blocks, raw)
        );
    }
}
