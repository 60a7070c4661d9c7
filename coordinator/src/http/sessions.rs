//! `/api/sessions`: create (decompose + enqueue), read, list, cancel.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use swarmq_shared::model::SessionSummary;
use swarmq_shared::store::{CancelOutcome, CreateOutcome};
use swarmq_shared::{AgentId, Session, SessionId, SessionStatus, Todo, now_ms};
use tracing::Instrument;

use super::body::json_object;
use crate::error::ApiError;
use crate::state::{AppState, SessionLimits};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions", post(create).get(list))
        .route("/api/sessions/{id}", get(read))
        .route("/api/sessions/{id}/cancel", post(cancel))
}

/// A validated `POST /api/sessions` body.
#[derive(Debug, PartialEq)]
pub struct NewSession {
    pub prompt: String,
    pub agent_count: u32,
}

impl NewSession {
    /// Validates the body's fields, naming the field at fault.
    pub fn parse(body: &Map<String, Value>, limits: &SessionLimits) -> Result<Self, ApiError> {
        if let Some(unknown) = body
            .keys()
            .find(|k| k.as_str() != "prompt" && k.as_str() != "agentCount")
        {
            return Err(ApiError::BadRequest(format!(
                "unknown field {:?}: expected only \"prompt\" and \"agentCount\"",
                unknown.chars().take(40).collect::<String>()
            )));
        }
        let prompt = match body.get("prompt") {
            None | Some(Value::Null) => return Err(bad("prompt is required")),
            Some(Value::String(p)) => p,
            Some(_) => return Err(bad("prompt must be a string")),
        };
        if prompt.trim().is_empty() {
            return Err(bad("prompt must not be empty"));
        }
        let chars = prompt.chars().count();
        if chars > limits.max_prompt_chars {
            return Err(ApiError::BadRequest(format!(
                "prompt is too long: {chars} characters, the limit is {}",
                limits.max_prompt_chars
            )));
        }
        let max = limits.max_agents;
        let range = || format!("agentCount must be between 1 and {max}");
        let agent_count = match body.get("agentCount") {
            None | Some(Value::Null) => return Err(bad("agentCount is required")),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(n) if n >= 1 && n <= i64::from(max) => n as u32,
                Some(_) => return Err(ApiError::BadRequest(range())),
                None if n.as_u64().is_some() => return Err(ApiError::BadRequest(range())),
                None => return Err(bad("agentCount must be an integer")),
            },
            Some(_) => return Err(bad("agentCount must be an integer")),
        };
        Ok(Self {
            prompt: prompt.clone(),
            agent_count,
        })
    }
}

/// The client's address: the socket peer, or — behind a trusted proxy — the last
/// X-Forwarded-For entry, the one that proxy appended (earlier entries are client-supplied).
fn client_ip(headers: &HeaderMap, peer: SocketAddr, trust_forwarded_for: bool) -> IpAddr {
    if trust_forwarded_for
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return ip;
    }
    peer.ip()
}

fn bad(message: &str) -> ApiError {
    ApiError::BadRequest(message.to_owned())
}

async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let client = client_ip(&headers, peer, state.trust_forwarded_for);
    state
        .create_limiter
        .check(client)
        .map_err(|wait| ApiError::TooManyRequests {
            retry_after_secs: wait.as_secs().max(1),
        })?;
    let body = json_object(&headers, body)?;
    let new = NewSession::parse(&body, &state.limits)?;
    let id = SessionId::new();
    let span = tracing::info_span!("create_session", session_id = %id, agents = new.agent_count);
    create_session(&state, id, new).instrument(span).await?;
    Ok((StatusCode::CREATED, Json(json!({ "sessionId": id }))))
}

