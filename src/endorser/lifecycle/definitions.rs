//! Chaincode definitions per channel: this org's approvals and the committed definitions, with
//! Fabric's sequence rules, kept durably in one JSON file replaced atomically (temp file, fsync,
//! rename) so a crash leaves either the old or the new state, never half of one.
//!
//! With a single endorser there is no ordering service: an approval or a commit takes effect when
//! it is accepted here. The package id is this org's choice (it comes with the approval), so the
//! committed definition carries the package id of the matching approval.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

/// Fabric's default endorsement plugin name.
pub const DEFAULT_ENDORSEMENT_PLUGIN: &str = "escc";
/// Fabric's default validation plugin name.
pub const DEFAULT_VALIDATION_PLUGIN: &str = "vscc";
/// The channel policy Fabric endorses against when a definition names none.
pub const DEFAULT_ENDORSEMENT_POLICY: &str = "/Channel/Application/Endorsement";
/// Names Fabric reserves for its system chaincodes.
const SYSTEM_CHAINCODE_NAMES: [&str; 6] = ["cscc", "escc", "lscc", "qscc", "vscc", "_lifecycle"];

/// One chaincode definition on a channel (Fabric's committed definition plus this org's package).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChaincodeDefinition {
    pub name: String,
    pub version: String,
    pub sequence: i64,
    /// The installed package this org runs for the definition (`label:sha256`); empty if none.
    pub package_id: String,
    pub init_required: bool,
    pub endorsement_plugin: String,
    pub validation_plugin: String,
    /// Encoded `protos.ApplicationPolicy`.
    pub validation_parameter: Vec<u8>,
    /// Encoded `protos.CollectionConfig` entries of the collection package.
    pub collections: Vec<Vec<u8>>,
}

impl ChaincodeDefinition {
    /// A definition with Fabric's defaults: plugins `escc`/`vscc`, the channel's Endorsement
    /// policy, no collections, no init required.
    pub fn new(name: &str, version: &str, sequence: i64, package_id: &str) -> Self {
        Self {
            name: name.to_string(),
            version: version.to_string(),
            sequence,
            package_id: package_id.to_string(),
            init_required: false,
            endorsement_plugin: String::new(),
            validation_plugin: String::new(),
            validation_parameter: Vec::new(),
            collections: Vec::new(),
        }
        .with_defaults()
    }

    /// Fills what the caller left empty the way Fabric's `SetChaincodeDefinitionDefaults` does.
    pub fn with_defaults(mut self) -> Self {
        if self.endorsement_plugin.is_empty() {
            self.endorsement_plugin = DEFAULT_ENDORSEMENT_PLUGIN.to_string();
        }
        if self.validation_plugin.is_empty() {
            self.validation_plugin = DEFAULT_VALIDATION_PLUGIN.to_string();
        }
        if self.validation_parameter.is_empty() {
            self.validation_parameter = default_validation_parameter();
        }
        self
    }

    /// Whether `other` defines the same chaincode parameters (everything but the package id,
    /// which each org chooses for itself).
    pub fn same_parameters(&self, other: &ChaincodeDefinition) -> bool {
        self.name == other.name
            && self.version == other.version
            && self.sequence == other.sequence
            && self.init_required == other.init_required
            && self.endorsement_plugin == other.endorsement_plugin
            && self.validation_plugin == other.validation_plugin
            && self.validation_parameter == other.validation_parameter
            && self.collections == other.collections
    }

    /// The first parameter in which `other` differs, for error messages.
    fn difference(&self, other: &ChaincodeDefinition) -> String {
        let differs =
            |field: &str, ours: String, theirs: String| format!("{field} '{theirs}' != '{ours}'");
        if self.version != other.version {
            return differs("Version", self.version.clone(), other.version.clone());
        }
        if self.init_required != other.init_required {
            return differs(
                "InitRequired",
                self.init_required.to_string(),
                other.init_required.to_string(),
            );
        }
        if self.endorsement_plugin != other.endorsement_plugin {
            return differs(
                "EndorsementPlugin",
                self.endorsement_plugin.clone(),
                other.endorsement_plugin.clone(),
            );
        }
        if self.validation_plugin != other.validation_plugin {
            return differs(
                "ValidationPlugin",
                self.validation_plugin.clone(),
                other.validation_plugin.clone(),
            );
        }
        if self.validation_parameter != other.validation_parameter {
            return "ValidationParameter differs".to_string();
        }
        "Collections differ".to_string()
    }
}

