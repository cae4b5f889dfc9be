//! The pure core of the Kubernetes runtime: what a launch writes (names, labels, the Chaincode, its
//! TLS Secret and build-context ConfigMap) and what an observed Chaincode means for the launch
//! waiting on it. No IO; unit-tested without a cluster.
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource as _;
use sha2::{Digest, Sha256};

use crate::endorser::chaincode::runtime::LaunchSpec;
use crate::operator::crd::{
    BuildSettings, BuildSource, Chaincode, ChaincodeSpec, ConditionStatus, KeyRef, PeerRef, Phase,
    PodSettings, PrebuiltImage, TlsRef, condition_type,
};
use crate::operator::desired::{SOURCE_CLIENT_CERT, SOURCE_CLIENT_KEY, SOURCE_PEER_ROOT};

/// Field manager of every write the endorser makes.
pub const FIELD_MANAGER: &str = "chaincode-endorser";
/// `app.kubernetes.io/managed-by` of what the endorser writes.
pub const MANAGED_BY: &str = "chaincode-endorser";
/// The endorser a launch belongs to (cleanup at start and shutdown selects on it).
pub const LABEL_ENDORSER: &str = "fabric.chaincode.dev/endorser";
/// The package label (the part of the package id before `:`).
pub const LABEL_PACKAGE_LABEL: &str = "fabric.chaincode.dev/package-label";
/// The first 40 hex digits of the package hash (label values hold 63 characters).
pub const LABEL_PACKAGE_HASH: &str = "fabric.chaincode.dev/package-hash";
/// The whole package id.
pub const ANNOTATION_PACKAGE_ID: &str = "fabric.chaincode.dev/package-id";
/// Key of the build context inside its ConfigMap.
pub const CONTEXT_KEY: &str = "context.tar.gz";
/// Largest build context delivered in a ConfigMap: the API server refuses ConfigMaps whose data
/// exceeds 1 MiB; this leaves room for the object's metadata.
pub const MAX_CONFIGMAP_CONTEXT_BYTES: usize = 1000 * 1024;

/// How the image of a package comes about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageImage {
    /// Built in-cluster from this context (tar.gz with a Dockerfile).
    Build {
        platform: crate::operator::crd::Platform,
        context: Vec<u8>,
        /// `sha256:<hex>` of `context`.
        content_digest: String,
    },
    /// A prebuilt image by digest.
    Prebuilt { name: String, digest: String },
}

/// Lower-case DNS-1123 label characters only, runs of anything else as one `-`, trimmed.
fn dns_part(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= max {
            break;
        }
    }
    out.trim_matches('-').to_string()
}

/// A label value: at most 63 of `[A-Za-z0-9._-]`, starting and ending alphanumeric.
pub fn label_value(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The Chaincode name of `package_id` launched by `endorser_id`: `<endorser>-<label>-<hash>`, a
/// DNS-1123 label of at most 63 characters, the same on every launch and every restart. The hash
/// covers both ids, so two endorsers (or two packages with one label) never share a name.
pub fn chaincode_name(endorser_id: &str, package_id: &str) -> String {
    let label = package_id.split(':').next().unwrap_or(package_id);
    let mut hasher = Sha256::new();
    hasher.update(endorser_id.as_bytes());
    hasher.update([0]);
    hasher.update(package_id.as_bytes());
    let hash = &hex::encode(hasher.finalize())[..10];
    let mut parts: Vec<String> = [dns_part(endorser_id, 20), dns_part(label, 30)]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    parts.push(hash.to_string());
    parts.join("-")
}

/// The endorser-written Secret with the launch's TLS material (PEM), which the operator copies into
/// the Pod's Fabric file layout.
pub fn tls_secret_name(chaincode_name: &str) -> String {
    format!("{chaincode_name}-endorser-tls")
}

/// The ConfigMap holding a source package's build context.
pub fn context_config_map_name(chaincode_name: &str) -> String {
    format!("{chaincode_name}-context")
}

/// Labels on everything a launch writes.
pub fn labels(endorser_id: &str, package_id: &str) -> BTreeMap<String, String> {
    let (label, hash) = package_id.split_once(':').unwrap_or((package_id, ""));
    BTreeMap::from([
        ("app.kubernetes.io/managed-by".into(), MANAGED_BY.into()),
        (LABEL_ENDORSER.into(), label_value(endorser_id)),
        (LABEL_PACKAGE_LABEL.into(), label_value(label)),
        (
            LABEL_PACKAGE_HASH.into(),
            hash.chars().take(40).collect::<String>(),
        ),
    ])
}

/// The label selector of everything `endorser_id` wrote.
pub fn endorser_selector(endorser_id: &str) -> String {
    format!(
        "app.kubernetes.io/managed-by={MANAGED_BY},{LABEL_ENDORSER}={}",
        label_value(endorser_id)
    )
}

/// What the runtime's configuration contributes to every Chaincode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChaincodeTemplate {
    pub endorser_id: String,
    pub namespace: String,
    pub build: BuildSettings,
    pub pod: PodSettings,
    /// Seconds the operator gives the Pod to start and register.
    pub startup_timeout_seconds: Option<u32>,
}

