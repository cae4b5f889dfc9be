//! Chaincode platforms: one module per package type behind the [`Platform`] trait.
//!
//! A platform validates a package, says how it is deployed ([`Deployment`]: built from source, a
//! prebuilt image, or an external service), produces the build script that runs both in the
//! Dockerfile's builder stage and as local build steps for the process runtime, and the run plan
//! (command, arguments, environment, files) per FABRIC-FACTS.md.
use std::collections::BTreeMap;

use base64::Engine as _;

use super::{error::PackageError, package::ChaincodePackage};

pub mod ccaas;
pub mod golang;
pub mod image;
pub mod java;
pub mod node;

/// Why a package does not work on its platform, or why a request does not apply to it.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("unknown chaincode type {0:?}; expected golang, node, java, k8s or ccaas")]
    UnknownType(String),
    /// The package is not a valid chaincode for its platform; the message speaks to its developer.
    #[error("{platform} chaincode: {message}")]
    Invalid {
        platform: &'static str,
        message: String,
    },
    #[error("{platform} chaincode: {reason}")]
    NotApplicable {
        platform: &'static str,
        reason: String,
    },
    #[error("build options: {0}")]
    Options(String),
    #[error(transparent)]
    Package(#[from] PackageError),
}

/// User-facing build options (defaults are Fabric's own images and public registries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Builder-stage image; `None` uses the platform's default.
    pub builder_image: Option<String>,
    /// Runtime-stage image; `None` uses the platform's default.
    pub runtime_image: Option<String>,
    /// Numeric user (and group) the chaincode runs as in its image.
    pub run_as_uid: u32,
    /// Custom npm registry (the seed's NODE_REGISTRY).
    pub npm_registry: Option<String>,
    pub goproxy: Option<String>,
    pub gosumdb: Option<String>,
    pub goflags: Option<String>,
    /// Maven/Gradle repository mirror for Java builds.
    pub java_repository_mirror: Option<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            builder_image: None,
            runtime_image: None,
            run_as_uid: 10001,
            npm_registry: None,
            goproxy: None,
            gosumdb: None,
            goflags: None,
            java_repository_mirror: None,
        }
    }
}

/// How a package becomes a running chaincode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployment {
    /// Built from source with the platform's Dockerfile / local build steps.
    Build,
    /// A prebuilt image pinned by digest (`name@sha256:...`).
    PrebuiltImage { reference: String },
    /// Already running elsewhere; the peer dials it (chaincode-as-a-service).
    Service(ccaas::Connection),
}

/// Where a build reads and writes. Paths are absolute in the image, host paths for local builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildDirs {
    /// The extracted `code.tar.gz` (so Fabric's `src/...` layout is under it).
    pub source: String,
    /// Where the build leaves what the chaincode runs from (becomes the install dir).
    pub output: String,
    /// Where the generated helper files of [`BuildScript::files`] are placed.
    pub scratch: String,
}

impl BuildDirs {
    /// The directories used inside the builder stage of the Dockerfile.
    pub fn in_image() -> Self {
        BuildDirs {
            source: "/chaincode/input".to_string(),
            output: "/chaincode/output".to_string(),
            scratch: "/chaincode/build".to_string(),
        }
    }
}

/// Where the built chaincode lives in the runtime image.
pub const IMAGE_INSTALL_DIR: &str = "/chaincode";

/// One command of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildStep {
    pub program: String,
    pub args: Vec<String>,
    /// Directory the command runs in.
    pub working_dir: String,
    /// Variables added to the inherited environment.
    pub env: BTreeMap<String, String>,
}

/// A helper file the build needs (e.g. a repository mirror configuration), relative to the
/// scratch directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: String,
    pub contents: String,
}

/// Everything a build runs: helper files to write, then steps in order; stop at the first failure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildScript {
    pub files: Vec<GeneratedFile>,
    pub steps: Vec<BuildStep>,
}

