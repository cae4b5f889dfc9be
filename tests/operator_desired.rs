//! Fixture Chaincodes (YAML in) produce the expected build Job, TLS Secret and chaincode Pod.
use std::collections::BTreeMap;

use chaincode_operator::operator::crd::Chaincode;
use chaincode_operator::operator::desired::{self, TlsMaterial};
use chaincode_operator::operator::plan::{self, ImageSource, SpecError};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

fn fixture(name: &str) -> Chaincode {
    let path = format!(
        "{}/tests/fixtures/operator/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("fixture readable");
    serde_saphyr::from_str(&text).expect("fixture parses as a Chaincode")
}

fn env_map(container: &Container) -> BTreeMap<String, String> {
    container
        .env
        .iter()
        .flatten()
        .map(|EnvVar { name, value, .. }| (name.clone(), value.clone().unwrap_or_default()))
        .collect()
}

const IMAGE: &str = "registry.example.com/chaincode/asset-transfer@sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

fn launch_pod(cc: &Chaincode) -> (String, Pod) {
    let name = desired::launch_pod_name(cc, IMAGE);
    let pod = desired::chaincode_pod(cc, IMAGE, &name);
    (name, pod)
}

#[test]
fn pod_carries_fabric_environment_and_user_env_cannot_override_it() {
    let cc = fixture("node-configmap.yaml");
    let (_, pod) = launch_pod(&cc);
    let spec = pod.spec.expect("pod spec");
    let env = env_map(&spec.containers[0]);
    assert_eq!(
        env["CORE_CHAINCODE_ID_NAME"],
        "asset-transfer_1.0:1111111111111111111111111111111111111111111111111111111111111111"
    );
    assert_eq!(env["CORE_PEER_ADDRESS"], "peer0.org1.svc:7052");
    assert_eq!(env["CORE_PEER_LOCALMSPID"], "Org1MSP");
    assert_eq!(env["CORE_PEER_TLS_ENABLED"], "true");
    assert_eq!(
        env["CORE_PEER_TLS_ROOTCERT_FILE"],
        "/etc/hyperledger/fabric/peer.crt"
    );
    assert_eq!(
        env["CORE_TLS_CLIENT_KEY_PATH"],
        "/etc/hyperledger/fabric/client.key"
    );
    assert_eq!(
        env["CORE_TLS_CLIENT_CERT_PATH"],
        "/etc/hyperledger/fabric/client.crt"
    );
    assert_eq!(
        env["CORE_TLS_CLIENT_KEY_FILE"],
        "/etc/hyperledger/fabric/client_pem.key"
    );
    assert_eq!(
        env["CORE_TLS_CLIENT_CERT_FILE"],
        "/etc/hyperledger/fabric/client_pem.crt"
    );
    assert_eq!(env["CORE_CHAINCODE_LOGGING_LEVEL"], "debug");
    let peer_address_count = spec.containers[0]
        .env
        .iter()
        .flatten()
        .filter(|e| e.name == "CORE_PEER_ADDRESS")
        .count();
    assert_eq!(
        peer_address_count, 1,
        "user env must not duplicate Fabric's"
    );
}

#[test]
fn pod_mounts_the_launch_tls_secret_at_fabric_dir_read_only() {
    let cc = fixture("node-configmap.yaml");
    let (name, pod) = launch_pod(&cc);
    let spec = pod.spec.expect("pod spec");
    let mount = &spec.containers[0].volume_mounts.as_ref().expect("mounts")[0];
    assert_eq!(mount.mount_path, "/etc/hyperledger/fabric");
    assert_eq!(mount.read_only, Some(true));
    let volume = &spec.volumes.as_ref().expect("volumes")[0];
    assert_eq!(volume.name, mount.name);
    assert_eq!(
        volume.secret.as_ref().and_then(|s| s.secret_name.clone()),
        Some(format!("{name}-tls"))
    );
}

#[test]
fn pod_passes_restricted_pod_security_standard() {
    let cc = fixture("node-configmap.yaml");
    let (_, pod) = launch_pod(&cc);
    let spec = pod.spec.expect("pod spec");
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.automount_service_account_token, Some(false));
    let psc = spec.security_context.expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault")
    );
    assert!(spec.host_network.is_none() && spec.host_pid.is_none() && spec.host_ipc.is_none());
    for c in &spec.containers {
        let sc = c
            .security_context
            .clone()
            .expect("container securityContext");
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.privileged, None);
        assert_eq!(
            sc.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_string()])
        );
        assert_eq!(
            sc.seccomp_profile.map(|s| s.type_).as_deref(),
            Some("RuntimeDefault")
        );
    }
}