fn metadata(template: &ChaincodeTemplate, name: String, package_id: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(template.namespace.clone()),
        labels: Some(labels(&template.endorser_id, package_id)),
        annotations: Some(BTreeMap::from([(
            ANNOTATION_PACKAGE_ID.to_string(),
            package_id.to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

/// The launch attempt a launch id becomes: launch ids only grow within one endorser process, and
/// every process starts from a clean namespace (see the module docs), so attempts only grow too.
pub fn launch_attempt(launch_id: u64) -> u32 {
    // The CRD bounds launchAttempt to int32.
    u32::try_from(launch_id.min(i32::MAX as u64)).unwrap_or(i32::MAX as u32)
}

/// The Chaincode of one launch.
pub fn chaincode(
    template: &ChaincodeTemplate,
    spec: &LaunchSpec,
    image: &PackageImage,
) -> Chaincode {
    let package_id = &spec.key.package_id;
    let name = chaincode_name(&template.endorser_id, package_id);
    let (platform, source, prebuilt) = match image {
        PackageImage::Build {
            platform,
            content_digest,
            ..
        } => (
            *platform,
            Some(BuildSource {
                content_digest: content_digest.clone(),
                config_map: Some(KeyRef {
                    name: context_config_map_name(&name),
                    key: CONTEXT_KEY.into(),
                }),
                secret: None,
                url: None,
            }),
            None,
        ),
        PackageImage::Prebuilt { name, digest } => (
            crate::operator::crd::Platform::Image,
            None,
            Some(PrebuiltImage {
                name: name.clone(),
                digest: digest.clone(),
            }),
        ),
    };
    let mut pod = template.pod.clone();
    // The shim's logging settings; the operator sets the rest of Fabric's CORE_* variables.
    for (key, value) in [
        ("CORE_CHAINCODE_LOGGING_LEVEL", &spec.logging.level),
        ("CORE_CHAINCODE_LOGGING_SHIM", &spec.logging.shim),
        ("CORE_CHAINCODE_LOGGING_FORMAT", &spec.logging.format),
    ] {
        if !pod.env.iter().any(|e| e.name == key) {
            pod.env.push(EnvVar {
                name: key.into(),
                value: Some(value.clone()),
                value_from: None,
            });
        }
    }
    let mut cc = Chaincode::new(
        &name,
        ChaincodeSpec {
            package_id: package_id.clone(),
            platform,
            source,
            image: prebuilt,
            peer: PeerRef {
                address: spec.peer_address.clone(),
                msp_id: spec.mspid.clone(),
            },
            tls: spec.tls.as_ref().map(|_| TlsRef {
                secret_name: tls_secret_name(&name),
            }),
            build: template.build.clone(),
            pod,
            startup_timeout_seconds: template.startup_timeout_seconds,
            launch_attempt: launch_attempt(spec.key.launch_id),
        },
    );
    cc.metadata = metadata(template, name, package_id);
    cc
}

/// Makes `owner` the owner of an object, so deleting the Chaincode deletes it too.
pub fn owned_by(meta: &mut ObjectMeta, owner: &Chaincode) {
    if let Some(uid) = owner.metadata.uid.clone() {
        meta.owner_references = Some(vec![OwnerReference {
            api_version: Chaincode::api_version(&()).into_owned(),
            kind: Chaincode::kind(&()).into_owned(),
            name: owner.metadata.name.clone().unwrap_or_default(),
            uid,
            ..OwnerReference::default()
        }]);
    }
}

/// The TLS Secret of a launch (PEM keys the operator reads), None in plaintext mode.
pub fn tls_secret(template: &ChaincodeTemplate, spec: &LaunchSpec) -> Option<Secret> {
    let tls = spec.tls.as_ref()?;
    let name = chaincode_name(&template.endorser_id, &spec.key.package_id);
    let pem = |text: &str| ByteString(text.as_bytes().to_vec());
    Some(Secret {
        metadata: metadata(template, tls_secret_name(&name), &spec.key.package_id),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (SOURCE_CLIENT_KEY.to_string(), pem(&tls.client_key_pem)),
            (SOURCE_CLIENT_CERT.to_string(), pem(&tls.client_cert_pem)),
            (SOURCE_PEER_ROOT.to_string(), pem(&tls.root_cert_pem)),
        ])),
        ..Secret::default()
    })
}

/// The ConfigMap with a source package's build context, None for prebuilt images.
pub fn context_config_map(
    template: &ChaincodeTemplate,
    package_id: &str,
    image: &PackageImage,
) -> Option<ConfigMap> {
    let PackageImage::Build { context, .. } = image else {
        return None;
    };
    let name = chaincode_name(&template.endorser_id, package_id);
    Some(ConfigMap {
        metadata: metadata(template, context_config_map_name(&name), package_id),
        binary_data: Some(BTreeMap::from([(
            CONTEXT_KEY.to_string(),
            ByteString(context.clone()),
        )])),
        ..ConfigMap::default()
    })
}

/// The `Registered` condition the endorser owns, as a server-side apply of the status.
pub fn registered_status(
    name: &str,
    generation: Option<i64>,
    registered: Option<bool>,
    reason: &str,
    message: &str,
    now: &str,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": Chaincode::api_version(&()),
        "kind": Chaincode::kind(&()),
        "metadata": { "name": name },
        "status": {
            "conditions": [{
                "type": condition_type::REGISTERED,
                // None: not known (a stock peer's chaincode dials the peer, not us).
                "status": match registered {
                    Some(true) => "True",
                    Some(false) => "False",
                    None => "Unknown",
                },
                "reason": reason,
                "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": now,
            }]
        }
    })
}

