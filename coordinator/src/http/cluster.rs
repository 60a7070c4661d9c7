//! `GET /api/runners`, `GET /api/stats` and `GET /api/stats/series`: what the cluster is doing,
//! for operators, the CLI and the dashboard's Cluster page.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use swarmq_shared::now_ms;
use swarmq_shared::store::{RunnerTotals, SessionCounts};

use super::body::bounded;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Sessions counted by `GET /api/stats` (newest first).
const STATS_SCAN: usize = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/runners", get(runners))
        .route("/api/stats", get(stats))
        .route("/api/stats/series", get(series))
}

/// One registered runner, as its last heartbeat described it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerView {
    pub id: String,
    pub host: Option<String>,
    pub pid: u64,
    pub slots: u64,
    pub busy: u64,
    pub draining: bool,
    pub version: Option<String>,
    /// Its lease has not expired.
    pub alive: bool,
    /// Unix ms (Redis's clock).
    pub lease_expires_at: u64,
    /// When it sent its last heartbeat (Unix ms, its own clock).
    pub beat_at: u64,
    pub seconds_since_beat: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunnerList {
    pub runners: Vec<RunnerView>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Agent jobs waiting for a runner.
    pub ready_queue: u64,
    pub runners: RunnerTotals,
    /// Counts over the newest 10,000 sessions.
    pub sessions: SessionCounts,
    /// Socket.IO rooms this coordinator relays.
    pub socket_rooms: usize,
}

/// The registered runners, alive or not yet reaped.
#[utoipa::path(
    get, path = "/api/runners", operation_id = "listRunners", tag = "cluster",
    responses(
        (status = 200, description = "Runners", body = RunnerList),
        (status = 503, description = "Redis unreachable", body = ErrorBody),
    ),
)]
pub(super) async fn runners(State(state): State<AppState>) -> Result<Json<RunnerList>, ApiError> {
    let now = now_ms();
    let runners = state
        .store
        .runners()
        .await?
        .into_iter()
        .map(|r| RunnerView {
            id: r.id,
            host: r.info.host,
            pid: r.info.pid,
            slots: r.info.slots,
            busy: r.info.busy,
            draining: r.info.draining,
            version: r.info.version,
            alive: r.lease_expires_at > now,
            lease_expires_at: r.lease_expires_at,
            beat_at: r.info.beat_at,
            seconds_since_beat: now.saturating_sub(r.info.beat_at) / 1000,
        })
        .collect();
    Ok(Json(RunnerList { runners }))
}

/// What the cluster is doing: queue depth, runner slots, sessions by status.
#[utoipa::path(
    get, path = "/api/stats", operation_id = "getStats", tag = "cluster",
    responses(
        (status = 200, description = "Totals", body = Stats),
        (status = 503, description = "Redis unreachable", body = ErrorBody),
    ),
)]
pub(super) async fn stats(State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    Ok(Json(Stats {
        ready_queue: state.store.ready_depth().await?,
        runners: state.store.runner_totals().await?,
        sessions: state.store.session_counts(STATS_SCAN).await?,
        socket_rooms: state.relay.rooms(),
    }))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SeriesQuery {
    /// Seconds back from now, 1 to 600 (default 300).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 600)]
    secs: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Series {
    /// One per second, oldest first.
    pub points: Vec<swarmq_shared::store::StatsPoint>,
}

/// TODOs completed per second and the ready-queue depth over the last `secs` seconds
/// (default 300, at most 600), oldest first.
#[utoipa::path(
    get, path = "/api/stats/series", operation_id = "getStatsSeries", tag = "cluster",
    params(SeriesQuery),
    responses(
        (status = 200, description = "Per-second points", body = Series),
        (status = 400, description = "Bad secs or query string", body = ErrorBody),
        (status = 503, description = "Redis unreachable", body = ErrorBody),
    ),
)]
pub(super) async fn series(
    State(state): State<AppState>,
    query: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Series>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
    let max = swarmq_shared::store::MAX_SERIES_SECS as usize;
    let secs = bounded(query.secs.as_deref(), "secs", 300, max)?;
    let points = state.store.stats_series(now_ms(), secs as u64).await?;
    Ok(Json(Series { points }))
}
