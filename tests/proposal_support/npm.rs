//! Installs an e2e directory's npm packages from its committed package-lock.json (`npm ci`),
//! once per lockfile content, under a file lock so parallel test binaries don't race.
//! (main's tests/support/ has the same helper; this copy keeps the branch self-contained.)
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

pub fn e2e_dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e").join(rel)
}

#[allow(clippy::incompatible_msrv)] // File::lock is Rust 1.89; main's MSRV is 1.89 already.
pub fn npm_ci(dir: &Path) {
    let lock = File::create(dir.join(".npm-ci.lock")).expect("create npm lock file");
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
