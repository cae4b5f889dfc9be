//! The sans-IO core of a reconcile: validation, what the build and launch steps should do given what
//! was observed, and the status that results. Plain data in, plain data out.
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::conditions::{self, WantedCondition};
use super::crd::{
    Chaincode, ChaincodeStatus, ConditionStatus, DEFAULT_STARTUP_TIMEOUT_SECONDS, MAX_NAME_CHARS,
    Phase, Platform, condition_type,
};
use super::desired::digest_hex;

/// Largest condition message; kubectl describe stays readable and the object small.
const MAX_MESSAGE_CHARS: usize = 1_500;
/// Re-check of a build or Pod that is waiting: Events (FailedCreate, FailedMount) trigger no watch.
pub const STUCK_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// A spec the operator cannot act on until a user changes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("neither spec.source nor spec.image is set: nothing to build or run")]
    NothingToRun,
    #[error("platform 'image' needs spec.image (a prebuilt image by digest)")]
    ImagePlatformWithoutImage,
    #[error("spec.image.digest {0:?} is not sha256:<64 lowercase hex>")]
    BadImageDigest(String),
    #[error("spec.source.contentDigest {0:?} is not sha256:<64 lowercase hex>")]
    BadContentDigest(String),
    #[error("spec.source must name exactly one of configMap, secret, url")]
    AmbiguousSource,
    #[error("spec.source.url {0:?} must be an http:// or https:// URL")]
    BadSourceUrl(String),
    #[error("building needs spec.build.registry (the repository to push to)")]
    NoRegistry,
    #[error("spec.packageId {0:?} is not <label>:<hex sha256>")]
    BadPackageId(String),
    #[error(
        "metadata.name has {0} characters; at most 63 fit the label every owned object carries \
         (recreate the Chaincode with a shorter name)"
    )]
    NameTooLong(usize),
    #[error(
        "spec.source and spec.image are both set: set source to build, or image to run prebuilt"
    )]
    SourceAndImage,
    #[error("spec.peer.address {0:?} is not host:port")]
    BadPeerAddress(String),
    #[error("spec.peer.mspId is empty")]
    EmptyMspId,
}

/// `host:port` with a non-empty host without spaces and a 1-5 digit port (the CRD schema's pattern,
/// checked again for objects stored before it existed).
pub fn peer_address_ok(address: &str) -> bool {
    address.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.chars().any(char::is_whitespace)
            && (1..=5).contains(&port.len())
            && port.bytes().all(|b| b.is_ascii_digit())
    })
}

/// What the build step works from, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    Prebuilt {
        image: String,
    },
    Build {
        content_hex: String,
        registry: String,
    },
}

/// Checks what the schema cannot fully express and returns where the image comes from.
pub fn validate(cc: &Chaincode) -> Result<ImageSource, SpecError> {
    let spec = &cc.spec;
    let name_chars = cc
        .metadata
        .name
        .as_deref()
        .unwrap_or_default()
        .chars()
        .count();
    if name_chars > MAX_NAME_CHARS {
        return Err(SpecError::NameTooLong(name_chars));
    }
    if spec.source.is_some() && spec.image.is_some() {
        return Err(SpecError::SourceAndImage);
    }
    if !peer_address_ok(&spec.peer.address) {
        return Err(SpecError::BadPeerAddress(spec.peer.address.clone()));
    }
    if spec.peer.msp_id.trim().is_empty() {
        return Err(SpecError::EmptyMspId);
    }
    let package_ok = spec
        .package_id
        .rsplit_once(':')
        .is_some_and(|(label, hash)| {
            !label.is_empty() && digest_hex(&format!("sha256:{hash}")).is_some()
        });
    if !package_ok {
        return Err(SpecError::BadPackageId(spec.package_id.clone()));
    }
    if let Some(image) = &spec.image {
        if digest_hex(&image.digest).is_none() {
            return Err(SpecError::BadImageDigest(image.digest.clone()));
        }
        return Ok(ImageSource::Prebuilt {
            image: format!("{}@{}", image.name, image.digest),
        });
    }
    if spec.platform == Platform::Image {
        return Err(SpecError::ImagePlatformWithoutImage);
    }
    let source = spec.source.as_ref().ok_or(SpecError::NothingToRun)?;
    let content_hex = digest_hex(&source.content_digest)
        .ok_or_else(|| SpecError::BadContentDigest(source.content_digest.clone()))?;
    let places = [
        source.config_map.is_some(),
        source.secret.is_some(),
        source.url.is_some(),
    ];
    if places.iter().filter(|set| **set).count() != 1 {
        return Err(SpecError::AmbiguousSource);
    }
    if let Some(url) = &source.url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(SpecError::BadSourceUrl(url.clone()));
    }
    let registry = spec
        .build
        .registry
        .clone()
        .filter(|r| !r.is_empty())
        .ok_or(SpecError::NoRegistry)?;
    Ok(ImageSource::Build {
        content_hex: content_hex.to_string(),
        registry,
    })
}

