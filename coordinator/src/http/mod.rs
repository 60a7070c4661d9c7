//! The HTTP API: one router per resource, merged here. Unknown routes answer a JSON 404.

mod body;
mod cluster;
mod health;
mod sessions;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::error::ApiError;
use crate::state::AppState;

/// Largest accepted request body. A prompt at the default limit is well under it.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(sessions::router())
        .merge(cluster::router())
        .merge(health::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({ "error": "method not allowed on this route" })),
    )
}
