//! The `kubernetes` runtime: each launch becomes a `Chaincode` resource that the operator builds
//! (in-cluster BuildKit Job) or takes prebuilt, and runs as a Pod that dials this endorser back.
//!
//! A launch is a server-side apply (field manager `chaincode-endorser`) of the launch's TLS Secret
//! (client certificate from this endorser's chaincode CA), the build context ConfigMap of a source
//! package, and the Chaincode itself, named `<endorser>-<label>-<hash>` ([`objects::chaincode_name`])
//! with `launchAttempt` = the launch id; when a write fails part-way, the launch deletes what it
//! wrote (an orphaned Secret would keep the launch's private key). A per-launch task watches the
//! Chaincode: a terminal failure (build failed, image pull failed, Pod failed, StartupTimeout) ends
//! the launch at once with the condition's reason and message; the Pod's log is streamed into the
//! endorser's log with the chaincode id. When the chaincode registers, the endorser applies `Registered=True` for the
//! Chaincode's generation.
//!
//! Stopping: a closed stream leaves the Chaincode with `Registered=False` (reason `StreamClosed`) and
//! the next invoke applies the next launch attempt; a failed launch is kept with `Registered=False`
//! (reason `LaunchFailed`) for `kubectl describe` unless its Pod is still running, in which case it is
//! deleted; shutdown deletes everything the endorser wrote. At start, everything labelled with this
//! endorser from an earlier run is deleted, not adopted: a launch's client certificate comes from the
//! CA of the process that launched it, so an old Pod can never register with a new process.
pub mod objects;
pub mod rbac;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{AsyncBufReadExt as _, FutureExt as _, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::objects::{ChaincodeTemplate, FIELD_MANAGER, Observation, PackageImage};
use super::packages::InstallError;
use super::{
    ExitStatus, LaunchKey, LaunchSpec, PackageInstaller, Runtime, RuntimeError, StopReason,
};
use crate::builders::context::build_context;
use crate::builders::platform::{BuildOptions, image::image_json};
use crate::builders::{Limits, PackageId, read_package};
use crate::operator::crd::{BuildSettings, Chaincode, Platform, PodSettings};

const RUNTIME: &str = "the kubernetes runtime";
/// How long start-up cleanup waits for an earlier run's Chaincodes to disappear.
const CLEANUP_WAIT: Duration = Duration::from_secs(60);

/// Kubernetes runtime options on the command line; `#[command(flatten)]` them into `endorser` and
/// `dev`. Used with `--runtime kubernetes`.
#[derive(Debug, Clone, clap::Args)]
pub struct KubernetesRuntimeArgs {
    /// Namespace of the Chaincode resources (default: the kubeconfig's or the Pod's namespace).
    #[arg(
        long = "kube-namespace",
        env = "CHAINCODE_NAMESPACE",
        value_name = "NS"
    )]
    pub namespace: Option<String>,
    /// Names this endorser in Chaincode names and labels; two endorsers sharing a namespace need
    /// different ids (default: the host name, which is the Pod name in a cluster).
    #[arg(long = "endorser-id", env = "CHAINCODE_ENDORSER_ID", value_name = "ID")]
    pub endorser_id: Option<String>,
    /// Repository in-cluster builds push to (`registry/repo`; the tag is the content digest).
    #[arg(
        long = "build-registry",
        env = "CHAINCODE_BUILD_REGISTRY",
        value_name = "REPO"
    )]
    pub build_registry: Option<String>,
    /// Builder-stage image of source builds (default: the platform's Fabric image).
    #[arg(
        long = "builder-image",
        env = "CHAINCODE_BUILDER_IMAGE",
        value_name = "IMAGE"
    )]
    pub builder_image: Option<String>,
    /// Runtime-stage image of source builds (default: the platform's Fabric image).
    #[arg(
        long = "runtime-image",
        env = "CHAINCODE_RUNTIME_IMAGE",
        value_name = "IMAGE"
    )]
    pub runtime_image: Option<String>,
    /// BuildKit rootless image of the build Job (the operator's default when unset).
    #[arg(
        long = "buildkit-image",
        env = "CHAINCODE_BUILDKIT_IMAGE",
        value_name = "IMAGE"
    )]
    pub buildkit_image: Option<String>,
    /// Image that fetches the build context in the build Job (the operator's default when unset).
    #[arg(
        long = "fetcher-image",
        env = "CHAINCODE_FETCHER_IMAGE",
        value_name = "IMAGE"
    )]
    pub fetcher_image: Option<String>,
    /// GOPROXY for Go chaincode builds.
    #[arg(long = "goproxy", env = "GOPROXY", value_name = "URL")]
    pub goproxy: Option<String>,
    /// Maven mirror for Java chaincode builds.
    #[arg(long = "maven-mirror", env = "MAVEN_MIRROR", value_name = "URL")]
    pub maven_mirror: Option<String>,
    /// Run a package from a prebuilt image instead of building it: PACKAGE=NAME@sha256:DIGEST, where
    /// PACKAGE is a package id or label (repeatable).
    #[arg(long = "chaincode-image", value_name = "PACKAGE=IMAGE", value_parser = parse_image_mapping)]
    pub images: Vec<(String, String)>,
    /// YAML file with the Chaincode's `pod` settings (resources, imagePullSecrets, nodeSelector,
    /// affinity, tolerations, annotations, labels, env, serviceAccountName, priorityClassName).
    #[arg(
        long = "chaincode-pod-settings",
        env = "CHAINCODE_POD_SETTINGS",
        value_name = "FILE"
    )]
    pub pod_settings: Option<PathBuf>,
    /// Stream each chaincode Pod's log into the endorser's log (Fabric's attachStdout).
    #[arg(long = "attach-chaincode-logs", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub attach_logs: bool,
}

