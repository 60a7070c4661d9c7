//! The HTTP API: one router per resource, merged here. Unknown routes answer a JSON 404.

mod body;
mod cluster;
pub mod openapi;
mod sessions;
mod socketio_doc;
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

/// Credentials: `/api/*` (and Socket.IO) checked by `auth` (the admin token, share tokens),
/// `/metrics` with `metrics`.
#[derive(Clone)]
pub struct Tokens {
    pub auth: std::sync::Arc<crate::share::Auth>,
    pub metrics: Option<Token>,
}

pub fn router(state: AppState, tokens: Tokens) -> Router {
    let mut api = Router::new()
        .merge(sessions::router())
        .merge(cluster::router());
    if tokens.auth.required() {
        api = api.route_layer(middleware::from_fn_with_state(
            tokens.auth,
            crate::share::authorize,
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
        .merge(openapi::router())
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

/// An unknown path: a browser asking for a page gets the dashboard (which says "not found" with
/// its navigation), status 404; everything else gets the API's JSON error.
async fn not_found(request: Request) -> Response {
    let wants_page = request.method() == axum::http::Method::GET
        && !request.uri().path().starts_with("/api/")
        && request
            .headers()
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
    if wants_page {
        let mut page = ui::page().await;
        *page.status_mut() = StatusCode::NOT_FOUND;
        return page;
    }
    ApiError::NotFound("no such route".into()).into_response()
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({ "error": "method not allowed on this route" })),
    )
}
