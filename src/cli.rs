//! The `chaincode-operator` command line: one binary, one subcommand per role.
//! Each subcommand's arguments live beside the code that runs it.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "chaincode-operator",
    version,
    about = "Runs Hyperledger Fabric chaincode on Kubernetes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Chaincode controller against the current kubeconfig or in-cluster config.
    Controller(crate::operator::cli::ControllerArgs),
    /// Print the Chaincode CustomResourceDefinition as YAML.
    Crd,
    /// Write a Fabric 2.x lifecycle package from a source directory.
    Package(crate::builders::cli::PackageArgs),
    /// Read a chaincode package and print its id, label, type and the platform's verdict.
    Inspect(crate::builders::cli::InspectArgs),
    /// Write the build context (tar.gz with Dockerfile) a source Chaincode needs, and its digest.
    Context(crate::builders::cli::ContextArgs),
    /// Run the endorser (ChaincodeSupport, Endorser and Gateway services).
    Endorser(crate::endorser::node::cli::EndorserArgs),
    /// Run the whole path locally: dev crypto, endorser with the process runtime, one chaincode.
    Dev(crate::endorser::node::cli::DevArgs),
    /// Fabric external builder steps for stock peers (detect, build, release), and `install`.
    Builder(crate::external_builder::BuilderArgs),
}

/// Runs one parsed command line; the returned code is the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Controller(args) => crate::operator::cli::controller(args),
        Command::Crd => crate::operator::cli::print_crd(),
        Command::Package(args) => crate::builders::cli::package(args),
        Command::Inspect(args) => crate::builders::cli::inspect(args),
        Command::Context(args) => crate::builders::cli::context(args),
        Command::Endorser(args) => crate::endorser::node::cli::endorser(args),
        Command::Dev(args) => crate::endorser::node::cli::dev(args),
        Command::Builder(args) => crate::external_builder::run(args),
    }
}

/// The error and its causes on one line, each said once. Many errors already include their
/// cause's text (`…: {source}`), which `{:#}` would print a second time.
pub fn describe_error(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod describe_tests {
    use super::describe_error;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the package: {source}")]
    struct Wraps {
        source: std::io::Error,
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::other("invalid gzip header");
        let error = anyhow::Error::new(Wraps { source: io }).context("package x.tar.gz rejected");
        assert_eq!(
            describe_error(&error),
            "package x.tar.gz rejected: reading the package: invalid gzip header"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(describe_error(&plain), "outer: inner");
    }
}
