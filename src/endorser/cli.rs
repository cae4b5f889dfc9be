//! `endorser` and `dev` subcommands.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct EndorserArgs {}

#[derive(Debug, clap::Args)]
pub struct DevArgs {}

pub fn endorser(_args: EndorserArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("endorser: not implemented yet")
}

pub fn dev(_args: DevArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("dev: not implemented yet")
}
