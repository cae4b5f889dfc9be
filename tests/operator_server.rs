//! The operator's HTTP port: /healthz, /readyz following readiness, /metrics in OpenMetrics text.
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chaincode_operator::operator::crd::Phase;
use chaincode_operator::operator::metrics::Metrics;
use chaincode_operator::operator::server::{Health, WATCH_ERROR_WINDOW, router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, response)
}

#[tokio::test]
async fn health_readiness_and_metrics_endpoints() {
    let health = Arc::new(Health::default());
    let metrics = Arc::new(Metrics::default());
    metrics.reconciles.inc();
    metrics.count_phases([Phase::Ready]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = router(health.clone(), metrics);
    tokio::spawn(async move { axum::serve(listener, app).await });

    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(
        get(addr, "/readyz").await.0,
        503,
        "not ready before the CRD check"
    );
    health.ready.store(true, Ordering::Relaxed);
    assert_eq!(get(addr, "/readyz").await.0, 200);
    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("chaincode_operator_reconciles_total 1"),
        "{body}"
    );
    assert!(
        body.contains("chaincode_operator_chaincodes{phase=\"Ready\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("chaincode_operator_build_duration_seconds"),
        "{body}"
    );
}

fn api_error(code: u16) -> kube::runtime::watcher::Error {
    kube::runtime::watcher::Error::WatchError(Box::new(kube::core::Status {
        code,
        message: format!("code {code}"),
        ..Default::default()
    }))
}

/// A started (ready) operator's HTTP port.
async fn serve_ready_health() -> (Arc<Health>, std::net::SocketAddr) {
    let health = Arc::new(Health::default());
    health.ready.store(true, Ordering::Relaxed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = router(health.clone(), Arc::new(Metrics::default()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (health, addr)
}

/// While the Chaincode watch fails nothing is reconciled, so /readyz must say so; a 410 Gone (the
/// normal end of a watch, e.g. after an API-server restart) is relisted and does not count.
#[tokio::test]
async fn readyz_is_not_ready_while_the_chaincode_watch_fails() {
    let (health, addr) = serve_ready_health().await;

    health.observe_watch::<()>(&Err(api_error(410)));
    assert_eq!(get(addr, "/readyz").await.0, 200, "410 Gone is routine");
    health.observe_watch::<()>(&Err(api_error(500)));
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("Kubernetes API is failing"), "{body}");
    // A watch that reconnects yields no event until something changes: the failure ages out.
    let later = std::time::Instant::now() + WATCH_ERROR_WINDOW;
    assert!(!health.api_failing_at(later));
    assert!(health.api_failing_at(std::time::Instant::now()));
    health.observe_watch(&Ok(()));
    assert_eq!(
        get(addr, "/readyz").await.0,
        200,
        "recovered after a relist"
    );
}

/// A follower (or a leader) whose Lease rounds fail cannot reach the API server: not ready, and a
/// Lease round that succeeds does not hide a Chaincode watch that still fails.
#[tokio::test]
async fn readyz_is_not_ready_while_the_lease_cannot_be_read() {
    let (health, addr) = serve_ready_health().await;

    health.observe_lease(false);
    assert_eq!(get(addr, "/readyz").await.0, 503, "lease round failed");
    health.observe_lease(true);
    assert_eq!(get(addr, "/readyz").await.0, 200, "lease renewed");
    health.observe_watch::<()>(&Err(api_error(500)));
    health.observe_lease(true);
    assert_eq!(get(addr, "/readyz").await.0, 503, "the watch still fails");
}
