//! `/api/sessions`: create (decompose + enqueue), read, list, cancel.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use swarmq_shared::model::SessionSummary;
use swarmq_shared::transitions::CancelOutcome;
use swarmq_shared::{Session, SessionId, SessionStatus};

use super::body::{bounded, json_object};
use crate::client_addr;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::IdempotencyKey;
use crate::sessions::NewSession;
use crate::state::AppState;

/// Sessions per page of `GET /api/sessions` unless `limit` says otherwise, and at most (a page
/// is one pipelined read of that many hashes).
const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

/// `POST /api/sessions` body. Documentation only: the handler reads the body itself
/// ([`NewSession::parse`]) so that every way it can be wrong gets its own message.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct CreateSessionRequest {
    /// What the swarm should do: at most `SWARMQ_MAX_PROMPT_CHARS` characters, not only
    /// whitespace, no control characters but newline and tab, no bidirectional overrides.
    #[schema(
        min_length = 1,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202A-\u202F\u205F\u2066-\u2069\u3000][^\u0000-\u0008\u000B-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069]*$"
    )]
    prompt: String,
    /// Agents working the TODOs, 1 to `SWARMQ_MAX_AGENTS`.
    #[schema(minimum = 1)]
    agent_count: u32,
}

/// `201` of `POST /api/sessions`.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionCreated {
    pub session_id: SessionId,
}

/// `200` of `POST /api/sessions/{id}/cancel`: the status is always `cancelled`.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionCancelled {
    pub session_id: SessionId,
    pub status: SessionStatus,
}

/// One page of `GET /api/sessions`, newest first.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionList {
    pub sessions: Vec<SessionSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The optional `Idempotency-Key` header of the two POSTs.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyHeader {
    /// Retries with the same key and request get the first answer (same session id, same
    /// status) for `SWARMQ_IDEMPOTENCY_TTL_SECS` (default 24 h). 1-255 visible ASCII
    /// characters without braces; a UUID is ideal.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = "^[!-z|~]{1,255}$"
    )]
    idempotency_key: Option<String>,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions", post(create).get(list))
        .route("/api/sessions/{id}", get(read))
        .route("/api/sessions/{id}/cancel", post(cancel))
        .route("/api/sessions/{id}/share", post(share))
        .route("/api/sessions/{id}/events", get(events))
}

/// Create a session: decompose the prompt into TODOs, then queue one job per agent. Answers
/// once decomposition is done (a `502` carries the id of the session that failed).
#[utoipa::path(
    post, path = "/api/sessions", operation_id = "createSession", tag = "sessions",
    params(IdempotencyHeader),
    request_body(content = CreateSessionRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created and queued", body = SessionCreated,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer of an earlier request with the same Idempotency-Key"))),
        (status = 409, description = "The first request with this Idempotency-Key is still running after the decomposition deadline", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused with another body", body = ErrorBody),
        (status = 400, description = "Invalid body: the message names the field", body = ErrorBody),
        (status = 413, description = "Body over 256 KiB", body = ErrorBody),
        (status = 415, description = "Body is not application/json", body = ErrorBody),
        (status = 429, description = "Creation limit hit", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a creation is accepted"))),
        (status = 502, description = "Decomposition failed; the session exists, failed", body = ErrorBody),
        (status = 503, description = "Redis unreachable", body = ErrorBody),
    ),
)]
pub(super) async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let client = client_addr::client_ip(&headers, peer.ip(), &state.trusted_proxies);
    state.create_limiter.check(&state.store, client).await?;
    let key = IdempotencyKey::from_headers(&headers)?;
    let body = json_object(&headers, body)?;
    let new = NewSession::parse(&body, state.sessions.limits())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Some(key) = key {
        return Ok(state.idempotency.create(&key, &new).await?.into_response());
    }
    let id = state.sessions.create(new).await?;
    Ok((StatusCode::CREATED, Json(SessionCreated { session_id: id })).into_response())
}

fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(raw).map_err(|_| {
        ApiError::NotFound(format!(
            "session {:?} not found (session ids are UUIDs)",
            raw.chars().take(64).collect::<String>()
        ))
    })
}

