//! One endorser node assembled from its parts, as `endorser` and `dev` run it: the client-facing
//! listener (Endorser + Gateway, optional TLS), the chaincode listener (ChaincodeSupport, mutual
//! TLS with per-launch certificates unless plaintext), the process runtime launching chaincode on
//! demand, `_lifecycle`, and the embedded committer. Everything durable lives in the data
//! directory:
//!
//! ```text
//! DATA/ledger.redb     world state and history
//! DATA/blocks/         the block log, one file per channel
//! DATA/lifecycle/      installed packages and chaincode definitions
//! DATA/chaincode/      chaincode builds and per-launch TLS files (default work dir)
//! ```
pub mod cli;
pub mod dev;
pub mod devcrypto;
pub mod heap;
pub mod listener;
pub mod memory;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::endorser::chaincode::gate::LaunchingResolver;
use crate::endorser::chaincode::handle::ChaincodeHandle;
use crate::endorser::chaincode::launcher::{Launcher, LauncherConfig};
use crate::endorser::chaincode::runtime::ccaas::CcaasRuntime;
use crate::endorser::chaincode::runtime::kubernetes::{KubernetesRuntime, KubernetesRuntimeConfig};
use crate::endorser::chaincode::runtime::process::{ProcessRuntime, ProcessRuntimeConfig};
use crate::endorser::chaincode::runtime::{PackageInstaller, Runtime};
use crate::endorser::chaincode::support::{ChaincodeSupportService, SupportConfig};
use crate::endorser::chaincode::tls::ChaincodeCa;
use crate::endorser::commit::{Committer, CommitterConfig, LedgerReplayCheck};
use crate::endorser::identity::{Organization, SigningIdentity, TrustStore};
use crate::endorser::ledger::WorldState;
use crate::endorser::lifecycle::{LIFECYCLE_NAME, Lifecycle};
use crate::endorser::proposal::ProposalValidator;
use crate::endorser::services::deliver::DeliverService;
use crate::endorser::services::endorse::{EndorserContext, EndorserService};
use crate::endorser::services::gateway::{GatewayConfig, GatewayService};
use heap::{HeapGauges, MemoryTrimmer};
use listener::{
    ConnectionLimits, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, MAX_STREAMS_PER_CONNECTION,
    TLS_HANDSHAKE_TIMEOUT, limited_incoming,
};
use memory::{RequestBudget, RequestBudgetLayer};

/// The client-facing listener's certificate and key (PEM).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Largest gRPC message the client-facing services accept; packages for `_lifecycle`
/// InstallChaincode are the big ones.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 100 * 1024 * 1024;

/// How long a stopping node waits for open requests to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Recent transaction ids remembered to refuse a replayed proposal before it is committed.
const REPLAY_CACHE_CAPACITY: usize = 100_000;

/// Everything a node needs; see the module docs for the data directory.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub signing: SigningIdentity,
    /// Organisations whose members may send proposals and transactions (the endorser's own is
    /// added when missing).
    pub organizations: Vec<Organization>,
    pub channels: Vec<String>,
    /// Endorser + Gateway.
    pub listen: SocketAddr,
    pub tls: Option<ServerTls>,
    /// ChaincodeSupport.
    pub chaincode_listen: SocketAddr,
    /// HOST:PORT chaincode dials (default: the chaincode listener's address).
    pub chaincode_address: Option<String>,
    /// The launcher's settings; its peer address and mspid are filled in by the node.
    pub launcher: LauncherConfig,
    /// Plaintext chaincode stream instead of mutual TLS (development only).
    pub chaincode_plaintext: bool,
    pub runtime: ProcessRuntimeConfig,
    /// Some: chaincode runs as `Chaincode` resources on Kubernetes instead of local processes.
    pub kubernetes: Option<KubernetesRuntimeConfig>,
    /// Some: /healthz, /readyz and /metrics (launch metrics) over HTTP on this address.
    pub metrics_listen: Option<SocketAddr>,
    pub max_message_bytes: usize,
    pub execute_timeout: Duration,
    /// Connection cap and read deadlines of the client port.
    pub client_limits: ConnectionLimits,
    /// The same for the chaincode port (no idle deadline).
    pub chaincode_limits: ConnectionLimits,
    /// Bytes of undecoded request messages the client port buffers at once (see
    /// [`memory`]); None: unbounded.
    pub max_inflight_bytes: Option<usize>,
    /// Return freed memory to the OS: fixed allocator thresholds for the process (see
    /// [`heap::return_large_blocks_when_freed`]), a trim after requests of 8 MiB or more, and one
    /// whenever a periodic check finds much of the heap free ([`heap::HeapStats::worth_trimming`]).
    pub return_freed_memory: bool,
    /// Bytes of ledger pages kept in memory (redb's page cache).
    pub ledger_cache_bytes: usize,
}