/// Parses `PACKAGE=NAME@sha256:DIGEST`.
pub fn parse_image_mapping(arg: &str) -> Result<(String, String), String> {
    let (package, image) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected PACKAGE=IMAGE@sha256:DIGEST, got {arg:?}"))?;
    split_image(image)?;
    if package.is_empty() {
        return Err(format!("no package id or label in {arg:?}"));
    }
    Ok((package.to_string(), image.to_string()))
}

/// `name@sha256:<64 hex>` → (name, digest).
pub fn split_image(image: &str) -> Result<(String, String), String> {
    let (name, digest) = image
        .split_once('@')
        .ok_or_else(|| format!("image {image:?} is not pinned by digest (NAME@sha256:DIGEST)"))?;
    if name.is_empty() || crate::operator::desired::digest_hex(digest).is_none() {
        return Err(format!(
            "image {image:?} is not NAME@sha256: followed by 64 lower-case hex digits"
        ));
    }
    Ok((name.to_string(), digest.to_string()))
}

/// Everything the runtime needs besides the cluster connection.
#[derive(Debug, Clone)]
pub struct KubernetesRuntimeConfig {
    pub namespace: Option<String>,
    pub endorser_id: String,
    pub build: BuildSettings,
    pub pod: PodSettings,
    /// Options of the build contexts made at install (images, package mirrors).
    pub build_options: BuildOptions,
    /// (package id or label, NAME@sha256:DIGEST).
    pub images: Vec<(String, String)>,
    pub attach_logs: bool,
    pub startup_timeout: Duration,
}

impl KubernetesRuntimeArgs {
    /// The configuration; `node_registry` is the shared `--node-registry`.
    pub fn config(
        &self,
        node_registry: Option<String>,
        startup_timeout: Duration,
    ) -> anyhow::Result<KubernetesRuntimeConfig> {
        use anyhow::Context as _;
        let pod = match &self.pod_settings {
            None => PodSettings::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_saphyr::from_str(&text)
                    .with_context(|| format!("{} is not valid pod settings", path.display()))?
            }
        };
        let endorser_id = match &self.endorser_id {
            Some(id) => id.clone(),
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "endorser".into()),
        };
        Ok(KubernetesRuntimeConfig {
            namespace: self.namespace.clone(),
            endorser_id,
            build: BuildSettings {
                registry: self.build_registry.clone(),
                buildkit_image: self.buildkit_image.clone(),
                fetcher_image: self.fetcher_image.clone(),
                builder_image: self.builder_image.clone(),
                runtime_image: self.runtime_image.clone(),
                npm_registry: node_registry.clone(),
                goproxy: self.goproxy.clone(),
                maven_mirror: self.maven_mirror.clone(),
                ..BuildSettings::default()
            },
            pod,
            build_options: BuildOptions {
                builder_image: self.builder_image.clone(),
                runtime_image: self.runtime_image.clone(),
                npm_registry: node_registry,
                goproxy: self.goproxy.clone(),
                java_repository_mirror: self.maven_mirror.clone(),
                ..BuildOptions::default()
            },
            images: self.images.clone(),
            attach_logs: self.attach_logs,
            startup_timeout,
        })
    }
}

