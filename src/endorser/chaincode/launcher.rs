//! The launcher: makes sure a chaincode package is running and registered before a transaction needs
//! it. One launch at a time per package id; concurrent callers share it (the seed's thundering-herd
//! guard); a startup timeout covers build + start + REGISTER; a REGISTER is accepted only for a
//! pending launch and, with TLS, only with the client certificate issued for that launch.
//!
//! [`LaunchTable`] is the pure decision core (no IO, no clock); [`Launcher`] is the thin async
//! shell around it that talks to a [`Runtime`], issues certificates and wakes waiters.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::endorser::chaincode::runtime::{
    ChaincodeLogging, ExitStatus, LaunchKey, LaunchSpec, LaunchTls, Runtime, StopReason,
};
use crate::endorser::chaincode::tls::{CertHash, ChaincodeCa, cert_hash};

/// Fabric's default startup timeout (build + start + REGISTER).
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a launch failed. Cloneable: every caller waiting on the launch gets the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    #[error("launching chaincode {package_id} failed: {message}")]
    Runtime { package_id: String, message: String },
    #[error(
        "chaincode {package_id} did not register within the startup timeout of {timeout:?} (build + start + REGISTER)"
    )]
    Timeout {
        package_id: String,
        timeout: Duration,
    },
    #[error("chaincode {package_id} exited ({status}) before it registered")]
    ExitedBeforeReady {
        package_id: String,
        status: ExitStatus,
    },
    #[error("chaincode {package_id} closed its stream before it was ready")]
    StreamClosedBeforeReady { package_id: String },
    #[error("issuing the TLS client certificate for chaincode {package_id} failed: {message}")]
    Tls { package_id: String, message: String },
    #[error("the launch of chaincode {package_id} was abandoned")]
    Abandoned { package_id: String },
    #[error("the endorser is shutting down: chaincode {package_id} is not launched")]
    ShuttingDown { package_id: String },
    #[error("the launch of chaincode {package_id} was stopped: no definition uses it any more")]
    Retired { package_id: String },
}

/// Why a REGISTER was refused; the message goes back to the chaincode in an ERROR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterRefused {
    #[error("no launch of chaincode {chaincode_id} is pending: unsolicited REGISTER refused")]
    NotExpected { chaincode_id: String },
    #[error("chaincode {chaincode_id} already registered for this launch")]
    AlreadyRegistered { chaincode_id: String },
    #[error("chaincode {chaincode_id} is already running")]
    AlreadyRunning { chaincode_id: String },
    #[error("chaincode {chaincode_id} presented no TLS client certificate")]
    MissingClientCert { chaincode_id: String },
    #[error(
        "the TLS client certificate of chaincode {chaincode_id} is not the one issued for its launch"
    )]
    CertificateMismatch { chaincode_id: String },
    #[error("the endorser is shutting down: REGISTER of chaincode {chaincode_id} refused")]
    ShuttingDown { chaincode_id: String },
}

/// What the registration check expects of a pending launch's client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CertExpectation {
    /// TLS off: nothing to compare.
    Plaintext,
    /// TLS on but the certificate is not issued yet: nothing can match.
    NotIssued,
    Hash(CertHash),
}

#[derive(Debug)]
enum Slot<H> {
    /// Started (or starting); waiting for REGISTER and then READY.
    Pending {
        launch_id: u64,
        cert: CertExpectation,
        registered: bool,
        /// Unsolicited dev-mode registration: no runtime instance belongs to it.
        dev: bool,
    },
    Running {
        launch_id: u64,
        handle: H,
        dev: bool,
    },
}

/// What a caller of [`LaunchTable::begin`] must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin<H> {
    /// Registered and ready: use this handle.
    Ready(H),
    /// A launch is under way: wait for it.
    Join { launch_id: u64 },
    /// Nobody is launching: start launch `launch_id` now.
    Start { launch_id: u64 },
    /// The table was shut down: no more launches.
    ShuttingDown,
}

/// What the end of a stream means.
#[derive(Debug, PartialEq, Eq)]
pub enum Gone {
    /// A running chaincode went away: it is not running any more; stop its instance if it has one.
    Stopped { launch_id: u64, has_instance: bool },
    /// The launch's stream closed before READY: the launch failed.
    FailedBeforeReady { launch_id: u64, has_instance: bool },
    /// Not the current launch (already replaced or failed): nothing to do.
    Stale,
}

/// The pure launch state of every package: which launch is current, what it expects, whether it
/// is running. Launch ids are unique for the table's lifetime.
#[derive(Debug)]
pub struct LaunchTable<H> {
    tls: bool,
    dev_mode: bool,
    shut_down: bool,
    next_launch_id: u64,
    slots: HashMap<String, Slot<H>>,
}

