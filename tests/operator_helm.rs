//! The operator installed the way a cluster admin installs it: the CRD applied server-side, then the
//! Helm chart (Helm v4's own library through PyPI helm-python-sdk) running the operator in-cluster
//! from a locally built image under the chart's ServiceAccount and RBAC; a prebuilt Chaincode in
//! another namespace reaches Running; uninstall removes the operator. Skipped with a notice without
//! the kube kit, `ctr` (to load the image into the node's containerd) or helm-python-sdk.
mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::cluster::{Cluster, Namespace, eventually};

fn run(command: &mut Command) -> String {
    let output = command.output().expect("command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn helm_sdk_present() -> bool {
    Command::new("python3")
        .args(["-c", "import helm_python"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_an_operator_that_runs_chaincode_under_the_charts_rbac() {
    let test = "helm_installs_an_operator_that_runs_chaincode_under_the_charts_rbac";
    let Some(cluster) = Cluster::from_env(test) else {
        return;
    };
    let (Some(pause), true, true) = (
        cluster.setting("PAUSE_IMAGE").map(str::to_string),
        Command::new("ctr").arg("--version").output().is_ok(),
        helm_sdk_present(),
    ) else {
        eprintln!(
            "skipped {test}: needs the kube kit, ctr and python3 with helm-python-sdk \
             (`pip install helm-python-sdk`)"
        );
        return;
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let work = tempfile::tempdir().expect("tempdir");

    // The operator image, from the binary under test, loaded into the node's containerd.
    let name = "docker.io/library/chaincode-operator";
    let archive = work.path().join("operator.tar");
    let digest = run(Command::new("python3")
        .arg(format!("{root}/e2e/cluster/operator-image.py"))
        .arg(env!("CARGO_BIN_EXE_chaincode-operator"))
        .arg(&archive)
        .arg(format!("{name}:test")));
    let digest = digest.trim().to_string();
    run(Command::new("ctr")
        .args(["-n", "k8s.io", "images", "import"])
        .arg(&archive));
    run(Command::new("ctr").args([
        "-n",
        "k8s.io",
        "images",
        "tag",
        "--force",
        &format!("{name}:test"),
        &format!("{name}@{digest}"),
    ]));

    // Install as the README shows: CRD server-side, then the chart.
    cluster.apply_crd();
    let release = format!("ccop-{}", std::process::id());
    let system = Namespace::create(&cluster, release.clone());
    let values = json!({
        "image": {"repository": name, "digest": digest},
        "logJson": false,
        "endorser": {"rbac": {"enabled": true}},
    });
    let helm = |args: &[&str]| {
        run(Command::new("python3")
            .arg(format!("{root}/e2e/cluster/helm.py"))
            .args(args))
    };
    let kubeconfig = cluster.kubeconfig.to_str().expect("utf-8 path").to_string();
    let chart = format!("{root}/charts/chaincode-operator");
    helm(&[
        "install",
        &kubeconfig,
        &release,
        &system.name,
        &chart,
        &values.to_string(),
    ]);
    let pods = cluster.kubectl_ok(&["-n", &system.name, "get", "pods", "-o", "json"]);
    let pods: Value = serde_json::from_str(&pods).expect("pods JSON");
    let pod = &pods["items"][0];
    assert_eq!(pod["status"]["phase"], "Running", "{pod}");
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        format!("{name}@{digest}").as_str()
    );

    // A prebuilt Chaincode elsewhere: the in-cluster operator, with only the chart's RBAC, runs it.
    let work_ns = Namespace::create(&cluster, format!("ccop-work-{}", std::process::id()));
    let (image_name, image_digest) = pause.split_once('@').expect("PAUSE_IMAGE by digest");
    let chaincode = json!({
        "apiVersion": "fabric.chaincode.dev/v1alpha1", "kind": "Chaincode",
        "metadata": {"name": "helm-sample", "namespace": work_ns.name},
        "spec": {
            "packageId": format!("sample_1.0:{}", "1".repeat(64)),
            "platform": "image",
            "image": {"name": image_name, "digest": image_digest},
            "peer": {"address": "peer0.example:7052", "mspId": "Org1MSP"},
        }
    });
    let manifest = work.path().join("chaincode.json");
    std::fs::write(&manifest, chaincode.to_string()).expect("write the Chaincode");
    cluster.kubectl_ok(&["apply", "-f", manifest.to_str().expect("utf-8 path")]);
    eventually("the Chaincode runs", Duration::from_secs(120), || {
        cluster
            .kubectl()
            .args(["-n", &work_ns.name, "get", "cc", "helm-sample"])
            .args(["-o", "jsonpath={.status.phase}"])
            .output()
            .is_ok_and(|o| o.stdout == b"Running")
    })
    .await;

    // Uninstall removes the operator and its cluster-wide RBAC.
    helm(&["uninstall", &kubeconfig, &release, &system.name]);
    let left = cluster
        .kubectl()
        .args(["get", "clusterrole", &release])
        .output()
        .expect("kubectl runs");
    assert!(
        !left.status.success(),
        "the ClusterRole is gone after uninstall"
    );
}
