//! The `Chaincode` custom resource (`fabric.chaincode.dev/v1alpha1`): spec, status and the CRD itself.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Largest launch attempt the schema admits: an int32, so every client (Go's too) can hold it.
pub const MAX_LAUNCH_ATTEMPT: u32 = i32::MAX as u32;
/// Longest Chaincode name: it is a label value on everything the Chaincode owns.
pub const MAX_NAME_CHARS: usize = 63;
/// `host:port` (host may be a bracketed IPv6 address), what Fabric's shims accept as peer.address.
pub const PEER_ADDRESS_PATTERN: &str = r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):[0-9]{1,5}$";

/// Fabric's default chaincode startup timeout (build + start + REGISTER), in seconds.
pub const DEFAULT_STARTUP_TIMEOUT_SECONDS: u32 = 300;

/// A Fabric chaincode to build (or take prebuilt) and run as one Pod per launch attempt.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "fabric.chaincode.dev",
    version = "v1alpha1",
    kind = "Chaincode",
    namespaced,
    shortname = "cc",
    status = "ChaincodeStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Package","type":"string","jsonPath":".spec.packageId","priority":0}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".status.imageDigest"}"#,
    printcolumn = r#"{"name":"Registered","type":"string","jsonPath":".status.conditions[?(@.type==\"Registered\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "A Fabric chaincode run by chaincode-operator",
    // The name becomes a label value (63 characters at most) on every owned object.
    validation = Rule::new("self.metadata.name.size() <= 63")
        .message("metadata.name must be at most 63 characters (it is used as a label value)")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.source) || has(self.image)",
     "message": "set source (to build) or image (prebuilt by digest)"},
    {"rule": "self.platform != 'image' || has(self.image)",
     "message": "platform image needs image"},
    {"rule": "!(has(self.source) && has(self.image))",
     "message": "set either source (to build) or image (prebuilt), not both"}
]))]
pub struct ChaincodeSpec {
    /// Fabric package id, `<label>:<hex sha256 of the package file>`.
    #[schemars(regex(pattern = r"^[^:\s]+:[0-9a-f]{64}$"))]
    pub package_id: String,
    /// Chaincode platform of the package (golang, node, java, or image for a prebuilt image).
    pub platform: Platform,
    /// Where the build Job gets its build context (a gzip'd tar with a Dockerfile), by content digest.
    /// Required unless `image` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<BuildSource>,
    /// A prebuilt image, pinned by digest; when set no build runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<PrebuiltImage>,
    /// The peer (endorser) the chaincode dials.
    pub peer: PeerRef,
    /// Secret holding this launch's TLS material; absent means TLS is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsRef>,
    /// Build settings (registry, images, package mirrors).
    #[serde(default)]
    pub build: BuildSettings,
    /// Settings copied onto the chaincode Pod.
    #[serde(default)]
    pub pod: PodSettings,
    /// Seconds from Pod creation until the chaincode must be running and registered (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub startup_timeout_seconds: Option<u32>,
    /// Launch attempt; raising it replaces the Pod and TLS Secret with fresh ones (0 to 2147483647).
    #[serde(default)]
    #[schemars(range(max = MAX_LAUNCH_ATTEMPT))]
    pub launch_attempt: u32,
}

/// Chaincode platform, as in the package's metadata.json `type`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Golang,
    Node,
    Java,
    /// A prebuilt image (fabric-builder-k8s `k8s` packages).
    Image,
}

/// The build context by content digest, from exactly one place.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.configMap), has(self.secret), has(self.url)].filter(x, x).size() == 1",
     "message": "exactly one of configMap, secret, url must be set"},
    {"rule": "!has(self.url) || self.url.startsWith('https://') || self.url.startsWith('http://')",
     "message": "url must be http(s)"}
]))]
pub struct BuildSource {
    /// `sha256:<hex>` of the build context archive; also the image tag, so equal contexts build once.
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub content_digest: String,
    /// A key of a ConfigMap (binaryData) in this namespace holding the archive (small contexts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<KeyRef>,
    /// A key of a Secret in this namespace holding the archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<KeyRef>,
    /// HTTP(S) URL of the archive (large contexts, up to 50 MB); verified against contentDigest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A key inside a ConfigMap or Secret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct KeyRef {
    /// Object name.
    pub name: String,
    /// Key inside the object.
    pub key: String,
}