impl<H: Clone> LaunchTable<H> {
    pub fn new(tls: bool, dev_mode: bool) -> Self {
        Self {
            tls,
            dev_mode,
            shut_down: false,
            next_launch_id: 1,
            slots: HashMap::new(),
        }
    }

    fn new_launch_id(&mut self) -> u64 {
        let id = self.next_launch_id;
        self.next_launch_id += 1;
        id
    }

    /// A caller needs `package_id`.
    pub fn begin(&mut self, package_id: &str) -> Begin<H> {
        if self.shut_down {
            return Begin::ShuttingDown;
        }
        match self.slots.get(package_id) {
            Some(Slot::Running { handle, .. }) => Begin::Ready(handle.clone()),
            Some(Slot::Pending { launch_id, .. }) => Begin::Join {
                launch_id: *launch_id,
            },
            None => {
                let launch_id = self.new_launch_id();
                let cert = if self.tls {
                    CertExpectation::NotIssued
                } else {
                    CertExpectation::Plaintext
                };
                self.slots.insert(
                    package_id.to_string(),
                    Slot::Pending {
                        launch_id,
                        cert,
                        registered: false,
                        dev: false,
                    },
                );
                Begin::Start { launch_id }
            }
        }
    }

    /// The client certificate for launch `launch_id` was issued. False if that launch is gone.
    pub fn cert_issued(&mut self, package_id: &str, launch_id: u64, hash: CertHash) -> bool {
        match self.slots.get_mut(package_id) {
            Some(Slot::Pending {
                launch_id: current,
                cert,
                ..
            }) if *current == launch_id => {
                *cert = CertExpectation::Hash(hash);
                true
            }
            _ => false,
        }
    }

    /// A REGISTER for `chaincode_id` arrived presenting a client certificate with hash `presented`.
    pub fn authorize(
        &mut self,
        chaincode_id: &str,
        presented: Option<CertHash>,
    ) -> Result<u64, RegisterRefused> {
        let id = || chaincode_id.to_string();
        if self.shut_down {
            return Err(RegisterRefused::ShuttingDown { chaincode_id: id() });
        }
        match self.slots.get_mut(chaincode_id) {
            Some(Slot::Running { .. }) => {
                Err(RegisterRefused::AlreadyRunning { chaincode_id: id() })
            }
            Some(Slot::Pending {
                registered: true, ..
            }) => Err(RegisterRefused::AlreadyRegistered { chaincode_id: id() }),
            Some(Slot::Pending {
                launch_id,
                cert,
                registered,
                ..
            }) => {
                match (*cert, presented) {
                    (CertExpectation::Plaintext, _) => {}
                    (CertExpectation::NotIssued, _) => {
                        return Err(RegisterRefused::NotExpected { chaincode_id: id() });
                    }
                    (CertExpectation::Hash(_), None) => {
                        return Err(RegisterRefused::MissingClientCert { chaincode_id: id() });
                    }
                    (CertExpectation::Hash(expected), Some(got)) if expected != got => {
                        return Err(RegisterRefused::CertificateMismatch { chaincode_id: id() });
                    }
                    (CertExpectation::Hash(_), Some(_)) => {}
                }
                *registered = true;
                Ok(*launch_id)
            }
            None if self.dev_mode => {
                let launch_id = self.new_launch_id();
                self.slots.insert(
                    id(),
                    Slot::Pending {
                        launch_id,
                        cert: CertExpectation::Plaintext,
                        registered: true,
                        dev: true,
                    },
                );
                Ok(launch_id)
            }
            None => Err(RegisterRefused::NotExpected { chaincode_id: id() }),
        }
    }

