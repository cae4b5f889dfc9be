//! Chaincode-as-a-service (`ccaas` packages): the chaincode is a gRPC server somebody else runs
//! (any language: Node's `fabric-chaincode-node server`, Go's `shim.ChaincodeServer`, the Python
//! shim), and a launch *dials* it instead of starting anything.
//!
//! [`CcaasRuntime`] wraps the node's real runtime (process or kubernetes) and its package
//! installer: `ccaas` packages are taken at install (connection.json read, templated and
//! validated) and launched here, every other package goes to the wrapped runtime. So a ccaas
//! package installed on a node running `--runtime kubernetes` is dialled, never run as a Pod.
//!
//! A launch opens `protos.Chaincode/Connect` on the chaincode's address (within `dial_timeout`,
//! TLS from connection.json) and hands the stream to the ChaincodeSupport service's handler: the
//! endorser is the transport's client but still the peer side of the protocol (the chaincode
//! sends REGISTER first, the peer answers REGISTERED and READY). The launcher's waits and checks
//! apply unchanged: the stream's REGISTER goes through the launcher's gate with the launch's
//! client certificate as the stream's identity (the endorser dialled it *for that launch*), the
//! startup timeout covers dial + REGISTER + READY, and a lost stream makes the next invoke dial
//! again. Stopping a launch closes the stream; the chaincode server keeps running.
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::future::BoxFuture;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::packages::InstallError;
use super::{
    ExitStatus, LaunchKey, LaunchSpec, PackageInstaller, Runtime, RuntimeError, StopReason,
};
use crate::builders::platform::ccaas::{Connection, connection_with};
use crate::builders::{Limits, PackageId, read_package};
use crate::endorser::chaincode::handle::ChaincodeHandle;
use crate::endorser::chaincode::registration::{
    RegisterRequest, RegistrationGate, RegistrationTicket,
};
use crate::endorser::chaincode::support::ChaincodeSupportService;
use crate::proto::protos::ChaincodeMessage;

/// The gRPC method a chaincode server serves (`service Chaincode { rpc Connect(stream
/// ChaincodeMessage) returns (stream ChaincodeMessage) }`).
pub const CONNECT_PATH: &str = "/protos.Chaincode/Connect";

/// How long a stop waits for a dialled stream's task to wind down.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One dialled stream: its stop switch and why it ended (None while it runs).
struct Dialed {
    stop: watch::Sender<bool>,
    ended: watch::Receiver<Option<String>>,
}

