//! `endorser` and `dev` subcommands: both run one [`node`](crate::endorser::node) — Endorser and
//! Gateway for clients, ChaincodeSupport for chaincode launched on demand by the process runtime.
//! `dev` adds generated crypto and installs and defines one chaincode (see `dev.rs`).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest, Sha256};

pub use super::dev::DevArgs;
use crate::endorser::chaincode::launcher::LauncherArgs;
use crate::endorser::chaincode::runtime::kubernetes::KubernetesRuntimeArgs;
use crate::endorser::chaincode::runtime::process::ProcessRuntimeArgs;
use crate::endorser::identity::{
    Organization, SigningIdentity, load_organization, load_signing_identity,
};
use crate::endorser::node::listener::{self, ConnectionLimits};
use crate::endorser::node::{self, NodeConfig, RunningNode, ServerTls};

/// Which runtime launches chaincode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// Local processes built from Node source directories.
    Process,
    /// `Chaincode` resources on Kubernetes, run by chaincode-operator's controller.
    Kubernetes,
}

/// A chaincode given on the command line as NAME=DIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalChaincode {
    pub name: String,
    pub dir: PathBuf,
}

impl LocalChaincode {
    /// The package id the source directory runs as: `NAME:` + the first 32 hex digits of the
    /// SHA-256 of the directory path, so two directories under one name stay apart.
    pub fn package_id(&self) -> String {
        let digest = hex::encode(Sha256::digest(self.dir.to_string_lossy().as_bytes()));
        format!("{}:{}", self.name, &digest[..32])
    }
}

/// Parses `NAME=DIR`.
pub fn parse_local_chaincode(arg: &str) -> Result<LocalChaincode, String> {
    let (name, dir) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=DIR, got {arg:?}"))?;
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if !valid_name {
        return Err(format!(
            "chaincode name {name:?} must be non-empty and use only letters, digits, _ - . +"
        ));
    }
    if dir.is_empty() {
        return Err(format!("no directory given for chaincode {name}"));
    }
    Ok(LocalChaincode {
        name: name.to_string(),
        dir: PathBuf::from(dir),
    })
}

/// Where the chaincode stream and the launcher listen, and how they launch chaincode.
#[derive(Debug, clap::Args)]
pub struct ChaincodeArgs {
    /// Address the ChaincodeSupport service (the chaincode stream) listens on.
    #[arg(long = "chaincode-listen", default_value = "127.0.0.1:7052")]
    pub chaincode_listen: SocketAddr,
    /// HOST:PORT chaincode dials (default: the chaincode listen address).
    #[arg(long = "chaincode-address")]
    pub chaincode_address: Option<String>,
    #[arg(long, value_enum, default_value = "process")]
    pub runtime: RuntimeKind,
    #[command(flatten)]
    pub launcher: LauncherArgs,
    #[command(flatten)]
    pub process: ProcessRuntimeArgs,
    #[command(flatten)]
    pub kubernetes: KubernetesRuntimeArgs,
    /// Serve /healthz, /readyz and /metrics (chaincode launch metrics) over HTTP on this address.
    #[arg(long = "metrics-listen", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// How long a transaction may run in the chaincode before it fails (Fabric's
    /// chaincode.executetimeout); the chaincode is then presumed stuck and restarted.
    #[arg(
        long = "chaincode-execute-timeout",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub execute_timeout_secs: u64,
    /// Open connections at most on each listener; more wait in the listen backlog (default:
    /// 4096, or what the open-file limit leaves room for).
    #[arg(long = "max-connections", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Bytes of undecoded request messages the client port buffers at once, across all
    /// connections (default: the 100 MiB message limit); a request waits for its share instead
    /// of failing. 0 removes the bound.
    #[arg(long = "max-inflight-bytes", value_name = "BYTES")]
    pub max_inflight_bytes: Option<usize>,
    /// MiB of ledger pages the node keeps in its own memory; reads beyond it go through the
    /// kernel's page cache. More helps a large world state read often; the node's memory grows
    /// to it under load.
    #[arg(long = "ledger-cache-mib", value_name = "MIB", default_value_t = DEFAULT_LEDGER_CACHE_MIB)]
    pub ledger_cache_mib: usize,
    /// Threads that serve requests and chaincode streams (default: one fewer than the cores,
    /// at least one, which leaves a core to the chaincode processes beside the node).
    #[arg(long = "worker-threads", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,
}

