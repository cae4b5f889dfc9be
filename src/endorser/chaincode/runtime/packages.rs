//! Fabric lifecycle packages for the process runtime: a `node` package is read with the builders'
//! hostile-input checks, validated by the node platform, and unpacked once per package id into the
//! runtime's work directory, where the process runtime builds and starts it like a source directory.
use std::path::{Path, PathBuf};

use crate::builders::{
    Limits, PackageError, PackageId,
    platform::{PlatformError, platform_of},
    read_package,
};

use super::PackageInstaller;
use super::process::ProcessRuntime;

/// Marks a completely unpacked package and lists what it marks (the package id, then each file's
/// size and path): an interrupted unpack, or a tree a crash left with empty files, is redone.
const UNPACKED: &str = ".unpacked";

fn manifest(package_id: &str, dir: &Path) -> std::io::Result<String> {
    let mut text = format!("{package_id}\n");
    for (path, size) in crate::durable::file_sizes(dir)? {
        if path != UNPACKED {
            text.push_str(&format!("{size} {path}\n"));
        }
    }
    Ok(text)
}

/// Whether `dir` holds the complete unpack its marker describes.
fn unpacked_intact(package_id: &str, dir: &Path) -> bool {
    let Ok(marker) = std::fs::read_to_string(dir.join(UNPACKED)) else {
        return false;
    };
    manifest(package_id, dir).is_ok_and(|now| now == marker)
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("reading the package: {0}")]
    Package(#[from] PackageError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("package {package_id} is of type {kind}: the process runtime runs node chaincode only")]
    UnsupportedType { package_id: String, kind: String },
    #[error("package {package_id} cannot run on {runtime}: {message}")]
    Runtime {
        package_id: String,
        runtime: &'static str,
        message: String,
    },
    #[error("package {package_id} has no src/ directory in code.tar.gz")]
    NoSource { package_id: String },
    #[error("unpacking package {package_id} into {dir}: {source}")]
    Io {
        package_id: String,
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Reads `package_bytes`, unpacks its sources under `work_dir/packages/` and registers them with
/// `runtime` under the package id (`label:sha256`), which it returns.
pub fn install_package(
    runtime: &ProcessRuntime,
    work_dir: &Path,
    package_bytes: &[u8],
    limits: &Limits,
) -> Result<PackageId, InstallError> {
    let package = read_package(package_bytes, limits)?;
    let package_id = package.id.to_string();
    if package.metadata.kind != "node" {
        return Err(InstallError::UnsupportedType {
            package_id,
            kind: package.metadata.kind.clone(),
        });
    }
    platform_of(&package)?.validate(&package)?;

    // The hash part of the id names the directory: same id, same bytes, so an unpack is reusable.
    let dir = work_dir.join("packages").join(&package.id.hash);
    let io = |source| InstallError::Io {
        package_id: package_id.clone(),
        dir: dir.clone(),
        source,
    };
    if !unpacked_intact(&package_id, &dir) {
        if dir.exists() {
            tracing::warn!(dir = %dir.display(), "unpacked package is incomplete; unpacking again");
            std::fs::remove_dir_all(&dir).map_err(io)?;
        }
        // Unpacked beside and published whole: after a crash `dir` is complete or absent.
        let partial = crate::durable::sibling(&dir, ".partial");
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io)?;
        }
        std::fs::create_dir_all(&partial).map_err(io)?;
        package.extract_code(&partial)?;
        let marker = manifest(&package_id, &partial).map_err(io)?;
        std::fs::write(partial.join(UNPACKED), marker).map_err(io)?;
        crate::durable::publish(&partial, &dir).map_err(io)?;
    }
    let source = dir.join("src");
    if !source.join("package.json").is_file() {
        return Err(InstallError::NoSource { package_id });
    }
    runtime.add_source(package_id, source);
    Ok(package.id)
}

