//! `package` and `inspect` subcommands.
use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use super::{
    context::build_context,
    limits::Limits,
    package::{PackageId, package_source_dir, read_package_file},
    platform::{BuildOptions, Deployment, platform_of},
};

#[derive(Debug, clap::Args)]
pub struct PackageArgs {
    /// Chaincode source directory.
    pub src: PathBuf,
    /// Package label.
    #[arg(long)]
    pub label: String,
    /// Chaincode type: golang, node, java, k8s (prebuilt image.json) or ccaas (connection.json).
    #[arg(long = "type")]
    pub kind: String,
    /// Go only: import path of the main package (defaults to the go.mod module path).
    #[arg(long)]
    pub path: Option<String>,
    /// Output file.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Package file.
    pub file: PathBuf,
}

/// Writes a deterministic package and prints its package id.
pub fn package(args: PackageArgs) -> anyhow::Result<ExitCode> {
    super::platform::platform_for(&args.kind)?;
    let bytes = package_source_dir(
        &args.src,
        &args.kind,
        &args.label,
        args.path.as_deref(),
        &Limits::default(),
    )?;
    std::fs::write(&args.output, &bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!("{}", PackageId::new(&args.label, &bytes));
    Ok(ExitCode::SUCCESS)
}

/// Prints package id, label, type and the platform's verdict; fails when the package is rejected.
pub fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let package = read_package_file(&args.file, &Limits::default())
        .with_context(|| format!("package {} rejected", args.file.display()))?;
    println!("package id: {}", package.id);
    println!("label:      {}", package.metadata.label);
    println!("type:       {}", package.metadata.kind);
    if !package.metadata.path.is_empty() {
        println!("path:       {}", package.metadata.path);
    }
    println!("entries:    {}", package.code.len());
    let verdict = platform_of(&package).and_then(|platform| platform.deployment(&package));
    match verdict {
        Ok(deployment) => {
            let how = match deployment {
                Deployment::Build => {
                    let context = build_context(&package, &BuildOptions::default())?;
                    println!(
                        "context:    sha256:{} (default build options)",
                        context.digest
                    );
                    "built from source".to_string()
                }
                Deployment::PrebuiltImage { reference } => format!("prebuilt image {reference}"),
                Deployment::Service(conn) => format!("chaincode-as-a-service at {}", conn.address),
            };
            println!("verdict:    ok ({how})");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            println!("verdict:    rejected");
            eprintln!("error: {err}");
            Ok(ExitCode::FAILURE)
        }
    }
}