/// A build Job as the build step sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded { digest: Option<String> },
    Failed { message: String },
}

/// The build Job's state, with the termination message of its pod (digest on success, log tail on
/// failure thanks to `FallbackToLogsOnError`).
pub fn observe_job(job: &Job, job_pods: &[Pod]) -> JobState {
    let status = job.status.clone().unwrap_or_default();
    let succeeded = status.succeeded.unwrap_or(0) > 0;
    let failed = status.failed.unwrap_or(0) > 0
        || status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Failed" && c.status == "True");
    if !succeeded && !failed {
        return JobState::Running;
    }
    let statuses: Vec<&ContainerStatus> = job_pods
        .iter()
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .collect();
    if succeeded {
        let digest = statuses
            .iter()
            .filter(|c| c.name == "build")
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
            .map(|m| m.trim().to_string())
            .find(|m| digest_hex(m).is_some());
        return JobState::Succeeded { digest };
    }
    // The first container that failed says why (fetch-context before build).
    let failure = statuses.iter().find_map(|c| {
        let t = c.state.as_ref()?.terminated.as_ref()?;
        (t.exit_code != 0).then(|| {
            let tail = t.message.clone().unwrap_or_default();
            format!(
                "container {} exited {} ({}): {}",
                c.name,
                t.exit_code,
                t.reason.clone().unwrap_or_default(),
                tail.trim()
            )
        })
    });
    let job_reason = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed")
        .map(|c| {
            format!(
                "{}: {}",
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default()
            )
        });
    JobState::Failed {
        message: failure
            .or(job_reason)
            .unwrap_or_else(|| "build Job failed; its pod is gone, no log tail left".into()),
    }
}

/// How long a finished Job took, for the build duration metric.
pub fn job_duration(job: &Job) -> Option<f64> {
    let status = job.status.as_ref()?;
    let start = status.start_time.as_ref()?.0;
    let end = status.completion_time.as_ref()?.0;
    Some(end.duration_since(start).as_secs_f64())
}

/// Container waiting reasons that do not go away by themselves: the pod will not start until someone
/// acts (pushes the image, fixes the reference, creates the ConfigMap or Secret).
pub const STUCK_WAITING_REASONS: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Warning Event reasons that explain why a Job makes no Pod or a Pod does not start.
pub const STUCK_EVENT_REASONS: [&str; 5] = [
    "FailedCreate",
    "FailedMount",
    "FailedScheduling",
    "FailedCreatePodSandBox",
    "FailedAttachVolume",
];

/// Why a pod is not starting, from its container statuses (init containers first) and its
/// PodScheduled condition: `(reason, message)`.
pub fn pod_not_starting(pod: &Pod) -> Option<(String, String)> {
    let status = pod.status.as_ref()?;
    let stuck = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.clone().unwrap_or_default();
            STUCK_WAITING_REASONS.contains(&reason.as_str()).then(|| {
                let message = waiting.message.clone().unwrap_or_default();
                (reason, format!("container {}: {}", c.name, message))
            })
        });
    stuck.or_else(|| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            .map(|c| {
                (
                    c.reason.clone().unwrap_or_else(|| "Unschedulable".into()),
                    c.message.clone().unwrap_or_default(),
                )
            })
    })
}

