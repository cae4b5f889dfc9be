//! The launcher's async shell against a scripted fake Runtime: the test plays the chaincode
//! (REGISTER via `authorize`, READY via `ready`, stream end via `gone`).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaincode_operator::endorser::chaincode::launcher::{
    LaunchError, Launcher, LauncherConfig, RegisterRefused,
};
use chaincode_operator::endorser::chaincode::runtime::{
    ExitStatus, LaunchKey, LaunchSpec, Runtime, RuntimeError, StopReason,
};
use chaincode_operator::endorser::chaincode::tls::ChaincodeCa;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};

#[derive(Default)]
struct FakeState {
    launches: Vec<LaunchKey>,
    stops: Vec<LaunchKey>,
    exits: HashMap<LaunchKey, watch::Sender<Option<ExitStatus>>>,
    fail_next_launch: Option<String>,
}

/// A runtime that starts nothing: it reports each launch on a channel and exits on request.
#[derive(Clone)]
struct FakeRuntime {
    state: Arc<Mutex<FakeState>>,
    launched: mpsc::UnboundedSender<LaunchSpec>,
}

impl FakeRuntime {
    fn new() -> (Self, mpsc::UnboundedReceiver<LaunchSpec>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                state: Arc::default(),
                launched: tx,
            },
            rx,
        )
    }
    fn launches(&self) -> Vec<LaunchKey> {
        self.state.lock().unwrap().launches.clone()
    }
    fn stops(&self) -> Vec<LaunchKey> {
        self.state.lock().unwrap().stops.clone()
    }
    /// The instance of `key` exits on its own.
    fn exit(&self, key: &LaunchKey, status: ExitStatus) {
        let state = self.state.lock().unwrap();
        state.exits[key].send_replace(Some(status));
    }
}

impl Runtime for FakeRuntime {
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<(), RuntimeError>> {
        async move {
            let mut state = self.state.lock().unwrap();
            if let Some(message) = state.fail_next_launch.take() {
                return Err(RuntimeError::Build {
                    package_id: spec.key.package_id.clone(),
                    message,
                });
            }
            state.launches.push(spec.key.clone());
            state.exits.insert(spec.key.clone(), watch::channel(None).0);
            self.launched.send(spec).unwrap();
            Ok(())
        }
        .boxed()
    }

    fn stop(
        &self,
        key: &LaunchKey,
        _why: StopReason,
    ) -> BoxFuture<'_, Result<ExitStatus, RuntimeError>> {
        let key = key.clone();
        async move {
            let mut state = self.state.lock().unwrap();
            state.stops.push(key.clone());
            match state.exits.get(&key) {
                Some(exit) => {
                    exit.send_replace(Some(ExitStatus::Signal(15)));
                    Ok(ExitStatus::Signal(15))
                }
                None => Err(RuntimeError::UnknownInstance(key)),
            }
        }
        .boxed()
    }

    fn wait(&self, key: &LaunchKey) -> BoxFuture<'_, Result<ExitStatus, RuntimeError>> {
        let key = key.clone();
        async move {
            let exit = self
                .state
                .lock()
                .unwrap()
                .exits
                .get(&key)
                .map(|e| e.subscribe());
            let mut exit = exit.ok_or_else(|| RuntimeError::UnknownInstance(key.clone()))?;
            let status = *exit
                .wait_for(Option::is_some)
                .await
                .map_err(|_| RuntimeError::UnknownInstance(key.clone()))?;
            status.ok_or(RuntimeError::UnknownInstance(key))
        }
        .boxed()
    }
}

fn config(startup_timeout: Duration) -> LauncherConfig {
    let mut config = LauncherConfig::new("127.0.0.1:7052", "Org1MSP");
    config.startup_timeout = startup_timeout;
    config
}

fn plaintext(
    startup_timeout: Duration,
) -> (
    Launcher<String>,
    FakeRuntime,
    mpsc::UnboundedReceiver<LaunchSpec>,
) {
    let (runtime, launched) = FakeRuntime::new();
    let launcher = Launcher::new(Arc::new(runtime.clone()), None, config(startup_timeout));
    (launcher, runtime, launched)
}

