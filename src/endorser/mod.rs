//! The Fabric-wire endorser front end: the chaincode stream (`support`, `handler`), the ledger
//! it reads and writes, and the launcher with its runtimes that start chaincodes on demand.
pub mod cli;
pub mod gate;
pub mod handle;
pub mod handler;
pub mod launcher;
pub mod ledger;
pub mod registration;
pub mod runtime;
pub mod support;
pub mod tls;
