//! `chaincode-operator dev`: one command from a chaincode source directory to an endorser the
//! standard Fabric clients can use. It generates (or reuses) development crypto, starts a node on
//! loopback with the process runtime, packages the chaincode, installs and defines it through
//! admin-signed `_lifecycle` proposals (the same path a remote admin uses), launches it once so
//! build errors show at once, and writes what a client needs to `dev.json`.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use prost::Message;
use serde::Serialize;

use super::cli::{ChaincodeArgs, Interrupts, node_config, serve_until_interrupted};
use crate::builders::package::{self, package_source_dir};
use crate::builders::{Limits, PackageId};
use crate::endorser::identity::{SigningIdentity, load_organization, load_signing_identity};
use crate::endorser::lifecycle::LIFECYCLE_NAME;
use crate::endorser::lifecycle::collections::parse_collections_json;
use crate::endorser::node::devcrypto::{self, DevCryptoPaths, DevCryptoSpec};
use crate::endorser::node::{self, RunningNode, ServerTls};
use crate::endorser::proposal::build::{ProposalSpec, signed_proposal};
use crate::endorser::services::endorse::process_proposal;
use crate::proto::lifecycle::{
    ApproveChaincodeDefinitionForMyOrgArgs, ChaincodeSource, CommitChaincodeDefinitionArgs,
    InstallChaincodeArgs, InstallChaincodeResult, chaincode_source,
};
use crate::proto::protos::CollectionConfigPackage;

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Chaincode source directory (Node: package.json with a start script).
    #[arg(
        long = "chaincode",
        value_name = "DIR",
        required_unless_present = "ccaas",
        conflicts_with = "ccaas"
    )]
    pub source: Option<PathBuf>,
    /// Chaincode-as-a-service: a chaincode server you start yourself, in any language, listens
    /// on ADDRESS (HOST:PORT); dev defines it and dials ADDRESS instead of launching a process.
    /// Start the server with CHAINCODE_ID = the package id dev prints (and writes to dev.json);
    /// the id depends only on the name and ADDRESS, so it stays the same between runs.
    #[arg(long = "ccaas", value_name = "ADDRESS")]
    pub ccaas: Option<String>,
    /// Chaincode name (default: the directory's name; required with --ccaas).
    #[arg(long)]
    pub name: Option<String>,
    /// Channel the chaincode is defined on.
    #[arg(long, default_value = "mychannel")]
    pub channel: String,
    /// Where crypto, ledger and dev.json live; kept between runs, so state and client
    /// configuration survive a restart.
    #[arg(long = "dir", default_value = ".chaincode-dev")]
    pub dir: PathBuf,
    /// Address the Endorser and Gateway services listen on.
    #[arg(long, default_value = "127.0.0.1:7051")]
    pub listen: SocketAddr,
    /// Serve clients without TLS.
    #[arg(long = "no-tls")]
    pub no_tls: bool,
    /// MSP id of the generated organisation.
    #[arg(long, default_value = "Org1MSP")]
    pub mspid: String,
    /// Another organisation whose members may use this node (e.g. to try private data as a
    /// member of another org), as MSPID=MSP_DIR; repeatable.
    #[arg(long = "trust", value_name = "MSPID=DIR", value_parser = super::cli::parse_trusted_org)]
    pub trusted: Vec<super::cli::TrustedOrg>,
    /// Private data collections of the chaincode: Fabric's collections-config JSON (as for
    /// `peer lifecycle chaincode approveformyorg --collections-config`). Implicit org
    /// collections need none.
    #[arg(long = "collections", value_name = "FILE")]
    pub collections: Option<PathBuf>,
    #[command(flatten)]
    pub chaincode: ChaincodeArgs,
}

