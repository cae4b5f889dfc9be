//! The Fabric-wire endorser front end: proposal validation and endorsement (`proposal`,
//! `identity`), the chaincode stream (`support`, `handler`), the ledger it reads and writes, and
//! the launcher with its runtimes that start chaincodes on demand.
pub mod cli;
pub mod commit;
pub mod devcrypto;
pub mod endorse_service;
pub mod gate;
pub mod handle;
pub mod handler;
pub mod identity;
pub mod launcher;
pub mod ledger;
pub mod proposal;
pub mod registration;
pub mod runtime;
pub mod support;
pub mod tls;
