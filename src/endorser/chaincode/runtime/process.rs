//! The `process` runtime: builds a Node chaincode from a local source directory (once per package
//! id, cached) and runs each launch as a local process group with Fabric's environment and files.
//!
//! Layout under the work directory:
//! - `builds/<package>/`: the copied and built sources, reused by every launch of that package.
//! - `launches/<package>-<launch id>/`: the TLS files of one launch; removed when it exits.
//!
//! Each instance runs in its own process group because `npm start` spawns children: stop signals
//! and the final cleanup address the whole group.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::watch;

use super::isolation::RunAs;
use super::node_local::{self, CommandPlan, NodeOptions};
use super::{
    ExitStatus, LaunchKey, LaunchSpec, Runtime, RuntimeError, StopReason, fabric_environment,
    fabric_launch_files,
};

/// Lines of build output kept for the error message when a build fails.
const BUILD_LOG_TAIL: usize = 20;
/// Marker written into a build directory once its build succeeded.
const BUILD_COMPLETE: &str = ".chaincode-build-complete";

#[derive(Debug, Clone)]
pub struct ProcessRuntimeConfig {
    /// Holds `builds/` and `launches/`.
    pub work_dir: PathBuf,
    pub node: NodeOptions,
    /// Time between SIGTERM and SIGKILL when stopping (Fabric: 5 s).
    pub stop_grace: Duration,
    /// Variables of the endorser's own environment a chaincode also gets (PATH, HOME...); the
    /// chaincode sees nothing else of it.
    pub pass_env: Vec<String>,
    /// Build and run chaincode as this user (see [`isolation`](super::isolation)); None: as
    /// the endorser's own user.
    pub run_as: Option<RunAs>,
}

impl ProcessRuntimeConfig {
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        Self {
            work_dir: work_dir.into(),
            node: NodeOptions::default(),
            stop_grace: Duration::from_secs(5),
            pass_env: ["PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ"]
                .map(String::from)
                .to_vec(),
            run_as: None,
        }
    }
}

/// `--chaincode-user`: a user, or root for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChaincodeUser(pub Option<RunAs>);

fn parse_chaincode_user(spec: &str) -> Result<ChaincodeUser, String> {
    RunAs::parse(spec).map(ChaincodeUser)
}

/// Process runtime options on the command line; `#[command(flatten)]` them into `endorser` and `dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProcessRuntimeArgs {
    /// Directory holding chaincode builds (cached per package id) and per-launch TLS files
    /// (default: `chaincode/` in the data directory).
    #[arg(long = "chaincode-work-dir", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Custom npm registry for Node chaincode builds (Fabric's NODE_REGISTRY).
    #[arg(long = "node-registry", env = "NODE_REGISTRY", value_name = "URL")]
    pub node_registry: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when stopping a chaincode.
    #[arg(
        long = "chaincode-stop-grace",
        value_name = "SECONDS",
        default_value_t = 5
    )]
    pub stop_grace_secs: u64,
    /// User chaincode is built and run as: NAME, UID or UID:GID; `root` for the endorser's own
    /// user. Default: `nobody` when the endorser runs as root (a chaincode must not read the
    /// CA, endorser and admin keys), else the endorser's own user.
    #[arg(long = "chaincode-user", value_name = "USER", value_parser = parse_chaincode_user)]
    pub chaincode_user: Option<ChaincodeUser>,
}

impl ProcessRuntimeArgs {
    /// The runtime configuration; `default_work_dir` unless `--chaincode-work-dir` was given.
    pub fn config(&self, default_work_dir: &Path) -> ProcessRuntimeConfig {
        let work_dir = self.work_dir.as_deref().unwrap_or(default_work_dir);
        let mut config = ProcessRuntimeConfig::new(work_dir);
        config.node.registry = self.node_registry.clone();
        config.stop_grace = Duration::from_secs(self.stop_grace_secs);
        config.run_as = match self.chaincode_user {
            Some(ChaincodeUser(user)) => user,
            None => RunAs::default_for_this_process(),
        };
        config
    }
}

