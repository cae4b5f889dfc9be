//! Reconciles against a mocked API server (tower-test): each test pins the exact request sequence.
use std::sync::Arc;
use std::time::Duration;

use chaincode_operator::operator::crd::{Chaincode, ChaincodeStatus};
use chaincode_operator::operator::desired;
use chaincode_operator::operator::reconcile::{self, Context};
use http::{Request, Response};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tower_test::mock;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn fixture(name: &str) -> Chaincode {
    let path = format!(
        "{}/tests/fixtures/operator/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_saphyr::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("parses")
}

/// One expected request and the canned answer.
struct Exchange {
    method: &'static str,
    /// Expected path, and a substring the query must contain (if any).
    path: String,
    query: &'static str,
    status: u16,
    answer: Value,
}

fn ex(method: &'static str, path: impl Into<String>, status: u16, answer: Value) -> Exchange {
    Exchange {
        method,
        path: path.into(),
        query: "",
        status,
        answer,
    }
}

fn with_query(mut e: Exchange, query: &'static str) -> Exchange {
    e.query = query;
    e
}

/// A request as the mock saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: Value,
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
           "message": "not found", "code": 404})
}

fn conflict() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
           "message": "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.containers", "code": 409})
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn meta_list(items: Vec<&str>) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {},
           "items": items.into_iter().map(|n| json!({"apiVersion": "meta.k8s.io/v1",
               "kind": "PartialObjectMetadata", "metadata": {"name": n, "namespace": "fabric"}})).collect::<Vec<_>>()})
}

/// What the API server answers to a status apply (the reconcile ignores its content).
fn applied_chaincode() -> Value {
    serde_json::to_value(fixture("prebuilt.yaml")).expect("json")
}

fn event_ok() -> Value {
    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "eventTime": null})
}

/// Answers the expected exchanges in order, failing on anything else, and returns what it saw.
async fn serve(mut handle: Handle, script: Vec<Exchange>) -> (Handle, Vec<Seen>) {
    let mut seen = Vec::new();
    for (i, step) in script.into_iter().enumerate() {
        let next = tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await;
        let Ok(Some((request, send))) = next else {
            panic!(
                "step {i}: expected {} {} but no request came",
                step.method, step.path
            );
        };
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        assert_eq!(
            (method.as_str(), path.as_str()),
            (step.method, step.path.as_str()),
            "step {i}: unexpected request (query {query})"
        );
        assert!(
            query.contains(step.query),
            "step {i}: query {query:?} lacks {:?}",
            step.query
        );
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        seen.push(Seen {
            method,
            path,
            query,
            body,
        });
        let response = Response::builder()
            .status(step.status)
            .body(Body::from(serde_json::to_vec(&step.answer).expect("json")))
            .expect("response");
        send.send_response(response);
    }
    (handle, seen)
}

async fn run(
    cc: Chaincode,
    store: Option<reflector::Store<DeserializeGuard<Chaincode>>>,
    script: Vec<Exchange>,
    now: Timestamp,
) -> (Result<Action, reconcile::Error>, Vec<Seen>, Arc<Context>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = Arc::new(Context::new(client, store));
    let server = tokio::spawn(serve(handle, script));
    let result = reconcile::reconcile(&cc, &ctx, now).await;
    let (mut handle, seen) = server.await.expect("mock server");
    let extra = tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await;
    if let Ok(Some((request, _))) = extra {
        panic!(
            "unexpected extra request {} {}",
            request.method(),
            request.uri()
        );
    }
    assert_permitted(&seen);
    (result, seen, ctx)
}

