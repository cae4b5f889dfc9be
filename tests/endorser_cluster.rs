//! The endorser's kubernetes runtime on a real cluster (the kube kit in CI), driven by Hyperledger's
//! own clients and shim: `chaincode-operator dev --runtime kubernetes` installs the Node contract
//! chaincode, the operator builds it from source in-cluster (BuildKit Job, pushed to the kit's
//! registry) and runs it as a Pod that registers with the endorser; fabric-gateway submits and
//! evaluates through it; a killed Pod is relaunched by the next invoke; a failing build and a
//! missing image reach the client with their cause; stopping or killing the endorser leaves nothing
//! running. Skipped with a notice without a cluster; the build scenarios need the kit (registry,
//! BuildKit image, node base image).
mod support;

use std::time::{Duration, Instant};

use chaincode_operator::endorser::chaincode::runtime::kubernetes::rbac::ENDORSER_PERMISSIONS;
use support::cluster::{
    Cluster, Kit, Namespace, chaincodes, condition, eventually, kill_chaincode_pods, running_pods,
    service_account_kubeconfig, start_dev, start_npm_proxy, start_operator,
};
use support::dev::{
    copy_contract_source, dev_ccaas_command, free_loopback_address, gateway, interrupt, kill,
    node_chaincode_server, spawn_dev,
};
use support::fabric::FabricNetwork;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_runtime_builds_runs_registers_relaunches_and_cleans_up() {
    let test = "kubernetes_runtime_builds_runs_registers_relaunches_and_cleans_up";
    let Some(cluster) = Cluster::from_env(test) else {
        return;
    };
    let Some(kit) = Kit::from(&cluster) else {
        eprintln!("skipped {test}: needs the kube kit's registry, BuildKit and node base images");
        return;
    };
    support::installed_e2e_dir("clients");
    cluster.apply_crd();
    let ns = Namespace::create(&cluster, format!("ccend-{}", std::process::id()));
    let _operator = start_operator(&cluster, &ns.name);
    let work = tempfile::tempdir().expect("tempdir");
    // The endorser runs as a ServiceAccount with exactly the Role the chart grants endorsers.
    let endorser_kubeconfig = service_account_kubeconfig(
        &cluster,
        &ns.name,
        "chaincode-endorser",
        ENDORSER_PERMISSIONS,
        work.path(),
    );
    let (_proxy, npm_registry) = start_npm_proxy(&kit.node_ip).await;
    let registry_args = vec!["--node-registry".to_string(), npm_registry.clone()];
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut first_args = registry_args.clone();
    first_args.extend([
        "--metrics-listen".to_string(),
        format!("127.0.0.1:{metrics_port}"),
    ]);
    let source = work.path().join("src");
    copy_contract_source(&source);

    // 1. Built from source in-cluster, run as a Pod, registered; the Gateway works through it.
    let started = Instant::now();
    let dev = start_dev(
        &endorser_kubeconfig,
        &kit,
        &ns.name,
        "e2e",
        &work.path().join("dev"),
        &source,
        &first_args,
    )
    .await;
    eprintln!(
        "dev --runtime kubernetes ready (build + launch) after {:?}",
        started.elapsed()
    );
    let seen = gateway(&dev.dir, &["run", "asset1"])
        .await
        .expect("gateway run");
    assert_eq!(seen["submitResult"], "ok", "{seen}");
    assert_eq!(seen["evaluated"], "v1", "{seen}");
    assert_eq!(seen["statuses"][1]["code"], "MVCC_READ_CONFLICT", "{seen}");
    assert_eq!(seen["event"]["eventName"], "created", "{seen}");
    let items = chaincodes(&cluster, &ns.name, "e2e");
    assert_eq!(items.len(), 1, "one Chaincode for one package: {items:?}");
    let cc = &items[0];
    let name = cc["metadata"]["name"].as_str().expect("name").to_string();
    assert_eq!(cc["spec"]["packageId"], dev.info.package_id.as_str());
    assert!(
        cc["status"]["imageDigest"]
            .as_str()
            .is_some_and(|image| image.starts_with(&format!("{}/chaincode@sha256:", kit.registry))),
        "the image was built and pushed to the kit's registry: {cc}"
    );
    let registered = condition(cc, "Registered").expect("Registered condition");
    assert_eq!(registered["status"], "True", "{cc}");
    assert_eq!(
        registered["observedGeneration"], cc["metadata"]["generation"],
        "Registered speaks for the current generation: {cc}"
    );
    assert_eq!(cc["status"]["phase"], "Ready", "{cc}");
    assert_eq!(condition(cc, "Ready").expect("Ready")["status"], "True");
    let built_image = cc["status"]["imageDigest"]
        .as_str()
        .expect("imageDigest")
        .to_string();
    // The launch is counted and its phases timed on /metrics.
    let metrics = http_get(metrics_port, "/metrics").await;
    assert!(
        metrics.contains("chaincode_endorser_chaincode_launches_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "chaincode_endorser_chaincode_launch_phase_seconds_count{phase=\"registered\"} 1"
        ),
        "{metrics}"
    );
    // The allocator's heap is read at each scrape.
    let heap_in_use = metrics
        .lines()
        .find_map(|line| line.strip_prefix("chaincode_endorser_heap_in_use_bytes "))
        .and_then(|value| value.trim().parse::<u64>().ok());
    assert!(
        heap_in_use.is_some_and(|bytes| bytes > 1024 * 1024),
        "{metrics}"
    );
    let printed = cluster.kubectl_ok(&["get", "cc", "-n", &ns.name, &name]);
    assert!(
        printed.contains("Ready") && printed.contains("True"),
        "{printed}"
    );

    // 2. The Pod killed mid-run: the stream closes (Registered=False), the next invoke relaunches
    // as a new launch attempt and succeeds.
    let attempt = cc["spec"]["launchAttempt"].as_u64().expect("launchAttempt");
    kill_chaincode_pods(&cluster, &ns.name, &name);
    eventually(
        "Registered=False after the Pod was killed",
        Duration::from_secs(60),
        || {
            chaincodes(&cluster, &ns.name, "e2e")
                .first()
                .and_then(|cc| condition(cc, "Registered").cloned())
                .is_some_and(|c| c["status"] == "False" && c["reason"] == "StreamClosed")
        },
    )
    .await;
    let read = gateway(&dev.dir, &["read", "asset1"])
        .await
        .expect("read after relaunch");
    assert_eq!(
        read["value"], "first",
        "committed state is served by the relaunched Pod"
    );
    let cc = chaincodes(&cluster, &ns.name, "e2e").remove(0);
    assert!(
        cc["spec"]["launchAttempt"].as_u64() > Some(attempt),
        "the relaunch is a new launch attempt: {cc}"
    );
    assert_eq!(
        condition(&cc, "Registered").expect("Registered")["status"],
        "True"
    );

    // 3. Endorser shutdown: nothing it launched is left.
    interrupt(dev).await;
    eventually(
        "no Chaincode after the endorser stopped",
        Duration::from_secs(60),
        || chaincodes(&cluster, &ns.name, "e2e").is_empty(),
    )
    .await;
    eventually(
        "no chaincode Pod running after the endorser stopped",
        Duration::from_secs(90),
        || running_pods(&cluster, &ns.name).is_empty(),
    )
    .await;

    // 4. SIGKILLed endorser: the next start deletes the earlier run's Chaincodes (their client
    // certificates came from the dead process's CA) and launches afresh.
    let dev = start_dev(
        &endorser_kubeconfig,
        &kit,
        &ns.name,
        "e2e",
        &work.path().join("dev"),
        &source,
        &registry_args,
    )
    .await;
    let before = chaincodes(&cluster, &ns.name, "e2e");
    assert_eq!(before.len(), 1);
    let old_uid = before[0]["metadata"]["uid"].clone();
    let mut dev_child = dev.child;
    dev_child.kill().await.expect("SIGKILL dev");
    let dev = start_dev(
        &endorser_kubeconfig,
        &kit,
        &ns.name,
        "e2e",
        &work.path().join("dev"),
        &source,
        &registry_args,
    )
    .await;
    let after = chaincodes(&cluster, &ns.name, "e2e");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(
        after[0]["metadata"]["uid"], old_uid,
        "the orphan was replaced"
    );
    let read = gateway(&dev.dir, &["read", "asset1"])
        .await
        .expect("read after restart");
    assert_eq!(read["value"], "first");
    interrupt(dev).await;

    // 5. A build that fails: the client's error names the build failure, not a startup timeout.
    let broken = work.path().join("broken");
    copy_contract_source(&broken);
    let package_json = broken.join("package.json");
    let text = std::fs::read_to_string(&package_json).expect("package.json");
    std::fs::write(
        &package_json,
        text.replace(
            "\"fabric-shim\": \"2.5.8\"",
            "\"fabric-shim\": \"2.5.8\",\n    \"chaincode-operator-no-such-package\": \"9.9.9\"",
        ),
    )
    .expect("write package.json");
    std::fs::remove_file(broken.join("package-lock.json")).expect("drop the lock file");
    let mut extra = registry_args.clone();
    extra.extend(["--chaincode-startup-timeout".into(), "900".into()]);
    let dev = start_dev(
        &endorser_kubeconfig,
        &kit,
        &ns.name,
        "broken",
        &work.path().join("broken-dev"),
        &broken,
        &extra,
    )
    .await;
    let error = gateway(&dev.dir, &["read", "k"])
        .await
        .expect_err("a chaincode whose build fails cannot answer");
    assert!(
        error.contains("BuildFailed"),
        "the error names the failed build: {error}"
    );
    assert!(!error.contains("startup timeout"), "{error}");
    interrupt(dev).await;

    // 6. An image that does not exist: the error names the pull failure.
    let missing = format!(
        "basic={}/chaincode/missing@sha256:{}",
        kit.registry,
        "0".repeat(64)
    );
    let mut extra = registry_args.clone();
    extra.extend([
        "--chaincode-image".into(),
        missing,
        "--chaincode-startup-timeout".into(),
        "900".into(),
    ]);
    let dev = start_dev(
        &endorser_kubeconfig,
        &kit,
        &ns.name,
        "missing",
        &work.path().join("missing-dev"),
        &source,
        &extra,
    )
    .await;
    let error = gateway(&dev.dir, &["read", "k"])
        .await
        .expect_err("a chaincode whose image is missing cannot answer");
    assert!(
        error.contains("ImagePull"),
        "the error names the image pull: {error}"
    );
    interrupt(dev).await;

    // 7. A prebuilt image by digest (the one built above) in a namespace enforcing the restricted
    // Pod Security Standard: the chaincode Pod is admitted, registers and serves.
    let restricted =
        Namespace::create(&cluster, format!("ccend-restricted-{}", std::process::id()));
    cluster.kubectl_ok(&[
        "label",
        "namespace",
        &restricted.name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    ]);
    let _restricted_operator = start_operator(&cluster, &restricted.name);
    let restricted_kubeconfig = service_account_kubeconfig(
        &cluster,
        &restricted.name,
        "chaincode-endorser",
        ENDORSER_PERMISSIONS,
        &work.path().join("restricted"),
    );
    let mut extra = registry_args.clone();
    extra.extend(["--chaincode-image".into(), format!("basic={built_image}")]);
    let dev = start_dev(
        &restricted_kubeconfig,
        &kit,
        &restricted.name,
        "prebuilt",
        &work.path().join("prebuilt-dev"),
        &source,
        &extra,
    )
    .await;
    let seen = gateway(&dev.dir, &["run", "asset7"])
        .await
        .expect("gateway run through the prebuilt image");
    assert_eq!(seen["evaluated"], "v1", "{seen}");
    let items = chaincodes(&cluster, &restricted.name, "prebuilt");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["spec"]["platform"], "image");
    assert_eq!(items[0]["status"]["imageDigest"], built_image.as_str());
    assert_eq!(items[0]["status"]["phase"], "Ready", "{}", items[0]);
    interrupt(dev).await;
}

