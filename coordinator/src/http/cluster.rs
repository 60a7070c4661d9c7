//! `GET /api/runners` and `GET /api/stats`: what the cluster is doing, for operators and the CLI.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use swarmq_shared::now_ms;

use crate::error::ApiError;
use crate::state::AppState;

/// Sessions counted by `GET /api/stats` (newest first).
const STATS_SCAN: usize = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/runners", get(runners))
        .route("/api/stats", get(stats))
}

async fn runners(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = now_ms();
    let runners: Vec<Value> = state
        .store
        .runners()
        .await?
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id,
                "host": r.info.host,
                "pid": r.info.pid,
                "slots": r.info.slots,
                "busy": r.info.busy,
                "draining": r.info.draining,
                "version": r.info.version,
                "alive": r.lease_expires_at > now,
                "leaseExpiresAt": r.lease_expires_at,
            })
        })
        .collect();
    Ok(Json(json!({ "runners": runners })))
}

async fn stats(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let runners = state.store.runner_totals().await?;
    let ready = state.store.ready_depth().await?;
    let sessions = state.store.session_counts(STATS_SCAN).await?;
    Ok(Json(json!({
        "readyQueue": ready,
        "runners": runners,
        "sessions": sessions,
        "socketRooms": state.relay.rooms(),
    })))
}