/// The async runtime's worker threads when `--worker-threads` is not given: one fewer than the
/// cores, at least one. On 2 cores under versus_fabric's N = 128 load one worker spent 15% less
/// CPU per endorsement than two, at the same or higher throughput: a second worker mostly hands
/// tasks back and forth with the first while the chaincode and the clients want the other core
/// (docs/performance.md, session 9).
pub fn default_worker_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores.saturating_sub(1).max(1)
}

/// The node's async runtime: `worker_threads`, or [`default_worker_threads`].
fn node_runtime(worker_threads: Option<u16>) -> anyhow::Result<tokio::runtime::Runtime> {
    let workers = worker_threads.map_or_else(default_worker_threads, usize::from);
    tracing::debug!(workers, "starting the async runtime");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

const DEFAULT_LEDGER_CACHE_MIB: usize =
    crate::endorser::ledger::store::DEFAULT_PAGE_CACHE_BYTES >> 20;

#[derive(Debug, clap::Args)]
pub struct EndorserArgs {
    /// Address the Endorser and Gateway services listen on.
    #[arg(long, default_value = "127.0.0.1:7051")]
    pub listen: SocketAddr,
    /// Ledger, block log, installed packages and definitions live here.
    #[arg(long = "data-dir", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The endorser's MSP id.
    #[arg(long, default_value = "Org1MSP")]
    pub mspid: String,
    /// MSP folder of the endorser's signing identity (signcerts/, keystore/, cacerts/); its
    /// organisation is trusted.
    #[arg(long = "msp-dir", value_name = "DIR")]
    pub msp_dir: PathBuf,
    /// Another organisation whose members may send proposals, as MSPID=MSP_DIR; repeatable.
    #[arg(long = "trust", value_name = "MSPID=DIR", value_parser = parse_trusted_org)]
    pub trusted: Vec<TrustedOrg>,
    /// TLS certificate (PEM) of the Endorser/Gateway listener; TLS is off without it.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of the Endorser/Gateway listener.
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Channels served; repeatable.
    #[arg(long = "channel", default_values = ["mychannel"])]
    pub channels: Vec<String>,
    /// A Node source directory to run as NAME on every channel without a lifecycle install
    /// (development convenience); repeatable.
    #[arg(long = "chaincode", value_name = "NAME=DIR", value_parser = parse_local_chaincode)]
    pub chaincodes: Vec<LocalChaincode>,
    #[command(flatten)]
    pub chaincode: ChaincodeArgs,
}

/// An organisation given on the command line as MSPID=DIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedOrg {
    pub mspid: String,
    pub dir: PathBuf,
}

/// Parses `MSPID=DIR`.
pub fn parse_trusted_org(arg: &str) -> Result<TrustedOrg, String> {
    match arg.split_once('=') {
        Some((mspid, dir)) if !mspid.is_empty() && !dir.is_empty() => Ok(TrustedOrg {
            mspid: mspid.to_string(),
            dir: PathBuf::from(dir),
        }),
        _ => Err(format!("expected MSPID=MSP_DIR, got {arg:?}")),
    }
}

pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // Shims dialling an IP address send it as SNI, which rustls warns about on every
                // registration; it is harmless (the certificate names the IP).
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("info,rustls::msgs::handshake=error")
                }),
        )
        .with_writer(std::io::stderr)
        // No colour codes in a file, a pipe or CI's log.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub fn endorser(args: EndorserArgs) -> anyhow::Result<ExitCode> {
    init_tracing();
    // Before any thread allocates: glibc fixes its arena limit at the first arena it adds.
    super::heap::return_large_blocks_when_freed();
    node_runtime(args.chaincode.worker_threads)?.block_on(serve_endorser(args))
}

fn read_tls(cert: &Path, key: &Path) -> anyhow::Result<ServerTls> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    Ok(ServerTls {
        cert_pem: read(cert)?,
        key_pem: read(key)?,
    })
}

