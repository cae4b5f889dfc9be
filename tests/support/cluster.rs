//! The real cluster a test runs on: `CHAINCODE_E2E_KUBECONFIG` (kind, k3d, any cluster) or the kube
//! kit's `$KUBE_LAB/cluster.env` (what CI starts). None means the test skips with a notice.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::dev::{Dev, dev_command, spawn_dev};

#[derive(Debug, Clone)]
pub struct Cluster {
    pub kubeconfig: PathBuf,
    /// `KEY=VALUE` settings of the kube kit (images by digest, registry, node IP); empty elsewhere.
    pub settings: BTreeMap<String, String>,
}

impl Cluster {
    /// The configured cluster, or None after printing why the calling test skips.
    pub fn from_env(test: &str) -> Option<Cluster> {
        match super::kube_kit::find_cluster() {
            Ok(found) => Some(Cluster {
                kubeconfig: found.kubeconfig,
                settings: found.settings,
            }),
            Err(why) => {
                eprintln!("skipped {test}: {why}");
                None
            }
        }
    }

    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(String::as_str)
    }

    /// `kubectl` against this cluster (the kit's own kubectl when there is one).
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.setting("KUBECTL").unwrap_or("kubectl"));
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }

    /// Runs kubectl with `args`, returns stdout; panics with stderr on failure.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl_ok_with(args, None)
    }

    /// [`Self::kubectl_ok`] with `stdin` piped in (`apply -f -`).
    pub fn kubectl_ok_with(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = self.kubectl_run(args, stdin);
        assert!(ok, "kubectl {args:?} failed: {err}");
        out
    }

    /// Runs kubectl with `args` and `stdin` piped in; (success, stdout, stderr), for commands that
    /// may fail on purpose (a rejected object, a forbidden verb).
    pub fn kubectl_run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut child = self
            .kubectl()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.unwrap_or_default().as_bytes())
                .expect("write kubectl's stdin");
        }
        let out = child.wait_with_output().expect("kubectl finishes");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The kit's image setting `key` when it is pinned by digest (`repo@sha256:...`).
    pub fn image(&self, key: &str) -> Option<String> {
        self.setting(key)
            .filter(|image| image.contains("@sha256:"))
            .map(str::to_string)
    }

    /// Installs (or upgrades) the Chaincode CRD this tree generates, the way the docs show.
    pub fn apply_crd(&self) {
        let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/chaincode.yaml");
        self.kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crd.to_str().expect("utf-8 path"),
        ]);
    }

    /// PATH with the kit's kubectl first, for scripts that call `kubectl`.
    pub fn path_env(&self) -> String {
        let path = std::env::var("PATH").unwrap_or_default();
        match self.setting("KUBECTL").and_then(|k| Path::new(k).parent()) {
            Some(dir) => format!("{}:{path}", dir.display()),
            None => path,
        }
    }
}

pub const ENDORSER_LABEL: &str = "fabric.chaincode.dev/endorser";

/// A namespace that is deleted when the test ends, however it ends.
pub struct Namespace {
    cluster: Cluster,
    pub name: String,
}

impl Namespace {
    pub fn create(cluster: &Cluster, name: String) -> Namespace {
        cluster.kubectl_ok(&["create", "namespace", &name]);
        Namespace {
            cluster: cluster.clone(),
            name,
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self
            .cluster
            .kubectl()
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .output();
    }
}

/// The kit's addresses and images the scenarios use.
pub struct Kit {
    pub node_ip: String,
    pub registry: String,
    pub buildkit_image: String,
    pub fetcher_image: String,
}

impl Kit {
    pub fn from(cluster: &Cluster) -> Option<Kit> {
        Some(Kit {
            node_ip: cluster.setting("NODE_IP")?.to_string(),
            registry: cluster.setting("REGISTRY")?.to_string(),
            buildkit_image: cluster.setting("BUILDKIT_IMAGE")?.to_string(),
            fetcher_image: cluster.setting("FETCHER_IMAGE")?.to_string(),
        })
    }

