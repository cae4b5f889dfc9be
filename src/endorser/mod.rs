//! endorser
pub mod cli;
pub mod ledger;