    /// The chaincode of launch `launch_id` sent READY. True when that made it the running instance.
    pub fn ready(&mut self, chaincode_id: &str, launch_id: u64, handle: H) -> bool {
        match self.slots.get(chaincode_id) {
            Some(Slot::Pending {
                launch_id: current,
                registered: true,
                dev,
                ..
            }) if *current == launch_id => {
                let dev = *dev;
                self.slots.insert(
                    chaincode_id.to_string(),
                    Slot::Running {
                        launch_id,
                        handle,
                        dev,
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// The stream of launch `launch_id` ended.
    pub fn gone(&mut self, chaincode_id: &str, launch_id: u64) -> Gone {
        let outcome = match self.slots.get(chaincode_id) {
            Some(Slot::Running {
                launch_id: current,
                dev,
                ..
            }) if *current == launch_id => Gone::Stopped {
                launch_id,
                has_instance: !dev,
            },
            Some(Slot::Pending {
                launch_id: current,
                dev,
                ..
            }) if *current == launch_id => Gone::FailedBeforeReady {
                launch_id,
                has_instance: !dev,
            },
            _ => return Gone::Stale,
        };
        self.slots.remove(chaincode_id);
        outcome
    }

    /// Launch `launch_id` failed (runtime error, early exit, timeout). True when it was still the
    /// pending launch, so its waiters must be told and its instance stopped; false when it had
    /// already become ready or been replaced.
    pub fn fail(&mut self, package_id: &str, launch_id: u64) -> bool {
        match self.slots.get(package_id) {
            Some(Slot::Pending {
                launch_id: current, ..
            }) if *current == launch_id => {
                self.slots.remove(package_id);
                true
            }
            _ => false,
        }
    }

    /// True when `package_id` is registered and ready.
    pub fn is_running(&self, package_id: &str) -> bool {
        matches!(self.slots.get(package_id), Some(Slot::Running { .. }))
    }

    /// Packages with a launch (pending or running) that this endorser started; dev-mode
    /// registrations are not launches.
    pub fn launched_packages(&self) -> Vec<String> {
        let mut packages: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, slot)| {
                !matches!(
                    slot,
                    Slot::Pending { dev: true, .. } | Slot::Running { dev: true, .. }
                )
            })
            .map(|(package_id, _)| package_id.clone())
            .collect();
        packages.sort();
        packages
    }

    /// Forgets the launch of `package_id`: the next caller starts a new one. Returns its launch id
    /// when there was one to stop.
    pub fn retire(&mut self, package_id: &str) -> Option<u64> {
        match self.slots.remove(package_id)? {
            Slot::Pending { launch_id, .. } | Slot::Running { launch_id, .. } => Some(launch_id),
        }
    }

    /// Forgets the running launch of `package_id` if `is_it` recognises its handle and the
    /// endorser started it (a dev-mode registration is the user's process, left alone). Returns
    /// its launch id.
    pub fn retire_running_if(
        &mut self,
        package_id: &str,
        is_it: impl Fn(&H) -> bool,
    ) -> Option<u64> {
        match self.slots.get(package_id)? {
            Slot::Running {
                launch_id,
                handle,
                dev: false,
            } if is_it(handle) => {
                let launch_id = *launch_id;
                self.slots.remove(package_id);
                Some(launch_id)
            }
            _ => None,
        }
    }

    /// Refuses every further launch and REGISTER and hands back every current launch:
    /// (package id, launch id, whether it has a runtime instance to stop).
    pub fn shut_down(&mut self) -> Vec<(String, u64, bool)> {
        self.shut_down = true;
        let mut launches: Vec<_> = self
            .slots
            .drain()
            .map(|(package_id, slot)| match slot {
                Slot::Pending { launch_id, dev, .. } | Slot::Running { launch_id, dev, .. } => {
                    (package_id, launch_id, !dev)
                }
            })
            .collect();
        launches.sort();
        launches
    }

    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }
}

/// Settings of a [`Launcher`].
#[derive(Debug, Clone)]
pub struct LauncherConfig {
    /// HOST:PORT of the ChaincodeSupport listener, as chaincode dials it.
    pub peer_address: String,
    pub mspid: String,
    pub startup_timeout: Duration,
    /// Accept REGISTERs no launch expects (a chaincode started by hand).
    pub dev_mode: bool,
    pub logging: ChaincodeLogging,
    /// Stop a chaincode no transaction has asked for in this long (None: never).
    pub idle_timeout: Option<Duration>,
}

impl LauncherConfig {
    pub fn new(peer_address: impl Into<String>, mspid: impl Into<String>) -> Self {
        Self {
            peer_address: peer_address.into(),
            mspid: mspid.into(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            dev_mode: false,
            logging: ChaincodeLogging::default(),
            idle_timeout: None,
        }
    }
}

/// Launcher options on the command line; `#[command(flatten)]` them into `endorser` and `dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct LauncherArgs {
    /// Seconds a chaincode launch may take: build + start + REGISTER.
    #[arg(long = "chaincode-startup-timeout", value_name = "SECONDS", default_value_t = DEFAULT_STARTUP_TIMEOUT.as_secs())]
    pub startup_timeout_secs: u64,
    /// Accept REGISTERs that no launch expects (a chaincode started by hand).
    #[arg(long = "dev-mode")]
    pub dev_mode: bool,
    /// Plaintext chaincode stream instead of mutual TLS with per-launch certificates
    /// (development only).
    #[arg(long = "chaincode-plaintext")]
    pub plaintext: bool,
    /// CORE_CHAINCODE_LOGGING_LEVEL handed to chaincode.
    #[arg(long = "chaincode-log-level", default_value = "info")]
    pub log_level: String,
    /// CORE_CHAINCODE_LOGGING_SHIM handed to chaincode.
    #[arg(long = "chaincode-shim-log-level", default_value = "warning")]
    pub shim_log_level: String,
    /// Stop a chaincode no transaction has asked for in this many seconds (it is launched again
    /// on the next one); keep it above the execute timeout. Default: never.
    #[arg(long = "chaincode-idle-timeout", value_name = "SECONDS")]
    pub idle_timeout_secs: Option<u64>,
}

impl LauncherArgs {
    /// The configuration for a listener reachable by chaincode at `peer_address`.
    pub fn config(
        &self,
        peer_address: impl Into<String>,
        mspid: impl Into<String>,
    ) -> LauncherConfig {
        let mut config = LauncherConfig::new(peer_address, mspid);
        config.startup_timeout = Duration::from_secs(self.startup_timeout_secs);
        config.dev_mode = self.dev_mode;
        config.logging.level = self.log_level.clone();
        config.logging.shim = self.shim_log_level.clone();
        config.idle_timeout = self.idle_timeout_secs.map(Duration::from_secs);
        config
    }
}

type Outcome<H> = Option<Result<H, LaunchError>>;

struct State<H> {
    table: LaunchTable<H>,
    /// One channel per pending launch; the launch's outcome is published once.
    waiters: HashMap<u64, watch::Sender<Outcome<H>>>,
    /// When a transaction last asked for each package (idle stops).
    last_used: HashMap<String, std::time::Instant>,
}

struct Shared<H> {
    runtime: Arc<dyn Runtime>,
    ca: Option<Arc<ChaincodeCa>>,
    config: LauncherConfig,
    state: Mutex<State<H>>,
}

/// Launches chaincode through a [`Runtime`] and gates its registration. Cheap to clone.
pub struct Launcher<H: Clone + Send + Sync + 'static> {
    shared: Arc<Shared<H>>,
}

impl<H: Clone + Send + Sync + 'static> Clone for Launcher<H> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the state consistent, so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<H: Clone + Send + Sync + 'static> Launcher<H> {
    /// `ca`: Some = mutual TLS on the chaincode stream with per-launch client certificates;
    /// None = plaintext (development).
    pub fn new(
        runtime: Arc<dyn Runtime>,
        ca: Option<Arc<ChaincodeCa>>,
        config: LauncherConfig,
    ) -> Self {
        let table = LaunchTable::new(ca.is_some(), config.dev_mode);
        Self {
            shared: Arc::new(Shared {
                runtime,
                ca,
                config,
                state: Mutex::new(State {
                    table,
                    waiters: HashMap::new(),
                    last_used: HashMap::new(),
                }),
            }),
        }
    }

