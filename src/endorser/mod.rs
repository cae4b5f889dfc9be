//! endorser
pub mod cli;