impl NodeConfig {
    /// A node on loopback ports chosen by the OS, TLS off, data in `data_dir`.
    pub fn local(data_dir: &Path, signing: SigningIdentity, channels: Vec<String>) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            launcher: LauncherConfig::new("", signing.mspid()),
            runtime: ProcessRuntimeConfig::new(data_dir.join("chaincode")),
            data_dir: data_dir.to_path_buf(),
            signing,
            organizations: Vec::new(),
            channels,
            listen: loopback,
            tls: None,
            chaincode_listen: loopback,
            chaincode_address: None,
            chaincode_plaintext: false,
            kubernetes: None,
            metrics_listen: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            execute_timeout: SupportConfig::default().execute_timeout,
            client_limits: ConnectionLimits::clients(listener::default_max_connections(None)),
            chaincode_limits: ConnectionLimits::chaincode(listener::default_max_connections(None)),
            max_inflight_bytes: Some(DEFAULT_MAX_MESSAGE_BYTES),
            return_freed_memory: true,
            ledger_cache_bytes: crate::endorser::ledger::store::DEFAULT_PAGE_CACHE_BYTES,
        }
    }
}

/// A listen error that says which flag moves the port: "address in use" alone sends a newcomer
/// looking for what else runs (often another endorser or a Fabric peer on 7051/7052).
fn bind_error(error: std::io::Error, addr: SocketAddr, what: &str, flag: &str) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::AddrInUse {
        anyhow::anyhow!(
            "cannot listen for {what} on {addr}: the port is in use (another endorser, dev or \
             Fabric peer?); choose another with {flag} HOST:PORT"
        )
    } else {
        anyhow::anyhow!("cannot listen for {what} on {addr} ({flag}): {error}")
    }
}

/// A started node. Dropping it does not stop it: call [`RunningNode::shutdown`].
pub struct RunningNode {
    /// Where clients reach Endorser and Gateway.
    pub address: SocketAddr,
    /// Where chaincode reaches ChaincodeSupport.
    pub chaincode_address: String,
    pub context: Arc<EndorserContext>,
    pub lifecycle: Arc<Lifecycle>,
    pub committer: Committer,
    /// The process runtime (None with the kubernetes runtime).
    pub runtime: Option<Arc<ProcessRuntime>>,
    /// The kubernetes runtime (None with the process runtime).
    pub kubernetes: Option<Arc<KubernetesRuntime>>,
    /// Where /metrics is served, when it is.
    pub metrics_address: Option<SocketAddr>,
    /// The client port's budget for undecoded request bytes, when bounded.
    pub request_budget: Option<RequestBudget>,
    launcher: Launcher<ChaincodeHandle>,
    shutdown: watch::Sender<bool>,
    servers: JoinSet<Result<(), tonic::transport::Error>>,
}

