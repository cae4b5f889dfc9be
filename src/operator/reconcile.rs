//! The reconcile of one Chaincode, as fetch → validate → build → apply → status. Decisions live in
//! [`super::plan`] and [`super::desired`]; this module only talks to the API server.
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::conditions;
use super::crd::{Chaincode, ChaincodeStatus, ConditionStatus, condition_type};
use super::desired::{self, TlsMaterial};
use super::metrics::Metrics;
use super::plan::{self, ImageOutcome, ImageSource, SpecError};

/// Field manager of every write the operator makes (the endorser uses `chaincode-endorser`).
pub const FIELD_MANAGER: &str = "chaincode-operator";
/// How much of a chaincode's log goes into its condition when it ended without a termination message.
const LOG_TAIL_LINES: i64 = 20;
const LOG_TAIL_BYTES: i64 = 4096;
/// Re-check interval when nothing is expected to change (watches do the rest).
const IDLE_RECHECK: Duration = Duration::from_secs(300);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    /// Shared by every leadership term of the process, so counters survive a lost lease.
    pub metrics: Arc<Metrics>,
    /// The controller's Chaincode cache, to reuse images other Chaincodes already built.
    pub store: Option<Store<DeserializeGuard<Chaincode>>>,
}

impl Context {
    pub fn new(client: Client, store: Option<Store<DeserializeGuard<Chaincode>>>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics: Arc::new(Metrics::default()),
            store,
        }
    }

    /// Counts into `metrics` (the process's) instead of a fresh set.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid Chaincode spec: {0}")]
    Spec(#[from] SpecError),
    #[error("Chaincode could not be read: {0}")]
    Malformed(String),
    #[error("TLS Secret {secret}: {problem}")]
    TlsSecret { secret: String, problem: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// Category for metrics and the error policy.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Spec(_) | Error::Malformed(_) => "spec",
            Error::TlsSecret { .. } => "dependency",
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::Kube(_) => "api",
        }
    }
}

/// Spec errors wait for a change of the object; a missing dependency and conflicts retry soon; other
/// API errors back off.
pub fn error_policy(
    _cc: Arc<DeserializeGuard<Chaincode>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.failure(error.category());
    warn!(%error, category = error.category(), "reconcile failed");
    match error.category() {
        "spec" => Action::await_change(),
        "conflict" => Action::requeue(Duration::from_secs(2)),
        "dependency" => Action::requeue(Duration::from_secs(15)),
        _ => Action::requeue(Duration::from_secs(30)),
    }
}

/// Controller entry point: unwraps the DeserializeGuard so one malformed object fails alone.
pub async fn reconcile_guarded(
    guarded: Arc<DeserializeGuard<Chaincode>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    match &guarded.0 {
        Ok(cc) => reconcile(cc, &ctx, Timestamp::now()).await,
        Err(invalid) => {
            let reference = guarded.object_ref(&());
            // Say it in the status too: an Event alone expires and `kubectl get cc` shows nothing.
            if let (Some(name), Some(namespace)) = (&reference.name, &reference.namespace) {
                let status = plan::malformed_status(
                    &invalid.error,
                    invalid.metadata.generation,
                    Timestamp::now(),
                );
                let api: Api<Chaincode> = Api::namespaced(ctx.client.clone(), namespace);
                let patch = json!({
                    "apiVersion": Chaincode::api_version(&()),
                    "kind": Chaincode::kind(&()),
                    "status": status,
                });
                if let Err(error) = api
                    .patch_status(
                        name,
                        &PatchParams::apply(FIELD_MANAGER),
                        &Patch::Apply(&patch),
                    )
                    .await
                {
                    warn!(%error, chaincode = %name, "could not write the status of a malformed Chaincode");
                }
            }
            publish(
                &ctx,
                &reference,
                EventType::Warning,
                "InvalidObject",
                &invalid.error,
            )
            .await;
            Err(Error::Malformed(invalid.error.clone()))
        }
    }
}

