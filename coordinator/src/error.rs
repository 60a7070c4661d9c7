//! The HTTP error type: every failure a handler can answer, with its status. Bodies are always
//! `{"error": "..."}` (plus `sessionId` where one exists); unexpected failures are logged with
//! their cause and answered with a bare 500 that leaks nothing.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use swarmq_shared::{SessionId, StoreError};

use crate::sessions::CreateError;

/// The body of every error answer (documentation of [`ApiError`]'s responses).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// What went wrong, for a person: names the field, limit or state at fault.
    pub error: String,
    /// The session the failure concerns, when one exists (a failed decomposition's `502`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// An `Idempotency-Key` reused for another request.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Decomposition failed; the session exists (failed) and its id is returned.
    #[error("{message}")]
    Planner {
        session_id: SessionId,
        message: String,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error(
        "too many sessions created: the limit is {limit} a minute per {by} (SWARMQ_CREATE_RATE_PER_MIN, counted across all coordinators); retry in {retry_after_secs} s"
    )]
    TooManyRequests {
        retry_after_secs: u64,
        limit: u32,
        by: &'static str,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// The 409 of cancelling a session that already finished.
    pub fn cancel_finished(id: SessionId, status: swarmq_shared::SessionStatus) -> Self {
        Self::Conflict(format!(
            "session {id} is already {status}; only decomposing or running sessions can be cancelled"
        ))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        metrics::counter!("swarmq_redis_errors_total").increment(1);
        if e.is_unavailable() {
            tracing::warn!(error = %e, "redis unavailable");
            Self::Unavailable("storage unavailable: cannot reach Redis, try again shortly".into())
        } else {
            Self::Internal(anyhow::Error::new(e))
        }
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::Store(e) => e.into(),
            CreateError::Decomposition {
                session_id,
                message,
            } => Self::Planner {
                session_id,
                message,
            },
            taken @ CreateError::IdTaken(_) => Self::Internal(anyhow::Error::new(taken)),
            CreateError::Abandoned(id) => {
                tracing::warn!(session_id = %id, "session abandoned by the watchdog before it was recorded");
                Self::Unavailable("the session could not be recorded in time, try again".into())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, json!({ "error": m })),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, json!({ "error": m })),
            Self::Conflict(m) => (StatusCode::CONFLICT, json!({ "error": m })),
            Self::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, json!({ "error": m })),
            Self::UnsupportedMediaType(m) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, json!({ "error": m }))
            }
            Self::PayloadTooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": m })),
            Self::Planner {
                session_id,
                message,
            } => (
                StatusCode::BAD_GATEWAY,
                json!({ "sessionId": session_id, "error": message }),
            ),
            Self::Unauthorized(m) => (StatusCode::UNAUTHORIZED, json!({ "error": m })),
            Self::TooManyRequests {
                retry_after_secs, ..
            } => {
                let body = json!({ "error": self.to_string() });
                let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
                if let Ok(value) = retry_after_secs.to_string().parse() {
                    response
                        .headers_mut()
                        .insert(axum::http::header::RETRY_AFTER, value);
                }
                return response;
            }
            Self::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": m })),
            Self::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "error": "internal error" }),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}