/// The plan's steps 2–7: record the session, decompose, then write TODOs, agents, agent jobs and
/// task:created events in one transition. A coordinator dying in between leaves a `decomposing`
/// session that the watchdog fails after the deadline, never half a session.
async fn create_session(state: &AppState, id: SessionId, new: NewSession) -> Result<(), ApiError> {
    let limits = state.limits;
    let created_at = now_ms();
    // Grace beyond the planner's own timeout (as long again, at most 30 s), so the watchdog never
    // races a live coordinator that is still finishing the call.
    let timeout = limits.decompose_timeout.as_millis() as u64;
    let deadline = created_at + timeout + timeout.min(30_000);
    if !state
        .store
        .init_session(
            id,
            &new.prompt,
            new.agent_count,
            created_at,
            deadline,
            limits.retention,
        )
        .await?
    {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "session id {id} already exists"
        )));
    }
    let started = std::time::Instant::now();
    let descriptions = match state
        .planner
        .plan(&new.prompt, new.agent_count, limits.plan)
        .await
    {
        Ok(d) => d,
        Err(e) => {
            let message = format!("decomposition failed: {e}");
            tracing::warn!(error = %e, "decomposition failed");
            metrics::counter!("swarmq_llm_errors_total", "status" => e.metric_label()).increment(1);
            metrics::counter!("swarmq_sessions_finished_total", "status" => "failed").increment(1);
            state
                .store
                .fail_session(id, &message, SessionStatus::Decomposing)
                .await?;
            return Err(ApiError::Planner {
                session_id: id,
                message,
            });
        }
    };
    tracing::info!(
        todos = descriptions.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "decomposed"
    );
    metrics::histogram!("swarmq_decomposition_seconds").record(started.elapsed().as_secs_f64());
    let todos: Vec<Todo> = descriptions.into_iter().map(Todo::new).collect();
    let agents: Vec<AgentId> = (0..new.agent_count).map(|_| AgentId::new()).collect();
    match state.store.create_session(id, &todos, &agents).await? {
        CreateOutcome::Created => {
            metrics::counter!("swarmq_sessions_created_total").increment(1);
            Ok(())
        }
        CreateOutcome::NotDecomposing(status) if status == "cancelled" => {
            tracing::info!("session was cancelled while decomposing");
            Ok(())
        }
        CreateOutcome::NotDecomposing(status) => Err(ApiError::Planner {
            session_id: id,
            message: format!("session is {status}: decomposition took longer than allowed"),
        }),
    }
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
        None => 20,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => return Err(bad("limit must be an integer between 1 and 100")),
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
    match state.store.cancel_session(id).await? {
        CancelOutcome::Cancelled => {
            tracing::info!(session_id = %id, "session cancelled");
            metrics::counter!("swarmq_sessions_finished_total", "status" => "cancelled")
                .increment(1);
            Ok(Json(json!({ "sessionId": id, "status": "cancelled" })))
        }
        CancelOutcome::Finished(status) => Err(ApiError::Conflict(format!(
            "session {id} is already {status}; only decomposing or running sessions can be cancelled"
        ))),
        CancelOutcome::NotFound => Err(ApiError::NotFound(format!("session {id} not found"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::Limits;

    fn limits() -> SessionLimits {
        SessionLimits {
            max_agents: 4,
            max_prompt_chars: 10,
            plan: Limits {
                max_todos: 8,
                max_description_chars: 100,
            },
            decompose_timeout: std::time::Duration::from_secs(1),
            retention: std::time::Duration::from_secs(60),
        }
    }

    fn parse(body: Value) -> Result<NewSession, String> {
        NewSession::parse(body.as_object().unwrap(), &limits()).map_err(|e| e.to_string())
    }

    #[test]
    fn forwarded_for_counts_only_when_trusted_and_from_the_nearest_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 10.0.0.9".parse().unwrap());
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(client_ip(&headers, peer, false), peer.ip());
        assert_eq!(
            client_ip(&headers, peer, true),
            "10.0.0.9".parse::<IpAddr>().unwrap()
        );
        headers.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(&headers, peer, true), peer.ip());
    }

    #[test]
    fn valid_bodies_parse() {
        assert_eq!(
            parse(json!({"prompt": "hi", "agentCount": 4})),
            Ok(NewSession {
                prompt: "hi".into(),
                agent_count: 4
            })
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (json!({"agentCount": 1}), "prompt is required"),
            (
                json!({"prompt": 5, "agentCount": 1}),
                "prompt must be a string",
            ),
            (
                json!({"prompt": "  \n", "agentCount": 1}),
                "prompt must not be empty",
            ),
            (
                json!({"prompt": "x".repeat(11), "agentCount": 1}),
                "prompt is too long",
            ),
            (json!({"prompt": "a"}), "agentCount is required"),
            (
                json!({"prompt": "a", "agentCount": 1.5}),
                "agentCount must be an integer",
            ),
            (
                json!({"prompt": "a", "agentCount": "2"}),
                "agentCount must be an integer",
            ),
            (json!({"prompt": "a", "agentCount": 0}), "between 1 and 4"),
            (json!({"prompt": "a", "agentCount": 5}), "between 1 and 4"),
            (json!({"prompt": "a", "agentCount": -3}), "between 1 and 4"),
            (
                json!({"prompt": "a", "agentCount": u64::MAX}),
                "between 1 and 4",
            ),
            (
                json!({"prompt": "a", "agentCount": 1, "x": 1}),
                "unknown field \"x\"",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(body.clone()).unwrap_err();
            assert!(
                err.contains(expected),
                "{body} gave {err:?}, wanted {expected:?}"
            );
        }
    }
}
