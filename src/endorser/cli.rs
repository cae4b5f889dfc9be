//! `endorser` and `dev` subcommands. `endorser` serves ChaincodeSupport with the launcher as the
//! registration gate and the process runtime launching chaincode on demand; the Endorser and
//! Gateway services (issue 3) will drive transactions through it.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use crate::endorser::gate::{Definitions, LaunchingResolver};
use crate::endorser::handle::ChaincodeHandle;
use crate::endorser::launcher::{Launcher, LauncherArgs};
use crate::endorser::runtime::process::{ProcessRuntime, ProcessRuntimeArgs};
use crate::endorser::support::{ChaincodeSupportService, SupportConfig};
use crate::endorser::tls::ChaincodeCa;

/// Which runtime launches chaincode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// Local processes built from Node source directories.
    Process,
}

/// A chaincode given on the command line as NAME=DIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalChaincode {
    pub name: String,
    pub dir: PathBuf,
}

impl LocalChaincode {
    /// The package id the source directory runs as: `NAME:` + the first 32 hex digits of the
    /// SHA-256 of the directory path, so two directories under one name stay apart.
    pub fn package_id(&self) -> String {
        let digest = hex::encode(Sha256::digest(self.dir.to_string_lossy().as_bytes()));
        format!("{}:{}", self.name, &digest[..32])
    }
}

/// Parses `NAME=DIR`.
pub fn parse_local_chaincode(arg: &str) -> Result<LocalChaincode, String> {
    let (name, dir) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=DIR, got {arg:?}"))?;
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if !valid_name {
        return Err(format!(
            "chaincode name {name:?} must be non-empty and use only letters, digits, _ - . +"
        ));
    }
    if dir.is_empty() {
        return Err(format!("no directory given for chaincode {name}"));
    }
    Ok(LocalChaincode {
        name: name.to_string(),
        dir: PathBuf::from(dir),
    })
}

#[derive(Debug, clap::Args)]
pub struct EndorserArgs {
    /// Address the ChaincodeSupport service listens on.
    #[arg(long, default_value = "127.0.0.1:7052")]
    pub listen: SocketAddr,
    /// HOST:PORT chaincode dials (default: the listen address).
    #[arg(long = "peer-address")]
    pub peer_address: Option<String>,
    /// MSP id handed to chaincode as CORE_PEER_LOCALMSPID.
    #[arg(long, default_value = "Org1MSP")]
    pub mspid: String,
    #[arg(long, value_enum, default_value = "process")]
    pub runtime: RuntimeKind,
    /// Chaincode to make launchable, as NAME=DIR (a Node source directory); repeatable.
    #[arg(long = "chaincode", value_name = "NAME=DIR", value_parser = parse_local_chaincode)]
    pub chaincodes: Vec<LocalChaincode>,
    /// Channels the chaincodes are defined on (INVOKE_CHAINCODE resolves names through them).
    #[arg(long = "channel", default_values = ["mychannel"])]
    pub channels: Vec<String>,
    #[command(flatten)]
    pub launcher: LauncherArgs,
    #[command(flatten)]
    pub process: ProcessRuntimeArgs,
}

#[derive(Debug, clap::Args)]
pub struct DevArgs {}

pub fn endorser(args: EndorserArgs) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(serve_endorser(args))
}

