//! endorser
pub mod cli;
pub mod handle;
pub mod handler;
pub mod ledger;
pub mod registration;
pub mod support;
