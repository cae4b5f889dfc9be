//! How a Node chaincode is built and started locally, following Fabric's Node platform: build with
//! the package's `build.sh` or `npm install --production`; start with the package's `start.sh` or
//! `npm start -- --peer.address HOST:PORT`. Pure: it plans commands, the process runtime runs them.
//!
//! The builders module will provide these steps for every platform; this file is the stand-in until
//! then, so it stays small and self-contained.
use std::path::Path;

/// User-facing Node build options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeOptions {
    /// Custom npm registry URL (Fabric's NODE_REGISTRY).
    pub registry: Option<String>,
}

/// One command to run inside the build directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandPlan {
    pub program: String,
    pub args: Vec<String>,
    /// Extra environment for this command (on top of what the runtime passes).
    pub env: Vec<(String, String)>,
}

/// npm settings that keep npm from phoning home on every build and start; they change no result.
fn quiet_npm_env() -> Vec<(String, String)> {
    vec![
        ("NPM_CONFIG_UPDATE_NOTIFIER".into(), "false".into()),
        ("NPM_CONFIG_FUND".into(), "false".into()),
        ("NPM_CONFIG_AUDIT".into(), "false".into()),
    ]
}

/// The build step for the sources in `dir`.
pub fn build_plan(dir: &Path, options: &NodeOptions) -> CommandPlan {
    let mut env = quiet_npm_env();
    if let Some(registry) = &options.registry {
        // Also reaches npm calls made from a package's own build.sh.
        env.push(("NPM_CONFIG_REGISTRY".into(), registry.clone()));
    }
    if dir.join("build.sh").is_file() {
        CommandPlan {
            program: "/bin/sh".into(),
            args: vec!["build.sh".into()],
            env,
        }
    } else {
        let mut args = vec!["install".to_string(), "--production".into()];
        if let Some(registry) = &options.registry {
            args.extend(["--registry".into(), registry.clone()]);
        }
        CommandPlan {
            program: "npm".into(),
            args,
            env,
        }
    }
}

/// The start step for the built chaincode in `dir`, dialling `peer_address` (HOST:PORT).
pub fn start_plan(dir: &Path, peer_address: &str) -> CommandPlan {
    if dir.join("start.sh").is_file() {
        CommandPlan {
            program: "/bin/sh".into(),
            args: vec![
                "start.sh".into(),
                "--peer.address".into(),
                peer_address.into(),
            ],
            env: quiet_npm_env(),
        }
    } else {
        CommandPlan {
            program: "npm".into(),
            args: vec![
                "start".into(),
                "--".into(),
                "--peer.address".into(),
                peer_address.into(),
            ],
            env: quiet_npm_env(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npm_install_production_with_custom_registry() {
        let dir = tempfile::tempdir().unwrap();
        let plan = build_plan(
            dir.path(),
            &NodeOptions {
                registry: Some("https://npm.example.test/".into()),
            },
        );
        assert_eq!(plan.program, "npm");
        assert_eq!(
            plan.args,
            [
                "install",
                "--production",
                "--registry",
                "https://npm.example.test/"
            ]
        );
        assert!(plan.env.contains(&(
            "NPM_CONFIG_REGISTRY".into(),
            "https://npm.example.test/".into()
        )));
    }

    #[test]
    fn package_scripts_win_over_npm() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("build.sh"), "true").unwrap();
        std::fs::write(dir.path().join("start.sh"), "true").unwrap();
        assert_eq!(
            build_plan(dir.path(), &NodeOptions::default()).args,
            ["build.sh"]
        );
        assert_eq!(
            start_plan(dir.path(), "peer:7052").args,
            ["start.sh", "--peer.address", "peer:7052"]
        );
    }

    #[test]
    fn npm_start_passes_the_peer_address_after_double_dash() {
        let dir = tempfile::tempdir().unwrap();
        let plan = start_plan(dir.path(), "127.0.0.1:7052");
        assert_eq!(plan.program, "npm");
        assert_eq!(
            plan.args,
            ["start", "--", "--peer.address", "127.0.0.1:7052"]
        );
        let build = build_plan(dir.path(), &NodeOptions::default());
        assert_eq!(build.args, ["install", "--production"]);
        assert!(!build.env.iter().any(|(k, _)| k == "NPM_CONFIG_REGISTRY"));
    }
}
