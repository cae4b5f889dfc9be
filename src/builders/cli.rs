//! `package`, `inspect` and `context` subcommands.
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

#[derive(Debug, clap::Args)]
pub struct ContextArgs {
    /// Package file (a source package: golang, node or java).
    pub file: PathBuf,
    /// Where to write the build context (tar.gz with the Dockerfile) a source Chaincode needs.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Builder-stage image (default: the platform's).
    #[arg(long)]
    pub builder_image: Option<String>,
    /// Runtime-stage image (default: the platform's).
    #[arg(long)]
    pub runtime_image: Option<String>,
    /// npm registry for node builds.
    #[arg(long)]
    pub npm_registry: Option<String>,
    /// GOPROXY for go builds.
    #[arg(long)]
    pub goproxy: Option<String>,
    /// Maven/Gradle repository mirror for java builds.
    #[arg(long)]
    pub maven_mirror: Option<String>,
}

/// Writes the deterministic build context of a source package and prints the Chaincode fields that
/// name it, with the command that loads it into a ConfigMap.
pub fn context(args: ContextArgs) -> anyhow::Result<ExitCode> {
    let package = read_package_file(&args.file, &Limits::default())
        .with_context(|| format!("package {} rejected", args.file.display()))?;
    let platform = platform_of(&package)?;
    if let Deployment::PrebuiltImage { .. } | Deployment::Service(_) =
        platform.deployment(&package)?
    {
        anyhow::bail!(
            "package {} is not built from source (type {}): use spec.image instead of a build context",
            package.id,
            package.metadata.kind
        );
    }
    let options = BuildOptions {
        builder_image: args.builder_image,
        runtime_image: args.runtime_image,
        npm_registry: args.npm_registry,
        goproxy: args.goproxy,
        java_repository_mirror: args.maven_mirror,
        ..BuildOptions::default()
    };
    let context = build_context(&package, &options)?;
    std::fs::write(&args.output, &context.bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let file = args
        .output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "context.tar.gz".into());
    println!("packageId:     {}", package.id);
    println!("contentDigest: sha256:{}", context.digest);
    println!("bytes:         {}", context.bytes.len());
    println!(
        "load it:       kubectl create configmap NAME --from-file=context.tar.gz={}",
        args.output.display()
    );
    println!(
        "then in spec.source: {{contentDigest: \"sha256:{}\", configMap: {{name: NAME, key: context.tar.gz}}}}",
        context.digest
    );
    if context.bytes.len() > CONFIGMAP_LIMIT_BYTES {
        eprintln!(
            "warning: {file} is {} bytes; ConfigMaps and Secrets hold at most 1 MiB, serve it by url instead",
            context.bytes.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What a ConfigMap or Secret holds at most (etcd's object limit).
const CONFIGMAP_LIMIT_BYTES: usize = 1024 * 1024;

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