/// A session's snapshot: its TODOs, agents and `lastSeq` (join the room with `since` = `lastSeq`).
#[utoipa::path(
    get, path = "/api/sessions/{id}", operation_id = "readSession", tag = "sessions",
    params(("id" = String, Path, description = "Session id (a UUID)")),
    responses(
        (status = 200, description = "The session", body = Session),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 503, description = "Redis unreachable", body = ErrorBody),
    ),
)]
pub(super) async fn read(
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Sessions per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// Sessions, newest first, a page at a time.
#[utoipa::path(
    get, path = "/api/sessions", operation_id = "listSessions", tag = "sessions",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of sessions", body = SessionList),
        (status = 400, description = "Bad limit or query string", body = ErrorBody),
        (status = 503, description = "Redis unreachable", body = ErrorBody),
    ),
)]
pub(super) async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SessionList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
    let limit = bounded(query.limit.as_deref(), "limit", DEFAULT_PAGE, MAX_PAGE)?;
    let page = state
        .store
        .list_sessions(limit, query.cursor.as_deref())
        .await?;
    Ok(Json(SessionList {
        sessions: page.sessions,
        next_cursor: page.next_cursor,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
    /// Only events with `seq` below this (default: all).
    #[param(value_type = Option<u64>, minimum = 0)]
    before: Option<String>,
    /// Events per page, 1 to 1,000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// One recorded event.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecordedEventView {
    pub seq: u64,
    /// The Socket.IO event name (`x-socketio` lists each payload).
    pub event: String,
    pub data: serde_json::Value,
}

/// A page of `GET /api/sessions/{id}/events`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// Newest first.
    pub events: Vec<RecordedEventView>,
    /// Older events were already trimmed from the stream.
    pub truncated: bool,
}

/// A page of the session's recorded events older than `before` (default: all), newest first:
/// `{events: [{seq, event, data}], truncated}` — `truncated` when the stream was already trimmed
/// below the oldest one returned (the dashboard's "load older").
#[utoipa::path(
    get, path = "/api/sessions/{id}/events", operation_id = "listSessionEvents", tag = "sessions",
    params(("id" = String, Path, description = "Session id (a UUID)"), EventsQuery),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        (status = 400, description = "Bad before, limit or query string", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 503, description = "Redis unreachable", body = ErrorBody),
    ),
)]
pub(super) async fn events(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
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
        let data: serde_json::Value = serde_json::from_str(&e.data).map_err(|err| {
            ApiError::Internal(anyhow::anyhow!("recorded event {}: {err}", e.seq))
        })?;
        events.push(RecordedEventView {
            seq: e.seq,
            event: e.event.clone(),
            data,
        });
    }
    // Seqs are contiguous from 1: fewer than asked for, yet not down to 1, means trimmed.
    let oldest = page.last().map_or(before.min(last_seq + 1), |e| e.seq);
    let truncated = page.len() < limit && oldest > 1;
    Ok(Json(EventPage { events, truncated }))
}

/// Cancel a decomposing or running session: its agents stop, its TODOs stay as they are.
#[utoipa::path(
    post, path = "/api/sessions/{id}/cancel", operation_id = "cancelSession", tag = "sessions",
    params(("id" = String, Path, description = "Session id (a UUID)"), IdempotencyHeader),
    responses(
        (status = 400, description = "Malformed Idempotency-Key", body = ErrorBody),
        (status = 422, description = "Idempotency-Key first used for another request", body = ErrorBody),
        (status = 200, description = "Cancelled", body = SessionCancelled,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the stored answer of an earlier request with the same Idempotency-Key"))),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "Already finished: the message names its status", body = ErrorBody),
        (status = 503, description = "Redis unreachable", body = ErrorBody),
    ),
)]
pub(super) async fn cancel(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = IdempotencyKey::from_headers(&headers)?;
    let id = session_id(&raw)?;
    if let Some(key) = key {
        return Ok(state.idempotency.cancel(&key, id).await?.into_response());
    }
    match state.sessions.cancel(id).await? {
        CancelOutcome::Cancelled => Ok(Json(SessionCancelled {
            session_id: id,
            status: SessionStatus::Cancelled,
        })
        .into_response()),
        CancelOutcome::Finished { status } => Err(ApiError::cancel_finished(id, status)),
        CancelOutcome::NotFound => Err(ApiError::NotFound(format!("session {id} not found"))),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ShareQuery {
    /// Lifetime of the token in seconds, 1 to 7,776,000 (90 days); default 604,800 (7 days).
    #[param(rename = "ttlSecs", value_type = Option<u64>, minimum = 1, maximum = 7_776_000)]
    #[serde(rename = "ttlSecs")]
    ttl_secs: Option<String>,
}

/// `201` of `POST /api/sessions/{id}/share`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionShared {
    pub session_id: SessionId,
    /// Read-only: `GET /api/sessions/{id}` (as a bearer token) and joining the session's room
    /// (Socket.IO `auth: {token}`), nothing else.
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// The dashboard page for it, relative to the dashboard's base URL: the token travels in
    /// the fragment, which browsers never send to a server.
    pub path: String,
}

/// Mint a read-only share token for one session (admin token only).
#[utoipa::path(
    post, path = "/api/sessions/{id}/share", operation_id = "shareSession", tag = "sessions",
    params(("id" = String, Path, description = "Session id (a UUID)"), ShareQuery),
    responses(
        (status = 201, description = "A share token", body = SessionShared),
        (status = 400, description = "Bad ttlSecs", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "No share key: the API is open (no SWARMQ_API_TOKEN) and needs no token", body = ErrorBody),
        (status = 503, description = "Redis unreachable", body = ErrorBody),
    ),
)]
pub(super) async fn share(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    query: Result<Query<ShareQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(StatusCode, Json<SessionShared>), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
    let max = crate::share::MAX_TTL.as_secs();
    let ttl = match query.ttl_secs.as_deref().map(str::parse::<u64>) {
        None => crate::share::DEFAULT_TTL,
        Some(Ok(n)) if (1..=max).contains(&n) => std::time::Duration::from_secs(n),
        Some(_) => {
            return Err(ApiError::BadRequest(format!(
                "ttlSecs must be an integer between 1 and {max}"
            )));
        }
    };
    let id = session_id(&raw)?;
    if state.store.snapshot(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("session {id} not found")));
    }
    let (token, expires_at) = state
        .auth
        .mint(id, ttl, crate::share::now_secs())
        .ok_or_else(|| {
            ApiError::Conflict(
                "sharing needs SWARMQ_API_TOKEN (or SWARMQ_SHARE_KEY): without a token the API is open and the session's page needs none".into(),
            )
        })?;
    let path = format!("/sessions/{id}#share={token}");
    Ok((
        StatusCode::CREATED,
        Json(SessionShared {
            session_id: id,
            token,
            expires_at,
            path,
        }),
    ))
}
