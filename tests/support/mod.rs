//! Shared test helpers: installs an e2e directory's npm packages from its committed lockfile,
//! builds signed proposals, runs transactions (`tx`), wires a launching peer (`peer`) and finds
//! chaincode processes (`procs`).
#![allow(dead_code)]
pub mod cluster;
pub mod dev;
pub mod fabric;
pub mod kube_kit;
pub mod peer;
pub mod procs;
pub mod tx;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Path of a directory under `e2e/`.
pub fn e2e_dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e").join(rel)
}

/// The e2e directory `rel` with its npm packages installed.
pub fn installed_e2e_dir(rel: &str) -> PathBuf {
    let dir = e2e_dir(rel);
    npm_ci(&dir);
    dir
}

/// Runs `npm ci` in `dir` unless node_modules was installed from the same package-lock.json.
/// A file lock serializes parallel test binaries installing into the same directory.
/// Runs `node e2e/clients/SCRIPT ARGS...` (after `npm ci`), which prints one JSON report per line
/// with a `case` field, and returns the reports by case.
pub async fn client_reports(
    script: &str,
    args: &[&std::ffi::OsStr],
) -> std::collections::HashMap<String, serde_json::Value> {
    let dir = installed_e2e_dir("clients");
    let output = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run node {script}: {e}"));
    assert!(
        output.status.success(),
        "{script} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let report: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{script} printed {line:?}: {e}"));
            let case = report["case"].as_str().expect("a case name").to_string();
            (case, report)
        })
        .collect()
}

pub fn npm_ci(dir: &Path) {
    let lock_path = dir.join(".npm-ci.lock");
    let lock = File::create(&lock_path).expect("create npm lock file");
    lock.lock().expect("lock npm install");
    let lockfile = std::fs::read(dir.join("package-lock.json")).expect("read package-lock.json");
    let digest = hex::encode(Sha256::digest(&lockfile));
    let stamp = dir.join("node_modules").join(".installed-from");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(digest.as_str()) {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status()
        .expect("run npm ci (is npm installed?)");
    assert!(status.success(), "npm ci failed in {}", dir.display());
    std::fs::write(&stamp, digest).expect("write install stamp");
}

/// A client's SignedProposal as fabric-common builds it (creator Org1MSP with a self-signed X.509
/// certificate). The chaincode side never checks the signature, so it is left empty.
pub fn signed_proposal(
    channel: &str,
    txid: &str,
    args: &[&str],
) -> chaincode_operator::proto::protos::SignedProposal {
    use chaincode_operator::proto::common::{ChannelHeader, Header, SignatureHeader};
    use chaincode_operator::proto::msp::SerializedIdentity;
    use chaincode_operator::proto::protos::{
        ChaincodeInput, ChaincodeProposalPayload, Proposal, SignedProposal,
    };
    use prost::Message;
    static CERT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let cert = CERT.get_or_init(|| {
        rcgen::generate_simple_self_signed(vec!["user1.org1.example.com".to_string()])
            .expect("generate test certificate")
            .cert
            .pem()
    });
    let creator = SerializedIdentity {
        mspid: "Org1MSP".into(),
        id_bytes: cert.clone().into_bytes(),
    }
    .encode_to_vec();
    let header = Header {
        channel_header: ChannelHeader {
            r#type: 3,
            channel_id: channel.into(),
            tx_id: txid.into(),
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Default::default()
        }
        .encode_to_vec(),
        signature_header: SignatureHeader {
            creator,
            nonce: vec![7; 24],
        }
        .encode_to_vec(),
    };
    let payload = ChaincodeProposalPayload {
        input: ChaincodeInput {
            args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            ..Default::default()
        }
        .encode_to_vec(),
        transient_map: Default::default(),
    };
    SignedProposal {
        proposal_bytes: Proposal {
            header: header.encode_to_vec(),
            payload: payload.encode_to_vec(),
            extension: Vec::new(),
        }
        .encode_to_vec(),
        signature: Vec::new(),
    }
}

/// A Python 3.10+ virtual environment under the cargo target's temp dir with
/// `e2e/chaincodes/python/requirements.txt` (Hyperledger's fabric-chaincode-python, pinned)
/// installed from PyPI; reinstalled only when that file changes. None (with the reason) when no
/// usable `python3` is on PATH.
pub fn python_chaincode_env() -> Result<PathBuf, String> {
    let requirements = e2e_dir("chaincodes/python/requirements.txt");
    let version = Command::new("python3")
        .args([
            "-c",
            "import sys; print(sys.version_info >= (3, 10) and 'ok' or 'old')",
        ])
        .output()
        .map_err(|e| format!("no python3: {e}"))?;
    if String::from_utf8_lossy(&version.stdout).trim() != "ok" {
        return Err("python3 is older than 3.10 (fabric-chaincode-python needs 3.10+)".into());
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ccaas-python-venv");
    let lock = File::create(Path::new(env!("CARGO_TARGET_TMPDIR")).join(".ccaas-python.lock"))
        .expect("create the python lock file");
    lock.lock().expect("lock python install");
    let digest = hex::encode(Sha256::digest(
        std::fs::read(&requirements).expect("read requirements.txt"),
    ));
    let stamp = venv.join(".installed-from");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(digest.as_str()) {
        return Ok(venv.join("bin/python"));
    }
    let _ = std::fs::remove_dir_all(&venv);
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .map_err(|e| format!("python3 -m venv: {e}"))?;
    if !status.success() {
        return Err(format!("python3 -m venv failed: {status}"));
    }
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements)
        .status()
        .expect("run pip");
    assert!(
        status.success(),
        "pip install -r {} failed",
        requirements.display()
    );
    std::fs::write(&stamp, digest).expect("write install stamp");
    Ok(venv.join("bin/python"))
}
