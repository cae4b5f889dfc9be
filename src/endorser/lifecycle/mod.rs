//! Fabric 2.x chaincode lifecycle for a single endorser: installed packages (`installed`),
//! chaincode definitions per channel (`definitions`), the init-exactly-once rule (`init`) and the
//! `_lifecycle` system chaincode that serves them to Fabric clients (`scc`).
//!
//! [`Lifecycle`] is what the node wires in: open it on a data directory, give its
//! [`Lifecycle::definitions`] to the `LaunchingResolver`, and put it into the `EndorserContext` so
//! proposals to `_lifecycle` reach it. The same in-process calls (`install`, `approve`, `commit`)
//! serve the CLI. With one endorser there is no ordering service: an approval or a commit takes
//! effect when its admin-signed proposal is endorsed.
pub mod collections;
pub mod definitions;
pub mod init;
pub mod installed;
pub mod scc;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::builders::Limits;
use crate::endorser::chaincode::runtime::PackageInstaller;

pub use definitions::{ChaincodeDefinition, DefinitionError, Definitions};
pub use init::{INITIALIZED_KEY, InvocationError, check_invocation};
pub use installed::{InstalledPackage, PackageStore, PackageStoreError};
pub use scc::{Caller, LIFECYCLE_NAME, SYSCC_VERSION};

/// Definitions file under the data directory.
const DEFINITIONS_FILE: &str = "definitions.json";
/// Directory of installed package files under the data directory.
const PACKAGES_DIR: &str = "installed";

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Package(#[from] PackageStoreError),
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// A `_lifecycle` argument that does not decode.
    #[error("{0}")]
    Arguments(String),
}

/// Installed packages and chaincode definitions of this endorser's org.
#[derive(Debug)]
pub struct Lifecycle {
    packages: PackageStore,
    definitions: Arc<Definitions>,
    mspid: String,
}

impl Lifecycle {
    /// Opens (or creates) the lifecycle state in `data_dir`: `installed/<sha256>.tar.gz` per
    /// package, registered again with `runtime` (unpacked under `work_dir`), and
    /// `definitions.json`. `mspid` is this endorser's org, whose admins may install and approve.
    pub fn open(
        data_dir: &Path,
        runtime: Arc<dyn PackageInstaller>,
        work_dir: &Path,
        mspid: &str,
    ) -> Result<Self, LifecycleError> {
        let packages = PackageStore::open(
            &data_dir.join(PACKAGES_DIR),
            runtime,
            work_dir,
            Limits::default(),
        )?;
        let definitions = Arc::new(Definitions::open(&data_dir.join(DEFINITIONS_FILE))?);
        Ok(Self {
            packages,
            definitions,
            mspid: mspid.to_string(),
        })
    }

    /// The definitions the `LaunchingResolver` resolves chaincode names through.
    pub fn definitions(&self) -> Arc<Definitions> {
        self.definitions.clone()
    }

    /// This endorser's org.
    pub fn mspid(&self) -> &str {
        &self.mspid
    }

    pub fn packages(&self) -> &PackageStore {
        &self.packages
    }

    /// Installs a Fabric chaincode package; the id is `label:sha256(bytes)`.
    pub fn install(&self, package: &[u8]) -> Result<InstalledPackage, LifecycleError> {
        Ok(self.packages.install(package)?)
    }

    /// Records this org's approval of `definition` (with its package id) on `channel`.
    pub fn approve(
        &self,
        channel: &str,
        definition: ChaincodeDefinition,
    ) -> Result<(), LifecycleError> {
        Ok(self.definitions.approve(channel, definition)?)
    }

    /// Which orgs approved `definition` as the next definition on `channel`.
    pub fn check_commit_readiness(
        &self,
        channel: &str,
        definition: &ChaincodeDefinition,
    ) -> Result<BTreeMap<String, bool>, LifecycleError> {
        Ok(self
            .definitions
            .check_commit_readiness(channel, definition, &self.mspid)?)
    }

    /// Commits `definition` on `channel`; this org must have approved the same parameters.
    pub fn commit(
        &self,
        channel: &str,
        definition: &ChaincodeDefinition,
    ) -> Result<ChaincodeDefinition, LifecycleError> {
        Ok(self.definitions.commit(channel, definition, &self.mspid)?)
    }

    /// Approves and commits in one step: what a one-org channel's admin does with two
    /// proposals, for the CLI.
    pub fn approve_and_commit(
        &self,
        channel: &str,
        definition: ChaincodeDefinition,
    ) -> Result<ChaincodeDefinition, LifecycleError> {
        self.approve(channel, definition.clone())?;
        self.commit(channel, &definition)
    }
}
