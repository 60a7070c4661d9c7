//! HTTP calls to the coordinator. Errors say what went wrong in the user's terms: unreachable
//! coordinator, the API's own `{"error"}` message, or an unexpected answer.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// An answer of the API read as `shared`'s type (the coordinator and this CLI share them).
pub fn typed<T: serde::de::DeserializeOwned>(answer: Value) -> anyhow::Result<T> {
    serde_json::from_value(answer)
        .context("the coordinator answered in a shape this CLI cannot read (a version mismatch?)")
}

pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        anyhow::ensure!(
            base.starts_with("http://") || base.starts_with("https://"),
            "--url / SWARMQ_URL must start with http:// or https:// (got {base:?})"
        );
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .build()?;
        Ok(Self { base, token, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub async fn submit(&self, prompt: &str, agents: u32) -> anyhow::Result<String> {
        let body = self
            .send(
                self.http
                    .post(self.url("/api/sessions"))
                    .json(&json!({ "prompt": prompt, "agentCount": agents })),
            )
            .await?;
        body["sessionId"]
            .as_str()
            .map(str::to_owned)
            .context("the coordinator's answer has no sessionId")
    }

    pub async fn session(&self, id: &str) -> anyhow::Result<Value> {
        self.get(&format!("/api/sessions/{id}")).await
    }

    pub async fn cancel(&self, id: &str) -> anyhow::Result<Value> {
        self.post(&format!("/api/sessions/{id}/cancel")).await
    }

    pub async fn post(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path))).await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path))).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, mut request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                anyhow::anyhow!(
                    "cannot reach the coordinator at {} (is it running? set --url or SWARMQ_URL)",
                    self.base
                )
            } else {
                anyhow::anyhow!("request to {} failed: {e}", self.base)
            }
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            match body["error"].as_str() {
                Some(error) => bail!("{error} (HTTP {})", status.as_u16()),
                None => bail!("the coordinator answered HTTP {}", status.as_u16()),
            }
        }
        Ok(body)
    }
}
