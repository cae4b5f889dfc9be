//! Fabric wire messages generated from `proto/` (Fabric's package names and field numbers).
#![allow(clippy::all, missing_docs)]

/// Fabric package `protos` (peer messages and services).
pub mod protos {
    tonic::include_proto!("protos");
}