/// Launch counters and phase durations (apply → Pod created → running → registered).
pub struct LaunchMetrics {
    pub launches: Counter,
    pub failures: Counter,
    pub timeouts: Counter,
    pub phase_seconds: Family<Vec<(String, String)>, Histogram>,
}

impl LaunchMetrics {
    fn new() -> Self {
        Self {
            launches: Counter::default(),
            failures: Counter::default(),
            timeouts: Counter::default(),
            phase_seconds: Family::new_with_constructor(|| {
                Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0])
            }),
        }
    }

    /// Registers the metrics under `chaincode_launch_*`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "chaincode_launches",
            "Chaincode launches started",
            self.launches.clone(),
        );
        registry.register(
            "chaincode_launch_failures",
            "Chaincode launches that failed before registering",
            self.failures.clone(),
        );
        registry.register(
            "chaincode_launch_timeouts",
            "Chaincode launches that did not register within the startup timeout",
            self.timeouts.clone(),
        );
        registry.register(
            "chaincode_launch_phase_seconds",
            "Time from applying the Chaincode to each phase (pod_created, running, registered)",
            self.phase_seconds.clone(),
        );
    }

    fn phase(&self, phase: &str, elapsed: Duration) {
        self.phase_seconds
            .get_or_create(&vec![("phase".to_string(), phase.to_string())])
            .observe(elapsed.as_secs_f64());
    }
}

/// When each phase of a launch was first seen, from the apply.
#[derive(Debug, Default, Clone, Copy)]
pub struct LaunchPhases {
    pub applied: Option<Duration>,
    pub pod_created: Option<Duration>,
    pub running: Option<Duration>,
    pub registered: Option<Duration>,
}

struct LaunchState {
    name: String,
    generation: Option<i64>,
    started: Instant,
    /// Set once the launch has failed for good (the message) or its Pod ended.
    outcome: watch::Sender<Option<Result<ExitStatus, String>>>,
    observed: Mutex<Observation>,
    phases: Mutex<LaunchPhases>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Launches chaincode as `Chaincode` resources. Create with [`KubernetesRuntime::start`].
pub struct KubernetesRuntime {
    client: Client,
    template: ChaincodeTemplate,
    build_options: BuildOptions,
    images: Vec<(String, String)>,
    attach_logs: bool,
    packages: Mutex<HashMap<String, PackageImage>>,
    launches: Mutex<HashMap<LaunchKey, Arc<LaunchState>>>,
    metrics: Arc<LaunchMetrics>,
}

impl std::fmt::Debug for KubernetesRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesRuntime")
            .field("namespace", &self.template.namespace)
            .field("endorser_id", &self.template.endorser_id)
            .finish_non_exhaustive()
    }
}

fn api_error(context: &str) -> impl FnOnce(kube::Error) -> RuntimeError + '_ {
    move |err| RuntimeError::Io {
        context: context.to_string(),
        source: std::io::Error::other(err.to_string()),
    }
}