fn der_of(pem: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    pem.contents
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn concurrent_callers_share_one_launch() {
    let (launcher, runtime, mut launched) = plaintext(Duration::from_secs(30));
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let launcher = launcher.clone();
            tokio::spawn(async move { launcher.ensure_registered("cc:1").await })
        })
        .collect();
    let spec = launched.recv().await.unwrap();
    assert_eq!(spec.key.package_id, "cc:1");
    assert!(spec.tls.is_none());
    assert_eq!(spec.peer_address, "127.0.0.1:7052");
    let launch_id = launcher.authorize("cc:1", None).unwrap();
    assert_eq!(launch_id, spec.key.launch_id);
    launcher.ready("cc:1", launch_id, "handle-1".to_string());
    for caller in callers {
        assert_eq!(caller.await.unwrap(), Ok("handle-1".to_string()));
    }
    assert_eq!(runtime.launches().len(), 1);
    // Registered now: no further launch.
    assert_eq!(
        launcher.ensure_registered("cc:1").await.unwrap(),
        "handle-1"
    );
    assert_eq!(runtime.launches().len(), 1);
}

#[tokio::test]
async fn startup_timeout_fails_every_waiter_alike_and_stops_the_instance() {
    let (launcher, runtime, mut launched) = plaintext(Duration::from_millis(300));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let launcher = launcher.clone();
            tokio::spawn(async move { launcher.ensure_registered("slow:1").await })
        })
        .collect();
    let spec = launched.recv().await.unwrap();
    let mut errors = Vec::new();
    for waiter in waiters {
        errors.push(waiter.await.unwrap().unwrap_err());
    }
    let expected = LaunchError::Timeout {
        package_id: "slow:1".into(),
        timeout: Duration::from_millis(300),
    };
    assert!(errors.iter().all(|e| *e == expected), "{errors:?}");
    assert!(expected.to_string().contains("did not register within"));
    assert_eq!(runtime.stops(), vec![spec.key.clone()]);
    // A REGISTER arriving after the timeout belongs to no launch.
    assert!(matches!(
        launcher.authorize("slow:1", None),
        Err(RegisterRefused::NotExpected { .. })
    ));
    // The next call launches afresh.
    let again = {
        let launcher = launcher.clone();
        tokio::spawn(async move { launcher.ensure_registered("slow:1").await })
    };
    let second = launched.recv().await.unwrap();
    assert_ne!(second.key.launch_id, spec.key.launch_id);
    let id = launcher.authorize("slow:1", None).unwrap();
    launcher.ready("slow:1", id, "h2".into());
    assert_eq!(again.await.unwrap(), Ok("h2".into()));
}

#[tokio::test]
async fn runtime_error_reaches_every_waiter() {
    let (launcher, runtime, _launched) = plaintext(Duration::from_secs(30));
    runtime.state.lock().unwrap().fail_next_launch = Some("npm install: exit code 1".into());
    let (a, b) = tokio::join!(
        launcher.ensure_registered("broken:1"),
        launcher.ensure_registered("broken:1")
    );
    let error = a.unwrap_err();
    assert_eq!(Err(error.clone()), b);
    assert!(matches!(error, LaunchError::Runtime { .. }));
    assert!(
        error.to_string().contains("npm install: exit code 1"),
        "{error}"
    );
}

#[tokio::test]
async fn exit_before_register_fails_fast_with_the_status() {
    let (launcher, runtime, mut launched) = plaintext(Duration::from_secs(60));
    let waiter = {
        let launcher = launcher.clone();
        tokio::spawn(async move { launcher.ensure_registered("crash:1").await })
    };
    let spec = launched.recv().await.unwrap();
    runtime.exit(&spec.key, ExitStatus::Code(3));
    let result = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("an exit must not wait for the startup timeout")
        .unwrap();
    assert_eq!(
        result,
        Err(LaunchError::ExitedBeforeReady {
            package_id: "crash:1".into(),
            status: ExitStatus::Code(3)
        })
    );
}

#[tokio::test]
async fn dropped_stream_marks_not_running_and_the_next_call_relaunches() {
    let (launcher, runtime, mut launched) = plaintext(Duration::from_secs(30));
    let first = {
        let launcher = launcher.clone();
        tokio::spawn(async move { launcher.ensure_registered("cc:1").await })
    };
    let spec = launched.recv().await.unwrap();
    let id = launcher.authorize("cc:1", None).unwrap();
    launcher.ready("cc:1", id, "old".into());
    assert_eq!(first.await.unwrap(), Ok("old".into()));
    assert!(launcher.is_running("cc:1"));

    launcher.gone("cc:1", id);
    assert!(!launcher.is_running("cc:1"));
    wait_until("the old instance is stopped", || {
        runtime.stops() == vec![spec.key.clone()]
    })
    .await;

    let second = {
        let launcher = launcher.clone();
        tokio::spawn(async move { launcher.ensure_registered("cc:1").await })
    };
    let relaunch = launched.recv().await.unwrap();
    assert_ne!(relaunch.key.launch_id, id);
    let new_id = launcher.authorize("cc:1", None).unwrap();
    launcher.ready("cc:1", new_id, "new".into());
    assert_eq!(second.await.unwrap(), Ok("new".into()));
    assert_eq!(runtime.launches().len(), 2);
}