#[test]
fn pod_copies_scheduling_and_metadata_settings() {
    let cc = fixture("node-configmap.yaml");
    let (name, pod) = launch_pod(&cc);
    assert!(name.starts_with("asset-transfer-2-"), "{name}");
    let labels = pod.metadata.labels.clone().expect("labels");
    assert_eq!(labels["team"], "payments");
    assert_eq!(
        labels["app.kubernetes.io/name"], "chaincode",
        "operator labels win"
    );
    assert_eq!(labels["app.kubernetes.io/instance"], "asset-transfer");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "chaincode-operator");
    assert_eq!(labels["app.kubernetes.io/version"], "asset-transfer_1.0");
    assert_eq!(labels["fabric.chaincode.dev/chaincode"], "asset-transfer");
    assert_eq!(labels["fabric.chaincode.dev/launch-attempt"], "2");
    assert_eq!(
        pod.metadata.annotations.clone().expect("annotations")["prometheus.io/scrape"],
        "false"
    );
    let owner = &pod.metadata.owner_references.clone().expect("owner")[0];
    assert_eq!(owner.kind, "Chaincode");
    assert_eq!(owner.api_version, "fabric.chaincode.dev/v1alpha1");
    assert_eq!(owner.name, "asset-transfer");
    assert_eq!(owner.uid, "6f1d2c3b-0000-4000-8000-000000000001");
    assert_eq!(owner.controller, Some(true));
    assert_eq!(pod.metadata.namespace.as_deref(), Some("fabric"));

    let spec = pod.spec.expect("pod spec");
    assert_eq!(spec.containers[0].image.as_deref(), Some(IMAGE));
    assert_eq!(
        spec.node_selector.expect("nodeSelector")["kubernetes.io/arch"],
        "amd64"
    );
    let tolerations = spec.tolerations.expect("tolerations");
    assert_eq!(tolerations[0].key.as_deref(), Some("dedicated"));
    assert_eq!(tolerations[0].effect.as_deref(), Some("NoSchedule"));
    assert!(spec.affinity.and_then(|a| a.node_affinity).is_some());
    assert_eq!(
        spec.image_pull_secrets.expect("pull secrets")[0].name,
        "registry-pull"
    );
    assert_eq!(spec.service_account_name.as_deref(), Some("chaincode"));
    assert_eq!(spec.priority_class_name.as_deref(), Some("chaincode-high"));
    let resources = spec.containers[0].resources.clone().expect("resources");
    assert_eq!(resources.limits.expect("limits")["memory"].0, "512Mi");
    assert_eq!(resources.requests.expect("requests")["cpu"].0, "100m");
}

#[test]
fn prebuilt_pod_without_tls_has_no_tls_files() {
    let cc = fixture("prebuilt.yaml");
    let source = plan::validate(&cc).expect("valid");
    let ImageSource::Prebuilt { image } = source else {
        panic!("expected a prebuilt image, got {source:?}");
    };
    assert_eq!(
        image,
        "ghcr.io/hyperledger-labs/fabric-builder-k8s/sample-go-chaincode@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
    );
    let name = desired::launch_pod_name(&cc, &image);
    let pod = desired::chaincode_pod(&cc, &image, &name);
    let spec = pod.spec.expect("spec");
    let env = env_map(&spec.containers[0]);
    assert_eq!(env["CORE_PEER_TLS_ENABLED"], "false");
    assert!(!env.contains_key("CORE_TLS_CLIENT_KEY_PATH"));
    assert!(spec.volumes.is_none());
}

