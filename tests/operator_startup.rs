//! Startup against a mocked API server: a missing CRD gives a clear hint; the Lease round acquires a
//! free Lease, follows a live one, and loses a write race gracefully.
use std::time::Duration;

use chaincode_operator::operator::controller::{ControllerError, check_crd};
use chaincode_operator::operator::crd::Chaincode;
use chaincode_operator::operator::leader::{Election, round};
use http::{Request, Response};
use k8s_openapi::api::coordination::v1::Lease;
use kube::client::Body;
use kube::{Api, Client};
use serde_json::{Value, json};
use tower_test::mock;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

async fn answer(handle: &mut Handle, method: &str, path: &str, status: u16, body: Value) -> Value {
    let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("a request")
        .expect("service alive");
    assert_eq!(request.method().as_str(), method);
    assert_eq!(request.uri().path(), path);
    let bytes = request.into_body().collect_bytes().await.expect("body");
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response"),
    );
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": reason, "code": code})
}

#[tokio::test]
async fn missing_crd_fails_startup_with_an_install_hint() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let api: Api<Chaincode> = Api::all(Client::new(service, "default"));
    let check = tokio::spawn(async move { check_crd(&api).await });
    answer(
        &mut handle,
        "GET",
        "/apis/fabric.chaincode.dev/v1alpha1/chaincodes",
        404,
        status(404, "NotFound"),
    )
    .await;
    let error = check.await.expect("join").expect_err("CRD missing");
    assert!(matches!(error, ControllerError::CrdMissing));
    assert!(
        error
            .to_string()
            .contains("kubectl apply -f crds/chaincode.yaml"),
        "{error}"
    );
}

fn election() -> Election {
    Election {
        namespace: "ops".into(),
        lease_name: "chaincode-operator".into(),
        identity: "replica-a".into(),
        lease_duration: Duration::from_secs(15),
        retry_period: Duration::from_secs(5),
    }
}

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/chaincode-operator";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

#[tokio::test]
async fn a_free_lease_is_created_and_held() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let api: Api<Lease> = Api::namespaced(Client::new(service, "default"), "ops");
    let task = tokio::spawn(async move { round(&api, &election()).await });
    answer(&mut handle, "GET", LEASE, 404, status(404, "NotFound")).await;
    let created = answer(&mut handle, "POST", LEASES, 201, json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "chaincode-operator"}})).await;
    assert_eq!(created["spec"]["holderIdentity"], "replica-a");
    assert_eq!(created["spec"]["leaseDurationSeconds"], 15);
    assert!(task.await.expect("join").expect("round"));
}

#[tokio::test]
async fn a_live_lease_of_another_replica_is_followed_without_writing() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let api: Api<Lease> = Api::namespaced(Client::new(service, "default"), "ops");
    let task = tokio::spawn(async move { round(&api, &election()).await });
    let renewed = k8s_openapi::jiff::Timestamp::now().to_string();
    answer(
        &mut handle,
        "GET",
        LEASE,
        200,
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "chaincode-operator", "resourceVersion": "7"},
        "spec": {"holderIdentity": "replica-b", "leaseDurationSeconds": 15, "renewTime": renewed}}),
    )
    .await;
    assert!(!task.await.expect("join").expect("round"));
}

#[tokio::test]
async fn taking_an_expired_lease_loses_cleanly_to_a_concurrent_writer() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let api: Api<Lease> = Api::namespaced(Client::new(service, "default"), "ops");
    let task = tokio::spawn(async move { round(&api, &election()).await });
    answer(&mut handle, "GET", LEASE, 200, json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "chaincode-operator", "resourceVersion": "7"},
        "spec": {"holderIdentity": "replica-b", "leaseDurationSeconds": 15, "renewTime": "2020-01-01T00:00:00.000000Z", "leaseTransitions": 4}})).await;
    let replaced = answer(&mut handle, "PUT", LEASE, 409, status(409, "Conflict")).await;
    assert_eq!(
        replaced["metadata"]["resourceVersion"], "7",
        "optimistic concurrency on the read version"
    );
    assert_eq!(replaced["spec"]["holderIdentity"], "replica-a");
    assert_eq!(replaced["spec"]["leaseTransitions"], 5);
    assert!(
        !task.await.expect("join").expect("round"),
        "lost the race: not leading"
    );
}

#[test]
fn a_build_job_wakes_every_chaincode_of_its_content_key_in_its_namespace() {
    use chaincode_operator::operator::controller::chaincodes_for_job;
    use chaincode_operator::operator::desired;
    use k8s_openapi::api::batch::v1::Job;

    let path = format!(
        "{}/tests/fixtures/operator/node-configmap.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let base: Chaincode =
        serde_saphyr::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("parses");
    let named = |name: &str, namespace: &str, digest: &str| {
        let mut cc = base.clone();
        cc.metadata.name = Some(name.into());
        cc.metadata.namespace = Some(namespace.into());
        cc.spec.source.as_mut().expect("source").content_digest = digest.into();
        cc
    };
    let same = format!("sha256:{}", "a".repeat(64));
    let other = format!("sha256:{}", "b".repeat(64));
    let chaincodes = [
        named("peer0", "fabric", &same),
        named("peer1", "fabric", &same),
        named("elsewhere", "other-ns", &same),
        named("different", "fabric", &other),
    ];
    let source = base.spec.source.clone().expect("source");
    let job: Job = desired::build_job(&base, &source, "registry.example.com/cc", &"a".repeat(64));
    let mut names: Vec<String> = chaincodes_for_job(&job, chaincodes.iter())
        .into_iter()
        .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["fabric/peer0".to_string(), "fabric/peer1".to_string()]
    );
}

/// With no kubeconfig and no cluster around, `controller` says what to do in one sentence instead
/// of kube's three inference errors.
#[test]
fn controller_without_any_kubernetes_configuration_says_what_to_set() {
    let home = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chaincode-operator"))
        .args(["controller", "--http-addr", "127.0.0.1:0"])
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", home.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("set KUBECONFIG"), "{stderr}");
    assert_eq!(stderr.matches("KUBECONFIG").count(), 1, "{stderr}");
    assert!(!stderr.to_lowercase().contains("infer"), "{stderr}");
}