/// The result of making sure a package is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutcome {
    pub dir: PathBuf,
    /// True when an earlier build of this package id was reused.
    pub reused: bool,
}

struct Instance {
    pgid: Pid,
    exit: watch::Receiver<Option<ExitStatus>>,
    /// Set while `stop` runs: the group then gets its grace period even after the leader exits.
    stopping: Arc<AtomicBool>,
}

/// Set in the environment of every process this runtime starts (builds and chaincode; descendants
/// inherit it) to the runtime's work directory: what an earlier run left behind is found by it.
pub const OWNER_ENV: &str = "CHAINCODE_OPERATOR_WORK_DIR";

/// Runs chaincode as local processes. Dropping it kills every instance still running.
pub struct ProcessRuntime {
    config: ProcessRuntimeConfig,
    /// Holds `builds/`, `launches/` (and `home/` for another user): the work directory, or the
    /// isolation area when chaincode runs as another user; Err says why that area is unusable.
    chaincode_root: Result<PathBuf, String>,
    sources: Mutex<HashMap<String, PathBuf>>,
    instances: Mutex<HashMap<LaunchKey, Instance>>,
    /// One build at a time per package id.
    build_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these maps leaves them consistent (single inserts/removes).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A file-system-safe, collision-free directory name for a package id.
fn package_slug(package_id: &str) -> String {
    let readable: String = package_id
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let digest = hex::encode(Sha256::digest(package_id.as_bytes()));
    format!("{readable}-{}", &digest[..16])
}

impl ProcessRuntime {
    pub fn new(config: ProcessRuntimeConfig) -> Self {
        let chaincode_root = match &config.run_as {
            None => Ok(config.work_dir.clone()),
            Some(user) => user
                .area(&config.work_dir)
                .and_then(|area| user.owned_dir(&area.join("home")).map(|()| area))
                .map_err(|e| {
                    format!(
                        "preparing a directory for chaincode as uid {}: {e}",
                        user.uid
                    )
                }),
        };
        if let (Some(user), Ok(root)) = (&config.run_as, &chaincode_root) {
            tracing::info!(uid = user.uid, gid = user.gid, area = %root.display(), "chaincode runs as another user");
        }
        Self {
            config,
            chaincode_root,
            sources: Mutex::default(),
            instances: Mutex::default(),
            build_locks: Mutex::default(),
        }
    }

    /// Makes a Node chaincode source directory launchable as `package_id`.
    pub fn add_source(&self, package_id: impl Into<String>, dir: impl Into<PathBuf>) {
        lock(&self.sources).insert(package_id.into(), dir.into());
    }

    fn root(&self) -> &Path {
        self.chaincode_root
            .as_deref()
            .unwrap_or(self.config.work_dir.as_path())
    }

    /// Fails every build and launch with the reason when the isolation area is unusable.
    fn check_root(&self, package_id: &str) -> Result<(), RuntimeError> {
        self.chaincode_root
            .as_ref()
            .map(drop)
            .map_err(|message| RuntimeError::Build {
                package_id: package_id.to_string(),
                message: message.clone(),
            })
    }

    fn builds_dir(&self) -> PathBuf {
        self.root().join("builds")
    }

    fn launch_dir(&self, key: &LaunchKey) -> PathBuf {
        self.root().join("launches").join(format!(
            "{}-{}",
            package_slug(&key.package_id),
            key.launch_id
        ))
    }

