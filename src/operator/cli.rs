//! `controller` and `crd` subcommands.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ControllerArgs {}

pub fn controller(_args: ControllerArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("controller: not implemented yet")
}

pub fn print_crd() -> anyhow::Result<ExitCode> {
    anyhow::bail!("crd: not implemented yet")
}