impl BuildScript {
    /// The steps as one POSIX shell command line (`cd DIR && env K=V prog args && ...`).
    pub fn to_shell(&self) -> Result<String, PlatformError> {
        let quote = |word: &str| {
            shlex::try_quote(word)
                .map(|quoted| quoted.into_owned())
                .map_err(|err| PlatformError::Options(format!("cannot quote {word:?}: {err}")))
        };
        let mut commands = Vec::new();
        for step in &self.steps {
            let mut words = vec![
                "cd".to_string(),
                quote(&step.working_dir)?,
                "&&".to_string(),
            ];
            if !step.env.is_empty() {
                words.push("env".to_string());
                for (key, value) in &step.env {
                    words.push(quote(&format!("{key}={value}"))?);
                }
            }
            words.push(quote(&step.program)?);
            for arg in &step.args {
                words.push(quote(arg)?);
            }
            commands.push(words.join(" "));
        }
        Ok(commands.join(" \\\n && "))
    }
}

/// TLS material for one launch, as PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchTls {
    pub client_key_pem: String,
    pub client_cert_pem: String,
    /// The root the chaincode trusts for the peer.
    pub peer_root_cert_pem: String,
}

/// What the peer tells a chaincode at launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// Package id, becomes `CORE_CHAINCODE_ID_NAME`.
    pub chaincode_id: String,
    /// `host:port` of the peer's ChaincodeSupport service.
    pub peer_address: String,
    pub mspid: String,
    /// `None` when TLS is off.
    pub tls: Option<LaunchTls>,
    /// Directory the TLS files are placed in (Fabric: `/etc/hyperledger/fabric`).
    pub files_dir: String,
    pub logging_level: String,
    pub shim_logging_level: String,
    pub logging_format: Option<String>,
}

impl LaunchSpec {
    pub fn new(chaincode_id: &str, peer_address: &str, mspid: &str) -> Self {
        LaunchSpec {
            chaincode_id: chaincode_id.to_string(),
            peer_address: peer_address.to_string(),
            mspid: mspid.to_string(),
            tls: None,
            files_dir: "/etc/hyperledger/fabric".to_string(),
            logging_level: "INFO".to_string(),
            shim_logging_level: "WARNING".to_string(),
            logging_format: None,
        }
    }
}

/// A file the chaincode process needs at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFile {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// How to start one chaincode launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    /// Program and arguments; empty means the image's own entrypoint (prebuilt images).
    pub command: Vec<String>,
    pub working_dir: String,
    pub env: BTreeMap<String, String>,
    pub files: Vec<RunFile>,
}

