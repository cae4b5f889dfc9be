//! Fabric's init-exactly-once rule for definitions with `init_required` (`CheckInvocation` in
//! Fabric's chaincode support): the version that was initialised is recorded under a reserved key
//! in the chaincode's own namespace, written through the transaction's simulation so that it
//! commits with the init transaction and not before.
use crate::endorser::ledger::TxSimulator;

use super::definitions::ChaincodeDefinition;

/// Fabric's `InitializedKeyName`: `"\x00" + string(utf8.MaxRune) + "initialized"`. The leading
/// NUL keeps it out of the chaincode's own range queries.
pub const INITIALIZED_KEY: &str = "\u{0}\u{10FFFF}initialized";

/// Why an invocation does not match the definition's init rule. Texts are Fabric's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvocationError {
    #[error("chaincode '{0}' does not require initialization but called as init")]
    InitNotRequired(String),
    #[error("chaincode '{0}' is already initialized but called as init")]
    AlreadyInitialized(String),
    #[error("chaincode '{0}' has not been initialized for this version, must call as init first")]
    NotInitialized(String),
    #[error("could not {action} 'initialized' key: {reason}")]
    State {
        action: &'static str,
        reason: String,
    },
}

/// Checks an invocation (`is_init`: an INIT, else a TRANSACTION) of `definition`'s chaincode in
/// `simulator`'s transaction; an accepted init records the definition's version as initialised.
pub fn check_invocation(
    definition: &ChaincodeDefinition,
    is_init: bool,
    simulator: &TxSimulator,
) -> Result<(), InvocationError> {
    let name = &definition.name;
    if !definition.init_required {
        return if is_init {
            Err(InvocationError::InitNotRequired(name.clone()))
        } else {
            Ok(())
        };
    }
    let initialized =
        simulator
            .get_state(name, INITIALIZED_KEY)
            .map_err(|e| InvocationError::State {
                action: "get",
                reason: e.to_string(),
            })?;
    let needs_init = initialized.as_deref() != Some(definition.version.as_bytes());
    match (is_init, needs_init) {
        (false, false) => Ok(()),
        (false, true) => Err(InvocationError::NotInitialized(name.clone())),
        (true, false) => Err(InvocationError::AlreadyInitialized(name.clone())),
        (true, true) => simulator
            .put_state(
                name,
                INITIALIZED_KEY,
                definition.version.as_bytes().to_vec(),
            )
            .map_err(|e| InvocationError::State {
                action: "set",
                reason: e.to_string(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endorser::ledger::{CommitTx, WorldState};

    fn world() -> (tempfile::TempDir, WorldState) {
        let dir = tempfile::tempdir().unwrap();
        let world = WorldState::open(&dir.path().join("state.redb")).unwrap();
        (dir, world)
    }

    #[test]
    fn a_definition_without_init_refuses_init_and_runs_transactions() {
        let (_dir, world) = world();
        let def = ChaincodeDefinition::new("basic", "1.0", 1, "p:1");
        let sim = TxSimulator::new(world, "ch", "tx1");
        assert_eq!(check_invocation(&def, false, &sim), Ok(()));
        assert_eq!(
            check_invocation(&def, true, &sim).unwrap_err().to_string(),
            "chaincode 'basic' does not require initialization but called as init"
        );
        assert!(!sim.has_writes().unwrap());
    }

    #[test]
    fn init_is_required_once_per_version_and_recorded_in_the_simulation() {
        let (_dir, world) = world();
        let mut def = ChaincodeDefinition::new("basic", "1.0", 1, "p:1");
        def.init_required = true;

        let sim = TxSimulator::new(world.clone(), "ch", "tx1");
        assert_eq!(
            check_invocation(&def, false, &sim).unwrap_err().to_string(),
            "chaincode 'basic' has not been initialized for this version, must call as init first"
        );
        let init = TxSimulator::new(world.clone(), "ch", "tx2");
        check_invocation(&def, true, &init).unwrap();
        let rwset = init.results().unwrap();
        let ns = rwset
            .ns_rwset
            .iter()
            .find(|ns| ns.namespace == "basic")
            .unwrap();
        let kv = <crate::proto::kvrwset::KvrwSet as prost::Message>::decode(ns.rwset.as_slice())
            .unwrap();
        assert_eq!(kv.writes.len(), 1);
        assert_eq!(kv.writes[0].key, INITIALIZED_KEY);
        assert_eq!(kv.writes[0].value, b"1.0");
        // Nothing is initialised until the init transaction commits.
        let again = TxSimulator::new(world.clone(), "ch", "tx3");
        assert!(check_invocation(&def, false, &again).is_err());

        world
            .commit_block(
                "ch",
                &[CommitTx {
                    tx_id: "tx2",
                    timestamp: prost_types::Timestamp::default(),
                    rwset: &rwset,
                }],
            )
            .unwrap();
        let after = TxSimulator::new(world.clone(), "ch", "tx4");
        assert_eq!(check_invocation(&def, false, &after), Ok(()));
        assert!(matches!(
            check_invocation(&def, true, &after),
            Err(InvocationError::AlreadyInitialized(_))
        ));
        // A new version must be initialised again.
        def.version = "2.0".into();
        let upgraded = TxSimulator::new(world, "ch", "tx5");
        assert!(matches!(
            check_invocation(&def, false, &upgraded),
            Err(InvocationError::NotInitialized(_))
        ));
    }
}