/// What a client needs, as printed and as written to `dev.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DevInfo {
    /// HOST:PORT of the Endorser, Gateway and Deliver services.
    pub endpoint: String,
    /// TLS root certificate to trust, when TLS is on.
    pub tls_root_cert: Option<PathBuf>,
    /// Name the listener's certificate is issued for (use as the TLS server name override).
    pub tls_host_name: Option<String>,
    pub channel: String,
    pub chaincode: String,
    pub package_id: String,
    pub sequence: i64,
    pub msp_id: String,
    /// The client identity (User1).
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The admin identity, for `_lifecycle` calls.
    pub admin_cert_path: PathBuf,
    pub admin_key_path: PathBuf,
    /// `--ccaas`: where the chaincode server must listen (start it with CHAINCODE_ID =
    /// `packageId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ccaas_address: Option<String>,
}

/// Fabric's chaincode name rule: letters and digits, single `-` or `_` between them.
fn default_name(source: &Path) -> anyhow::Result<String> {
    let base = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    anyhow::ensure!(
        !name.is_empty(),
        "cannot derive a chaincode name from {}: pass --name",
        source.display()
    );
    Ok(name)
}

/// The package dev installs: the source directory as a node package, or (`--ccaas`) a ccaas
/// package whose connection.json points at ADDRESS.
fn dev_package(args: &DevArgs) -> anyhow::Result<(String, Vec<u8>)> {
    if let Some(address) = &args.ccaas {
        let name = args
            .name
            .clone()
            .context("--ccaas needs --name: the chaincode name to define")?;
        return Ok((name.clone(), ccaas_package(&name, address)?));
    }
    let source = args
        .source
        .as_ref()
        .context("pass --chaincode DIR or --ccaas ADDRESS")?;
    let source = std::fs::canonicalize(source)
        .with_context(|| format!("chaincode directory {}", source.display()))?;
    require_node_source(&source)?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => default_name(&source)?,
    };
    let bytes = package_source_dir(&source, "node", &name, None, &Limits::default())
        .with_context(|| format!("packaging {}", source.display()))?;
    Ok((name, bytes))
}

/// dev builds and runs Node chaincode; another language gets told what to do instead of npm's
/// complaint about a missing package.json.
fn require_node_source(source: &Path) -> anyhow::Result<()> {
    if source.join("package.json").is_file() {
        return Ok(());
    }
    let found = [
        "go.mod",
        "pom.xml",
        "build.gradle",
        "build.gradle.kts",
        "setup.py",
        "pyproject.toml",
    ]
    .into_iter()
    .find(|file| source.join(file).is_file());
    match found {
        Some(file) => anyhow::bail!(
            "dev runs Node chaincode; found {file} in {}: run that chaincode as a server yourself \
             (Go: shim.ChaincodeServer, Java: ChaincodeServer, Python: fabric-chaincode-python) \
             and pass --ccaas HOST:PORT --name NAME, or install its package on an endorser with \
             --runtime kubernetes",
            source.display()
        ),
        None => anyhow::bail!(
            "no package.json in {}: dev runs Node chaincode (a directory with package.json whose \
             start script runs the chaincode)",
            source.display()
        ),
    }
}

/// Checks what would otherwise fail only after crypto and a ledger were created.
fn validate_args(args: &DevArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        crate::endorser::commit::committer::is_valid_channel_name(&args.channel),
        "channel name {:?} is not valid: lower-case letters, digits, '.' and '-', starting with a \
         letter, at most 249 characters",
        args.channel
    );
    if let Some(name) = &args.name {
        let valid = name
            .split(['-', '_'])
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()));
        anyhow::ensure!(
            valid,
            "chaincode name {name:?} is not valid: letters and digits, with single '-' or '_' \
             between them"
        );
    }
    Ok(())
}

/// Holds the dev directory for this process: a second `dev` on it would fight over the ledger.
struct DirLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

fn lock_dir(dir: &Path) -> anyhow::Result<DirLock> {
    use std::io::{Read, Seek, Write};
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let pid = std::process::id().to_string();
            let _ = lock
                .set_len(0)
                .and_then(|()| lock.rewind())
                .and_then(|()| lock.write_all(pid.as_bytes()));
            Ok(DirLock { _lock: lock })
        }
        Err((mut file, _)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            anyhow::bail!(
                "another chaincode-operator dev{who} is using {}: stop it, or give this one \
                 another --dir",
                dir.display()
            )
        }
    }
}