impl RunPlan {
    /// A plan running `command` in `working_dir` with the launch's environment and files.
    pub fn new(command: Vec<String>, working_dir: &str, launch: &LaunchSpec) -> Self {
        let mut env = BTreeMap::new();
        let mut set = |key: &str, value: &str| env.insert(key.to_string(), value.to_string());
        set("CORE_CHAINCODE_ID_NAME", &launch.chaincode_id);
        set("CORE_PEER_ADDRESS", &launch.peer_address);
        set("CORE_PEER_LOCALMSPID", &launch.mspid);
        set("CORE_CHAINCODE_LOGGING_LEVEL", &launch.logging_level);
        set("CORE_CHAINCODE_LOGGING_SHIM", &launch.shim_logging_level);
        if let Some(format) = &launch.logging_format {
            set("CORE_CHAINCODE_LOGGING_FORMAT", format);
        }
        let mut files = Vec::new();
        match &launch.tls {
            None => {
                set("CORE_PEER_TLS_ENABLED", "false");
            }
            Some(tls) => {
                let dir = launch.files_dir.trim_end_matches('/');
                let path = |name: &str| format!("{dir}/{name}");
                set("CORE_PEER_TLS_ENABLED", "true");
                set("CORE_PEER_TLS_ROOTCERT_FILE", &path("peer.crt"));
                // The Node shim reads base64 of the PEM from *_PATH, the Go shim plain PEM from *_FILE.
                set("CORE_TLS_CLIENT_KEY_PATH", &path("client.key"));
                set("CORE_TLS_CLIENT_CERT_PATH", &path("client.crt"));
                set("CORE_TLS_CLIENT_KEY_FILE", &path("client_pem.key"));
                set("CORE_TLS_CLIENT_CERT_FILE", &path("client_pem.crt"));
                let b64 = |pem: &str| {
                    base64::engine::general_purpose::STANDARD
                        .encode(pem.as_bytes())
                        .into_bytes()
                };
                files.push(RunFile {
                    path: path("client.crt"),
                    contents: b64(&tls.client_cert_pem),
                    mode: 0o644,
                });
                files.push(RunFile {
                    path: path("client.key"),
                    contents: b64(&tls.client_key_pem),
                    mode: 0o600,
                });
                files.push(RunFile {
                    path: path("client_pem.crt"),
                    contents: tls.client_cert_pem.clone().into_bytes(),
                    mode: 0o644,
                });
                files.push(RunFile {
                    path: path("client_pem.key"),
                    contents: tls.client_key_pem.clone().into_bytes(),
                    mode: 0o600,
                });
                files.push(RunFile {
                    path: path("peer.crt"),
                    contents: tls.peer_root_cert_pem.clone().into_bytes(),
                    mode: 0o644,
                });
            }
        }
        RunPlan {
            command,
            working_dir: working_dir.to_string(),
            env,
            files,
        }
    }
}

/// One chaincode type.
pub trait Platform: Send + Sync {
    /// The canonical type name (`golang`, `node`, `java`, `k8s`, `ccaas`).
    fn name(&self) -> &'static str;

    /// Checks the package is a chaincode this platform can deploy; errors speak to its developer.
    fn validate(&self, package: &ChaincodePackage) -> Result<(), PlatformError>;

    /// How the (validated) package is deployed.
    fn deployment(&self, package: &ChaincodePackage) -> Result<Deployment, PlatformError> {
        self.validate(package)?;
        Ok(Deployment::Build)
    }

    /// Default (builder, runtime) images for source builds.
    fn default_images(&self) -> Option<(&'static str, &'static str)>;

    /// The build, given where the sources are and where the output goes. Used verbatim as the
    /// Dockerfile's builder stage and as the process runtime's local build steps.
    fn build_script(
        &self,
        package: &ChaincodePackage,
        dirs: &BuildDirs,
        options: &BuildOptions,
    ) -> Result<BuildScript, PlatformError>;

    /// How to start the chaincode once built; `install_dir` is the build output directory
    /// ([`IMAGE_INSTALL_DIR`] in an image).
    fn run_plan(
        &self,
        package: &ChaincodePackage,
        launch: &LaunchSpec,
        install_dir: &str,
    ) -> Result<RunPlan, PlatformError>;

    /// The local build steps for the process runtime (same script as the image build).
    fn local_build_steps(
        &self,
        package: &ChaincodePackage,
        dirs: &BuildDirs,
        options: &BuildOptions,
    ) -> Result<BuildScript, PlatformError> {
        self.build_script(package, dirs, options)
    }

