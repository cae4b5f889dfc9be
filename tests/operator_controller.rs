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
