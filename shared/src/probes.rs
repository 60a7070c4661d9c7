//! The operator endpoints both daemons serve, one implementation: `GET /metrics` (Prometheus
//! text), `GET /healthz` (the process answers) and `GET /readyz` (Redis answers within 2 s and
//! the process is not stopping). Errors are `{"error": "..."}` with a 503, like the API's.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How long `/readyz` waits for Redis to answer a PING.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /metrics`. Returned on its own so a daemon can put it behind a token.
pub fn metrics_routes<S: Clone + Send + Sync + 'static>(handle: PrometheusHandle) -> Router<S> {
    Router::new().route(
        "/metrics",
        get(move || {
            let text = handle.render();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
        }),
    )
}

/// `GET /healthz` and `GET /readyz`. `stopping`, when given and cancelled (a draining runner),
/// makes `/readyz` answer 503 so a load balancer or orchestrator stops counting on the process.
pub fn health_routes<S: Clone + Send + Sync + 'static>(
    store: Store,
    stopping: Option<CancellationToken>,
) -> Router<S> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route(
            "/readyz",
            get(move || {
                let (store, stopping) = (store.clone(), stopping.clone());
                async move { readiness(&store, stopping.as_ref()).await }
            }),
        )
}

async fn readiness(store: &Store, stopping: Option<&CancellationToken>) -> Response {
    if stopping.is_some_and(CancellationToken::is_cancelled) {
        return not_ready("draining");
    }
    match tokio::time::timeout(READY_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => Json(json!({ "status": "ready" })).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: redis ping failed");
            not_ready("not ready: Redis is unreachable")
        }
        Err(_) => not_ready("not ready: Redis did not answer within 2 s"),
    }
}

fn not_ready(why: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": why })),
    )
        .into_response()
}
