//! Claude through the Anthropic Messages API. Retries follow the official SDKs: up to two
//! retries on 408, 409, 429 and 5xx (529 overloaded included) and on transport errors, waiting
//! what `retry-after`/`retry-after-ms` says (up to 60 s) or else 0.5 s doubling to 8 s with
//! jitter; never on 400/401/403/404/413. The whole call, retries included, is bounded by the
//! decomposition timeout.

use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use swarmq_shared::backoff::Backoff;

use super::{ASKED_DESCRIPTION_CHARS, Limits, PlanError, reply};

const API_VERSION: &str = "2023-06-01";
/// The model's reply budget, in tokens. A reply cut off at it (`stop_reason: max_tokens`) fails
/// the session as `Truncated` rather than being guessed at.
const MAX_REPLY_TOKENS: u32 = 4096;
/// Time to open a connection to the API, within the decomposition timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RETRIES: u32 = 2;

pub struct AnthropicPlanner {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    model: String,
    timeout: Duration,
}

impl AnthropicPlanner {
    pub fn new(
        base_url: &str,
        api_key: String,
        model: String,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            model,
            timeout,
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub async fn plan(
        &self,
        prompt: &str,
        agent_count: u32,
        limits: Limits,
    ) -> Result<Vec<String>, PlanError> {
        tokio::time::timeout(
            self.timeout,
            self.plan_with_retries(prompt, agent_count, limits),
        )
        .await
        .map_err(|_| PlanError::Timeout(self.timeout))?
    }

    async fn plan_with_retries(
        &self,
        prompt: &str,
        agent_count: u32,
        limits: Limits,
    ) -> Result<Vec<String>, PlanError> {
        let body = json!({
            "model": self.model,
            "max_tokens": MAX_REPLY_TOKENS,
            "system": system_prompt(agent_count, limits),
            "messages": [{ "role": "user", "content": prompt }],
        });
        let mut attempt = 0;
        let outcome = loop {
            match self.call(&body).await {
                Err(Failure::Retryable { wait, error }) if attempt < MAX_RETRIES => {
                    let wait = wait.unwrap_or_else(|| backoff(attempt));
                    tracing::warn!(attempt = attempt + 1, ?wait, %error, "anthropic call failed, retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => break other,
            }
        };
        match outcome {
            Ok(text) => reply::parse_todos(&text, limits),
            Err(failure) => Err(failure.into_error()),
        }
    }

    /// One request: the reply's text, or how it failed.
    async fn call(&self, body: &Value) -> Result<String, Failure> {
        let response = self
            .http
            .post(format!("{}/v1/messages", self.base_url))
            .header("x-api-key", &self.api_key)
            .header("anthropic-version", API_VERSION)
            .json(body)
            .send()
            .await
            .map_err(|e| Failure::Retryable {
                wait: None,
                error: PlanError::Transport(without_url(e)),
            })?;
        let status = response.status();
        let wait = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(|e| Failure::Retryable {
            wait: None,
            error: PlanError::Transport(without_url(e)),
        })?;
        if !status.is_success() {
            let error = api_error(status, &bytes);
            return Err(if retryable(status) {
                Failure::Retryable { wait, error }
            } else {
                Failure::Final(error)
            });
        }
        let message: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Final(PlanError::InvalidReply(format!(
                "response body is not JSON: {e}"
            )))
        })?;
        match message.get("stop_reason").and_then(Value::as_str) {
            Some("max_tokens") => return Err(Failure::Final(PlanError::Truncated)),
            Some("refusal") => return Err(Failure::Final(PlanError::Refused)),
            _ => {}
        }
        let content = message
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                Failure::Final(PlanError::InvalidReply(
                    "response has no content array".into(),
                ))
            })?;
        let text: String = content
            .iter()
            .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|block| block.get("text").and_then(Value::as_str))
            .collect();
        Ok(text)
    }
}

enum Failure {
    Retryable {
        wait: Option<Duration>,
        error: PlanError,
    },
    Final(PlanError),
}

impl Failure {
    fn into_error(self) -> PlanError {
        match self {
            Self::Retryable { error, .. } | Self::Final(error) => error,
        }
    }
}

fn system_prompt(agent_count: u32, limits: Limits) -> String {
    format!(
        "You split a user's request into exactly {agent_count} independent tasks that {agent_count} \
         agents can carry out in parallel, each on its own computer, without talking to each other. \
         Each task description must be self-contained and at most {} characters. Reply with JSON \
         only, no prose and no code fence, in exactly this shape: \
         {{\"todos\":[{{\"description\":\"...\"}}]}}",
        limits.max_description_chars.min(ASKED_DESCRIPTION_CHARS)
    )
}

fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error()
}

/// `retry-after-ms`, else `retry-after` in seconds, capped at 60 s as the SDKs do.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number =
        |name: &str| -> Option<f64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    let wait = number("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| number("retry-after"))?;
    (0.0..=60.0)
        .contains(&wait)
        .then(|| Duration::from_secs_f64(wait))
}

/// The SDKs' wait before retry `attempt` (0-based) when the API names none: 0.5 s doubling to
/// 8 s, minus up to a quarter of jitter so clients that failed together do not retry together.
fn backoff(attempt: u32) -> Duration {
    let base = Backoff::nth(Duration::from_millis(500), attempt, Duration::from_secs(8));
    base.mul_f64(1.0 - rand::rng().random_range(0.0..0.25))
}

/// The API's `{"type":"error","error":{"type","message"}}`, or a summary of whatever came.
fn api_error(status: StatusCode, body: &[u8]) -> PlanError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let kind = error
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("unknown_error");
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(|m| m.chars().take(300).collect())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_owned());
    PlanError::Api {
        status: status.as_u16(),
        kind: kind.to_owned(),
        message,
    }
}

/// reqwest errors name the URL; the base URL is harmless but keep error text short and stable.
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(&e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_honoured_up_to_a_minute() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        h.insert("retry-after", "3600".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        for s in [408, 409, 429, 500, 502, 503, 529] {
            assert!(retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 413] {
            assert!(!retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}