/// Every request the reconcile made is granted by the chart's RBAC table. A server-side apply of an
/// object (not a status) may create it, so the API server checks `create` as well as `patch`.
fn assert_permitted(seen: &[Seen]) {
    use chaincode_operator::operator::rbac::CLUSTER_PERMISSIONS;
    for s in seen {
        let parts: Vec<&str> = s.path.trim_start_matches('/').split('/').collect();
        // /api/v1/namespaces/NS/RES[/NAME[/SUB]] or /apis/GROUP/VERSION/namespaces/NS/RES[/NAME[/SUB]]
        let (group, rest) = if parts[0] == "api" {
            ("", &parts[2..])
        } else {
            (parts[1], &parts[3..])
        };
        let resource = match rest {
            ["namespaces", _] => "namespaces".to_string(),
            [_, _, res] => (*res).to_string(),
            [_, _, res, _] => (*res).to_string(),
            [_, _, res, _, sub] => format!("{res}/{sub}"),
            _ => panic!("unexpected path {}", s.path),
        };
        let collection = rest.len() == 3;
        let verbs: &[&str] = match s.method.as_str() {
            "GET" if collection => &["list"],
            "GET" => &["get"],
            "PATCH" if s.query.contains("fieldManager=") && !resource.contains('/') => {
                &["patch", "create"]
            }
            "PATCH" => &["patch"],
            "POST" => &["create"],
            "DELETE" => &["delete"],
            m => panic!("unexpected method {m}"),
        };
        for verb in verbs {
            assert!(
                CLUSTER_PERMISSIONS
                    .iter()
                    .any(|p| p.group == group && p.resource == resource && p.verbs.contains(verb)),
                "RBAC does not grant {verb} {group}/{resource} used by {} {}?{}",
                s.method,
                s.path,
                s.query
            );
        }
    }
}

fn now() -> Timestamp {
    Timestamp::from_second(1_700_000_000).expect("time")
}

const NS: &str = "/api/v1/namespaces/fabric";
const JOBS: &str = "/apis/batch/v1/namespaces/fabric/jobs";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/fabric/events";
const CONTENT_HEX: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const JOB_NAME: &str = "ccbuild-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn status_path(name: &str) -> String {
    format!("/apis/fabric.chaincode.dev/v1alpha1/namespaces/fabric/chaincodes/{name}/status")
}

fn built_digest() -> String {
    format!("sha256:{}", "e".repeat(64))
}

fn image() -> String {
    format!(
        "registry.example.com/chaincode/asset-transfer@{}",
        built_digest()
    )
}

fn condition<'a>(status_patch: &'a Value, type_: &str) -> &'a Value {
    status_patch["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {status_patch}"))
}

fn tls_source() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "asset-transfer-launch-tls", "namespace": "fabric"},
           "data": {"client.key": "S0VZ", "client.crt": "Q0VSVA==", "peer.crt": "Uk9PVA=="}})
}

fn job_pod(container: &str, init: bool, exit_code: i32, message: &str) -> Value {
    let statuses = json!([{"name": container, "image": "i", "imageID": "", "ready": false,
        "restartCount": 0, "state": {"terminated": {"exitCode": exit_code, "reason": if exit_code == 0 {"Completed"} else {"Error"}, "message": message}}}]);
    let key = if init {
        "initContainerStatuses"
    } else {
        "containerStatuses"
    };
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("{JOB_NAME}-x1"), "namespace": "fabric"},
           "status": {"phase": if exit_code == 0 {"Succeeded"} else {"Failed"}, key: statuses}})
}

fn echo_pod(name: &str, phase: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "fabric", "creationTimestamp": "2023-11-14T22:13:20Z"},
           "status": {"phase": phase}})
}

#[tokio::test]
async fn first_build_creates_the_job_and_reports_building() {
    let cc = fixture("node-configmap.yaml");
    let script = vec![
        ex("GET", format!("{JOBS}/{JOB_NAME}"), 404, not_found()),
        // Pod Security labels first: a namespace that forbids BuildKit gets no Job.
        ex(
            "GET",
            "/api/v1/namespaces/fabric",
            200,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fabric",
                   "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}),
        ),
        with_query(
            ex(
                "PATCH",
                format!("{JOBS}/{JOB_NAME}"),
                201,
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": JOB_NAME}}),
            ),
            "fieldManager=chaincode-operator",
        ),
        with_query(
            ex(
                "PATCH",
                status_path("asset-transfer"),
                200,
                applied_chaincode(),
            ),
            "fieldManager=chaincode-operator",
        ),
        ex("POST", EVENTS, 201, event_ok()),
    ];
    let (result, seen, _) = run(cc, None, script, now()).await;
    assert!(result.is_ok(), "{result:?}");
    let job = &seen[2].body;
    assert_eq!(job["kind"], "Job");
    assert_eq!(
        job["metadata"]["labels"]["fabric.chaincode.dev/content-key"],
        &CONTENT_HEX[..63]
    );
    let status = &seen[3].body;
    assert_eq!(status["status"]["phase"], "Building");
    assert_eq!(condition(status, "Built")["reason"], "Building");
    assert_eq!(condition(status, "Built")["observedGeneration"], 3);
    assert!(
        status["status"]["conditions"]
            .as_array()
            .expect("list")
            .iter()
            .all(|c| c["type"] != "Registered"),
        "operator must not write Registered"
    );
    assert_eq!(status["status"]["buildJobName"], JOB_NAME);
    let event = &seen[4].body;
    assert_eq!(event["reason"], "Building");
    assert_eq!(event["type"], "Normal");
}