    /// Returns the registered handle, launching (once, shared by concurrent callers) if needed,
    /// within the startup timeout; on failure every waiter gets the same error.
    pub async fn ensure_registered(&self, package_id: &str) -> Result<H, LaunchError> {
        let mut outcome = {
            let mut state = lock(&self.shared.state);
            match state.last_used.get_mut(package_id) {
                Some(used) => *used = std::time::Instant::now(),
                None => {
                    state
                        .last_used
                        .insert(package_id.to_string(), std::time::Instant::now());
                }
            }
            match state.table.begin(package_id) {
                Begin::Ready(handle) => return Ok(handle),
                Begin::ShuttingDown => {
                    return Err(LaunchError::ShuttingDown {
                        package_id: package_id.to_string(),
                    });
                }
                Begin::Join { launch_id } => match state.waiters.get(&launch_id) {
                    Some(sender) => sender.subscribe(),
                    None => {
                        return Err(LaunchError::Abandoned {
                            package_id: package_id.to_string(),
                        });
                    }
                },
                Begin::Start { launch_id } => {
                    let (sender, receiver) = watch::channel(None);
                    state.waiters.insert(launch_id, sender);
                    // The launch runs on its own task so a caller giving up does not cancel it
                    // for the others.
                    let shared = self.shared.clone();
                    let key = LaunchKey {
                        package_id: package_id.to_string(),
                        launch_id,
                    };
                    tokio::spawn(drive_launch(shared, key));
                    receiver
                }
            }
        };
        let abandoned = || LaunchError::Abandoned {
            package_id: package_id.to_string(),
        };
        let result = outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| abandoned())?
            .clone();
        result.unwrap_or_else(|| Err(abandoned()))
    }

    /// A REGISTER arrived: accept only if a launch for `chaincode_id` is pending and (TLS on) the
    /// SHA-256 of `client_cert_der` equals the hash of the certificate issued for that launch.
    pub fn authorize(
        &self,
        chaincode_id: &str,
        client_cert_der: Option<&[u8]>,
    ) -> Result<u64, RegisterRefused> {
        let presented = client_cert_der.map(cert_hash);
        let mut state = lock(&self.shared.state);
        let result = state.table.authorize(chaincode_id, presented);
        match &result {
            Ok(launch_id) => {
                // A dev-mode registration has no launch task: give it a channel for callers.
                if !state.waiters.contains_key(launch_id) {
                    state.waiters.insert(*launch_id, watch::channel(None).0);
                }
                tracing::info!(chaincode_id, launch_id, "REGISTER accepted");
            }
            Err(refused) => tracing::warn!(chaincode_id, %refused, "REGISTER refused"),
        }
        result
    }

