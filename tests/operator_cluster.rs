//! The operator on a real cluster (the kube kit's, or any in `CHAINCODE_E2E_KUBECONFIG`): the built
//! binary runs with a ServiceAccount token bound to a ClusterRole made from `rbac::CLUSTER_PERMISSIONS`,
//! so missing permissions fail here, not only in production. Scenarios run in parallel, each in its own
//! namespace `op-<name>-<pid>` that is deleted at the end. Without a cluster the test prints why
//! (`skipped operator_on_a_real_cluster: ...`) and passes.
mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chaincode_operator::operator::rbac::{CLUSTER_PERMISSIONS, LEASE_PERMISSIONS};
use serde_json::{Value, json};
use support::cluster::Cluster;

/// The ClusterRole the chart renders, made from the same table.
fn cluster_role(name: &str) -> Value {
    let rules: Vec<Value> = CLUSTER_PERMISSIONS
        .iter()
        .map(|p| json!({"apiGroups": [p.group], "resources": [p.resource], "verbs": p.verbs}))
        .collect();
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": {"name": name}, "rules": rules})
}

/// One scenario's namespace, ServiceAccount, token kubeconfig and operator process; all removed on drop.
struct Scenario<'a> {
    cluster: &'a Cluster,
    ns: String,
    dir: PathBuf,
    operator: Option<Child>,
    /// The operator's /healthz, /readyz, /metrics port.
    http_port: u16,
}

