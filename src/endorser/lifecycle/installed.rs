//! Installed chaincode packages, kept durably: each package's bytes are stored as
//! `<dir>/<sha256>.tar.gz` (written to a temp file and renamed) after the process runtime accepted
//! it, and every stored package is registered with the runtime again when the store is opened.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use sha2::{Digest, Sha256};

use crate::builders::Limits;
use crate::endorser::chaincode::runtime::PackageInstaller;
use crate::endorser::chaincode::runtime::packages::InstallError;

/// An installed package: its id (`label:sha256`), label and stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPackage {
    pub package_id: String,
    pub label: String,
    pub file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum PackageStoreError {
    /// Fabric's answer to installing the same bytes twice.
    #[error("chaincode already successfully installed (package ID '{package_id}')")]
    AlreadyInstalled { package_id: String },
    #[error("could not build chaincode: {0}")]
    Install(#[from] InstallError),
    /// Fabric's `CodePackageNotFoundErr` text.
    #[error("chaincode install package '{0}' not found")]
    NotFound(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PackageStoreError {
    let path = path.to_path_buf();
    move |source| PackageStoreError::Io {
        action,
        path,
        source,
    }
}

/// The packages installed on this endorser.
pub struct PackageStore {
    dir: PathBuf,
    work_dir: PathBuf,
    runtime: Arc<dyn PackageInstaller>,
    limits: Limits,
    /// package id → package, for every package stored and registered.
    installed: RwLock<BTreeMap<String, InstalledPackage>>,
    /// One install at a time, so the same bytes sent twice at once are installed once.
    installing: Mutex<()>,
}

impl std::fmt::Debug for PackageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackageStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl PackageStore {
    /// Opens the store in `dir` and registers every stored package with `runtime` (unpacked
    /// under `work_dir`). A stored file that no longer reads as a package is reported and left
    /// in place, untouched, rather than stopping the endorser.
    pub fn open(
        dir: &Path,
        runtime: Arc<dyn PackageInstaller>,
        work_dir: &Path,
        limits: Limits,
    ) -> Result<Self, PackageStoreError> {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let store = Self {
            dir: dir.to_path_buf(),
            work_dir: work_dir.to_path_buf(),
            runtime,
            limits,
            installed: RwLock::default(),
            installing: Mutex::new(()),
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io("listing", dir))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.to_string_lossy().ends_with(".tar.gz"))
            .collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).map_err(io("reading", &file))?;
            match store
                .runtime
                .install(&store.work_dir, &bytes, &store.limits)
            {
                Ok(id) => {
                    let package = InstalledPackage {
                        package_id: id.to_string(),
                        label: id.label.clone(),
                        file,
                    };
                    store.write().insert(package.package_id.clone(), package);
                }
                Err(error) => {
                    tracing::warn!(file = %file.display(), %error, "stored chaincode package skipped");
                }
            }
        }
        Ok(store)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, InstalledPackage>> {
        self.installed
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, InstalledPackage>> {
        self.installed
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checks, unpacks and registers `bytes` with the runtime, then stores them. Installing the
    /// same bytes again is refused with Fabric's "already successfully installed" error.
    pub fn install(&self, bytes: &[u8]) -> Result<InstalledPackage, PackageStoreError> {
        let _one_at_a_time = self
            .installing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let hash = hex::encode(Sha256::digest(bytes));
        if let Some(existing) = self.read().values().find(|p| p.file_name_hash() == hash) {
            return Err(PackageStoreError::AlreadyInstalled {
                package_id: existing.package_id.clone(),
            });
        }
        let id = self.runtime.install(&self.work_dir, bytes, &self.limits)?;
        let file = self.dir.join(format!("{}.tar.gz", id.hash));
        crate::durable::write_atomically(&file, bytes, None).map_err(io("storing", &file))?;
        let package = InstalledPackage {
            package_id: id.to_string(),
            label: id.label,
            file,
        };
        self.write()
            .insert(package.package_id.clone(), package.clone());
        Ok(package)
    }

    /// Every installed package, by package id.
    pub fn list(&self) -> Vec<InstalledPackage> {
        self.read().values().cloned().collect()
    }

    pub fn get(&self, package_id: &str) -> Result<InstalledPackage, PackageStoreError> {
        self.read()
            .get(package_id)
            .cloned()
            .ok_or_else(|| PackageStoreError::NotFound(package_id.to_string()))
    }

    /// The package file as it was installed.
    pub fn bytes(&self, package_id: &str) -> Result<Vec<u8>, PackageStoreError> {
        let package = self.get(package_id)?;
        std::fs::read(&package.file).map_err(io("reading", &package.file))
    }
}

impl InstalledPackage {
    fn file_name_hash(&self) -> &str {
        self.package_id
            .rsplit_once(':')
            .map_or(self.package_id.as_str(), |(_, hash)| hash)
    }
}
