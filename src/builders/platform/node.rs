//! Node.js chaincode: sources under `src/`, a package.json with a start script (or start.sh),
//! built with the package's build.sh or `npm install --production` (optionally from a custom
//! registry), started with `npm start -- --peer.address ADDR` (or `sh start.sh --peer.address ADDR`).
use super::{
    BuildDirs, BuildOptions, BuildScript, LaunchSpec, Platform, PlatformError, RunPlan, invalid,
    join_dir, step,
};
use crate::builders::package::ChaincodePackage;

pub struct Node;

const NAME: &str = "node";

/// What the node sources provide, read from the package.
struct NodeSources {
    has_build_sh: bool,
    has_start_sh: bool,
}

fn inspect(package: &ChaincodePackage) -> Result<NodeSources, PlatformError> {
    let code = &package.code;
    let has_start_sh = code.file("src/start.sh").is_some();
    let has_build_sh = code.file("src/build.sh").is_some();
    let Some(manifest) = code.file("src/package.json") else {
        return Err(invalid(
            NAME,
            "package.json not found in src/ (the package root of a node chaincode)",
        ));
    };
    let manifest: serde_json::Value = serde_json::from_slice(manifest)
        .map_err(|err| invalid(NAME, format!("package.json is not valid JSON: {err}")))?;
    if !manifest.is_object() {
        return Err(invalid(NAME, "package.json is not a JSON object"));
    }
    let start = manifest
        .get("scripts")
        .and_then(|scripts| scripts.get("start"))
        .and_then(|start| start.as_str())
        .filter(|start| !start.trim().is_empty());
    if start.is_none() && !has_start_sh {
        return Err(invalid(
            NAME,
            "package.json has no start script (add \"scripts\": {\"start\": \"fabric-chaincode-node start\"}) and there is no start.sh",
        ));
    }
    Ok(NodeSources {
        has_build_sh,
        has_start_sh,
    })
}

impl Platform for Node {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, package: &ChaincodePackage) -> Result<(), PlatformError> {
        inspect(package).map(|_| ())
    }

    fn default_images(&self) -> Option<(&'static str, &'static str)> {
        Some((
            "hyperledger/fabric-nodeenv:2.5",
            "hyperledger/fabric-nodeenv:2.5",
        ))
    }

    fn build_script(
        &self,
        package: &ChaincodePackage,
        dirs: &BuildDirs,
        options: &BuildOptions,
    ) -> Result<BuildScript, PlatformError> {
        let sources = inspect(package)?;
        let src = join_dir(&dirs.source, "src");
        let out = dirs.output.as_str();
        let mut steps = vec![step("cp", &["-R", &format!("{src}/."), out], &dirs.source)];
        if sources.has_build_sh {
            let mut build = step("sh", &["build.sh"], out);
            if let Some(registry) = &options.npm_registry {
                build
                    .env
                    .insert("NPM_CONFIG_REGISTRY".to_string(), registry.clone());
            }
            steps.push(build);
        } else {
            let mut args = vec!["install", "--production"];
            if let Some(registry) = &options.npm_registry {
                args.extend(["--registry", registry.as_str()]);
            }
            steps.push(step("npm", &args, out));
        }
        Ok(BuildScript {
            files: vec![],
            steps,
        })
    }

    fn run_plan(
        &self,
        package: &ChaincodePackage,
        launch: &LaunchSpec,
        install_dir: &str,
    ) -> Result<RunPlan, PlatformError> {
        let sources = inspect(package)?;
        let address = launch.peer_address.clone();
        let command = if sources.has_start_sh {
            vec![
                "sh".into(),
                "start.sh".into(),
                "--peer.address".into(),
                address,
            ]
        } else {
            vec![
                "npm".into(),
                "start".into(),
                "--".into(),
                "--peer.address".into(),
                address,
            ]
        };
        Ok(RunPlan::new(command, install_dir, launch))
    }
}