#[tokio::test]
async fn second_chaincode_with_the_same_content_reuses_the_finished_build() {
    let mut cc = fixture("node-configmap.yaml");
    cc.metadata.name = Some("asset-transfer-peer1".into());
    cc.spec.tls.as_mut().expect("tls").secret_name = "asset-transfer-launch-tls".into();
    let pod_name = desired::launch_pod_name(&cc, &image());
    let script = vec![
        ex(
            "GET",
            format!("{JOBS}/{JOB_NAME}"),
            200,
            json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": JOB_NAME}, "status": {"succeeded": 1,
            "startTime": "2023-11-14T22:00:00Z", "completionTime": "2023-11-14T22:03:00Z"}}),
        ),
        with_query(
            ex(
                "GET",
                format!("{NS}/pods"),
                200,
                list("PodList", vec![job_pod("build", false, 0, &built_digest())]),
            ),
            "labelSelector=job-name",
        ),
        ex("GET", format!("{NS}/pods"), 200, list("PodList", vec![])),
        ex("GET", format!("{NS}/secrets"), 200, meta_list(vec![])),
        ex(
            "GET",
            format!("{NS}/secrets/asset-transfer-launch-tls"),
            200,
            tls_source(),
        ),
        ex(
            "PATCH",
            format!("{NS}/secrets/{pod_name}-tls"),
            201,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{pod_name}-tls")}}),
        ),
        ex(
            "PATCH",
            format!("{NS}/pods/{pod_name}"),
            201,
            echo_pod(&pod_name, "Pending"),
        ),
        ex("POST", EVENTS, 201, event_ok()),
        ex(
            "PATCH",
            status_path("asset-transfer-peer1"),
            200,
            applied_chaincode(),
        ),
        ex("POST", EVENTS, 201, event_ok()),
    ];
    let (result, seen, ctx) = run(cc, None, script, now()).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(
        seen.iter()
            .all(|s| !(s.method == "PATCH" && s.path.starts_with(JOBS))),
        "no second build"
    );
    let secret = &seen[5].body;
    assert_eq!(secret["data"]["client_pem.key"], "S0VZ", "PEM copied as is");
    assert_eq!(
        secret["data"]["client.key"], "UzBWWg==",
        "base64 of the PEM"
    );
    let pod = &seen[6].body;
    assert_eq!(pod["spec"]["containers"][0]["image"], image());
    assert_eq!(seen[7].body["reason"], "Launching");
    let status = &seen[8].body;
    assert_eq!(status["status"]["imageDigest"], image());
    assert_eq!(
        status["status"]["contentDigest"],
        format!("sha256:{CONTENT_HEX}")
    );
    assert_eq!(status["status"]["podName"], pod_name);
    assert_eq!(status["status"]["phase"], "Launching");
    assert_eq!(condition(status, "Built")["status"], "True");
    assert_eq!(seen[9].body["reason"], "Built");
    assert!(
        ctx.metrics
            .render()
            .contains("chaincode_operator_build_duration_seconds_count 1")
    );
}

