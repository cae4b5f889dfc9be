//! Cluster end-to-end test of the operator: runs e2e/kind/run.sh against a real cluster (the kube
//! kit in CI, or kind/k3d through CHAINCODE_E2E_KUBECONFIG). Skipped with a notice without one.
mod support;

use std::process::Command;

use support::cluster::Cluster;

#[test]
fn operator_runs_a_prebuilt_chaincode_on_a_real_cluster() {
    let Some(cluster) = Cluster::from_env("operator_runs_a_prebuilt_chaincode_on_a_real_cluster")
    else {
        return;
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let mut command = Command::new("bash");
    command
        .arg(format!("{root}/e2e/kind/run.sh"))
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("PATH", cluster.path_env())
        .env("OPERATOR_BIN", env!("CARGO_BIN_EXE_chaincode-operator"));
    // The kit has no internet: its locally built pause image stands in for a prebuilt chaincode.
    if let (Some(image), None) = (
        cluster.setting("PAUSE_IMAGE"),
        std::env::var_os("CHAINCODE_E2E_IMAGE"),
    ) {
        command.env("CHAINCODE_E2E_IMAGE", image);
    }
    let status = command.status().expect("bash runs e2e/kind/run.sh");
    assert!(status.success(), "e2e/kind/run.sh failed: {status}");
}
