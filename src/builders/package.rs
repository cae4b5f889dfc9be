//! Fabric 2.x lifecycle packages: reading (hostile input is normal input), package ids, writing
//! deterministic packages from source directories, and safe extraction.
//!
//! A package is a gzip'd tar holding `metadata.json` (`{"type","label","path"}`) and `code.tar.gz`.
//! Inside `code.tar.gz`, `peer lifecycle chaincode package` puts node and java sources under `src/`,
//! Go module sources under `src/` (GOPATH-style sources under `src/<path>/`), CouchDB indexes under
//! a top-level `META-INF/`, and the prebuilt-image (`k8s`) and `ccaas` types their JSON at the root.
use std::{fmt, path::Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    error::PackageError,
    limits::Limits,
    tree::{SourceEntry, SourceTree},
};

/// `metadata.json` of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageMetadata {
    /// Chaincode type as written by the packager (`golang`, `node`, `java`, `k8s`, `ccaas`).
    #[serde(rename = "type")]
    pub kind: String,
    pub label: String,
    /// Go: the import path of the main package. Empty for other types.
    #[serde(default)]
    pub path: String,
}

/// `label:hex(sha256(package file bytes))`, as Fabric computes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PackageId {
    pub label: String,
    /// Lower-case hex sha256 of the package file.
    pub hash: String,
}

impl PackageId {
    pub fn new(label: &str, package_bytes: &[u8]) -> Self {
        PackageId {
            label: label.to_string(),
            hash: hex::encode(Sha256::digest(package_bytes)),
        }
    }
}

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.label, self.hash)
    }
}

/// A package that passed every safety check: its id, metadata and code tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaincodePackage {
    pub id: PackageId,
    pub metadata: PackageMetadata,
    /// The contents of `code.tar.gz`, validated.
    pub code: SourceTree,
}

impl ChaincodePackage {
    /// Writes the code tree into `dir` (created if missing, must be empty); nothing lands outside.
    pub fn extract_code(&self, dir: &Path) -> Result<(), PackageError> {
        self.code.extract_into(dir)
    }
}

/// Fabric's label rule: `^[[:alnum:]][[:alnum:]_.+-]*$`.
pub fn validate_label(label: &str) -> Result<(), PackageError> {
    let mut chars = label.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c)) {
        Ok(())
    } else {
        Err(PackageError::Label(label.to_string()))
    }
}

fn parse_metadata(bytes: &[u8]) -> Result<PackageMetadata, PackageError> {
    let metadata: PackageMetadata =
        serde_json::from_slice(bytes).map_err(|err| PackageError::Metadata(err.to_string()))?;
    if metadata.kind.trim().is_empty() {
        return Err(PackageError::Metadata("\"type\" is empty".to_string()));
    }
    validate_label(&metadata.label)?;
    Ok(metadata)
}

/// Reads a package from its bytes, enforcing `limits` on both the outer archive and `code.tar.gz`.
pub fn read_package(bytes: &[u8], limits: &Limits) -> Result<ChaincodePackage, PackageError> {
    if bytes.len() as u64 > limits.max_package_bytes {
        return Err(PackageError::PackageTooLarge {
            size: bytes.len() as u64,
            limit: limits.max_package_bytes,
        });
    }
    let outer = SourceTree::from_tar_gz("package", bytes, limits)?;
    for (path, entry) in outer.entries() {
        let expected = matches!(path, "metadata.json" | "code.tar.gz");
        if !expected && !matches!(entry, SourceEntry::Dir) {
            return Err(PackageError::UnexpectedEntry {
                entry: path.to_string(),
            });
        }
    }
    let metadata = outer
        .file("metadata.json")
        .ok_or(PackageError::Missing("metadata.json"))?;
    let metadata = parse_metadata(metadata)?;
    let code = outer
        .file("code.tar.gz")
        .ok_or(PackageError::Missing("code.tar.gz"))?;
    let code = SourceTree::from_tar_gz("code.tar.gz", code, limits)?;
    Ok(ChaincodePackage {
        id: PackageId::new(&metadata.label, bytes),
        metadata,
        code,
    })
}