#[tokio::test]
async fn a_sibling_status_in_the_cache_avoids_even_reading_the_job() {
    let mut first = fixture("node-configmap.yaml");
    first.status = Some(ChaincodeStatus {
        content_digest: Some(format!("sha256:{CONTENT_HEX}")),
        image_digest: Some(image()),
        ..Default::default()
    });
    let (store, mut writer) = reflector::store::<DeserializeGuard<Chaincode>>();
    writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(first))));
    let mut cc = fixture("node-configmap.yaml");
    cc.metadata.name = Some("asset-transfer-peer2".into());
    cc.spec.tls = None;
    let pod_name = desired::launch_pod_name(&cc, &image());
    let script = vec![
        ex("GET", format!("{NS}/pods"), 200, list("PodList", vec![])),
        ex("GET", format!("{NS}/secrets"), 200, meta_list(vec![])),
        ex(
            "PATCH",
            format!("{NS}/pods/{pod_name}"),
            201,
            echo_pod(&pod_name, "Pending"),
        ),
        ex("POST", EVENTS, 201, event_ok()),
        ex(
            "PATCH",
            status_path("asset-transfer-peer2"),
            200,
            applied_chaincode(),
        ),
        ex("POST", EVENTS, 201, event_ok()),
    ];
    let (result, _, _) = run(cc, Some(store), script, now()).await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn build_failure_surfaces_the_log_tail_in_condition_and_event() {
    let cc = fixture("node-configmap.yaml");
    let log = "#8 [build 3/4] RUN npm install --production\nnpm ERR! code E404\nnpm ERR! 404 Not Found - GET https://npm.example.com/fabric-shimm";
    let script = vec![
        ex(
            "GET",
            format!("{JOBS}/{JOB_NAME}"),
            200,
            json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": JOB_NAME}, "status": {"failed": 1, "conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}}),
        ),
        ex(
            "GET",
            format!("{NS}/pods"),
            200,
            list("PodList", vec![job_pod("build", false, 1, log)]),
        ),
        ex(
            "PATCH",
            status_path("asset-transfer"),
            200,
            applied_chaincode(),
        ),
        ex("POST", EVENTS, 201, event_ok()),
    ];
    let (result, seen, _) = run(cc, None, script, now()).await;
    assert!(result.is_ok(), "{result:?}");
    let status = &seen[2].body;
    assert_eq!(status["status"]["phase"], "Failed");
    let built = condition(status, "Built");
    assert_eq!(built["reason"], "BuildFailed");
    let message = built["message"].as_str().expect("message");
    assert!(message.contains("exited 1"), "{message}");
    assert!(
        message.ends_with("404 Not Found - GET https://npm.example.com/fabric-shimm"),
        "{message}"
    );
    let built_event = seen[3..]
        .iter()
        .find(|s| s.body["reason"] == "BuildFailed")
        .expect("BuildFailed event");
    assert_eq!(built_event.body["type"], "Warning");
    assert!(
        built_event.body["note"]
            .as_str()
            .expect("note")
            .contains("npm ERR! code E404")
    );
}

fn launched_status(cc: &Chaincode) -> ChaincodeStatus {
    ChaincodeStatus {
        content_digest: Some(format!("sha256:{CONTENT_HEX}")),
        image_digest: Some(image()),
        launch_attempt: Some(cc.spec.launch_attempt),
        ..Default::default()
    }
}

#[tokio::test]
async fn pod_failure_is_reported_with_exit_code_and_log() {
    let mut cc = fixture("node-configmap.yaml");
    cc.status = Some(launched_status(&cc));
    let pod_name = desired::launch_pod_name(&cc, &image());
    let failed = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": "fabric", "creationTimestamp": "2023-11-14T22:13:00Z"},
        "status": {"phase": "Failed", "containerStatuses": [{"name": "chaincode", "image": "i", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error",
            "message": "Error: 14 UNAVAILABLE: No connection established"}}}]}});
    let script = vec![
        ex(
            "GET",
            format!("{NS}/pods"),
            200,
            list("PodList", vec![failed]),
        ),
        ex(
            "GET",
            format!("{NS}/secrets"),
            200,
            meta_list(vec![&format!("{pod_name}-tls")]),
        ),
        ex(
            "PATCH",
            status_path("asset-transfer"),
            200,
            applied_chaincode(),
        ),
        ex("POST", EVENTS, 201, event_ok()),
        ex("POST", EVENTS, 201, event_ok()),
    ];
    let (result, seen, _) = run(cc, None, script, now()).await;
    assert!(result.is_ok(), "{result:?}");
    let status = &seen[2].body;
    assert_eq!(status["status"]["phase"], "Failed");
    let launched = condition(status, "Launched");
    assert_eq!(launched["reason"], "PodFailed");
    assert!(
        launched["message"]
            .as_str()
            .expect("m")
            .contains("14 UNAVAILABLE")
    );
    let warning = seen[3..]
        .iter()
        .find(|s| s.body["reason"] == "PodFailed")
        .expect("event");
    assert_eq!(warning.body["type"], "Warning");
}

