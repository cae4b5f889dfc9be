//! endorser
pub mod cli;
pub mod devcrypto;
pub mod identity;
pub mod launcher;
pub mod proposal;
pub mod runtime;
pub mod tls;