/// Dials `ccaas` packages; everything else goes to the wrapped runtime and installer.
pub struct CcaasRuntime {
    inner: Arc<dyn Runtime>,
    installer: Arc<dyn PackageInstaller>,
    /// Template values for connection.json (Fabric's `CHAINCODE_AS_A_SERVICE_BUILDER_CONFIG`).
    template: Map<String, Value>,
    services: Mutex<HashMap<String, Connection>>,
    streams: Mutex<HashMap<LaunchKey, Dialed>>,
    support: OnceLock<ChaincodeSupportService>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl CcaasRuntime {
    pub fn new(
        inner: Arc<dyn Runtime>,
        installer: Arc<dyn PackageInstaller>,
        template: Map<String, Value>,
    ) -> Self {
        Self {
            inner,
            installer,
            template,
            services: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            support: OnceLock::new(),
        }
    }

    /// The ChaincodeSupport service whose handler and gate serve dialled streams. The service
    /// needs the launcher, which needs this runtime: so it is attached after both exist.
    pub fn attach(&self, support: ChaincodeSupportService) {
        if self.support.set(support).is_err() {
            tracing::warn!("the ccaas runtime already has a ChaincodeSupport service");
        }
    }

    /// Adds a chaincode server for `package_id` without a package (tests, `dev --ccaas`).
    pub fn add_service(&self, package_id: impl Into<String>, connection: Connection) {
        lock(&self.services).insert(package_id.into(), connection);
    }

    /// connection.json of an installed ccaas package.
    pub fn service(&self, package_id: &str) -> Option<Connection> {
        lock(&self.services).get(package_id).cloned()
    }

    async fn dial_launch(&self, spec: LaunchSpec, conn: Connection) -> Result<(), RuntimeError> {
        let key = spec.key.clone();
        let start_error = |message: String| RuntimeError::Start {
            key: key.clone(),
            message,
        };
        let support = self
            .support
            .get()
            .cloned()
            .ok_or_else(|| start_error("no ChaincodeSupport service is attached".into()))?;
        let identity = match &spec.tls {
            Some(tls) => Some(
                CertificateDer::from_pem_slice(tls.client_cert_pem.as_bytes())
                    .map_err(|e| start_error(format!("reading the launch certificate: {e}")))?
                    .to_vec(),
            ),
            None => None,
        };
        let deadline = Instant::now() + conn.dial_timeout();
        let channel = dial(&conn, deadline).await.map_err(start_error)?;

        let (out_tx, out_rx) = mpsc::channel::<Result<ChaincodeMessage, tonic::Status>>(128);
        let outbound = ReceiverStream::new(out_rx).filter_map(|m| futures::future::ready(m.ok()));
        // The same message limits as a stream the chaincode opens (not tonic's 4 MiB default).
        let limit = support.transport_limit();
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let connect = async {
            grpc.ready().await.map_err(|e| error_chain(&e))?;
            grpc.streaming(
                tonic::Request::new(outbound),
                tonic::codegen::http::uri::PathAndQuery::from_static(CONNECT_PATH),
                tonic_prost::ProstCodec::<ChaincodeMessage, ChaincodeMessage>::default(),
            )
            .await
            .map_err(|status| format!("{}: {}", status.code(), status.message()))
        };
        // A connection made at the very end of the dial timeout still gets a moment to answer.
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let response = match tokio::time::timeout(remaining, connect).await {
            Ok(Ok(response)) => response,
            Ok(Err(message)) => {
                return Err(start_error(format!(
                    "the chaincode server at {} refused {CONNECT_PATH}: {message}",
                    conn.address
                )));
            }
            Err(_) => {
                return Err(start_error(format!(
                    "the chaincode server at {} did not answer {CONNECT_PATH} within the dial timeout of {:?}",
                    conn.address,
                    conn.dial_timeout()
                )));
            }
        };

        let last_error = Arc::new(Mutex::new(None::<String>));
        let inbound = {
            let last_error = last_error.clone();
            response.into_inner().inspect(move |item| {
                if let Err(status) = item {
                    *lock(&last_error) = Some(format!("{}: {}", status.code(), status.message()));
                }
            })
        };
        let refusal = Arc::new(Mutex::new(None::<String>));
        let gate = Arc::new(DialedGate {
            inner: support.gate(),
            package_id: key.package_id.clone(),
            refusal: refusal.clone(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let (ended_tx, ended_rx) = watch::channel(None);
        // Known before the stream runs: a stream that ends at once is still stopped properly.
        tracing::info!(%key, address = %conn.address, "dialled the chaincode server");
        lock(&self.streams).insert(
            key,
            Dialed {
                stop: stop_tx,
                ended: ended_rx,
            },
        );
        let task = support.serve_dialed(inbound, out_tx, gate, identity, stop_rx);
        let address = conn.address.clone();
        tokio::spawn(async move {
            // The client keeps the connection open for as long as the stream runs.
            let _grpc = grpc;
            let _ = task.await;
            let why = lock(&refusal)
                .take()
                .map(|refused| format!("REGISTER refused: {refused}"))
                .or_else(|| {
                    lock(&last_error)
                        .take()
                        .map(|error| format!("the stream failed: {error}"))
                })
                .unwrap_or_else(|| "the stream ended".to_string());
            tracing::info!(%address, %why, "chaincode server stream ended");
            ended_tx.send_replace(Some(format!("chaincode server at {address}: {why}")));
        });
        Ok(())
    }
}

/// Connects to the chaincode server, retrying refused connections until `deadline` (a server
/// that is still starting is normal), and fails naming the address and the last error.
pub(crate) async fn dial(conn: &Connection, deadline: Instant) -> Result<Channel, String> {
    let address = &conn.address;
    let scheme = if conn.tls_required { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| format!("the chaincode server address {address:?} is not usable: {e}"))?
        .tcp_nodelay(true);
    if conn.tls_required {
        let host = crate::endorser::chaincode::tls::address_host(address);
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&conn.root_cert))
            .domain_name(host);
        if conn.client_auth_required {
            tls = tls.identity(Identity::from_pem(&conn.client_cert, &conn.client_key));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| format!("TLS settings for {address}: {}", error_chain(&e)))?;
    }
    let mut delay = Duration::from_millis(50);
    let mut last = String::from("no attempt");
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        let attempt = endpoint.clone().connect_timeout(remaining);
        match tokio::time::timeout(remaining, attempt.connect()).await {
            Ok(Ok(channel)) => return Ok(channel),
            Ok(Err(e)) => last = error_chain(&e),
            Err(_) => last = "connection attempt timed out".into(),
        }
        tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now()))).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
    Err(format!(
        "could not connect to the chaincode server at {address} within the dial timeout of {:?}: {last}",
        conn.dial_timeout()
    ))
}