/// `protos.ApplicationPolicy{channel_config_policy_reference: "/Channel/Application/Endorsement"}`
/// encoded: field 2, length-delimited.
pub fn default_validation_parameter() -> Vec<u8> {
    let reference = DEFAULT_ENDORSEMENT_POLICY.as_bytes();
    let mut bytes = vec![0x12, reference.len() as u8];
    bytes.extend_from_slice(reference);
    bytes
}

/// Why a definition was refused, or the state could not be kept. Texts follow Fabric's.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error(
        "invalid chaincode name '{0}'. Names can only consist of alphanumerics, '_', and '-' and can only begin with alphanumerics"
    )]
    InvalidName(String),
    #[error("chaincode name '{0}' is the name of a system chaincode")]
    SystemName(String),
    #[error(
        "invalid chaincode version '{0}'. Versions can only consist of alphanumerics, '_', '-', '+', and '.'"
    )]
    InvalidVersion(String),
    #[error("requested sequence is {requested}, but new definition must be sequence {expected}")]
    Sequence { requested: i64, expected: i64 },
    #[error("currently defined sequence {current} is larger than requested sequence {requested}")]
    SequenceTooLow { current: i64, requested: i64 },
    #[error(
        "attempted to redefine the current committed sequence ({sequence}) for namespace {name} with different parameters: {difference}"
    )]
    Redefinition {
        sequence: i64,
        name: String,
        difference: String,
    },
    #[error("chaincode definition not agreed to by this org ({0})")]
    NotApproved(String),
    #[error("namespace {0} is not defined")]
    NotDefined(String),
    #[error(
        "could not fetch approved chaincode definition (name: '{name}', sequence: '{sequence}') on channel '{channel}'"
    )]
    NoApproval {
        channel: String,
        name: String,
        sequence: i64,
    },
    #[error("reading chaincode definitions from {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("saving chaincode definitions to {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// channel → chaincode name → definition.
type PerChannel = BTreeMap<String, BTreeMap<String, ChaincodeDefinition>>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    committed: PerChannel,
    /// This org's approvals: channel → name → sequence → definition.
    approved: BTreeMap<String, BTreeMap<String, BTreeMap<i64, ChaincodeDefinition>>>,
}

impl State {
    fn current_sequence(&self, channel: &str, name: &str) -> i64 {
        self.committed
            .get(channel)
            .and_then(|names| names.get(name))
            .map_or(0, |def| def.sequence)
    }
}

/// The chaincode definitions of every channel; durable when opened from a file.
#[derive(Debug, Default)]
pub struct Definitions {
    state: RwLock<State>,
    file: Option<PathBuf>,
    /// Counts committed changes, so launches of packages no longer defined can be stopped.
    changes: tokio::sync::watch::Sender<u64>,
}

fn check_name_and_version(def: &ChaincodeDefinition) -> Result<(), DefinitionError> {
    // Fabric: ^[a-zA-Z0-9]+([-_][a-zA-Z0-9]+)*$
    let name_ok = !def.name.is_empty()
        && def
            .name
            .split(['-', '_'])
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()));
    if !name_ok {
        return Err(DefinitionError::InvalidName(def.name.clone()));
    }
    if SYSTEM_CHAINCODE_NAMES.contains(&def.name.as_str()) {
        return Err(DefinitionError::SystemName(def.name.clone()));
    }
    // Fabric: ^[A-Za-z0-9_.+-]+$
    let version_ok = !def.version.is_empty()
        && def
            .version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c));
    if !version_ok {
        return Err(DefinitionError::InvalidVersion(def.version.clone()));
    }
    Ok(())
}