async fn serve_endorser(args: EndorserArgs) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener
        .local_addr()
        .context("reading the listen address")?;
    let peer_address = args
        .peer_address
        .clone()
        .unwrap_or_else(|| local.to_string());

    let RuntimeKind::Process = args.runtime;
    let runtime = Arc::new(ProcessRuntime::new(args.process.config()));
    let definitions = Arc::new(Definitions::default());
    for chaincode in &args.chaincodes {
        let dir = std::fs::canonicalize(&chaincode.dir)
            .with_context(|| format!("chaincode {} directory", chaincode.name))?;
        let chaincode = LocalChaincode {
            name: chaincode.name.clone(),
            dir,
        };
        let package_id = chaincode.package_id();
        runtime.add_source(&package_id, &chaincode.dir);
        for channel in &args.channels {
            definitions.define(channel, &chaincode.name, &package_id);
        }
        tracing::info!(name = %chaincode.name, %package_id, dir = %chaincode.dir.display(), "chaincode installed");
    }

    let ca = if args.launcher.plaintext {
        None
    } else {
        Some(Arc::new(
            ChaincodeCa::generate("chaincode-operator endorser chaincode CA")
                .context("generating the chaincode TLS CA")?,
        ))
    };
    let launcher: Launcher<ChaincodeHandle> = Launcher::new(
        runtime,
        ca.clone(),
        args.launcher.config(&peer_address, &args.mspid),
    );
    let resolver = Arc::new(LaunchingResolver {
        definitions,
        launcher: launcher.clone(),
    });
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let service = ChaincodeSupportService::new(
        Arc::new(launcher.clone()),
        resolver,
        SupportConfig::default(),
    )
    .with_shutdown(shutdown_rx);
    let mut server = tonic::transport::Server::builder();
    if let Some(ca) = &ca {
        let cert = ca
            .issue_listener(&peer_address)
            .context("issuing the listener certificate")?;
        server = server
            .tls_config(ca.tonic_server_tls(&cert))
            .context("configuring TLS on the listener")?;
    }
    tracing::info!(listen = %local, %peer_address, tls = ca.is_some(), "serving ChaincodeSupport");
    println!("ChaincodeSupport listening on {local}");
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
    };
    server
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            stop,
        )
        .await
        .context("serving ChaincodeSupport")?;
    launcher.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

pub fn dev(_args: DevArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("dev: not implemented yet")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        endorser: EndorserArgs,
    }

    #[test]
    fn chaincode_argument_is_name_equals_dir() {
        assert_eq!(
            parse_local_chaincode("asset=./chaincodes/asset"),
            Ok(LocalChaincode {
                name: "asset".into(),
                dir: PathBuf::from("./chaincodes/asset"),
            })
        );
        assert!(
            parse_local_chaincode("asset")
                .unwrap_err()
                .contains("expected NAME=DIR")
        );
        assert!(parse_local_chaincode("=dir").unwrap_err().contains("name"));
        assert!(
            parse_local_chaincode("a/b=dir")
                .unwrap_err()
                .contains("name")
        );
        assert!(
            parse_local_chaincode("asset=")
                .unwrap_err()
                .contains("no directory")
        );
    }

    #[test]
    fn package_ids_keep_the_name_as_label_and_differ_per_directory() {
        let a = LocalChaincode {
            name: "asset".into(),
            dir: PathBuf::from("/src/a"),
        };
        let b = LocalChaincode {
            name: "asset".into(),
            dir: PathBuf::from("/src/b"),
        };
        let id = a.package_id();
        let (label, hash) = id.split_once(':').unwrap();
        assert_eq!((label, hash.len()), ("asset", 32));
        assert_ne!(id, b.package_id());
        assert_eq!(id, a.clone().package_id());
    }

    #[test]
    fn command_line_collects_chaincodes_channels_and_launcher_options() {
        let cli = Cli::try_parse_from([
            "endorser",
            "--listen",
            "127.0.0.1:0",
            "--runtime",
            "process",
            "--chaincode",
            "a=/src/a",
            "--chaincode",
            "b=/src/b",
            "--channel",
            "ch1",
            "--channel",
            "ch2",
            "--chaincode-plaintext",
            "--chaincode-work-dir",
            "/tmp/work",
        ])
        .unwrap();
        let args = cli.endorser;
        assert_eq!(args.chaincodes.len(), 2);
        assert_eq!(args.chaincodes[1].name, "b");
        assert_eq!(args.channels, ["ch1", "ch2"]);
        assert!(args.launcher.plaintext);
        assert_eq!(args.process.work_dir, PathBuf::from("/tmp/work"));
        let err = Cli::try_parse_from([
            "endorser",
            "--chaincode",
            "nodir",
            "--chaincode-work-dir",
            "/w",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("expected NAME=DIR"), "{err}");
    }
}
