//! chaincode-operator: runs Hyperledger Fabric chaincode on Kubernetes.
//!
//! - [`builders`]: Fabric chaincode packages in, build plans out.
//! - [`endorser`]: the Fabric-wire endorser front end, chaincode stream, launcher and runtimes.
//! - [`durable`]: files that survive a power cut (atomic writes, published trees).
//! - [`external_builder`]: Fabric's external builder contract, for stock peers.
//! - [`operator`]: the `Chaincode` custom resource and its controller.
pub mod builders;
pub mod cli;
pub mod durable;
pub mod endorser;
pub mod external_builder;
pub mod operator;
pub mod proto;
