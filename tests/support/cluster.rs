//! The real cluster a test runs on: `CHAINCODE_E2E_KUBECONFIG` (kind, k3d, any cluster) or the kube
//! kit's `$KUBE_LAB/cluster.env` (what CI starts). None means the test skips with a notice.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct Cluster {
    pub kubeconfig: PathBuf,
    /// `KEY=VALUE` settings of the kube kit (images by digest, registry, node IP); empty elsewhere.
    pub settings: HashMap<String, String>,
}

impl Cluster {
    /// The configured cluster, or None after printing why the calling test skips.
    pub fn from_env(test: &str) -> Option<Cluster> {
        let lab = std::env::var("KUBE_LAB").unwrap_or_else(|_| "/tmp/kube".into());
        let settings = std::fs::read_to_string(Path::new(&lab).join("cluster.env"))
            .map(|text| parse_env(&text))
            .unwrap_or_default();
        let kubeconfig = std::env::var("CHAINCODE_E2E_KUBECONFIG")
            .ok()
            .or_else(|| settings.get("KUBECONFIG").cloned())
            .map(PathBuf::from)
            .filter(|path| path.is_file());
        match kubeconfig {
            Some(kubeconfig) => Some(Cluster {
                kubeconfig,
                settings,
            }),
            None => {
                eprintln!(
                    "skipped {test}: no cluster (set CHAINCODE_E2E_KUBECONFIG to a kind/k3d \
                     kubeconfig, or start ../shared/kube so $KUBE_LAB/cluster.env exists)"
                );
                None
            }
        }
    }

    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(String::as_str)
    }

    /// Whether the cluster is the kube kit (its images and registry are there).
    pub fn is_kit(&self) -> bool {
        self.settings.contains_key("REGISTRY")
    }

    /// `kubectl` against this cluster (the kit's own kubectl when there is one).
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.setting("KUBECTL").unwrap_or("kubectl"));
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }

    /// Runs kubectl with `args`, returns stdout; panics with stderr on failure.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl().args(args).output().expect("kubectl runs");
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
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

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}