#[test]
fn pod_name_changes_with_attempt_image_or_pod_settings_only() {
    let cc = fixture("node-configmap.yaml");
    let base = desired::launch_pod_name(&cc, IMAGE);
    assert_eq!(base, desired::launch_pod_name(&cc.clone(), IMAGE), "stable");
    let mut next = cc.clone();
    next.spec.launch_attempt = 3;
    assert_ne!(desired::launch_pod_name(&next, IMAGE), base);
    assert_ne!(desired::launch_pod_name(&cc, "other@sha256:00"), base);
    let mut resized = cc.clone();
    resized.spec.pod.node_selector.clear();
    assert_ne!(desired::launch_pod_name(&resized, IMAGE), base);
    let mut timeout = cc.clone();
    timeout.spec.startup_timeout_seconds = Some(5);
    assert_eq!(
        desired::launch_pod_name(&timeout, IMAGE),
        base,
        "timeout does not relaunch"
    );
    assert!(base.len() <= 63);
}

#[test]
fn tls_secret_holds_base64_pem_for_node_and_plain_pem_for_go() {
    let cc = fixture("node-configmap.yaml");
    let material = TlsMaterial {
        client_key_pem: b"-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n".to_vec(),
        client_cert_pem: b"-----BEGIN CERTIFICATE-----\nCERT\n-----END CERTIFICATE-----\n".to_vec(),
        peer_root_pem: b"-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n".to_vec(),
    };
    let secret = desired::tls_secret(&cc, "asset-transfer-2-abc", &material);
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("asset-transfer-2-abc-tls")
    );
    assert_eq!(secret.immutable, Some(true));
    let data = secret.data.expect("data");
    // base64 of the PEM above, computed independently with `base64 -w0`.
    assert_eq!(
        String::from_utf8_lossy(&data["client.key"].0),
        "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCktFWQotLS0tLUVORCBQUklWQVRFIEtFWS0tLS0tCg=="
    );
    assert_eq!(data["client_pem.key"].0, material.client_key_pem);
    assert_eq!(data["client_pem.crt"].0, material.client_cert_pem);
    assert_eq!(data["peer.crt"].0, material.peer_root_pem);
    assert!(data.contains_key("client.crt"));
    let owner = &secret.metadata.owner_references.expect("owner")[0];
    assert_eq!(owner.uid, "6f1d2c3b-0000-4000-8000-000000000001");
    assert_eq!(
        secret.metadata.labels.expect("labels")["fabric.chaincode.dev/chaincode"],
        "asset-transfer"
    );
}

