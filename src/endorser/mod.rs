//! The Fabric-wire endorser front end: proposal validation and endorsement (`proposal`,
//! `identity`), the chaincode stream (`support`, `handler`), the ledger it reads and writes,
//! the launcher with its runtimes that start chaincodes on demand, the chaincode lifecycle
//! (`lifecycle`: installed packages, definitions, the `_lifecycle` system chaincode), the
//! Gateway with its embedded commit path (`gateway`, `commit`), and one node assembled from all
//! of it (`node`) as the `endorser` and `dev` subcommands run it.
pub mod cli;
pub mod commit;
pub mod dev;
pub mod devcrypto;
pub mod endorse_service;
pub mod gate;
pub mod gateway;
pub mod handle;
pub mod handler;
pub mod identity;
pub mod launcher;
pub mod ledger;
pub mod lifecycle;
pub mod node;
pub mod proposal;
pub mod registration;
pub mod runtime;
pub mod support;
pub mod tls;
