//! The HTTP port: /healthz (process alive), /readyz (watching and leading, or standing by), /metrics.
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
    if state.health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
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
