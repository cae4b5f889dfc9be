//! builders
pub mod cli;