    /// The chaincode sent READY: `handle` serves transactions from now on.
    pub fn ready(&self, chaincode_id: &str, launch_id: u64, handle: H) {
        let mut state = lock(&self.shared.state);
        if state.table.ready(chaincode_id, launch_id, handle.clone()) {
            if let Some(sender) = state.waiters.remove(&launch_id) {
                sender.send_replace(Some(Ok(handle)));
            }
            tracing::info!(chaincode_id, launch_id, "chaincode ready");
            let key = LaunchKey {
                package_id: chaincode_id.to_string(),
                launch_id,
            };
            let runtime = self.shared.runtime.clone();
            if let Ok(tokio) = tokio::runtime::Handle::try_current() {
                tokio.spawn(async move { runtime.registered(&key).await });
            }
        } else {
            tracing::warn!(
                chaincode_id,
                launch_id,
                "READY for a launch that is not pending; ignored"
            );
        }
    }

    /// Stream dropped: marks the chaincode not running (the next `ensure_registered` relaunches)
    /// and stops its instance.
    pub fn gone(&self, chaincode_id: &str, launch_id: u64) {
        let outcome = {
            let mut state = lock(&self.shared.state);
            let outcome = state.table.gone(chaincode_id, launch_id);
            if let Gone::FailedBeforeReady { .. } = outcome
                && let Some(sender) = state.waiters.remove(&launch_id)
            {
                sender.send_replace(Some(Err(LaunchError::StreamClosedBeforeReady {
                    package_id: chaincode_id.to_string(),
                })));
            }
            outcome
        };
        let (has_instance, why) = match outcome {
            Gone::Stopped { has_instance, .. } => (has_instance, StopReason::StreamClosed),
            Gone::FailedBeforeReady { has_instance, .. } => (
                has_instance,
                StopReason::LaunchFailed(
                    "the chaincode closed its stream before it was ready".into(),
                ),
            ),
            Gone::Stale => (false, StopReason::StreamClosed),
        };
        if has_instance {
            tracing::info!(
                chaincode_id,
                launch_id,
                "chaincode stream closed; not running"
            );
            let key = LaunchKey {
                package_id: chaincode_id.to_string(),
                launch_id,
            };
            let runtime = self.shared.runtime.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(tokio) => {
                    tokio.spawn(async move { stop_instance(runtime.as_ref(), &key, why).await });
                }
                Err(_) => tracing::error!(%key, "no async runtime to stop the chaincode instance"),
            }
        }
    }

    /// True when `package_id` is registered and ready.
    pub fn is_running(&self, package_id: &str) -> bool {
        lock(&self.shared.state).table.is_running(package_id)
    }

    /// Packages this launcher launched (pending or running).
    pub fn launched_packages(&self) -> Vec<String> {
        lock(&self.shared.state).table.launched_packages()
    }

    /// Running packages no transaction has asked for in `idle` or longer.
    pub fn idle_packages(&self, idle: Duration) -> Vec<String> {
        let state = lock(&self.shared.state);
        state
            .table
            .launched_packages()
            .into_iter()
            .filter(|package_id| state.table.is_running(package_id))
            .filter(|package_id| {
                state
                    .last_used
                    .get(package_id)
                    .is_none_or(|used| used.elapsed() >= idle)
            })
            .collect()
    }

    /// Stops the launch of `package_id` (no definition uses it any more, or it is idle: `why`);
    /// callers still waiting on it get [`LaunchError::Retired`]; the next caller launches afresh.
    pub async fn retire(&self, package_id: &str, why: &'static str) {
        let launch_id = {
            let mut state = lock(&self.shared.state);
            let Some(launch_id) = state.table.retire(package_id) else {
                return;
            };
            state.last_used.remove(package_id);
            if let Some(sender) = state.waiters.remove(&launch_id) {
                sender.send_replace(Some(Err(LaunchError::Retired {
                    package_id: package_id.to_string(),
                })));
            }
            launch_id
        };
        tracing::info!(package_id, launch_id, why, "stopping the chaincode");
        let key = LaunchKey {
            package_id: package_id.to_string(),
            launch_id,
        };
        stop_instance(self.shared.runtime.as_ref(), &key, StopReason::Retired).await;
    }

    /// A transaction on `package_id` timed out: the instance behind the handle `is_it`
    /// recognises is presumed stuck, since a busy loop blocks every later call too. It is forgotten
    /// at once, so the next invoke starts a fresh launch, and stopped in the background (SIGTERM,
    /// then SIGKILL after the grace period). Returns false when that instance is no longer the
    /// current launch or is a dev-mode registration, which is the user's process to restart.
    pub fn restart_unresponsive(
        &self,
        package_id: &str,
        is_it: impl Fn(&H) -> bool,
        why: String,
    ) -> bool {
        let launch_id = {
            let mut state = lock(&self.shared.state);
            let Some(launch_id) = state.table.retire_running_if(package_id, is_it) else {
                return false;
            };
            state.last_used.remove(package_id);
            launch_id
        };
        tracing::warn!(package_id, launch_id, %why, "stopping an unresponsive chaincode");
        let key = LaunchKey {
            package_id: package_id.to_string(),
            launch_id,
        };
        let shared = self.shared.clone();
        tokio::spawn(async move {
            stop_instance(shared.runtime.as_ref(), &key, StopReason::Unresponsive(why)).await;
        });
        true
    }

    /// Stops every chaincode instance and refuses further launches and REGISTERs; callers still
    /// waiting on a launch get [`LaunchError::ShuttingDown`].
    pub async fn shutdown(&self) {
        let launches = {
            let mut state = lock(&self.shared.state);
            let launches = state.table.shut_down();
            for (package_id, launch_id, _) in &launches {
                if let Some(sender) = state.waiters.remove(launch_id) {
                    sender.send_replace(Some(Err(LaunchError::ShuttingDown {
                        package_id: package_id.clone(),
                    })));
                }
            }
            state.waiters.clear();
            launches
        };
        let runtime = self.shared.runtime.as_ref();
        let stops = launches
            .into_iter()
            .filter(|(_, _, has_instance)| *has_instance)
            .map(|(package_id, launch_id, _)| async move {
                stop_instance(
                    runtime,
                    &LaunchKey {
                        package_id,
                        launch_id,
                    },
                    StopReason::Shutdown,
                )
                .await
            });
        futures::future::join_all(stops).await;
        self.shared.runtime.shutdown().await;
    }
}