/// Dial timeout of `dev --ccaas` packages.
const DEV_CCAAS_DIAL_TIMEOUT: &str = "10s";

/// A ccaas package labelled `name` for a plaintext chaincode server at `address`; the same
/// bytes (so the same package id) for the same name and address.
pub fn ccaas_package(name: &str, address: &str) -> anyhow::Result<Vec<u8>> {
    let connection = serde_json::json!({
        "address": address,
        "dial_timeout": DEV_CCAAS_DIAL_TIMEOUT,
        "tls_required": false,
    });
    package::ccaas_package(name, format!("{connection:#}\n").as_bytes())
        .context("packaging connection.json")
}

pub async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    validate_args(&args)?;
    let collections = match &args.collections {
        Some(file) => {
            let json = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            parse_collections_json(&json)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("collections config {}", file.display()))?
        }
        None => Vec::new(),
    };
    let (name, bytes) = dev_package(&args)?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("dev directory {}", args.dir.display()))?;
    let _held = lock_dir(&dir)?;
    // Keys, ledger and builds do not belong in the chaincode's repository.
    let gitignore = dir.join(".gitignore");
    if !gitignore.exists() {
        std::fs::write(&gitignore, "# written by chaincode-operator dev\n*\n")
            .with_context(|| format!("writing {}", gitignore.display()))?;
    }

    let paths = DevCryptoPaths::new(&dir.join("crypto"));
    let incomplete = paths.first_incomplete();
    if incomplete.is_none() {
        tracing::info!(dir = %paths.root.display(), "reusing development crypto");
    } else {
        if let Some(missing) = incomplete.filter(|_| paths.root.exists()) {
            // Left by a crash of an older version (files are published whole now): nothing can
            // use it, so it is replaced; clients need the new credentials dev.json names.
            tracing::warn!(dir = %paths.root.display(), missing = %missing.display(),
                "development crypto is incomplete; generating new crypto");
        }
        devcrypto::generate(
            &paths.root,
            &DevCryptoSpec {
                mspid: args.mspid.clone(),
                ..DevCryptoSpec::default()
            },
        )
        .context("generating development crypto")?;
        tracing::info!(dir = %paths.root.display(), "generated development crypto");
    }
    let signing = load_signing_identity(&args.mspid, &paths.endorser.dir)
        .context("loading the endorser identity")?;
    let admin = load_signing_identity(&args.mspid, &paths.admin.dir)
        .context("loading the admin identity")?;
    let mut organizations = vec![
        load_organization(&args.mspid, &paths.endorser.dir)
            .context("loading the development organisation")?,
    ];
    for org in &args.trusted {
        organizations.push(
            load_organization(&org.mspid, &org.dir)
                .with_context(|| format!("loading organisation {}", org.mspid))?,
        );
    }
    let tls = if args.no_tls {
        None
    } else {
        Some(ServerTls {
            cert_pem: std::fs::read_to_string(&paths.tls_server_cert)
                .context("reading the TLS certificate")?,
            key_pem: std::fs::read_to_string(&paths.tls_server_key)
                .context("reading the TLS key")?,
        })
    };
    let config = node_config(
        &dir.join("data"),
        signing,
        organizations,
        vec![args.channel.clone()],
        args.listen,
        tls,
        &args.chaincode,
    )?;
    let node = node::start(config).await?;

    let package_id = PackageId::new(&name, &bytes).to_string();
    let definition = DevDefinition {
        channel: &args.channel,
        name: &name,
        package_id: &package_id,
        collections,
    };
    let sequence = install_and_define(&node, &admin, &definition, bytes)
        .await
        .context("installing and defining the chaincode")?;
    // A chaincode server is started by the user once the package id is known: it is dialled at
    // the first proposal, not now.
    // Builds of earlier versions of the source are never used again by this dev directory.
    if let Some(runtime) = &node.runtime {
        runtime.prune(&[&package_id]);
    }
    let mut not_running = None;
    if args.ccaas.is_none()
        && let Err(err) = node.launch(&package_id).await
    {
        tracing::warn!(%err, "the chaincode did not start; it is launched again on the next proposal");
        not_running = Some(err.to_string());
    }

    let info = DevInfo {
        endpoint: node.address.to_string(),
        tls_root_cert: (!args.no_tls).then(|| paths.tls_root()),
        tls_host_name: (!args.no_tls).then(|| "localhost".to_string()),
        channel: args.channel.clone(),
        chaincode: name,
        package_id,
        sequence,
        msp_id: args.mspid.clone(),
        cert_path: paths.user.cert.clone(),
        key_path: paths.user.key.clone(),
        admin_cert_path: paths.admin.cert.clone(),
        admin_key_path: paths.admin.key.clone(),
        ccaas_address: args.ccaas.clone(),
    };
    let json = serde_json::to_string_pretty(&info).context("encoding dev.json")?;
    let dev_json = dir.join("dev.json");
    crate::durable::write_atomically(&dev_json, format!("{json}\n").as_bytes(), None)
        .with_context(|| format!("writing {}", dev_json.display()))?;
    let interrupts = Interrupts::install()?;
    print_info(&info, &dev_json, not_running.as_deref());
    serve_until_interrupted(node, interrupts).await
}

