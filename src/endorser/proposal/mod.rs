//! Proposals in, endorsements out, as pure functions:
//!
//! - [`validate`]: SignedProposal bytes → [`ValidatedProposal`] or a [`ProposalError`] (Fabric's
//!   `UnpackProposal` + `Validate`: header type, channel, tx id, creator, signature, replay).
//! - [`endorse`]: a validated proposal plus the chaincode's outcome → the signed
//!   `ProposalResponse` Fabric clients expect, or the failure responses Fabric sends instead.
//!
//! The replay cache ([`ReplayCache`]) is the one piece of state; the service owns it.
pub mod build;
pub mod endorse;
pub mod replay;
pub mod validate;

pub use endorse::{
    SimulationOutcome, proposal_response, rejection_response, system_error_response,
};
pub use replay::{BoundedReplayCache, ReplayCache};
pub use validate::{ProposalError, ProposalValidator, ValidatedProposal, proposal_hash};