impl PackageInstaller for ProcessRuntime {
    fn install(
        &self,
        work_dir: &Path,
        package_bytes: &[u8],
        limits: &Limits,
    ) -> Result<PackageId, InstallError> {
        install_package(self, work_dir, package_bytes, limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::package::package_source_dir;
    use crate::endorser::chaincode::runtime::process::ProcessRuntimeConfig;

    fn node_source(dir: &Path) {
        std::fs::write(
            dir.join("package.json"),
            r#"{"name":"cc","version":"1.0.0","scripts":{"start":"fabric-chaincode-node start"}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("index.js"), "module.exports = {};\n").unwrap();
    }

    #[test]
    fn node_packages_unpack_once_under_their_id() {
        let src = tempfile::tempdir().unwrap();
        node_source(src.path());
        let bytes =
            package_source_dir(src.path(), "node", "cc_1.0", None, &Limits::default()).unwrap();
        let work = tempfile::tempdir().unwrap();
        let runtime = ProcessRuntime::new(ProcessRuntimeConfig::new(work.path()));

        let id = install_package(&runtime, work.path(), &bytes, &Limits::default()).unwrap();
        assert_eq!(id, PackageId::new("cc_1.0", &bytes));
        let unpacked = work.path().join("packages").join(&id.hash).join("src");
        assert_eq!(
            std::fs::read_to_string(unpacked.join("index.js")).unwrap(),
            "module.exports = {};\n"
        );
        // A second install of the same bytes reuses the unpacked tree.
        let modified = |path: &Path| std::fs::metadata(path).unwrap().modified().unwrap();
        let first = modified(&unpacked.join("index.js"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        install_package(&runtime, work.path(), &bytes, &Limits::default()).unwrap();
        assert_eq!(
            modified(&unpacked.join("index.js")),
            first,
            "unpacked again"
        );
    }

    /// What a power cut leaves: the marker is there but a file came back empty. The tree is not
    /// trusted; it is unpacked again.
    #[test]
    fn an_unpack_with_an_empty_file_is_redone() {
        let src = tempfile::tempdir().unwrap();
        node_source(src.path());
        let bytes =
            package_source_dir(src.path(), "node", "cc_1.0", None, &Limits::default()).unwrap();
        let work = tempfile::tempdir().unwrap();
        let runtime = ProcessRuntime::new(ProcessRuntimeConfig::new(work.path()));
        let id = install_package(&runtime, work.path(), &bytes, &Limits::default()).unwrap();
        let unpacked = work.path().join("packages").join(&id.hash).join("src");
        std::fs::write(unpacked.join("package.json"), "").unwrap();

        install_package(&runtime, work.path(), &bytes, &Limits::default()).unwrap();
        let json = std::fs::read_to_string(unpacked.join("package.json")).unwrap();
        assert!(json.contains("fabric-chaincode-node"), "{json:?}");
        assert!(
            !work
                .path()
                .join("packages")
                .join(format!("{}.partial", id.hash))
                .exists()
        );
    }

    #[test]
    fn other_types_and_invalid_node_packages_are_refused() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(
            src.path().join("go.mod"),
            "module example.com/cc\n\ngo 1.22\n",
        )
        .unwrap();
        std::fs::write(src.path().join("main.go"), "package main\nfunc main() {}\n").unwrap();
        let bytes =
            package_source_dir(src.path(), "golang", "gocc", None, &Limits::default()).unwrap();
        let work = tempfile::tempdir().unwrap();
        let runtime = ProcessRuntime::new(ProcessRuntimeConfig::new(work.path()));
        let err = install_package(&runtime, work.path(), &bytes, &Limits::default()).unwrap_err();
        assert!(matches!(err, InstallError::UnsupportedType { ref kind, .. } if kind == "golang"));

        let bad = tempfile::tempdir().unwrap();
        std::fs::write(bad.path().join("package.json"), r#"{"name":"cc"}"#).unwrap();
        // Packaging does not judge the code; installing does, before anything is unpacked.
        let bytes =
            package_source_dir(bad.path(), "node", "bad", None, &Limits::default()).unwrap();
        let err = install_package(&runtime, work.path(), &bytes, &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("start"), "{err}");
        assert!(!work.path().join("packages").exists());
    }
}
