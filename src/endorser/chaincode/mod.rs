//! The chaincode side of the endorser: the `ChaincodeSupport` stream ([`support`]) driving the pure
//! handler state machine ([`handler`]), handles that execute transactions on a registered chaincode
//! ([`handle`]), the launcher that starts chaincode on demand and gates REGISTER ([`launcher`],
//! [`registration`], [`gate`]), per-launch TLS ([`tls`]) and the runtimes ([`runtime`]).
pub mod gate;
pub mod handle;
pub mod handler;
pub mod launcher;
pub mod registration;
pub mod runtime;
pub mod support;
pub mod tls;
