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

use super::body::json_object;
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
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be an integer between 1 and {MAX_PAGE}"
                )));
            }
        },
    };
    let page = state
        .store
        .list_sessions(limit, query.cursor.as_deref())
        .await?;
    let sessions: Vec<SessionSummary> = page.sessions;
    Ok(Json(
        json!({ "sessions": sessions, "nextCursor": page.next_cursor }),
    ))
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