    /// Builds `package_id` unless a completed build is cached; concurrent calls build once.
    pub async fn ensure_built(&self, package_id: &str) -> Result<BuildOutcome, RuntimeError> {
        let source = lock(&self.sources)
            .get(package_id)
            .cloned()
            .ok_or_else(|| RuntimeError::UnknownPackage(package_id.to_string()))?;
        let build_lock = lock(&self.build_locks)
            .entry(package_id.to_string())
            .or_default()
            .clone();
        let _building = build_lock.lock().await;
        self.check_root(package_id)?;

        let dir = self.builds_dir().join(package_slug(package_id));
        if dir.join(BUILD_COMPLETE).is_file() {
            return Ok(BuildOutcome { dir, reused: true });
        }
        // Not with_extension: package slugs contain dots ("mycc_1.0-…").
        let partial = self
            .builds_dir()
            .join(format!("{}.partial", package_slug(package_id)));
        for stale in [&dir, &partial] {
            if stale.exists() {
                tokio::fs::remove_dir_all(stale)
                    .await
                    .map_err(RuntimeError::io(format!("removing {}", stale.display())))?;
            }
        }
        let copy_from = source.clone();
        let copy_to = partial.clone();
        let run_as = self.config.run_as;
        // The build (npm install) runs as the chaincode's user: the copy is its own.
        tokio::task::spawn_blocking(move || {
            copy_tree(&copy_from, &copy_to)?;
            run_as.map_or(Ok(()), |user| user.give(&copy_to))
        })
        .await
        .map_err(|e| RuntimeError::Build {
            package_id: package_id.to_string(),
            message: format!("copy task failed: {e}"),
        })?
        .map_err(|source_err| RuntimeError::Build {
            package_id: package_id.to_string(),
            message: format!("copying {} failed: {source_err}", source.display()),
        })?;

        let plan = node_local::build_plan(&partial, &self.config.node);
        tracing::info!(chaincode_id = package_id, command = ?plan, "building chaincode");
        self.run_build(package_id, &partial, &plan).await?;
        tokio::fs::write(partial.join(BUILD_COMPLETE), b"")
            .await
            .map_err(RuntimeError::io("marking the build complete"))?;
        // Flushed before it is published: a crash leaves no build dir, or a complete one.
        let (from, to) = (partial.clone(), dir.clone());
        tokio::task::spawn_blocking(move || crate::durable::publish(&from, &to))
            .await
            .map_err(|e| RuntimeError::Build {
                package_id: package_id.to_string(),
                message: format!("publish task failed: {e}"),
            })?
            .map_err(RuntimeError::io(format!(
                "moving the build to {}",
                dir.display()
            )))?;
        Ok(BuildOutcome { dir, reused: false })
    }

    async fn run_build(
        &self,
        package_id: &str,
        dir: &Path,
        plan: &CommandPlan,
    ) -> Result<(), RuntimeError> {
        let build_error = |message: String| RuntimeError::Build {
            package_id: package_id.to_string(),
            message,
        };
        let mut child = self
            .command(plan, dir)
            .spawn()
            .map_err(|e| build_error(format!("cannot run {}: {e}", plan.program)))?;
        // Kills the build's whole group when the build ends or is abandoned (startup timeout).
        let group = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(|pid| GroupKiller(Pid::from_raw(pid)));
        let tail = Arc::new(Mutex::new(std::collections::VecDeque::new()));
        let mut pumps = Vec::new();
        for (stream, reader) in [
            ("stdout", child.stdout.take().map(boxed_reader)),
            ("stderr", child.stderr.take().map(boxed_reader)),
        ] {
            if let Some(reader) = reader {
                let tail = tail.clone();
                let id = package_id.to_string();
                pumps.push(tokio::spawn(async move {
                    for_each_line(reader, |line| {
                        tracing::info!(target: "chaincode_build", chaincode_id = %id, stream, "{line}");
                        let mut tail = lock(&tail);
                        if tail.len() == BUILD_LOG_TAIL {
                            tail.pop_front();
                        }
                        tail.push_back(line);
                    })
                    .await;
                }));
            }
        }
        let status = child
            .wait()
            .await
            .map_err(|e| build_error(format!("waiting for the build failed: {e}")))?;
        // Leftover build daemons would hold the output pipes open.
        drop(group);
        for pump in pumps {
            let _ = pump.await;
        }
        if status.success() {
            return Ok(());
        }
        let tail: Vec<String> = lock(&tail).iter().cloned().collect();
        Err(build_error(format!(
            "`{} {}` ended with {}; last output:\n{}",
            plan.program,
            plan.args.join(" "),
            exit_status(status),
            tail.join("\n")
        )))
    }