/// Reconciles one Chaincode at time `now`.
pub async fn reconcile(cc: &Chaincode, ctx: &Context, now: Timestamp) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let namespace = cc
        .namespace()
        .ok_or_else(|| Error::Malformed("Chaincode without namespace".into()))?;
    if cc.metadata.deletion_timestamp.is_some() {
        // Pods and Secrets carry ownerReferences: the garbage collector removes them.
        return Ok(Action::await_change());
    }
    let chaincodes: Api<Chaincode> = Api::namespaced(ctx.client.clone(), &namespace);

    // validate
    let source = match plan::validate(cc) {
        Ok(source) => source,
        Err(error) => {
            let status = plan::invalid_spec_status(cc, &error, now);
            write_status(ctx, &chaincodes, cc, status).await?;
            return Err(error.into());
        }
    };

    // build
    let (image, content_digest) = match build_step(cc, ctx, &namespace, &source).await {
        Ok(step) => step,
        Err(error) => return Err(report_forbidden(ctx, &chaincodes, cc, error, now).await),
    };

    // launch
    let pod = match &image {
        ImageOutcome::Ready {
            image: reference, ..
        } => {
            match launch_step(cc, ctx, &namespace, reference).await {
                Ok(pod) => Some(pod),
                Err(error @ Error::TlsSecret { .. }) => {
                    // Say so in the status, then retry soon: the endorser may still be writing it.
                    let decision =
                        plan::decide_status(cc, &image, None, content_digest.as_deref(), now);
                    let status = plan::with_launch_blocked(
                        cc,
                        decision.status,
                        "TlsSecretUnavailable",
                        &error.to_string(),
                        now,
                    );
                    write_status(ctx, &chaincodes, cc, status).await?;
                    return Err(error);
                }
                Err(error) => {
                    return Err(report_forbidden(ctx, &chaincodes, cc, error, now).await);
                }
            }
        }
        _ => None,
    };

    // status
    let decision = plan::decide_status(cc, &image, pod.as_ref(), content_digest.as_deref(), now);
    record_durations(ctx, cc, &decision.status, pod.as_ref(), now);
    write_status(ctx, &chaincodes, cc, decision.status).await?;
    Ok(Action::requeue(
        decision.recheck_after.map_or(IDLE_RECHECK, |d| {
            d.min(IDLE_RECHECK) + Duration::from_secs(1)
        }),
    ))
}

/// A 403 means the operator's RBAC lacks a permission: say which in the status (the log alone is
/// where nobody looks), then fail the reconcile as before.
async fn report_forbidden(
    ctx: &Context,
    chaincodes: &Api<Chaincode>,
    cc: &Chaincode,
    error: Error,
    now: Timestamp,
) -> Error {
    if let Error::Kube(kube::Error::Api(status)) = &error
        && status.code == 403
    {
        let message = format!(
            "the operator is not allowed to do this (check its ClusterRole against docs/operator.md): {}",
            status.message
        );
        let blocked = plan::blocked_status(cc, "Forbidden", &message, now);
        if let Err(write) = write_status(ctx, chaincodes, cc, blocked).await {
            warn!(error = %write, "could not report a permission error in the status");
        }
    }
    error
}

