//! operator
pub mod cli;
