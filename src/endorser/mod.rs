//! The Fabric-wire endorser front end: proposal validation and endorsement (`proposal`,
//! `identity`), the chaincode stream (`support`, `handler`), the ledger it reads and writes,
//! the launcher with its runtimes that start chaincodes on demand, and the chaincode lifecycle
//! (`lifecycle`: installed packages, definitions, the `_lifecycle` system chaincode).
pub mod cli;
pub mod devcrypto;
pub mod endorse_service;
pub mod gate;
pub mod handle;
pub mod handler;
pub mod identity;
pub mod launcher;
pub mod ledger;
pub mod lifecycle;
pub mod proposal;
pub mod registration;
pub mod runtime;
pub mod support;
pub mod tls;
