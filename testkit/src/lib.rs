//! Test harness for swarmq: everything a test needs to stand up real pieces.
//!
//! - [`RedisServer`]: a private `redis-server` on a free port in a temp dir (AOF on, so a
//!   restart keeps the data), killed on drop; `restart()` for fault tests.
//! - [`RedisCluster`]: a private 6-node Redis Cluster (3 primaries, 3 replicas), with faults.
//! - [`FakeAnthropic`]: a local Messages API that answers like the real one, from a script.
//! - [`CoordinatorProcess`] / [`RunnerProcess`]: the built binaries as separate processes.
//! - [`Watcher`]: the official npm `socket.io-client` or `python-socketio` watching a session;
//!   [`StalledClient`]: a raw Socket.IO client that joins and then stops reading.
//! - [`invariants`]: what must hold of a finished session's recorded state and events.
//! - [`sessions`]: sessions written straight through the transitions, for tests of those.

pub mod anthropic;
pub mod browser;
pub mod clients;
pub mod cluster;
pub mod invariants;
pub mod procs;
pub mod redis;
pub mod redis_cluster;
pub mod sentinel;
pub mod sessions;
pub mod stalled;
pub mod start;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub use anthropic::{FakeAnthropic, Reply, Streaming};
pub use browser::Browser;
pub use clients::Watcher;
pub use cluster::{Cluster, FixtureRecord, InProcCoordinator};
pub use procs::{CoordinatorProcess, Process, RunnerProcess};
pub use redis::RedisServer;
pub use redis_cluster::RedisCluster;
pub use sentinel::SentinelTopology;
pub use stalled::StalledClient;
pub use start::Start;

/// The repository root (where `workers/` and `tests/clients` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The fixture worker's command line (see `fixtures/fixture_worker.py`).
pub fn fixture_worker(flags: &str) -> String {
    let path = repo_root().join("testkit/fixtures/fixture_worker.py");
    format!("{} {} {flags}", python(), path.display())
        .trim()
        .to_owned()
}

/// The Python interpreter for workers and the Python client: `SWARMQ_TEST_PYTHON` (the
/// scripts set it to the project's `.venv`), else `.venv/bin/python` if present, else the
/// absolute path of the `python3` on PATH — resolved once, so workers neither pay for a
/// version-manager shim (pyenv's adds ~100 ms and its own environment) nor depend on it.
pub fn python() -> String {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("SWARMQ_TEST_PYTHON") {
                return p.to_string_lossy().into_owned();
            }
            let venv = repo_root().join(".venv/bin/python");
            if venv.exists() {
                return venv.display().to_string();
            }
            std::process::Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "python3".to_owned())
        })
        .clone()
}

/// Polls `check` every 50 ms until it yields `Some`, or panics with `what` after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A small HTTP client for the coordinator API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        }
    }

    /// POST /api/sessions; returns (status, body).
    pub async fn create(&self, prompt: &str, agents: u32) -> (u16, serde_json::Value) {
        self.post_json(
            "/api/sessions",
            serde_json::json!({ "prompt": prompt, "agentCount": agents }),
        )
        .await
    }

    /// Creates a session and returns its id, panicking unless the answer is 201.
    pub async fn create_ok(&self, prompt: &str, agents: u32) -> String {
        let (status, body) = self.create(prompt, agents).await;
        assert_eq!(status, 201, "create session: {body}");
        body["sessionId"].as_str().expect("sessionId").to_owned()
    }

    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn session(&self, id: &str) -> serde_json::Value {
        let (status, body) = self.get(&format!("/api/sessions/{id}")).await;
        assert_eq!(status, 200, "GET session: {body}");
        body
    }

    /// Waits until the session is completed, failed or cancelled; returns it.
    pub async fn wait_finished(&self, id: &str, limit: Duration) -> serde_json::Value {
        let api = self.clone();
        wait_for(limit, &format!("session {id} to finish"), move || {
            let api = api.clone();
            let id = id.to_owned();
            async move {
                let (status, s) = api.get(&format!("/api/sessions/{id}")).await;
                let done = status == 200
                    && matches!(
                        s["status"].as_str(),
                        Some("completed" | "failed" | "cancelled")
                    );
                done.then_some(s)
            }
        })
        .await
    }

    pub fn raw(&self) -> &reqwest::Client {
        &self.http
    }
}
