//! Runs the controller: HTTP port, CRD check (waiting for the API server), leader election (terms), watches (Chaincodes guarded against
//! malformed objects, owned Pods and Secrets, build Jobs by content key) and the reconcile loop.
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use super::crd::Chaincode;
use super::desired::{self, LABEL_CONTENT_KEY, MANAGED_BY};
use super::leader::{self, Election};
use super::metrics::Metrics;
use super::reconcile::{self, Context};
use super::server::{self, Health};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(
        "the Chaincode CRD (chaincodes.fabric.chaincode.dev) is not installed; install it with \
         `chaincode-operator crd | kubectl apply -f -` or `kubectl apply -f crds/chaincode.yaml`"
    )]
    CrdMissing,
    #[error("cannot reach the Kubernetes API to check for the Chaincode CRD: {0}")]
    Api(#[source] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the election for Lease {0} stopped")]
    LostLeadership(String),
}

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch one namespace; all when None.
    pub namespace: Option<String>,
    pub http_addr: SocketAddr,
    pub election: Option<Election>,
}

/// Fails with a hint when the CRD is missing, instead of a watch that errors forever.
pub async fn check_crd(api: &Api<Chaincode>) -> Result<(), ControllerError> {
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(ControllerError::CrdMissing),
        Err(err) => Err(ControllerError::Api(err)),
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone,
    K: serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The Chaincodes a build Job serves: same namespace, same content key. Jobs have no owner (they are
/// shared), so this is how a Job's progress reaches every Chaincode waiting on it.
pub fn chaincodes_for_job<'a>(
    job: &Job,
    chaincodes: impl Iterator<Item = &'a Chaincode>,
) -> Vec<ObjectRef<DeserializeGuard<Chaincode>>> {
    let Some(key) = job.labels().get(LABEL_CONTENT_KEY) else {
        return Vec::new();
    };
    let namespace = job.namespace();
    chaincodes
        .filter(|cc| cc.namespace() == namespace)
        .filter(|cc| {
            cc.spec.source.as_ref().is_some_and(|s| {
                desired::digest_hex(&s.content_digest)
                    .is_some_and(|hex| desired::content_key_label(hex) == *key)
            })
        })
        .map(|cc| {
            ObjectRef::new(&cc.name_any()).within(cc.namespace().as_deref().unwrap_or_default())
        })
        .collect()
}

/// How long a watch waits before retrying after an error: from 0.5 s, doubling to at most 5 s, and
/// back to the start after a minute without errors. client-go's 30 s ceiling is kinder to a struggling
/// API server, but after a restart it leaves the controller idle for up to 30 s; this process holds
/// four watches, so retrying every 5 s costs the server little.
fn watch_backoff() -> ResetTimerBackoff<ExponentialBackoff> {
    ResetTimerBackoff::new(
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(5))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .into(),
        Duration::from_secs(60),
    )
}

/// Whether a failed CRD check at startup is worth retrying: the API server is away or overloaded
/// (connection errors, 5xx, 429), not refusing us (401, 403) or missing the CRD (404).
fn is_transient(error: &ControllerError) -> bool {
    match error {
        ControllerError::Api(kube::Error::Api(status)) => status.code >= 500 || status.code == 429,
        ControllerError::Api(_) => true,
        _ => false,
    }
}

/// Checks the CRD, retrying while the API server cannot be reached, so an operator Pod that starts
/// while the API server restarts waits for it instead of crash-looping. Returns false on shutdown.
async fn wait_for_api(
    api: &Api<Chaincode>,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool, ControllerError> {
    let mut delay = Duration::from_millis(500);
    loop {
        match check_crd(api).await {
            Ok(()) => return Ok(true),
            Err(error) if is_transient(&error) => {
                warn!(%error, retry_in = ?delay, "Kubernetes API not reachable yet");
            }
            Err(error) => return Err(error),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|stopped| *stopped) => return Ok(false),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Runs until shutdown (Ctrl-C / SIGTERM). With an election it reconciles only while it leads: a
/// lost lease (the API server was away for longer than the lease, say) stops the controller, and it
/// starts again from a fresh list when the lease is won back, in the same process, with no restart.
pub async fn run(client: Client, settings: Settings) -> Result<(), ControllerError> {
    let ns = settings.namespace.as_deref();
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .map_err(|source| ControllerError::Listen {
            addr: settings.http_addr,
            source,
        })?;
    let metrics = Arc::new(Metrics::default());
    // The current term's Chaincode cache, for the phase gauges.
    let cache: Arc<Mutex<Option<ChaincodeStore>>> = Arc::default();
    let (http_metrics, http_cache) = (metrics.clone(), cache.clone());
    let app = server::router_with(health.clone(), move || {
        let store = http_cache.lock().ok().and_then(|c| c.clone());
        if let Some(store) = store {
            http_metrics.count_phases(
                store
                    .state()
                    .iter()
                    .filter_map(|g| g.0.as_ref().ok()?.status.as_ref()?.phase),
            );
        }
        http_metrics.render()
    });
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            warn!(%error, "HTTP server stopped");
        }
    });

    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        terminate_signal().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    });
    if !wait_for_api(&api::<Chaincode>(&client, ns), &mut stop).await? {
        return Ok(());
    }
    // A follower is healthy and ready: it stands by.
    health.ready.store(true, Ordering::Relaxed);

    let (lead_tx, mut leading) = watch::channel(settings.election.is_none());
    let lease_name = settings
        .election
        .as_ref()
        .map(|e| e.lease_name.clone())
        .unwrap_or_default();
    if let Some(election) = settings.election.clone() {
        tokio::spawn(leader::run(
            client.clone(),
            election,
            lead_tx,
            health.clone(),
        ));
        info!(lease = %lease_name, "waiting for leadership");
    }
    loop {
        tokio::select! {
            won = leading.wait_for(|lead| *lead) => {
                if won.is_err() {
                    return Err(ControllerError::LostLeadership(lease_name));
                }
            }
            _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
        }
        info!("leading; starting the controller");
        let term = Term {
            client: &client,
            namespace: ns,
            health: &health,
            metrics: &metrics,
            cache: &cache,
        };
        term.run(leading.clone(), stop.clone()).await;
        if *stop.borrow() {
            return Ok(());
        }
        warn!(lease = %lease_name, "lost leadership; reconciling stops until the lease is won back");
    }
}

