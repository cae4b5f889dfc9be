//! Whether the kube kit that `$KUBE_LAB/cluster.env` describes is still running. The file stays
//! behind when a cluster is stopped or the machine restarts; without this check a test on a
//! laptop would fail against a dead API server instead of skipping.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why the kit's API server at `apiserver` (`https://host:port`) cannot be used, or None when it
/// accepts connections. CI (`CI` set) starts the kit itself, so there the test goes on and fails
/// loudly rather than skip.
pub fn stale_kit(apiserver: Option<&str>) -> Option<String> {
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
