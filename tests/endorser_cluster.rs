//! The endorser's kubernetes runtime on a real cluster (the kube kit in CI), driven by Hyperledger's
//! own clients and shim: `chaincode-operator dev --runtime kubernetes` installs the Node contract
//! chaincode, the operator builds it from source in-cluster (BuildKit Job, pushed to the kit's
//! registry) and runs it as a Pod that registers with the endorser; fabric-gateway submits and
//! evaluates through it; a killed Pod is relaunched by the next invoke; a failing build and a
//! missing image reach the client with their cause; stopping or killing the endorser leaves nothing
//! running. Skipped with a notice without a cluster; the build scenarios need the kit (registry,
//! BuildKit image, node base image).
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chaincode_operator::endorser::node::dev::DevInfo;
use serde_json::Value;
use support::cluster::Cluster;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const ENDORSER_LABEL: &str = "fabric.chaincode.dev/endorser";

/// A namespace that is deleted when the test ends, however it ends.
struct Namespace {
    cluster: Cluster,
    name: String,
}

impl Namespace {
    fn create(cluster: &Cluster, name: String) -> Namespace {
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
struct Kit {
    node_ip: String,
    registry: String,
    buildkit_image: String,
    fetcher_image: String,
}

impl Kit {
    fn from(cluster: &Cluster) -> Option<Kit> {
        Some(Kit {
            node_ip: cluster.setting("NODE_IP")?.to_string(),
            registry: cluster.setting("REGISTRY")?.to_string(),
            buildkit_image: cluster.setting("BUILDKIT_IMAGE")?.to_string(),
            fetcher_image: cluster.setting("FETCHER_IMAGE")?.to_string(),
        })
    }

    fn base_image(&self) -> String {
        format!("{}/library/node-debian:bookworm", self.registry)
    }
}

fn operator_bin() -> &'static str {
    env!("CARGO_BIN_EXE_chaincode-operator")
}

/// The operator's controller for `namespace`, killed on drop.
fn start_operator(cluster: &Cluster, namespace: &str) -> Child {
    Command::new(operator_bin())
        .args(["controller", "--namespace", namespace])
        .args(["--http-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("run chaincode-operator controller")
}

/// Starts the pass-through npm registry on the node IP and returns it with its URL.
async fn start_npm_proxy(host: &str) -> (Child, String) {
    let mut child = Command::new("node")
        .arg(support::e2e_dir("cluster/npm-proxy.js"))
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

/// Copies the contract chaincode's sources (not its node_modules) to `to`.
fn copy_contract_source(to: &Path) {
    let from = support::e2e_dir("chaincodes/contract");
    std::fs::create_dir_all(to).expect("create the source copy");
    for name in ["index.js", "package.json", "package-lock.json"] {
        std::fs::copy(from.join(name), to.join(name)).expect("copy a chaincode file");
    }
}

/// `dev --runtime kubernetes` in `dir` for `source`; returns once it printed `ready`.
struct Dev {
    child: Child,
    info: DevInfo,
    dir: PathBuf,
}

async fn start_dev(
    cluster: &Cluster,
    kit: &Kit,
    namespace: &str,
    endorser_id: &str,
    dir: &Path,
    source: &Path,
    extra: &[String],
) -> Dev {
    let mut child = Command::new(operator_bin())
        .arg("dev")
        .arg("--chaincode")
        .arg(source)
        .args(["--name", "basic", "--listen", "127.0.0.1:0"])
        // Pods reach the endorser's chaincode listener at the node IP.
        .args(["--chaincode-listen", &format!("{}:0", kit.node_ip)])
        .args(["--runtime", "kubernetes", "--kube-namespace", namespace])
        .args(["--endorser-id", endorser_id])
        .args(["--build-registry", &format!("{}/chaincode", kit.registry)])
        .args(["--builder-image", &kit.base_image()])
        .args(["--runtime-image", &kit.base_image()])
        .args(["--buildkit-image", &kit.buildkit_image])
        .args(["--fetcher-image", &kit.fetcher_image])
        .args(extra)
        .arg("--dir")
        .arg(dir)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run chaincode-operator dev");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(600), async {
        while let Some(line) = lines.next_line().await.expect("read dev output") {
            if line == "ready" {
                return true;
            }
            printed.push(line);
        }
        false
    })
    .await
    .expect("dev gets ready within 10 minutes");
    assert!(
        ready,
        "dev exited before it was ready; it printed {printed:?}"
    );
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let text = std::fs::read_to_string(dir.join("dev.json")).expect("dev.json written");
    let info: DevInfo = serde_json::from_str(&text).expect("dev.json parses");
    Dev {
        child,
        info,
        dir: dir.to_path_buf(),
    }
}

async fn interrupt(mut dev: Dev) {
    let pid = dev.child.id().expect("dev still running") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("send SIGINT");
    let status = tokio::time::timeout(Duration::from_secs(90), dev.child.wait())
        .await
        .expect("dev stops after SIGINT")
        .expect("wait for dev");
    assert!(status.success(), "dev exits 0 on SIGINT, got {status}");
}

/// Runs gateway.js; Ok(stdout JSON) or Err(stderr).
async fn gateway(dir: &Path, args: &[&str]) -> Result<Value, String> {
    let clients = support::installed_e2e_dir("clients");
    let output = Command::new("node")
        .arg(clients.join("gateway.js"))
        .arg(dir.join("dev.json"))
        .args(args)
        .current_dir(&clients)
        .output()
        .await
        .expect("run gateway.js");
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).expect("gateway.js prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn chaincodes(cluster: &Cluster, namespace: &str, endorser_id: &str) -> Vec<Value> {
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

fn condition<'a>(cc: &'a Value, kind: &str) -> Option<&'a Value> {
    cc["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// Polls `check` every half second until it is true or `timeout` passes.
async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

fn running_pods(cluster: &Cluster, namespace: &str) -> Vec<String> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_runtime_builds_runs_registers_relaunches_and_cleans_up() {
    let test = "kubernetes_runtime_builds_runs_registers_relaunches_and_cleans_up";
    let Some(cluster) = Cluster::from_env(test) else {
        return;
    };
    let Some(kit) = Kit::from(&cluster) else {
        eprintln!("skipped {test}: needs the kube kit's registry, BuildKit and node base images");
        return;
    };
    support::installed_e2e_dir("clients");
    let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/chaincode.yaml");
    cluster.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        crd.to_str().expect("utf-8 path"),
    ]);
    let ns = Namespace::create(&cluster, format!("ccend-{}", std::process::id()));
    let _operator = start_operator(&cluster, &ns.name);
    let (_proxy, npm_registry) = start_npm_proxy(&kit.node_ip).await;
    let registry_args = vec!["--node-registry".to_string(), npm_registry.clone()];
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("src");
    copy_contract_source(&source);

    // 1. Built from source in-cluster, run as a Pod, registered; the Gateway works through it.
    let started = Instant::now();
    let dev = start_dev(
        &cluster,
        &kit,
        &ns.name,
        "e2e",
        &work.path().join("dev"),
        &source,
        &registry_args,
    )
    .await;
    eprintln!(
        "dev --runtime kubernetes ready (build + launch) after {:?}",
        started.elapsed()
    );
    let seen = gateway(&dev.dir, &["run", "asset1"])
        .await
        .expect("gateway run");
    assert_eq!(seen["submitResult"], "ok", "{seen}");
    assert_eq!(seen["evaluated"], "v1", "{seen}");
    assert_eq!(seen["statuses"][1]["code"], "MVCC_READ_CONFLICT", "{seen}");
    assert_eq!(seen["event"]["eventName"], "created", "{seen}");
    let items = chaincodes(&cluster, &ns.name, "e2e");
    assert_eq!(items.len(), 1, "one Chaincode for one package: {items:?}");
    let cc = &items[0];
    let name = cc["metadata"]["name"].as_str().expect("name").to_string();
    assert_eq!(cc["spec"]["packageId"], dev.info.package_id.as_str());
    assert!(
        cc["status"]["imageDigest"]
            .as_str()
            .is_some_and(|image| image.starts_with(&format!("{}/chaincode@sha256:", kit.registry))),
        "the image was built and pushed to the kit's registry: {cc}"
    );
    let registered = condition(cc, "Registered").expect("Registered condition");
    assert_eq!(registered["status"], "True", "{cc}");
    assert_eq!(
        registered["observedGeneration"], cc["metadata"]["generation"],
        "Registered speaks for the current generation: {cc}"
    );
    assert_eq!(cc["status"]["phase"], "Ready", "{cc}");
    assert_eq!(condition(cc, "Ready").expect("Ready")["status"], "True");
    let built_image = cc["status"]["imageDigest"]
        .as_str()
        .expect("imageDigest")
        .to_string();
    let printed = cluster.kubectl_ok(&["get", "cc", "-n", &ns.name, &name]);
    assert!(
        printed.contains("Ready") && printed.contains("True"),
        "{printed}"
    );

    // 2. The Pod killed mid-run: the stream closes (Registered=False), the next invoke relaunches
    // as a new launch attempt and succeeds.
    let attempt = cc["spec"]["launchAttempt"].as_u64().expect("launchAttempt");
    cluster.kubectl_ok(&[
        "delete",
        "pods",
        "-n",
        &ns.name,
        "-l",
        &format!("fabric.chaincode.dev/chaincode={name}"),
        "--grace-period=0",
        "--force",
    ]);
    eventually(
        "Registered=False after the Pod was killed",
        Duration::from_secs(60),
        || {
            chaincodes(&cluster, &ns.name, "e2e")
                .first()
                .and_then(|cc| condition(cc, "Registered").cloned())
                .is_some_and(|c| c["status"] == "False" && c["reason"] == "StreamClosed")
        },
    )
    .await;
    let read = gateway(&dev.dir, &["read", "asset1"])
        .await
        .expect("read after relaunch");
    assert_eq!(
        read["value"], "first",
        "committed state is served by the relaunched Pod"
    );
    let cc = chaincodes(&cluster, &ns.name, "e2e").remove(0);
    assert!(
        cc["spec"]["launchAttempt"].as_u64() > Some(attempt),
        "the relaunch is a new launch attempt: {cc}"
    );
    assert_eq!(
        condition(&cc, "Registered").expect("Registered")["status"],
        "True"
    );

    // 3. Endorser shutdown: nothing it launched is left.
    interrupt(dev).await;
    eventually(
        "no Chaincode after the endorser stopped",
        Duration::from_secs(60),
        || chaincodes(&cluster, &ns.name, "e2e").is_empty(),
    )
    .await;
    eventually(
        "no chaincode Pod running after the endorser stopped",
        Duration::from_secs(90),
        || running_pods(&cluster, &ns.name).is_empty(),
    )
    .await;

    // 4. SIGKILLed endorser: the next start deletes the earlier run's Chaincodes (their client
    // certificates came from the dead process's CA) and launches afresh.
    let dev = start_dev(
        &cluster,
        &kit,
        &ns.name,
        "e2e",
        &work.path().join("dev"),
        &source,
        &registry_args,
    )
    .await;
    let before = chaincodes(&cluster, &ns.name, "e2e");
    assert_eq!(before.len(), 1);
    let old_uid = before[0]["metadata"]["uid"].clone();
    let mut dev_child = dev.child;
    dev_child.kill().await.expect("SIGKILL dev");
    let dev = start_dev(
        &cluster,
        &kit,
        &ns.name,
        "e2e",
        &work.path().join("dev"),
        &source,
        &registry_args,
    )
    .await;
    let after = chaincodes(&cluster, &ns.name, "e2e");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(
        after[0]["metadata"]["uid"], old_uid,
        "the orphan was replaced"
    );
    let read = gateway(&dev.dir, &["read", "asset1"])
        .await
        .expect("read after restart");
    assert_eq!(read["value"], "first");
    interrupt(dev).await;

    // 5. A build that fails: the client's error names the build failure, not a startup timeout.
    let broken = work.path().join("broken");
    copy_contract_source(&broken);
    let package_json = broken.join("package.json");
    let text = std::fs::read_to_string(&package_json).expect("package.json");
    std::fs::write(
        &package_json,
        text.replace(
            "\"fabric-shim\": \"2.5.8\"",
            "\"fabric-shim\": \"2.5.8\",\n    \"chaincode-operator-no-such-package\": \"9.9.9\"",
        ),
    )
    .expect("write package.json");
    std::fs::remove_file(broken.join("package-lock.json")).expect("drop the lock file");
    let mut extra = registry_args.clone();
    extra.extend(["--chaincode-startup-timeout".into(), "900".into()]);
    let dev = start_dev(
        &cluster,
        &kit,
        &ns.name,
        "broken",
        &work.path().join("broken-dev"),
        &broken,
        &extra,
    )
    .await;
    let error = gateway(&dev.dir, &["read", "k"])
        .await
        .expect_err("a chaincode whose build fails cannot answer");
    assert!(
        error.contains("BuildFailed"),
        "the error names the failed build: {error}"
    );
    assert!(!error.contains("startup timeout"), "{error}");
    interrupt(dev).await;

    // 6. An image that does not exist: the error names the pull failure.
    let missing = format!(
        "basic={}/chaincode/missing@sha256:{}",
        kit.registry,
        "0".repeat(64)
    );
    let mut extra = registry_args.clone();
    extra.extend([
        "--chaincode-image".into(),
        missing,
        "--chaincode-startup-timeout".into(),
        "900".into(),
    ]);
    let dev = start_dev(
        &cluster,
        &kit,
        &ns.name,
        "missing",
        &work.path().join("missing-dev"),
        &source,
        &extra,
    )
    .await;
    let error = gateway(&dev.dir, &["read", "k"])
        .await
        .expect_err("a chaincode whose image is missing cannot answer");
    assert!(
        error.contains("ImagePull"),
        "the error names the image pull: {error}"
    );
    interrupt(dev).await;

    // 7. A prebuilt image by digest (the one built above) in a namespace enforcing the restricted
    // Pod Security Standard: the chaincode Pod is admitted, registers and serves.
    let restricted =
        Namespace::create(&cluster, format!("ccend-restricted-{}", std::process::id()));
    cluster.kubectl_ok(&[
        "label",
        "namespace",
        &restricted.name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    ]);
    let _restricted_operator = start_operator(&cluster, &restricted.name);
    let mut extra = registry_args.clone();
    extra.extend(["--chaincode-image".into(), format!("basic={built_image}")]);
    let dev = start_dev(
        &cluster,
        &kit,
        &restricted.name,
        "prebuilt",
        &work.path().join("prebuilt-dev"),
        &source,
        &extra,
    )
    .await;
    let seen = gateway(&dev.dir, &["run", "asset7"])
        .await
        .expect("gateway run through the prebuilt image");
    assert_eq!(seen["evaluated"], "v1", "{seen}");
    let items = chaincodes(&cluster, &restricted.name, "prebuilt");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["spec"]["platform"], "image");
    assert_eq!(items[0]["status"]["imageDigest"], built_image.as_str());
    assert_eq!(items[0]["status"]["phase"], "Ready", "{}", items[0]);
    interrupt(dev).await;
}