#[test]
fn build_job_fetches_configmap_context_and_runs_buildkit_rootless() {
    let cc = fixture("node-configmap.yaml");
    let ImageSource::Build {
        content_hex,
        registry,
    } = plan::validate(&cc).expect("valid")
    else {
        panic!("expected a build");
    };
    let job = desired::build_job(
        &cc,
        cc.spec.source.as_ref().expect("source"),
        &registry,
        &content_hex,
    );
    assert_eq!(
        job.metadata.name.as_deref(),
        Some("ccbuild-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    );
    assert!(
        job.metadata.owner_references.is_none(),
        "shared by content key: no owner"
    );
    let spec = job.spec.expect("job spec");
    assert_eq!(spec.backoff_limit, Some(0));
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let init = &pod.init_containers.as_ref().expect("init")[0];
    let init_env = env_map(init);
    assert_eq!(init_env["CONTENT_SHA256"], "a".repeat(64));
    assert!(!init_env.contains_key("CONTEXT_URL"));
    let script = &init.command.as_ref().expect("command")[2];
    assert!(script.contains("sha256sum -c"), "context is verified");
    let input = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "input")
        .expect("input volume");
    let cm = input.config_map.as_ref().expect("configMap volume");
    assert_eq!(cm.name, "asset-transfer-context");
    assert_eq!(cm.items.as_ref().expect("items")[0].key, "context.tar.gz");

    let build = &pod.containers[0];
    assert!(
        build
            .image
            .as_deref()
            .expect("image")
            .ends_with("-rootless")
    );
    let env = env_map(build);
    assert_eq!(
        env["IMAGE"],
        format!(
            "registry.example.com/chaincode/asset-transfer:{}",
            "a".repeat(64)
        )
    );
    assert_eq!(env["BUILDKITD_FLAGS"], "--oci-worker-no-process-sandbox");
    let command = build.command.clone().expect("command");
    assert!(command[2].contains("buildctl-daemonless.sh build --frontend dockerfile.v0"));
    assert!(command[2].contains("push=true"));
    assert!(command[2].contains("--metadata-file"));
    assert!(command[2].contains("/dev/termination-log"));
    assert!(command.contains(&"build-arg:NPM_REGISTRY=https://npm.example.com/".to_string()));
    assert!(
        command.contains(
            &"build-arg:BUILDER_IMAGE=docker.io/hyperledger/fabric-nodeenv:2.5".to_string()
        )
    );
    assert_eq!(
        build.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    let sc = build.security_context.clone().expect("securityContext");
    assert_eq!(
        sc.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("Unconfined")
    );
    assert_eq!(
        sc.app_armor_profile.map(|s| s.type_).as_deref(),
        Some("Unconfined")
    );
    assert_eq!(sc.run_as_user, Some(1000));
    let push = build
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "push-credentials")
        .expect("push credentials mounted");
    assert_eq!(push.mount_path, "/home/user/.docker");
}

#[test]
fn build_job_for_url_context_downloads_with_a_size_cap() {
    let cc = fixture("go-url.yaml");
    let ImageSource::Build {
        content_hex,
        registry,
    } = plan::validate(&cc).expect("valid")
    else {
        panic!("expected a build");
    };
    let job = desired::build_job(
        &cc,
        cc.spec.source.as_ref().expect("source"),
        &registry,
        &content_hex,
    );
    let pod = job.spec.expect("spec").template.spec.expect("pod");
    let init_env = env_map(&pod.init_containers.expect("init")[0]);
    assert_eq!(
        init_env["CONTEXT_URL"],
        "https://artifacts.example.com/contexts/big-go.tar.gz"
    );
    assert_eq!(
        init_env["MAX_CONTEXT_BYTES"],
        (50 * 1024 * 1024).to_string()
    );
    assert!(pod.volumes.iter().flatten().all(|v| v.name != "input"));
    let command = pod.containers[0].command.clone().expect("command");
    assert!(command.contains(&"build-arg:GOPROXY=https://proxy.golang.org".to_string()));
}

#[test]
fn spec_errors_are_reported_not_guessed() {
    assert_eq!(
        plan::validate(&fixture("invalid-no-registry.yaml")),
        Err(SpecError::NoRegistry)
    );
    let mut cc = fixture("prebuilt.yaml");
    cc.spec.image.as_mut().expect("image").digest = "sha256:XYZ".into();
    assert!(matches!(
        plan::validate(&cc),
        Err(SpecError::BadImageDigest(_))
    ));
    let mut cc = fixture("go-url.yaml");
    cc.spec.source.as_mut().expect("source").url = Some("file:///etc/passwd".into());
    assert!(matches!(
        plan::validate(&cc),
        Err(SpecError::BadSourceUrl(_))
    ));
    let mut cc = fixture("go-url.yaml");
    cc.spec.source.as_mut().expect("source").config_map =
        Some(chaincode_operator::operator::crd::KeyRef {
            name: "x".into(),
            key: "y".into(),
        });
    assert_eq!(plan::validate(&cc), Err(SpecError::AmbiguousSource));
    let mut cc = fixture("prebuilt.yaml");
    cc.spec.image = None;
    assert_eq!(
        plan::validate(&cc),
        Err(SpecError::ImagePlatformWithoutImage)
    );
    let mut cc = fixture("prebuilt.yaml");
    cc.spec.package_id = "no-hash".into();
    assert!(matches!(
        plan::validate(&cc),
        Err(SpecError::BadPackageId(_))
    ));
}
