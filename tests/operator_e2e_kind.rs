//! Cluster end-to-end test: runs e2e/kind/run.sh against the cluster in CHAINCODE_E2E_KUBECONFIG
//! (kind, k3d, ...). Skipped (passes with a notice) when that variable is unset.
use std::process::Command;

#[test]
fn operator_runs_a_prebuilt_chaincode_on_a_real_cluster() {
    let Ok(kubeconfig) = std::env::var("CHAINCODE_E2E_KUBECONFIG") else {
        eprintln!(
            "skipped: set CHAINCODE_E2E_KUBECONFIG to a kind/k3d cluster's kubeconfig to run"
        );
        return;
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new("bash")
        .arg(format!("{root}/e2e/kind/run.sh"))
        .env("KUBECONFIG", kubeconfig)
        .env("OPERATOR_BIN", env!("CARGO_BIN_EXE_chaincode-operator"))
        .status()
        .expect("bash runs e2e/kind/run.sh");
    assert!(status.success(), "e2e/kind/run.sh failed: {status}");
}