    pub fn base_image(&self) -> String {
        format!("{}/library/node-debian:bookworm", self.registry)
    }
}

/// The operator's controller for `namespace`, killed on drop.
pub fn start_operator(cluster: &Cluster, namespace: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_chaincode-operator"))
        .args(["controller", "--namespace", namespace])
        .args(["--http-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("run chaincode-operator controller")
}

/// Starts the pass-through npm registry on the node IP and returns it with its URL.
pub async fn start_npm_proxy(host: &str) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new("node")
        .arg(super::e2e_dir("cluster/npm-proxy.js"))
        .args([host, "0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run npm-proxy.js");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("npm proxy starts")
        .expect("read npm proxy output")
        .expect("npm proxy prints its address");
    let address = line.strip_prefix("listening ").expect("listening line");
    (child, format!("http://{address}/"))
}

/// A kubeconfig for ServiceAccount `name` in `namespace`, bound there to a Role made of exactly
/// `permissions` (what the Helm chart grants), written to `dir/<name>.kubeconfig`.
pub fn service_account_kubeconfig(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    permissions: &[chaincode_operator::operator::rbac::Permission],
    dir: &Path,
) -> PathBuf {
    let rules: Vec<Value> = permissions
        .iter()
        .map(|p| {
            serde_json::json!({"apiGroups": [p.group], "resources": [p.resource], "verbs": p.verbs})
        })
        .collect();
    let objects = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name, "namespace": namespace}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    ]});
    std::fs::create_dir_all(dir).expect("create the kubeconfig directory");
    let manifest = dir.join(format!("{name}-rbac.json"));
    std::fs::write(&manifest, objects.to_string()).expect("write the RBAC manifest");
    cluster.kubectl_ok(&["apply", "-f", manifest.to_str().expect("utf-8 path")]);
    let path = dir.join(format!("{name}.kubeconfig"));
    write_token_kubeconfig(cluster, namespace, name, &path);
    path
}

/// Writes to `path` a kubeconfig that reaches the kit's API server as ServiceAccount `account` of
/// `namespace` (which must exist), with a one-hour token.
pub fn write_token_kubeconfig(cluster: &Cluster, namespace: &str, account: &str, path: &Path) {
    let token = cluster.kubectl_ok(&["-n", namespace, "create", "token", account, "--duration=1h"]);
    let admin: Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "config",
        "view",
        "--raw",
        "--minify",
        "--flatten",
        "-o",
        "json",
    ]))
    .expect("kubeconfig JSON");
    let kubeconfig = serde_json::json!({"apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": account, "user": {"token": token.trim()}}],
        "contexts": [{"name": account, "context": {"cluster": "cluster", "user": account, "namespace": namespace}}],
        "current-context": account});
    std::fs::write(path, kubeconfig.to_string()).expect("write the kubeconfig");
}

/// `dev --runtime kubernetes` in `dir` for `source` with the kit's build settings, talking to the
/// cluster through `kubeconfig`; returns once it printed `ready`.
pub async fn start_dev(
    kubeconfig: &Path,
    kit: &Kit,
    namespace: &str,
    endorser_id: &str,
    dir: &Path,
    source: &Path,
    extra: &[String],
) -> Dev {
    let mut args = kubernetes_args(kit, namespace, endorser_id);
    args.extend_from_slice(extra);
    let mut command = dev_command(dir, source, &args);
    command.env("KUBECONFIG", kubeconfig);
    // Source builds run in-cluster: allow for the build.
    spawn_dev(command, dir, Duration::from_secs(600)).await
}

/// The `dev` flags that run chaincode on the kit: namespace, endorser id, build settings, and the
/// chaincode listener on the node IP, where Pods reach it.
pub fn kubernetes_args(kit: &Kit, namespace: &str, endorser_id: &str) -> Vec<String> {
    [
        "--chaincode-listen",
        &format!("{}:0", kit.node_ip),
        "--runtime",
        "kubernetes",
        "--kube-namespace",
        namespace,
        "--endorser-id",
        endorser_id,
        "--build-registry",
        &format!("{}/chaincode", kit.registry),
        "--builder-image",
        &kit.base_image(),
        "--runtime-image",
        &kit.base_image(),
        "--buildkit-image",
        &kit.buildkit_image,
        "--fetcher-image",
        &kit.fetcher_image,
    ]
    .map(String::from)
    .to_vec()
}

pub fn chaincodes(cluster: &Cluster, namespace: &str, endorser_id: &str) -> Vec<Value> {
    let out = cluster.kubectl_ok(&[
        "get",
        "chaincodes",
        "-n",
        namespace,
        "-l",
        &format!("{ENDORSER_LABEL}={endorser_id}"),
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&out).expect("kubectl prints JSON");
    list["items"].as_array().cloned().unwrap_or_default()
}

pub fn condition<'a>(cc: &'a Value, kind: &str) -> Option<&'a Value> {
    cc["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// Polls `check` every half second until it is true or `timeout` passes.
pub async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// Kills the Pods of Chaincode `name` at once (no grace period), as a crash or node loss would.
pub fn kill_chaincode_pods(cluster: &Cluster, namespace: &str, name: &str) {
    cluster.kubectl_ok(&[
        "delete",
        "pods",
        "-n",
        namespace,
        "-l",
        &format!("fabric.chaincode.dev/chaincode={name}"),
        "--grace-period=0",
        "--force",
    ]);
}

pub fn running_pods(cluster: &Cluster, namespace: &str) -> Vec<String> {
    let out = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        namespace,
        "--field-selector",
        "status.phase=Running",
        "-o",
        "name",
    ]);
    out.lines().map(str::to_string).collect()
}
