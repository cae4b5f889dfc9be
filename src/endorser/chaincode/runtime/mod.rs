//! Where chaincode runs. A [`Runtime`] launches one instance of a chaincode package, stops it, and
//! reports when it exits; the launcher decides when. Implementations: [`process`] (local processes,
//! the embedded default used by `chaincode-operator dev`) and [`kubernetes`] (each launch becomes a
//! `Chaincode` resource the operator runs as a Pod). [`ccaas`] wraps either: chaincode-as-a-service
//! packages are dialled instead of launched, everything else goes to the wrapped runtime. A
//! runtime learns packages at install through [`PackageInstaller`].
//!
//! The Fabric launch contract — environment variables and TLS files a chaincode expects — is built
//! here once ([`fabric_launch_files`], [`fabric_environment`]) so every runtime hands the chaincode
//! exactly the same thing.
use std::path::Path;

use base64::Engine as _;
use futures::future::BoxFuture;

pub mod ccaas;
pub mod isolation;
pub mod kubernetes;
pub mod node_local;
pub mod packages;
pub mod process;

/// Identifies one launch of one package; a launch is one instance (one process, one pod).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LaunchKey {
    pub package_id: String,
    pub launch_id: u64,
}

impl std::fmt::Display for LaunchKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (launch {})", self.package_id, self.launch_id)
    }
}

/// TLS material for one launch, PEM.
#[derive(Clone)]
pub struct LaunchTls {
    pub client_cert_pem: String,
    pub client_key_pem: String,
    /// The root the chaincode trusts for the peer (`peer.crt`).
    pub root_cert_pem: String,
}

impl std::fmt::Debug for LaunchTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchTls").finish_non_exhaustive()
    }
}

/// The shim's logging settings (`CORE_CHAINCODE_LOGGING_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaincodeLogging {
    pub level: String,
    pub shim: String,
    pub format: String,
}

impl Default for ChaincodeLogging {
    fn default() -> Self {
        // Fabric's core.yaml defaults.
        Self {
            level: "info".into(),
            shim: "warning".into(),
            format: "%{color}%{time:2006-01-02 15:04:05.000 MST} [%{module}] %{shortfunc} -> %{level:.4s} %{id:03x}%{color:reset} %{message}".into(),
        }
    }
}

/// Everything a runtime needs to start one instance.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub key: LaunchKey,
    /// HOST:PORT of the endorser's ChaincodeSupport listener, as the chaincode dials it.
    pub peer_address: String,
    pub mspid: String,
    /// None: plaintext stream (development).
    pub tls: Option<LaunchTls>,
    pub logging: ChaincodeLogging,
}

/// How an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no chaincode source is known for package {0}")]
    UnknownPackage(String),
    #[error("building {package_id} failed: {message}")]
    Build { package_id: String, message: String },
    #[error("starting {key} failed: {message}")]
    Start { key: LaunchKey, message: String },
    #[error("no running instance {0}")]
    UnknownInstance(LaunchKey),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| RuntimeError::Io { context, source }
    }
}

/// Why the launcher stops an instance. Local processes stop the same way for every reason; the
/// Kubernetes runtime keeps a Chaincode resource that explains a closed stream or a failed launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The stream of a running chaincode ended; the next invoke starts a new launch.
    StreamClosed,
    /// The launch failed before the chaincode was ready; the message says why.
    LaunchFailed(String),
    /// The endorser is shutting down: nothing of the launch may outlive it.
    Shutdown,
    /// No chaincode definition uses the package any more (a new definition replaced it).
    Retired,
    /// A transaction timed out: the chaincode is presumed stuck (a busy loop blocks every later
    /// call too) and is replaced by a fresh launch on the next invoke; the message says which.
    Unresponsive(String),
}

