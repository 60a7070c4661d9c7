//! `Idempotency-Key` on `POST /api/sessions` and `POST /api/sessions/{id}/cancel`: a retry with
//! the same key and body gets the first answer (same session id, same status), from any
//! coordinator, also while the first request is still decomposing; the same key with another
//! request is a 422. Keys are remembered `SWARMQ_IDEMPOTENCY_TTL_SECS` (default a day).
//!
//! A creation claims its key with the session id it will use before doing anything, so every
//! retry names the same session. A retry that finds the key claimed but no answer yet waits:
//! for the answer, or for the session to leave `decomposing`, from which the answer follows.
//! When the first request died before recording the session, the retry records it itself under
//! the same id; recording is set-if-absent ([`InitSession`]), so of two racing callers exactly
//! one decomposes, and a key ends with exactly one session.
//!
//! [`InitSession`]: swarmq_shared::transitions::InitSession

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use swarmq_shared::store::idempotency::{Claim, IdempotencyRecord, StoredAnswer};
use swarmq_shared::transitions::CancelOutcome;
use swarmq_shared::{SessionId, SessionStatus, Store};

use crate::error::ApiError;
use crate::sessions::{CreateError, NewSession, SessionService};

pub const HEADER: &str = "idempotency-key";
/// Longest accepted key (a UUID is 36).
pub const MAX_KEY_LEN: usize = 255;
/// How often a waiting retry looks again.
const POLL: Duration = Duration::from_millis(100);
/// How long a retry of a cancel waits for the first one before cancelling itself.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// A checked `Idempotency-Key`: 1-255 visible ASCII characters, no braces.
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The request's key, if it sent one; a 400 naming the rule when it is malformed.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let Some(value) = headers.get(HEADER) else {
            return Ok(None);
        };
        let text = value.to_str().unwrap_or("");
        let ok = !text.is_empty()
            && text.len() <= MAX_KEY_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
        if ok {
            Ok(Some(Self(text.to_owned())))
        } else {
            Err(ApiError::BadRequest(format!(
                "Idempotency-Key must be 1-{MAX_KEY_LEN} visible ASCII characters without braces (a UUID is ideal)"
            )))
        }
    }
}

/// A response the handlers send as is; `replayed` when it is a retry's copy of the first.
pub struct Answer {
    pub status: StatusCode,
    pub body: serde_json::Value,
    pub replayed: bool,
}

impl From<StoredAnswer> for Answer {
    fn from(a: StoredAnswer) -> Self {
        Self {
            status: StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK),
            body: a.body,
            replayed: true,
        }
    }
}

#[derive(Clone)]
pub struct Idempotency {
    sessions: SessionService,
    ttl: Duration,
}

impl Idempotency {
    pub fn new(sessions: SessionService, ttl: Duration) -> Self {
        Self { sessions, ttl }
    }

    fn store(&self) -> &Store {
        self.sessions.store()
    }

    /// Claims `key` for `request`: `Ok(None)` when this request is the first, the earlier
    /// record when not (a 422 when it was for another request).
    async fn claim(
        &self,
        key: &IdempotencyKey,
        mine: &IdempotencyRecord,
    ) -> Result<Option<IdempotencyRecord>, ApiError> {
        match self
            .store()
            .claim_idempotency_key(&key.0, mine, self.ttl)
            .await?
        {
            Claim::First => Ok(None),
            Claim::Used(record) if record.request == mine.request => Ok(Some(record)),
            Claim::Used(record) => Err(ApiError::Unprocessable(format!(
                "Idempotency-Key {:?} was first used for another request ({}); use a new key for a new request",
                key.0,
                record.request.chars().take(120).collect::<String>()
            ))),
        }
    }

    async fn keep(&self, key: &IdempotencyKey, record: &IdempotencyRecord, answer: &StoredAnswer) {
        let mut done = record.clone();
        done.answer = Some(answer.clone());
        if let Err(e) = self.store().answer_idempotency_key(&key.0, &done).await {
            // A retry then derives the answer from the session instead.
            tracing::warn!(error = %e, "could not store an idempotent answer");
        }
    }
}