/// The latest Warning Event with a stuck reason about an object `about` accepts: `(reason, note)`.
pub fn latest_warning(
    events: &[KubeEvent],
    about: impl Fn(&str) -> bool,
) -> Option<(String, String)> {
    events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| {
            e.reason
                .as_deref()
                .is_some_and(|r| STUCK_EVENT_REASONS.contains(&r))
        })
        .filter(|e| {
            e.regarding
                .as_ref()
                .and_then(|r| r.name.as_deref())
                .is_some_and(&about)
        })
        .max_by_key(|e| {
            e.series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
        })
        .map(|e| {
            (
                e.reason.clone().unwrap_or_default(),
                e.note.clone().unwrap_or_default(),
            )
        })
}

/// Why an unfinished build Job makes no progress, if its pods or Events say so: a pod that cannot
/// pull or configure a container, else the latest FailedCreate (e.g. Pod Security) / FailedMount (a
/// missing context ConfigMap) Warning about the Job or one of its pods.
pub fn stuck_build(
    job_name: &str,
    job_pods: &[Pod],
    events: &[KubeEvent],
) -> Option<(String, String)> {
    job_pods.iter().find_map(pod_not_starting).or_else(|| {
        let pod_prefix = format!("{job_name}-");
        latest_warning(events, |name| {
            name == job_name || name.starts_with(&pod_prefix)
        })
    })
}

/// Pod Security `enforce` levels that forbid what rootless BuildKit needs (seccomp and AppArmor
/// `Unconfined`): the build Job's pod would be refused, so the operator says so instead.
pub fn pod_security_blocks_build(
    namespace: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    let level = labels.get("pod-security.kubernetes.io/enforce")?;
    matches!(level.as_str(), "restricted" | "baseline").then(|| {
        format!(
            "namespace {namespace} enforces Pod Security {level:?}; the rootless BuildKit build Job needs \
             seccomp and AppArmor Unconfined (Pod Security \"privileged\"). Build in another namespace, \
             label this one pod-security.kubernetes.io/enforce=privileged, or use a prebuilt spec.image"
        )
    })
}

/// Outcome of the build step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageOutcome {
    /// The image to run, by digest.
    Ready {
        image: String,
        built_by: Option<String>,
    },
    /// No Job existed for the content key: the reconcile created it.
    BuildStarted {
        job: String,
    },
    Building {
        job: String,
    },
    /// Not finished and not progressing (pull errors, FailedCreate, FailedMount, Pod Security).
    Stuck {
        job: String,
        reason: String,
        message: String,
    },
    Failed {
        job: String,
        message: String,
    },
}

/// Decides the build step from the Job (if any) of the content key.
pub fn image_outcome(registry: &str, job_name: &str, job: Option<&JobState>) -> ImageOutcome {
    let job_name = job_name.to_string();
    match job {
        None => ImageOutcome::BuildStarted { job: job_name },
        Some(JobState::Running) => ImageOutcome::Building { job: job_name },
        Some(JobState::Succeeded {
            digest: Some(digest),
        }) => ImageOutcome::Ready {
            image: format!("{registry}@{digest}"),
            built_by: Some(job_name),
        },
        Some(JobState::Succeeded { digest: None }) => ImageOutcome::Failed {
            job: job_name,
            message:
                "build Job succeeded but did not report an image digest in its termination message"
                    .into(),
        },
        Some(JobState::Failed { message }) => ImageOutcome::Failed {
            job: job_name,
            message: message.clone(),
        },
    }
}

/// A digest the operator already knows for a content key (its own status or a sibling Chaincode's).
pub fn known_image(statuses: &[&ChaincodeStatus], content_digest: &str) -> Option<String> {
    statuses.iter().find_map(|s| {
        (s.content_digest.as_deref() == Some(content_digest))
            .then(|| s.image_digest.clone())
            .flatten()
    })
}

/// The chaincode Pod as the launch step sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObservation {
    pub name: String,
    pub phase: String,
    pub created: Option<Timestamp>,
    /// Why the container is not running yet (e.g. ImagePullBackOff) and the kubelet's message.
    pub waiting: Option<(String, String)>,
    /// How the container ended: reason, exit code, termination message (log tail).
    pub terminated: Option<(String, i32, String)>,
}