/// Launches, stops and watches chaincode instances. Object-safe so the launcher can hold any runtime.
pub trait Runtime: Send + Sync + 'static {
    /// Builds (or reuses the build of) the package and starts one instance. Returns once started;
    /// registration is the launcher's business.
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<(), RuntimeError>>;
    /// Stops the instance: graceful first, forced after the runtime's grace period. Returns once it
    /// has exited. Stopping an instance that already exited is not an error.
    fn stop(
        &self,
        key: &LaunchKey,
        why: StopReason,
    ) -> BoxFuture<'_, Result<ExitStatus, RuntimeError>>;
    /// Resolves when the instance exits (or its launch fails for good), with how it exited. May be
    /// called any number of times.
    fn wait(&self, key: &LaunchKey) -> BoxFuture<'_, Result<ExitStatus, RuntimeError>>;
    /// The instance registered and is ready. Runtimes that report registration (Kubernetes) do it
    /// here; the default does nothing.
    fn registered(&self, key: &LaunchKey) -> BoxFuture<'_, ()> {
        let _ = key;
        Box::pin(async {})
    }
    /// The endorser is shutting down, after every known instance was stopped: release whatever the
    /// runtime still holds (the Kubernetes runtime deletes everything it wrote, including launches
    /// whose streams already closed). The default does nothing.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Where installed packages go: a runtime must accept a package (and keep what launching it needs)
/// before it can launch it. Called at `_lifecycle` install and again for every stored package when
/// the endorser starts.
pub trait PackageInstaller: Send + Sync + 'static {
    /// Reads and validates `package_bytes` and keeps what launching needs (under `work_dir` when it
    /// needs files); returns the package id.
    fn install(
        &self,
        work_dir: &Path,
        package_bytes: &[u8],
        limits: &crate::builders::Limits,
    ) -> Result<crate::builders::PackageId, packages::InstallError>;
}

/// Names of the files Fabric places at `/etc/hyperledger/fabric/`.
pub mod files {
    /// Client key, base64 of the PEM (what the Node shim reads).
    pub const CLIENT_KEY: &str = "client.key";
    /// Client certificate, base64 of the PEM.
    pub const CLIENT_CERT: &str = "client.crt";
    /// Client key, PEM (what the Go shim reads).
    pub const CLIENT_KEY_PEM: &str = "client_pem.key";
    /// Client certificate, PEM.
    pub const CLIENT_CERT_PEM: &str = "client_pem.crt";
    /// The root the chaincode trusts for the peer.
    pub const PEER_ROOT: &str = "peer.crt";
}

/// One file of the launch contract: name inside the launch directory, content, and whether it is
/// secret (written owner-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchFile {
    pub name: &'static str,
    pub contents: Vec<u8>,
    pub secret: bool,
}

/// The TLS files of a launch, exactly Fabric's set (none in plaintext mode).
pub fn fabric_launch_files(tls: Option<&LaunchTls>) -> Vec<LaunchFile> {
    let Some(tls) = tls else {
        return Vec::new();
    };
    let b64 = |pem: &str| {
        base64::engine::general_purpose::STANDARD
            .encode(pem.as_bytes())
            .into_bytes()
    };
    vec![
        LaunchFile {
            name: files::CLIENT_KEY,
            contents: b64(&tls.client_key_pem),
            secret: true,
        },
        LaunchFile {
            name: files::CLIENT_CERT,
            contents: b64(&tls.client_cert_pem),
            secret: false,
        },
        LaunchFile {
            name: files::CLIENT_KEY_PEM,
            contents: tls.client_key_pem.clone().into_bytes(),
            secret: true,
        },
        LaunchFile {
            name: files::CLIENT_CERT_PEM,
            contents: tls.client_cert_pem.clone().into_bytes(),
            secret: false,
        },
        LaunchFile {
            name: files::PEER_ROOT,
            contents: tls.root_cert_pem.clone().into_bytes(),
            secret: false,
        },
    ]
}