async fn build_step(
    cc: &Chaincode,
    ctx: &Context,
    namespace: &str,
    source: &ImageSource,
) -> Result<(ImageOutcome, Option<String>), Error> {
    let (content_hex, registry) = match source {
        ImageSource::Prebuilt { image } => {
            return Ok((
                ImageOutcome::Ready {
                    image: image.clone(),
                    built_by: None,
                },
                None,
            ));
        }
        ImageSource::Build {
            content_hex,
            registry,
        } => (content_hex, registry),
    };
    let content_digest = format!("sha256:{content_hex}");
    let job_name = desired::build_job_name(content_hex);

    // An image this operator already recorded for the content key needs no Job at all.
    let own = cc.status.iter().collect::<Vec<_>>();
    let known = plan::known_image(&own, &content_digest)
        .or_else(|| sibling_image(ctx, namespace, &content_digest));
    if let Some(image) = known {
        return Ok((
            ImageOutcome::Ready {
                image,
                built_by: Some(job_name),
            },
            Some(content_digest),
        ));
    }

    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    // The first Chaincode to need a context decides where it is pushed; later ones run it from there.
    let mut pushed_to = registry.clone();
    let mut stuck = None;
    let state = match jobs.get_opt(&job_name).await? {
        None => None,
        Some(job) => {
            if let Some(repository) = job.annotations().get(desired::ANNOTATION_REPOSITORY) {
                pushed_to = repository.clone();
            }
            // Finished: the pods hold the digest or log tail; running: they say why nothing moves.
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
            let job_pods = pods
                .list(&ListParams::default().labels(&format!("job-name={job_name}")))
                .await?
                .items;
            if !job_finished(&job) {
                let events = match plan::stuck_build(&job_name, &job_pods, &[]) {
                    Some(_) => Vec::new(),
                    None => warning_events(ctx, namespace, None).await?,
                };
                if let Some((reason, message)) = plan::stuck_build(&job_name, &job_pods, &events) {
                    stuck = Some((reason, message));
                }
            }
            if let Some(seconds) = plan::job_duration(&job)
                && job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) > 0
                && !cc_has_built(cc)
            {
                ctx.metrics.build_seconds.observe(seconds);
            }
            Some(plan::observe_job(&job, &job_pods))
        }
    };
    let mut outcome = plan::image_outcome(&pushed_to, &job_name, state.as_ref());
    if let (ImageOutcome::Building { job }, Some((reason, message))) = (&outcome, stuck) {
        outcome = ImageOutcome::Stuck {
            job: job.clone(),
            reason,
            message,
        };
    }
    if let ImageOutcome::BuildStarted { job } = &outcome {
        // Rootless BuildKit needs Unconfined seccomp/AppArmor: say so instead of a refused Job.
        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
        let labels = namespaces
            .get(namespace)
            .await?
            .metadata
            .labels
            .unwrap_or_default();
        if let Some(message) = plan::pod_security_blocks_build(namespace, &labels) {
            return Ok((
                ImageOutcome::Stuck {
                    job: job.clone(),
                    reason: "PodSecurityForbidsBuild".into(),
                    message,
                },
                Some(content_digest),
            ));
        }
    }
    if let ImageOutcome::BuildStarted { .. } = outcome {
        let job = desired::build_job(
            cc,
            cc.spec.source.as_ref().ok_or(SpecError::NothingToRun)?,
            registry,
            content_hex,
        );
        jobs.patch(
            &job_name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&job),
        )
        .await?;
        info!(job = %job_name, chaincode = %cc.name_any(), "build Job created");
    }
    Ok((outcome, Some(content_digest)))
}

fn job_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| s.succeeded.unwrap_or(0) > 0 || s.failed.unwrap_or(0) > 0)
}

fn cc_has_built(cc: &Chaincode) -> bool {
    cc.status.as_ref().is_some_and(|s| {
        conditions::find(&s.conditions, super::crd::condition_type::BUILT)
            .is_some_and(|c| c.status == ConditionStatus::True)
    })
}

/// An image another Chaincode in the namespace already runs for this content digest (from the cache).
fn sibling_image(ctx: &Context, namespace: &str, content_digest: &str) -> Option<String> {
    let store = ctx.store.as_ref()?;
    store
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|c| c.metadata.namespace.as_deref() == Some(namespace))
        .find_map(|c| {
            let status = c.status.as_ref()?;
            (status.content_digest.as_deref() == Some(content_digest))
                .then(|| status.image_digest.clone())
                .flatten()
        })
}

