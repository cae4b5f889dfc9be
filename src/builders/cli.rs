//! `package` and `inspect` subcommands.
use std::{path::PathBuf, process::ExitCode};

#[derive(Debug, clap::Args)]
pub struct PackageArgs {
    /// Chaincode source directory.
    pub src: PathBuf,
    /// Package label.
    #[arg(long)]
    pub label: String,
    /// Chaincode type: node, golang, java.
    #[arg(long = "type")]
    pub kind: String,
    /// Output file.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Package file.
    pub file: PathBuf,
}

pub fn package(_args: PackageArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("package: not implemented yet")
}

pub fn inspect(_args: InspectArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("inspect: not implemented yet")
}