/// Fabric's chaincode environment for `spec`, with the TLS file variables pointing into
/// `files_dir` (`/etc/hyperledger/fabric` in a container; a per-launch directory locally).
pub fn fabric_environment(spec: &LaunchSpec, files_dir: &Path) -> Vec<(String, String)> {
    let path = |name: &str| files_dir.join(name).to_string_lossy().into_owned();
    let mut env = vec![
        (
            "CORE_CHAINCODE_ID_NAME".to_string(),
            spec.key.package_id.clone(),
        ),
        ("CORE_PEER_ADDRESS".into(), spec.peer_address.clone()),
        ("CORE_PEER_LOCALMSPID".into(), spec.mspid.clone()),
    ];
    if spec.tls.is_some() {
        env.extend([
            ("CORE_PEER_TLS_ENABLED".to_string(), "true".to_string()),
            ("CORE_PEER_TLS_ROOTCERT_FILE".into(), path(files::PEER_ROOT)),
            ("CORE_TLS_CLIENT_KEY_PATH".into(), path(files::CLIENT_KEY)),
            ("CORE_TLS_CLIENT_CERT_PATH".into(), path(files::CLIENT_CERT)),
            (
                "CORE_TLS_CLIENT_KEY_FILE".into(),
                path(files::CLIENT_KEY_PEM),
            ),
            (
                "CORE_TLS_CLIENT_CERT_FILE".into(),
                path(files::CLIENT_CERT_PEM),
            ),
        ]);
    } else {
        env.push(("CORE_PEER_TLS_ENABLED".into(), "false".into()));
    }
    env.extend([
        (
            "CORE_CHAINCODE_LOGGING_LEVEL".to_string(),
            spec.logging.level.clone(),
        ),
        (
            "CORE_CHAINCODE_LOGGING_SHIM".into(),
            spec.logging.shim.clone(),
        ),
        (
            "CORE_CHAINCODE_LOGGING_FORMAT".into(),
            spec.logging.format.clone(),
        ),
    ]);
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tls: Option<LaunchTls>) -> LaunchSpec {
        LaunchSpec {
            key: LaunchKey {
                package_id: "mycc:abc".into(),
                launch_id: 7,
            },
            peer_address: "127.0.0.1:7052".into(),
            mspid: "Org1MSP".into(),
            tls,
            logging: ChaincodeLogging::default(),
        }
    }

    fn tls() -> LaunchTls {
        LaunchTls {
            client_cert_pem: "CERT PEM\n".into(),
            client_key_pem: "KEY PEM\n".into(),
            root_cert_pem: "ROOT PEM\n".into(),
        }
    }

    #[test]
    fn tls_environment_points_every_file_variable_into_the_launch_dir() {
        let env = fabric_environment(&spec(Some(tls())), Path::new("/run/l7"));
        let expected: Vec<(&str, &str)> = vec![
            ("CORE_CHAINCODE_ID_NAME", "mycc:abc"),
            ("CORE_PEER_ADDRESS", "127.0.0.1:7052"),
            ("CORE_PEER_LOCALMSPID", "Org1MSP"),
            ("CORE_PEER_TLS_ENABLED", "true"),
            ("CORE_PEER_TLS_ROOTCERT_FILE", "/run/l7/peer.crt"),
            ("CORE_TLS_CLIENT_KEY_PATH", "/run/l7/client.key"),
            ("CORE_TLS_CLIENT_CERT_PATH", "/run/l7/client.crt"),
            ("CORE_TLS_CLIENT_KEY_FILE", "/run/l7/client_pem.key"),
            ("CORE_TLS_CLIENT_CERT_FILE", "/run/l7/client_pem.crt"),
            ("CORE_CHAINCODE_LOGGING_LEVEL", "info"),
            ("CORE_CHAINCODE_LOGGING_SHIM", "warning"),
        ];
        let got: Vec<(&str, &str)> = env
            .iter()
            .filter(|(k, _)| k != "CORE_CHAINCODE_LOGGING_FORMAT")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn plaintext_environment_has_no_tls_files() {
        let env = fabric_environment(&spec(None), Path::new("/run/l7"));
        assert!(env.contains(&("CORE_PEER_TLS_ENABLED".into(), "false".into())));
        assert!(
            !env.iter()
                .any(|(k, _)| k.contains("TLS_CLIENT") || k.contains("ROOTCERT"))
        );
        assert!(fabric_launch_files(None).is_empty());
    }

    #[test]
    fn launch_files_carry_base64_and_pem_variants() {
        let files = fabric_launch_files(Some(&tls()));
        let by_name = |n: &str| files.iter().find(|f| f.name == n).unwrap();
        assert_eq!(by_name("client.key").contents, b"S0VZIFBFTQo=");
        assert_eq!(by_name("client.crt").contents, b"Q0VSVCBQRU0K");
        assert_eq!(by_name("client_pem.key").contents, b"KEY PEM\n");
        assert_eq!(by_name("client_pem.crt").contents, b"CERT PEM\n");
        assert_eq!(by_name("peer.crt").contents, b"ROOT PEM\n");
        assert!(by_name("client.key").secret && by_name("client_pem.key").secret);
        assert_eq!(files.len(), 5);
    }
}
