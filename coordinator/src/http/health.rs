//! `GET /healthz` (the process answers) and `GET /readyz` (and Redis answers too).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({ "status": "ready" }))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: redis ping failed");
            Err(ApiError::Unavailable(
                "not ready: Redis is unreachable".into(),
            ))
        }
        Err(_) => Err(ApiError::Unavailable(
            "not ready: Redis did not answer within 2 s".into(),
        )),
    }
}