impl RunningNode {
    /// Serves until one listener fails or [`RunningNode::shutdown`] is called from elsewhere.
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        match self.servers.join_next().await {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(err))) => Err(anyhow::Error::new(err).context("serving gRPC")),
            Some(Err(err)) => Err(anyhow::Error::new(err).context("a listener task failed")),
        }
    }

    /// Starts the chaincode `package_id` now instead of at its first proposal.
    pub async fn launch(&self, package_id: &str) -> anyhow::Result<()> {
        self.launcher
            .ensure_registered(package_id)
            .await
            .map(drop)
            .map_err(|err| anyhow::anyhow!("launching {package_id}: {err}"))
    }

    /// Stops both listeners and every chaincode this node launched. Connections still open after
    /// [`SHUTDOWN_GRACE`] are cut.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.servers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}: closing them");
            self.servers.abort_all();
        }
        self.launcher.shutdown().await;
    }
}

/// Stops the launches of packages no chaincode definition uses any more, each time the definitions
/// change (a new sequence running another package), until `shutdown`.
async fn retire_undefined(
    definitions: Arc<crate::endorser::lifecycle::Definitions>,
    launcher: Launcher<ChaincodeHandle>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut changes = definitions.changes();
    let watch_changes = async {
        while changes.changed().await.is_ok() {
            for package_id in launcher.launched_packages() {
                if definitions.references(&package_id).is_empty() {
                    launcher
                        .retire(&package_id, "no definition uses the package any more")
                        .await;
                }
            }
        }
    };
    tokio::select! {
        _ = watch_changes => {}
        _ = shutdown => {}
    }
}

/// Stops chaincode no transaction has asked for in `idle`, checking a few times per period,
/// until `shutdown`.
async fn stop_idle(
    launcher: Launcher<ChaincodeHandle>,
    idle: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let period = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let stop_idle = async {
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            for package_id in launcher.idle_packages(idle) {
                launcher.retire(&package_id, "idle").await;
            }
        }
    };
    tokio::select! {
        _ = stop_idle => {}
        _ = shutdown => {}
    }
}

/// Serves /healthz, /readyz and /metrics (`chaincode_endorser_*`: the commit path's blocks and
/// transactions per block, the heap, the kubernetes runtime's launch metrics) until `shutdown`; returns the
/// bound address.
async fn serve_metrics(
    listen: SocketAddr,
    committer: &Committer,
    kubernetes: Option<&KubernetesRuntime>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    let mut registry = prometheus_client::registry::Registry::with_prefix("chaincode_endorser");
    committer.register_metrics(&mut registry);
    if let Some(kubernetes) = kubernetes {
        kubernetes.metrics().register(&mut registry);
    }
    let heap = HeapGauges::register(&mut registry);
    let health = Arc::new(crate::operator::server::Health::default());
    health
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let router = crate::operator::server::router_with(health, move || {
        heap.refresh();
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::warn!(%error, "encoding metrics");
        }
        text
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| bind_error(e, listen, "metrics", "--metrics-listen"))?;
    let address = listener
        .local_addr()
        .context("reading the metrics address")?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(%error, "the metrics server stopped");
        }
    });
    Ok(address)
}

