//! The HTTP port: /healthz (process alive), /readyz (watching and leading, or standing by; not while
//! the Chaincode watch or the Lease cannot reach the API server), /metrics.
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::metrics::Metrics;

/// How long after its last error the API counts as failing when nothing succeeded since. A watch
/// that recovers by reconnecting yields no event until something changes, and a failing one retries
/// at least every 5 s (the controller's watch backoff cap) plus a connect timeout, so 45 s without
/// an error means it is back.
pub const WATCH_ERROR_WINDOW: Duration = Duration::from_secs(45);

/// Shared between the controller and the HTTP handlers.
#[derive(Default)]
pub struct Health {
    /// The CRD was found and the controller started (or it stands by as a follower).
    pub ready: AtomicBool,
    /// When the Chaincode watch last failed, unless an event came since.
    watch_error_at: Mutex<Option<Instant>>,
    /// When a Lease round last failed, unless one succeeded since.
    lease_error_at: Mutex<Option<Instant>>,
}

impl Health {
    /// Follows the Chaincode watch: an error marks it failing, the next event (a relist included)
    /// marks it healthy. `410 Gone` is the normal end of a watch that the watcher relists from.
    pub fn observe_watch<T>(&self, result: &Result<T, kube::runtime::watcher::Error>) {
        let failed = match result {
            Ok(_) => false,
            Err(error) => !is_normal_watch_end(error),
        };
        if let Ok(mut at) = self.watch_error_at.lock() {
            *at = failed.then(Instant::now);
        }
    }

    /// Follows the Lease rounds: a follower that cannot read or renew the Lease is not ready either.
    pub fn observe_lease(&self, ok: bool) {
        if let Ok(mut at) = self.lease_error_at.lock() {
            *at = (!ok).then(Instant::now);
        }
    }

    /// Whether the Chaincode watch or the Lease is failing at `now` (nothing gets reconciled).
    pub fn api_failing_at(&self, now: Instant) -> bool {
        [&self.watch_error_at, &self.lease_error_at]
            .iter()
            .filter_map(|slot| *slot.lock().ok()?)
            .any(|at| now.saturating_duration_since(at) < WATCH_ERROR_WINDOW)
    }

    /// Ready: started (or standing by) and the API is not failing.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.api_failing_at(Instant::now())
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
    } else if state.health.api_failing_at(Instant::now()) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the Kubernetes API is failing (Chaincode watch or Lease)",
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