impl KubernetesRuntime {
    /// Connects (current kubeconfig or in-cluster), checks the Chaincode CRD is installed, and
    /// deletes what an earlier run of this endorser left behind.
    pub async fn start(config: KubernetesRuntimeConfig) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let client = Client::try_default()
            .await
            .context("connecting to Kubernetes (kubeconfig or in-cluster)")?;
        Self::with_client(client, config).await
    }

    /// As [`start`](Self::start), with a client made elsewhere.
    pub async fn with_client(
        client: Client,
        config: KubernetesRuntimeConfig,
    ) -> anyhow::Result<Self> {
        let runtime = Self::new(client, config);
        runtime.clean_up_earlier_run().await?;
        Ok(runtime)
    }

    fn new(client: Client, config: KubernetesRuntimeConfig) -> Self {
        let namespace = config
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        Self {
            template: ChaincodeTemplate {
                endorser_id: config.endorser_id,
                namespace,
                build: config.build,
                pod: config.pod,
                startup_timeout_seconds: u32::try_from(config.startup_timeout.as_secs()).ok(),
            },
            client,
            build_options: config.build_options,
            images: config.images,
            attach_logs: config.attach_logs,
            packages: Mutex::default(),
            launches: Mutex::default(),
            metrics: Arc::new(LaunchMetrics::new()),
        }
    }

    pub fn metrics(&self) -> Arc<LaunchMetrics> {
        self.metrics.clone()
    }

    /// A runtime for one launch of a stock peer's external builder `run`: no clean-up of earlier
    /// runs (the peer runs one `run` per chaincode, side by side), and `package_id`'s image comes
    /// from the build output instead of an install.
    pub fn for_external_builder(
        client: Client,
        config: KubernetesRuntimeConfig,
        package_id: &str,
        image: PackageImage,
    ) -> Self {
        let runtime = Self::new(client, config);
        lock(&runtime.packages).insert(package_id.to_string(), image);
        runtime
    }

    /// Waits until the launch's Pod runs (`Launched=True`); Err with the reason when it failed
    /// for good first.
    pub async fn until_running(&self, key: &LaunchKey) -> Result<String, String> {
        let state = self
            .launch_state(key)
            .ok_or_else(|| format!("no launch {key}"))?;
        let mut outcome = state.outcome.subscribe();
        loop {
            {
                let seen = lock(&state.observed);
                if seen.running {
                    return Ok(seen.pod_name.clone().unwrap_or_default());
                }
            }
            if let Some(Err(failure)) = outcome.borrow_and_update().clone() {
                return Err(failure);
            }
            let _ = tokio::time::timeout(Duration::from_millis(250), outcome.changed()).await;
        }
    }

    /// Says in the Chaincode's status that registration cannot be observed: a stock peer's
    /// chaincode dials the peer directly.
    pub async fn report_stock_peer(&self, key: &LaunchKey) {
        if let Some(state) = self.launch_state(key) {
            self.apply_registered(
                &state,
                None,
                "StockPeer",
                "launched by a stock Fabric peer's external builder without its registration relay \
                 (CHAINCODE_RELAY=off): the chaincode dials the peer directly, so whether it \
                 registered is not observed",
            )
            .await;
        }
    }

    /// Says in the Chaincode's status that the chaincode is no longer registered (a stock peer's
    /// builder relay saw its stream end); the Pod and the launch stay.
    pub async fn report_unregistered(&self, key: &LaunchKey, reason: &str, message: &str) {
        if let Some(state) = self.launch_state(key) {
            self.apply_registered(&state, false, reason, message).await;
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.template.namespace)
    }

    async fn clean_up_earlier_run(&self) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let selector = objects::endorser_selector(&self.template.endorser_id);
        let chaincodes: Api<Chaincode> = self.api();
        let list = ListParams::default().labels(&selector);
        let earlier = chaincodes.list(&list).await.with_context(|| {
            format!(
                "listing Chaincodes in namespace {} (is the Chaincode CRD installed, and may this \
                 endorser list chaincodes.fabric.chaincode.dev there?)",
                self.template.namespace
            )
        })?;
        if earlier.items.is_empty() {
            return Ok(());
        }
        tracing::info!(
            count = earlier.items.len(),
            namespace = %self.template.namespace,
            "deleting the Chaincodes an earlier run of this endorser left (their client \
             certificates came from that run's CA, so they can never register again)"
        );
        self.delete_selected(&selector)
            .await
            .context("deleting an earlier run's Chaincodes")?;
        let deadline = Instant::now() + CLEANUP_WAIT;
        while Instant::now() < deadline {
            if chaincodes.list(&list).await?.items.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        anyhow::bail!(
            "the Chaincodes of an earlier run ({selector}) were not gone after {CLEANUP_WAIT:?}"
        )
    }

    /// Deletes the Chaincodes, Secrets and ConfigMaps matching `selector`.
    async fn delete_selected(&self, selector: &str) -> Result<(), kube::Error> {
        let list = ListParams::default().labels(selector);
        let delete = DeleteParams::background();
        let chaincodes: Api<Chaincode> = self.api();
        let secrets: Api<Secret> = self.api();
        let maps: Api<ConfigMap> = self.api();
        chaincodes.delete_collection(&delete, &list).await?;
        secrets.delete_collection(&delete, &list).await?;
        maps.delete_collection(&delete, &list).await?;
        Ok(())
    }

    async fn delete_launch(&self, name: &str) -> Result<(), kube::Error> {
        let delete = DeleteParams::background();
        let ignore_missing = |result: Result<(), kube::Error>| match result {
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            other => other,
        };
        let chaincodes: Api<Chaincode> = self.api();
        let secrets: Api<Secret> = self.api();
        let maps: Api<ConfigMap> = self.api();
        ignore_missing(chaincodes.delete(name, &delete).await.map(drop))?;
        ignore_missing(
            secrets
                .delete(&objects::tls_secret_name(name), &delete)
                .await
                .map(drop),
        )?;
        ignore_missing(
            maps.delete(&objects::context_config_map_name(name), &delete)
                .await
                .map(drop),
        )
    }

    async fn apply_registered(
        &self,
        state: &LaunchState,
        registered: impl Into<Option<bool>>,
        reason: &str,
        message: &str,
    ) {
        let registered = registered.into();
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let body = objects::registered_status(
            &state.name,
            state.generation,
            registered,
            reason,
            message,
            &now,
        );
        let chaincodes: Api<Chaincode> = self.api();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(error) = chaincodes
            .patch_status(&state.name, &params, &Patch::Apply(&body))
            .await
        {
            tracing::warn!(chaincode = %state.name, %error, "writing the Registered condition failed");
        }
    }

    /// The image plan of an installed package.
    fn plan_package(
        &self,
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<(PackageId, PackageImage), InstallError> {
        let package = read_package(bytes, limits)?;
        let package_id = package.id.to_string();
        let refuse = |message: String| InstallError::Runtime {
            package_id: package_id.clone(),
            runtime: RUNTIME,
            message,
        };
        let mapped = self
            .images
            .iter()
            .find(|(key, _)| *key == package_id)
            .or_else(|| self.images.iter().find(|(key, _)| *key == package.id.label));
        if let Some((_, image)) = mapped {
            let (name, digest) = split_image(image).map_err(refuse)?;
            return Ok((package.id, PackageImage::Prebuilt { name, digest }));
        }
        let platform = match package.metadata.kind.trim().to_ascii_lowercase().as_str() {
            "node" => Platform::Node,
            "golang" | "go" => Platform::Golang,
            "java" => Platform::Java,
            "k8s" | "image" => {
                let image = image_json(&package)?;
                return Ok((
                    package.id,
                    PackageImage::Prebuilt {
                        name: image.name,
                        digest: image.digest,
                    },
                ));
            }
            other => {
                return Err(refuse(format!(
                    "packages of type {other:?} are not launched by this endorser"
                )));
            }
        };
        crate::builders::platform::platform_of(&package)?.validate(&package)?;
        let context = build_context(&package, &self.build_options)?;
        if context.bytes.len() > objects::MAX_CONFIGMAP_CONTEXT_BYTES {
            return Err(refuse(format!(
                "its build context is {} bytes, more than the {} a ConfigMap holds; build the image \
                 elsewhere and map the package to it with --chaincode-image {}=NAME@sha256:DIGEST",
                context.bytes.len(),
                objects::MAX_CONFIGMAP_CONTEXT_BYTES,
                package.id.label
            )));
        }
        Ok((
            package.id,
            PackageImage::Build {
                platform,
                content_digest: format!("sha256:{}", context.digest),
                context: context.bytes,
            },
        ))
    }

    async fn start_launch(&self, spec: LaunchSpec) -> Result<(), RuntimeError> {
        let key = spec.key.clone();
        let image = lock(&self.packages)
            .get(&key.package_id)
            .cloned()
            .ok_or_else(|| RuntimeError::UnknownPackage(key.package_id.clone()))?;
        let started = Instant::now();
        self.metrics.launches.inc();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let mut secret = objects::tls_secret(&self.template, &spec);
        let mut map = objects::context_config_map(&self.template, &key.package_id, &image);
        let secrets: Api<Secret> = self.api();
        let maps: Api<ConfigMap> = self.api();
        let chaincodes: Api<Chaincode> = self.api();
        // The Secret and context first: the operator reads them as soon as the new attempt lands.
        let write_owned = |secret: Option<Secret>, map: Option<ConfigMap>| {
            let (secrets, maps, params) = (&secrets, &maps, &params);
            async move {
                if let Some(secret) = secret {
                    let name = secret.metadata.name.clone().unwrap_or_default();
                    secrets
                        .patch(&name, params, &Patch::Apply(&secret))
                        .await
                        .map_err(api_error("applying the launch's TLS Secret"))?;
                }
                if let Some(map) = map {
                    let name = map.metadata.name.clone().unwrap_or_default();
                    maps.patch(&name, params, &Patch::Apply(&map))
                        .await
                        .map_err(api_error("applying the build context ConfigMap"))?;
                }
                Ok::<(), RuntimeError>(())
            }
        };
        let desired = objects::chaincode(&self.template, &spec, &image);
        let name = desired.metadata.name.clone().unwrap_or_default();
        let written = async {
            write_owned(secret.clone(), map.clone()).await?;
            let applied = chaincodes
                .patch(&name, &params, &Patch::Apply(&desired))
                .await
                .map_err(|err| RuntimeError::Start {
                    key: key.clone(),
                    message: format!("applying Chaincode {name}: {err}"),
                })?;
            // Owned by the Chaincode from now on: `kubectl delete cc` removes them too.
            if let Some(secret) = &mut secret {
                objects::owned_by(&mut secret.metadata, &applied);
            }
            if let Some(map) = &mut map {
                objects::owned_by(&mut map.metadata, &applied);
            }
            write_owned(secret, map).await?;
            Ok::<Chaincode, RuntimeError>(applied)
        }
        .await;
        let applied = match written {
            Ok(applied) => applied,
            Err(error) => {
                // Nothing half-written stays: a Secret (the launch's private key) or ConfigMap
                // without its Chaincode has no owner to be deleted with, and a Chaincode whose
                // launch failed here has no launch watching it.
                if let Err(cleanup) = self.delete_launch(&name).await {
                    tracing::warn!(%key, chaincode = %name, error = %cleanup,
                        "deleting what a failed launch wrote failed");
                }
                return Err(error);
            }
        };

        let state = Arc::new(LaunchState {
            name: name.clone(),
            generation: applied.metadata.generation,
            started,
            outcome: watch::channel(None).0,
            observed: Mutex::default(),
            phases: Mutex::new(LaunchPhases {
                applied: Some(started.elapsed()),
                ..LaunchPhases::default()
            }),
            tasks: Mutex::default(),
        });
        let watch_task = tokio::spawn(watch_launch(
            chaincodes,
            self.api::<Pod>(),
            state.clone(),
            key.clone(),
            objects::launch_attempt(key.launch_id),
            self.metrics.clone(),
            self.attach_logs,
        ));
        lock(&state.tasks).push(watch_task);
        tracing::info!(%key, chaincode = %name, namespace = %self.template.namespace, "Chaincode applied");
        if let Some(previous) = lock(&self.launches).insert(key, state) {
            for task in lock(&previous.tasks).drain(..) {
                task.abort();
            }
        }
        Ok(())
    }

    fn launch_state(&self, key: &LaunchKey) -> Option<Arc<LaunchState>> {
        lock(&self.launches).get(key).cloned()
    }

    async fn stop_launch(
        &self,
        key: &LaunchKey,
        why: StopReason,
    ) -> Result<ExitStatus, RuntimeError> {
        let Some(state) = lock(&self.launches).remove(key) else {
            return Ok(ExitStatus::Code(0));
        };
        for task in lock(&state.tasks).drain(..) {
            task.abort();
        }
        let running = lock(&state.observed).running;
        let delete = match &why {
            StopReason::Shutdown | StopReason::Retired => true,
            StopReason::StreamClosed => {
                self.apply_registered(
                    &state,
                    false,
                    "StreamClosed",
                    "the chaincode's stream to the endorser closed; the next invoke starts a new launch attempt",
                )
                .await;
                false
            }
            StopReason::Unresponsive(message) => {
                // The next invoke applies the next launch attempt, which replaces the Pod.
                self.apply_registered(&state, false, "Unresponsive", message)
                    .await;
                false
            }
            StopReason::LaunchFailed(message) => {
                self.metrics.failures.inc();
                if message.contains("startup timeout") {
                    self.metrics.timeouts.inc();
                }
                self.apply_registered(&state, false, "LaunchFailed", message)
                    .await;
                // A Pod that runs but never registered must not outlive its launch.
                running
            }
        };
        if delete {
            self.delete_launch(&state.name)
                .await
                .map_err(api_error("deleting the Chaincode of a stopped launch"))?;
            tracing::info!(%key, chaincode = %state.name, "Chaincode deleted");
        }
        Ok(ExitStatus::Signal(nix::sys::signal::Signal::SIGTERM as i32))
    }

    async fn report_registered(&self, key: &LaunchKey) {
        let Some(state) = self.launch_state(key) else {
            return;
        };
        let elapsed = state.started.elapsed();
        let phases = {
            let mut phases = lock(&state.phases);
            phases.registered = Some(elapsed);
            *phases
        };
        self.metrics.phase("registered", elapsed);
        tracing::info!(
            %key,
            chaincode = %state.name,
            apply_ms = phases.applied.map(|d| d.as_millis()),
            pod_created_ms = phases.pod_created.map(|d| d.as_millis()),
            running_ms = phases.running.map(|d| d.as_millis()),
            registered_ms = elapsed.as_millis(),
            "chaincode registered"
        );
        let message = format!(
            "chaincode registered with endorser {}",
            self.template.endorser_id
        );
        self.apply_registered(&state, true, "Registered", &message)
            .await;
    }
}

