//! `GET /api/runners`, `GET /api/stats` and `GET /api/stats/series`: what the cluster is doing,
//! for operators, the CLI and the dashboard's Cluster page.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use swarmq_shared::now_ms;

use super::body::bounded;
use crate::error::ApiError;
use crate::state::AppState;

/// Sessions counted by `GET /api/stats` (newest first).
const STATS_SCAN: usize = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/runners", get(runners))
        .route("/api/stats", get(stats))
        .route("/api/stats/series", get(series))
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
                "beatAt": r.info.beat_at,
                "secondsSinceBeat": now.saturating_sub(r.info.beat_at) / 1000,
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

#[derive(serde::Deserialize)]
struct SeriesQuery {
    secs: Option<String>,
}

/// TODOs completed per second and the ready-queue depth over the last `secs` seconds
/// (default 300, at most 600), oldest first.
async fn series(
    State(state): State<AppState>,
    query: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
    let max = swarmq_shared::store::MAX_SERIES_SECS as usize;
    let secs = bounded(query.secs.as_deref(), "secs", 300, max)?;
    let points = state.store.stats_series(now_ms(), secs as u64).await?;
    Ok(Json(json!({ "points": points })))
}
