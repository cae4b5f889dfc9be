//! Fabric's external builder contract for stock peers (`core.yaml` `chaincode.externalBuilders`):
//! `bin/detect`, `bin/build`, `bin/release`, `bin/run`, each a small script that runs
//! `chaincode-operator builder STEP "$@"` (`builder install DIR` writes them).
//!
//! - detect claims the package types the operator can deploy: node, golang and java sources, and
//!   prebuilt images (our `image` packages and fabric-builder-k8s's `k8s` packages with
//!   `image.json`, so users switch without repackaging). chaincode-as-a-service stays with Fabric's
//!   own ccaas builder.
//! - build validates with the same platform code the operator uses and writes the build output:
//!   what to deploy (the build context and its digest, or the image) — nothing cluster-bound, so a
//!   peer's install stays fast and works offline.
//! - release hands the peer the package's CouchDB index folders.
//! - run turns the peer's `chaincode.json` into the launch's TLS Secret and a `Chaincode` (through
//!   the endorser's kubernetes runtime, so the objects are the same), waits for its Pod, streams
//!   the chaincode's log to the peer, lives as long as the chaincode, and deletes the launch on
//!   SIGTERM. The chaincode dials run's registration relay ([`relay`]), which forwards its stream
//!   to the peer and sees the peer's READY: the status says `Registered=True` only then. With
//!   `CHAINCODE_RELAY=off` the chaincode dials the peer directly and the status says
//!   `Registered=Unknown, StockPeer`, never True.
pub mod relay;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::builders::Limits;
use crate::builders::context::build_context;
use crate::builders::package::{ChaincodePackage, PackageId, PackageMetadata};
use crate::builders::platform::{BuildOptions, Deployment, platform_for};
use crate::builders::tree::SourceTree;
use crate::endorser::chaincode::runtime::kubernetes::objects::PackageImage;
use crate::endorser::chaincode::runtime::kubernetes::{
    KubernetesRuntime, KubernetesRuntimeConfig, split_image,
};
use crate::endorser::chaincode::runtime::{
    ChaincodeLogging, LaunchKey, LaunchSpec, LaunchTls, Runtime, StopReason,
};
use crate::endorser::chaincode::tls::address_host;

/// `chaincode-operator builder …`: the external builder's steps, as the peer runs them.
#[derive(Debug, clap::Args)]
pub struct BuilderArgs {
    #[command(subcommand)]
    pub step: Step,
}

#[derive(Debug, clap::Subcommand)]
pub enum Step {
    /// bin/detect SOURCE_DIR METADATA_DIR: exit 0 when this builder deploys the package.
    Detect { source: PathBuf, metadata: PathBuf },
    /// bin/build SOURCE_DIR METADATA_DIR BUILD_OUTPUT_DIR: validate and write what to deploy.
    /// The Dockerfile's images and package mirrors are part of the build context, so they are
    /// read here, from the peer's propagated environment.
    Build {
        source: PathBuf,
        metadata: PathBuf,
        output: PathBuf,
        /// Builder-stage image (default: the platform's Fabric image).
        #[arg(long, env = "CHAINCODE_BUILDER_IMAGE")]
        builder_image: Option<String>,
        /// Runtime-stage image (default: the platform's Fabric image).
        #[arg(long, env = "CHAINCODE_RUNTIME_IMAGE")]
        runtime_image: Option<String>,
        #[arg(long = "node-registry", env = "NODE_REGISTRY")]
        node_registry: Option<String>,
        #[arg(long, env = "GOPROXY")]
        goproxy: Option<String>,
        #[arg(long = "maven-mirror", env = "MAVEN_MIRROR")]
        maven_mirror: Option<String>,
    },
    /// bin/release BUILD_OUTPUT_DIR RELEASE_OUTPUT_DIR: the CouchDB indexes, for the peer.
    Release { build: PathBuf, release: PathBuf },
    /// bin/run BUILD_OUTPUT_DIR RUN_METADATA_DIR: launch on Kubernetes and live as long as the
    /// chaincode. Settings come from the peer's propagated environment (CHAINCODE_NAMESPACE,
    /// CHAINCODE_ENDORSER_ID, CHAINCODE_BUILD_REGISTRY, CHAINCODE_POD_SETTINGS, KUBECONFIG).
    Run {
        build: PathBuf,
        run_metadata: PathBuf,
        #[command(flatten)]
        kubernetes: Box<crate::endorser::chaincode::runtime::kubernetes::KubernetesRuntimeArgs>,
        /// Seconds until the chaincode's Pod must run.
        #[arg(long, env = "CHAINCODE_STARTUP_TIMEOUT", default_value_t = 300)]
        startup_timeout: u64,
        #[arg(long = "node-registry", env = "NODE_REGISTRY", value_name = "URL")]
        node_registry: Option<String>,
        #[command(flatten)]
        relay: RelayArgs,
    },
    /// Writes DIR/bin/{detect,build,release,run}: what a peer's core.yaml externalBuilders `path`
    /// names. With --copy the binary goes to DIR/bin too (for a peer image).
    Install {
        dir: PathBuf,
        #[arg(long)]
        copy: bool,
    },
}

