//! The stock Fabric v2.5.10 kit (`network.sh`, see /work/shared/fabric/README.md): where to find
//! it, and a network driven through it that is wiped when dropped.
use std::path::{Path, PathBuf};

/// The kit's directory: `$FABRIC_KIT`, `../shared/fabric` beside the repository, or
/// `/work/shared/fabric`, whichever first holds a `network.sh`.
pub fn kit() -> Option<PathBuf> {
    [
        std::env::var("FABRIC_KIT").ok().map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fabric")),
        Some("/work/shared/fabric".into()),
    ]
    .into_iter()
    .flatten()
    .find(|dir| dir.join("network.sh").is_file())
}

/// A stock peer and orderer driven by the kit's `network.sh` with state in `lab`;
/// `network.sh down --wipe` when dropped.
pub struct FabricNetwork {
    pub script: PathBuf,
    pub lab: PathBuf,
    pub env: Vec<(String, String)>,
}

impl FabricNetwork {
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new("bash");
        command
            .arg(&self.script)
            .args(args)
            .env("FABRIC_LAB", &self.lab)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs `network.sh ARGS`; panics with its output and the peer log's last lines if it fails.
    pub fn run(&self, args: &[&str]) {
        let output = self.command(args).output().expect("network.sh runs");
        if !output.status.success() {
            let log = std::fs::read_to_string(self.lab.join("peer.log")).unwrap_or_default();
            // The builder's own lines (run's output is in the peer's log), then the last lines.
            let ours: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("chaincode-operator") || l.contains("chaincode_operator"))
                .take(40)
                .collect();
            eprintln!("builder lines in peer.log:\n{}", ours.join("\n"));
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!(
                "network.sh {args:?} failed: {}\n{}\npeer.log (last lines, newest first):\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                tail.join("\n")
            );
        }
    }

    /// The variables `$FABRIC_LAB/network.env` sets (after `up`).
    pub fn network_env(&self) -> std::collections::HashMap<String, String> {
        let script = format!(
            "source '{}' >/dev/null && env -0",
            self.lab.join("network.env").display()
        );
        let output = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .expect("bash runs");
        assert!(output.status.success(), "sourcing network.env: {output:?}");
        output
            .stdout
            .split(|b| *b == 0)
            .filter_map(|entry| {
                let entry = String::from_utf8_lossy(entry);
                let (k, v) = entry.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect()
    }
}

impl Drop for FabricNetwork {
    fn drop(&mut self) {
        let _ = self.command(&["down", "--wipe"]).output();
    }
}