/// Creation.
impl Idempotency {
    pub async fn create(&self, key: &IdempotencyKey, new: &NewSession) -> Result<Answer, ApiError> {
        let request = json!({ "prompt": new.prompt, "agentCount": new.agent_count });
        let mine = IdempotencyRecord {
            request: format!("POST /api/sessions {request}"),
            session: Some(SessionId::new()),
            answer: None,
        };
        let first = mine.session;
        let record = match self.claim(key, &mine).await? {
            None => mine,
            Some(earlier) => match earlier.answer {
                Some(answer) => return Ok(answer.into()),
                None => earlier,
            },
        };
        let id = record.session.ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("idempotency record without a session"))
        })?;
        let answer = self.create_or_await(id, new).await;
        let answer = match answer? {
            Some(answer) => answer,
            None => self.await_creation(key, id, new).await?,
        };
        self.keep(key, &record, &answer).await;
        Ok(Answer {
            replayed: record.session != first,
            ..Answer::from(answer)
        })
    }

    /// Records and decomposes session `id`; `None` when another caller recorded it first.
    async fn create_or_await(
        &self,
        id: SessionId,
        new: &NewSession,
    ) -> Result<Option<StoredAnswer>, ApiError> {
        match self.sessions.create_as(id, new).await {
            Ok(()) => Ok(Some(created(id))),
            Err(CreateError::IdTaken(_)) => Ok(None),
            Err(CreateError::Decomposition {
                session_id,
                message,
            }) => Ok(Some(StoredAnswer {
                status: StatusCode::BAD_GATEWAY.as_u16(),
                body: json!({ "sessionId": session_id, "error": message }),
            })),
            Err(e @ (CreateError::Store(_) | CreateError::Abandoned(_))) => Err(e.into()),
        }
    }

    /// Waits for another caller's creation of session `id`: for its stored answer, or for the
    /// session to leave `decomposing`. Takes the creation over if the session is missing (its
    /// first caller died before recording it).
    async fn await_creation(
        &self,
        key: &IdempotencyKey,
        id: SessionId,
        new: &NewSession,
    ) -> Result<StoredAnswer, ApiError> {
        let give_up = tokio::time::Instant::now()
            + self.sessions.decompose_deadline() * 2
            + Duration::from_secs(30);
        while tokio::time::Instant::now() < give_up {
            if let Some(answer) = self
                .store()
                .idempotency_record(&key.0)
                .await?
                .and_then(|r| r.answer)
            {
                return Ok(answer);
            }
            match self.store().snapshot(id).await? {
                None => {
                    if let Some(answer) = self.create_or_await(id, new).await? {
                        return Ok(answer);
                    }
                }
                Some(s) if s.status == SessionStatus::Decomposing => {}
                Some(s) if s.status == SessionStatus::Failed => {
                    return Ok(StoredAnswer {
                        status: StatusCode::BAD_GATEWAY.as_u16(),
                        body: json!({ "sessionId": id, "error": s.error.unwrap_or_default() }),
                    });
                }
                Some(_) => return Ok(created(id)),
            }
            tokio::time::sleep(POLL).await;
        }
        Err(ApiError::Conflict(format!(
            "the first request with Idempotency-Key {:?} is still creating session {id}; retry later",
            key.0
        )))
    }
}

fn created(id: SessionId) -> StoredAnswer {
    StoredAnswer {
        status: StatusCode::CREATED.as_u16(),
        body: json!({ "sessionId": id }),
    }
}

/// Cancellation.
impl Idempotency {
    pub async fn cancel(&self, key: &IdempotencyKey, id: SessionId) -> Result<Answer, ApiError> {
        let mine = IdempotencyRecord {
            request: format!("POST /api/sessions/{id}/cancel"),
            session: Some(id),
            answer: None,
        };
        let Some(earlier) = self.claim(key, &mine).await? else {
            let answer = cancel_answer(id, self.sessions.cancel(id).await?, false);
            self.keep(key, &mine, &answer).await;
            return Ok(Answer {
                replayed: false,
                ..answer.into()
            });
        };
        if let Some(answer) = earlier.answer {
            return Ok(answer.into());
        }
        let give_up = tokio::time::Instant::now() + CANCEL_WAIT;
        while tokio::time::Instant::now() < give_up {
            tokio::time::sleep(POLL).await;
            if let Some(answer) = self
                .store()
                .idempotency_record(&key.0)
                .await?
                .and_then(|r| r.answer)
            {
                return Ok(answer.into());
            }
        }
        // The first request died before answering: cancel here, where "already cancelled" is
        // the first request's success.
        let answer = cancel_answer(id, self.sessions.cancel(id).await?, true);
        self.keep(key, &mine, &answer).await;
        Ok(answer.into())
    }
}

/// The answer of a cancel; `retried`: a session found cancelled counts as cancelled by us.
fn cancel_answer(id: SessionId, outcome: CancelOutcome, retried: bool) -> StoredAnswer {
    let (status, body) = match outcome {
        CancelOutcome::Finished { status } if !(retried && status == SessionStatus::Cancelled) => (
            StatusCode::CONFLICT,
            json!({ "error": ApiError::cancel_finished(id, status).to_string() }),
        ),
        CancelOutcome::NotFound => (
            StatusCode::NOT_FOUND,
            json!({ "error": format!("session {id} not found") }),
        ),
        CancelOutcome::Cancelled | CancelOutcome::Finished { .. } => (
            StatusCode::OK,
            json!({ "sessionId": id, "status": SessionStatus::Cancelled }),
        ),
    };
    StoredAnswer {
        status: status.as_u16(),
        body,
    }
}

impl axum::response::IntoResponse for Answer {
    fn into_response(self) -> axum::response::Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if self.replayed {
            response.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
        }
        response
    }
}
