//! `GET /api/runners` and `GET /api/stats`: what the cluster is doing, for operators and the CLI.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use swarmq_shared::now_ms;
use swarmq_shared::store::{RunnerTotals, SessionCounts};

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Sessions counted by `GET /api/stats` (newest first).
const STATS_SCAN: usize = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/runners", get(runners))
        .route("/api/stats", get(stats))
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
