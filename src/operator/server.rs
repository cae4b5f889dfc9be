//! The HTTP port: /healthz (process alive), /readyz (watching and leading, or standing by; not while
//! the Chaincode watch fails), /metrics.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::metrics::Metrics;

/// Shared between the controller and the HTTP handlers.
#[derive(Default)]
pub struct Health {
    /// The CRD was found and the controller started (or it stands by as a follower).
    pub ready: AtomicBool,
    /// The Chaincode watch is failing (e.g. the API server is down): nothing gets reconciled.
    pub watch_failing: AtomicBool,
}

impl Health {
    /// Follows the Chaincode watch: an error marks it failing, the next event (a relist included)
    /// marks it healthy. `410 Gone` is the normal end of a watch that the watcher relists from.
    pub fn observe_watch<T>(&self, result: &Result<T, kube::runtime::watcher::Error>) {
        let failing = match result {
            Ok(_) => false,
            Err(error) => !is_normal_watch_end(error),
        };
        self.watch_failing.store(failing, Ordering::Relaxed);
    }

    /// Ready: started (or standing by) and the Chaincode watch is not failing.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.watch_failing.load(Ordering::Relaxed)
    }
}

/// A `410 Gone` (resource version too old) ends a watch normally: the watcher relists.
pub fn is_normal_watch_end(error: &kube::runtime::watcher::Error) -> bool {
    matches!(error, kube::runtime::watcher::Error::WatchError(status) if status.code == 410)
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: Arc<dyn Fn() -> String + Send + Sync>,
}

/// The router over a metrics registry.
pub fn router(health: Arc<Health>, metrics: Arc<Metrics>) -> Router {
    router_with(health, move || metrics.render())
}

/// The router; `metrics` renders the current exposition text.
pub fn router_with(
    health: Arc<Health>,
    metrics: impl Fn() -> String + Send + Sync + 'static,
) -> Router {
    let state = AppState {
        health,
        metrics: Arc::new(metrics),
    };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.health.is_ready() {
        (StatusCode::OK, "ready")
    } else if state.health.watch_failing.load(Ordering::Relaxed) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the Chaincode watch is failing",
        )
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        (state.metrics)(),
    )
}
