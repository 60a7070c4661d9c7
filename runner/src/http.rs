//! The runner's optional HTTP listener (`SWARMQ_RUNNER_HTTP`): `/metrics` (Prometheus text),
//! `/healthz` (the process answers) and `/readyz` (Redis answers and the runner is not draining).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ctx::Ctx;

#[derive(Clone)]
struct HttpState {
    ctx: Arc<Ctx>,
    metrics: PrometheusHandle,
}

pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>, stop: CancellationToken) {
    let state = HttpState {
        ctx,
        metrics: swarmq_shared::metrics::install(),
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "runner http listener failed");
    }
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.ctx.draining.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "draining" })),
        );
    }
    match tokio::time::timeout(Duration::from_secs(2), state.ctx.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "not ready: Redis is unreachable" })),
        ),
    }
}
