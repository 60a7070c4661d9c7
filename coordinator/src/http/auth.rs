//! Optional bearer-token protection (`SWARMQ_API_TOKEN`, `SWARMQ_METRICS_TOKEN`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;

/// A configured token; comparison takes the same time whatever the guess.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(token: &str) -> Self {
        Self(Arc::from(token))
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
}