/// The node configuration shared by `endorser` and `dev`.
pub(crate) fn node_config(
    data_dir: &Path,
    signing: SigningIdentity,
    organizations: Vec<Organization>,
    channels: Vec<String>,
    listen: SocketAddr,
    tls: Option<ServerTls>,
    chaincode: &ChaincodeArgs,
) -> anyhow::Result<NodeConfig> {
    let mut config = NodeConfig::local(data_dir, signing, channels);
    config.organizations = organizations;
    config.listen = listen;
    config.tls = tls;
    config.chaincode_listen = chaincode.chaincode_listen;
    config.chaincode_address = chaincode.chaincode_address.clone();
    config.launcher = chaincode.launcher.config("", config.signing.mspid());
    config.chaincode_plaintext = chaincode.launcher.plaintext;
    config.runtime = chaincode.process.config(&data_dir.join("chaincode"));
    config.metrics_listen = chaincode.metrics_listen;
    config.execute_timeout = Duration::from_secs(chaincode.execute_timeout_secs.max(1));
    let open_files = listener::raise_open_file_limit();
    let max_connections = chaincode
        .max_connections
        .unwrap_or_else(|| listener::default_max_connections(open_files));
    config.client_limits = ConnectionLimits::clients(max_connections);
    config.chaincode_limits = ConnectionLimits::chaincode(max_connections);
    config.ledger_cache_bytes = chaincode.ledger_cache_mib.saturating_mul(1024 * 1024);
    if let Some(bytes) = chaincode.max_inflight_bytes {
        config.max_inflight_bytes = Some(bytes).filter(|&bytes| bytes > 0);
    }
    if chaincode.runtime == RuntimeKind::Kubernetes {
        config.kubernetes = Some(chaincode.kubernetes.config(
            chaincode.process.node_registry.clone(),
            config.launcher.startup_timeout,
        )?);
    }
    Ok(config)
}

async fn serve_endorser(args: EndorserArgs) -> anyhow::Result<ExitCode> {
    let signing = load_signing_identity(&args.mspid, &args.msp_dir).with_context(|| {
        format!(
            "loading the signing identity from {}",
            args.msp_dir.display()
        )
    })?;
    let mut organizations = vec![
        load_organization(&args.mspid, &args.msp_dir)
            .with_context(|| format!("loading organisation {}", args.mspid))?,
    ];
    for org in &args.trusted {
        organizations.push(
            load_organization(&org.mspid, &org.dir)
                .with_context(|| format!("loading organisation {}", org.mspid))?,
        );
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(read_tls(cert, key)?),
        _ => None,
    };
    let config = node_config(
        &args.data_dir,
        signing,
        organizations,
        args.channels.clone(),
        args.listen,
        tls,
        &args.chaincode,
    )?;
    let node = node::start(config).await?;
    if !args.chaincodes.is_empty() && node.runtime.is_none() {
        anyhow::bail!(
            "--chaincode NAME=DIR runs local source directories with the process runtime; with \
             --runtime kubernetes install a package through _lifecycle instead"
        );
    }
    for chaincode in &args.chaincodes {
        let dir = std::fs::canonicalize(&chaincode.dir)
            .with_context(|| format!("chaincode {} directory", chaincode.name))?;
        let chaincode = LocalChaincode {
            name: chaincode.name.clone(),
            dir,
        };
        let package_id = chaincode.package_id();
        if let Some(runtime) = &node.runtime {
            runtime.add_source(&package_id, &chaincode.dir);
        }
        let definitions = node.lifecycle.definitions();
        for channel in &args.channels {
            definitions.define(channel, &chaincode.name, &package_id);
        }
        tracing::info!(name = %chaincode.name, %package_id, dir = %chaincode.dir.display(), "chaincode source defined");
    }
    let interrupts = Interrupts::install()?;
    println!("Endorser and Gateway listening on {}", node.address);
    println!("ChaincodeSupport listening on {}", node.chaincode_address);
    if let Some(metrics) = node.metrics_address {
        println!("Metrics on http://{metrics}/metrics");
    }
    serve_until_interrupted(node, interrupts).await
}

