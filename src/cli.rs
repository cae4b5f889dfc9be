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
    }
}