/// Follows one launch's Chaincode until the launch stops: records phases, streams the Pod's log, and
/// ends the launch at the first terminal failure.
async fn watch_launch(
    chaincodes: Api<Chaincode>,
    pods: Api<Pod>,
    state: Arc<LaunchState>,
    key: LaunchKey,
    attempt: u32,
    metrics: Arc<LaunchMetrics>,
    attach_logs: bool,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={}", state.name));
    let mut events = watcher(chaincodes, config).default_backoff().boxed();
    let mut log_pod: Option<String> = None;
    while let Some(event) = events.next().await {
        let cc = match event {
            Ok(watcher::Event::Apply(cc) | watcher::Event::InitApply(cc)) => cc,
            Ok(watcher::Event::Delete(_)) => {
                state.outcome.send_replace(Some(Err(format!(
                    "Chaincode {} was deleted while it was launching",
                    state.name
                ))));
                return;
            }
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(chaincode = %state.name, %error, "watching the Chaincode; retrying");
                continue;
            }
        };
        let seen = objects::observe(&cc, state.generation, attempt);
        if !seen.current {
            continue;
        }
        let elapsed = state.started.elapsed();
        {
            let mut phases = lock(&state.phases);
            if seen.pod_name.is_some() && phases.pod_created.is_none() {
                phases.pod_created = Some(elapsed);
                metrics.phase("pod_created", elapsed);
            }
            if seen.running && phases.running.is_none() {
                phases.running = Some(elapsed);
                metrics.phase("running", elapsed);
            }
        }
        if attach_logs
            && let Some(pod) = &seen.pod_name
            && log_pod.as_ref() != Some(pod)
        {
            log_pod = Some(pod.clone());
            let task = tokio::spawn(follow_log(pods.clone(), pod.clone(), key.clone()));
            lock(&state.tasks).push(task);
        }
        let failure = seen.failure.clone();
        *lock(&state.observed) = seen;
        if let Some(failure) = failure {
            tracing::warn!(%key, chaincode = %state.name, %failure, "chaincode launch failed");
            state.outcome.send_replace(Some(Err(failure)));
            return;
        }
    }
}