/// How run's registration relay is reached by the chaincode.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// `on`: the chaincode dials this process, which forwards its stream to the peer and reports
    /// `Registered=True` when the peer sends READY. `off`: the chaincode dials the peer directly
    /// (with the peer-issued certificate) and registration is not observed.
    #[arg(long = "relay", env = "CHAINCODE_RELAY", value_enum, default_value_t = RelayMode::On)]
    pub mode: RelayMode,
    /// Host the chaincode dials for the relay (default: the host of the peer's chaincode address,
    /// since run runs beside the peer; in a peer Pod whose chaincode address is a Service name,
    /// set it to the Pod IP).
    #[arg(long = "relay-host", env = "CHAINCODE_RELAY_HOST")]
    pub host: Option<String>,
    /// Address the relay listens on; port 0 picks a free port (one relay per chaincode).
    #[arg(
        long = "relay-listen",
        env = "CHAINCODE_RELAY_LISTEN",
        default_value = "0.0.0.0:0"
    )]
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RelayMode {
    On,
    Off,
}

/// The build output's description of what to deploy, `BUILD_OUTPUT_DIR/chaincode-operator.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildOutput {
    /// The package's metadata.json type and label.
    #[serde(rename = "type")]
    pub kind: String,
    pub label: String,
    #[serde(flatten)]
    pub deploy: Deploy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "deploy"
)]
pub enum Deploy {
    /// Built from source by the operator: `context.tar.gz` beside this file, named by its
    /// digest (equal sources build once, whichever peer installs them).
    Source { content_digest: String },
    /// A prebuilt image, pinned by digest.
    Image { image: String },
}

/// The build output's description file.
pub const BUILD_OUTPUT_FILE: &str = "chaincode-operator.json";
/// The build context in the build output.
pub const CONTEXT_FILE: &str = "context.tar.gz";