async fn launch_step(
    cc: &Chaincode,
    ctx: &Context,
    namespace: &str,
    image: &str,
) -> Result<plan::PodObservation, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = ListParams::default().labels(&desired::owned_selector(cc));
    let existing_pods = pods.list(&selector).await?.items;
    let existing_secrets = secrets.list_metadata(&selector).await?.items;
    let pod_name = desired::launch_pod_name(cc, image);
    let launch = plan::plan_launch(
        &pod_name,
        cc.spec.tls.is_some(),
        &existing_pods
            .iter()
            .map(|p| p.name_any())
            .collect::<Vec<_>>(),
        &existing_secrets
            .iter()
            .map(|s| s.name_any())
            .collect::<Vec<_>>(),
    );
    let apply = PatchParams::apply(FIELD_MANAGER);

    if launch.create_secret
        && let Some(tls) = &cc.spec.tls
    {
        let material = read_tls_material(&secrets, &tls.secret_name).await?;
        let secret = desired::tls_secret(cc, &pod_name, &material);
        let secret_name = desired::tls_secret_name(&pod_name);
        secrets
            .patch(&secret_name, &apply, &Patch::Apply(&secret))
            .await?;
    }
    let observed = if launch.create_pod {
        let pod = desired::chaincode_pod(cc, image, &pod_name);
        let created = pods.patch(&pod_name, &apply, &Patch::Apply(&pod)).await?;
        info!(pod = %pod_name, chaincode = %cc.name_any(), "chaincode Pod created");
        publish(
            ctx,
            &cc.object_ref(&()),
            EventType::Normal,
            "Launching",
            &format!("created Pod {pod_name} running {image}"),
        )
        .await;
        plan::observe_pod(&created)
    } else {
        existing_pods
            .iter()
            .find(|p| p.name_any() == pod_name)
            .map(plan::observe_pod)
            .unwrap_or_else(|| plan::PodObservation {
                name: pod_name.clone(),
                phase: "Pending".into(),
                created: None,
                waiting: None,
                terminated: None,
            })
    };
    let mut observed = observed;
    // A Pod created just now has no Events yet.
    if !launch.create_pod && observed.needs_events() {
        let events = warning_events(ctx, namespace, Some(&observed.name)).await?;
        observed.waiting = plan::latest_warning(&events, |name| name == observed.name);
    }
    if observed.needs_log_tail() {
        // Exit 0 (or a crash) without a termination message: the log tail says why.
        let params = LogParams {
            tail_lines: Some(LOG_TAIL_LINES),
            limit_bytes: Some(LOG_TAIL_BYTES),
            ..LogParams::default()
        };
        let message = match pods.logs(&observed.name, &params).await {
            Ok(log) => plan::log_tail_message(&log),
            Err(error) => format!("(log unavailable: {error})"),
        };
        if let Some(terminated) = observed.terminated.as_mut() {
            terminated.2 = message;
        }
    }
    // Stale launches: the old Pod goes first so it stops dialling the peer.
    for stale in &launch.delete_pods {
        delete_if_present(pods.delete(stale, &DeleteParams::background()).await)?;
        info!(pod = %stale, "deleted Pod of a stale launch");
    }
    for stale in &launch.delete_secrets {
        delete_if_present(secrets.delete(stale, &DeleteParams::background()).await)?;
    }
    Ok(observed)
}

/// Warning Events in the namespace (about one object when named), to explain what does not start.
async fn warning_events(
    ctx: &Context,
    namespace: &str,
    about: Option<&str>,
) -> Result<Vec<KubeEvent>, Error> {
    let events: Api<KubeEvent> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = match about {
        Some(name) => format!("type=Warning,regarding.name={name}"),
        None => "type=Warning".to_string(),
    };
    Ok(events
        .list(&ListParams::default().fields(&selector))
        .await?
        .items)
}