/// An error and its sources, `a: b: c` (tonic's transport errors say little on their own).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The gate of one dialled stream: the chaincode must register as the package that was dialled;
/// then the launcher decides, as for every stream. Remembers a refusal so the launch can fail
/// with it at once.
struct DialedGate {
    inner: Arc<dyn RegistrationGate>,
    package_id: String,
    refusal: Arc<Mutex<Option<String>>>,
}

impl RegistrationGate for DialedGate {
    fn authorize(&self, req: &RegisterRequest<'_>) -> Result<RegistrationTicket, String> {
        let decision = if req.chaincode_id != self.package_id {
            Err(format!(
                "the chaincode server registered as {:?}, but it was dialled for package {}: start it with CHAINCODE_ID (CORE_CHAINCODE_ID_NAME) = {}",
                req.chaincode_id, self.package_id, self.package_id
            ))
        } else {
            self.inner.authorize(req)
        };
        if let Err(refused) = &decision {
            *lock(&self.refusal) = Some(refused.clone());
        }
        decision
    }

    fn ready(&self, ticket: &RegistrationTicket, handle: ChaincodeHandle) {
        self.inner.ready(ticket, handle);
    }

    fn gone(&self, ticket: &RegistrationTicket) {
        self.inner.gone(ticket);
    }
}

impl Runtime for CcaasRuntime {
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            match self.service(&spec.key.package_id) {
                Some(conn) => self.dial_launch(spec, conn).await,
                None => self.inner.launch(spec).await,
            }
        })
    }

    fn stop(
        &self,
        key: &LaunchKey,
        why: StopReason,
    ) -> BoxFuture<'_, Result<ExitStatus, RuntimeError>> {
        let key = key.clone();
        Box::pin(async move {
            if self.service(&key.package_id).is_none() {
                return self.inner.stop(&key, why).await;
            }
            // Stopping a launch that never dialled (dial failed) is not an error either.
            let Some(dialed) = lock(&self.streams).remove(&key) else {
                return Ok(ExitStatus::Code(0));
            };
            dialed.stop.send_replace(true);
            let mut ended = dialed.ended;
            let _ = tokio::time::timeout(STOP_GRACE, ended.wait_for(Option::is_some)).await;
            Ok(ExitStatus::Code(0))
        })
    }

    fn wait(&self, key: &LaunchKey) -> BoxFuture<'_, Result<ExitStatus, RuntimeError>> {
        let key = key.clone();
        Box::pin(async move {
            let Some(conn) = self.service(&key.package_id) else {
                return self.inner.wait(&key).await;
            };
            let ended = lock(&self.streams).get(&key).map(|d| d.ended.clone());
            let Some(mut ended) = ended else {
                return Err(RuntimeError::UnknownInstance(key));
            };
            let why = match ended.wait_for(Option::is_some).await {
                Ok(why) => why.clone().unwrap_or_default(),
                Err(_) => format!("chaincode server at {}: the stream ended", conn.address),
            };
            Err(RuntimeError::Start { key, message: why })
        })
    }

    fn registered(&self, key: &LaunchKey) -> BoxFuture<'_, ()> {
        let key = key.clone();
        Box::pin(async move {
            if self.service(&key.package_id).is_none() {
                self.inner.registered(&key).await;
            }
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let streams: Vec<_> = lock(&self.streams).drain().collect();
            for (_, dialed) in streams {
                dialed.stop.send_replace(true);
            }
            self.inner.shutdown().await;
        })
    }
}

