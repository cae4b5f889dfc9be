//! Runs the controller: CRD check, HTTP port, leader election, watches (Chaincodes guarded against
//! malformed objects, owned Pods and Secrets, build Jobs by content key) and the reconcile loop.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use super::crd::Chaincode;
use super::desired::{self, LABEL_CONTENT_KEY, MANAGED_BY};
use super::leader::{self, Election};
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
    #[error("lost leadership of Lease {0}; exiting so a fresh process can campaign again")]
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

/// Runs until shutdown (Ctrl-C / SIGTERM) or lost leadership.
pub async fn run(client: Client, settings: Settings) -> Result<(), ControllerError> {
    let ns = settings.namespace.as_deref();
    check_crd(&api::<Chaincode>(&client, ns)).await?;

    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .map_err(|source| ControllerError::Listen {
            addr: settings.http_addr,
            source,
        })?;

    // Each watch recovers on its own backoff and its errors stop there: the Controller's shared trigger
    // backoff would otherwise pause every watch (and all reconciles) on one watch's error, e.g. the
    // 410 Gone each watch gets when the API server restarts.
    let chaincodes = api::<DeserializeGuard<Chaincode>>(&client, ns);
    let (store, writer) = reflector::store();
    let watch_health = health.clone();
    let main_watch = watcher(chaincodes, watcher::Config::default().any_semantic())
        .default_backoff()
        .inspect(move |event| watch_health.observe_watch(event))
        .reflect(writer)
        .applied_objects();
    let controller = Controller::for_stream(recovering("chaincodes", main_watch), store.clone());
    let ctx = Arc::new(Context::new(client.clone(), Some(store.clone())));

    let ctx_for_http = ctx.clone();
    let phase_store = store.clone();
    let app = server::router_with(health.clone(), move || {
        ctx_for_http.metrics.count_phases(
            phase_store
                .state()
                .iter()
                .filter_map(|g| g.0.as_ref().ok()?.status.as_ref()?.phase),
        );
        ctx_for_http.metrics.render()
    });
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            warn!(%error, "HTTP server stopped");
        }
    });
    // A follower is healthy and ready: it stands by.
    health.ready.store(true, Ordering::Relaxed);

    let (lead_tx, mut lead_rx) = watch::channel(settings.election.is_none());
    let lease_name = settings
        .election
        .as_ref()
        .map(|e| e.lease_name.clone())
        .unwrap_or_default();
    if let Some(election) = settings.election.clone() {
        tokio::spawn(leader::run(client.clone(), election, lead_tx));
        info!(lease = %lease_name, "waiting for leadership");
        while !*lead_rx.borrow_and_update() {
            if lead_rx.changed().await.is_err() {
                return Err(ControllerError::LostLeadership(lease_name));
            }
        }
        info!("leading; starting the controller");
    }

    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    let jobs = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/managed-by={MANAGED_BY},app.kubernetes.io/component=build"
    ));
    let job_store = store.clone();
    let mut lost = lead_rx.clone();
    let lost_leadership = async move {
        while lost.changed().await.is_ok() {
            if !*lost.borrow() {
                return;
            }
        }
    };
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let shutdown = async move {
        tokio::select! {
            _ = lost_leadership => { let _ = stop_tx.send(true); }
            _ = terminate_signal() => info!("shutting down"),
        }
    };
    let pods = watcher(api::<Pod>(&client, ns), owned.clone())
        .default_backoff()
        .touched_objects();
    let secrets = watcher(api::<Secret>(&client, ns), owned)
        .default_backoff()
        .touched_objects();
    let build_jobs = watcher(api::<Job>(&client, ns), jobs)
        .default_backoff()
        .touched_objects();
    controller
        .owns_stream(recovering("pods", pods))
        .owns_stream(recovering("secrets", secrets))
        // Build Jobs are shared by content key and have no owner: map them to every Chaincode with it.
        .watches_stream(recovering("jobs", build_jobs), move |job: Job| {
            let state = job_store.state();
            chaincodes_for_job(&job, state.iter().filter_map(|g| g.0.as_ref().ok()))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile_guarded, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                Err(error) => tracing::debug!(%error, "reconcile error"),
            }
        })
        .await;
    if *stop_rx.borrow_and_update() {
        return Err(ControllerError::LostLeadership(lease_name));
    }
    Ok(())
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
