//! The operator: the `Chaincode` custom resource and its controller, which builds an image per content
//! key (BuildKit Job), hands the launch's TLS material to a Secret, runs the chaincode Pod and reports
//! Built/Launched/Ready (the endorser reports Registered).
//!
//! - [`crd`]: the resource types and the CRD.
//! - [`plan`], [`desired`], [`conditions`]: the pure core (decisions, desired objects, conditions).
//! - [`reconcile`]: one reconcile against the API server (fetch → validate → build → apply → status).
//! - [`controller`]: watches, leader election, HTTP port.
pub mod cli;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod desired;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod rbac;
pub mod reconcile;
pub mod server;