impl<'a> Scenario<'a> {
    fn new(cluster: &'a Cluster, name: &str, labels: &[(&str, &str)]) -> Self {
        let ns = format!("op-{name}-{}", std::process::id());
        let labels: BTreeMap<_, _> = labels.iter().copied().collect();
        cluster.kubectl_ok_with(
            &["apply", "-f", "-"],
            Some(
                &json!({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": ns, "labels": labels}})
                .to_string(),
            ),
        );
        let dir = std::env::temp_dir().join(&ns);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let http_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        Scenario {
            cluster,
            ns,
            dir,
            operator: None,
            http_port,
        }
    }

    /// Starts the operator as a ServiceAccount bound (in this namespace) to `role`.
    fn start_operator(&mut self, role: &str) {
        self.prepare_operator(role);
        self.spawn_operator(&[]);
    }

    /// The ServiceAccount, its binding to `role` and a token kubeconfig (needs the API server).
    fn prepare_operator(&mut self, role: &str) {
        let ns = self.ns.as_str();
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "chaincode-operator", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "chaincode-operator", "namespace": ns}]});
        self.cluster
            .kubectl_ok(&["-n", ns, "create", "serviceaccount", "chaincode-operator"]);
        self.cluster
            .kubectl_ok_with(&["apply", "-f", "-"], Some(&binding.to_string()));
        support::cluster::write_token_kubeconfig(
            self.cluster,
            ns,
            "chaincode-operator",
            &self.dir.join("kubeconfig"),
        );
    }

    /// Runs the operator with the prepared kubeconfig (needs no API server to start).
    fn spawn_operator(&mut self, extra: &[&str]) {
        let ns = self.ns.as_str();
        let path = self.dir.join("kubeconfig");
        let log = std::fs::File::create(self.dir.join("operator.log")).expect("log file");
        let http_addr = format!("127.0.0.1:{}", self.http_port);
        let child = Command::new(env!("CARGO_BIN_EXE_chaincode-operator"))
            .args(["controller", "--namespace", ns, "--http-addr", &http_addr])
            .args(extra)
            .env("KUBECONFIG", &path)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("operator starts");
        self.operator = Some(child);
    }

    /// The HTTP status of the operator's /readyz (None while it does not answer).
    fn readyz(&self) -> Option<u16> {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.split_whitespace().nth(1)?.parse().ok()
    }

    fn wait_readyz(&self, code: u16, timeout: Duration) -> Duration {
        let start = Instant::now();
        while self.readyz() != Some(code) {
            assert!(
                start.elapsed() < timeout,
                "{}: /readyz not {code} within {timeout:?} (now {:?})",
                self.ns,
                self.readyz()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        start.elapsed()
    }

    fn apply(&self, chaincode: &Value) -> (bool, String) {
        let (ok, out, err) = self.cluster.kubectl_run(
            &["-n", &self.ns, "apply", "-f", "-"],
            Some(&chaincode.to_string()),
        );
        (ok, format!("{out}{err}"))
    }

    fn get(&self, name: &str) -> Value {
        let (ok, out, _) = self.cluster.kubectl_run(
            &["-n", &self.ns, "get", "chaincode", name, "-o", "json"],
            None,
        );
        if ok {
            serde_json::from_str(&out).unwrap_or(Value::Null)
        } else {
            Value::Null
        }
    }

    /// Polls the Chaincode until `done` holds; panics with its status and the operator log otherwise.
    fn wait_for(&self, name: &str, timeout: Duration, what: &str, done: impl Fn(&Value) -> bool) {
        let start = Instant::now();
        loop {
            let cc = self.get(name);
            if done(&cc) {
                eprintln!(
                    "{}: {what} after {:.1} s",
                    self.ns,
                    start.elapsed().as_secs_f64()
                );
                for c in cc["status"]["conditions"].as_array().into_iter().flatten() {
                    let message: String = c["message"]
                        .as_str()
                        .unwrap_or_default()
                        .chars()
                        .take(240)
                        .collect();
                    eprintln!("  {}={} {}: {message}", c["type"], c["status"], c["reason"]);
                }
                return;
            }
            if start.elapsed() > timeout {
                let log =
                    std::fs::read_to_string(self.dir.join("operator.log")).unwrap_or_default();
                let (_, events, _) = self
                    .cluster
                    .kubectl_run(&["-n", &self.ns, "get", "events,pods,jobs"], None);
                panic!(
                    "{}: no {what} within {timeout:?}\nstatus: {}\n{events}\noperator log:\n{log}",
                    self.ns, cc["status"]
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Scenario<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.operator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self
            .cluster
            .kubectl_run(&["delete", "namespace", &self.ns, "--wait=false"], None);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn condition<'a>(cc: &'a Value, type_: &str) -> &'a Value {
    cc["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn chaincode(name: &str, image: &str) -> Value {
    let (repo, digest) = image.split_once('@').expect("image by digest");
    json!({"apiVersion": "fabric.chaincode.dev/v1alpha1", "kind": "Chaincode",
        "metadata": {"name": name},
        "spec": {"packageId": format!("{name}_1.0:{}", "a".repeat(64)), "platform": "image",
                 "image": {"name": repo, "digest": digest},
                 "peer": {"address": "10.254.254.1:7052", "mspId": "Org1MSP"},
                 "startupTimeoutSeconds": 600}})
}

fn source_chaincode(cluster: &Cluster, name: &str) -> Value {
    let registry = cluster.setting("REGISTRY").unwrap_or("10.254.254.1:5000");
    let mut build = json!({"registry": format!("{registry}/op-test/{name}")});
    if let Some(image) = cluster.image("FETCHER_IMAGE") {
        build["fetcherImage"] = json!(image);
    }
    if let Some(image) = cluster.image("BUILDKIT_IMAGE") {
        build["buildkitImage"] = json!(image);
    }
    json!({"apiVersion": "fabric.chaincode.dev/v1alpha1", "kind": "Chaincode",
        "metadata": {"name": name},
        "spec": {"packageId": format!("{name}_1.0:{}", "b".repeat(64)), "platform": "node",
                 "source": {"contentDigest": format!("sha256:{}", "c".repeat(64)),
                            "configMap": {"name": "no-such-context", "key": "context.tar.gz"}},
                 "build": build,
                 "peer": {"address": "10.254.254.1:7052", "mspId": "Org1MSP"}}})
}

type Check = Box<dyn FnOnce(&Cluster, &str) + Send>;

#[test]
fn operator_on_a_real_cluster() {
    let Some(cluster) = Cluster::from_env("operator_on_a_real_cluster") else {
        return;
    };
    let started = Instant::now();
    // The CRD this tree generates (with its CEL rules), applied the way the docs show.
    let crd = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/chaincode.yaml"))
        .expect("crds/chaincode.yaml");
    cluster.kubectl_ok_with(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=chaincode-operator-tests",
            "-f",
            "-",
        ],
        Some(&crd),
    );
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/chaincodes.fabric.chaincode.dev",
        "--timeout=60s",
    ]);
    let role = format!("op-chaincode-operator-{}", std::process::id());
    cluster.kubectl_ok_with(
        &["apply", "-f", "-"],
        Some(&cluster_role(&role).to_string()),
    );

    let mut checks: Vec<(&str, Check)> = vec![
        (
            "invalid specs are refused",
            Box::new(invalid_specs_are_refused),
        ),
        ("prebuilt runs", Box::new(prebuilt_image_runs)),
        ("missing image", Box::new(missing_image_is_explained)),
        ("exit 0", Box::new(exit_without_message_is_explained)),
        ("pod security", Box::new(pod_security_blocks_the_build)),
        (
            "missing context",
            Box::new(missing_build_context_is_explained),
        ),
        (
            "watch failure",
            Box::new(readyz_follows_the_chaincode_watch),
        ),
        ("unschedulable", Box::new(unschedulable_pod_is_explained)),
        (
            "external builder run",
            Box::new(external_builder_run_launches_and_cleans_up),
        ),
    ];
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = checks
            .drain(..)
            .map(|(name, check)| {
                let cluster = &cluster;
                let role = role.as_str();
                (name, scope.spawn(move || check(cluster, role)))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|(name, h)| h.join().err().map(|_| name.to_string()))
            .collect()
    });
    // Alone, after the others: it takes the API server away from everyone.
    let mut failures = failures;
    let restart = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        api_server_restart_is_survived(&cluster, &role)
    }));
    if restart.is_err() {
        failures.push("api server restart".into());
    }
    // Also the watch scenario's role, even when it panicked before deleting it.
    let no_watch = format!("{role}-nowatch");
    let _ = cluster.kubectl_run(
        &[
            "delete",
            "clusterrole",
            &role,
            &no_watch,
            "--ignore-not-found",
        ],
        None,
    );
    eprintln!(
        "cluster scenarios took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "failed scenarios: {failures:?}");
}

