//! Fabric wire messages generated from `proto/` (Fabric's package names and field numbers).
#![allow(clippy::all, missing_docs)]

/// Fabric package `protos` (peer messages, ChaincodeSupport and Endorser services).
pub mod protos {
    tonic::include_proto!("protos");
}

/// Fabric package `common` (headers, envelopes, blocks).
pub mod common {
    tonic::include_proto!("common");
}

/// Fabric package `msp` (serialized identities).
pub mod msp {
    tonic::include_proto!("msp");
}

/// Fabric package `rwset` (transaction read/write sets).
pub mod rwset {
    tonic::include_proto!("rwset");
}

/// Fabric package `kvrwset` (key/value read/write sets with MVCC versions).
pub mod kvrwset {
    tonic::include_proto!("kvrwset");
}

/// Fabric package `queryresult` (range and history query items).
pub mod queryresult {
    tonic::include_proto!("queryresult");
}

/// Fabric package `orderer` (seek positions).
pub mod orderer {
    tonic::include_proto!("orderer");
}

/// Fabric package `gateway` (the Gateway service).
pub mod gateway {
    tonic::include_proto!("gateway");
}

/// Fabric package `lifecycle` (arguments and results of the `_lifecycle` system chaincode).
pub mod lifecycle {
    tonic::include_proto!("lifecycle");
}
