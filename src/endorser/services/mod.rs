//! The services clients call: `protos.Endorser/ProcessProposal` ([`endorse`]) and the
//! `gateway.Gateway` that `@hyperledger/fabric-gateway` uses ([`gateway`]).
pub mod endorse;
pub mod gateway;
