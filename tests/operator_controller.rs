//! The whole controller (CRD check, watches, reconcile loop, status write) against a mocked API server
//! that serves one prebuilt-image Chaincode: the controller must launch its Pod and write its status.
use std::net::SocketAddr;
use std::time::Duration;

use chaincode_operator::operator::controller::{Settings, run};
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tower_test::mock;

fn chaincode() -> Value {
    json!({
        "apiVersion": "fabric.chaincode.dev/v1alpha1", "kind": "Chaincode",
        "metadata": {"name": "basic", "namespace": "fabric", "uid": "u-1", "generation": 1, "resourceVersion": "5"},
        "spec": {
            "packageId": format!("basic_1.0:{}", "2".repeat(64)),
            "platform": "image",
            "image": {"name": "registry.example.com/basic", "digest": format!("sha256:{}", "b".repeat(64))},
            "peer": {"address": "peer0:7052", "mspId": "Org1MSP"}
        }
    })
}

fn list(api_version: &str, kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "10"}, "items": items})
}

#[tokio::test]
async fn controller_launches_a_listed_chaincode_and_writes_its_status() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(String, String, Value)>();
    tokio::spawn(async move {
        // Watches stay open: their responders are kept, never answered.
        let mut open_watches = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let query = request.uri().query().unwrap_or_default().to_string();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if query.contains("watch=true") {
                open_watches.push(send);
                continue;
            }
            let answer = match (method.as_str(), path.as_str()) {
                ("GET", "/apis/fabric.chaincode.dev/v1alpha1/chaincodes") => list(
                    "fabric.chaincode.dev/v1alpha1",
                    "ChaincodeList",
                    vec![chaincode()],
                ),
                ("GET", p) if p.ends_with("/pods") => list("v1", "PodList", vec![]),
                ("GET", "/api/v1/secrets") => list("v1", "SecretList", vec![]),
                ("GET", p) if p.ends_with("/secrets") => {
                    list("meta.k8s.io/v1", "PartialObjectMetadataList", vec![])
                }
                ("GET", "/apis/batch/v1/jobs") => list("batch/v1", "JobList", vec![]),
                ("PATCH", p) if p.ends_with("/status") => chaincode(),
                ("PATCH", _) => body.clone(),
                ("POST", _) => {
                    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "eventTime": null})
                }
                _ => {
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound", "message": "unexpected"})
                }
            };
            let _ = seen_tx.send((method, path, body));
            send.send_response(Response::new(Body::from(
                serde_json::to_vec(&answer).unwrap_or_default(),
            )));
        }
    });
    let settings = Settings {
        namespace: None,
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        election: None,
    };
    let controller = tokio::spawn(run(client, settings));

    let mut pod_applied = false;
    let status = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some((method, path, body)) = seen_rx.recv().await {
            if method == "PATCH" && path.starts_with("/api/v1/namespaces/fabric/pods/basic-0-") {
                assert_eq!(
                    body["spec"]["containers"][0]["image"],
                    format!("registry.example.com/basic@sha256:{}", "b".repeat(64))
                );
                pod_applied = true;
            }
            if method == "PATCH" && path.ends_with("/chaincodes/basic/status") {
                return body;
            }
        }
        Value::Null
    })
    .await
    .expect("the controller wrote a status within 20 s");
    controller.abort();
    assert!(pod_applied, "the Pod was applied before the status");
    assert_eq!(status["status"]["phase"], "Launching");
    assert_eq!(
        status["status"]["imageDigest"],
        format!("registry.example.com/basic@sha256:{}", "b".repeat(64))
    );
}

/// One failing watch (here Secrets, answering 500 to every list) must not stall the others: a
/// Chaincode that arrives on its watch 6 s in is reconciled at once. With one backoff shared by all
/// watches the Secret errors had paused every trigger (0.8 + 1.6 + 3.2 + 6.4 s ...), so it waited.
#[tokio::test]
async fn a_failing_watch_does_not_stall_reconciles_of_the_others() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(String, String)>();
    let arrives_after = Duration::from_secs(6);
    tokio::spawn(async move {
        let mut open_watches = Vec::new();
        let mut chaincode_watch_answered = false;
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let query = request.uri().query().unwrap_or_default().to_string();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let error = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500,
                               "reason": "InternalError", "message": "etcd is down"});
            if path == "/api/v1/secrets" {
                let response = Response::builder()
                    .status(500)
                    .body(Body::from(serde_json::to_vec(&error).unwrap_or_default()))
                    .expect("response");
                send.send_response(response);
                continue;
            }
            if query.contains("watch=true") {
                if path.ends_with("/chaincodes") && !chaincode_watch_answered {
                    chaincode_watch_answered = true;
                    tokio::spawn(async move {
                        tokio::time::sleep(arrives_after).await;
                        let mut cc = chaincode();
                        cc["metadata"]["resourceVersion"] = json!("11");
                        let line = format!("{}\n", json!({"type": "ADDED", "object": cc}));
                        send.send_response(Response::new(Body::from(line.into_bytes())));
                    });
                } else {
                    open_watches.push(send);
                }
                continue;
            }
            let answer = match (method.as_str(), path.as_str()) {
                ("GET", "/apis/fabric.chaincode.dev/v1alpha1/chaincodes") => {
                    list("fabric.chaincode.dev/v1alpha1", "ChaincodeList", vec![])
                }
                ("GET", p) if p.ends_with("/pods") => list("v1", "PodList", vec![]),
                ("GET", p) if p.ends_with("/secrets") => {
                    list("meta.k8s.io/v1", "PartialObjectMetadataList", vec![])
                }
                ("GET", "/apis/batch/v1/jobs") => list("batch/v1", "JobList", vec![]),
                ("PATCH", p) if p.ends_with("/status") => chaincode(),
                ("PATCH", _) => body.clone(),
                ("POST", _) => {
                    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "eventTime": null})
                }
                _ => error,
            };
            let _ = seen_tx.send((method, path));
            send.send_response(Response::new(Body::from(
                serde_json::to_vec(&answer).unwrap_or_default(),
            )));
        }
    });
    let settings = Settings {
        namespace: None,
        http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        election: None,
    };
    let started = tokio::time::Instant::now();
    let controller = tokio::spawn(run(client, settings));
    let written = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some((method, path)) = seen_rx.recv().await {
            if method == "PATCH" && path.ends_with("/chaincodes/basic/status") {
                return started.elapsed();
            }
        }
        Duration::MAX
    })
    .await
    .expect("the Chaincode was reconciled");
    controller.abort();
    assert!(
        written < arrives_after + Duration::from_secs(2),
        "reconciled {written:?} after start; the Chaincode arrived after {arrives_after:?}"
    );
}