    /// The multi-stage Dockerfile: builder stage runs the build script over `code/` copied to
    /// `/chaincode/input`; the runtime stage holds only the output, owned by and run as a
    /// non-root numeric user, with OCI labels naming the package and platform.
    fn dockerfile(
        &self,
        package: &ChaincodePackage,
        options: &BuildOptions,
    ) -> Result<String, PlatformError> {
        self.validate(package)?;
        let (default_builder, default_runtime) =
            self.default_images()
                .ok_or_else(|| PlatformError::NotApplicable {
                    platform: self.name(),
                    reason: "this package type is not built from source".to_string(),
                })?;
        let builder = options.builder_image.as_deref().unwrap_or(default_builder);
        let runtime = options.runtime_image.as_deref().unwrap_or(default_runtime);
        for image in [builder, runtime] {
            if image.is_empty() || image.contains(char::is_whitespace) {
                return Err(PlatformError::Options(format!(
                    "invalid image reference {image:?}"
                )));
            }
        }
        let dirs = BuildDirs::in_image();
        let script = self.build_script(package, &dirs, options)?;
        let uid = options.run_as_uid;
        if uid == 0 {
            return Err(PlatformError::Options(
                "the chaincode must not run as root (uid 0)".to_string(),
            ));
        }
        // No package id in here: the image is named by this context's digest, and the same
        // sources must build once however they were packaged (peer CLI or ours, any tar bytes),
        // and whether the bytes come from a package file or a peer's external builder call.
        let mut lines = vec![
            format!(
                "# Generated by chaincode-operator for {}",
                package.metadata.label
            ),
            format!("FROM {builder} AS builder"),
            format!("COPY code/ {}/", dirs.source),
        ];
        if !script.files.is_empty() {
            lines.push(format!("COPY build/ {}/", dirs.scratch));
        }
        lines.push(format!(
            "RUN mkdir -p {} \\\n && {}",
            dirs.output,
            script.to_shell()?
        ));
        lines.push(String::new());
        lines.push(format!("FROM {runtime}"));
        lines.push(format!(
            "LABEL org.opencontainers.image.title={} \\\n      org.opencontainers.image.description={} \\\n      dev.chaincode.fabric.platform={}",
            docker_quote(&package.metadata.label),
            docker_quote(&format!(
                "Hyperledger Fabric {} chaincode {}",
                self.name(),
                package.metadata.label
            )),
            docker_quote(self.name()),
        ));
        lines.push(format!(
            "COPY --from=builder --chown={uid}:{uid} {}/ {IMAGE_INSTALL_DIR}/",
            dirs.output
        ));
        lines.push(format!("WORKDIR {IMAGE_INSTALL_DIR}"));
        lines.push(format!("USER {uid}:{uid}"));
        lines.push(entrypoint(&self.run_plan(
            package,
            &LaunchSpec::new(&package.id.to_string(), PEER_ADDRESS_WORD, ""),
            IMAGE_INSTALL_DIR,
        )?)?);
        lines.push(String::new());
        Ok(lines.join("\n"))
    }

    /// The helper files of the build script, placed under `build/` in the build context.
    fn context_files(
        &self,
        package: &ChaincodePackage,
        options: &BuildOptions,
    ) -> Result<Vec<GeneratedFile>, PlatformError> {
        Ok(self
            .build_script(package, &BuildDirs::in_image(), options)?
            .files)
    }
}

/// Stands for the peer address in a run plan made for an image: the Pod's `CORE_PEER_ADDRESS` is
/// only known at start.
const PEER_ADDRESS_WORD: &str = "@CORE_PEER_ADDRESS@";

/// The image's start command: the platform's run command with `--peer.address` taken from the
/// Pod's `CORE_PEER_ADDRESS`, as Fabric's container command does.
fn entrypoint(plan: &RunPlan) -> Result<String, PlatformError> {
    let mut words = Vec::with_capacity(plan.command.len());
    for word in &plan.command {
        if word == PEER_ADDRESS_WORD {
            words.push("\"$CORE_PEER_ADDRESS\"".to_string());
        } else {
            let quoted = shlex::try_quote(word).map_err(|_| {
                PlatformError::Options(format!("run command word {word:?} cannot be quoted"))
            })?;
            words.push(quoted.into_owned());
        }
    }
    let script = format!("exec {}", words.join(" "));
    let json = serde_json::to_string(&script)
        .map_err(|err| PlatformError::Options(format!("encoding the entrypoint: {err}")))?;
    Ok(format!("ENTRYPOINT [\"sh\", \"-c\", {json}]"))
}