/// The body of `GET path` from 127.0.0.1:`port` (HTTP/1.0, so the server closes after answering).
async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the metrics port");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read the response");
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    response
}

/// A chaincode-as-a-service package on a node running `--runtime kubernetes` is dialled, never
/// run as a Pod: `dev --runtime kubernetes --ccaas ADDRESS` with Hyperledger's
/// `fabric-chaincode-node server` at ADDRESS endorses and commits through fabric-gateway, and no
/// Chaincode resource (hence no Pod) is written. Needs a cluster, not the kit's build images.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_runtime_dials_ccaas_packages_instead_of_running_pods() {
    let test = "kubernetes_runtime_dials_ccaas_packages_instead_of_running_pods";
    let Some(cluster) = Cluster::from_env(test) else {
        return;
    };
    support::installed_e2e_dir("clients");
    cluster.apply_crd();
    let ns = Namespace::create(&cluster, format!("ccaas-{}", std::process::id()));
    let work = tempfile::tempdir().expect("tempdir");
    let endorser_kubeconfig = service_account_kubeconfig(
        &cluster,
        &ns.name,
        "chaincode-endorser",
        ENDORSER_PERMISSIONS,
        work.path(),
    );
    let dir = work.path().join("dev");
    let address = free_loopback_address();
    let mut command = dev_ccaas_command(
        &dir,
        &address,
        "basic",
        &[
            "--runtime",
            "kubernetes",
            "--kube-namespace",
            &ns.name,
            "--endorser-id",
            "ccaas",
        ],
    );
    command.env("KUBECONFIG", &endorser_kubeconfig);
    let dev = spawn_dev(command, &dir, Duration::from_secs(120)).await;
    let mut server = node_chaincode_server(&address, &dev.info.package_id, &[]).await;

    let submitted = gateway(&dir, &["submit", "ccaas-k8s", "dialled"])
        .await
        .expect("gateway submit");
    assert_eq!(submitted["status"], "VALID", "{submitted}");
    assert_eq!(submitted["evaluated"], "dialled", "{submitted}");
    assert!(
        chaincodes(&cluster, &ns.name, "ccaas").is_empty(),
        "no Chaincode resource for a ccaas package"
    );
    assert!(running_pods(&cluster, &ns.name).is_empty());
    kill(&mut server).await;
    interrupt(dev).await;
}

