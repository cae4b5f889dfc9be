//! Desired objects for a Chaincode (build Job, TLS Secret, chaincode Pod) as pure functions of the spec.
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    AppArmorProfile, Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar,
    KeyToPath, Pod, PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, Secret,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use sha2::{Digest, Sha256};

use super::crd::{BuildSource, Chaincode};

pub const DEFAULT_BUILDKIT_IMAGE: &str = "docker.io/moby/buildkit:v0.23.2-rootless";
pub const DEFAULT_FETCHER_IMAGE: &str = "docker.io/curlimages/curl:8.14.1";
/// Where Fabric's chaincode shims look for their TLS files.
pub const FABRIC_TLS_DIR: &str = "/etc/hyperledger/fabric";
/// Largest build context fetched by URL (the design's package limit).
pub const MAX_CONTEXT_BYTES: u64 = 50 * 1024 * 1024;

pub const LABEL_CHAINCODE: &str = "fabric.chaincode.dev/chaincode";
pub const LABEL_LAUNCH_ATTEMPT: &str = "fabric.chaincode.dev/launch-attempt";
pub const LABEL_CONTENT_KEY: &str = "fabric.chaincode.dev/content-key";
pub const ANNOTATION_CONTENT_DIGEST: &str = "fabric.chaincode.dev/content-digest";
/// The repository a build Job pushes to; Chaincodes reusing the Job run the image from there.
pub const ANNOTATION_REPOSITORY: &str = "fabric.chaincode.dev/repository";
pub const MANAGED_BY: &str = "chaincode-operator";
/// UID/GID the operator's pods run as when the image does not decide (restricted PSS needs non-root).
const RUN_AS_ID: i64 = 1000;

/// Keys the endorser's TLS Secret must hold (PEM).
pub const SOURCE_CLIENT_KEY: &str = "client.key";
pub const SOURCE_CLIENT_CERT: &str = "client.crt";
pub const SOURCE_PEER_ROOT: &str = "peer.crt";

/// The hex part of a `sha256:<hex>` digest, if well formed.
pub fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    .then_some(hex)
}

/// One build Job per content key, shared by every Chaincode in the namespace with that context.
pub fn build_job_name(content_hex: &str) -> String {
    format!("ccbuild-{}", &content_hex[..content_hex.len().min(40)])
}

/// Label value identifying a content key (label values are capped at 63 characters).
pub fn content_key_label(content_hex: &str) -> String {
    content_hex[..content_hex.len().min(63)].to_string()
}

/// The image reference a build pushes: the content digest is the tag, so equal contexts share it.
pub fn build_image_tag(registry: &str, content_hex: &str) -> String {
    format!("{registry}:{content_hex}")
}

fn short_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(hasher.finalize())[..8].to_string()
}

/// Pod name for a launch: a change of image, attempt or pod-relevant spec gives a new name, so a new
/// launch never collides with the immutable fields of the old Pod.
pub fn launch_pod_name(cc: &Chaincode, image: &str) -> String {
    let name = cc.metadata.name.as_deref().unwrap_or("chaincode");
    let spec_fingerprint = serde_json::to_string(&(
        &cc.spec.package_id,
        &cc.spec.peer,
        &cc.spec.tls,
        &cc.spec.pod,
    ))
    .unwrap_or_default();
    let hash = short_hash(&[image, &spec_fingerprint]);
    let prefix: String = name.chars().take(40).collect();
    let prefix = prefix.trim_end_matches(['-', '.']);
    format!("{prefix}-{}-{hash}", cc.spec.launch_attempt)
}

/// The owned TLS Secret of a launch is named after its Pod.
pub fn tls_secret_name(pod_name: &str) -> String {
    format!("{pod_name}-tls")
}

fn owner_reference(cc: &Chaincode) -> OwnerReference {
    OwnerReference {
        api_version: Chaincode::api_version(&()).into_owned(),
        kind: Chaincode::kind(&()).into_owned(),
        name: cc.metadata.name.clone().unwrap_or_default(),
        uid: cc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Labels on every object a Chaincode owns; the selector the operator lists them by.
pub fn owned_labels(cc: &Chaincode) -> BTreeMap<String, String> {
    let name = cc.metadata.name.clone().unwrap_or_default();
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "chaincode".into()),
        ("app.kubernetes.io/instance".into(), name.clone()),
        ("app.kubernetes.io/component".into(), "chaincode".into()),
        ("app.kubernetes.io/managed-by".into(), MANAGED_BY.into()),
        ("app.kubernetes.io/version".into(), package_label(cc)),
        (LABEL_CHAINCODE.into(), name),
        (
            LABEL_LAUNCH_ATTEMPT.into(),
            cc.spec.launch_attempt.to_string(),
        ),
    ])
}