/// Prints what a client needs, then `ready` — or, when the chaincode failed to start, `ready —
/// chaincode NOT running: WHY`: the node serves anyway (the next proposal launches the chaincode
/// again), but nobody should read a plain `ready` as "my chaincode works".
fn print_info(info: &DevInfo, dev_json: &Path, not_running: Option<&str>) {
    println!(
        "chaincode-operator dev: serving {} on channel {}",
        info.chaincode, info.channel
    );
    println!("  endpoint:      {}", info.endpoint);
    match &info.tls_root_cert {
        Some(root) => println!(
            "  TLS root:      {} (server name {})",
            root.display(),
            info.tls_host_name.as_deref().unwrap_or("localhost")
        ),
        None => println!("  TLS:           off"),
    }
    println!("  MSP id:        {}", info.msp_id);
    println!("  certificate:   {}", info.cert_path.display());
    println!("  private key:   {}", info.key_path.display());
    println!(
        "  package id:    {} (sequence {})",
        info.package_id, info.sequence
    );
    if let Some(address) = &info.ccaas_address {
        println!(
            "  chaincode server: start it at {address} with CHAINCODE_ID={} (e.g. fabric-chaincode-node server --chaincode-address {address} --chaincode-id {}); it is dialled at the first proposal",
            info.package_id, info.package_id
        );
    }
    println!("  written to:    {}", dev_json.display());
    match not_running {
        None => println!("ready"),
        Some(why) => println!("ready — chaincode NOT running: {}", why.replace('\n', " ")),
    }
}

/// Sends one admin-signed `_lifecycle` proposal through the node's own pipeline.
async fn lifecycle_call(
    node: &RunningNode,
    admin: &SigningIdentity,
    channel: &str,
    function: &str,
    args: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let spec = ProposalSpec::new(
        channel,
        LIFECYCLE_NAME,
        [function.as_bytes().to_vec(), args],
    );
    let (signed, _) =
        signed_proposal(admin, &spec).map_err(|_| "no randomness for a nonce".to_string())?;
    let response = process_proposal(&node.context, signed, SystemTime::now()).await;
    match response.response {
        Some(r) if r.status == 200 => Ok(r.payload),
        Some(r) => Err(format!("{function}: {} {}", r.status, r.message)),
        None => Err(format!("{function}: no response")),
    }
}

/// What dev defines: the package as `name` on `channel`, with these collections.
struct DevDefinition<'a> {
    channel: &'a str,
    name: &'a str,
    package_id: &'a str,
    /// Encoded `CollectionConfig`s.
    collections: Vec<Vec<u8>>,
}

