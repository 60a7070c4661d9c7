//! `/api/sessions`: create (decompose + enqueue), read, list, cancel.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use swarmq_shared::model::SessionSummary;
use swarmq_shared::transitions::CancelOutcome;
use swarmq_shared::{Session, SessionId, SessionStatus};

use super::body::{bounded, json_object};
use crate::client_addr;
use crate::error::ApiError;
use crate::sessions::NewSession;
use crate::state::AppState;

/// Sessions per page of `GET /api/sessions` unless `limit` says otherwise, and at most (a page
/// is one pipelined read of that many hashes).
const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions", post(create).get(list))
        .route("/api/sessions/{id}", get(read))
        .route("/api/sessions/{id}/cancel", post(cancel))
        .route("/api/sessions/{id}/events", get(events))
}

async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let client = client_addr::client_ip(&headers, peer.ip(), &state.trusted_proxies);
    state
        .create_limiter
        .check(client_addr::limit_key(client))
        .map_err(|wait| ApiError::TooManyRequests {
            retry_after_secs: wait.as_secs().max(1),
        })?;
    let body = json_object(&headers, body)?;
    let new = NewSession::parse(&body, state.sessions.limits())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let id = state.sessions.create(new).await?;
    Ok((StatusCode::CREATED, Json(json!({ "sessionId": id }))))
}

fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(raw).map_err(|_| {
        ApiError::NotFound(format!(
            "session {:?} not found (session ids are UUIDs)",
            raw.chars().take(64).collect::<String>()
        ))
    })
}

async fn read(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Session>, ApiError> {
    let id = session_id(&raw)?;
    state
        .store
        .snapshot(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("session {id} not found")))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
    let limit = bounded(query.limit.as_deref(), "limit", DEFAULT_PAGE, MAX_PAGE)?;
    let page = state
        .store
        .list_sessions(limit, query.cursor.as_deref())
        .await?;
    let sessions: Vec<SessionSummary> = page.sessions;
    Ok(Json(
        json!({ "sessions": sessions, "nextCursor": page.next_cursor }),
    ))
}

#[derive(Deserialize)]
struct EventsQuery {
    before: Option<String>,
    limit: Option<String>,
}

/// A page of the session's recorded events older than `before` (default: all), newest first:
/// `{events: [{seq, event, data}], truncated}` — `truncated` when the stream was already trimmed
/// below the oldest one returned (the dashboard's "load older").
async fn events(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(&raw)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
    let limit = bounded(query.limit.as_deref(), "limit", 100, 1000)?;
    let before = match query.before.as_deref() {
        None => u64::MAX,
        Some(b) => b
            .parse::<u64>()
            .map_err(|_| ApiError::BadRequest("before must be a non-negative integer".into()))?,
    };
    let Some(last_seq) = state.store.last_seq(id).await? else {
        return Err(ApiError::NotFound(format!("session {id} not found")));
    };
    let page = state.store.events_before(id, before, limit).await?;
    let mut events = Vec::with_capacity(page.len());
    for e in &page {
        let data: Value = serde_json::from_str(&e.data).map_err(|err| {
            ApiError::Internal(anyhow::anyhow!("recorded event {}: {err}", e.seq))
        })?;
        events.push(json!({ "seq": e.seq, "event": e.event, "data": data }));
    }
    // Seqs are contiguous from 1: fewer than asked for, yet not down to 1, means trimmed.
    let oldest = page.last().map_or(before.min(last_seq + 1), |e| e.seq);
    let truncated = page.len() < limit && oldest > 1;
    Ok(Json(json!({ "events": events, "truncated": truncated })))
}

async fn cancel(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = session_id(&raw)?;
    match state.sessions.cancel(id).await? {
        CancelOutcome::Cancelled => Ok(Json(
            json!({ "sessionId": id, "status": SessionStatus::Cancelled }),
        )),
        CancelOutcome::Finished { status } => Err(ApiError::Conflict(format!(
            "session {id} is already {status}; only decomposing or running sessions can be cancelled"
        ))),
        CancelOutcome::NotFound => Err(ApiError::NotFound(format!("session {id} not found"))),
    }
}
