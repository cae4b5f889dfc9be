//! The ledger behind the chaincode stream: a persistent world state with key history (`store`), the
//! transaction simulator that serves a chaincode's state requests (`simulator`) and the read/write
//! set it records (`rwset`).
pub mod private;
pub mod rwset;
pub mod simulator;
pub mod store;

pub use private::{Access, CollectionDefinition, CollectionError, CollectionLookup, PrivateAccess};
pub use simulator::{Paging, SimulationError, TxSimulator};
pub use store::{
    CommitTx, CommittedBlock, HashedValue, PreparedBlock, StoreError, VersionedValue, WorldState,
};