/// A Dockerfile double-quoted string.
fn docker_quote(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// The platform for a package type (case-insensitive; `go` and `external`/`image` aliases accepted).
pub fn platform_for(kind: &str) -> Result<&'static dyn Platform, PlatformError> {
    match kind.trim().to_ascii_lowercase().as_str() {
        "golang" | "go" => Ok(&golang::Golang),
        "node" => Ok(&node::Node),
        "java" => Ok(&java::Java),
        "k8s" | "image" => Ok(&image::PrebuiltImage),
        "ccaas" => Ok(&ccaas::Ccaas),
        _ => Err(PlatformError::UnknownType(kind.to_string())),
    }
}

/// Shortcut: the platform of a package.
pub fn platform_of(package: &ChaincodePackage) -> Result<&'static dyn Platform, PlatformError> {
    platform_for(&package.metadata.kind)
}

pub(crate) fn invalid(platform: &'static str, message: impl Into<String>) -> PlatformError {
    PlatformError::Invalid {
        platform,
        message: message.into(),
    }
}

pub(crate) fn join_dir(dir: &str, rel: &str) -> String {
    match (dir.trim_end_matches('/'), rel.trim_matches('/')) {
        (dir, "") => dir.to_string(),
        ("", rel) => rel.to_string(),
        (dir, rel) => format!("{dir}/{rel}"),
    }
}

pub(crate) fn step(program: &str, args: &[&str], working_dir: &str) -> BuildStep {
    BuildStep {
        program: program.to_string(),
        args: args.iter().map(|arg| arg.to_string()).collect(),
        working_dir: working_dir.to_string(),
        env: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_types_are_named_in_the_error() {
        let err = platform_for("cobol").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unknown chaincode type \"cobol\"; expected golang, node, java, k8s or ccaas")
        );
        assert_eq!(
            platform_for("GOLANG").map(|p| p.name()).ok(),
            Some("golang")
        );
    }

    #[test]
    fn tls_launch_files_carry_base64_for_node_and_pem_for_go() {
        let mut launch = LaunchSpec::new("cc:abc", "peer0:7052", "Org1MSP");
        launch.tls = Some(LaunchTls {
            client_key_pem: "KEY".into(),
            client_cert_pem: "CERT".into(),
            peer_root_cert_pem: "ROOT".into(),
        });
        let plan = RunPlan::new(vec!["x".into()], "/w", &launch);
        let file = |name: &str| {
            plan.files
                .iter()
                .find(|f| f.path == format!("/etc/hyperledger/fabric/{name}"))
                .map(|f| f.contents.clone())
        };
        assert_eq!(file("client.key"), Some(b"S0VZ".to_vec()));
        assert_eq!(file("client.crt"), Some(b"Q0VSVA==".to_vec()));
        assert_eq!(file("client_pem.key"), Some(b"KEY".to_vec()));
        assert_eq!(file("peer.crt"), Some(b"ROOT".to_vec()));
        assert_eq!(plan.env["CORE_PEER_TLS_ENABLED"], "true");
        assert_eq!(
            plan.env["CORE_TLS_CLIENT_KEY_PATH"],
            "/etc/hyperledger/fabric/client.key"
        );
        assert_eq!(plan.env["CORE_CHAINCODE_ID_NAME"], "cc:abc");
    }

    #[test]
    fn without_tls_there_are_no_files() {
        let plan = RunPlan::new(vec![], "/w", &LaunchSpec::new("cc:1", "p:1", "M"));
        assert!(plan.files.is_empty());
        assert_eq!(plan.env["CORE_PEER_TLS_ENABLED"], "false");
        assert!(!plan.env.contains_key("CORE_PEER_TLS_ROOTCERT_FILE"));
    }

    #[test]
    fn shell_rendering_quotes_every_word() {
        let mut s = step("npm", &["install", "--registry", "http://r/a b"], "/w d");
        s.env.insert("A".into(), "x y".into());
        let script = BuildScript {
            files: vec![],
            steps: vec![s],
        };
        assert_eq!(
            script.to_shell().ok().as_deref(),
            Some("cd '/w d' && env 'A=x y' npm install --registry 'http://r/a b'")
        );
    }
}