/// Waits until the Chaincode of the package whose id starts with `package_prefix` says
/// `Registered=True` and is Ready; returns it.
async fn eventually_registered(
    cluster: &Cluster,
    namespace: &str,
    package_prefix: &str,
) -> serde_json::Value {
    let found = || {
        chaincodes(cluster, namespace, "peer0")
            .into_iter()
            .find(|cc| {
                cc["spec"]["packageId"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(package_prefix))
                    && condition(cc, "Registered").is_some_and(|c| c["status"] == "True")
                    && cc["status"]["phase"] == "Ready"
            })
    };
    eventually(
        &format!("the {package_prefix} Chaincode registered and Ready"),
        Duration::from_secs(60),
        || found().is_some(),
    )
    .await;
    let cc = found().expect("still registered");
    let registered = condition(&cc, "Registered").expect("Registered condition");
    assert_eq!(registered["reason"], "Registered", "{cc}");
    cc
}

/// A stock Fabric peer hands its chaincode to the operator through `chaincode-operator builder`:
/// the peer installs a Node chaincode from source (our detect and build), the operator builds it
/// in-cluster and runs it as a Pod that registers with the stock peer over the TLS material the
/// peer issued; `peer chaincode invoke` and `query` work through it; the Chaincode says it
/// registered (run's relay saw the peer's READY); a new definition replaces the launch; stopping
/// the peer deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_fabric_peer_runs_chaincode_through_the_operator() {
    let test = "a_stock_fabric_peer_runs_chaincode_through_the_operator";
    let Some(cluster) = Cluster::from_env(test) else {
        return;
    };
    let Some(kit) = Kit::from(&cluster) else {
        eprintln!("skipped {test}: needs the kube kit's registry, BuildKit and node base images");
        return;
    };
    let Some(fabric) = support::fabric::kit() else {
        eprintln!("skipped {test}: no Fabric kit (../shared/fabric or FABRIC_KIT)");
        return;
    };
    cluster.apply_crd();
    let ns = Namespace::create(&cluster, format!("ccpeer-{}", std::process::id()));
    let _operator = start_operator(&cluster, &ns.name);
    let work = tempfile::tempdir().expect("tempdir");
    // The peer's builder uses exactly the Role the chart grants endorsers.
    let kubeconfig = service_account_kubeconfig(
        &cluster,
        &ns.name,
        "fabric-peer",
        ENDORSER_PERMISSIONS,
        work.path(),
    );
    let (_proxy, npm_registry) = start_npm_proxy(&kit.node_ip).await;
    let builder = work.path().join("builder");
    let installed = std::process::Command::new(env!("CARGO_BIN_EXE_chaincode-operator"))
        .args(["builder", "install"])
        .arg(&builder)
        .arg("--copy")
        .output()
        .expect("builder install");
    assert!(installed.status.success(), "{installed:?}");

    let settings = [
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("CHAINCODE_NAMESPACE", ns.name.clone()),
        ("CHAINCODE_ENDORSER_ID", "peer0".to_string()),
        (
            "CHAINCODE_BUILD_REGISTRY",
            format!("{}/chaincode", kit.registry),
        ),
        ("CHAINCODE_BUILDER_IMAGE", kit.base_image()),
        ("CHAINCODE_RUNTIME_IMAGE", kit.base_image()),
        ("CHAINCODE_BUILDKIT_IMAGE", kit.buildkit_image.clone()),
        ("CHAINCODE_FETCHER_IMAGE", kit.fetcher_image.clone()),
        ("NODE_REGISTRY", npm_registry.clone()),
    ];
    let mut env: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    env.extend([
        ("PEER_LISTEN_HOST".to_string(), kit.node_ip.clone()),
        (
            "EXTERNAL_BUILDERS".to_string(),
            format!("chaincode-operator={}", builder.display()),
        ),
        (
            "PROPAGATE_ENV".to_string(),
            settings
                .iter()
                .map(|(k, _)| *k)
                .filter(|k| *k != "KUBECONFIG")
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]);
    let network = FabricNetwork {
        script: fabric.join("network.sh"),
        lab: work.path().join("fabric-lab"),
        env,
    };
    let started = Instant::now();
    network.run(&["up"]);
    let source = work.path().join("src");
    copy_contract_source(&source);
    // Install (our detect + build), approve, commit, then query until the chaincode answers:
    // the peer's launch goes through our run, the operator's build and the Pod.
    network.run(&[
        "deploy",
        &source.display().to_string(),
        "basic",
        "--probe",
        "get",
        "probe",
    ]);
    eprintln!(
        "stock peer: deployed and answering through the operator after {:?}",
        started.elapsed()
    );
    let cli = |args: &str| {
        let script = format!(
            "source {lab}/network.env && peer chaincode {args}",
            lab = network.lab.display()
        );
        let output = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .expect("peer CLI");
        assert!(output.status.success(), "peer chaincode {args}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    cli(
        "invoke -o $FABRIC_ORDERER_ENDPOINT --tls --cafile $FABRIC_ORDERER_CA -C mychannel -n basic \
         --peerAddresses $FABRIC_PEER_ENDPOINT --tlsRootCertFiles $FABRIC_TLS_CA_CERT \
         -c '{\"Args\":[\"put\",\"k1\",\"v1\"]}' --waitForEvent",
    );
    let value = cli("query -C mychannel -n basic -c '{\"Args\":[\"get\",\"k1\"]}'");
    assert_eq!(value.trim(), "v1");

    // The chaincode registered through run's relay: the peer's READY seen, so Registered=True
    // (not StockPeer), and the Pod dials the relay, not the peer's own chaincode port.
    let version_one = eventually_registered(&cluster, &ns.name, "basic_1:").await;
    let address = version_one["spec"]["peer"]["address"]
        .as_str()
        .unwrap_or_default();
    assert!(
        address.starts_with(&format!("{}:", kit.node_ip)) && !address.ends_with(":9052"),
        "the chaincode dials the relay beside the peer: {version_one}"
    );

    // A new definition with another package: the peer stops the old one (no definition refers
    // to it any more), its run deletes the launch, and the new one registers.
    network.run(&[
        "deploy",
        &source.display().to_string(),
        "basic",
        "--probe",
        "get",
        "k1",
    ]);
    let version_two = eventually_registered(&cluster, &ns.name, "basic_2:").await;
    eventually(
        "the Chaincode of the replaced definition deleted",
        Duration::from_secs(60),
        || {
            chaincodes(&cluster, &ns.name, "peer0")
                .iter()
                .all(|cc| cc["metadata"]["name"] == version_two["metadata"]["name"])
        },
    )
    .await;
    let value = cli("query -C mychannel -n basic -c '{\"Args\":[\"get\",\"k1\"]}'");
    assert_eq!(
        value.trim(),
        "v1",
        "the new package reads the state the old one wrote"
    );

    // Stopping the peer stops its run, which deletes the launch.
    network.run(&["down"]);
    eventually(
        "the Chaincode deleted after the peer stopped",
        Duration::from_secs(60),
        || chaincodes(&cluster, &ns.name, "peer0").is_empty(),
    )
    .await;
}