/// Streams a chaincode Pod's log into the endorser's log, one event per line, waiting for the
/// container to start.
async fn follow_log(pods: Api<Pod>, pod: String, key: LaunchKey) {
    let params = LogParams {
        follow: true,
        ..LogParams::default()
    };
    for _ in 0..600 {
        match pods.log_stream(&pod, &params).await {
            Ok(stream) => {
                let mut lines = stream.lines();
                while let Ok(Some(line)) = lines.try_next().await {
                    let line = super::process::plain_line(line.as_bytes());
                    tracing::info!(
                        target: "chaincode",
                        chaincode_id = %key.package_id,
                        launch_id = key.launch_id,
                        pod = %pod,
                        "{line}"
                    );
                }
                return;
            }
            // Not started yet (ContainerCreating) or not found yet: try again shortly.
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

impl Runtime for KubernetesRuntime {
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<(), RuntimeError>> {
        self.start_launch(spec).boxed()
    }

    fn stop(
        &self,
        key: &LaunchKey,
        why: StopReason,
    ) -> BoxFuture<'_, Result<ExitStatus, RuntimeError>> {
        let key = key.clone();
        async move { self.stop_launch(&key, why).await }.boxed()
    }

    fn wait(&self, key: &LaunchKey) -> BoxFuture<'_, Result<ExitStatus, RuntimeError>> {
        let key = key.clone();
        async move {
            let state = self
                .launch_state(&key)
                .ok_or_else(|| RuntimeError::UnknownInstance(key.clone()))?;
            let mut outcome = state.outcome.subscribe();
            drop(state);
            let result = outcome
                .wait_for(Option::is_some)
                .await
                .map_err(|_| RuntimeError::UnknownInstance(key.clone()))?
                .clone();
            match result {
                Some(Ok(status)) => Ok(status),
                Some(Err(message)) => Err(RuntimeError::Start { key, message }),
                None => Err(RuntimeError::UnknownInstance(key)),
            }
        }
        .boxed()
    }

    fn registered(&self, key: &LaunchKey) -> BoxFuture<'_, ()> {
        let key = key.clone();
        async move { self.report_registered(&key).await }.boxed()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        async move {
            let launches: Vec<_> = lock(&self.launches).drain().collect();
            for (_, state) in launches {
                for task in lock(&state.tasks).drain(..) {
                    task.abort();
                }
            }
            let selector = objects::endorser_selector(&self.template.endorser_id);
            match self.delete_selected(&selector).await {
                Ok(()) => tracing::info!(
                    namespace = %self.template.namespace,
                    "deleted every Chaincode this endorser launched"
                ),
                Err(error) => tracing::error!(
                    namespace = %self.template.namespace,
                    %error,
                    "deleting this endorser's Chaincodes at shutdown failed; the next start deletes them"
                ),
            }
        }
        .boxed()
    }
}

impl PackageInstaller for KubernetesRuntime {
    fn install(
        &self,
        _work_dir: &Path,
        package_bytes: &[u8],
        limits: &Limits,
    ) -> Result<PackageId, InstallError> {
        let (id, image) = self.plan_package(package_bytes, limits)?;
        lock(&self.packages).insert(id.to_string(), image);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_mappings_must_be_pinned_by_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let ok = parse_image_mapping(&format!("mycc_1.0=reg.example/cc@{digest}")).unwrap();
        assert_eq!(ok, ("mycc_1.0".into(), format!("reg.example/cc@{digest}")));
        for bad in [
            "mycc_1.0".to_string(),
            "mycc=reg.example/cc:latest".into(),
            format!("=reg.example/cc@{digest}"),
            "mycc=reg.example/cc@sha256:ABC".into(),
        ] {
            assert!(parse_image_mapping(&bad).is_err(), "{bad}");
        }
    }
}