/// Specs that used to fail silently forever are refused by the API server with the rule's message.
fn invalid_specs_are_refused(cluster: &Cluster, _role: &str) {
    let s = Scenario::new(cluster, "invalid", &[]);
    let image = format!("docker.io/library/x@sha256:{}", "d".repeat(64));
    let base = chaincode("valid", &image);
    let (ok, out) = s.apply(&base);
    assert!(ok, "a valid Chaincode is accepted: {out}");

    let mut long = base.clone();
    long["metadata"]["name"] = json!("a".repeat(64));
    let mut attempt = base.clone();
    attempt["metadata"]["name"] = json!("attempt");
    attempt["spec"]["launchAttempt"] = json!(4_294_967_296_u64);
    let mut address = base.clone();
    address["metadata"]["name"] = json!("address");
    address["spec"]["peer"]["address"] = json!("");
    let mut msp = base.clone();
    msp["metadata"]["name"] = json!("msp");
    msp["spec"]["peer"]["mspId"] = json!("");
    let mut both = base.clone();
    both["metadata"]["name"] = json!("both");
    both["spec"]["source"] = json!({"contentDigest": format!("sha256:{}", "c".repeat(64)),
                                    "configMap": {"name": "ctx", "key": "context.tar.gz"}});
    for (cc, expected) in [
        (long, "at most 63 characters"),
        (attempt, "spec.launchAttempt"),
        (address, "spec.peer.address"),
        (msp, "spec.peer.mspId"),
        (both, "not both"),
    ] {
        let (ok, out) = s.apply(&cc);
        assert!(!ok, "{} was accepted: {out}", cc["metadata"]["name"]);
        assert!(out.contains(expected), "message lacks {expected:?}: {out}");
    }
}

fn prebuilt_image_runs(cluster: &Cluster, role: &str) {
    let Some(image) = cluster.image("PAUSE_IMAGE") else {
        eprintln!("prebuilt: skipped (no PAUSE_IMAGE in cluster.env)");
        return;
    };
    let mut s = Scenario::new(
        cluster,
        "prebuilt",
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    );
    s.start_operator(role);
    let (ok, out) = s.apply(&chaincode("prebuilt", &image));
    assert!(ok, "{out}");
    s.wait_for("prebuilt", Duration::from_secs(60), "Launched=True", |cc| {
        condition(cc, "Launched")["status"] == "True" && cc["status"]["phase"] == "Running"
    });
}