impl Definitions {
    /// Definitions kept in `path` (created on first change); loads what an earlier run saved.
    pub fn open(path: &Path) -> Result<Self, DefinitionError> {
        let load = |reason: String| DefinitionError::Load {
            path: path.to_path_buf(),
            reason,
        };
        let state = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| load(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(load(e.to_string())),
        };
        Ok(Self {
            state: RwLock::new(state),
            file: Some(path.to_path_buf()),
            changes: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Changes whenever a definition is committed or redefined.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A poisoned lock means a panic elsewhere; the state itself is always replaced whole.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `change` to a copy of the state, saves it, and only then makes it current.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut State) -> Result<T, DefinitionError>,
    ) -> Result<T, DefinitionError> {
        let mut state = self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = state.clone();
        let result = change(&mut next)?;
        if let Some(path) = &self.file {
            let bytes = serde_json::to_vec_pretty(&next).map_err(|e| DefinitionError::Save {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
            crate::durable::write_atomically(path, &bytes, None).map_err(|source| {
                DefinitionError::Save {
                    path: path.clone(),
                    source,
                }
            })?;
        }
        *state = next;
        drop(state);
        self.changes.send_modify(|count| *count += 1);
        Ok(result)
    }

    /// Defines (or redefines, with the next sequence) `name` on `channel` as running
    /// `package_id`, without approval: the shortcut for tests and development chaincode. The
    /// version is the sequence number; defining the package already defined changes nothing.
    pub fn define(&self, channel: &str, name: &str, package_id: &str) {
        if self.package_id(channel, name).as_deref() == Some(package_id) {
            return;
        }
        let result = self.update(|state| {
            let sequence = state.current_sequence(channel, name) + 1;
            let def = ChaincodeDefinition::new(name, &sequence.to_string(), sequence, package_id);
            state
                .committed
                .entry(channel.to_string())
                .or_default()
                .insert(name.to_string(), def);
            Ok(())
        });
        if let Err(error) = result {
            tracing::warn!(%error, channel, name, "chaincode definition not saved");
        }
    }

    /// The committed definition of `name` on `channel`.
    pub fn get(&self, channel: &str, name: &str) -> Option<ChaincodeDefinition> {
        self.read()
            .committed
            .get(channel)
            .and_then(|names| names.get(name))
            .cloned()
    }

    /// The package id defined for `name` on `channel`.
    pub fn package_id(&self, channel: &str, name: &str) -> Option<String> {
        self.get(channel, name).map(|def| def.package_id)
    }

    /// Every committed definition on `channel`, by name.
    pub fn list(&self, channel: &str) -> Vec<ChaincodeDefinition> {
        self.read()
            .committed
            .get(channel)
            .map(|names| names.values().cloned().collect())
            .unwrap_or_default()
    }

    /// (channel, definition) for every committed definition running `package_id`.
    pub fn references(&self, package_id: &str) -> Vec<(String, ChaincodeDefinition)> {
        self.read()
            .committed
            .iter()
            .flat_map(|(channel, names)| {
                names
                    .values()
                    .filter(|def| def.package_id == package_id)
                    .map(|def| (channel.clone(), def.clone()))
            })
            .collect()
    }

    /// This org's approval of `name` at `sequence` on `channel`; sequence 0 means the latest.
    pub fn approved(
        &self,
        channel: &str,
        name: &str,
        sequence: i64,
    ) -> Result<ChaincodeDefinition, DefinitionError> {
        let state = self.read();
        let approvals = state
            .approved
            .get(channel)
            .and_then(|names| names.get(name));
        let found = match sequence {
            0 => approvals.and_then(|by_seq| by_seq.values().next_back()),
            n => approvals.and_then(|by_seq| by_seq.get(&n)),
        };
        found.cloned().ok_or_else(|| DefinitionError::NoApproval {
            channel: channel.to_string(),
            name: name.to_string(),
            sequence,
        })
    }

    /// Records this org's approval (Fabric's `ApproveChaincodeDefinitionForOrg` rules): the
    /// sequence is the committed one (same parameters; may switch the package) or the next.
    pub fn approve(&self, channel: &str, def: ChaincodeDefinition) -> Result<(), DefinitionError> {
        let def = def.with_defaults();
        check_name_and_version(&def)?;
        self.update(|state| {
            let current = state.current_sequence(channel, &def.name);
            if def.sequence > current + 1 || def.sequence < 1 {
                return Err(DefinitionError::Sequence {
                    requested: def.sequence,
                    expected: current + 1,
                });
            }
            if def.sequence < current {
                return Err(DefinitionError::SequenceTooLow {
                    current,
                    requested: def.sequence,
                });
            }
            if def.sequence == current
                && let Some(committed) = state
                    .committed
                    .get_mut(channel)
                    .and_then(|names| names.get_mut(&def.name))
            {
                if !committed.same_parameters(&def) {
                    return Err(DefinitionError::Redefinition {
                        sequence: current,
                        name: def.name.clone(),
                        difference: committed.difference(&def),
                    });
                }
                // Only this org's package changes: it runs from now on.
                committed.package_id = def.package_id.clone();
            }
            state
                .approved
                .entry(channel.to_string())
                .or_default()
                .entry(def.name.clone())
                .or_default()
                .insert(def.sequence, def);
            Ok(())
        })
    }

    /// Which orgs approved `def` as the next definition (Fabric's `CheckCommitReadiness`).
    pub fn check_commit_readiness(
        &self,
        channel: &str,
        def: &ChaincodeDefinition,
        mspid: &str,
    ) -> Result<BTreeMap<String, bool>, DefinitionError> {
        let def = def.clone().with_defaults();
        check_name_and_version(&def)?;
        let state = self.read();
        let expected = state.current_sequence(channel, &def.name) + 1;
        if def.sequence != expected {
            return Err(DefinitionError::Sequence {
                requested: def.sequence,
                expected,
            });
        }
        let agreed = state
            .approved
            .get(channel)
            .and_then(|names| names.get(&def.name))
            .and_then(|by_seq| by_seq.get(&def.sequence))
            .is_some_and(|approval| approval.same_parameters(&def));
        Ok(BTreeMap::from([(mspid.to_string(), agreed)]))
    }

    /// Commits `def` as the next definition of its chaincode on `channel`; this org (`mspid`)
    /// must have approved exactly these parameters. Returns the committed definition, which
    /// runs the approved package.
    pub fn commit(
        &self,
        channel: &str,
        def: &ChaincodeDefinition,
        mspid: &str,
    ) -> Result<ChaincodeDefinition, DefinitionError> {
        let def = def.clone().with_defaults();
        check_name_and_version(&def)?;
        self.update(|state| {
            let expected = state.current_sequence(channel, &def.name) + 1;
            if def.sequence != expected {
                return Err(DefinitionError::Sequence {
                    requested: def.sequence,
                    expected,
                });
            }
            let approval = state
                .approved
                .get(channel)
                .and_then(|names| names.get(&def.name))
                .and_then(|by_seq| by_seq.get(&def.sequence))
                .filter(|approval| approval.same_parameters(&def))
                .ok_or_else(|| DefinitionError::NotApproved(mspid.to_string()))?;
            let committed = ChaincodeDefinition {
                package_id: approval.package_id.clone(),
                ..def.clone()
            };
            state
                .committed
                .entry(channel.to_string())
                .or_default()
                .insert(def.name.clone(), committed.clone());
            Ok(committed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CH: &str = "mychannel";

    fn def(sequence: i64, package: &str) -> ChaincodeDefinition {
        ChaincodeDefinition::new("basic", "1.0", sequence, package)
    }

    #[test]
    fn definitions_are_per_channel_and_redefinable() {
        let defs = Definitions::default();
        defs.define("ch1", "asset", "asset:aaa");
        assert_eq!(
            defs.package_id("ch1", "asset").as_deref(),
            Some("asset:aaa")
        );
        assert_eq!(defs.package_id("ch2", "asset"), None);
        defs.define("ch1", "asset", "asset:bbb");
        let redefined = defs.get("ch1", "asset").unwrap();
        assert_eq!(redefined.package_id, "asset:bbb");
        assert_eq!(redefined.sequence, 2);
        defs.define("ch1", "asset", "asset:bbb");
        assert_eq!(defs.get("ch1", "asset").unwrap().sequence, 2);
    }

    #[test]
    fn commit_needs_this_orgs_approval_of_the_same_parameters() {
        let defs = Definitions::default();
        let err = defs.commit(CH, &def(1, ""), "Org1MSP").unwrap_err();
        assert_eq!(
            err.to_string(),
            "chaincode definition not agreed to by this org (Org1MSP)"
        );
        defs.approve(CH, def(1, "basic_1:abc")).unwrap();
        let other_version = ChaincodeDefinition::new("basic", "2.0", 1, "");
        assert!(matches!(
            defs.commit(CH, &other_version, "Org1MSP"),
            Err(DefinitionError::NotApproved(_))
        ));
        assert_eq!(
            defs.check_commit_readiness(CH, &other_version, "Org1MSP")
                .unwrap(),
            BTreeMap::from([("Org1MSP".to_string(), false)])
        );
        assert_eq!(
            defs.check_commit_readiness(CH, &def(1, ""), "Org1MSP")
                .unwrap(),
            BTreeMap::from([("Org1MSP".to_string(), true)])
        );
        let committed = defs.commit(CH, &def(1, ""), "Org1MSP").unwrap();
        assert_eq!(committed.package_id, "basic_1:abc");
        assert_eq!(defs.get(CH, "basic").unwrap(), committed);
        assert_eq!(defs.get("otherchannel", "basic"), None);
    }

    #[test]
    fn sequences_follow_fabrics_rules_with_the_expected_number_in_the_error() {
        let defs = Definitions::default();
        let err = defs.approve(CH, def(2, "p:1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "requested sequence is 2, but new definition must be sequence 1"
        );
        defs.approve(CH, def(1, "p:1")).unwrap();
        defs.commit(CH, &def(1, ""), "Org1MSP").unwrap();
        let err = defs.commit(CH, &def(1, ""), "Org1MSP").unwrap_err();
        assert_eq!(
            err.to_string(),
            "requested sequence is 1, but new definition must be sequence 2"
        );
        assert!(
            defs.check_commit_readiness(CH, &def(3, ""), "Org1MSP")
                .unwrap_err()
                .to_string()
                .contains("must be sequence 2")
        );
        // Re-approving the committed sequence may switch the package, not the parameters.
        defs.approve(CH, def(1, "p:2")).unwrap();
        assert_eq!(defs.package_id(CH, "basic").as_deref(), Some("p:2"));
        let changed = ChaincodeDefinition::new("basic", "9", 1, "p:2");
        assert!(matches!(
            defs.approve(CH, changed),
            Err(DefinitionError::Redefinition { .. })
        ));
        defs.approve(CH, def(2, "p:3")).unwrap();
        defs.commit(CH, &def(2, ""), "Org1MSP").unwrap();
        assert!(matches!(
            defs.approve(CH, def(1, "p:1")),
            Err(DefinitionError::SequenceTooLow { current: 2, .. })
        ));
        assert_eq!(defs.approved(CH, "basic", 0).unwrap().sequence, 2);
        assert_eq!(defs.approved(CH, "basic", 1).unwrap().package_id, "p:2");
    }

    #[test]
    fn names_and_versions_are_checked_like_fabric() {
        let defs = Definitions::default();
        for bad in ["", "-x", "a b", "x--y", "_lifecycle"] {
            let d = ChaincodeDefinition::new(bad, "1", 1, "");
            assert!(defs.approve(CH, d).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            defs.approve(CH, ChaincodeDefinition::new("lscc", "1", 1, "")),
            Err(DefinitionError::SystemName(_))
        ));
        assert!(matches!(
            defs.approve(CH, ChaincodeDefinition::new("ok-name_2", "1.0:x", 1, "")),
            Err(DefinitionError::InvalidVersion(_))
        ));
        defs.approve(
            CH,
            ChaincodeDefinition::new("ok-name_2", "1.0+b-c_d", 1, ""),
        )
        .unwrap();
    }

    #[test]
    fn state_survives_reopening_and_a_failed_save_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("definitions.json");
        {
            let defs = Definitions::open(&path).unwrap();
            defs.approve(CH, def(1, "p:1")).unwrap();
            defs.commit(CH, &def(1, ""), "Org1MSP").unwrap();
            defs.approve(CH, def(2, "p:2")).unwrap();
        }
        let defs = Definitions::open(&path).unwrap();
        assert_eq!(defs.get(CH, "basic").unwrap().package_id, "p:1");
        assert_eq!(defs.approved(CH, "basic", 2).unwrap().package_id, "p:2");

        // The file's directory becomes unwritable: the commit fails and is not half-applied.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, "a file, not a directory").unwrap();
        let unsavable = Definitions {
            file: Some(blocked.join("definitions.json")),
            ..Definitions::default()
        };
        unsavable.define(CH, "x", "x:1");
        assert!(unsavable.approve(CH, def(1, "p:1")).is_err());
        assert!(unsavable.approved(CH, "basic", 1).is_err());
        assert_eq!(unsavable.get(CH, "x"), None);

        std::fs::write(&path, b"{not json").unwrap();
        let err = Definitions::open(&path).unwrap_err();
        assert!(err.to_string().contains("definitions.json"), "{err}");
    }
}
