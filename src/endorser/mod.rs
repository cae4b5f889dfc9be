//! The Fabric-wire endorser front end, one folder per part:
//! - [`services`]: what clients call — `protos.Endorser/ProcessProposal` and the `gateway.Gateway`.
//! - [`proposal`], [`identity`]: proposal validation, MSP identities, endorsement signatures.
//! - [`chaincode`]: the chaincode side — the ChaincodeSupport stream and its handler, the launcher,
//!   per-launch TLS, and the runtimes that start chaincode (local processes, Kubernetes).
//! - [`ledger`], [`commit`]: world state, the transaction simulator, the embedded commit path.
//! - [`lifecycle`]: installed packages, definitions, the `_lifecycle` system chaincode.
//! - [`node`]: one node assembled from all of it, as the `endorser` and `dev` subcommands run it.
pub mod chaincode;
pub mod commit;
pub mod identity;
pub mod ledger;
pub mod lifecycle;
pub mod node;
pub mod proposal;
pub mod services;
