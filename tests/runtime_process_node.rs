//! The process runtime with a real Node "chaincode" (tests/fixtures/runtime/node-chaincode, no npm
//! dependencies so `npm install` works offline). The fixture reads Fabric's env and files like
//! fabric-shim and dials a TLS listener here that requires client certificates from the
//! per-process CA and gates the REGISTER line through the launcher.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chaincode_operator::endorser::chaincode::launcher::{LaunchError, Launcher, LauncherConfig};
use chaincode_operator::endorser::chaincode::runtime::process::{
    ProcessRuntime, ProcessRuntimeConfig,
};
use chaincode_operator::endorser::chaincode::runtime::{
    ChaincodeLogging, ExitStatus, LaunchKey, LaunchSpec, Runtime, RuntimeError, StopReason,
};
use chaincode_operator::endorser::chaincode::tls::{ChaincodeCa, cert_hash};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

// ---------- captured logs ----------

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .init();
        buffer
    })
}

/// (stream, message) of every chaincode output line logged for `chaincode_id`.
fn chaincode_lines(chaincode_id: &str) -> Vec<(String, String)> {
    let bytes = logs().0.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["target"] == "chaincode")
        .filter(|event| event["fields"]["chaincode_id"] == chaincode_id)
        .map(|event| {
            (
                event["fields"]["stream"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                event["fields"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

async fn wait_for_line(chaincode_id: &str, prefix: &str) -> (String, String) {
    for _ in 0..600 {
        if let Some(hit) = chaincode_lines(chaincode_id)
            .into_iter()
            .find(|(_, m)| m.starts_with(prefix))
        {
            return hit;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no line starting with {prefix:?} from {chaincode_id}; got {:?}",
        chaincode_lines(chaincode_id)
    );
}

// ---------- fixture and runtime ----------

fn fixture_source(dir: &Path, mode: &str) -> PathBuf {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runtime/node-chaincode");
    let source = dir.join(format!("source-{mode}"));
    std::fs::create_dir_all(&source).unwrap();
    for name in ["package.json", "chaincode.js"] {
        std::fs::copy(fixture.join(name), source.join(name)).unwrap();
    }
    std::fs::write(source.join("mode"), mode).unwrap();
    source
}

fn runtime(work: &Path, grace: Duration) -> Arc<ProcessRuntime> {
    let mut config = ProcessRuntimeConfig::new(work);
    config.stop_grace = grace;
    Arc::new(ProcessRuntime::new(config))
}

fn spec(package_id: &str, launch_id: u64) -> LaunchSpec {
    LaunchSpec {
        key: LaunchKey {
            package_id: package_id.into(),
            launch_id,
        },
        peer_address: "127.0.0.1:9".into(),
        mspid: "Org1MSP".into(),
        tls: None,
        logging: ChaincodeLogging::default(),
    }
}

// ---------- the peer side: a listener gating REGISTER through the launcher ----------

#[derive(Debug, Clone)]
enum Registration {
    Accepted {
        chaincode_id: String,
        cert_hash: Option<[u8; 32]>,
    },
    Refused {
        chaincode_id: String,
        reason: String,
    },
}

struct Peer {
    address: String,
    registrations: Arc<Mutex<Vec<Registration>>>,
}

/// Serves one connection like the ChaincodeSupport adapter would: REGISTER line in, authorize
/// with the presented certificate, READY, and `gone` when the stream ends.
async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    cert_der: Option<Vec<u8>>,
    launcher: Launcher<String>,
    registrations: Arc<Mutex<Vec<Registration>>>,
) {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
        return;
    }
    let chaincode_id = line
        .trim()
        .strip_prefix("REGISTER ")
        .unwrap_or_default()
        .to_string();
    match launcher.authorize(&chaincode_id, cert_der.as_deref()) {
        Ok(launch_id) => {
            registrations.lock().unwrap().push(Registration::Accepted {
                chaincode_id: chaincode_id.clone(),
                cert_hash: cert_der.as_deref().map(cert_hash),
            });
            let _ = stream
                .write_all(format!("OK {chaincode_id}\n").as_bytes())
                .await;
            launcher.ready(
                &chaincode_id,
                launch_id,
                format!("{chaincode_id}#{launch_id}"),
            );
            // Hold the stream until the chaincode goes away.
            let mut rest = String::new();
            while stream.read_line(&mut rest).await.unwrap_or(0) > 0 {}
            launcher.gone(&chaincode_id, launch_id);
        }
        Err(refused) => {
            registrations.lock().unwrap().push(Registration::Refused {
                chaincode_id,
                reason: refused.to_string(),
            });
            let _ = stream
                .write_all(format!("REFUSED {refused}\n").as_bytes())
                .await;
            let _ = stream.shutdown().await;
        }
    }
}

/// Binds the peer listener, builds the launcher with its address, then serves REGISTERs through it.
async fn launcher_and_peer(
    runtime: Arc<ProcessRuntime>,
    ca: Option<Arc<ChaincodeCa>>,
) -> (Launcher<String>, Peer) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let mut config = LauncherConfig::new(&address, "Org1MSP");
    config.startup_timeout = Duration::from_secs(120);
    let launcher: Launcher<String> = Launcher::new(runtime, ca.clone(), config);

    let registrations = Arc::new(Mutex::new(Vec::new()));
    let acceptor = ca.map(|ca| {
        let server = ca.issue_listener(&address).unwrap();
        tokio_rustls::TlsAcceptor::from(ca.rustls_server_config(&server).unwrap())
    });
    let seen = registrations.clone();
    let serving = launcher.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let launcher = serving.clone();
            let seen = seen.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        // A handshake failure (no or foreign client cert) just drops the socket.
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let der = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|certs| certs.first())
                            .map(|cert| cert.to_vec());
                        serve_stream(tls, der, launcher, seen).await;
                    }
                    None => serve_stream(tcp, None, launcher, seen).await,
                }
            });
        }
    });
    (
        launcher,
        Peer {
            address,
            registrations,
        },
    )
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .unwrap()
        .1
        .contents
}