async fn until_shutdown(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Opens the data directory, binds both listeners and starts serving.
pub async fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let world =
        WorldState::open_with_cache(&data_dir.join("ledger.redb"), config.ledger_cache_bytes)
            .context("opening the ledger")?;

    let mut organizations = config.organizations.clone();
    if !organizations
        .iter()
        .any(|org| org.mspid() == config.signing.mspid())
    {
        anyhow::bail!(
            "the endorser's own organisation {} is not among the trusted organisations",
            config.signing.mspid()
        );
    }
    organizations.dedup_by(|a, b| a.mspid() == b.mspid());
    let trust = Arc::new(TrustStore::new(organizations));

    let chaincode_listener = tokio::net::TcpListener::bind(config.chaincode_listen)
        .await
        .map_err(|e| {
            bind_error(
                e,
                config.chaincode_listen,
                "the chaincode stream",
                "--chaincode-listen",
            )
        })?;
    let chaincode_local = chaincode_listener
        .local_addr()
        .context("reading the chaincode listen address")?;
    let chaincode_address = config
        .chaincode_address
        .clone()
        .unwrap_or_else(|| chaincode_local.to_string());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| bind_error(e, config.listen, "clients", "--listen"))?;
    let address = listener
        .local_addr()
        .context("reading the listen address")?;

    let (process, kubernetes, runtime, installer): (
        _,
        _,
        Arc<dyn Runtime>,
        Arc<dyn PackageInstaller>,
    ) = match &config.kubernetes {
        Some(kubernetes) => {
            let kubernetes = Arc::new(
                KubernetesRuntime::start(kubernetes.clone())
                    .await
                    .context("starting the kubernetes runtime")?,
            );
            (
                None,
                Some(kubernetes.clone()),
                kubernetes.clone(),
                kubernetes,
            )
        }
        None => {
            let process = Arc::new(ProcessRuntime::new(config.runtime.clone()));
            // The ledger lock is ours: whatever still runs from this work directory is an orphan.
            process.reap_orphans();
            (Some(process.clone()), None, process.clone(), process)
        }
    };
    // Chaincode-as-a-service packages are dialled whichever runtime runs the rest.
    let template =
        crate::builders::platform::ccaas::builder_config_from_env().map_err(anyhow::Error::msg)?;
    let ccaas = Arc::new(CcaasRuntime::new(runtime, installer, template));
    let (runtime, installer): (Arc<dyn Runtime>, Arc<dyn PackageInstaller>) =
        (ccaas.clone(), ccaas.clone());
    let lifecycle = Arc::new(
        Lifecycle::open(
            &data_dir.join("lifecycle"),
            installer,
            &config.runtime.work_dir,
            config.signing.mspid(),
        )
        .context("opening the chaincode lifecycle")?,
    );
    // Commits take explicit collections' BlockToLive from the definitions.
    world.set_collection_lookup(lifecycle.definitions());
    let ca = if config.chaincode_plaintext {
        None
    } else {
        Some(Arc::new(
            ChaincodeCa::generate("chaincode-operator endorser chaincode CA")
                .context("generating the chaincode TLS CA")?,
        ))
    };
    let mut launcher_config = config.launcher.clone();
    launcher_config.peer_address = chaincode_address.clone();
    launcher_config.mspid = config.signing.mspid().to_string();
    let launcher: Launcher<ChaincodeHandle> = Launcher::new(runtime, ca.clone(), launcher_config);
    let resolver = Arc::new(LaunchingResolver {
        definitions: lifecycle.definitions(),
        launcher: launcher.clone(),
    });
    // Every served channel exists from the start, with its config block as block 0.
    let committer = Committer::open_with(
        &data_dir.join("blocks"),
        world.clone(),
        trust.clone(),
        CommitterConfig {
            channels: Some(config.channels.iter().cloned().collect()),
            ..CommitterConfig::default()
        },
    )
    .context("opening the block log")?;
    for channel in &config.channels {
        committer
            .create_channel(channel)
            .with_context(|| format!("creating channel {channel}"))?;
    }

    let validator = ProposalValidator::new(trust.clone(), config.channels.iter().cloned())
        .with_max_proposal_bytes(config.max_message_bytes)
        .with_channelless_chaincodes([LIFECYCLE_NAME.to_string()]);
    let context = Arc::new(EndorserContext {
        validator,
        replay: Arc::new(LedgerReplayCheck::endorsing(
            committer.clone(),
            REPLAY_CACHE_CAPACITY,
        )),
        endorser: config.signing.clone(),
        world,
        runner: resolver.clone(),
        lifecycle: Some(lifecycle.clone()),
    });

    let (shutdown, shutdown_rx) = watch::channel(false);
    tokio::spawn(retire_undefined(
        lifecycle.definitions(),
        launcher.clone(),
        until_shutdown(shutdown_rx.clone()),
    ));
    if let Some(idle) = config.launcher.idle_timeout {
        tokio::spawn(stop_idle(
            launcher.clone(),
            idle,
            until_shutdown(shutdown_rx.clone()),
        ));
    }
    let mut servers = JoinSet::new();

    let support = ChaincodeSupportService::new(
        Arc::new(launcher.clone()),
        resolver,
        SupportConfig {
            execute_timeout: config.execute_timeout,
            max_message_bytes: config.max_message_bytes,
        },
    )
    .with_shutdown(shutdown_rx.clone());
    ccaas.attach(support.clone());
    let mut chaincode_server = tonic::transport::Server::builder();
    if let Some(ca) = &ca {
        let cert = ca
            .issue_listener(&chaincode_address)
            .context("issuing the chaincode listener certificate")?;
        chaincode_server = chaincode_server
            .tls_config(ca.tonic_server_tls(&cert).timeout(TLS_HANDSHAKE_TIMEOUT))
            .context("configuring TLS on the chaincode listener")?;
    }
    servers.spawn(
        chaincode_server
            .add_service(support.into_server())
            .serve_with_incoming_shutdown(
                limited_incoming(
                    chaincode_listener,
                    "chaincode",
                    config.chaincode_limits.clone(),
                ),
                until_shutdown(shutdown_rx.clone()),
            ),
    );

    let deliver = DeliverService::new(committer.clone(), trust.clone())
        .with_private_data(context.world.clone())
        .with_shutdown(shutdown_rx.clone());
    let gateway = GatewayService::new(
        context.clone(),
        committer.clone(),
        GatewayConfig {
            address: address.to_string(),
            ..GatewayConfig::default()
        },
    )
    .with_shutdown(shutdown_rx.clone());
    // Dead or silent clients are found by PING and dropped; one connection cannot open unbounded
    // concurrent requests.
    let mut client_server = tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    if let Some(tls) = &config.tls {
        let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
        client_server = client_server
            .tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(identity)
                    .timeout(TLS_HANDSHAKE_TIMEOUT),
            )
            .context("configuring TLS on the client listener")?;
    }
    // The Endorser's decoding limit is the validator's; the Gateway carries the same proposals.
    let limit = config.max_message_bytes;
    let request_budget = config.max_inflight_bytes.map(RequestBudget::new);
    let trimmer = config.return_freed_memory.then(MemoryTrimmer::default);
    if let Some(trimmer) = &trimmer {
        heap::return_large_blocks_when_freed();
        tokio::spawn(trimmer.clone().check_periodically(
            heap::HEAP_CHECK_INTERVAL,
            until_shutdown(shutdown_rx.clone()),
        ));
    }
    let memory_limits = RequestBudgetLayer::new(request_budget.clone(), trimmer);
    servers.spawn(
        client_server
            .layer(memory_limits)
            .add_service(EndorserService::shared(context.clone()).into_server())
            .add_service(gateway.into_server().max_decoding_message_size(limit))
            .add_service(deliver.into_server())
            .serve_with_incoming_shutdown(
                limited_incoming(listener, "clients", config.client_limits.clone()),
                until_shutdown(shutdown_rx.clone()),
            ),
    );
    let metrics_address = match config.metrics_listen {
        Some(listen) => Some(
            serve_metrics(
                listen,
                &committer,
                kubernetes.as_deref(),
                until_shutdown(shutdown_rx.clone()),
            )
            .await?,
        ),
        None => None,
    };
    tracing::info!(
        %address,
        tls = config.tls.is_some(),
        chaincode = %chaincode_address,
        chaincode_tls = ca.is_some(),
        data_dir = %data_dir.display(),
        "endorser serving Endorser, Gateway, Deliver and ChaincodeSupport"
    );
    Ok(RunningNode {
        address,
        chaincode_address,
        context,
        lifecycle,
        committer,
        runtime: process,
        kubernetes,
        metrics_address,
        request_budget,
        launcher,
        shutdown,
        servers,
    })
}