/// Reads a package file, refusing files over `limits.max_package_bytes` before reading them.
pub fn read_package_file(path: &Path, limits: &Limits) -> Result<ChaincodePackage, PackageError> {
    let io_err = |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io_err)?.len();
    if size > limits.max_package_bytes {
        return Err(PackageError::PackageTooLarge {
            size,
            limit: limits.max_package_bytes,
        });
    }
    let bytes = std::fs::read(path).map_err(io_err)?;
    read_package(&bytes, limits)
}

/// Writes a package (deterministically: same metadata and tree, same bytes) and returns its bytes.
pub fn write_package(
    metadata: &PackageMetadata,
    code: &SourceTree,
) -> Result<Vec<u8>, PackageError> {
    validate_label(&metadata.label)?;
    let metadata_json =
        serde_json::to_vec(metadata).map_err(|err| PackageError::Metadata(err.to_string()))?;
    let mut outer = SourceTree::new();
    outer.insert(
        "metadata.json".to_string(),
        SourceEntry::File {
            data: metadata_json,
            executable: false,
        },
    );
    outer.insert(
        "code.tar.gz".to_string(),
        SourceEntry::File {
            data: code.to_tar_gz(),
            executable: false,
        },
    );
    Ok(outer.to_tar_gz())
}

/// Chaincode types by the layout their sources take inside `code.tar.gz`.
fn normalized_kind(kind: &str) -> String {
    kind.trim().to_ascii_lowercase()
}

/// State of `chaincode-operator dev` (crypto, ledger), which may sit inside the source directory.
pub const DEV_STATE_DIR: &str = ".chaincode-dev";

/// Whether a source-directory entry is left out of a package: VCS data and `dev` state
/// everywhere, and for node `node_modules` (rebuilt by `npm install`, as Fabric's node packager
/// does).
pub fn excluded_from_package(kind: &str, path: &str) -> bool {
    path.split('/').any(|part| {
        part == ".git"
            || part == DEV_STATE_DIR
            || (normalized_kind(kind) == "node" && part == "node_modules")
    })
}

/// The Go module path declared by a `go.mod` file.
pub fn go_module_path(go_mod: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("module")?;
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        let path = rest.trim().trim_matches('"');
        (!path.is_empty()).then(|| path.to_string())
    })
}

/// Lays a source tree out as `peer lifecycle chaincode package` does and returns the code tree
/// with the metadata `path` to record. `go_path` is the import path of the Go main package
/// (defaults to the go.mod module path).
pub fn lay_out_code(
    kind: &str,
    source: &SourceTree,
    go_path: Option<&str>,
) -> Result<(SourceTree, String), PackageError> {
    let mut meta_inf = SourceTree::new();
    let mut rest = SourceTree::new();
    for (path, entry) in source.entries() {
        if path == "META-INF" || path.starts_with("META-INF/") {
            meta_inf.insert(path.to_string(), entry.clone());
        } else {
            rest.insert(path.to_string(), entry.clone());
        }
    }
    let (mut code, path) = match normalized_kind(kind).as_str() {
        "golang" | "go" => {
            let module = source
                .file("go.mod")
                .map(|bytes| go_module_path(&String::from_utf8_lossy(bytes)));
            match (module, go_path) {
                (Some(_), Some(path)) => (rest.nested_under("src"), path.to_string()),
                (Some(Some(module)), None) => (rest.nested_under("src"), module),
                (Some(None), None) => {
                    return Err(PackageError::Metadata(
                        "go.mod has no module line; give the main package's import path with --path"
                            .to_string(),
                    ));
                }
                (None, Some(path)) => {
                    let path = path.trim_matches('/').to_string();
                    (rest.nested_under(&format!("src/{path}")), path)
                }
                (None, None) => {
                    return Err(PackageError::Metadata(
                        "no go.mod in the source directory; give the import path with --path"
                            .to_string(),
                    ));
                }
            }
        }
        "node" | "java" => (rest.nested_under("src"), String::new()),
        _ => (rest, String::new()),
    };
    for (path, entry) in meta_inf.entries() {
        code.insert(path.to_string(), entry.clone());
    }
    Ok((code, path))
}

