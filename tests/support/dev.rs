//! `chaincode-operator dev` as a test drives it: the contract chaincode's sources, the command,
//! waiting for `ready`, SIGINT, and Hyperledger's fabric-gateway client (e2e/clients/gateway.js).
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chaincode_operator::endorser::node::dev::DevInfo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Copies the contract chaincode's sources (not its node_modules) to `to`.
pub fn copy_contract_source(to: &Path) {
    let from = super::e2e_dir("chaincodes/contract");
    std::fs::create_dir_all(to).expect("create the source copy");
    for name in ["index.js", "package.json", "package-lock.json"] {
        std::fs::copy(from.join(name), to.join(name)).expect("copy a chaincode file");
    }
}

/// A running `chaincode-operator dev`.
pub struct Dev {
    pub child: tokio::process::Child,
    pub info: DevInfo,
    pub dir: PathBuf,
    /// What it printed before `ready` (and the `ready — chaincode NOT running: …` line).
    pub printed: Vec<String>,
}

/// `chaincode-operator dev` for chaincode `basic` from `source`, state in `dir`, clients on a
/// loopback port chosen by the OS, then `args` (later flags win).
pub fn dev_command(dir: &Path, source: &Path, args: &[String]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaincode-operator"));
    command
        .arg("dev")
        .arg("--chaincode")
        .arg(source)
        .args(["--name", "basic", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Spawns a `dev` command and waits up to `ready_within` until it prints `ready`.
pub async fn spawn_dev(
    mut command: tokio::process::Command,
    dir: &Path,
    ready_within: Duration,
) -> Dev {
    let mut child = command.spawn().expect("run chaincode-operator dev");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    let ready = tokio::time::timeout(ready_within, async {
        while let Some(line) = lines.next_line().await.expect("read dev output") {
            if line == "ready" {
                return true;
            }
            // Serving, but the chaincode did not start: the caller sees why in `printed`.
            if line.starts_with("ready — chaincode NOT running") {
                printed.push(line);
                return true;
            }
            printed.push(line);
        }
        false
    })
    .await
    .unwrap_or_else(|_| panic!("dev gets ready within {ready_within:?}"));
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
        printed,
    }
}

pub async fn interrupt(mut dev: Dev) {
    let pid = dev.child.id().expect("dev still running") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("send SIGINT");
    let status = tokio::time::timeout(Duration::from_secs(60), dev.child.wait())
        .await
        .expect("dev stops after SIGINT")
        .expect("wait for dev");
    assert!(status.success(), "dev exits 0 on SIGINT, got {status}");
}

/// Runs gateway.js; Ok(stdout JSON) or Err(stderr).
pub async fn gateway(dir: &Path, args: &[&str]) -> Result<Value, String> {
    let clients = super::installed_e2e_dir("clients");
    let output = tokio::process::Command::new("node")
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

/// A loopback address nothing listens on (yet): a port the OS just handed out and took back.
pub fn free_loopback_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").to_string()
}

/// `chaincode-operator dev --ccaas ADDRESS` defining chaincode `name`, state in `dir`, clients on
/// a loopback port chosen by the OS, then `args`.
pub fn dev_ccaas_command(
    dir: &Path,
    address: &str,
    name: &str,
    args: &[&str],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaincode-operator"));
    command
        .arg("dev")
        .args([
            "--ccaas",
            address,
            "--name",
            name,
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--chaincode-listen", "127.0.0.1:0"])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The Node contract chaincode (e2e/chaincodes/contract) as a chaincode server:
/// `fabric-chaincode-node server --chaincode-address ADDRESS --chaincode-id ID` from Hyperledger's
/// fabric-shim, plus `args` (TLS options). Returns once it accepts connections.
pub async fn node_chaincode_server(
    address: &str,
    chaincode_id: &str,
    args: &[&str],
) -> tokio::process::Child {
    let dir = super::installed_e2e_dir("chaincodes/contract");
    let child = tokio::process::Command::new("node")
        .arg(dir.join("node_modules/.bin/fabric-chaincode-node"))
        .args(["server", "--chaincode-address", address])
        .args(["--chaincode-id", chaincode_id])
        .args(args)
        .current_dir(&dir)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start fabric-chaincode-node server");
    wait_listening(address).await;
    child
}

/// Waits (up to 30 s) until something accepts TCP connections at `address`.
pub async fn wait_listening(address: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(address).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listens at {address} after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGKILL to a child and reaps it.
pub async fn kill(child: &mut tokio::process::Child) {
    child.start_kill().expect("kill the child");
    child.wait().await.expect("reap the child");
}