#[tokio::test]
async fn a_new_launch_attempt_replaces_the_old_pod_and_secret() {
    let mut cc = fixture("node-configmap.yaml");
    cc.status = Some(launched_status(&cc));
    let mut old = cc.clone();
    old.spec.launch_attempt = 1;
    let old_pod = desired::launch_pod_name(&old, &image());
    let new_pod = desired::launch_pod_name(&cc, &image());
    let script = vec![
        ex(
            "GET",
            format!("{NS}/pods"),
            200,
            list("PodList", vec![echo_pod(&old_pod, "Running")]),
        ),
        ex(
            "GET",
            format!("{NS}/secrets"),
            200,
            meta_list(vec![&format!("{old_pod}-tls")]),
        ),
        ex(
            "GET",
            format!("{NS}/secrets/asset-transfer-launch-tls"),
            200,
            tls_source(),
        ),
        ex(
            "PATCH",
            format!("{NS}/secrets/{new_pod}-tls"),
            201,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}),
        ),
        ex(
            "PATCH",
            format!("{NS}/pods/{new_pod}"),
            201,
            echo_pod(&new_pod, "Pending"),
        ),
        ex("POST", EVENTS, 201, event_ok()),
        ex(
            "DELETE",
            format!("{NS}/pods/{old_pod}"),
            200,
            echo_pod(&old_pod, "Running"),
        ),
        ex(
            "DELETE",
            format!("{NS}/secrets/{old_pod}-tls"),
            404,
            not_found(),
        ),
        ex(
            "PATCH",
            status_path("asset-transfer"),
            200,
            applied_chaincode(),
        ),
        ex("POST", EVENTS, 201, event_ok()),
    ];
    let (result, seen, _) = run(cc, None, script, now()).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(seen[8].body["status"]["launchAttempt"], 2);
    assert_eq!(seen[8].body["status"]["podName"], new_pod);
}

#[tokio::test]
async fn deletion_leaves_cleanup_to_owner_references() {
    let mut cc = fixture("node-configmap.yaml");
    cc.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    let (result, seen, _) = run(cc.clone(), None, vec![], now()).await;
    assert!(seen.is_empty());
    assert_eq!(result.expect("ok"), Action::await_change());
    // Everything a launch creates points back at the Chaincode, so the garbage collector removes it.
    let pod = desired::chaincode_pod(&cc, &image(), "p");
    let secret = desired::tls_secret(
        &cc,
        "p",
        &desired::TlsMaterial {
            client_key_pem: vec![1],
            client_cert_pem: vec![2],
            peer_root_pem: vec![3],
        },
    );
    for owners in [
        pod.metadata.owner_references,
        secret.metadata.owner_references,
    ] {
        let owner = &owners.expect("owner")[0];
        assert_eq!(owner.uid, cc.metadata.uid.clone().expect("uid"));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }
}