fn missing_image_is_explained(cluster: &Cluster, role: &str) {
    let registry = cluster.setting("REGISTRY").unwrap_or("10.254.254.1:5000");
    let mut s = Scenario::new(cluster, "pull", &[]);
    s.start_operator(role);
    let image = format!("{registry}/op-test/missing@sha256:{}", "0".repeat(64));
    let (ok, out) = s.apply(&chaincode("missing", &image));
    assert!(ok, "{out}");
    s.wait_for(
        "missing",
        Duration::from_secs(30),
        "Launched=False ImagePullFailed",
        |cc| {
            let launched = condition(cc, "Launched");
            let message = launched["message"].as_str().unwrap_or_default();
            launched["status"] == "False"
                && launched["reason"] == "ImagePullFailed"
                && (message.contains("ErrImagePull") || message.contains("ImagePullBackOff"))
        },
    );
}

/// busybox's `sh` with no stdin exits 0 at once, writing nothing: the condition must still say so,
/// from the pods/log API (a 403 there would read "log unavailable").
fn exit_without_message_is_explained(cluster: &Cluster, role: &str) {
    let Some(image) = cluster.image("BUSYBOX_IMAGE") else {
        eprintln!("exit 0: skipped (no BUSYBOX_IMAGE in cluster.env)");
        return;
    };
    let mut s = Scenario::new(cluster, "exit", &[]);
    s.start_operator(role);
    let (ok, out) = s.apply(&chaincode("exits", &image));
    assert!(ok, "{out}");
    s.wait_for(
        "exits",
        Duration::from_secs(30),
        "PodFailed with log",
        |cc| {
            let launched = condition(cc, "Launched");
            let message = launched["message"].as_str().unwrap_or_default();
            launched["reason"] == "PodFailed"
                && message.contains("exit code 0")
                && (message.contains("log tail:") || message.contains("wrote no log"))
        },
    );
}

fn pod_security_blocks_the_build(cluster: &Cluster, role: &str) {
    let mut s = Scenario::new(
        cluster,
        "psa",
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    );
    s.start_operator(role);
    let (ok, out) = s.apply(&source_chaincode(cluster, "restricted"));
    assert!(ok, "{out}");
    s.wait_for(
        "restricted",
        Duration::from_secs(30),
        "Built=False PodSecurityForbidsBuild",
        |cc| {
            let built = condition(cc, "Built");
            built["reason"] == "PodSecurityForbidsBuild"
                && built["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Unconfined")
        },
    );
}

fn missing_build_context_is_explained(cluster: &Cluster, role: &str) {
    let mut s = Scenario::new(
        cluster,
        "context",
        &[("pod-security.kubernetes.io/enforce", "privileged")],
    );
    s.start_operator(role);
    let (ok, out) = s.apply(&source_chaincode(cluster, "no-context"));
    assert!(ok, "{out}");
    s.wait_for(
        "no-context",
        Duration::from_secs(45),
        "Built=False FailedMount",
        |cc| {
            let built = condition(cc, "Built");
            built["status"] == "False"
                && built["reason"] == "FailedMount"
                && built["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("no-such-context")
        },
    );
}

/// Without `watch` on chaincodes the operator starts (list works) but its Chaincode watch fails on a
/// real API server: /readyz must say not ready. Once `watch` is granted the watch recovers on its own
/// backoff and a Chaincode is reconciled; /readyz turns ready at the first event (or once no error
/// came for `WATCH_ERROR_WINDOW`).
fn readyz_follows_the_chaincode_watch(cluster: &Cluster, role: &str) {
    let Some(image) = cluster.image("PAUSE_IMAGE") else {
        eprintln!("watch failure: skipped (no PAUSE_IMAGE in cluster.env)");
        return;
    };
    let mut s = Scenario::new(cluster, "watch", &[]);
    let no_watch = format!("{role}-nowatch");
    let mut rules = cluster_role(&no_watch);
    for rule in rules["rules"].as_array_mut().expect("rules") {
        if rule["resources"][0] == "chaincodes" {
            rule["verbs"] = json!(["list"]);
        }
    }
    cluster.kubectl_ok_with(&["apply", "-f", "-"], Some(&rules.to_string()));
    s.start_operator(&no_watch);
    let failing = s.wait_readyz(503, Duration::from_secs(30));
    eprintln!(
        "{}: /readyz 503 while the watch is forbidden, after {:.1} s",
        s.ns,
        failing.as_secs_f64()
    );

    // Grant watch: a second binding to the full role.
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "chaincode-operator-watch", "namespace": s.ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "chaincode-operator", "namespace": s.ns}]});
    cluster.kubectl_ok_with(&["apply", "-f", "-"], Some(&binding.to_string()));
    let granted = Instant::now();
    let (ok, out) = s.apply(&chaincode("after-recovery", &image));
    assert!(ok, "{out}");
    s.wait_for(
        "after-recovery",
        Duration::from_secs(30),
        "Launched=True after recovery",
        |cc| condition(cc, "Launched")["status"] == "True",
    );
    s.wait_readyz(200, Duration::from_secs(10));
    eprintln!(
        "{}: reconciled and /readyz 200 {:.1} s after watch was granted",
        s.ns,
        granted.elapsed().as_secs_f64()
    );
}

