//! Optional bearer-token protection of HTTP routes (`SWARMQ_API_TOKEN`, `SWARMQ_METRICS_TOKEN`).

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;
use crate::token::Token;

pub async fn require_bearer(
    State(token): State<Token>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(candidate) if token.matches(candidate) => Ok(next.run(request).await),
        Some(_) => Err(ApiError::Unauthorized("invalid bearer token".into())),
        None => Err(ApiError::Unauthorized(
            "missing bearer token: send Authorization: Bearer <token>".into(),
        )),
    }
}
