//! The services clients call: `protos.Endorser/ProcessProposal` ([`endorse`]) and the
//! `gateway.Gateway` that `@hyperledger/fabric-gateway` uses ([`gateway`]) and the peer's
//! `protos.Deliver` block streams ([`deliver`]).
pub mod deliver;
pub mod endorse;
pub mod gateway;
