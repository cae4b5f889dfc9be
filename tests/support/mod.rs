//! Shared test helpers: installs an e2e directory's npm packages from its committed lockfile.
#![allow(dead_code)]
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Path of a directory under `e2e/`.
pub fn e2e_dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e").join(rel)
}

/// Runs `npm ci` in `dir` unless node_modules was installed from the same package-lock.json.
/// A file lock serializes parallel test binaries installing into the same directory.
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