#[tokio::test]
async fn a_conflict_on_apply_fails_the_reconcile_without_touching_status() {
    let mut cc = fixture("node-configmap.yaml");
    cc.status = Some(launched_status(&cc));
    cc.spec.tls = None;
    let pod_name = desired::launch_pod_name(&cc, &image());
    let script = vec![
        ex("GET", format!("{NS}/pods"), 200, list("PodList", vec![])),
        ex("GET", format!("{NS}/secrets"), 200, meta_list(vec![])),
        ex("PATCH", format!("{NS}/pods/{pod_name}"), 409, conflict()),
    ];
    let (result, _, ctx) = run(cc.clone(), None, script, now()).await;
    let error = result.expect_err("conflict must fail the reconcile");
    assert_eq!(error.category(), "conflict");
    let action = reconcile::error_policy(Arc::new(DeserializeGuard(Ok(cc))), &error, ctx.clone());
    assert_eq!(action, Action::requeue(Duration::from_secs(2)));
    assert!(
        ctx.metrics
            .render()
            .contains("chaincode_operator_reconcile_failures_total{category=\"conflict\"} 1")
    );
}

#[tokio::test]
async fn steady_state_makes_no_writes() {
    let mut cc = fixture("prebuilt.yaml");
    cc.spec.tls = None;
    let image = "ghcr.io/hyperledger-labs/fabric-builder-k8s/sample-go-chaincode@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let pod_name = desired::launch_pod_name(&cc, image);
    let pods = || {
        ex(
            "GET",
            format!("{NS}/pods"),
            200,
            list("PodList", vec![echo_pod(&pod_name, "Running")]),
        )
    };
    let secrets = || ex("GET", format!("{NS}/secrets"), 200, meta_list(vec![]));
    let first = vec![
        pods(),
        secrets(),
        ex("PATCH", status_path("basic"), 200, applied_chaincode()),
        ex("POST", EVENTS, 201, event_ok()),
    ];
    let (result, seen, _) = run(cc.clone(), None, first, now()).await;
    assert!(result.is_ok(), "{result:?}");
    let status: ChaincodeStatus =
        serde_json::from_value(seen[2].body["status"].clone()).expect("status");
    assert_eq!(
        status.phase,
        Some(chaincode_operator::operator::crd::Phase::Running)
    );
    cc.status = Some(status);
    // Same world a minute later: reads only.
    let later = Timestamp::from_second(1_700_000_060).expect("time");
    let (result, seen, _) = run(cc, None, vec![pods(), secrets()], later).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(seen.iter().all(|s| s.method == "GET"));
}