fn delete_if_present<T>(result: Result<T, kube::Error>) -> Result<(), Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn read_tls_material(secrets: &Api<Secret>, name: &str) -> Result<TlsMaterial, Error> {
    let problem = |problem: String| Error::TlsSecret {
        secret: name.to_string(),
        problem,
    };
    let secret = secrets
        .get_opt(name)
        .await?
        .ok_or_else(|| problem("not found".into()))?;
    let data = secret.data.unwrap_or_default();
    let key = |k: &str| {
        data.get(k)
            .map(|v| v.0.clone())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| problem(format!("has no key {k:?} (PEM)")))
    };
    Ok(TlsMaterial {
        client_key_pem: key(desired::SOURCE_CLIENT_KEY)?,
        client_cert_pem: key(desired::SOURCE_CLIENT_CERT)?,
        peer_root_pem: key(desired::SOURCE_PEER_ROOT)?,
    })
}

fn record_durations(
    ctx: &Context,
    cc: &Chaincode,
    status: &ChaincodeStatus,
    pod: Option<&plan::PodObservation>,
    now: Timestamp,
) {
    let was_ready = cc.status.as_ref().is_some_and(|s| {
        conditions::find(&s.conditions, super::crd::condition_type::READY)
            .is_some_and(|c| c.status == ConditionStatus::True)
    });
    let is_ready = conditions::find(&status.conditions, super::crd::condition_type::READY)
        .is_some_and(|c| c.status == ConditionStatus::True);
    if is_ready
        && !was_ready
        && let Some(created) = pod.and_then(|p| p.created)
    {
        ctx.metrics
            .launch_seconds
            .observe(now.duration_since(created).as_secs_f64());
    }
}

/// Server-side applies the operator's part of the status, only when it changed; Events on transitions.
async fn write_status(
    ctx: &Context,
    api: &Api<Chaincode>,
    cc: &Chaincode,
    status: ChaincodeStatus,
) -> Result<(), Error> {
    if !plan::status_differs(cc.status.as_ref(), &status) {
        return Ok(());
    }
    let current = cc
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let transitions = conditions::transitions(&current, &status.conditions);
    let patch = json!({
        "apiVersion": Chaincode::api_version(&()),
        "kind": Chaincode::kind(&()),
        "status": status,
    });
    api.patch_status(
        &cc.name_any(),
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Apply(&patch),
    )
    .await?;
    let reference = cc.object_ref(&());
    let mut published: Vec<String> = Vec::new();
    for t in transitions {
        // One Event per reason: a failure shows up on several conditions but is one story.
        let Some(type_) = event_type(&t) else {
            continue;
        };
        if published.contains(&t.reason) {
            continue;
        }
        published.push(t.reason.clone());
        let note = format!("{}={:?}: {}", t.type_, t.status, t.message);
        publish(ctx, &reference, type_, &t.reason, &note).await;
    }
    Ok(())
}

/// Reasons that mean something went wrong (Warning Events).
const FAILURE_REASONS: [&str; 9] = [
    "Forbidden",
    "PodSecurityForbidsBuild",
    "TlsSecretUnavailable",
    "BuildFailed",
    "PodFailed",
    "ImagePullFailed",
    "PodNotStarting",
    "StartupTimeout",
    "InvalidSpec",
];

/// Which transitions deserve an Event: failures, build progress, and becoming Ready. The launch itself
/// has its own Event when the Pod is created.
fn event_type(t: &conditions::Transition) -> Option<EventType> {
    let reason = t.reason.as_str();
    if FAILURE_REASONS.contains(&reason)
        || plan::STUCK_WAITING_REASONS.contains(&reason)
        || plan::STUCK_EVENT_REASONS.contains(&reason)
        || reason == "Unschedulable"
    {
        Some(EventType::Warning)
    } else if t.type_ == condition_type::BUILT
        || (t.type_ == condition_type::READY && t.status == ConditionStatus::True)
    {
        Some(EventType::Normal)
    } else {
        None
    }
}

/// Events are best effort: a failed Event must not fail the reconcile.
async fn publish(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        // The events API caps note at 1 KiB.
        note: Some(
            note.chars()
                .rev()
                .take(1000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect(),
        ),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, reference).await {
        warn!(%error, reason, "could not publish Event");
    }
}