/// SIGINT and SIGTERM, caught from the moment this is made: install it before saying "ready" or
/// printing addresses, so a signal sent right after that stops the node gracefully instead of
/// killing the process with the default action.
pub(crate) struct Interrupts {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Interrupts {
    pub(crate) fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Serves until SIGINT/SIGTERM (then stops chaincode and exits 0) or a listener fails.
pub(crate) async fn serve_until_interrupted(
    mut node: RunningNode,
    mut interrupts: Interrupts,
) -> anyhow::Result<ExitCode> {
    let outcome = tokio::select! {
        _ = interrupts.recv() => Ok(()),
        served = node.wait() => served,
    };
    tracing::info!("shutting down");
    node.shutdown().await;
    outcome.map(|()| ExitCode::SUCCESS)
}

pub fn dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    init_tracing();
    // Before any thread allocates: glibc fixes its arena limit at the first arena it adds.
    super::heap::return_large_blocks_when_freed();
    node_runtime(args.chaincode.worker_threads)?.block_on(super::dev::run(args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        endorser: EndorserArgs,
    }

    #[test]
    fn chaincode_argument_is_name_equals_dir() {
        assert_eq!(
            parse_local_chaincode("asset=./chaincodes/asset"),
            Ok(LocalChaincode {
                name: "asset".into(),
                dir: PathBuf::from("./chaincodes/asset"),
            })
        );
        assert!(
            parse_local_chaincode("asset")
                .unwrap_err()
                .contains("expected NAME=DIR")
        );
        assert!(parse_local_chaincode("=dir").unwrap_err().contains("name"));
        assert!(
            parse_local_chaincode("a/b=dir")
                .unwrap_err()
                .contains("name")
        );
        assert!(
            parse_local_chaincode("asset=")
                .unwrap_err()
                .contains("no directory")
        );
    }

    #[test]
    fn package_ids_keep_the_name_as_label_and_differ_per_directory() {
        let a = LocalChaincode {
            name: "asset".into(),
            dir: PathBuf::from("/src/a"),
        };
        let b = LocalChaincode {
            name: "asset".into(),
            dir: PathBuf::from("/src/b"),
        };
        let id = a.package_id();
        let (label, hash) = id.split_once(':').unwrap();
        assert_eq!((label, hash.len()), ("asset", 32));
        assert_ne!(id, b.package_id());
        assert_eq!(id, a.clone().package_id());
    }

    #[test]
    fn command_line_collects_identity_trust_tls_chaincodes_and_launcher_options() {
        let cli = Cli::try_parse_from([
            "endorser",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/var/lib/endorser",
            "--msp-dir",
            "/etc/org1/msp",
            "--trust",
            "Org2MSP=/etc/org2/msp",
            "--tls-cert",
            "/etc/tls/server.crt",
            "--tls-key",
            "/etc/tls/server.key",
            "--chaincode",
            "a=/src/a",
            "--chaincode",
            "b=/src/b",
            "--channel",
            "ch1",
            "--channel",
            "ch2",
            "--chaincode-plaintext",
            "--chaincode-work-dir",
            "/tmp/work",
        ])
        .unwrap();
        let args = cli.endorser;
        assert_eq!(args.chaincodes.len(), 2);
        assert_eq!(args.chaincodes[1].name, "b");
        assert_eq!(args.channels, ["ch1", "ch2"]);
        assert_eq!(args.trusted[0].mspid, "Org2MSP");
        assert!(args.chaincode.launcher.plaintext);
        assert_eq!(
            args.chaincode.process.work_dir.as_deref(),
            Some(Path::new("/tmp/work"))
        );
        let base = ["endorser", "--data-dir", "/d", "--msp-dir", "/m"];
        let err = Cli::try_parse_from(base.iter().chain(&["--chaincode", "nodir"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected NAME=DIR"), "{err}");
        let err = Cli::try_parse_from(base.iter().chain(&["--trust", "Org2MSP"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected MSPID=MSP_DIR"), "{err}");
        // A certificate without its key is refused before anything starts.
        assert!(Cli::try_parse_from(base.iter().chain(&["--tls-cert", "/c"])).is_err());
        assert!(Cli::try_parse_from(["endorser", "--data-dir", "/d"]).is_err());
    }

    #[test]
    fn worker_threads_default_to_one_fewer_than_the_cores_and_can_be_set() {
        let base = ["endorser", "--data-dir", "/d", "--msp-dir", "/m"];
        let workers = |extra: &[&str]| {
            let cli = Cli::try_parse_from(base.iter().chain(extra)).unwrap();
            let runtime = node_runtime(cli.endorser.chaincode.worker_threads).unwrap();
            runtime.metrics().num_workers()
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(workers(&[]), cores.saturating_sub(1).max(1));
        assert_eq!(workers(&["--worker-threads", "3"]), 3);
        let err = Cli::try_parse_from(base.iter().chain(&["--worker-threads", "0"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--worker-threads"), "{err}");
    }
}