/// A nodeSelector no node matches: the scheduler's reason, not "pending", within seconds.
fn unschedulable_pod_is_explained(cluster: &Cluster, role: &str) {
    let Some(image) = cluster.image("PAUSE_IMAGE") else {
        eprintln!("unschedulable: skipped (no PAUSE_IMAGE in cluster.env)");
        return;
    };
    let mut s = Scenario::new(cluster, "sched", &[]);
    s.start_operator(role);
    let mut cc = chaincode("nowhere", &image);
    cc["spec"]["pod"] = json!({"nodeSelector": {"op-test/pool": "nowhere"}});
    let (ok, out) = s.apply(&cc);
    assert!(ok, "{out}");
    s.wait_for(
        "nowhere",
        Duration::from_secs(30),
        "Launched=False Unschedulable",
        |cc| {
            let launched = condition(cc, "Launched");
            launched["status"] == "False"
                && launched["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Unschedulable")
        },
    );
}

/// The kit's kube-apiserver process, restarted as its `up.sh` started it (same command line, log
/// and pid file), so the rest of the kit keeps managing it.
struct ApiServer {
    pid_file: PathBuf,
    log: PathBuf,
    cwd: PathBuf,
    argv: Vec<String>,
}

impl ApiServer {
    /// None unless the cluster is the kube kit's and this process may signal its API server.
    fn of_kit() -> Option<ApiServer> {
        let lab = PathBuf::from(std::env::var("KUBE_LAB").unwrap_or_else(|_| "/tmp/kube".into()));
        let pid_file = lab.join("run/kube-apiserver.pid");
        let pid = std::fs::read_to_string(&pid_file).ok()?.trim().to_string();
        let proc = Path::new("/proc").join(&pid);
        let argv: Vec<String> = std::fs::read(proc.join("cmdline"))
            .ok()?
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !argv.first()?.ends_with("kube-apiserver") {
            return None;
        }
        Some(ApiServer {
            pid_file,
            log: lab.join("logs/kube-apiserver.log"),
            // The kit passes absolute paths; a directory that is gone since (the checkout the
            // kit was started from, deleted) is replaced by the root.
            cwd: std::fs::read_link(proc.join("cwd"))
                .ok()
                .filter(|dir| dir.is_dir())
                .unwrap_or_else(|| PathBuf::from("/")),
            argv,
        })
    }

    fn pid(&self) -> Option<String> {
        let pid = std::fs::read_to_string(&self.pid_file).ok()?;
        Some(pid.trim().to_string())
    }

    fn alive(pid: &str) -> bool {
        Path::new("/proc").join(pid).join("cmdline").exists()
    }

    /// SIGTERM, then SIGKILL after 15 s (it drains watches first, as `down.sh` expects). The
    /// outage ends when the guard is dropped, also when the test panics meanwhile.
    fn stop(&self) -> Outage<'_> {
        let outage = Outage {
            apiserver: self,
            over: false,
        };
        let Some(pid) = self.pid() else {
            return outage;
        };
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        while Self::alive(&pid) && start.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if Self::alive(&pid) {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            std::thread::sleep(Duration::from_millis(500));
        }
        outage
    }

    /// Starts it again, detached (its own session, reparented to init, so it outlives this test
    /// and leaves no zombie), and records its pid.
    fn start(&self) {
        let out = Command::new("sh")
            .arg("-c")
            .arg(r#"log=$1; shift; setsid "$@" >>"$log" 2>&1 </dev/null & echo $!"#)
            .arg("sh")
            .arg(&self.log)
            .args(&self.argv)
            .current_dir(&self.cwd)
            .output()
            .expect("kube-apiserver starts again");
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && !pid.is_empty(),
            "starting kube-apiserver failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&self.pid_file, format!("{pid}\n")).expect("pid file");
    }
}