impl PackageInstaller for CcaasRuntime {
    fn install(
        &self,
        work_dir: &Path,
        package_bytes: &[u8],
        limits: &Limits,
    ) -> Result<PackageId, InstallError> {
        let package = read_package(package_bytes, limits)?;
        if !package.metadata.kind.eq_ignore_ascii_case("ccaas") {
            return self.installer.install(work_dir, package_bytes, limits);
        }
        let conn = connection_with(&package, &self.template)?;
        tracing::info!(package_id = %package.id, address = %conn.address, "chaincode-as-a-service package");
        self.add_service(package.id.to_string(), conn);
        Ok(package.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::package::{ccaas_package, package_source_dir};
    use crate::endorser::chaincode::launcher::{Launcher, LauncherConfig};
    use crate::endorser::chaincode::registration::DevModeGate;
    use crate::endorser::chaincode::runtime::ChaincodeLogging;
    use crate::endorser::chaincode::support::SupportConfig;

    /// Stands for the process or kubernetes runtime: records what reaches it.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
    }

    impl Runtime for Recorder {
        fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<(), RuntimeError>> {
            lock(&self.calls).push(format!("launch {}", spec.key.package_id));
            Box::pin(async { Ok(()) })
        }
        fn stop(
            &self,
            key: &LaunchKey,
            _: StopReason,
        ) -> BoxFuture<'_, Result<ExitStatus, RuntimeError>> {
            lock(&self.calls).push(format!("stop {}", key.package_id));
            Box::pin(async { Ok(ExitStatus::Code(0)) })
        }
        fn wait(&self, _: &LaunchKey) -> BoxFuture<'_, Result<ExitStatus, RuntimeError>> {
            Box::pin(std::future::pending())
        }
    }

    impl PackageInstaller for Recorder {
        fn install(
            &self,
            _: &Path,
            bytes: &[u8],
            limits: &Limits,
        ) -> Result<PackageId, InstallError> {
            let package = read_package(bytes, limits)?;
            lock(&self.calls).push(format!("install {}", package.id));
            Ok(package.id)
        }
    }

    fn spec(package_id: &str) -> LaunchSpec {
        LaunchSpec {
            key: LaunchKey {
                package_id: package_id.into(),
                launch_id: 1,
            },
            peer_address: "127.0.0.1:7052".into(),
            mspid: "Org1MSP".into(),
            tls: None,
            logging: ChaincodeLogging::default(),
        }
    }

    #[tokio::test]
    async fn ccaas_packages_are_dialled_and_everything_else_goes_to_the_wrapped_runtime() {
        let inner = Arc::new(Recorder::default());
        let ccaas = CcaasRuntime::new(inner.clone(), inner.clone(), Map::new());
        let gate = Arc::new(DevModeGate::new());
        ccaas.attach(ChaincodeSupportService::new(
            gate.clone(),
            gate,
            SupportConfig::default(),
        ));
        let work = tempfile::tempdir().unwrap();
        let limits = Limits::default();

        // Nothing listens on port 1 of loopback.
        let service = ccaas_package(
            "svc",
            br#"{"address":"127.0.0.1:1","dial_timeout":"300ms"}"#,
        )
        .unwrap();
        let service_id = ccaas.install(work.path(), &service, &limits).unwrap();
        assert_eq!(
            ccaas.service(&service_id.to_string()).unwrap().address,
            "127.0.0.1:1"
        );

        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("package.json"), "{}").unwrap();
        let node = package_source_dir(src.path(), "node", "nodecc", None, &limits).unwrap();
        let node_id = ccaas.install(work.path(), &node, &limits).unwrap();
        assert!(ccaas.service(&node_id.to_string()).is_none());

        let err = ccaas
            .launch(spec(&service_id.to_string()))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("could not connect to the chaincode server at 127.0.0.1:1"),
            "{err}"
        );
        // Stopping a launch that never connected is fine and never reaches the wrapped runtime.
        ccaas
            .stop(&spec(&service_id.to_string()).key, StopReason::StreamClosed)
            .await
            .unwrap();
        ccaas.launch(spec(&node_id.to_string())).await.unwrap();
        ccaas
            .stop(&spec(&node_id.to_string()).key, StopReason::StreamClosed)
            .await
            .unwrap();
        assert_eq!(
            *lock(&inner.calls),
            vec![
                format!("install {node_id}"),
                format!("launch {node_id}"),
                format!("stop {node_id}"),
            ]
        );
    }

    #[tokio::test]
    async fn a_launch_through_the_launcher_fails_with_the_dial_error() {
        let inner = Arc::new(Recorder::default());
        let ccaas = Arc::new(CcaasRuntime::new(inner.clone(), inner, Map::new()));
        let conn: Connection =
            serde_json::from_str(r#"{"address":"127.0.0.1:1","dial_timeout":"200ms"}"#).unwrap();
        ccaas.add_service("svc:1", conn);
        let launcher: Launcher<ChaincodeHandle> = Launcher::new(
            ccaas.clone(),
            None,
            LauncherConfig::new("127.0.0.1:7052", "Org1MSP"),
        );
        ccaas.attach(ChaincodeSupportService::new(
            Arc::new(launcher.clone()),
            Arc::new(DevModeGate::new()),
            SupportConfig::default(),
        ));
        let err = launcher
            .ensure_registered("svc:1")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("127.0.0.1:1"), "{err}");
        assert!(err.contains("dial timeout of 200ms"), "{err}");
    }
}
