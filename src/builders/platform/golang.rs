//! Go chaincode. Layouts (as Fabric's golang platform): a module whose go.mod is at `src/go.mod`
//! with metadata `path` the import path of the main package, a module at `src/<path>/go.mod`, or a
//! GOPATH tree at `src/<path>`. Builds statically (`CGO_ENABLED=0`) with `-mod=vendor` when
//! `vendor/modules.txt` exists, else `-mod=readonly` (GOPROXY / GOSUMDB / GOFLAGS honoured);
//! starts with `chaincode -peer.address=ADDR`.
use super::{
    BuildDirs, BuildOptions, BuildScript, LaunchSpec, Platform, PlatformError, RunPlan, invalid,
    join_dir, step,
};
use crate::builders::package::{ChaincodePackage, go_module_path};

pub struct Golang;

const NAME: &str = "golang";

/// Where the Go sources are and how to build them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoLayout {
    /// Directory (in code.tar.gz) to run `go build` in.
    pub build_dir: String,
    /// Package argument to `go build`.
    pub package_arg: String,
    /// `Some(vendored)` for module builds, `None` for GOPATH builds.
    pub module_vendored: Option<bool>,
}

fn has_main_package(package: &ChaincodePackage, dir: &str) -> bool {
    package.code.children(dir).iter().any(|name| {
        name.ends_with(".go")
            && !name.ends_with("_test.go")
            && package.code.file(&join_dir(dir, name)).is_some_and(|data| {
                String::from_utf8_lossy(data)
                    .lines()
                    .any(|line| line.trim() == "package main")
            })
    })
}

fn vendored(package: &ChaincodePackage, module_dir: &str) -> Result<bool, PlatformError> {
    let vendor = join_dir(module_dir, "vendor");
    if !package.code.is_dir(&vendor) {
        return Ok(false);
    }
    if package
        .code
        .file(&join_dir(&vendor, "modules.txt"))
        .is_none()
    {
        return Err(invalid(
            NAME,
            format!("{vendor}/ has no modules.txt; run `go mod vendor` again before packaging"),
        ));
    }
    Ok(true)
}

/// Finds the module (or GOPATH) layout of a Go package.
pub fn layout(package: &ChaincodePackage) -> Result<GoLayout, PlatformError> {
    let path = package.metadata.path.trim_matches('/');
    if path.is_empty() {
        return Err(invalid(
            NAME,
            "metadata.json has no path; a Go package records the import path of its main package",
        ));
    }
    let nested = format!("src/{path}");
    let (build_dir, package_arg, main_dir, module_vendored) = if let Some(go_mod) =
        package.code.file("src/go.mod")
    {
        let module = go_module_path(&String::from_utf8_lossy(go_mod))
            .ok_or_else(|| invalid(NAME, "src/go.mod has no module line"))?;
        let rel = if path == module {
            ""
        } else if let Some(rel) = path.strip_prefix(&format!("{module}/")) {
            rel
        } else {
            return Err(invalid(
                NAME,
                format!("path {path} is not inside module {module} (src/go.mod)"),
            ));
        };
        let arg = if rel.is_empty() {
            ".".to_string()
        } else {
            format!("./{rel}")
        };
        let vendored = vendored(package, "src")?;
        ("src".to_string(), arg, join_dir("src", rel), Some(vendored))
    } else if package.code.file(&format!("{nested}/go.mod")).is_some() {
        let vendored = vendored(package, &nested)?;
        (nested.clone(), ".".to_string(), nested, Some(vendored))
    } else if package.code.is_dir(&nested) {
        (String::new(), path.to_string(), nested, None)
    } else {
        return Err(invalid(
            NAME,
            format!(
                "go.mod not found under src/ or src/{path}, and there are no sources at src/{path}"
            ),
        ));
    };
    if !has_main_package(package, &main_dir) {
        return Err(invalid(
            NAME,
            format!("no `package main` Go file in {main_dir} (the package at path {path})"),
        ));
    }
    Ok(GoLayout {
        build_dir,
        package_arg,
        module_vendored,
    })
}

impl Platform for Golang {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, package: &ChaincodePackage) -> Result<(), PlatformError> {
        layout(package).map(|_| ())
    }

    fn default_images(&self) -> Option<(&'static str, &'static str)> {
        Some((
            "hyperledger/fabric-ccenv:2.5",
            "hyperledger/fabric-baseos:2.5",
        ))
    }

    fn build_script(
        &self,
        package: &ChaincodePackage,
        dirs: &BuildDirs,
        options: &BuildOptions,
    ) -> Result<BuildScript, PlatformError> {
        let layout = layout(package)?;
        let output = format!("{}/chaincode", dirs.output.trim_end_matches('/'));
        let mut args = vec!["build".to_string(), "-trimpath".to_string()];
        match layout.module_vendored {
            Some(true) => args.push("-mod=vendor".to_string()),
            Some(false) => args.push("-mod=readonly".to_string()),
            None => {}
        }
        args.extend([
            "-ldflags=-s -w".to_string(),
            "-o".to_string(),
            output,
            layout.package_arg.clone(),
        ]);
        let mut build = step("go", &[], &join_dir(&dirs.source, &layout.build_dir));
        build.args = args;
        let mut set = |key: &str, value: &str| build.env.insert(key.to_string(), value.to_string());
        set("CGO_ENABLED", "0");
        match layout.module_vendored {
            Some(_) => set("GO111MODULE", "on"),
            None => {
                set("GO111MODULE", "off");
                set("GOPATH", &dirs.source)
            }
        };
        for (key, value) in [
            ("GOPROXY", &options.goproxy),
            ("GOSUMDB", &options.gosumdb),
            ("GOFLAGS", &options.goflags),
        ] {
            if let Some(value) = value {
                set(key, value);
            }
        }
        Ok(BuildScript {
            files: vec![],
            steps: vec![build],
        })
    }

    fn run_plan(
        &self,
        package: &ChaincodePackage,
        launch: &LaunchSpec,
        install_dir: &str,
    ) -> Result<RunPlan, PlatformError> {
        layout(package)?;
        let binary = format!("{}/chaincode", install_dir.trim_end_matches('/'));
        let command = vec![binary, format!("-peer.address={}", launch.peer_address)];
        Ok(RunPlan::new(command, install_dir, launch))
    }
}