/// The API server is away until `end` (or drop, so a failing test leaves the cluster up).
struct Outage<'a> {
    apiserver: &'a ApiServer,
    over: bool,
}

impl Outage<'_> {
    /// Starts the API server again and waits for its /readyz; returns how long that took.
    fn end(&mut self, cluster: &Cluster) -> Duration {
        self.over = true;
        self.apiserver.start();
        let back = Instant::now();
        loop {
            let (ok, _, _) = cluster.kubectl_run(&["get", "--raw", "/readyz"], None);
            if ok {
                return back.elapsed();
            }
            assert!(
                back.elapsed() < Duration::from_secs(300),
                "the API server did not come back within 300 s (see {})",
                self.apiserver.log.display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        if !self.over {
            self.apiserver.start();
        }
    }
}

/// The API server restarts. An operator that was running (leader-elected, with a lease shorter
/// than the outage, so it loses leadership meanwhile) and one started while the API server is away
/// both reconcile a new Chaincode within 10 s of the API server being ready again; /readyz says not
/// ready while the watch is failing.
fn api_server_restart_is_survived(cluster: &Cluster, role: &str) {
    let Some(image) = cluster.image("PAUSE_IMAGE") else {
        eprintln!("api server restart: skipped (no PAUSE_IMAGE in cluster.env)");
        return;
    };
    let Some(apiserver) = ApiServer::of_kit() else {
        eprintln!(
            "api server restart: skipped (not the kube kit's API server, or not ours to signal)"
        );
        return;
    };
    let mut running = Scenario::new(cluster, "restart", &[]);
    running.prepare_operator(role);
    let lease_ns = running.ns.clone();
    // The chart's lease Role, in the operator's own namespace.
    let rules: Vec<Value> = LEASE_PERMISSIONS
        .iter()
        .map(|p| json!({"apiGroups": [p.group], "resources": [p.resource], "verbs": p.verbs}))
        .collect();
    let lease_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "chaincode-operator-lease", "namespace": lease_ns}, "rules": rules});
    let lease_binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "chaincode-operator-lease", "namespace": lease_ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "chaincode-operator-lease"},
        "subjects": [{"kind": "ServiceAccount", "name": "chaincode-operator", "namespace": lease_ns}]});
    for object in [lease_role, lease_binding] {
        cluster.kubectl_ok_with(&["apply", "-f", "-"], Some(&object.to_string()));
    }
    running.spawn_operator(&[
        "--leader-elect",
        "--lease-seconds=4",
        "--lease-namespace",
        &lease_ns,
        "--identity=restart-test",
    ]);
    let (ok, out) = running.apply(&chaincode("before", &image));
    assert!(ok, "{out}");
    running.wait_for(
        "before",
        Duration::from_secs(60),
        "Launched=True before the restart",
        |cc| condition(cc, "Launched")["status"] == "True",
    );
    let mut late = Scenario::new(cluster, "late", &[]);
    late.prepare_operator(role);

    let down = Instant::now();
    let mut outage = apiserver.stop();
    late.spawn_operator(&[]);
    running.wait_readyz(503, Duration::from_secs(30));
    // Longer than the lease: the running operator loses leadership.
    std::thread::sleep(Duration::from_secs(5));
    let starting = outage.end(cluster);
    eprintln!(
        "api server away {:.1} s, of which {:.1} s starting",
        down.elapsed().as_secs_f64(),
        starting.as_secs_f64()
    );
    let ready = Instant::now();
    for s in [&running, &late] {
        let (ok, out) = s.apply(&chaincode("after", &image));
        assert!(ok, "{out}");
    }
    let log = std::fs::read_to_string(running.dir.join("operator.log")).unwrap_or_default();
    assert!(
        log.contains("lost leadership"),
        "the outage was meant to outlast the lease:\n{log}"
    );
    for s in [&mut running, &mut late] {
        let exited = s
            .operator
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        assert!(
            exited.is_none(),
            "{}: the operator exited: {exited:?}",
            s.ns
        );
        s.wait_for(
            "after",
            Duration::from_secs(10).saturating_sub(ready.elapsed()),
            "a new Chaincode reconciled after the restart",
            |cc| {
                cc["status"]["phase"]
                    .as_str()
                    .is_some_and(|p| !p.is_empty())
            },
        );
    }
    eprintln!(
        "both operators reconciled a new Chaincode {:.1} s after the API server was ready",
        ready.elapsed().as_secs_f64()
    );
    for s in [&running, &late] {
        s.wait_for(
            "after",
            Duration::from_secs(90),
            "Launched=True after the restart",
            |cc| condition(cc, "Launched")["status"] == "True",
        );
    }
}