async fn stop_instance(runtime: &dyn Runtime, key: &LaunchKey, why: StopReason) {
    match runtime.stop(key, why).await {
        Ok(status) => tracing::info!(%key, %status, "chaincode instance stopped"),
        Err(e) => tracing::debug!(%key, error = %e, "stopping chaincode instance"),
    }
}

/// Runs one launch to its end: certificate, runtime start, then waits for READY, an early exit or
/// the startup timeout, whichever comes first.
async fn drive_launch<H: Clone + Send + Sync + 'static>(shared: Arc<Shared<H>>, key: LaunchKey) {
    let timeout = shared.config.startup_timeout;
    let result = tokio::time::timeout(timeout, launch_and_wait(&shared, &key)).await;
    let error = match result {
        Ok(None) => return,
        Ok(Some(error)) => error,
        Err(_) => LaunchError::Timeout {
            package_id: key.package_id.clone(),
            timeout,
        },
    };
    let (failed, shut_down) = {
        let mut state = lock(&shared.state);
        let failed = state.table.fail(&key.package_id, key.launch_id);
        if failed && let Some(sender) = state.waiters.remove(&key.launch_id) {
            sender.send_replace(Some(Err(error.clone())));
        }
        (failed, state.table.is_shut_down())
    };
    if failed {
        tracing::warn!(%key, %error, "chaincode launch failed");
    }
    if shut_down {
        stop_instance(shared.runtime.as_ref(), &key, StopReason::Shutdown).await;
    } else if failed {
        let why = StopReason::LaunchFailed(error.to_string());
        stop_instance(shared.runtime.as_ref(), &key, why).await;
    }
}