pub fn observe_pod(pod: &Pod) -> PodObservation {
    let status = pod.status.clone().unwrap_or_default();
    let container = status.container_statuses.iter().flatten().next();
    let state = container.and_then(|c| c.state.clone());
    PodObservation {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase: status.phase.unwrap_or_else(|| "Pending".into()),
        created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        waiting: state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .map(|w| {
                (
                    w.reason.clone().unwrap_or_default(),
                    w.message.clone().unwrap_or_default(),
                )
            })
            .filter(|(reason, _)| !reason.is_empty() && reason != "ContainerCreating")
            .or_else(|| pod_not_starting(pod)),
        terminated: state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| {
            (
                t.reason.clone().unwrap_or_default(),
                t.exit_code,
                t.message.clone().unwrap_or_default(),
            )
        }),
    }
}

impl PodObservation {
    /// Ended without a termination message (e.g. exit 0 before registering): the log must say why.
    pub fn needs_log_tail(&self) -> bool {
        self.terminated
            .as_ref()
            .is_some_and(|(_, _, message)| message.trim().is_empty())
    }

    /// Waiting with nothing the kubelet reported yet: Events (FailedMount) may say more.
    pub fn needs_events(&self) -> bool {
        self.phase == "Pending" && self.waiting.is_none()
    }
}

/// The log tail as a termination message would carry it (last lines, kept short).
pub fn log_tail_message(log: &str) -> String {
    let log = log.trim();
    if log.is_empty() {
        "(the container wrote no log)".into()
    } else {
        format!("log tail: {}", tail(log))
    }
}

/// What the launch step must change, given the owned Pods and Secrets that exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchPlan {
    pub pod_name: String,
    pub secret_name: Option<String>,
    pub create_secret: bool,
    pub create_pod: bool,
    pub delete_pods: Vec<String>,
    pub delete_secrets: Vec<String>,
}

/// Keeps the current launch's Pod and Secret, creates what is missing, deletes stale launches.
pub fn plan_launch(
    pod_name: &str,
    tls: bool,
    existing_pods: &[String],
    existing_secrets: &[String],
) -> LaunchPlan {
    let secret_name = tls.then(|| super::desired::tls_secret_name(pod_name));
    let pod_exists = existing_pods.iter().any(|p| p == pod_name);
    let secret_exists = secret_name
        .as_ref()
        .is_some_and(|s| existing_secrets.iter().any(|e| e == s));
    LaunchPlan {
        pod_name: pod_name.to_string(),
        secret_name: secret_name.clone(),
        // An existing Pod already has its files; a Secret is only worth (re)creating before the Pod.
        create_secret: tls && !secret_exists && !pod_exists,
        create_pod: !pod_exists,
        delete_pods: existing_pods
            .iter()
            .filter(|p| *p != pod_name)
            .cloned()
            .collect(),
        delete_secrets: existing_secrets
            .iter()
            .filter(|s| Some(*s) != secret_name.as_ref())
            .cloned()
            .collect(),
    }
}

/// The operator-owned part of the status, plus when to look again.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusDecision {
    pub status: ChaincodeStatus,
    /// Re-check after this long even without watch events (startup deadline).
    pub recheck_after: Option<std::time::Duration>,
}

/// Formats a timestamp the way Kubernetes writes metav1.Time.
pub fn k8s_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Keeps the end of a message (where build and crash logs say what went wrong).
pub fn tail(message: &str) -> String {
    let message = message.trim();
    let count = message.chars().count();
    if count <= MAX_MESSAGE_CHARS {
        return message.to_string();
    }
    let kept: String = message.chars().skip(count - MAX_MESSAGE_CHARS).collect();
    format!("...{kept}")
}

/// Whether the endorser's `Registered` condition speaks for this generation of the Chaincode.
pub fn registered(cc: &Chaincode) -> bool {
    let current = cc
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    conditions::find(current, condition_type::REGISTERED).is_some_and(|c| {
        c.status == ConditionStatus::True
            && c.observed_generation
                .is_none_or(|g| Some(g) == cc.metadata.generation)
    })
}