pub fn run(args: BuilderArgs) -> anyhow::Result<ExitCode> {
    match args.step {
        Step::Detect { source, metadata } => Ok(match detect(&source, &metadata) {
            Ok(kind) => {
                eprintln!("chaincode-operator builds {kind} packages");
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("chaincode-operator does not build this package: {why}");
                ExitCode::FAILURE
            }
        }),
        Step::Build {
            source,
            metadata,
            output,
            builder_image,
            runtime_image,
            node_registry,
            goproxy,
            maven_mirror,
        } => {
            let options = BuildOptions {
                builder_image,
                runtime_image,
                npm_registry: node_registry,
                goproxy,
                java_repository_mirror: maven_mirror,
                ..BuildOptions::default()
            };
            let written = build(&source, &metadata, &output, &options)?;
            eprintln!(
                "chaincode-operator: {} {} ready to deploy ({})",
                written.kind,
                written.label,
                match &written.deploy {
                    Deploy::Source { content_digest } => format!("build context {content_digest}"),
                    Deploy::Image { image } => format!("image {image}"),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Step::Release { build, release } => {
            release_indexes(&build, &release)?;
            Ok(ExitCode::SUCCESS)
        }
        Step::Run {
            build,
            run_metadata,
            kubernetes,
            startup_timeout,
            node_registry,
            relay,
        } => {
            let config = kubernetes.config(
                node_registry,
                std::time::Duration::from_secs(startup_timeout),
            )?;
            tokio::runtime::Runtime::new()
                .context("starting the async runtime")?
                .block_on(run_launch(&build, &run_metadata, config, relay))
        }
        Step::Install { dir, copy } => {
            install(&dir, copy)?;
            println!(
                "external builder in {}: add to core.yaml chaincode.externalBuilders: \
                 {{name: chaincode-operator, path: {}, propagateEnvironment: [KUBECONFIG, ...]}}",
                dir.display(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A JSON file the peer or an earlier step wrote; errors name the file.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid", path.display()))
}

fn read_metadata(metadata_dir: &Path) -> anyhow::Result<PackageMetadata> {
    read_json(&metadata_dir.join("metadata.json"))
}

/// The type this builder claims the package as, or why not.
pub fn detect(_source: &Path, metadata_dir: &Path) -> anyhow::Result<String> {
    let metadata = read_metadata(metadata_dir)?;
    let platform = platform_for(&metadata.kind)?;
    anyhow::ensure!(
        platform.name() != "ccaas",
        "chaincode-as-a-service packages are for Fabric's ccaas builder"
    );
    Ok(metadata.kind)
}

/// The package as the platforms see it, from the peer's extracted code and metadata. The id's
/// hash is unknown here (the peer names the package only at run), so the label stands in.
fn package_from_dirs(source: &Path, metadata_dir: &Path) -> anyhow::Result<ChaincodePackage> {
    let metadata = read_metadata(metadata_dir)?;
    let code = SourceTree::from_dir(source, &Limits::default(), &|_| false)
        .with_context(|| format!("reading the package's code in {}", source.display()))?;
    Ok(ChaincodePackage {
        id: PackageId {
            label: metadata.label.clone(),
            hash: String::new(),
        },
        metadata,
        code,
    })
}

/// Validates the package and writes the build output; returns what it wrote.
pub fn build(
    source: &Path,
    metadata_dir: &Path,
    output: &Path,
    options: &BuildOptions,
) -> anyhow::Result<BuildOutput> {
    let package = package_from_dirs(source, metadata_dir)?;
    let platform = platform_for(&package.metadata.kind)?;
    let deploy = match platform.deployment(&package)? {
        Deployment::PrebuiltImage { reference } => Deploy::Image { image: reference },
        Deployment::Service(_) => {
            anyhow::bail!("chaincode-as-a-service packages are for Fabric's ccaas builder")
        }
        Deployment::Build => {
            let context = build_context(&package, options)?;
            let path = output.join(CONTEXT_FILE);
            std::fs::create_dir_all(output)
                .with_context(|| format!("creating {}", output.display()))?;
            crate::durable::write_atomically(&path, &context.bytes, None)
                .with_context(|| format!("writing {}", path.display()))?;
            Deploy::Source {
                content_digest: format!("sha256:{}", context.digest),
            }
        }
    };
    let written = BuildOutput {
        kind: package.metadata.kind.clone(),
        label: package.metadata.label.clone(),
        deploy,
    };
    // CouchDB indexes travel in the build output to release.
    let indexes = source.join("META-INF");
    if indexes.is_dir() {
        copy_dir(&indexes, &output.join("META-INF"))?;
    }
    let json = serde_json::to_vec_pretty(&written)?;
    crate::durable::write_atomically(&output.join(BUILD_OUTPUT_FILE), &json, None)
        .with_context(|| format!("writing the build output in {}", output.display()))?;
    Ok(written)
}

/// Fabric's release contract: `RELEASE_OUTPUT_DIR/statedb/couchdb/indexes/*.json` (and
/// `collections/<name>/indexes`), taken from the package's `META-INF/statedb/couchdb`.
pub fn release_indexes(build: &Path, release: &Path) -> anyhow::Result<()> {
    let couchdb = build.join("META-INF/statedb/couchdb");
    if couchdb.is_dir() {
        copy_dir(&couchdb, &release.join("statedb/couchdb"))?;
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// The scripts a peer runs. They find the binary beside them (--copy) or where this one
/// is now.
pub fn install(dir: &Path, copy: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    let exe = std::env::current_exe().context("finding this binary")?;
    let binary = if copy {
        let target = bin.join("chaincode-operator");
        std::fs::copy(&exe, &target).with_context(|| format!("copying to {}", target.display()))?;
        "\"$(dirname \"$0\")/chaincode-operator\"".to_string()
    } else {
        format!("'{}'", exe.display().to_string().replace('\'', r"'\''"))
    };
    for step in ["detect", "build", "release", "run"] {
        let path = bin.join(step);
        let script = format!(
            "#!/bin/sh\n# Fabric external builder step, see chaincode-operator's README.\nexec {binary} builder {step} \"$@\"\n"
        );
        std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// `RUN_METADATA_DIR/chaincode.json`, fresh for every run.
#[derive(Debug, Deserialize)]
struct RunMetadata {
    chaincode_id: String,
    peer_address: String,
    #[serde(default)]
    client_cert: String,
    #[serde(default)]
    client_key: String,
    #[serde(default)]
    root_cert: String,
    mspid: String,
}

fn package_image(build: &Path, output: &BuildOutput) -> anyhow::Result<PackageImage> {
    use crate::operator::crd::Platform;
    Ok(match &output.deploy {
        Deploy::Image { image } => {
            let (name, digest) = split_image(image).map_err(anyhow::Error::msg)?;
            PackageImage::Prebuilt { name, digest }
        }
        Deploy::Source { content_digest } => {
            let platform = match output.kind.trim().to_ascii_lowercase().as_str() {
                "node" => Platform::Node,
                "golang" | "go" => Platform::Golang,
                "java" => Platform::Java,
                other => anyhow::bail!("a {other} package has no source build"),
            };
            let path = build.join(CONTEXT_FILE);
            let context =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            PackageImage::Build {
                platform,
                context,
                content_digest: content_digest.clone(),
            }
        }
    })
}

/// bin/run: one launch, as long as the chaincode lives. Exit 0 when the peer stops it (SIGTERM),
/// non-zero when the chaincode could not start or ended.
async fn run_launch(
    build: &Path,
    run_metadata: &Path,
    config: KubernetesRuntimeConfig,
    relay_args: RelayArgs,
) -> anyhow::Result<ExitCode> {
    crate::endorser::node::cli::init_tracing();
    let output: BuildOutput = read_json(&build.join(BUILD_OUTPUT_FILE))?;
    let meta: RunMetadata = read_json(&run_metadata.join("chaincode.json"))?;
    let image = package_image(build, &output)?;
    let startup_timeout = config.startup_timeout;
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (KUBECONFIG in propagateEnvironment, or in-cluster)")?;
    let runtime =
        KubernetesRuntime::for_external_builder(client, config, &meta.chaincode_id, image);
    // Each run is a new launch attempt: seconds since the epoch grow across peer restarts, and
    // a higher attempt replaces an earlier run's Pod.
    let launch_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1);
    let peer_tls = (!meta.client_cert.is_empty()).then(|| LaunchTls {
        client_cert_pem: meta.client_cert.clone(),
        client_key_pem: meta.client_key.clone(),
        root_cert_pem: meta.root_cert.clone(),
    });
    let relay = match relay_args.mode {
        RelayMode::Off => None,
        RelayMode::On => {
            let host =
                relay_args
                    .host
                    .clone()
                    .unwrap_or_else(|| match address_host(&meta.peer_address) {
                        "" => "localhost".to_string(),
                        host => host.to_string(),
                    });
            let upstream = relay::Upstream {
                address: meta.peer_address.clone(),
                tls: peer_tls.clone(),
            };
            let relay = relay::Relay::start(upstream, relay_args.listen, &host, &meta.chaincode_id)
                .await
                .context("starting the registration relay (CHAINCODE_RELAY=off skips it)")?;
            eprintln!(
                "chaincode-operator: {} dials the registration relay at {}, which forwards to \
                 the peer at {}",
                meta.chaincode_id, relay.address, meta.peer_address
            );
            Some(relay)
        }
    };
    let (peer_address, tls) = match &relay {
        Some(relay) => (relay.address.clone(), relay.chaincode_tls.clone()),
        None => (meta.peer_address.clone(), peer_tls),
    };
    let spec = LaunchSpec {
        key: LaunchKey {
            package_id: meta.chaincode_id.clone(),
            launch_id,
        },
        peer_address,
        mspid: meta.mspid.clone(),
        tls,
        logging: ChaincodeLogging::default(),
    };
    let key = spec.key.clone();
    // Caught from the first write on: a SIGTERM while the launch is applied is handled once it
    // is, by deleting it, instead of killing the process and leaving the launch behind.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    // kube's client has no read timeout (watches and log follows idle for long): an API server
    // that takes the connection but never answers would hold run silently until the peer kills it.
    match tokio::time::timeout(startup_timeout, runtime.launch(spec)).await {
        Ok(launched) => launched.with_context(|| format!("launching {}", meta.chaincode_id))?,
        Err(_) => anyhow::bail!(
            "launching {}: the Kubernetes API server did not answer within {} s \
             (CHAINCODE_STARTUP_TIMEOUT)",
            meta.chaincode_id,
            startup_timeout.as_secs()
        ),
    }
    let stopped = |why: &str| {
        eprintln!("chaincode-operator: {} {why}", meta.chaincode_id);
    };
    tokio::select! {
        running = runtime.until_running(&key) => match running {
            Ok(pod) => {
                stopped(&format!("is running in Pod {pod}"));
                if relay.is_none() {
                    runtime.report_stock_peer(&key).await;
                }
            }
            Err(failure) => {
                stopped(&format!("did not start: {failure}"));
                let _ = runtime.stop(&key, StopReason::LaunchFailed(failure)).await;
                return Ok(ExitCode::FAILURE);
            }
        },
        _ = term.recv() => {
            stopped("stopped by the peer before it ran");
            runtime
                .stop(&key, StopReason::Retired)
                .await
                .context("deleting the launch")?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    let mut registration = relay.as_ref().map(relay::Relay::registration);
    let ended = runtime.wait(&key);
    tokio::pin!(ended);
    loop {
        tokio::select! {
            ended = &mut ended => {
                let why = match ended {
                    Ok(status) => format!("ended ({status})"),
                    Err(error) => format!("ended: {error}"),
                };
                stopped(&why);
                let _ = runtime.stop(&key, StopReason::LaunchFailed(why)).await;
                return Ok(ExitCode::FAILURE);
            }
            _ = term.recv() => {
                // The peer stops chaincode with SIGTERM and SIGKILL after 5 s: delete at once.
                stopped("stopped by the peer");
                runtime
                    .stop(&key, StopReason::Retired)
                    .await
                    .context("deleting the launch")?;
                return Ok(ExitCode::SUCCESS);
            }
            Some(state) = next_registration(&mut registration) => match state {
                relay::Registration::Ready { .. } => {
                    stopped("registered: the peer sent READY");
                    runtime.registered(&key).await;
                }
                relay::Registration::Closed { why, .. } => {
                    stopped(&format!("is no longer registered: {why}"));
                    runtime
                        .report_unregistered(
                            &key,
                            "StreamClosed",
                            &format!("the chaincode's stream to the peer closed: {why}"),
                        )
                        .await;
                }
                relay::Registration::Waiting => {}
            },
        }
    }
}

/// The relay's next registration change; never resolves without a relay (or once it is gone).
async fn next_registration(
    registration: &mut Option<tokio::sync::watch::Receiver<relay::Registration>>,
) -> Option<relay::Registration> {
    if let Some(receiver) = registration
        && receiver.changed().await.is_ok()
    {
        return Some(receiver.borrow_and_update().clone());
    }
    std::future::pending().await
}
