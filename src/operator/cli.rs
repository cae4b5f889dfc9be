//! `controller` and `crd` subcommands.
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::controller::{self, Settings};
use super::leader::Election;

#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of the HTTP port serving /healthz, /readyz and /metrics.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Elect a leader through a Lease so several replicas are safe.
    #[arg(long, env = "LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,
    /// Lease name used for leader election.
    #[arg(long, default_value = "chaincode-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (usually the operator's own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (usually the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Lease duration in seconds.
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u64,
    /// Log as JSON lines.
    #[arg(long, env = "LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The fmt layer writes to stdout: colour only on a terminal (not in kubectl logs or a file).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    // A second init (tests) is harmless.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Why no client could be made. With nothing to read, kube's error lists every place it looked
/// (three inference errors); one sentence says what to do instead.
fn no_kubernetes(error: &kube::Error) -> anyhow::Error {
    let kubeconfig = std::env::var_os("KUBECONFIG").is_some()
        || std::env::var_os("HOME")
            .is_some_and(|home| std::path::Path::new(&home).join(".kube/config").exists());
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    if kubeconfig || in_cluster {
        anyhow::anyhow!("cannot use the Kubernetes configuration: {error}")
    } else {
        anyhow::anyhow!(
            "no Kubernetes configuration: set KUBECONFIG (or create ~/.kube/config), or run the \
             controller in a cluster with a ServiceAccount"
        )
    }
}

pub fn controller(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_json);
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("chaincode-operator-{}", std::process::id()));
    let election = args.leader_elect.then(|| Election {
        namespace: args.lease_namespace.clone(),
        lease_name: args.lease_name.clone(),
        identity,
        lease_duration: Duration::from_secs(args.lease_seconds.max(2)),
        retry_period: Duration::from_secs((args.lease_seconds / 3).max(1)),
    });
    let settings = Settings {
        namespace: args.namespace,
        http_addr: args.http_addr,
        election,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|error| no_kubernetes(&error))?;
        controller::run(client, settings).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn print_crd() -> anyhow::Result<ExitCode> {
    print!("{}", super::crd::crd_yaml().context("serializing the CRD")?);
    Ok(ExitCode::SUCCESS)
}
