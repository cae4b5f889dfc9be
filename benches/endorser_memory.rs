//! The endorser's memory under large messages on the client port (#12 item 6): peak RSS and RSS
//! afterwards, with and without the client byte budget and returning memory (fixed glibc thresholds
//! and `malloc_trim`), in the same run.
//!
//! Each variant runs a node (`node::start`, default 100 MiB message limit) in a child process of
//! its own (this executable again, with `MEMORY_BENCH_NODE` set), so one variant's heap cannot
//! flatter or spoil the next and the clients' buffers are not counted. The parent sends, over one
//! connection per message:
//!
//! - `garbage`: 8 concurrent 99 MB messages that are no SignedProposal (tonic buffers each whole,
//!   then fails to decode it);
//! - `proposals`: signed proposals of 10, 20, 30, 40 and 50 MB at once, for a chaincode that is
//!   not defined (received, decoded, signature checked over every byte, refused).
//!
//! Before each phase the child resets its peak (`/proc/self/clear_refs` 5); after it, the parent
//! reads VmHWM (peak) and, after 3 s (the trim runs at most once a second), VmRSS; and VmRSS once
//! more after the child calls `malloc_trim(0)` itself (`trimmed`: what is live, not merely free).
//!
//! Run: `cargo bench --bench endorser_memory`.
#[path = "../tests/proposal_support/mod.rs"]
mod proposal_support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use chaincode_operator::endorser::identity::{load_organization, load_signing_identity};
use chaincode_operator::endorser::node::devcrypto::DevCryptoPaths;
use chaincode_operator::endorser::node::{self, DEFAULT_MAX_MESSAGE_BYTES, NodeConfig};
use chaincode_operator::proto::protos::endorser_client::EndorserClient;
use proposal_support::{CHANNEL, MSPID, dev_org, good};
use prost::bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};

const NODE_ENV: &str = "MEMORY_BENCH_NODE";
const MB: usize = 1_000_000;
const GARBAGE_CLIENTS: usize = 8;
const GARBAGE_BYTES: usize = 99 * MB;
const PROPOSAL_SIZES_MB: [usize; 5] = [10, 20, 30, 40, 50];
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    budget: bool,
    trim: bool,
}

const VARIANTS: [Variant; 4] = [
    Variant {
        name: "neither (reference)",
        budget: false,
        trim: false,
    },
    Variant {
        name: "budget",
        budget: true,
        trim: false,
    },
    Variant {
        name: "return memory",
        budget: false,
        trim: true,
    },
    Variant {
        name: "both (default)",
        budget: true,
        trim: true,
    },
];

fn main() -> anyhow::Result<()> {
    if let Ok(variant) = std::env::var(NODE_ENV) {
        return serve_node(&variant);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "endorser memory: {GARBAGE_CLIENTS} × {} MB garbage at once, then proposals of {:?} MB \
         at once; budget = {} MiB (the message limit); MiB of the node's RSS",
        GARBAGE_BYTES / MB,
        PROPOSAL_SIZES_MB,
        DEFAULT_MAX_MESSAGE_BYTES >> 20
    );
    println!(
        "{:<20} {:>6} | {:>13} {:>13} {:>6} | {:>14} {:>15} {:>8} {:>6}",
        "variant",
        "idle",
        "garbage peak",
        "garbage after",
        "secs",
        "proposals peak",
        "proposals after",
        "trimmed",
        "secs"
    );
    let mut results = Vec::new();
    for variant in VARIANTS {
        let figures = runtime.block_on(measure(variant))?;
        println!(
            "{:<20} {:>6.0} | {:>13.0} {:>13.0} {:>6.1} | {:>14.0} {:>15.0} {:>8.0} {:>6.1}",
            variant.name,
            figures.idle,
            figures.garbage_peak,
            figures.garbage_after,
            figures.garbage_secs,
            figures.proposals_peak,
            figures.proposals_after,
            figures.proposals_trimmed,
            figures.proposals_secs
        );
        results.push((variant, figures));
    }
    let reference = &results[0].1;
    println!("ratios to the reference (lower is better):");
    for (variant, figures) in &results[1..] {
        println!(
            "{:<20} garbage peak {:.2}, after {:.2}; proposals peak {:.2}, after {:.2}",
            variant.name,
            figures.garbage_peak / reference.garbage_peak,
            figures.garbage_after / reference.garbage_after,
            figures.proposals_peak / reference.proposals_peak,
            figures.proposals_after / reference.proposals_after
        );
    }
    Ok(())
}

/// MiB.
struct Figures {
    idle: f64,
    garbage_peak: f64,
    garbage_after: f64,
    garbage_secs: f64,
    proposals_peak: f64,
    proposals_after: f64,
    /// After a `malloc_trim(0)` of its own: what is live, not merely free in the heap.
    proposals_trimmed: f64,
    proposals_secs: f64,
}

/// A node in a child process, driven by lines on its stdin.
struct NodeProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    address: SocketAddr,
    crypto: std::path::PathBuf,
}

