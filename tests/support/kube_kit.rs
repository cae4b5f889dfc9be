//! Which real cluster a test uses: `CHAINCODE_E2E_KUBECONFIG` (kind, k3d, any cluster) or the kube
//! kit that `$KUBE_LAB/cluster.env` describes, if it is still running. The file stays behind when
//! a cluster is stopped or the machine restarts; without the check a test on a laptop would fail
//! against a dead API server instead of skipping.

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cluster to test against: its kubeconfig and the kit's `KEY=VALUE` settings (images by
/// digest, registry, node IP, kubectl; empty for a cluster named by `CHAINCODE_E2E_KUBECONFIG`
/// alone).
pub struct KitCluster {
    pub kubeconfig: PathBuf,
    pub settings: BTreeMap<String, String>,
}

/// The configured cluster, or why the calling test skips.
pub fn find_cluster() -> Result<KitCluster, String> {
    let lab = std::env::var("KUBE_LAB").unwrap_or_else(|_| "/tmp/kube".into());
    let env_file = Path::new(&lab).join("cluster.env");
    let settings = std::fs::read_to_string(&env_file)
        .map(|text| parse_settings(&text))
        .unwrap_or_default();
    let explicit = std::env::var("CHAINCODE_E2E_KUBECONFIG").ok();
    if explicit.is_none()
        && let Some(why) = stale_kit(settings.get("APISERVER").map(String::as_str))
    {
        return Err(why);
    }
    let kubeconfig = explicit
        .or_else(|| settings.get("KUBECONFIG").cloned())
        .map(PathBuf::from)
        .filter(|path| path.is_file())
        .ok_or_else(|| {
            format!(
                "no cluster: set CHAINCODE_E2E_KUBECONFIG to a kind/k3d kubeconfig, or start \
                 ../shared/kube so {} names one",
                env_file.display()
            )
        })?;
    Ok(KitCluster {
        kubeconfig,
        settings,
    })
}

fn parse_settings(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

/// Why the kit's API server at `apiserver` (`https://host:port`) cannot be used, or None when it
/// accepts connections. CI (`CI` set) starts the kit itself, so there the test goes on and fails
/// loudly rather than skip.
fn stale_kit(apiserver: Option<&str>) -> Option<String> {
    if std::env::var_os("CI").is_some() {
        return None;
    }
    let url = apiserver?;
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let answers = authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    (!answers).then(|| {
        format!(
            "the kube kit's cluster.env names the API server {url}, which does not answer (a \
             stopped cluster?); start ../shared/kube/up.sh"
        )
    })
}
