//! endorser
pub mod cli;
pub mod launcher;
pub mod runtime;
pub mod tls;