impl NodeProcess {
    fn start(variant: Variant) -> anyhow::Result<Self> {
        let mode = match (variant.budget, variant.trim) {
            (false, false) => "none",
            (true, false) => "budget",
            (false, true) => "trim",
            (true, true) => "both",
        };
        let mut child = Command::new(std::env::current_exe()?)
            .env(NODE_ENV, mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow::anyhow!("stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("stdout"))?;
        let mut node = Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            crypto: Default::default(),
        };
        let ready = node.read_line()?;
        let mut words = ready.split_whitespace().skip(1);
        node.address = words.next().unwrap_or_default().parse()?;
        node.crypto = words.next().unwrap_or_default().into();
        Ok(node)
    }

    fn read_line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            anyhow::bail!("the node process exited");
        }
        Ok(line)
    }

    fn ask(&mut self, command: &str) -> anyhow::Result<String> {
        writeln!(self.stdin, "{command}")?;
        self.read_line()
    }

    fn reset_peak(&mut self) -> anyhow::Result<()> {
        self.ask("reset").map(drop)
    }

    /// (VmRSS, VmHWM) in MiB.
    fn rss(&mut self) -> anyhow::Result<(f64, f64)> {
        let line = self.ask("rss")?;
        let kib: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|word| word.parse().ok())
            .collect();
        match kib.as_slice() {
            [rss, hwm] => Ok((rss / 1024.0, hwm / 1024.0)),
            _ => anyhow::bail!("unexpected answer {line:?}"),
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(address: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{address}"))?
        .connect()
        .await?)
}

async fn measure(variant: Variant) -> anyhow::Result<Figures> {
    let mut node = NodeProcess::start(variant)?;
    let paths = DevCryptoPaths::new(&node.crypto);
    let user = load_signing_identity(MSPID, &paths.user.dir)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle, _) = node.rss()?;

    node.reset_peak()?;
    let garbage = Bytes::from(vec![0xff; GARBAGE_BYTES]);
    let started = Instant::now();
    let mut sends = Vec::new();
    for _ in 0..GARBAGE_CLIENTS {
        let channel = connect(node.address).await?;
        let garbage = garbage.clone();
        sends.push(tokio::spawn(
            async move { send_raw(channel, garbage).await },
        ));
    }
    for send in sends {
        let status = send.await?.expect_err("garbage is refused");
        assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
    }
    let garbage_secs = started.elapsed().as_secs_f64();
    drop(garbage);
    let (_, garbage_peak) = node.rss()?;
    tokio::time::sleep(SETTLE).await;
    let (garbage_after, _) = node.rss()?;

    let proposals: Vec<_> = PROPOSAL_SIZES_MB
        .iter()
        .enumerate()
        .map(|(i, mb)| {
            let value = vec![b'v'; mb * MB];
            good(&user, &[b"put", format!("k{i}").as_bytes(), &value])
        })
        .collect();
    node.reset_peak()?;
    let started = Instant::now();
    let mut sends = Vec::new();
    for proposal in proposals {
        let mut client =
            EndorserClient::new(connect(node.address).await?).max_encoding_message_size(usize::MAX);
        sends.push(tokio::spawn(async move {
            client.process_proposal(proposal).await
        }));
    }
    for send in sends {
        let response = send.await?.expect("a proposal is answered").into_inner();
        assert!(response.response.is_some(), "{response:?}");
    }
    let proposals_secs = started.elapsed().as_secs_f64();
    let (_, proposals_peak) = node.rss()?;
    tokio::time::sleep(SETTLE).await;
    let (proposals_after, _) = node.rss()?;
    node.ask("trim")?;
    let (proposals_trimmed, _) = node.rss()?;
    Ok(Figures {
        idle,
        garbage_peak,
        garbage_after,
        garbage_secs,
        proposals_peak,
        proposals_after,
        proposals_trimmed,
        proposals_secs,
    })
}

/// The child: a node with the variant's settings, answering `reset` and `rss` on stdin.
fn serve_node(mode: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let org = dev_org();
        let data = tempfile::tempdir()?;
        let mut config =
            NodeConfig::local(data.path(), org.endorser.clone(), vec![CHANNEL.to_string()]);
        config.organizations = vec![load_organization(MSPID, &org.crypto.paths.endorser.dir)?];
        config.max_inflight_bytes =
            matches!(mode, "budget" | "both").then_some(DEFAULT_MAX_MESSAGE_BYTES);
        config.return_freed_memory = matches!(mode, "trim" | "both");
        let node = node::start(config).await?;
        println!("node {} {}", node.address, org.dir.path().display());
        let mut lines =
            tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(tokio::io::stdin()));
        while let Some(line) = lines.next_line().await? {
            match line.trim() {
                "reset" => {
                    std::fs::write("/proc/self/clear_refs", "5")?;
                    println!("ok");
                }
                "trim" => {
                    // SAFETY: malloc_trim takes no pointers and is thread-safe.
                    #[cfg(all(target_os = "linux", target_env = "gnu"))]
                    unsafe {
                        libc::malloc_trim(0);
                    }
                    println!("ok");
                }
                "rss" => {
                    let status = std::fs::read_to_string("/proc/self/status")?;
                    let field = |name: &str| {
                        status
                            .lines()
                            .find_map(|line| line.strip_prefix(name))
                            .and_then(|rest| rest.split_whitespace().next())
                            .unwrap_or("0")
                            .to_string()
                    };
                    println!("rss {} {}", field("VmRSS:"), field("VmHWM:"));
                }
                _ => println!("?"),
            }
        }
        node.shutdown().await;
        Ok(())
    })
}

/// Sends bytes as the gRPC message as they are; the answer is discarded.
async fn send_raw(channel: Channel, bytes: Bytes) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(bytes),
        tonic::codegen::http::uri::PathAndQuery::from_static("/protos.Endorser/ProcessProposal"),
        RawCodec,
    )
    .await
    .map(drop)
}

struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}