#[tokio::test]
async fn stream_closed_before_ready_fails_the_waiters() {
    let (launcher, _runtime, mut launched) = plaintext(Duration::from_secs(30));
    let waiter = {
        let launcher = launcher.clone();
        tokio::spawn(async move { launcher.ensure_registered("cc:1").await })
    };
    launched.recv().await.unwrap();
    let id = launcher.authorize("cc:1", None).unwrap();
    launcher.gone("cc:1", id);
    assert_eq!(
        waiter.await.unwrap(),
        Err(LaunchError::StreamClosedBeforeReady {
            package_id: "cc:1".into()
        })
    );
}

#[tokio::test]
async fn a_caller_giving_up_does_not_cancel_the_launch_for_others() {
    let (launcher, runtime, mut launched) = plaintext(Duration::from_secs(30));
    let impatient = tokio::time::timeout(
        Duration::from_millis(50),
        launcher.ensure_registered("cc:1"),
    )
    .await;
    assert!(impatient.is_err());
    let spec = launched.recv().await.unwrap();
    let patient = {
        let launcher = launcher.clone();
        tokio::spawn(async move { launcher.ensure_registered("cc:1").await })
    };
    let id = launcher.authorize("cc:1", None).unwrap();
    assert_eq!(id, spec.key.launch_id);
    launcher.ready("cc:1", id, "h".into());
    assert_eq!(patient.await.unwrap(), Ok("h".into()));
    assert_eq!(runtime.launches().len(), 1);
}

#[tokio::test]
async fn unsolicited_register_is_refused_unless_dev_mode() {
    let (launcher, _runtime, _launched) = plaintext(Duration::from_secs(30));
    let refused = launcher.authorize("manual:1", None).unwrap_err();
    assert!(refused.to_string().contains("unsolicited"), "{refused}");

    let (runtime, _launched) = FakeRuntime::new();
    let mut dev = config(Duration::from_secs(30));
    dev.dev_mode = true;
    let launcher: Launcher<String> = Launcher::new(Arc::new(runtime.clone()), None, dev);
    let id = launcher.authorize("manual:1", None).unwrap();
    launcher.ready("manual:1", id, "by-hand".into());
    assert_eq!(
        launcher.ensure_registered("manual:1").await,
        Ok("by-hand".into())
    );
    assert!(runtime.launches().is_empty());
    launcher.gone("manual:1", id);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        runtime.stops().is_empty(),
        "a hand-started chaincode has no instance to stop"
    );
}

#[tokio::test]
async fn tls_launch_gets_a_fresh_certificate_and_only_it_registers() {
    let (runtime, mut launched) = FakeRuntime::new();
    let ca = Arc::new(ChaincodeCa::generate("test endorser").unwrap());
    let launcher: Launcher<String> = Launcher::new(
        Arc::new(runtime.clone()),
        Some(ca.clone()),
        config(Duration::from_secs(30)),
    );
    let a = {
        let launcher = launcher.clone();
        tokio::spawn(async move { launcher.ensure_registered("a:1").await })
    };
    let b = {
        let launcher = launcher.clone();
        tokio::spawn(async move { launcher.ensure_registered("b:1").await })
    };
    let mut specs = HashMap::new();
    for _ in 0..2 {
        let spec = launched.recv().await.unwrap();
        specs.insert(spec.key.package_id.clone(), spec);
    }
    let tls_a = specs["a:1"].tls.clone().unwrap();
    let tls_b = specs["b:1"].tls.clone().unwrap();
    assert_eq!(tls_a.root_cert_pem, ca.root_pem());
    assert_ne!(tls_a.client_cert_pem, tls_b.client_cert_pem);

    assert_eq!(
        launcher.authorize("a:1", Some(&der_of(&tls_b.client_cert_pem))),
        Err(RegisterRefused::CertificateMismatch {
            chaincode_id: "a:1".into()
        })
    );
    assert_eq!(
        launcher.authorize("a:1", None),
        Err(RegisterRefused::MissingClientCert {
            chaincode_id: "a:1".into()
        })
    );
    let id_a = launcher
        .authorize("a:1", Some(&der_of(&tls_a.client_cert_pem)))
        .unwrap();
    let id_b = launcher
        .authorize("b:1", Some(&der_of(&tls_b.client_cert_pem)))
        .unwrap();
    launcher.ready("a:1", id_a, "A".into());
    launcher.ready("b:1", id_b, "B".into());
    assert_eq!(a.await.unwrap(), Ok("A".into()));
    assert_eq!(b.await.unwrap(), Ok("B".into()));
}

