//! An endorser's chaincode side as production wires it: the ChaincodeSupport service on loopback
//! with the launcher as its registration gate, the process runtime launching chaincode on demand,
//! and chaincode names resolved through channel definitions (plaintext or mutual TLS).
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chaincode_operator::endorser::chaincode::gate::{Definitions, LaunchingResolver};
use chaincode_operator::endorser::chaincode::handle::ChaincodeHandle;
use chaincode_operator::endorser::chaincode::launcher::{Launcher, LauncherConfig};
use chaincode_operator::endorser::chaincode::runtime::process::{
    ProcessRuntime, ProcessRuntimeConfig,
};
use chaincode_operator::endorser::chaincode::support::{ChaincodeSupportService, SupportConfig};
use chaincode_operator::endorser::chaincode::tls::ChaincodeCa;
use chaincode_operator::endorser::ledger::WorldState;

/// Channels every installed chaincode is defined on.
pub const CHANNELS: [&str; 2] = [super::tx::CHANNEL, "otherchannel"];

#[derive(Debug, Clone)]
pub struct PeerOptions {
    pub tls: bool,
    pub startup_timeout: Duration,
    pub execute_timeout: Duration,
}

impl PeerOptions {
    pub fn new(tls: bool) -> Self {
        Self {
            tls,
            startup_timeout: Duration::from_secs(120),
            execute_timeout: SupportConfig::default().execute_timeout,
        }
    }
}

pub struct LaunchingPeer {
    pub launcher: Launcher<ChaincodeHandle>,
    pub runtime: Arc<ProcessRuntime>,
    pub definitions: Arc<Definitions>,
    pub world: WorldState,
    /// HOST:PORT chaincode dials.
    pub address: String,
    pub ca: Option<Arc<ChaincodeCa>>,
    pub dir: tempfile::TempDir,
}

impl LaunchingPeer {
    pub async fn start(options: PeerOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let world = WorldState::open(&dir.path().join("state.redb")).expect("open world state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().expect("local addr").to_string();
        let ca = options.tls.then(|| {
            Arc::new(ChaincodeCa::generate("e2e endorser chaincode CA").expect("generate CA"))
        });

        let mut runtime_config = ProcessRuntimeConfig::new(dir.path().join("work"));
        runtime_config.stop_grace = Duration::from_secs(2);
        let runtime = Arc::new(ProcessRuntime::new(runtime_config));
        let mut config = LauncherConfig::new(&address, "Org1MSP");
        config.startup_timeout = options.startup_timeout;
        config.logging.level = "warning".into();
        let launcher = Launcher::new(runtime.clone(), ca.clone(), config);
        let definitions = Arc::new(Definitions::default());
        let resolver = Arc::new(LaunchingResolver {
            definitions: definitions.clone(),
            launcher: launcher.clone(),
        });
        let service = ChaincodeSupportService::new(
            Arc::new(launcher.clone()),
            resolver,
            SupportConfig {
                execute_timeout: options.execute_timeout,
                ..SupportConfig::default()
            },
        );
        let mut server = tonic::transport::Server::builder();
        if let Some(ca) = &ca {
            let listener_cert = ca.issue_listener(&address).expect("listener certificate");
            server = server
                .tls_config(ca.tonic_server_tls(&listener_cert))
                .expect("server TLS config");
        }
        tokio::spawn(
            server
                .add_service(service.into_server())
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Self {
            launcher,
            runtime,
            definitions,
            world,
            address,
            ca,
            dir,
        }
    }

    /// Makes the Node chaincode in `source` launchable as `package_id` and defines it as `name` on
    /// every channel in [`CHANNELS`].
    pub fn install(&self, name: &str, package_id: &str, source: &Path) {
        self.runtime.add_source(package_id, source);
        for channel in CHANNELS {
            self.definitions.define(channel, name, package_id);
        }
    }

    /// The registered chaincode, launched through the process runtime if it is not running.
    pub async fn handle(&self, package_id: &str) -> ChaincodeHandle {
        self.launcher
            .ensure_registered(package_id)
            .await
            .unwrap_or_else(|e| panic!("launching {package_id}: {e}"))
    }
}