#[tokio::test]
async fn invalid_spec_is_reported_in_status_and_waits_for_a_change() {
    let cc = fixture("invalid-no-registry.yaml");
    let script = vec![
        ex(
            "PATCH",
            status_path("no-registry"),
            200,
            applied_chaincode(),
        ),
        ex("POST", EVENTS, 201, event_ok()),
    ];
    let (result, seen, ctx) = run(cc.clone(), None, script, now()).await;
    let error = result.expect_err("spec error");
    assert_eq!(error.category(), "spec");
    assert_eq!(condition(&seen[0].body, "Ready")["reason"], "InvalidSpec");
    assert!(
        condition(&seen[0].body, "Ready")["message"]
            .as_str()
            .expect("m")
            .contains("spec.build.registry")
    );
    let action = reconcile::error_policy(Arc::new(DeserializeGuard(Ok(cc))), &error, ctx);
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_missing_tls_secret_is_reported_and_retried_soon() {
    let mut cc = fixture("node-configmap.yaml");
    cc.status = Some(launched_status(&cc));
    let script = vec![
        ex("GET", format!("{NS}/pods"), 200, list("PodList", vec![])),
        ex("GET", format!("{NS}/secrets"), 200, meta_list(vec![])),
        ex(
            "GET",
            format!("{NS}/secrets/asset-transfer-launch-tls"),
            404,
            not_found(),
        ),
        ex(
            "PATCH",
            status_path("asset-transfer"),
            200,
            applied_chaincode(),
        ),
        ex("POST", EVENTS, 201, event_ok()),
        ex("POST", EVENTS, 201, event_ok()),
    ];
    let (result, seen, ctx) = run(cc.clone(), None, script, now()).await;
    let error = result.expect_err("dependency missing");
    assert_eq!(error.category(), "dependency");
    let launched = condition(&seen[3].body, "Launched");
    assert_eq!(launched["reason"], "TlsSecretUnavailable");
    assert!(
        launched["message"]
            .as_str()
            .expect("m")
            .contains("asset-transfer-launch-tls")
    );
    assert_eq!(seen[3].body["status"]["phase"], "Launching");
    let warning = seen[4..]
        .iter()
        .find(|s| s.body["reason"] == "TlsSecretUnavailable")
        .expect("event");
    assert_eq!(warning.body["type"], "Warning");
    let action = reconcile::error_policy(Arc::new(DeserializeGuard(Ok(cc))), &error, ctx);
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
}

#[tokio::test]
async fn a_malformed_chaincode_gets_a_warning_event_and_waits_for_a_fix() {
    let guarded: DeserializeGuard<Chaincode> = serde_json::from_value(json!({
        "apiVersion": "fabric.chaincode.dev/v1alpha1", "kind": "Chaincode",
        "metadata": {"name": "broken", "namespace": "fabric", "uid": "u-1"},
        "spec": {"packageId": 42}
    }))
    .expect("the guard itself always deserializes");
    assert!(guarded.0.is_err());
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let ctx = Arc::new(Context::new(Client::new(service, "default"), None));
    let script = vec![
        ex("PATCH", status_path("broken"), 200, applied_chaincode()),
        ex("POST", EVENTS, 201, event_ok()),
    ];
    let server = tokio::spawn(serve(handle, script));
    let guarded = Arc::new(guarded);
    let result = reconcile::reconcile_guarded(guarded.clone(), ctx.clone()).await;
    let (_, seen) = server.await.expect("mock");
    assert_permitted(&seen);
    // The status says why, not only an Event that expires.
    let ready = condition(&seen[0].body, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(
        ready["message"]
            .as_str()
            .expect("m")
            .contains("does not match its schema"),
        "{ready}"
    );
    assert_eq!(seen[0].body["status"]["phase"], "Failed");
    assert_eq!(seen[1].body["reason"], "InvalidObject");
    assert_eq!(seen[1].body["type"], "Warning");
    assert_eq!(seen[1].body["regarding"]["name"], "broken");
    let error = result.expect_err("malformed");
    assert_eq!(error.category(), "spec");
    assert_eq!(
        reconcile::error_policy(guarded, &error, ctx),
        Action::await_change()
    );
}

#[tokio::test]
async fn a_reused_build_runs_the_image_from_where_the_job_pushed_it() {
    let mut cc = fixture("node-configmap.yaml");
    cc.spec.tls = None;
    cc.spec.build.registry = Some("other.example.com/mirror".into());
    let pod_name = desired::launch_pod_name(&cc, &image());
    let script = vec![
        ex(
            "GET",
            format!("{JOBS}/{JOB_NAME}"),
            200,
            json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": JOB_NAME, "annotations": {"fabric.chaincode.dev/repository": "registry.example.com/chaincode/asset-transfer"}},
            "status": {"succeeded": 1}}),
        ),
        ex(
            "GET",
            format!("{NS}/pods"),
            200,
            list("PodList", vec![job_pod("build", false, 0, &built_digest())]),
        ),
        ex("GET", format!("{NS}/pods"), 200, list("PodList", vec![])),
        ex("GET", format!("{NS}/secrets"), 200, meta_list(vec![])),
        ex(
            "PATCH",
            format!("{NS}/pods/{pod_name}"),
            201,
            echo_pod(&pod_name, "Pending"),
        ),
        ex("POST", EVENTS, 201, event_ok()),
        ex(
            "PATCH",
            status_path("asset-transfer"),
            200,
            applied_chaincode(),
        ),
        ex("POST", EVENTS, 201, event_ok()),
    ];
    let (result, seen, _) = run(cc, None, script, now()).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(seen[4].body["spec"]["containers"][0]["image"], image());
}