type ChaincodeStore = reflector::Store<DeserializeGuard<Chaincode>>;

/// One leadership term: fresh watches and cache, reconciling until shutdown or lost leadership.
struct Term<'a> {
    client: &'a Client,
    namespace: Option<&'a str>,
    health: &'a Arc<Health>,
    metrics: &'a Arc<Metrics>,
    cache: &'a Arc<Mutex<Option<ChaincodeStore>>>,
}

impl Term<'_> {
    async fn run(self, mut leading: watch::Receiver<bool>, mut stop: watch::Receiver<bool>) {
        let (client, ns) = (self.client, self.namespace);
        // Each watch recovers on its own backoff and its errors stop there: the Controller's shared
        // trigger backoff would otherwise pause every watch (and all reconciles) on one watch's
        // error, e.g. the 410 Gone each watch gets when the API server restarts.
        let chaincodes = api::<DeserializeGuard<Chaincode>>(client, ns);
        let (store, writer) = reflector::store();
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some(store.clone());
        }
        let watch_health = self.health.clone();
        let main_watch = watcher(chaincodes, watcher::Config::default().any_semantic())
            .backoff(watch_backoff())
            .inspect(move |event| watch_health.observe_watch(event))
            .reflect(writer)
            .applied_objects();
        let controller =
            Controller::for_stream(recovering("chaincodes", main_watch), store.clone());
        let ctx = Arc::new(
            Context::new(client.clone(), Some(store.clone())).with_metrics(self.metrics.clone()),
        );

        let owned = watcher::Config::default()
            .labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
        let jobs = watcher::Config::default().labels(&format!(
            "app.kubernetes.io/managed-by={MANAGED_BY},app.kubernetes.io/component=build"
        ));
        let pods = watcher(api::<Pod>(client, ns), owned.clone())
            .backoff(watch_backoff())
            .touched_objects();
        let secrets = watcher(api::<Secret>(client, ns), owned)
            .backoff(watch_backoff())
            .touched_objects();
        let build_jobs = watcher(api::<Job>(client, ns), jobs)
            .backoff(watch_backoff())
            .touched_objects();
        let job_store = store.clone();
        let end_of_term = async move {
            tokio::select! {
                _ = leading.wait_for(|lead| !*lead) => {}
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
        };
        controller
            .owns_stream(recovering("pods", pods))
            .owns_stream(recovering("secrets", secrets))
            // Build Jobs are shared by content key and have no owner: map them to every Chaincode
            // with it.
            .watches_stream(recovering("jobs", build_jobs), move |job: Job| {
                let state = job_store.state();
                chaincodes_for_job(&job, state.iter().filter_map(|g| g.0.as_ref().ok()))
            })
            .graceful_shutdown_on(end_of_term)
            .run(reconcile::reconcile_guarded, reconcile::error_policy, ctx)
            .for_each(|result| async move {
                match result {
                    Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                    Err(error) => tracing::debug!(%error, "reconcile error"),
                }
            })
            .await;
    }
}

/// Logs a watch's errors and drops them, so they never reach the Controller's shared trigger backoff;
/// the watch itself already retries on its own backoff.
pub fn recovering<K>(
    watch: &'static str,
    stream: impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Send + 'static,
{
    stream.filter(move |result| {
        if let Err(error) = result {
            if server::is_normal_watch_end(error) {
                tracing::debug!(watch, %error, "watch expired; relisting");
            } else {
                warn!(watch, %error, "watch failed; retrying with backoff");
            }
        }
        futures::future::ready(result.is_ok())
    })
}

/// Ctrl-C, or SIGTERM (what the kubelet sends) on Unix.
async fn terminate_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
