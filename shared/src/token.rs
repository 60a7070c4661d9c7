//! A configured secret (`SWARMQ_API_TOKEN`, `SWARMQ_METRICS_TOKEN`) and the HTTP bearer check:
//! the coordinator's API and `/metrics`, its Socket.IO connect handler, and the runner's
//! `/metrics` all check tokens this way.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// A configured token; comparison takes the same time whatever the guess.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(token: &str) -> Self {
        Self(Arc::from(token))
    }

    /// `None` for an unset or empty setting (the resource is then open).
    pub fn from_setting(setting: Option<&str>) -> Option<Self> {
        setting.filter(|t| !t.is_empty()).map(Self::new)
    }

    /// The secret itself (to derive other keys from it).
    pub fn secret(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, byte) in a.iter().enumerate() {
            diff |= usize::from(byte ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

/// The token of an `Authorization: Bearer <token>` header, if the request has one.
pub fn presented(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Middleware: the request must carry `Authorization: Bearer <token>`, else 401 `{error}`.
pub async fn require_bearer(State(token): State<Token>, request: Request, next: Next) -> Response {
    let presented = presented(&request);
    let refusal = match presented {
        Some(candidate) if token.matches(candidate) => return next.run(request).await,
        Some(_) => "invalid bearer token",
        None => "missing bearer token: send Authorization: Bearer <token>",
    };
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({ "error": refusal })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn only_the_exact_token_matches() {
        let t = Token::new("s3cret");
        assert!(t.matches("s3cret"));
        for bad in ["", "s3cre", "s3cret!", "S3cret"] {
            assert!(!t.matches(bad), "{bad}");
        }
    }

    #[test]
    fn an_empty_setting_means_no_token() {
        assert!(Token::from_setting(None).is_none());
        assert!(Token::from_setting(Some("")).is_none());
        assert!(Token::from_setting(Some("x")).is_some());
    }
}