#[tokio::test]
async fn a_namespace_whose_pod_security_forbids_buildkit_gets_no_job_and_a_reason() {
    let cc = fixture("node-configmap.yaml");
    let script = vec![
        ex("GET", format!("{JOBS}/{JOB_NAME}"), 404, not_found()),
        ex(
            "GET",
            "/api/v1/namespaces/fabric",
            200,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fabric",
                   "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}),
        ),
        ex(
            "PATCH",
            status_path("asset-transfer"),
            200,
            applied_chaincode(),
        ),
        ex("POST", EVENTS, 201, event_ok()),
    ];
    let (result, seen, _) = run(cc, None, script, now()).await;
    let action = result.expect("reconciled");
    assert!(
        seen.iter()
            .all(|s| !s.path.contains("/jobs/") || s.method == "GET")
    );
    let built = condition(&seen[2].body, "Built");
    assert_eq!(built["status"], "False");
    assert_eq!(built["reason"], "PodSecurityForbidsBuild");
    assert!(built["message"].as_str().expect("m").contains("Unconfined"));
    assert_eq!(seen[3].body["type"], "Warning");
    // Relabelling the namespace is no Chaincode event: look again soon.
    assert_eq!(action, Action::requeue(Duration::from_secs(11)));
}

#[tokio::test]
async fn a_chaincode_that_exits_0_without_a_message_is_explained_by_its_log() {
    let mut cc = fixture("node-configmap.yaml");
    cc.status = Some(launched_status(&cc));
    let pod_name = desired::launch_pod_name(&cc, &image());
    let exited = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": "fabric", "creationTimestamp": "2023-11-14T22:13:00Z"},
        "status": {"phase": "Succeeded", "containerStatuses": [{"name": "chaincode", "image": "i", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
    let script = vec![
        ex(
            "GET",
            format!("{NS}/pods"),
            200,
            list("PodList", vec![exited]),
        ),
        ex(
            "GET",
            format!("{NS}/secrets"),
            200,
            meta_list(vec![&format!("{pod_name}-tls")]),
        ),
        with_query(
            ex(
                "GET",
                format!("{NS}/pods/{pod_name}/log"),
                200,
                Value::String(
                    "Error: connect ECONNREFUSED 10.254.254.1:7052\n    at TCPConnectWrap".into(),
                ),
            ),
            "tailLines=20",
        ),
        ex(
            "PATCH",
            status_path("asset-transfer"),
            200,
            applied_chaincode(),
        ),
        ex("POST", EVENTS, 201, event_ok()),
        ex("POST", EVENTS, 201, event_ok()),
    ];
    let (result, seen, _) = run(cc, None, script, now()).await;
    assert!(result.is_ok(), "{result:?}");
    let launched = condition(&seen[3].body, "Launched");
    assert_eq!(launched["reason"], "PodFailed");
    let message = launched["message"].as_str().expect("m");
    assert!(message.contains("exit code 0"), "{message}");
    assert!(
        message.contains("ECONNREFUSED 10.254.254.1:7052"),
        "{message}"
    );
}

/// Missing RBAC (the chart once granted no `create`): the Chaincode says so in its status, not only
/// in the operator's log.
#[tokio::test]
async fn a_forbidden_call_is_reported_in_the_status() {
    let mut cc = fixture("node-configmap.yaml");
    cc.status = Some(launched_status(&cc));
    cc.spec.tls = None;
    let pod_name = desired::launch_pod_name(&cc, &image());
    let forbidden = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": format!("pods \"{pod_name}\" is forbidden: User \"system:serviceaccount:ops:chaincode-operator\" cannot create resource \"pods\" in API group \"\" in the namespace \"fabric\"")});
    let script = vec![
        ex("GET", format!("{NS}/pods"), 200, list("PodList", vec![])),
        ex("GET", format!("{NS}/secrets"), 200, meta_list(vec![])),
        ex("PATCH", format!("{NS}/pods/{pod_name}"), 403, forbidden),
        ex(
            "PATCH",
            status_path("asset-transfer"),
            200,
            applied_chaincode(),
        ),
        ex("POST", EVENTS, 201, event_ok()),
    ];
    let (result, seen, _) = run(cc, None, script, now()).await;
    let error = result.expect_err("forbidden fails the reconcile");
    assert_eq!(error.category(), "api");
    let ready = condition(&seen[3].body, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "Forbidden");
    assert!(
        ready["message"]
            .as_str()
            .expect("m")
            .contains("cannot create resource \"pods\""),
        "{ready}"
    );
    assert_eq!(seen[4].body["type"], "Warning");
    assert_eq!(seen[4].body["reason"], "Forbidden");
}