/// A prebuilt image by digest.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct PrebuiltImage {
    /// Repository, e.g. `registry.example.com/team/cc`.
    pub name: String,
    /// `sha256:<hex>` digest.
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub digest: String,
}

/// Where the chaincode finds its peer.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerRef {
    /// `host:port` of the peer's chaincode listener.
    #[schemars(regex(pattern = PEER_ADDRESS_PATTERN))]
    pub address: String,
    /// The peer's MSP id.
    #[schemars(length(min = 1))]
    pub msp_id: String,
}

/// The Secret (written by the endorser) with PEM keys `client.key`, `client.crt`, `peer.crt`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsRef {
    /// Secret name in this namespace.
    pub secret_name: String,
}

/// How images get built and where they go.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildSettings {
    /// Repository built images are pushed to (`registry/repo`); the tag is the content digest. Required
    /// when building.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Secret of type kubernetes.io/dockerconfigjson used to push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret_name: Option<String>,
    /// BuildKit rootless image running the build (default `moby/buildkit:v0.23.2-rootless`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buildkit_image: Option<String>,
    /// Image that fetches and verifies the build context (needs sh, sha256sum, tar, curl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetcher_image: Option<String>,
    /// Builder (compile stage) image, passed as build-arg BUILDER_IMAGE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder_image: Option<String>,
    /// Runtime image, passed as build-arg RUNTIME_IMAGE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_image: Option<String>,
    /// npm registry for node builds (build-arg NPM_REGISTRY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npm_registry: Option<String>,
    /// GOPROXY for go builds (build-arg GOPROXY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goproxy: Option<String>,
    /// Maven mirror for java builds (build-arg MAVEN_MIRROR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maven_mirror: Option<String>,
    /// Resources of the build container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Settings copied onto the chaincode Pod.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// Resources of the chaincode container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Pull secrets for the chaincode image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Extra Pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Extra Pod labels (the operator's own labels win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra environment for the chaincode container (Fabric's CORE_* variables win).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Service account of the Pod (its token is not mounted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Priority class of the Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// Observed state of a Chaincode.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChaincodeStatus {
    /// Pending, Building, Launching, Running, Ready or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Built, Launched, Registered (written by the endorser) and Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The image the chaincode runs, `repo@sha256:...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The content digest the image was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_digest: Option<String>,
    /// Name of the chaincode Pod of this launch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Name of the build Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_job_name: Option<String>,
    /// The launch attempt this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_attempt: Option<u32>,
    /// The metadata.generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Coarse lifecycle phase, for `kubectl get`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    Pending,
    Building,
    Launching,
    Running,
    Ready,
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Pending,
        Phase::Building,
        Phase::Launching,
        Phase::Running,
        Phase::Ready,
        Phase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Building => "Building",
            Phase::Launching => "Launching",
            Phase::Running => "Running",
            Phase::Ready => "Ready",
            Phase::Failed => "Failed",
        }
    }
}

/// A status condition (the shape of metav1.Condition).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Built, Launched, Registered or Ready.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// CamelCase reason for the last transition.
    #[serde(default)]
    pub reason: String,
    /// Human-readable detail (for a failed build: the tail of its log).
    #[serde(default)]
    pub message: String,
    /// The metadata.generation the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// Condition status values.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// Condition types.
pub mod condition_type {
    pub const BUILT: &str = "Built";
    pub const LAUNCHED: &str = "Launched";
    /// Written by the endorser (field manager `chaincode-endorser`), never by the operator.
    pub const REGISTERED: &str = "Registered";
    pub const READY: &str = "Ready";
}

/// The CRD as YAML, exactly what `chaincode-operator crd` prints and `crds/chaincode.yaml` holds.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    use kube::CustomResourceExt;
    serde_saphyr::to_string(&Chaincode::crd())
}