/// A stock peer's external builder `run` (the built binary, as bin/run): from a build output with
/// a prebuilt image and the peer's chaincode.json, it applies the Chaincode, says when its Pod
/// runs, marks registration as not observable without its relay (`CHAINCODE_RELAY=off`:
/// `Registered=Unknown, StockPeer`, never True), and on
/// the peer's SIGTERM deletes the launch and exits 0. An image that cannot be pulled makes it
/// exit non-zero with the reason.
fn external_builder_run_launches_and_cleans_up(cluster: &Cluster, role: &str) {
    use std::io::BufRead;
    let Some(image) = cluster.image("PAUSE_IMAGE") else {
        eprintln!("external builder run: skipped (no PAUSE_IMAGE in cluster.env)");
        return;
    };
    let mut s = Scenario::new(cluster, "xbuilder", &[]);
    s.start_operator(role);
    let start_run = |image: &str, chaincode_id: &str| {
        let out = s.dir.join(format!("build-{chaincode_id}"));
        let meta = s.dir.join(format!("run-{chaincode_id}"));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            out.join("chaincode-operator.json"),
            json!({"type": "k8s", "label": "pause_1.0", "deploy": "image", "image": image})
                .to_string(),
        )
        .unwrap();
        std::fs::write(
            meta.join("chaincode.json"),
            json!({"chaincode_id": chaincode_id, "peer_address": "10.254.254.1:7052",
                   "client_cert": "", "client_key": "", "root_cert": "", "mspid": "Org1MSP"})
            .to_string(),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_chaincode-operator"))
            .args(["builder", "run"])
            .arg(&out)
            .arg(&meta)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("CHAINCODE_NAMESPACE", &s.ns)
            .env("CHAINCODE_ENDORSER_ID", "peer0")
            // Without the relay: the operator's side of an unobservable registration.
            .env("CHAINCODE_RELAY", "off")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("builder run starts")
    };
    let id = format!("pause_1.0:{}", "a".repeat(64));
    let mut run = start_run(&image, &id);
    let stderr = std::io::BufReader::new(run.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(90).saturating_sub(started.elapsed()))
            .expect("run says the chaincode is running");
        if line.contains("is running in Pod") {
            break;
        }
        assert!(!line.contains("did not start"), "{line}");
    }
    eprintln!(
        "{}: builder run saw its Pod running after {:.1} s",
        s.ns,
        started.elapsed().as_secs_f64()
    );
    let listed = s
        .cluster
        .kubectl_ok(&["-n", &s.ns, "get", "chaincodes", "-o", "json"]);
    let items: Value = serde_json::from_str(&listed).expect("chaincodes json");
    let name = items["items"][0]["metadata"]["name"]
        .as_str()
        .expect("one Chaincode")
        .to_string();
    s.wait_for(
        &name,
        Duration::from_secs(30),
        "Registered=Unknown StockPeer",
        |cc| {
            let registered = condition(cc, "Registered");
            registered["status"] == "Unknown" && registered["reason"] == "StockPeer"
        },
    );

    let _ = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "run did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "run exits 0 when the peer stops it: {status}"
    );
    let gone = Instant::now();
    while s.get(&name) != Value::Null {
        assert!(
            gone.elapsed() < Duration::from_secs(30),
            "the launch was not deleted"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // An image that is not there: run ends non-zero, saying why.
    let missing = format!(
        "{}/chaincode/missing@sha256:{}",
        cluster.setting("REGISTRY").unwrap_or_default(),
        "0".repeat(64)
    );
    let mut failing = start_run(&missing, &format!("pause_1.0:{}", "b".repeat(64)));
    let mut text = String::new();
    std::io::Read::read_to_string(failing.stderr.as_mut().unwrap(), &mut text).unwrap();
    let status = failing.wait().unwrap();
    assert!(!status.success());
    assert!(
        text.contains("did not start") && text.contains("ImagePull"),
        "{text}"
    );
}