/// The fixture's report. It prints it before dialling, but the runtime's stdout reader can log
/// it after the registration completes, so wait for it like any other line.
async fn report_of(chaincode_id: &str) -> Value {
    let (_, line) = wait_for_line(chaincode_id, "FIXTURE-REPORT ").await;
    serde_json::from_str(line.trim_start_matches("FIXTURE-REPORT ")).unwrap()
}

// ---------- tests ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_launch_registers_with_the_issued_certificate_and_fabric_env_and_files() {
    logs();
    let work = tempfile::tempdir().unwrap();
    let runtime = runtime(work.path(), Duration::from_secs(10));
    let ca = Arc::new(ChaincodeCa::generate("runtime test endorser").unwrap());
    let (launcher, peer) = launcher_and_peer(runtime.clone(), Some(ca.clone())).await;
    let id = "fixture-tls:1.0";
    runtime.add_source(id, fixture_source(work.path(), "dial"));

    let handle = launcher.ensure_registered(id).await.unwrap();
    assert!(handle.starts_with("fixture-tls:1.0#"), "{handle}");
    assert!(launcher.is_running(id));

    // The fixture's view of its launch.
    let report = report_of(id).await;
    let env: BTreeMap<String, String> = serde_json::from_value(report["env"].clone()).unwrap();
    let names: BTreeSet<&str> = env.keys().map(String::as_str).collect();
    let expected_names: BTreeSet<&str> = [
        "CORE_CHAINCODE_ID_NAME",
        "CORE_PEER_ADDRESS",
        "CORE_PEER_LOCALMSPID",
        "CORE_PEER_TLS_ENABLED",
        "CORE_PEER_TLS_ROOTCERT_FILE",
        "CORE_TLS_CLIENT_KEY_PATH",
        "CORE_TLS_CLIENT_CERT_PATH",
        "CORE_TLS_CLIENT_KEY_FILE",
        "CORE_TLS_CLIENT_CERT_FILE",
        "CORE_CHAINCODE_LOGGING_LEVEL",
        "CORE_CHAINCODE_LOGGING_SHIM",
        "CORE_CHAINCODE_LOGGING_FORMAT",
    ]
    .into();
    assert_eq!(names, expected_names);
    assert_eq!(env["CORE_CHAINCODE_ID_NAME"], id);
    assert_eq!(env["CORE_PEER_ADDRESS"], peer.address);
    assert_eq!(report["peerAddressArg"], peer.address.as_str());
    assert_eq!(env["CORE_PEER_LOCALMSPID"], "Org1MSP");
    assert_eq!(env["CORE_PEER_TLS_ENABLED"], "true");
    let dir = Path::new(&env["CORE_TLS_CLIENT_KEY_PATH"])
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        dir.starts_with(work.path()),
        "launch files live under the work dir"
    );
    for (var, file) in [
        ("CORE_PEER_TLS_ROOTCERT_FILE", "peer.crt"),
        ("CORE_TLS_CLIENT_KEY_PATH", "client.key"),
        ("CORE_TLS_CLIENT_CERT_PATH", "client.crt"),
        ("CORE_TLS_CLIENT_KEY_FILE", "client_pem.key"),
        ("CORE_TLS_CLIENT_CERT_FILE", "client_pem.crt"),
    ] {
        assert_eq!(Path::new(&env[var]), dir.join(file), "{var}");
    }
    let files = report["files"].as_object().unwrap();
    let file_names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        file_names,
        [
            "client.crt",
            "client.key",
            "client_pem.crt",
            "client_pem.key",
            "peer.crt"
        ]
    );
    let cert_pem = files["client_pem.crt"]["text"].as_str().unwrap();
    let cert_b64 = files["client.crt"]["text"].as_str().unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(cert_b64)
            .unwrap(),
        cert_pem.as_bytes(),
        "client.crt is base64 of client_pem.crt"
    );
    assert!(cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        files["client.key"]["decodedSha256"], files["client_pem.key"]["sha256"],
        "client.key is base64 of client_pem.key"
    );
    assert_eq!(files["peer.crt"]["text"], ca.root_pem());

    // The handshake used exactly the certificate issued for this launch.
    let registrations = peer.registrations.lock().unwrap().clone();
    let issued_hash = cert_hash(&pem_to_der(cert_pem));
    assert!(
        matches!(&registrations[..], [Registration::Accepted { chaincode_id, cert_hash: Some(h) }]
            if chaincode_id == id && *h == issued_hash),
        "{registrations:?}"
    );
    let (stream, _) = wait_for_line(id, "CONNECTED tls=true").await;
    assert_eq!(stream, "stdout");
    wait_for_line(id, &format!("PEER SAYS OK {id}")).await;

    // A chaincode presenting a certificate of another launch (same CA, valid TLS) is refused.
    let impostor_id = "fixture-impostor:1.0";
    let impostor_src = fixture_source(work.path(), "impostor");
    let stolen = ca.issue_client(impostor_id).unwrap();
    std::fs::write(impostor_src.join("impostor.crt"), &stolen.cert_pem).unwrap();
    std::fs::write(impostor_src.join("impostor.key"), &stolen.key_pem).unwrap();
    runtime.add_source(impostor_id, impostor_src);
    let refused = launcher.ensure_registered(impostor_id).await.unwrap_err();
    assert!(
        matches!(
            refused,
            LaunchError::ExitedBeforeReady {
                status: ExitStatus::Code(1),
                ..
            }
        ),
        "{refused}"
    );
    let registrations = peer.registrations.lock().unwrap().clone();
    assert!(
        registrations.iter().any(|r| matches!(r,
            Registration::Refused { chaincode_id, reason }
                if chaincode_id == impostor_id && reason.contains("not the one issued"))),
        "{registrations:?}"
    );
    wait_for_line(impostor_id, "PEER SAYS REFUSED").await;
    assert!(!launcher.is_running(impostor_id));
    assert!(launcher.is_running(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_launch_gets_no_tls_env_or_files_and_sigterm_is_honoured() {
    logs();
    let work = tempfile::tempdir().unwrap();
    let runtime = runtime(work.path(), Duration::from_secs(20));
    let (launcher, peer) = launcher_and_peer(runtime.clone(), None).await;
    let id = "fixture-plain:1.0";
    runtime.add_source(id, fixture_source(work.path(), "dial"));

    let handle = launcher.ensure_registered(id).await.unwrap();
    let report = report_of(id).await;
    let env: BTreeMap<String, String> = serde_json::from_value(report["env"].clone()).unwrap();
    assert_eq!(env["CORE_PEER_TLS_ENABLED"], "false");
    assert_eq!(env["CORE_PEER_ADDRESS"], peer.address);
    assert!(
        !env.keys()
            .any(|k| k.starts_with("CORE_TLS_") || k == "CORE_PEER_TLS_ROOTCERT_FILE")
    );
    assert_eq!(report["files"], serde_json::json!({}));
    wait_for_line(id, "CONNECTED tls=false").await;

    let launch_id: u64 = handle.rsplit('#').next().unwrap().parse().unwrap();
    let key = LaunchKey {
        package_id: id.into(),
        launch_id,
    };
    let started = Instant::now();
    let status = runtime.stop(&key, StopReason::Shutdown).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopped by SIGTERM, not by SIGKILL after the grace period ({status})"
    );
    wait_for_line(id, "SIGTERM RECEIVED").await;
    // The stream closed, so the launcher no longer counts the chaincode as running.
    for _ in 0..100 {
        if !launcher.is_running(id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!launcher.is_running(id));
}

fn process_is_gone(pid: u32) -> bool {
    // A zombie (state Z) has exited; only its parent's reaping is pending.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The two pids (parent, child) the stubborn fixture's parent reports.
async fn parent_reported_pids(id: &str) -> Vec<u32> {
    let (_, parent_line) = wait_for_line(id, "PARENT PID ").await;
    let pids: Vec<u32> = parent_line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "{parent_line}");
    pids
}

/// The two pids (parent, child) of the stubborn fixture, once both are up.
async fn stubborn_pids(id: &str) -> Vec<u32> {
    let pids = parent_reported_pids(id).await;
    wait_for_line(id, "CHILD PID ").await;
    pids
}

/// Waits up to `within` for every pid to be gone; panics naming the survivor and `what`.
async fn all_gone(pids: &[u32], within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while !pids.iter().all(|pid| process_is_gone(*pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for pid in pids {
        assert!(process_is_gone(*pid), "process {pid} {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_the_grace_period_takes_the_whole_process_group() {
    logs();
    let work = tempfile::tempdir().unwrap();
    let grace = Duration::from_millis(1500);
    let runtime = runtime(work.path(), grace);
    let id = "fixture-stubborn:1.0";
    runtime.add_source(id, fixture_source(work.path(), "stubborn"));
    let spec = spec(id, 1);
    runtime.launch(spec.clone()).await.unwrap();
    let pids = stubborn_pids(id).await;
    assert!(pids.iter().all(|pid| !process_is_gone(*pid)));

    let started = Instant::now();
    let status = runtime.stop(&spec.key, StopReason::Shutdown).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= grace,
        "SIGKILL only after the grace period ({elapsed:?}, {status})"
    );
    assert!(elapsed < grace * 4, "but promptly after it ({elapsed:?})");
    wait_for_line(id, "IGNORING SIGTERM").await;
    wait_for_line(id, "CHILD IGNORING SIGTERM").await;
    all_gone(&pids, Duration::from_secs(2), "of the group survived").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_reported_by_wait_with_its_exit_code_and_stderr_is_captured() {
    logs();
    let work = tempfile::tempdir().unwrap();
    let runtime = runtime(work.path(), Duration::from_secs(5));
    let id = "fixture-crash:1.0";
    runtime.add_source(id, fixture_source(work.path(), "crash"));
    let spec = spec(id, 1);
    runtime.launch(spec.clone()).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), runtime.wait(&spec.key))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, ExitStatus::Code(3));
    // wait may be asked again and answers the same.
    assert_eq!(runtime.wait(&spec.key).await.unwrap(), ExitStatus::Code(3));
    let (stream, _) = wait_for_line(id, "CRASHING ON PURPOSE").await;
    assert_eq!(stream, "stderr");
    // Stopping an instance that already exited is fine and reports how it ended.
    assert_eq!(
        runtime.stop(&spec.key, StopReason::Shutdown).await.unwrap(),
        ExitStatus::Code(3)
    );
}

fn counting_build_script(source: &Path, counter: &Path) {
    let mut script = std::fs::File::create(source.join("build.sh")).unwrap();
    writeln!(script, "echo built >> '{}'", counter.display()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_are_cached_per_package_id() {
    logs();
    let work = tempfile::tempdir().unwrap();
    let runtime = runtime(work.path(), Duration::from_secs(5));
    let counter = work.path().join("builds-run.txt");
    let source = fixture_source(work.path(), "crash");
    counting_build_script(&source, &counter);
    runtime.add_source("cached:1", &source);
    runtime.add_source("cached:2", &source);

    for launch_id in [1, 2] {
        let spec = spec("cached:1", launch_id);
        runtime.launch(spec.clone()).await.unwrap();
        assert_eq!(runtime.wait(&spec.key).await.unwrap(), ExitStatus::Code(3));
    }
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "built\n");
    let outcome = runtime.ensure_built("cached:1").await.unwrap();
    assert!(outcome.reused);
    // Another package id is another build, even from the same sources.
    let other = runtime.ensure_built("cached:2").await.unwrap();
    assert!(!other.reused);
    assert_ne!(other.dir, outcome.dir);
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "built\nbuilt\n");

    // Pruning to one package removes the other's build only (dev does this at start).
    assert_eq!(runtime.prune(&["cached:2"]), 1);
    assert!(!outcome.dir.exists());
    assert!(runtime.ensure_built("cached:2").await.unwrap().reused);
    assert!(!runtime.ensure_built("cached:1").await.unwrap().reused);
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap(),
        "built\nbuilt\nbuilt\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_says_why_and_is_not_cached() {
    logs();
    let work = tempfile::tempdir().unwrap();
    let runtime = runtime(work.path(), Duration::from_secs(5));
    let source = fixture_source(work.path(), "crash");
    std::fs::write(
        source.join("build.sh"),
        "echo 'cannot find module left-pad' >&2\nexit 7\n",
    )
    .unwrap();
    runtime.add_source("broken:1", &source);
    let error = runtime.launch(spec("broken:1", 1)).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, RuntimeError::Build { .. }), "{message}");
    assert!(message.contains("exit code 7"), "{message}");
    assert!(message.contains("cannot find module left-pad"), "{message}");

    // Fixed sources build on the next attempt.
    std::fs::remove_file(source.join("build.sh")).unwrap();
    let built = runtime.ensure_built("broken:1").await.unwrap();
    assert!(!built.reused);
    assert!(
        built.dir.join("package-lock.json").is_file(),
        "npm install ran"
    );
}

#[tokio::test]
async fn unknown_package_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let runtime = runtime(work.path(), Duration::from_secs(5));
    let error = runtime.launch(spec("nope:1", 1)).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "no chaincode source is known for package nope:1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_build_takes_its_whole_process_group_down() {
    logs();
    let work = tempfile::tempdir().unwrap();
    let runtime = runtime(work.path(), Duration::from_secs(5));
    let source = fixture_source(work.path(), "crash");
    let pid_file = work.path().join("build-daemon.pid");
    std::fs::write(
        source.join("build.sh"),
        format!(
            "sleep 300 &\necho $! > '{}'\nsleep 300\n",
            pid_file.display()
        ),
    )
    .unwrap();
    runtime.add_source("hanging:1", &source);
    // What the launcher's startup timeout does: drop the launch future mid-build.
    let abandoned =
        tokio::time::timeout(Duration::from_secs(2), runtime.launch(spec("hanging:1", 1))).await;
    assert!(abandoned.is_err());
    let daemon: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for _ in 0..100 {
        if process_is_gone(daemon) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        process_is_gone(daemon),
        "background process of the build survived"
    );
    // Nothing half-built is cached.
    std::fs::remove_file(source.join("build.sh")).unwrap();
    assert!(!runtime.ensure_built("hanging:1").await.unwrap().reused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_install_uses_the_custom_registry() {
    logs();
    // A registry that knows no package: records what npm asks for and answers 404.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry = format!("http://{}/", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut socket = BufReader::new(socket);
                let mut request_line = String::new();
                if socket.read_line(&mut request_line).await.is_err() {
                    return;
                }
                seen.lock().unwrap().push(request_line.trim().to_string());
                let mut header = String::new();
                while socket.read_line(&mut header).await.unwrap_or(0) > 2 {
                    header.clear();
                }
                let body = "{\"error\":\"not found\"}";
                let response = format!(
                    "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });

    let work = tempfile::tempdir().unwrap();
    let mut config = ProcessRuntimeConfig::new(work.path());
    config.node.registry = Some(registry.clone());
    let source = fixture_source(work.path(), "crash");
    std::fs::write(
        source.join("package.json"),
        r#"{"name":"needs-a-dependency","version":"1.0.0","dependencies":{"fixture-only-dependency":"1.0.0"},"scripts":{"start":"node chaincode.js"}}"#,
    )
    .unwrap();
    std::fs::write(
        source.join(".npmrc"),
        // A fresh npm cache, so nothing can be served from an earlier download.
        format!("cache={}\n", work.path().join("npm-cache").display()),
    )
    .unwrap();
    let runtime = ProcessRuntime::new(config);
    runtime.add_source("deps:1", &source);
    let error = runtime
        .ensure_built("deps:1")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("npm install --production --registry"),
        "{error}"
    );
    assert!(error.contains("404"), "the build error says why: {error}");
    let requests = requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /fixture-only-dependency")),
        "npm asked the custom registry: {requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_of_one_label_build_side_by_side() {
    logs();
    let work = tempfile::tempdir().unwrap();
    let runtime = runtime(work.path(), Duration::from_secs(5));
    let source = fixture_source(work.path(), "crash");
    std::fs::write(source.join("build.sh"), "sleep 0.5\necho ok > built.txt\n").unwrap();
    runtime.add_source("label:1.0", &source);
    runtime.add_source("label:1.1", &source);
    let (a, b) = tokio::join!(
        runtime.ensure_built("label:1.0"),
        runtime.ensure_built("label:1.1")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.dir, b.dir);
    for built in [a, b] {
        assert_eq!(
            std::fs::read_to_string(built.dir.join("built.txt")).unwrap(),
            "ok\n"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_timeout_stops_a_chaincode_that_never_registers() {
    logs();
    let work = tempfile::tempdir().unwrap();
    let runtime = runtime(work.path(), Duration::from_millis(500));
    let id = "fixture-silent:1.0";
    let source = fixture_source(work.path(), "stubborn");
    // A trivial build keeps the timeout about the start, even on a loaded machine.
    std::fs::write(source.join("build.sh"), "true\n").unwrap();
    runtime.add_source(id, source);
    let mut config = LauncherConfig::new("127.0.0.1:9", "Org1MSP");
    config.startup_timeout = Duration::from_secs(8);
    let launcher: Launcher<String> = Launcher::new(runtime.clone(), None, config);

    let error = launcher.ensure_registered(id).await.unwrap_err();
    assert_eq!(
        error,
        LaunchError::Timeout {
            package_id: id.into(),
            timeout: Duration::from_secs(8)
        }
    );
    let pids = parent_reported_pids(id).await;
    all_gone(&pids, Duration::from_secs(5), "outlived the failed launch").await;
    assert!(!launcher.is_running(id));
}

/// An endorser that is SIGKILLed stops nothing: its chaincode (here the stubborn fixture, a parent
/// that ignores SIGTERM and its child) lives on, disconnected. The next runtime on the same work
/// directory kills all of it before launching anything; a runtime on another directory does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_an_earlier_run_left_behind_are_killed_at_the_next_start() {
    logs();
    let work = tempfile::tempdir().unwrap();
    let first = runtime(work.path(), Duration::from_secs(5));
    let id = "fixture-orphaned:1.0";
    first.add_source(id, fixture_source(work.path(), "stubborn"));
    first.launch(spec(id, 1)).await.unwrap();
    let pids = stubborn_pids(id).await;
    // What a SIGKILL of the endorser amounts to: the runtime is gone without stopping anything.
    std::mem::forget(first);

    let elsewhere = tempfile::tempdir().unwrap();
    assert_eq!(
        runtime(elsewhere.path(), Duration::from_secs(5)).reap_orphans(),
        0
    );
    assert!(pids.iter().all(|pid| !process_is_gone(*pid)));

    let next = runtime(work.path(), Duration::from_secs(5));
    let killed = next.reap_orphans();
    assert!(killed >= pids.len(), "killed {killed}");
    all_gone(&pids, Duration::from_secs(2), "of the earlier run survived").await;
    assert_eq!(next.reap_orphans(), 0, "nothing left on a second look");
}

/// An endorser running as root builds and runs chaincode as an unprivileged user (here `nobody`)
/// with no supplementary groups. The chaincode still registers over mutual TLS, so it read its own
/// launch key, while that user cannot read a key of the endorser's (0600 in a 0700 data directory
/// like a real one under /root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_root_chaincode_runs_as_an_unprivileged_user_that_cannot_read_the_endorsers_keys() {
    use chaincode_operator::endorser::chaincode::runtime::isolation::RunAs;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: running chaincode as another user needs root");
        return;
    }
    logs();
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let endorser_key = work.path().join("endorser_sk");
    std::fs::write(&endorser_key, "endorser private key").unwrap();
    std::fs::set_permissions(&endorser_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let user = RunAs::parse("nobody").unwrap().unwrap_or(RunAs {
        uid: 65534,
        gid: 65534,
    });
    let mut config = ProcessRuntimeConfig::new(work.path().join("chaincode"));
    config.stop_grace = Duration::from_secs(10);
    config.run_as = Some(user);
    let runtime = Arc::new(ProcessRuntime::new(config));
    let ca = Arc::new(ChaincodeCa::generate("runtime test endorser").unwrap());
    let (launcher, _peer) = launcher_and_peer(runtime.clone(), Some(ca)).await;
    let id = "fixture-user:1.0";
    runtime.add_source(id, fixture_source(work.path(), "dial"));

    launcher
        .ensure_registered(id)
        .await
        .expect("registers over mutual TLS with its own launch key");
    let wanted = format!("CORE_CHAINCODE_ID_NAME={id}");
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == wanted.as_bytes()))
        })
        .collect();
    assert!(!pids.is_empty(), "the chaincode's processes are found");
    for pid in &pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(field("Uid:"), vec![user.uid.to_string(); 4], "pid {pid}");
        assert_eq!(field("Gid:"), vec![user.gid.to_string(); 4], "pid {pid}");
        assert!(
            field("Groups:").is_empty(),
            "pid {pid}: {:?}",
            field("Groups:")
        );
    }
    let as_chaincode = std::process::Command::new("cat")
        .arg(&endorser_key)
        .uid(user.uid)
        .gid(user.gid)
        .output()
        .unwrap();
    assert!(
        !as_chaincode.status.success(),
        "the chaincode's user read the endorser's key"
    );
    launcher.shutdown().await;
}