    /// A command with only the passed-through environment plus the plan's own.
    fn command(&self, plan: &CommandPlan, dir: &Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&plan.program);
        command
            .args(&plan.args)
            .current_dir(dir)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0);
        if let Some(user) = self.config.run_as {
            run_as_user(&mut command, user);
        }
        for name in &self.config.pass_env {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command.envs(plan.env.iter().map(|(k, v)| (k, v)));
        command.env(OWNER_ENV, self.owner_tag());
        if self.config.run_as.is_some() {
            // Its own HOME (npm's cache), not the endorser's.
            command.env("HOME", self.root().join("home"));
        }
        command
    }

    fn owner_tag(&self) -> PathBuf {
        std::path::absolute(&self.config.work_dir).unwrap_or_else(|_| self.config.work_dir.clone())
    }

    /// Deletes the cached builds of every package but `keep` (and interrupted `.partial` ones):
    /// each source change makes a new package, and each build holds its own node_modules, tens of
    /// megabytes. Unpacked sources stay: they are small, and installed packages need them. Returns
    /// how many builds went.
    pub fn prune(&self, keep: &[&str]) -> usize {
        let kept: Vec<String> = keep.iter().map(|id| package_slug(id)).collect();
        let Ok(entries) = std::fs::read_dir(self.builds_dir()) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !kept.contains(&name) && std::fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "pruned the builds of other packages");
        }
        removed
    }

    /// Kills the processes an earlier run with this work directory left behind: an endorser that
    /// was SIGKILLed (or lost power) stopped nothing, and its chaincode (npm, sh, node) lives on,
    /// disconnected. Call it once the work directory is this process's (the ledger lock is held),
    /// before the first launch. They are found by [`OWNER_ENV`] in /proc/PID/environ, which every
    /// descendant inherits, rather than by recorded pids that a reboot may have handed to others.
    /// Returns how many were killed.
    pub fn reap_orphans(&self) -> usize {
        let mut tag = OWNER_ENV.as_bytes().to_vec();
        tag.push(b'=');
        tag.extend_from_slice(self.owner_tag().as_os_str().as_encoded_bytes());
        let me = std::process::id();
        let mut killed = 0;
        // A process may fork while we scan: scan until one pass finds none.
        for _ in 0..10 {
            let Ok(entries) = std::fs::read_dir("/proc") else {
                return killed;
            };
            let orphans: Vec<i32> = entries
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| *pid as u32 != me)
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/environ"))
                        .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == tag))
                })
                .collect();
            if orphans.is_empty() {
                break;
            }
            for pid in orphans {
                if nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                    killed += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if killed > 0 {
            tracing::warn!(
                killed,
                work_dir = %self.config.work_dir.display(),
                "killed chaincode processes an earlier run left behind"
            );
        }
        killed
    }

    async fn write_launch_files(&self, spec: &LaunchSpec, dir: &Path) -> Result<(), RuntimeError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let files = fabric_launch_files(spec.tls.as_ref());
        let dir = dir.to_path_buf();
        let run_as = self.config.run_as;
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            for file in files {
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(if file.secret { 0o600 } else { 0o644 })
                    .open(dir.join(file.name))?;
                std::io::Write::write_all(&mut out, &file.contents)?;
            }
            // The chaincode reads its own key; nothing else of the endorser's. It may pass
            // through `launches/` (0711) to its own directory, not list the others.
            if let Some(user) = run_as {
                if let Some(launches) = dir.parent() {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(launches, std::fs::Permissions::from_mode(0o711))?;
                }
                user.give(&dir)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| RuntimeError::Io {
            context: "writing launch files".into(),
            source: std::io::Error::other(e),
        })?
        .map_err(RuntimeError::io("writing launch files"))
    }

    async fn start(&self, spec: LaunchSpec) -> Result<(), RuntimeError> {
        let key = spec.key.clone();
        self.check_root(&key.package_id)?;
        let build = self.ensure_built(&key.package_id).await?;
        if lock(&self.instances).contains_key(&key) {
            return Err(RuntimeError::Start {
                key,
                message: "this launch already has an instance".into(),
            });
        }
        let launch_dir = self.launch_dir(&key);
        if launch_dir.exists() {
            tokio::fs::remove_dir_all(&launch_dir)
                .await
                .map_err(RuntimeError::io("removing a stale launch directory"))?;
        }
        self.write_launch_files(&spec, &launch_dir).await?;

        let mut plan = node_local::start_plan(&build.dir, &spec.peer_address);
        plan.env.extend(fabric_environment(&spec, &launch_dir));
        let mut child = match self.command(&plan, &build.dir).spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&launch_dir).await;
                return Err(RuntimeError::Start {
                    key,
                    message: format!("cannot run {}: {e}", plan.program),
                });
            }
        };
        let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) else {
            let _ = tokio::fs::remove_dir_all(&launch_dir).await;
            return Err(RuntimeError::Start {
                key,
                message: "the process exited before it could be tracked".into(),
            });
        };
        let pgid = Pid::from_raw(pid);
        tracing::info!(chaincode_id = %key.package_id, launch_id = key.launch_id, pid, "chaincode started");

        for (stream, reader) in [
            ("stdout", child.stdout.take().map(boxed_reader)),
            ("stderr", child.stderr.take().map(boxed_reader)),
        ] {
            if let Some(reader) = reader {
                tokio::spawn(pump_logs(key.clone(), stream, reader));
            }
        }

        let (exit_tx, exit_rx) = watch::channel(None);
        let stopping = Arc::new(AtomicBool::new(false));
        lock(&self.instances).insert(
            key.clone(),
            Instance {
                pgid,
                exit: exit_rx,
                stopping: stopping.clone(),
            },
        );
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(status) => exit_status(status),
                Err(e) => {
                    tracing::error!(chaincode_id = %key.package_id, launch_id = key.launch_id, error = %e, "waiting for chaincode failed");
                    ExitStatus::Code(-1)
                }
            };
            // Children the leader left behind must not outlive the launch (a stop in progress
            // handles them itself, after their grace period).
            if !stopping.load(Ordering::SeqCst) {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            let _ = tokio::fs::remove_dir_all(&launch_dir).await;
            tracing::info!(chaincode_id = %key.package_id, launch_id = key.launch_id, %status, "chaincode exited");
            let _ = exit_tx.send(Some(status));
        });
        Ok(())
    }

    fn exit_watch(
        &self,
        key: &LaunchKey,
    ) -> Result<(Pid, watch::Receiver<Option<ExitStatus>>), RuntimeError> {
        lock(&self.instances)
            .get(key)
            .map(|i| (i.pgid, i.exit.clone()))
            .ok_or_else(|| RuntimeError::UnknownInstance(key.clone()))
    }

    /// SIGTERM to the whole group; SIGKILL to whatever of it is left after the grace period.
    async fn stop_instance(&self, key: &LaunchKey) -> Result<ExitStatus, RuntimeError> {
        let (pgid, exit, stopping) = lock(&self.instances)
            .get(key)
            .map(|i| (i.pgid, i.exit.clone(), i.stopping.clone()))
            .ok_or_else(|| RuntimeError::UnknownInstance(key.clone()))?;
        if exit.borrow().is_none() {
            stopping.store(true, Ordering::SeqCst);
            let _ = killpg(pgid, Signal::SIGTERM);
            let deadline = tokio::time::Instant::now() + self.config.stop_grace;
            // npm exits on SIGTERM at once while the chaincode it started may still be shutting
            // down: wait for the whole group, not only its leader.
            while !(exit.borrow().is_some() && group_is_empty(pgid)) {
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(chaincode_id = %key.package_id, launch_id = key.launch_id, "chaincode did not stop on SIGTERM; sending SIGKILL");
                    let _ = killpg(pgid, Signal::SIGKILL);
                    break;
                }
                tokio::time::sleep(GROUP_POLL).await;
            }
        }
        let status = wait_exit(key, exit).await?;
        lock(&self.instances).remove(key);
        Ok(status)
    }
}

