//! The HTTP API: one router per resource, merged here. Unknown routes answer a JSON 404.

mod body;
mod cluster;
mod sessions;
mod ui;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use swarmq_shared::probes;

/// Re-exported for the Socket.IO handlers, which check the same API token.
pub use crate::token::Token;

use crate::error::ApiError;
use crate::state::AppState;

/// Largest accepted request body. A prompt at the default limit is well under it.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Optional tokens: `/api/*` (and Socket.IO) with `api`, `/metrics` with `metrics`.
#[derive(Clone, Default)]
pub struct Tokens {
    pub api: Option<Token>,
    pub metrics: Option<Token>,
}

pub fn router(state: AppState, tokens: Tokens) -> Router {
    let mut api = Router::new()
        .merge(sessions::router())
        .merge(cluster::router());
    if let Some(token) = tokens.api {
        api = api.route_layer(middleware::from_fn_with_state(
            token,
            crate::token::require_bearer,
        ));
    }
    let mut metrics = probes::metrics_routes(state.metrics.clone());
    if let Some(token) = tokens.metrics {
        metrics = metrics.route_layer(middleware::from_fn_with_state(
            token,
            crate::token::require_bearer,
        ));
    }
    Router::new()
        .merge(api)
        .merge(metrics)
        .merge(probes::health_routes(state.store.clone(), None))
        .merge(ui::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(count_responses))
        .with_state(state)
}

async fn count_responses(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    metrics::counter!("swarmq_http_requests_total", "status" => response.status().as_u16().to_string())
        .increment(1);
    response
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