/// None when the launch resolved (ready, or failed through `gone`); Some(error) when it failed here.
async fn launch_and_wait<H: Clone + Send + Sync + 'static>(
    shared: &Shared<H>,
    key: &LaunchKey,
) -> Option<LaunchError> {
    let package_id = || key.package_id.clone();
    let mut outcome = lock(&shared.state).waiters.get(&key.launch_id)?.subscribe();
    let tls = match &shared.ca {
        None => None,
        Some(ca) => {
            let issued = match ca.issue_client(&key.package_id) {
                Ok(issued) => issued,
                Err(e) => {
                    return Some(LaunchError::Tls {
                        package_id: package_id(),
                        message: e.to_string(),
                    });
                }
            };
            if !lock(&shared.state)
                .table
                .cert_issued(&key.package_id, key.launch_id, issued.hash)
            {
                return None;
            }
            Some(LaunchTls {
                client_cert_pem: issued.cert_pem,
                client_key_pem: issued.key_pem,
                root_cert_pem: ca.root_pem().to_string(),
            })
        }
    };
    let spec = LaunchSpec {
        key: key.clone(),
        peer_address: shared.config.peer_address.clone(),
        mspid: shared.config.mspid.clone(),
        tls,
        logging: shared.config.logging.clone(),
    };
    tracing::info!(%key, "launching chaincode");
    if let Err(e) = shared.runtime.launch(spec).await {
        return Some(LaunchError::Runtime {
            package_id: package_id(),
            message: e.to_string(),
        });
    }
    // Shut down while starting: this instance must not outlive the endorser.
    if lock(&shared.state).table.is_shut_down() {
        return Some(LaunchError::ShuttingDown {
            package_id: package_id(),
        });
    }
    let exit = tokio::select! {
        _ = outcome.wait_for(Option::is_some) => return None,
        exit = shared.runtime.wait(key) => exit,
    };
    // The outcome may have been published just before the exit was noticed.
    if outcome.borrow().is_some() {
        return None;
    }
    Some(match exit {
        Ok(status) => LaunchError::ExitedBeforeReady {
            package_id: package_id(),
            status,
        },
        Err(e) => LaunchError::Runtime {
            package_id: package_id(),
            message: e.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Table = LaunchTable<&'static str>;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        launcher: LauncherArgs,
    }

    #[test]
    fn command_line_defaults_are_fabrics() {
        use clap::Parser as _;
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert!(!cli.launcher.plaintext);
        let config = cli.launcher.config("peer:7052", "Org1MSP");
        assert_eq!(config.startup_timeout, Duration::from_secs(300));
        assert!(!config.dev_mode);
        assert_eq!(config.logging, ChaincodeLogging::default());
        let cli = Cli::try_parse_from([
            "x",
            "--chaincode-startup-timeout",
            "30",
            "--dev-mode",
            "--chaincode-plaintext",
            "--chaincode-log-level",
            "debug",
        ])
        .unwrap();
        assert!(cli.launcher.plaintext);
        let config = cli.launcher.config("peer:7052", "Org1MSP");
        assert_eq!(config.startup_timeout, Duration::from_secs(30));
        assert!(config.dev_mode);
        assert_eq!(config.logging.level, "debug");
        assert!(Cli::try_parse_from(["x", "--chaincode-startup-timeout", "soon"]).is_err());
    }

    fn hash(byte: u8) -> CertHash {
        [byte; 32]
    }

    #[test]
    fn first_caller_starts_others_join_then_everyone_gets_the_handle() {
        let mut t = Table::new(false, false);
        assert_eq!(t.begin("cc:1"), Begin::Start { launch_id: 1 });
        assert_eq!(t.begin("cc:1"), Begin::Join { launch_id: 1 });
        assert_eq!(t.begin("other:1"), Begin::Start { launch_id: 2 });
        assert_eq!(t.authorize("cc:1", None), Ok(1));
        assert!(!t.is_running("cc:1"));
        assert!(t.ready("cc:1", 1, "h1"));
        assert!(t.is_running("cc:1"));
        assert_eq!(t.begin("cc:1"), Begin::Ready("h1"));
    }

    #[test]
    fn unsolicited_register_is_refused_outside_dev_mode() {
        let mut t = Table::new(false, false);
        assert_eq!(
            t.authorize("cc:1", None),
            Err(RegisterRefused::NotExpected {
                chaincode_id: "cc:1".into()
            })
        );
        assert_eq!(t.begin("cc:1"), Begin::Start { launch_id: 1 });
    }

    #[test]
    fn dev_mode_accepts_unsolicited_register_and_callers_use_it() {
        let mut t = Table::new(false, true);
        let launch_id = t.authorize("cc:1", None).unwrap();
        assert_eq!(t.begin("cc:1"), Begin::Join { launch_id });
        assert!(t.ready("cc:1", launch_id, "dev"));
        assert_eq!(t.begin("cc:1"), Begin::Ready("dev"));
        assert_eq!(
            t.gone("cc:1", launch_id),
            Gone::Stopped {
                launch_id,
                has_instance: false
            }
        );
    }

    #[test]
    fn tls_register_needs_the_certificate_issued_for_that_launch() {
        let mut t = Table::new(true, false);
        assert_eq!(t.begin("cc:1"), Begin::Start { launch_id: 1 });
        // Before the certificate exists nothing can match.
        assert_eq!(
            t.authorize("cc:1", Some(hash(1))),
            Err(RegisterRefused::NotExpected {
                chaincode_id: "cc:1".into()
            })
        );
        assert!(t.cert_issued("cc:1", 1, hash(1)));
        assert_eq!(
            t.authorize("cc:1", None),
            Err(RegisterRefused::MissingClientCert {
                chaincode_id: "cc:1".into()
            })
        );
        assert_eq!(
            t.authorize("cc:1", Some(hash(2))),
            Err(RegisterRefused::CertificateMismatch {
                chaincode_id: "cc:1".into()
            })
        );
        assert_eq!(t.authorize("cc:1", Some(hash(1))), Ok(1));
    }

    #[test]
    fn a_certificate_of_another_launch_is_refused() {
        let mut t = Table::new(true, false);
        assert_eq!(t.begin("a:1"), Begin::Start { launch_id: 1 });
        assert_eq!(t.begin("b:1"), Begin::Start { launch_id: 2 });
        assert!(t.cert_issued("a:1", 1, hash(0xa)));
        assert!(t.cert_issued("b:1", 2, hash(0xb)));
        assert_eq!(
            t.authorize("a:1", Some(hash(0xb))),
            Err(RegisterRefused::CertificateMismatch {
                chaincode_id: "a:1".into()
            })
        );
        // An earlier launch of the same chaincode does not count either.
        assert!(t.fail("a:1", 1));
        assert_eq!(t.begin("a:1"), Begin::Start { launch_id: 3 });
        assert!(t.cert_issued("a:1", 3, hash(0xc)));
        assert!(t.authorize("a:1", Some(hash(0xa))).is_err());
        assert_eq!(t.authorize("a:1", Some(hash(0xc))), Ok(3));
    }

    #[test]
    fn second_register_for_the_same_launch_or_a_running_chaincode_is_refused() {
        let mut t = Table::new(false, true);
        assert_eq!(t.begin("cc:1"), Begin::Start { launch_id: 1 });
        assert_eq!(t.authorize("cc:1", None), Ok(1));
        assert_eq!(
            t.authorize("cc:1", None),
            Err(RegisterRefused::AlreadyRegistered {
                chaincode_id: "cc:1".into()
            })
        );
        assert!(t.ready("cc:1", 1, "h"));
        assert_eq!(
            t.authorize("cc:1", None),
            Err(RegisterRefused::AlreadyRunning {
                chaincode_id: "cc:1".into()
            })
        );
    }

    #[test]
    fn ready_without_register_or_for_another_launch_is_ignored() {
        let mut t = Table::new(false, false);
        assert_eq!(t.begin("cc:1"), Begin::Start { launch_id: 1 });
        assert!(!t.ready("cc:1", 1, "h"));
        assert_eq!(t.authorize("cc:1", None), Ok(1));
        assert!(!t.ready("cc:1", 9, "h"));
        assert!(!t.ready("nope", 1, "h"));
        assert!(!t.is_running("cc:1"));
    }

    #[test]
    fn dropped_stream_marks_not_running_and_next_begin_relaunches() {
        let mut t = Table::new(false, false);
        t.begin("cc:1");
        t.authorize("cc:1", None).unwrap();
        t.ready("cc:1", 1, "h");
        assert_eq!(
            t.gone("cc:1", 1),
            Gone::Stopped {
                launch_id: 1,
                has_instance: true
            }
        );
        assert!(!t.is_running("cc:1"));
        assert_eq!(t.begin("cc:1"), Begin::Start { launch_id: 2 });
        // The old launch's stream ending late does not touch the new launch.
        assert_eq!(t.gone("cc:1", 1), Gone::Stale);
        assert_eq!(t.begin("cc:1"), Begin::Join { launch_id: 2 });
    }

    #[test]
    fn stream_closed_before_ready_fails_the_launch() {
        let mut t = Table::new(false, false);
        t.begin("cc:1");
        t.authorize("cc:1", None).unwrap();
        assert_eq!(
            t.gone("cc:1", 1),
            Gone::FailedBeforeReady {
                launch_id: 1,
                has_instance: true
            }
        );
        assert_eq!(t.begin("cc:1"), Begin::Start { launch_id: 2 });
    }

    #[test]
    fn failure_only_counts_for_the_pending_launch() {
        let mut t = Table::new(false, false);
        t.begin("cc:1");
        t.authorize("cc:1", None).unwrap();
        t.ready("cc:1", 1, "h");
        // A timeout racing with READY loses: the chaincode stays running.
        assert!(!t.fail("cc:1", 1));
        assert!(t.is_running("cc:1"));
        assert!(!t.fail("unknown", 1));
        assert!(!t.cert_issued("cc:1", 1, hash(1)));
    }

    #[test]
    fn shut_down_hands_back_every_launch_and_refuses_more() {
        let mut t = Table::new(false, true);
        t.begin("pending:1");
        t.begin("running:1");
        t.authorize("running:1", None).unwrap();
        t.ready("running:1", 2, "h");
        let dev = t.authorize("by-hand:1", None).unwrap();
        assert_eq!(
            t.shut_down(),
            vec![
                ("by-hand:1".to_string(), dev, false),
                ("pending:1".to_string(), 1, true),
                ("running:1".to_string(), 2, true),
            ]
        );
        assert_eq!(t.begin("running:1"), Begin::ShuttingDown);
        assert!(!t.is_running("running:1"));
        assert_eq!(
            t.authorize("pending:1", None),
            Err(RegisterRefused::ShuttingDown {
                chaincode_id: "pending:1".into()
            })
        );
    }

    #[test]
    fn after_a_failure_a_late_register_of_that_launch_is_refused() {
        let mut t = Table::new(false, false);
        t.begin("cc:1");
        assert!(t.fail("cc:1", 1));
        assert!(matches!(
            t.authorize("cc:1", None),
            Err(RegisterRefused::NotExpected { .. })
        ));
    }
}