/// Installs the package (already installed is fine) and defines it with the next sequence,
/// unless the current definition already runs this package with these collections. Returns the
/// definition's sequence.
async fn install_and_define(
    node: &RunningNode,
    admin: &SigningIdentity,
    definition: &DevDefinition<'_>,
    package: Vec<u8>,
) -> anyhow::Result<i64> {
    let DevDefinition {
        channel,
        name,
        package_id,
        ..
    } = *definition;
    let collections = || {
        (!definition.collections.is_empty()).then(|| CollectionConfigPackage {
            config: definition.collections.clone(),
        })
    };
    let install = InstallChaincodeArgs {
        chaincode_install_package: package,
    }
    .encode_to_vec();
    match lifecycle_call(node, admin, "", "InstallChaincode", install).await {
        Ok(payload) => {
            let result = InstallChaincodeResult::decode(payload.as_slice())
                .context("decoding InstallChaincodeResult")?;
            anyhow::ensure!(
                result.package_id == package_id,
                "installed as {} but packaged as {package_id}",
                result.package_id
            );
            tracing::info!(%package_id, "installed");
        }
        Err(message) if message.contains("already successfully installed") => {
            tracing::info!(%package_id, "already installed");
        }
        Err(message) => anyhow::bail!(message),
    }

    // The node's own definitions say what runs now: no proposal needed to read them.
    let current = node.lifecycle.definitions().get(channel, name);
    let current_sequence = current.as_ref().map_or(0, |def| def.sequence);
    if current.is_some_and(|def| {
        def.package_id == package_id && def.collections == definition.collections
    }) {
        tracing::info!(%name, sequence = current_sequence, "definition unchanged");
        return Ok(current_sequence);
    }
    let sequence = current_sequence + 1;
    let version = sequence.to_string();
    let approve = ApproveChaincodeDefinitionForMyOrgArgs {
        sequence,
        name: name.to_string(),
        version: version.clone(),
        source: Some(ChaincodeSource {
            r#type: Some(chaincode_source::Type::LocalPackage(
                chaincode_source::Local {
                    package_id: package_id.to_string(),
                },
            )),
        }),
        collections: collections(),
        ..ApproveChaincodeDefinitionForMyOrgArgs::default()
    }
    .encode_to_vec();
    lifecycle_call(
        node,
        admin,
        channel,
        "ApproveChaincodeDefinitionForMyOrg",
        approve,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let commit = CommitChaincodeDefinitionArgs {
        sequence,
        name: name.to_string(),
        version,
        collections: collections(),
        ..CommitChaincodeDefinitionArgs::default()
    }
    .encode_to_vec();
    lifecycle_call(node, admin, channel, "CommitChaincodeDefinition", commit)
        .await
        .map_err(anyhow::Error::msg)?;
    tracing::info!(%name, sequence, %package_id, "defined");
    Ok(sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ccaas_packages_have_the_same_id_on_every_run() {
        let first = ccaas_package("basic", "127.0.0.1:9999").unwrap();
        let again = ccaas_package("basic", "127.0.0.1:9999").unwrap();
        assert_eq!(first, again);
        let elsewhere = ccaas_package("basic", "127.0.0.1:9998").unwrap();
        assert_ne!(
            PackageId::new("basic", &first),
            PackageId::new("basic", &elsewhere)
        );
        let package = crate::builders::read_package(&first, &Limits::default()).unwrap();
        let conn =
            crate::builders::platform::ccaas::connection_with(&package, &serde_json::Map::new())
                .unwrap();
        assert_eq!(conn.address, "127.0.0.1:9999");
        assert_eq!(conn.dial_timeout, "10s");
        assert!(!conn.tls_required);
    }

    #[test]
    fn default_names_follow_fabric_chaincode_name_rules() {
        assert_eq!(
            default_name(Path::new("/src/asset-transfer")).unwrap(),
            "asset-transfer"
        );
        assert_eq!(
            default_name(Path::new("/src/my chaincode!")).unwrap(),
            "my-chaincode"
        );
        assert_eq!(default_name(Path::new("/src/--x--")).unwrap(), "x");
        assert!(default_name(Path::new("/")).is_err());
    }
}