/// SIGKILLs a process group when dropped.
struct GroupKiller(Pid);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        let _ = killpg(self.0, Signal::SIGKILL);
    }
}

/// How often a stop checks whether the process group is gone.
const GROUP_POLL: Duration = Duration::from_millis(25);

fn group_is_empty(pgid: Pid) -> bool {
    // Signal 0 checks existence: ESRCH means no process is left in the group.
    killpg(pgid, None::<Signal>) == Err(nix::errno::Errno::ESRCH)
}

async fn wait_exit(
    key: &LaunchKey,
    mut exit: watch::Receiver<Option<ExitStatus>>,
) -> Result<ExitStatus, RuntimeError> {
    let status = exit
        .wait_for(|status| status.is_some())
        .await
        .map_err(|_| RuntimeError::UnknownInstance(key.clone()))?;
    (*status).ok_or_else(|| RuntimeError::UnknownInstance(key.clone()))
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        for instance in lock(&self.instances).values() {
            if instance.exit.borrow().is_none() {
                let _ = killpg(instance.pgid, Signal::SIGKILL);
            }
        }
    }
}

impl Runtime for ProcessRuntime {
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<(), RuntimeError>> {
        self.start(spec).boxed()
    }

    fn stop(
        &self,
        key: &LaunchKey,
        _why: StopReason,
    ) -> BoxFuture<'_, Result<ExitStatus, RuntimeError>> {
        let key = key.clone();
        async move { self.stop_instance(&key).await }.boxed()
    }

    fn wait(&self, key: &LaunchKey) -> BoxFuture<'_, Result<ExitStatus, RuntimeError>> {
        let key = key.clone();
        async move {
            let (_, exit) = self.exit_watch(&key)?;
            wait_exit(&key, exit).await
        }
        .boxed()
    }
}

