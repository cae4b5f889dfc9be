//! 5,000 Chaincodes through the full reconcile (validate → build → launch → status) against an
//! in-process mocked API server. Prints reconciles/s, the pure core's rate as the in-run reference, and
//! peak RSS (VmHWM).
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chaincode_operator::operator::crd::Chaincode;
use chaincode_operator::operator::plan::{self, ImageOutcome};
use chaincode_operator::operator::{desired, reconcile};
use futures::StreamExt;
use http::{Request, Response};
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};
use tower_test::mock;

const CHAINCODES: usize = 5_000;
/// Chaincodes sharing one build context (e.g. the same package installed on many peers).
const PEERS_PER_CONTENT: usize = 50;
const CONCURRENCY: usize = 32;

static REQUESTS: AtomicUsize = AtomicUsize::new(0);

fn body(v: &Value) -> Body {
    Body::from(serde_json::to_vec(v).unwrap_or_default())
}

fn chaincode(i: usize) -> Chaincode {
    let content = format!("{:064x}", i / PEERS_PER_CONTENT);
    let value = json!({
        "apiVersion": "fabric.chaincode.dev/v1alpha1", "kind": "Chaincode",
        "metadata": {"name": format!("cc-{i}"), "namespace": "bench", "uid": format!("uid-{i}"), "generation": 1},
        "spec": {
            "packageId": format!("cc_{}:{}", i / PEERS_PER_CONTENT, "1".repeat(64)),
            "platform": "node",
            "source": {"contentDigest": format!("sha256:{content}"), "url": "https://example.com/ctx.tgz"},
            "peer": {"address": "peer0:7052", "mspId": "Org1MSP"},
            "tls": {"secretName": "launch-tls"},
            "build": {"registry": "registry.example.com/cc"},
            "pod": {"resources": {"limits": {"memory": "256Mi"}}, "nodeSelector": {"pool": "chaincode"}}
        }
    });
    serde_json::from_value(value).unwrap_or_else(|e| panic!("bench chaincode: {e}"))
}

/// Answers like an API server where every build already succeeded and nothing was launched yet.
async fn api_server(mut handle: mock::Handle<Request<Body>, Response<Body>>) {
    let digest = format!("sha256:{}", "e".repeat(64));
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "status": {"succeeded": 1}});
    let job_pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
        "metadata": {"name": "j-1"}, "status": {"phase": "Succeeded", "containerStatuses": [{
            "name": "build", "image": "b", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "message": digest}}}]}}]});
    let empty_pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []});
    let empty_meta = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {}, "items": []});
    let tls = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "launch-tls"},
        "data": {"client.key": "S0VZ", "client.crt": "Q0VSVA==", "peer.crt": "Uk9PVA=="}});
    let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "eventTime": null});
    let cc = serde_json::to_value(chaincode(0)).unwrap_or_default();
    while let Some((request, send)) = handle.next_request().await {
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let answer: Value = match method.as_str() {
            "GET" if path.contains("/jobs/") => job.clone(),
            "GET" if path.ends_with("/pods") && query.contains("job-name") => job_pods.clone(),
            "GET" if path.ends_with("/pods") => empty_pods.clone(),
            "GET" if path.ends_with("/secrets") => empty_meta.clone(),
            "GET" => tls.clone(),
            "POST" => event.clone(),
            "PATCH" if path.ends_with("/status") => cc.clone(),
            _ => {
                // Server-side apply answers with the applied object.
                let bytes = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .unwrap_or_default();
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            }
        };
        send.send_response(Response::new(body(&answer)));
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let chaincodes: Vec<Chaincode> = (0..CHAINCODES).map(chaincode).collect();
    let now = Timestamp::now();

    // Reference: the pure core alone (validate, decide, desired Pod) for the same objects.
    let started = Instant::now();
    let mut pods = 0usize;
    for cc in &chaincodes {
        if plan::validate(cc).is_ok() {
            let image = format!("registry.example.com/cc@sha256:{}", "e".repeat(64));
            let name = desired::launch_pod_name(cc, &image);
            let pod = desired::chaincode_pod(cc, &image, &name);
            let outcome = ImageOutcome::Ready {
                image,
                built_by: None,
            };
            let decision = plan::decide_status(cc, &outcome, None, None, now);
            pods += usize::from(pod.spec.is_some() && decision.status.phase.is_some());
        }
    }
    let core_secs = started.elapsed().as_secs_f64();

    let (reconciles, failures, full_secs) = runtime.block_on(async {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(api_server(handle));
        let client = kube::Client::new(service, "bench");
        // The controller's cache holds every Chaincode; none has a sibling image yet, so each reconcile
        // scans all of them (the worst case of the reuse lookup).
        let (store, mut writer) = reflector::store::<DeserializeGuard<Chaincode>>();
        for cc in &chaincodes {
            writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(cc.clone()))));
        }
        let ctx = Arc::new(reconcile::Context::new(client, Some(store)));
        let started = Instant::now();
        let results: Vec<bool> = futures::stream::iter(chaincodes.iter())
            .map(|cc| {
                let ctx = ctx.clone();
                async move { reconcile::reconcile(cc, &ctx, now).await.is_ok() }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let ok = results.iter().filter(|r| **r).count();
        (ok, results.len() - ok, started.elapsed().as_secs_f64())
    });

    println!(
        "operator_reconcile: {CHAINCODES} Chaincodes (all in the controller cache), {PEERS_PER_CONTENT} per content key, concurrency {CONCURRENCY}"
    );
    println!(
        "  full reconcile (mocked API, {:.1} requests each): {:.0} reconciles/s ({reconciles} ok, {failures} failed, {full_secs:.3} s)",
        REQUESTS.load(Ordering::Relaxed) as f64 / CHAINCODES as f64,
        CHAINCODES as f64 / full_secs
    );
    println!(
        "  reference, pure core only (validate + desired Pod + status): {:.0} /s ({pods} pods, {core_secs:.3} s)",
        CHAINCODES as f64 / core_secs
    );
    println!(
        "  ratio full/pure: {:.3} (share of time outside the pure core: {:.1}%)",
        core_secs / full_secs,
        100.0 * (1.0 - core_secs / full_secs)
    );
    match peak_rss_kib() {
        Some(kib) => println!("  peak RSS (VmHWM): {:.1} MiB", kib as f64 / 1024.0),
        None => println!("  peak RSS: /proc/self/status unavailable"),
    }
}