/// Label selector for everything a Chaincode owns.
pub fn owned_selector(cc: &Chaincode) -> String {
    format!(
        "{LABEL_CHAINCODE}={}",
        cc.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The package label (before the colon), trimmed to a valid label value.
fn package_label(cc: &Chaincode) -> String {
    let label = cc
        .spec
        .package_id
        .split(':')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(63)
        .collect::<String>();
    label
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// Fetches the context (mounted object or URL), verifies its sha256, unpacks it into /workspace.
const FETCH_SCRIPT: &str = r#"set -eu
if [ -n "${CONTEXT_URL:-}" ]; then
  curl -fsSL --retry 3 --max-filesize "$MAX_CONTEXT_BYTES" -o /scratch/context.tar.gz "$CONTEXT_URL"
else
  cp /input/context.tar.gz /scratch/context.tar.gz
fi
echo "$CONTENT_SHA256  /scratch/context.tar.gz" | sha256sum -c -
tar -xzf /scratch/context.tar.gz -C /workspace
rm -f /scratch/context.tar.gz
"#;

/// Builds and pushes, then reports the pushed digest as the termination message. On failure nothing is
/// written there, so `FallbackToLogsOnError` puts the log tail in the message instead.
const BUILD_SCRIPT: &str = r#"set -eu
buildctl-daemonless.sh build --frontend dockerfile.v0 \
  --local context=/workspace --local dockerfile=/workspace \
  --output "type=image,name=$IMAGE,push=true" --metadata-file /scratch/metadata.json "$@"
digest=$(sed -n 's/.*"containerimage.digest": *"\(sha256:[0-9a-f]*\)".*/\1/p' /scratch/metadata.json | head -n 1)
test -n "$digest"
printf '%s' "$digest" > /dev/termination-log
"#;

/// The build Job for a content key: fetch context (init) then BuildKit rootless daemonless (main).
/// It has no owner: several Chaincodes share it, and a finished Job expires through its TTL.
pub fn build_job(cc: &Chaincode, source: &BuildSource, registry: &str, content_hex: &str) -> Job {
    let build = &cc.spec.build;
    let image = build_image_tag(registry, content_hex);
    let mut volumes = vec![
        empty_dir("workspace"),
        empty_dir("scratch"),
        empty_dir("buildkitd"),
    ];
    let mut fetch_mounts = vec![
        mount("workspace", "/workspace", false),
        mount("scratch", "/scratch", false),
    ];
    let mut fetch_env = vec![
        env("CONTENT_SHA256", content_hex),
        env("MAX_CONTEXT_BYTES", MAX_CONTEXT_BYTES.to_string()),
    ];
    let item = |key: &str| {
        Some(vec![KeyToPath {
            key: key.into(),
            path: "context.tar.gz".into(),
            mode: None,
        }])
    };
    if let Some(cm) = &source.config_map {
        volumes.push(Volume {
            name: "input".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.name.clone(),
                items: item(&cm.key),
                ..Default::default()
            }),
            ..Default::default()
        });
        fetch_mounts.push(mount("input", "/input", true));
    } else if let Some(secret) = &source.secret {
        volumes.push(Volume {
            name: "input".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: item(&secret.key),
                ..Default::default()
            }),
            ..Default::default()
        });
        fetch_mounts.push(mount("input", "/input", true));
    } else if let Some(url) = &source.url {
        fetch_env.push(env("CONTEXT_URL", url.clone()));
    }

    let mut build_mounts = vec![
        mount("workspace", "/workspace", true),
        mount("scratch", "/scratch", false),
        mount("buildkitd", "/home/user/.local/share/buildkit", false),
    ];
    let mut build_env = vec![
        env("IMAGE", image),
        // Rootless without a user namespace of its own: BuildKit's documented container setting.
        env("BUILDKITD_FLAGS", "--oci-worker-no-process-sandbox"),
    ];
    if let Some(push) = &build.push_secret_name {
        volumes.push(Volume {
            name: "push-credentials".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(push.clone()),
                items: Some(vec![KeyToPath {
                    key: ".dockerconfigjson".into(),
                    path: "config.json".into(),
                    mode: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        build_mounts.push(mount("push-credentials", "/home/user/.docker", true));
        build_env.push(env("DOCKER_CONFIG", "/home/user/.docker"));
    }
    let build_args: Vec<String> = [
        ("BUILDER_IMAGE", &build.builder_image),
        ("RUNTIME_IMAGE", &build.runtime_image),
        ("NPM_REGISTRY", &build.npm_registry),
        ("GOPROXY", &build.goproxy),
        ("MAVEN_MIRROR", &build.maven_mirror),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.as_ref().map(|v| (name, v)))
    .flat_map(|(name, value)| ["--opt".to_string(), format!("build-arg:{name}={value}")])
    .collect();

    let fetch = Container {
        name: "fetch-context".into(),
        image: Some(
            build
                .fetcher_image
                .clone()
                .unwrap_or_else(|| DEFAULT_FETCHER_IMAGE.into()),
        ),
        command: Some(vec!["sh".into(), "-c".into(), FETCH_SCRIPT.into()]),
        env: Some(fetch_env),
        volume_mounts: Some(fetch_mounts),
        security_context: Some(restricted_container_security()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    let mut command = vec![
        "sh".into(),
        "-c".into(),
        BUILD_SCRIPT.into(),
        "build".into(),
    ];
    command.extend(build_args);
    let buildkit = Container {
        name: "build".into(),
        image: Some(
            build
                .buildkit_image
                .clone()
                .unwrap_or_else(|| DEFAULT_BUILDKIT_IMAGE.into()),
        ),
        command: Some(command),
        env: Some(build_env),
        volume_mounts: Some(build_mounts),
        resources: build.resources.clone(),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        // BuildKit rootless needs unconfined seccomp and AppArmor to create its own namespaces.
        security_context: Some(SecurityContext {
            run_as_user: Some(RUN_AS_ID),
            run_as_group: Some(RUN_AS_ID),
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "Unconfined".into(),
                localhost_profile: None,
            }),
            app_armor_profile: Some(AppArmorProfile {
                type_: "Unconfined".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".into(), "chaincode-build".into()),
        ("app.kubernetes.io/component".into(), "build".into()),
        ("app.kubernetes.io/managed-by".into(), MANAGED_BY.into()),
        (LABEL_CONTENT_KEY.into(), content_key_label(content_hex)),
    ]);
    Job {
        metadata: ObjectMeta {
            name: Some(build_job_name(content_hex)),
            namespace: cc.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([
                (
                    ANNOTATION_CONTENT_DIGEST.into(),
                    format!("sha256:{content_hex}"),
                ),
                (ANNOTATION_REPOSITORY.into(), registry.to_string()),
            ])),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            ttl_seconds_after_finished: Some(86_400),
            active_deadline_seconds: Some(3_600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_user: Some(RUN_AS_ID),
                        run_as_group: Some(RUN_AS_ID),
                        fs_group: Some(RUN_AS_ID),
                        run_as_non_root: Some(true),
                        ..Default::default()
                    }),
                    init_containers: Some(vec![fetch]),
                    containers: vec![buildkit],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The PEM material read from the endorser's TLS Secret.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsMaterial {
    pub client_key_pem: Vec<u8>,
    pub client_cert_pem: Vec<u8>,
    pub peer_root_pem: Vec<u8>,
}

/// The launch's TLS Secret in the file layout Fabric's shims read (FABRIC-FACTS.md): `client.key` and
/// `client.crt` hold base64 of the PEM (Node shim), `client_pem.*` the PEM (Go shim), `peer.crt` the root.
pub fn tls_secret(cc: &Chaincode, pod_name: &str, tls: &TlsMaterial) -> Secret {
    use base64::Engine;
    let b64 = |pem: &[u8]| {
        ByteString(
            base64::engine::general_purpose::STANDARD
                .encode(pem)
                .into_bytes(),
        )
    };
    Secret {
        metadata: ObjectMeta {
            name: Some(tls_secret_name(pod_name)),
            namespace: cc.metadata.namespace.clone(),
            labels: Some(owned_labels(cc)),
            owner_references: Some(vec![owner_reference(cc)]),
            ..Default::default()
        },
        immutable: Some(true),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            ("client.key".into(), b64(&tls.client_key_pem)),
            ("client.crt".into(), b64(&tls.client_cert_pem)),
            (
                "client_pem.key".into(),
                ByteString(tls.client_key_pem.clone()),
            ),
            (
                "client_pem.crt".into(),
                ByteString(tls.client_cert_pem.clone()),
            ),
            ("peer.crt".into(), ByteString(tls.peer_root_pem.clone())),
        ])),
        ..Default::default()
    }
}

/// Fabric's chaincode environment (FABRIC-FACTS.md, "How a chaincode process is started").
pub fn fabric_env(cc: &Chaincode) -> Vec<EnvVar> {
    let tls = cc.spec.tls.is_some();
    let mut vars = vec![
        env("CORE_CHAINCODE_ID_NAME", cc.spec.package_id.clone()),
        env("CORE_PEER_ADDRESS", cc.spec.peer.address.clone()),
        env("CORE_PEER_LOCALMSPID", cc.spec.peer.msp_id.clone()),
        env("CORE_PEER_TLS_ENABLED", tls.to_string()),
    ];
    if tls {
        let file = |name: &str| format!("{FABRIC_TLS_DIR}/{name}");
        vars.extend([
            env("CORE_PEER_TLS_ROOTCERT_FILE", file("peer.crt")),
            env("CORE_TLS_CLIENT_KEY_PATH", file("client.key")),
            env("CORE_TLS_CLIENT_CERT_PATH", file("client.crt")),
            env("CORE_TLS_CLIENT_KEY_FILE", file("client_pem.key")),
            env("CORE_TLS_CLIENT_CERT_FILE", file("client_pem.crt")),
        ]);
    }
    vars
}

/// The chaincode Pod of a launch: one Pod, restartPolicy Never, restricted-PSS securityContext.
pub fn chaincode_pod(cc: &Chaincode, image: &str, pod_name: &str) -> Pod {
    let settings = &cc.spec.pod;
    let fabric = fabric_env(cc);
    // Fabric's variables win over user env of the same name.
    let mut env_vars: Vec<EnvVar> = settings
        .env
        .iter()
        .filter(|user| !fabric.iter().any(|f| f.name == user.name))
        .cloned()
        .collect();
    env_vars.extend(fabric);

    let mut labels = settings.labels.clone();
    labels.extend(owned_labels(cc));

    let (volumes, mounts) = if cc.spec.tls.is_some() {
        (
            Some(vec![Volume {
                name: "fabric-tls".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(tls_secret_name(pod_name)),
                    default_mode: Some(0o440),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            Some(vec![mount("fabric-tls", FABRIC_TLS_DIR, true)]),
        )
    } else {
        (None, None)
    };
    let non_empty = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());
    fn non_empty_vec<T: Clone>(v: &[T]) -> Option<Vec<T>> {
        (!v.is_empty()).then(|| v.to_vec())
    }

    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name.into()),
            namespace: cc.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: non_empty(&settings.annotations),
            owner_references: Some(vec![owner_reference(cc)]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            service_account_name: settings.service_account_name.clone(),
            priority_class_name: settings.priority_class_name.clone(),
            image_pull_secrets: non_empty_vec(&settings.image_pull_secrets),
            node_selector: non_empty(&settings.node_selector),
            affinity: settings.affinity.clone(),
            tolerations: non_empty_vec(&settings.tolerations),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS_ID),
                run_as_group: Some(RUN_AS_ID),
                fs_group: Some(RUN_AS_ID),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                ..Default::default()
            }),
            containers: vec![Container {
                name: "chaincode".into(),
                image: Some(image.into()),
                env: Some(env_vars),
                resources: settings.resources.clone(),
                volume_mounts: mounts,
                security_context: Some(restricted_container_security()),
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                ..Default::default()
            }],
            volumes,
            ..Default::default()
        }),
        status: None,
    }
}