/// Packages a source directory the way `peer lifecycle chaincode package` lays it out; returns the
/// package bytes (deterministic for the same tree, label and type).
pub fn package_source_dir(
    dir: &Path,
    kind: &str,
    label: &str,
    go_path: Option<&str>,
    limits: &Limits,
) -> Result<Vec<u8>, PackageError> {
    validate_label(label)?;
    let source = SourceTree::from_dir(dir, limits, &|path| excluded_from_package(kind, path))?;
    let (code, path) = lay_out_code(kind, &source, go_path)?;
    write_package(
        &PackageMetadata {
            kind: normalized_kind(kind),
            label: label.to_string(),
            path,
        },
        &code,
    )
}

/// A chaincode-as-a-service package labelled `label` whose code.tar.gz holds `connection_json`
/// at its root (deterministic: the same label and bytes give the same package id).
pub fn ccaas_package(label: &str, connection_json: &[u8]) -> Result<Vec<u8>, PackageError> {
    let mut code = SourceTree::new();
    code.insert(
        "connection.json".into(),
        SourceEntry::File {
            data: connection_json.to_vec(),
            executable: false,
        },
    );
    write_package(
        &PackageMetadata {
            kind: "ccaas".into(),
            label: label.to_string(),
            path: String::new(),
        },
        &code,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str) -> SourceEntry {
        SourceEntry::File {
            data: data.as_bytes().to_vec(),
            executable: false,
        }
    }

    #[test]
    fn labels_follow_fabrics_rule() {
        assert!(validate_label("mycc_1.0+build-2").is_ok());
        assert!(validate_label("-mycc").is_err());
        assert!(validate_label("").is_err());
        assert!(validate_label("my cc").is_err());
        assert!(validate_label("a:b").is_err());
    }

    #[test]
    fn package_id_is_label_and_sha256_of_the_file() {
        let id = PackageId::new("cc", b"abc");
        assert_eq!(
            id.to_string(),
            "cc:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn module_path_comes_from_the_module_line() {
        assert_eq!(
            go_module_path("// c\nmodule github.com/x/cc\n\ngo 1.22\n"),
            Some("github.com/x/cc".to_string())
        );
        assert_eq!(go_module_path("modules x\n"), None);
    }

    #[test]
    fn node_sources_go_under_src_and_meta_inf_stays_on_top() {
        let mut source = SourceTree::new();
        source.insert("package.json".into(), file("{}"));
        source.insert("META-INF/statedb/couchdb/indexes/i.json".into(), file("{}"));
        let (code, path) = lay_out_code("node", &source, None).unwrap();
        let paths: Vec<&str> = code.entries().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            vec![
                "META-INF/statedb/couchdb/indexes/i.json",
                "src/package.json"
            ]
        );
        assert_eq!(path, "");
    }

    #[test]
    fn go_modules_go_under_src_with_the_module_path_and_gopath_sources_under_src_path() {
        let mut module = SourceTree::new();
        module.insert("go.mod".into(), file("module example.com/cc\n"));
        let (code, path) = lay_out_code("golang", &module, None).unwrap();
        assert!(code.file("src/go.mod").is_some());
        assert_eq!(path, "example.com/cc");

        let mut gopath = SourceTree::new();
        gopath.insert("main.go".into(), file("package main"));
        let (code, path) = lay_out_code("golang", &gopath, Some("example.com/old")).unwrap();
        assert!(code.file("src/example.com/old/main.go").is_some());
        assert_eq!(path, "example.com/old");
        assert!(lay_out_code("golang", &gopath, None).is_err());
    }

    #[test]
    fn node_modules_and_git_are_left_out() {
        assert!(excluded_from_package("node", "node_modules"));
        assert!(excluded_from_package("node", "lib/node_modules/x"));
        assert!(!excluded_from_package("golang", "node_modules"));
        assert!(excluded_from_package("java", ".git"));
    }
}