/// What an observed Chaincode says about the launch waiting on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// The status describes this launch (its generation and attempt), not an earlier one.
    pub current: bool,
    pub phase: Option<Phase>,
    /// The launch's Pod exists.
    pub pod_name: Option<String>,
    /// The Pod is running (`Launched=True`).
    pub running: bool,
    /// The launch failed for good: `Reason: message` of the condition that says why.
    pub failure: Option<String>,
}

/// Reasons of a `Launched=False` that no waiting fixes (the kubelet retries a missing image for
/// ever; the endorser's caller must hear about it at once).
fn terminal_launch_reason(reason: &str) -> bool {
    reason.contains("ImagePull") || reason == "InvalidImageName" || reason == "InvalidSpec"
}

/// Reads `cc` for the launch that applied `generation` with `attempt`.
pub fn observe(cc: &Chaincode, generation: Option<i64>, attempt: u32) -> Observation {
    let Some(status) = cc.status.as_ref() else {
        return Observation::default();
    };
    let current = status.launch_attempt == Some(attempt)
        && generation.is_some()
        && status.observed_generation >= generation;
    if !current {
        return Observation::default();
    }
    let find = |kind: &str| status.conditions.iter().find(|c| c.type_ == kind);
    let describe = |c: &crate::operator::crd::Condition| {
        if c.message.is_empty() {
            format!("{}={:?} {}", c.type_, c.status, c.reason)
        } else {
            format!("{}={:?} {}: {}", c.type_, c.status, c.reason, c.message)
        }
    };
    let running = find(condition_type::LAUNCHED).is_some_and(|c| c.status == ConditionStatus::True);
    let failed_condition = [
        condition_type::BUILT,
        condition_type::LAUNCHED,
        condition_type::READY,
    ]
    .into_iter()
    .filter_map(find)
    .find(|c| c.status == ConditionStatus::False);
    let failure = match (status.phase, failed_condition) {
        (Some(Phase::Failed), Some(c)) => Some(describe(c)),
        (Some(Phase::Failed), None) => Some("the Chaincode reports phase Failed".to_string()),
        (_, _) => find(condition_type::LAUNCHED)
            .filter(|c| c.status == ConditionStatus::False && terminal_launch_reason(&c.reason))
            .map(describe),
    };
    Observation {
        current,
        phase: status.phase,
        pod_name: status.pod_name.clone(),
        running,
        failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endorser::chaincode::runtime::{ChaincodeLogging, LaunchKey, LaunchTls};
    use crate::operator::crd::{ChaincodeStatus, Condition, Platform};

    const PACKAGE: &str =
        "asset-transfer_1.0:5f2b0c5e1e0d8e4a6c1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a69788796a5b4c3d2";

    fn spec(launch_id: u64, tls: bool) -> LaunchSpec {
        LaunchSpec {
            key: LaunchKey {
                package_id: PACKAGE.into(),
                launch_id,
            },
            peer_address: "10.254.254.1:7052".into(),
            mspid: "Org1MSP".into(),
            tls: tls.then(|| LaunchTls {
                client_cert_pem: "CERT".into(),
                client_key_pem: "KEY".into(),
                root_cert_pem: "ROOT".into(),
            }),
            logging: ChaincodeLogging::default(),
        }
    }

    fn template() -> ChaincodeTemplate {
        ChaincodeTemplate {
            endorser_id: "Peer0.Org1".into(),
            namespace: "fabric".into(),
            ..ChaincodeTemplate::default()
        }
    }

    fn is_dns_label(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-')
    }

    #[test]
    fn names_are_dns_labels_stable_and_distinct_per_endorser_and_package() {
        let name = chaincode_name("Peer0.Org1", PACKAGE);
        assert!(is_dns_label(&name), "{name}");
        assert!(name.starts_with("peer0-org1-asset-transfer-1-0-"), "{name}");
        assert_eq!(name, chaincode_name("Peer0.Org1", PACKAGE));
        assert_ne!(name, chaincode_name("peer1.org1", PACKAGE));
        assert_ne!(name, chaincode_name("Peer0.Org1", "asset-transfer_1.0:00"));
        let long = chaincode_name(&"e".repeat(200), &format!("{}:{}", "L".repeat(300), "a"));
        assert!(is_dns_label(&long), "{long}");
        // Names the operator derives from it (Pods, Secrets) must fit too.
        assert!(tls_secret_name(&long).len() <= 253);
        let odd = chaincode_name("--", ":::");
        assert!(is_dns_label(&odd), "{odd}");
    }

    #[test]
    fn label_values_fit_the_api_servers_rules() {
        for text in ["Peer0.Org1", &"x".repeat(100), "-a b-", "ünï"] {
            let value = label_value(text);
            assert!(value.len() <= 63);
            assert!(
                value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            );
            assert!(value.is_empty() || value.chars().next().unwrap().is_ascii_alphanumeric());
        }
    }

    #[test]
    fn a_source_launch_builds_from_its_config_map_with_tls_from_its_secret() {
        let image = PackageImage::Build {
            platform: Platform::Node,
            context: vec![1, 2, 3],
            content_digest: format!("sha256:{}", "ab".repeat(32)),
        };
        let cc = chaincode(&template(), &spec(3, true), &image);
        let name = cc.metadata.name.clone().unwrap();
        assert_eq!(cc.spec.launch_attempt, 3);
        assert_eq!(cc.spec.platform, Platform::Node);
        assert_eq!(cc.spec.peer.address, "10.254.254.1:7052");
        let source = cc.spec.source.as_ref().unwrap();
        assert_eq!(
            source.config_map.as_ref().unwrap().name,
            format!("{name}-context")
        );
        assert!(cc.spec.image.is_none());
        assert_eq!(
            cc.spec.tls.as_ref().unwrap().secret_name,
            format!("{name}-endorser-tls")
        );
        assert!(
            cc.spec
                .pod
                .env
                .iter()
                .any(|e| e.name == "CORE_CHAINCODE_LOGGING_LEVEL")
        );
        assert_eq!(
            cc.metadata.labels.as_ref().unwrap()[LABEL_ENDORSER],
            "Peer0.Org1"
        );
        let secret = tls_secret(&template(), &spec(3, true)).unwrap();
        let data = secret.data.unwrap();
        assert_eq!(data[SOURCE_CLIENT_KEY].0, b"KEY");
        assert_eq!(data[SOURCE_PEER_ROOT].0, b"ROOT");
        let map = context_config_map(&template(), PACKAGE, &image).unwrap();
        assert_eq!(map.binary_data.unwrap()[CONTEXT_KEY].0, vec![1, 2, 3]);
        assert!(tls_secret(&template(), &spec(3, false)).is_none());
    }

    #[test]
    fn a_prebuilt_launch_names_its_image_and_has_no_context() {
        let image = PackageImage::Prebuilt {
            name: "registry.example/cc".into(),
            digest: format!("sha256:{}", "cd".repeat(32)),
        };
        let cc = chaincode(&template(), &spec(1, false), &image);
        assert_eq!(cc.spec.platform, Platform::Image);
        assert!(cc.spec.source.is_none() && cc.spec.tls.is_none());
        assert_eq!(cc.spec.image.unwrap().name, "registry.example/cc");
        assert!(context_config_map(&template(), PACKAGE, &image).is_none());
    }

    fn cond(kind: &str, status: ConditionStatus, reason: &str, message: &str) -> Condition {
        Condition {
            type_: kind.into(),
            status,
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(4),
            last_transition_time: None,
        }
    }

    fn observed(
        phase: Phase,
        attempt: u32,
        generation: i64,
        conditions: Vec<Condition>,
    ) -> Chaincode {
        let mut cc = chaincode(
            &template(),
            &spec(u64::from(attempt), false),
            &PackageImage::Prebuilt {
                name: "x".into(),
                digest: "sha256:00".into(),
            },
        );
        cc.status = Some(ChaincodeStatus {
            phase: Some(phase),
            conditions,
            pod_name: Some("pod-1".into()),
            launch_attempt: Some(attempt),
            observed_generation: Some(generation),
            ..ChaincodeStatus::default()
        });
        cc
    }

    #[test]
    fn a_failed_build_or_pod_is_a_failure_with_the_conditions_reason_and_message() {
        use ConditionStatus::*;
        let build_failed = observed(
            Phase::Failed,
            2,
            4,
            vec![
                cond(
                    "Built",
                    False,
                    "BuildFailed",
                    "npm ERR! missing script: start",
                ),
                cond("Launched", False, "BuildFailed", "no image to run"),
            ],
        );
        let seen = observe(&build_failed, Some(4), 2);
        assert_eq!(
            seen.failure.as_deref(),
            Some("Built=False BuildFailed: npm ERR! missing script: start")
        );
        let pull = observed(
            Phase::Launching,
            2,
            4,
            vec![
                cond("Built", True, "Prebuilt", ""),
                cond(
                    "Launched",
                    False,
                    "ImagePullFailed",
                    "ErrImagePull: not found",
                ),
            ],
        );
        let seen = observe(&pull, Some(4), 2);
        assert!(
            seen.failure
                .unwrap()
                .contains("ImagePullFailed: ErrImagePull: not found")
        );
        let pending = observed(
            Phase::Launching,
            2,
            4,
            vec![cond("Launched", False, "PodPending", "pod is pending")],
        );
        assert_eq!(observe(&pending, Some(4), 2).failure, None);
        let running = observed(
            Phase::Running,
            2,
            4,
            vec![cond("Launched", True, "PodRunning", "")],
        );
        let seen = observe(&running, Some(4), 2);
        assert!(seen.running && seen.failure.is_none());
        assert_eq!(seen.pod_name.as_deref(), Some("pod-1"));
    }

    #[test]
    fn the_status_of_an_earlier_launch_says_nothing_about_this_one() {
        use ConditionStatus::*;
        let old_failure = observed(
            Phase::Failed,
            1,
            3,
            vec![cond("Launched", False, "PodFailed", "exit code 1")],
        );
        // Launch 2 applied generation 4: the attempt-1 status must not fail it.
        assert_eq!(observe(&old_failure, Some(4), 2), Observation::default());
        // Same attempt but the operator has not seen the new generation yet.
        let stale = observed(
            Phase::Failed,
            2,
            3,
            vec![cond("Launched", False, "PodFailed", "")],
        );
        assert!(!observe(&stale, Some(4), 2).current);
        assert!(observe(&stale, Some(4), 2).failure.is_none());
    }
}