type BoxedReader = Box<dyn AsyncRead + Send + Unpin>;

fn boxed_reader(reader: impl AsyncRead + Send + Unpin + 'static) -> BoxedReader {
    Box::new(reader)
}

/// Forwards one output stream of a chaincode into tracing, one event per line (the seed's
/// attachStdout).
async fn pump_logs(key: LaunchKey, stream: &'static str, reader: BoxedReader) {
    for_each_line(reader, |line| {
        tracing::info!(
            target: "chaincode",
            chaincode_id = %key.package_id,
            launch_id = key.launch_id,
            stream,
            "{line}"
        )
    })
    .await;
}

/// Makes `command` run as `user`. Std clears root's supplementary groups itself when it drops
/// to another uid (setgroups(0) before setuid), so none stay.
fn run_as_user(command: &mut tokio::process::Command, user: RunAs) {
    command.uid(user.uid).gid(user.gid);
}

/// Longest line forwarded as one log event; longer output is split, so a chaincode printing
/// without newlines cannot make the endorser buffer without bound.
const MAX_LINE: u64 = 16 * 1024;

/// A chaincode's output line as text without terminal escape sequences: shims colour their logs
/// (`\x1b[32minfo\x1b[39m`), which the endorser's log would otherwise show escaped. Other
/// control characters go too, except tabs; invalid UTF-8 becomes U+FFFD.
pub fn plain_line(bytes: &[u8]) -> String {
    let mut text = PlainText(String::with_capacity(bytes.len()));
    vte::Parser::new().advance(&mut text, bytes);
    text.0
}

/// Collects what a terminal would print. Pushing chars straight into the string matters: a
/// dev endorser forwards two shim lines per transaction, and formatting each char through
/// `fmt::Write` (as strip-ansi-escapes does) cost about 1.5% of its CPU under load.
struct PlainText(String);

impl vte::Perform for PlainText {
    fn print(&mut self, c: char) {
        self.0.push(c);
    }

    fn execute(&mut self, byte: u8) {
        if byte == b'\t' {
            self.0.push('\t');
        }
    }
}

/// Calls `emit` for every line of `reader` (without the line break; see [`plain_line`]) until
/// end of stream or a read error.
async fn for_each_line(reader: impl AsyncRead + Unpin, mut emit: impl FnMut(String)) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                }
                emit(plain_line(&buf));
            }
        }
    }
}

fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(signal)) => ExitStatus::Signal(signal),
        (None, None) => ExitStatus::Code(-1),
    }
}

/// Copies a source tree: directories, regular files (with their permissions) and symlinks as
/// symlinks; anything else (devices, sockets, fifos) is refused.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a file, directory or symlink",
                    entry.path().display()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaincode_lines_lose_their_colour_codes() {
        assert_eq!(
            plain_line(
                b"2026-12-06T06:41:29Z \x1b[32minfo\x1b[39m [c-api:lib/handler.js] Registering"
            ),
            "2026-12-06T06:41:29Z info [c-api:lib/handler.js] Registering"
        );
        assert_eq!(
            plain_line(b"plain \"quoted\" text"),
            "plain \"quoted\" text"
        );
        assert_eq!(
            plain_line(b"\tat Object.<anonymous> (/cc/index.js:3:9)\x07\r"),
            "\tat Object.<anonymous> (/cc/index.js:3:9)"
        );
        assert_eq!(
            plain_line("caf\u{e9} \u{2713}".as_bytes()),
            "caf\u{e9} \u{2713}"
        );
        assert_eq!(plain_line(b"bad \xff byte"), "bad \u{fffd} byte");
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        process: ProcessRuntimeArgs,
    }

    #[test]
    fn command_line_sets_registry_grace_and_work_dir() {
        use clap::Parser as _;
        let cli = Cli::try_parse_from([
            "x",
            "--chaincode-work-dir",
            "/var/lib/cc",
            "--node-registry",
            "https://npm.example.test/",
            "--chaincode-stop-grace",
            "9",
        ])
        .unwrap();
        let config = cli.process.config(Path::new("/data/chaincode"));
        assert_eq!(config.work_dir, Path::new("/var/lib/cc"));
        assert_eq!(
            config.node.registry.as_deref(),
            Some("https://npm.example.test/")
        );
        assert_eq!(config.stop_grace, Duration::from_secs(9));
        let defaulted = Cli::try_parse_from(["x"])
            .unwrap()
            .process
            .config(Path::new("/data/cc"));
        assert_eq!(defaulted.work_dir, Path::new("/data/cc"));
    }

    #[tokio::test]
    async fn output_lines_are_split_bounded_and_lossy() {
        let mut output = b"first\r\nsecond \xff\n".to_vec();
        output.extend(std::iter::repeat_n(b'x', MAX_LINE as usize + 10));
        output.extend(b"\nlast without newline");
        let mut lines = Vec::new();
        for_each_line(&output[..], |line| lines.push(line)).await;
        assert_eq!(lines[0], "first");
        assert_eq!(lines[1], "second \u{fffd}");
        assert_eq!(lines[2].len(), MAX_LINE as usize);
        assert_eq!(lines[3], "x".repeat(10));
        assert_eq!(lines[4], "last without newline");
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn package_slugs_are_safe_and_distinct() {
        let a = package_slug("mycc:1.0");
        let b = package_slug("mycc/1.0");
        assert_ne!(a, b);
        assert!(a.starts_with("mycc_1.0-"));
        let hostile = package_slug("../../etc/passwd");
        assert!(!hostile.contains('/'));
        assert!(package_slug(&"x".repeat(500)).len() < 64);
    }

    #[test]
    fn copy_tree_keeps_files_modes_and_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("lib")).unwrap();
        std::fs::write(src.path().join("lib/a.js"), "a").unwrap();
        std::fs::write(src.path().join("run.sh"), "#!/bin/sh").unwrap();
        std::fs::set_permissions(
            src.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("lib/a.js", src.path().join("link.js")).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let to = dst.path().join("copy");
        copy_tree(src.path(), &to).unwrap();
        assert_eq!(std::fs::read_to_string(to.join("lib/a.js")).unwrap(), "a");
        let mode = std::fs::metadata(to.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(to.join("link.js")).unwrap(),
            Path::new("lib/a.js")
        );
    }
}