/// Reason of a `Registered=Unknown` that a stock Fabric peer's external builder writes: its
/// chaincode dials the peer directly, so registration is never observed and must not time out.
pub const REGISTRATION_UNOBSERVED: &str = "StockPeer";

/// Whether the launcher said registration cannot be observed for this generation.
pub fn registration_unobserved(cc: &Chaincode) -> bool {
    let current = cc
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    conditions::find(current, condition_type::REGISTERED).is_some_and(|c| {
        c.status == ConditionStatus::Unknown
            && c.reason == REGISTRATION_UNOBSERVED
            && c.observed_generation
                .is_none_or(|g| Some(g) == cc.metadata.generation)
    })
}

/// Computes the operator's status from the step outcomes.
pub fn decide_status(
    cc: &Chaincode,
    image: &ImageOutcome,
    pod: Option<&PodObservation>,
    content_digest: Option<&str>,
    now: Timestamp,
) -> StatusDecision {
    use ConditionStatus::{False, True, Unknown};
    use condition_type::{BUILT, LAUNCHED, READY};
    fn c(
        type_: &'static str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
    ) -> WantedCondition {
        WantedCondition::new(type_, status, reason, message)
    }
    let mut recheck_after = None;
    let (built, image_digest, build_job) = match image {
        ImageOutcome::Ready { image, built_by } => (
            c(
                BUILT,
                True,
                if built_by.is_some() {
                    "Built"
                } else {
                    "ImageAvailable"
                },
                format!("image {image}"),
            ),
            Some(image.clone()),
            built_by.clone(),
        ),
        ImageOutcome::BuildStarted { job } | ImageOutcome::Building { job } => {
            // A Job refused by admission changes no watched object: look again soon.
            recheck_after = Some(STUCK_RECHECK);
            (
                c(
                    BUILT,
                    False,
                    "Building",
                    format!("build Job {job} is running"),
                ),
                None,
                Some(job.clone()),
            )
        }
        ImageOutcome::Stuck {
            job,
            reason,
            message,
        } => {
            recheck_after = Some(STUCK_RECHECK);
            (
                c(
                    BUILT,
                    False,
                    reason,
                    tail(&format!(
                        "build Job {job} cannot progress: {reason}: {message}"
                    )),
                ),
                None,
                Some(job.clone()),
            )
        }
        ImageOutcome::Failed { job, message } => (
            c(
                BUILT,
                False,
                "BuildFailed",
                tail(&format!("build Job {job} failed: {message}")),
            ),
            None,
            Some(job.clone()),
        ),
    };

    let registered = registered(cc);
    let timeout = SignedDuration::from_secs(i64::from(
        cc.spec
            .startup_timeout_seconds
            .unwrap_or(DEFAULT_STARTUP_TIMEOUT_SECONDS),
    ));
    let (launched, ready, phase) = match (image, pod) {
        (ImageOutcome::Failed { .. }, _) => (
            c(LAUNCHED, False, "BuildFailed", "no image to run"),
            c(READY, False, "BuildFailed", "the build failed"),
            Phase::Failed,
        ),
        (ImageOutcome::Ready { .. }, Some(p)) => {
            let age = p.created.map(|t| now.duration_since(t)).unwrap_or_default();
            let timed_out = age >= timeout;
            match p.phase.as_str() {
                "Failed" | "Succeeded" => {
                    let (reason, code, log) = p.terminated.clone().unwrap_or_default();
                    let message = tail(&format!(
                        "pod {} {} (exit code {code}, {reason}): {log}",
                        p.name,
                        if p.phase == "Failed" {
                            "failed"
                        } else {
                            "exited"
                        }
                    ));
                    (
                        c(LAUNCHED, False, "PodFailed", message.clone()),
                        c(READY, False, "PodFailed", message),
                        Phase::Failed,
                    )
                }
                "Running" if registered => (
                    c(
                        LAUNCHED,
                        True,
                        "PodRunning",
                        format!("pod {} is running", p.name),
                    ),
                    c(
                        READY,
                        True,
                        "Ready",
                        "chaincode is running and registered with the peer",
                    ),
                    Phase::Ready,
                ),
                "Running" if registration_unobserved(cc) => (
                    c(
                        LAUNCHED,
                        True,
                        "PodRunning",
                        format!("pod {} is running", p.name),
                    ),
                    c(
                        READY,
                        Unknown,
                        REGISTRATION_UNOBSERVED,
                        "running; launched by a stock Fabric peer, whose chaincode registers with \
                         the peer directly, so registration is not observed",
                    ),
                    Phase::Running,
                ),
                "Running" if timed_out => (
                    c(
                        LAUNCHED,
                        True,
                        "PodRunning",
                        format!("pod {} is running", p.name),
                    ),
                    c(
                        READY,
                        False,
                        "StartupTimeout",
                        format!("chaincode did not register within {}s", timeout.as_secs()),
                    ),
                    Phase::Failed,
                ),
                "Running" => {
                    recheck_after = Some((timeout - age).unsigned_abs());
                    (
                        c(
                            LAUNCHED,
                            True,
                            "PodRunning",
                            format!("pod {} is running", p.name),
                        ),
                        c(
                            READY,
                            False,
                            "NotRegistered",
                            "waiting for the chaincode to register",
                        ),
                        Phase::Running,
                    )
                }
                _ => {
                    let (reason, detail) = match &p.waiting {
                        Some((r, m)) if r == "ErrImagePull" || r == "ImagePullBackOff" => {
                            ("ImagePullFailed", format!("{r}: {m}"))
                        }
                        Some((r, m)) if !r.is_empty() && r != "ContainerCreating" => {
                            ("PodNotStarting", format!("{r}: {m}"))
                        }
                        _ => ("PodPending", format!("pod {} is pending", p.name)),
                    };
                    let launched = c(LAUNCHED, False, reason, tail(&detail));
                    if timed_out {
                        let message =
                            format!("pod did not start within {}s: {detail}", timeout.as_secs());
                        (
                            launched,
                            c(READY, False, "StartupTimeout", tail(&message)),
                            Phase::Failed,
                        )
                    } else {
                        // Events (FailedMount) trigger no watch: look again soon.
                        recheck_after = Some((timeout - age).unsigned_abs().min(STUCK_RECHECK));
                        (
                            launched,
                            c(READY, False, reason, tail(&detail)),
                            Phase::Launching,
                        )
                    }
                }
            }
        }
        (ImageOutcome::Ready { .. }, None) => (
            c(LAUNCHED, False, "PodPending", "pod not created yet"),
            c(READY, False, "PodPending", "pod not created yet"),
            Phase::Launching,
        ),
        (ImageOutcome::Stuck { reason, .. }, _) => (
            c(
                LAUNCHED,
                Unknown,
                "WaitingForImage",
                "the image build cannot progress (see Built)",
            ),
            c(
                READY,
                False,
                reason,
                "the image build cannot progress (see Built)",
            ),
            Phase::Building,
        ),
        (ImageOutcome::BuildStarted { .. } | ImageOutcome::Building { .. }, _) => (
            c(
                LAUNCHED,
                Unknown,
                "WaitingForImage",
                "the image is being built",
            ),
            c(READY, False, "Building", "the image is being built"),
            Phase::Building,
        ),
    };

    let current = cc
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let status = ChaincodeStatus {
        phase: Some(phase),
        conditions: conditions::merge(
            current,
            &[built, launched, ready],
            cc.metadata.generation,
            &k8s_time(now),
        ),
        image_digest,
        content_digest: content_digest.map(str::to_string),
        pod_name: pod.map(|p| p.name.clone()),
        build_job_name: build_job,
        launch_attempt: Some(cc.spec.launch_attempt),
        observed_generation: cc.metadata.generation,
    };
    StatusDecision {
        status,
        recheck_after,
    }
}

