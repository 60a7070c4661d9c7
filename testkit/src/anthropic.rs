//! A local stand-in for the Anthropic Messages API, answering from a script like the real one:
//! the same message shape, the same error bodies, 429/529 with `retry-after`. It checks the
//! headers the real API requires and records every request.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const API_KEY: &str = "sk-ant-test-key";

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with a text block holding `{"todos":[...]}` of these descriptions.
    Todos(Vec<String>),
    /// 200 with this exact text.
    Text(String),
    /// 200 with stop_reason max_tokens and a cut-off JSON text.
    MaxTokens,
    /// An error status with the API's error body; `retry_after` seconds as a header.
    Error {
        status: u16,
        kind: String,
        retry_after: Option<u32>,
    },
    /// Never answers.
    Hang,
}

impl Reply {
    pub fn error(status: u16, kind: &str) -> Self {
        Self::Error {
            status,
            kind: kind.into(),
            retry_after: None,
        }
    }
}

/// How a streamed answer (`"stream": true`, as `workers/worker.py` asks) is paced: the first
/// text after `first_delay`, then `chunks` text deltas `interval` apart, each a line of text.
#[derive(Clone, Copy, Debug)]
pub struct Streaming {
    pub first_delay: Duration,
    pub chunks: usize,
    pub interval: Duration,
}

impl Default for Streaming {
    fn default() -> Self {
        Self {
            first_delay: Duration::ZERO,
            chunks: 3,
            interval: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Shared {
    script: VecDeque<Reply>,
    requests: Vec<Value>,
    delay: Duration,
    streaming: Streaming,
}

pub struct FakeAnthropic {
    url: String,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
}

impl FakeAnthropic {
    /// Answers the scripted replies in order; once they run out, one TODO per requested agent.
    pub async fn start(script: Vec<Reply>) -> Self {
        Self::start_with_delay(script, Duration::ZERO).await
    }

    /// Like `start`, each answer after `delay` (a slow model).
    pub async fn start_with_delay(script: Vec<Reply>, delay: Duration) -> Self {
        Self::serve(Shared {
            script: script.into(),
            delay,
            ..Shared::default()
        })
        .await
    }

    /// A model that streams every answer at the pace of `streaming` (the bench's real workers).
    pub async fn start_streaming(streaming: Streaming) -> Self {
        Self::serve(Shared {
            streaming,
            ..Shared::default()
        })
        .await
    }

    async fn serve(shared: Shared) -> Self {
        let shared = Arc::new(Mutex::new(shared));
        let app = axum::Router::new()
            .route("/v1/messages", post(messages))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        Self { url, shared, stop }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Bodies of the requests received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.lock().expect("lock").requests.clone()
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        Json(json!({ "type": "error", "error": { "type": kind, "message": message } })),
    )
        .into_response()
}

fn message(text: &str, stop_reason: &str) -> Response {
    Json(json!({
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{ "type": "text", "text": text }],
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": { "input_tokens": 10, "output_tokens": 20 }
    }))
    .into_response()
}

/// The Messages API's event stream for a text answer of `chunks` lines, paced by `streaming`.
fn stream(body: &Value, streaming: Streaming) -> Response {
    let model = body["model"].as_str().unwrap_or("claude").to_owned();
    let line = "The quick brown fox jumps over the lazy dog while the swarm works in parallel; \
                every agent streams its answer line by line to the session's viewers.\n";
    let mut events = vec![
        (
            Duration::ZERO,
            "message_start",
            json!({"type": "message_start", "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        ),
        (
            Duration::ZERO,
            "content_block_start",
            json!({"type": "content_block_start",
            "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    for i in 0..streaming.chunks {
        let pause = if i == 0 {
            streaming.first_delay
        } else {
            streaming.interval
        };
        events.push((
            pause,
            "content_block_delta",
            json!({"type": "content_block_delta",
            "index": 0, "delta": {"type": "text_delta", "text": line}}),
        ));
    }
    events.push((
        Duration::ZERO,
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push((
        Duration::ZERO,
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": null},
        "usage": {"output_tokens": 20 * streaming.chunks}}),
    ));
    events.push((
        Duration::ZERO,
        "message_stop",
        json!({"type": "message_stop"}),
    ));
    let body = futures_util::stream::unfold(events.into_iter(), |mut events| async move {
        let (pause, name, data) = events.next()?;
        tokio::time::sleep(pause).await;
        let chunk = format!("event: {name}\ndata: {data}\n\n");
        Some((Ok::<_, std::convert::Infallible>(chunk), events))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from_stream(body))
        .unwrap_or_else(|_| error(500, "api_error", "stream"))
}

async fn messages(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let Some(Json(body)) = body else {
        return error(400, "invalid_request_error", "body must be JSON");
    };
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        return error(401, "authentication_error", "invalid x-api-key");
    }
    if headers.get("anthropic-version").is_none() {
        return error(
            400,
            "invalid_request_error",
            "anthropic-version header is required",
        );
    }
    if body.get("model").and_then(Value::as_str).is_none() || body.get("max_tokens").is_none() {
        return error(
            400,
            "invalid_request_error",
            "model and max_tokens are required",
        );
    }
    let (reply, delay, streaming) = {
        let mut s = shared.lock().expect("lock");
        s.requests.push(body.clone());
        (s.script.pop_front(), s.delay, s.streaming)
    };
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return stream(&body, streaming);
    }
    tokio::time::sleep(delay).await;
    let reply = reply.unwrap_or_else(|| {
        // Default: as many TODOs as the system prompt asks for.
        let system = body.get("system").and_then(Value::as_str).unwrap_or("");
        let n = system
            .split("exactly ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(1);
        Reply::Todos((1..=n).map(|i| format!("task {i}")).collect())
    });
    match reply {
        Reply::Todos(todos) => {
            let todos: Vec<Value> = todos.iter().map(|d| json!({ "description": d })).collect();
            message(&json!({ "todos": todos }).to_string(), "end_turn")
        }
        Reply::Text(text) => message(&text, "end_turn"),
        Reply::MaxTokens => message("{\"todos\":[{\"description\":\"a very long", "max_tokens"),
        Reply::Error {
            status,
            kind,
            retry_after,
        } => {
            let mut response = error(status, &kind, "scripted failure");
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", secs.to_string().parse().expect("header"));
            }
            response
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            error(500, "api_error", "unreachable")
        }
    }
}