#[tokio::test]
async fn shutdown_stops_every_instance_and_fails_waiters() {
    let (launcher, runtime, mut launched) = plaintext(Duration::from_secs(30));
    let running = {
        let launcher = launcher.clone();
        tokio::spawn(async move { launcher.ensure_registered("running:1").await })
    };
    let running_spec = launched.recv().await.unwrap();
    let id = launcher.authorize("running:1", None).unwrap();
    launcher.ready("running:1", id, "h".into());
    assert_eq!(running.await.unwrap(), Ok("h".into()));

    let pending = {
        let launcher = launcher.clone();
        tokio::spawn(async move { launcher.ensure_registered("pending:1").await })
    };
    let pending_spec = launched.recv().await.unwrap();

    launcher.shutdown().await;
    assert_eq!(
        pending.await.unwrap(),
        Err(LaunchError::ShuttingDown {
            package_id: "pending:1".into()
        })
    );
    let mut stopped = runtime.stops();
    stopped.sort_by_key(|key| key.launch_id);
    assert_eq!(stopped, vec![running_spec.key, pending_spec.key]);
    assert!(!launcher.is_running("running:1"));
    assert!(matches!(
        launcher.ensure_registered("running:1").await,
        Err(LaunchError::ShuttingDown { .. })
    ));
    assert!(matches!(
        launcher.authorize("pending:1", None),
        Err(RegisterRefused::ShuttingDown { .. })
    ));
    assert_eq!(runtime.launches().len(), 2);
}

/// A package no definition uses any more is stopped, whether it runs or is still launching; its
/// waiters hear why, and a later caller starts a fresh launch.
#[tokio::test]
async fn retired_packages_are_stopped_and_their_waiters_told() {
    let (launcher, runtime, mut launched) = plaintext(Duration::from_secs(30));
    let running = {
        let launcher = launcher.clone();
        tokio::spawn(async move { launcher.ensure_registered("old:1").await })
    };
    let spec = launched.recv().await.unwrap();
    let launch_id = launcher.authorize("old:1", None).unwrap();
    launcher.ready("old:1", launch_id, "handle-old".to_string());
    assert_eq!(running.await.unwrap(), Ok("handle-old".to_string()));

    let pending = {
        let launcher = launcher.clone();
        tokio::spawn(async move { launcher.ensure_registered("slow:1").await })
    };
    let slow = launched.recv().await.unwrap();
    assert_eq!(
        launcher.launched_packages(),
        vec!["old:1".to_string(), "slow:1".to_string()]
    );

    launcher.retire("old:1", "test").await;
    launcher.retire("slow:1", "test").await;
    assert_eq!(
        pending.await.unwrap(),
        Err(LaunchError::Retired {
            package_id: "slow:1".into()
        })
    );
    assert_eq!(runtime.stops(), vec![spec.key.clone(), slow.key.clone()]);
    assert!(launcher.launched_packages().is_empty());
    assert!(!launcher.is_running("old:1"));
    // Retiring what is not launched does nothing.
    launcher.retire("never:1", "test").await;
    assert_eq!(runtime.stops().len(), 2);

    // Needed again (defined again): a new launch.
    let again = {
        let launcher = launcher.clone();
        tokio::spawn(async move { launcher.ensure_registered("old:1").await })
    };
    let fresh = launched.recv().await.unwrap();
    assert!(fresh.key.launch_id > spec.key.launch_id);
    launcher.ready(
        "old:1",
        launcher.authorize("old:1", None).unwrap(),
        "handle-new".into(),
    );
    assert_eq!(again.await.unwrap(), Ok("handle-new".to_string()));

    // Idle: a running package nobody asked for in the period; just used means not idle.
    assert_eq!(
        launcher.idle_packages(Duration::ZERO),
        vec!["old:1".to_string()]
    );
    assert!(launcher.idle_packages(Duration::from_secs(3600)).is_empty());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        launcher.idle_packages(Duration::from_millis(40)),
        vec!["old:1".to_string()]
    );
    launcher.ensure_registered("old:1").await.unwrap();
    assert!(launcher.idle_packages(Duration::from_millis(40)).is_empty());
}