/// Marks the launch as blocked by a missing or unusable dependency (e.g. the endorser's TLS Secret).
pub fn with_launch_blocked(
    cc: &Chaincode,
    mut status: ChaincodeStatus,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> ChaincodeStatus {
    use condition_type::{LAUNCHED, READY};
    let current = cc
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let wanted = [
        WantedCondition::new(LAUNCHED, ConditionStatus::False, reason, message),
        WantedCondition::new(READY, ConditionStatus::False, reason, message),
    ];
    status
        .conditions
        .retain(|c| c.type_ != LAUNCHED && c.type_ != READY);
    status.conditions.extend(conditions::merge(
        current,
        &wanted,
        cc.metadata.generation,
        &k8s_time(now),
    ));
    status.phase = Some(Phase::Launching);
    status
}

/// Ready=False with `reason` while the rest of the operator's status stays as it was (conditions the
/// operator applied before are applied again, so server-side apply keeps them).
pub fn blocked_status(
    cc: &Chaincode,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> ChaincodeStatus {
    use condition_type::{BUILT, LAUNCHED, READY};
    let current = cc.status.clone().unwrap_or_default();
    let mut wanted: Vec<WantedCondition> = [BUILT, LAUNCHED]
        .into_iter()
        .filter_map(|type_| {
            let c = conditions::find(&current.conditions, type_)?;
            Some(WantedCondition::new(
                type_,
                c.status,
                c.reason.clone(),
                c.message.clone(),
            ))
        })
        .collect();
    wanted.push(WantedCondition::new(
        READY,
        ConditionStatus::False,
        reason,
        tail(message),
    ));
    ChaincodeStatus {
        phase: Some(current.phase.unwrap_or(Phase::Pending)),
        conditions: conditions::merge(
            &current.conditions,
            &wanted,
            cc.metadata.generation,
            &k8s_time(now),
        ),
        launch_attempt: Some(cc.spec.launch_attempt),
        observed_generation: cc.metadata.generation,
        ..current
    }
}

/// Status for a spec the operator cannot act on.
pub fn invalid_spec_status(cc: &Chaincode, error: &SpecError, now: Timestamp) -> ChaincodeStatus {
    let current = cc
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    ChaincodeStatus {
        launch_attempt: Some(cc.spec.launch_attempt),
        ..unusable_status(current, &error.to_string(), cc.metadata.generation, now)
    }
}

/// Status for a Chaincode that does not even deserialize (e.g. stored before the schema bounded
/// `launchAttempt`): the same InvalidSpec conditions, so `kubectl get/describe` shows why.
pub fn malformed_status(error: &str, generation: Option<i64>, now: Timestamp) -> ChaincodeStatus {
    unusable_status(
        &[],
        &format!("the Chaincode does not match its schema: {error}"),
        generation,
        now,
    )
}

fn unusable_status(
    current: &[super::crd::Condition],
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> ChaincodeStatus {
    use ConditionStatus::{False, Unknown};
    use condition_type::{BUILT, LAUNCHED, READY};
    let message = tail(message);
    let wanted = [
        WantedCondition::new(BUILT, Unknown, "InvalidSpec", message.clone()),
        WantedCondition::new(LAUNCHED, Unknown, "InvalidSpec", message.clone()),
        WantedCondition::new(READY, False, "InvalidSpec", message),
    ];
    ChaincodeStatus {
        phase: Some(Phase::Failed),
        conditions: conditions::merge(current, &wanted, generation, &k8s_time(now)),
        observed_generation: generation,
        ..Default::default()
    }
}

/// True when applying `desired` would change what the operator owns in `current` (no patch otherwise).
/// Conditions owned by other writers (Registered) are ignored.
pub fn status_differs(current: Option<&ChaincodeStatus>, desired: &ChaincodeStatus) -> bool {
    let Some(current) = current else {
        return true;
    };
    let mut ours: Vec<_> = current
        .conditions
        .iter()
        .filter(|c| desired.conditions.iter().any(|d| d.type_ == c.type_))
        .collect();
    ours.sort_by(|a, b| a.type_.cmp(&b.type_));
    let mut wanted: Vec<_> = desired.conditions.iter().collect();
    wanted.sort_by(|a, b| a.type_.cmp(&b.type_));
    current.phase != desired.phase
        || ours != wanted
        || current.image_digest != desired.image_digest
        || current.content_digest != desired.content_digest
        || current.pod_name != desired.pod_name
        || current.build_job_name != desired.build_job_name
        || current.launch_attempt != desired.launch_attempt
        || current.observed_generation != desired.observed_generation
}
