//! The coordinator's HTTP API against a private Redis: the plan's contract, every bad input,
//! decomposition outcomes with a fake Anthropic API, and Redis going away.

use std::time::Duration;

use serde_json::{Value, json};
use swarmq_testkit::{
    Api, FakeAnthropic, InProcCoordinator, RedisServer, Reply, anthropic::API_KEY,
};

async fn local_coordinator(redis: &RedisServer) -> InProcCoordinator {
    InProcCoordinator::offline(&redis.url(), &[]).await
}

async fn claude_coordinator(redis: &RedisServer, fake: &FakeAnthropic) -> InProcCoordinator {
    InProcCoordinator::start(
        &redis.url(),
        &[
            "--anthropic-api-key",
            API_KEY,
            "--anthropic-base-url",
            fake.url(),
            "--decompose-timeout-secs",
            "20",
        ],
    )
    .await
}

async fn send(
    api: &Api,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut request = api
        .raw()
        .post(format!("{}/api/sessions", api.base))
        .body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON answer {status}: {text}"));
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_session_matches_the_plan_contract() {
    let redis = RedisServer::start();
    let coordinator = local_coordinator(&redis).await;
    let api = coordinator.api();

    let (status, body) = api.create("Research AI agents", 2).await;
    assert_eq!(status, 201);
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only sessionId: {body}"
    );
    let id = body["sessionId"].as_str().unwrap();

    let s = api.session(id).await;
    assert_eq!(s["id"], id);
    assert_eq!(s["prompt"], "Research AI agents");
    assert_eq!(s["agentCount"], 2);
    assert_eq!(s["status"], "running");
    assert!(s["createdAt"].as_u64().unwrap() > 1_600_000_000_000);
    let todos = s["todos"].as_array().unwrap();
    assert_eq!(todos.len(), 2);
    for t in todos {
        assert_eq!(t["status"], "pending");
        assert!(t["assignedTo"].is_null());
        assert!(
            t["description"]
                .as_str()
                .unwrap()
                .contains("Research AI agents")
        );
    }
    let agents = s["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2);
    for a in agents {
        assert_eq!(a["status"], "booting");
        assert_eq!(a["sessionId"], id);
        assert!(a["currentTaskId"].is_null());
    }
    // Agent jobs are queued, and task:created was recorded once per TODO.
    assert_eq!(redis.cli(&["LLEN", "{swarmq}:ready"]).unwrap().trim(), "2");
    assert_eq!(s["lastSeq"], 2);
}

const JSON: Option<&str> = Some("application/json");
const VALID: &str = r#"{"prompt":"a","agentCount":1}"#;

/// Bad requests: content type, body, the status and what the error must say.
#[rustfmt::skip]
const BAD_INPUTS: &[(Option<&str>, &str, u16, &str)] = &[
    (JSON, "{not json", 400, "not valid JSON"),
    (JSON, "", 400, "empty"),
    (JSON, "[1,2]", 400, "JSON object"),
    (Some("text/plain"), VALID, 415, "Content-Type"),
    (None, VALID, 415, "Content-Type"),
    (JSON, r#"{"agentCount":1}"#, 400, "prompt is required"),
    (JSON, r#"{"prompt":"","agentCount":1}"#, 400, "prompt must not be empty"),
    (JSON, r#"{"prompt":"   \n\t","agentCount":1}"#, 400, "prompt must not be empty"),
    (JSON, r#"{"prompt":7,"agentCount":1}"#, 400, "prompt must be a string"),
    (JSON, r#"{"prompt":"a"}"#, 400, "agentCount is required"),
    (JSON, r#"{"prompt":"a","agentCount":"2"}"#, 400, "agentCount must be an integer"),
    (JSON, r#"{"prompt":"a","agentCount":2.5}"#, 400, "agentCount must be an integer"),
    (JSON, r#"{"prompt":"a","agentCount":0}"#, 400, "agentCount must be between 1 and 4"),
    (JSON, r#"{"prompt":"a","agentCount":5}"#, 400, "agentCount must be between 1 and 4"),
    (JSON, r#"{"prompt":"a","agentCount":-1}"#, 400, "agentCount must be between 1 and 4"),
    (JSON, r#"{"prompt":"a","agentCount":1,"extra":true}"#, 400, "unknown field"),
];

/// Bad requests too large to write out: a body over the limit, a prompt over its limit.
fn oversized_inputs() -> [(Option<&'static str>, String, u16, &'static str); 2] {
    let prompt =
        |chars: usize, c: &str| format!(r#"{{"prompt":"{}","agentCount":1}}"#, c.repeat(chars));
    [
        (JSON, prompt(300_000, "x"), 413, "larger than"),
        (JSON, prompt(10_001, "y"), 400, "prompt is too long"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_a_clear_json_error() {
    let redis = RedisServer::start();
    let coordinator = local_coordinator(&redis).await;
    let api = coordinator.api();
    let written = BAD_INPUTS
        .iter()
        .map(|&(ct, body, status, needle)| (ct, body.to_owned(), status, needle));
    for (ct, body, status, needle) in written.chain(oversized_inputs()) {
        let shown: String = body.chars().take(60).collect();
        let (got, answer) = send(&api, ct, body).await;
        assert_eq!(got, status, "{shown}: {answer}");
        let error = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {answer}"));
        assert!(
            error.contains(needle),
            "{shown}: {error:?} lacks {needle:?}"
        );
    }
    // Nothing was created by any of them.
    let (_, list) = api.get("/api/sessions").await;
    assert_eq!(list["sessions"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_agents_setting_bounds_agent_count() {
    let redis = RedisServer::start();
    let coordinator = InProcCoordinator::offline(&redis.url(), &["--max-agents", "2"]).await;
    let (status, body) = coordinator.api().create("a", 3).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("between 1 and 2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_malformed_session_ids_are_404() {
    let redis = RedisServer::start();
    let coordinator = local_coordinator(&redis).await;
    let api = coordinator.api();
    for path in [
        "/api/sessions/6f1c1f2e-3b1a-4c53-9b0f-2f1f3f4e5d6c",
        "/api/sessions/not-a-uuid",
        "/api/sessions/%7Bswarmq%7D",
        "/api/sessions/6f1c1f2e-3b1a-4c53-9b0f-2f1f3f4e5d6c/extra",
        "/api/nothing-here",
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (status, body) = api.post_json("/api/sessions/nope/cancel", json!({})).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_list_newest_first_with_a_cursor() {
    let redis = RedisServer::start();
    let coordinator = local_coordinator(&redis).await;
    let api = coordinator.api();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(api.create_ok(&format!("prompt {i}"), 1).await);
    }
    let (status, page1) = api.get("/api/sessions?limit=2").await;
    assert_eq!(status, 200);
    let cursor = page1["nextCursor"].as_str().expect("cursor").to_owned();
    let (_, page2) = api
        .get(&format!("/api/sessions?limit=2&cursor={cursor}"))
        .await;
    let cursor2 = page2["nextCursor"].as_str().expect("cursor").to_owned();
    let (_, page3) = api
        .get(&format!("/api/sessions?limit=2&cursor={cursor2}"))
        .await;
    assert!(page3["nextCursor"].is_null());
    let listed: Vec<String> = [&page1, &page2, &page3]
        .iter()
        .flat_map(|p| p["sessions"].as_array().unwrap().clone())
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    // Same-millisecond sessions may swap places; the set and the count must match exactly.
    let mut a = listed.clone();
    a.sort();
    let mut b = newest_first.clone();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(
        listed.first(),
        newest_first
            .first()
            .filter(|_| listed.len() == 5)
            .or(listed.first())
    );
    for bad in ["limit=0", "limit=101", "limit=abc"] {
        let (status, body) = api.get(&format!("/api/sessions?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

fn seqs(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_events_page_back_through_history_newest_first() {
    let redis = RedisServer::start();
    let coordinator = local_coordinator(&redis).await;
    let api = coordinator.api();
    // No runner: five task:created events, seqs 1..=5.
    let id = api.create_ok("a; b; c; d; e", 1).await;
    let events = |q: &str| {
        let (api, path) = (api.clone(), format!("/api/sessions/{id}/events{q}"));
        async move { api.get(&path).await }
    };
    let (status, page) = events("?limit=2").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(seqs(&page), [5, 4]);
    assert_eq!(page["events"][0]["event"], "task:created");
    assert_eq!(page["events"][0]["data"]["seq"], 5);
    assert_eq!(page["truncated"], false);
    let (_, page) = events("?before=4&limit=10").await;
    assert_eq!(
        (seqs(&page), &page["truncated"]),
        (vec![3, 2, 1], &json!(false))
    );
    let (_, page) = events("?before=1").await;
    assert_eq!((seqs(&page), &page["truncated"]), (vec![], &json!(false)));
    for bad in ["?before=x", "?limit=0", "?limit=1001"] {
        let (status, body) = events(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _) = api
        .get("/api/sessions/00000000-0000-4000-8000-000000000000/events")
        .await;
    assert_eq!(status, 404);
    // Trimmed below seq 4: the page says so rather than pretending the session began there.
    let stream = format!("swarmq:{{{id}}}:events");
    redis
        .cli(&["XTRIM", &stream, "MINID", "4-0"])
        .expect("XTRIM");
    let (_, page) = events("?before=5").await;
    assert_eq!((seqs(&page), &page["truncated"]), (vec![4], &json!(true)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_series_answers_one_point_per_second() {
    let redis = RedisServer::start();
    let coordinator = local_coordinator(&redis).await;
    let api = coordinator.api();
    let (status, body) = api.get("/api/stats/series?secs=5").await;
    assert_eq!(status, 200, "{body}");
    let points = body["points"].as_array().expect("points");
    assert_eq!(points.len(), 5);
    let t: Vec<u64> = points.iter().map(|p| p["t"].as_u64().expect("t")).collect();
    assert!(t.windows(2).all(|w| w[1] == w[0] + 1), "{t:?}");
    assert!(points.iter().all(|p| p["completed"] == 0), "{body}");
    let (_, body) = api.get("/api/stats/series").await;
    assert_eq!(body["points"].as_array().map(Vec::len), Some(300));
    for bad in ["secs=0", "secs=601", "secs=x"] {
        let (status, body) = api.get(&format!("/api/stats/series?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_drops_pending_work_and_tells_the_runners() {
    let redis = RedisServer::start();
    let coordinator = local_coordinator(&redis).await;
    let api = coordinator.api();
    let id = api.create_ok("a; b; c", 2).await;

    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("{swarmq}:control").await.unwrap();

    let (status, body) = api
        .post_json(&format!("/api/sessions/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    let message = tokio::time::timeout(Duration::from_secs(5), futures_util_next(&mut pubsub))
        .await
        .expect("cancel published");
    assert_eq!(message, format!("cancel {id}"));

    let s = api.session(&id).await;
    assert_eq!(s["status"], "cancelled");
    assert!(
        s["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == "terminated")
    );
    assert_eq!(
        redis
            .cli(&["LLEN", &format!("swarmq:{{{id}}}:pending")])
            .unwrap()
            .trim(),
        "0"
    );

    let (status, body) = api
        .post_json(&format!("/api/sessions/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("already cancelled")
    );
}

async fn futures_util_next(pubsub: &mut redis::aio::PubSub) -> String {
    use futures_util::StreamExt;
    let msg = pubsub.on_message().next().await.expect("message");
    msg.get_payload().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_decomposition_sends_the_documented_request() {
    let redis = RedisServer::start();
    let fake = FakeAnthropic::start(vec![Reply::Todos(vec![
        "find papers".into(),
        "summarise them".into(),
    ])])
    .await;
    let coordinator = claude_coordinator(&redis, &fake).await;
    let api = coordinator.api();
    let id = api.create_ok("Research AI agents", 2).await;
    let s = api.session(&id).await;
    let descriptions: Vec<&str> = s["todos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["description"].as_str().unwrap())
        .collect();
    assert_eq!(descriptions, ["find papers", "summarise them"]);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["model"], "claude-sonnet-4-5-20250929");
    assert!(
        requests[0]["system"]
            .as_str()
            .unwrap()
            .contains("exactly 2 independent tasks")
    );
    assert_eq!(requests[0]["messages"][0]["content"], "Research AI agents");
}

async fn assert_decomposition_fails(script: Vec<Reply>, calls: usize, needle: &str) {
    let redis = RedisServer::start();
    let fake = FakeAnthropic::start(script).await;
    let coordinator = claude_coordinator(&redis, &fake).await;
    let api = coordinator.api();
    let (status, body) = api.create("Research AI agents", 2).await;
    assert_eq!(status, 502, "{body}");
    let error = body["error"].as_str().expect("error");
    assert!(error.contains(needle), "{error:?} lacks {needle:?}");
    let id = body["sessionId"].as_str().expect("sessionId in a 502");
    let s = api.session(id).await;
    assert_eq!(s["status"], "failed");
    assert_eq!(s["error"], error);
    assert_eq!(s["todos"], json!([]));
    assert_eq!(fake.requests().len(), calls, "calls made");
    assert_eq!(redis.cli(&["LLEN", "{swarmq}:ready"]).unwrap().trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_401_fails_the_session_without_retrying() {
    assert_decomposition_fails(vec![Reply::error(401, "authentication_error")], 1, "401").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_400_and_403_are_not_retried() {
    assert_decomposition_fails(vec![Reply::error(400, "invalid_request_error")], 1, "400").await;
    assert_decomposition_fails(vec![Reply::error(403, "permission_error")], 1, "403").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_529_is_retried_twice_then_fails() {
    let overloaded = Reply::Error {
        status: 529,
        kind: "overloaded_error".into(),
        retry_after: Some(0),
    };
    assert_decomposition_fails(
        vec![overloaded.clone(), overloaded.clone(), overloaded],
        3,
        "529",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_invalid_replies_fail_clearly() {
    assert_decomposition_fails(
        vec![Reply::Text("Sure! Here are some tasks.".into())],
        1,
        "not the expected JSON",
    )
    .await;
    assert_decomposition_fails(
        vec![Reply::Text("{\"todos\": [}".into())],
        1,
        "not the expected JSON",
    )
    .await;
    assert_decomposition_fails(vec![Reply::MaxTokens], 1, "max_tokens").await;
    assert_decomposition_fails(vec![Reply::Todos(vec![])], 1, "no TODOs").await;
    assert_decomposition_fails(
        vec![Reply::Todos(vec!["  ".into()])],
        1,
        "empty description",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_429_with_retry_after_is_retried_and_succeeds() {
    let redis = RedisServer::start();
    let fake = FakeAnthropic::start(vec![
        Reply::Error {
            status: 429,
            kind: "rate_limit_error".into(),
            retry_after: Some(1),
        },
        Reply::Todos(vec!["one".into()]),
    ])
    .await;
    let coordinator = claude_coordinator(&redis, &fake).await;
    let started = std::time::Instant::now();
    let id = coordinator.api().create_ok("x", 1).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "retry-after honoured"
    );
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(
        coordinator.api().session(&id).await["todos"][0]["description"],
        "one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decomposition_timeout_fails_the_session() {
    let redis = RedisServer::start();
    let fake = FakeAnthropic::start(vec![Reply::Hang]).await;
    let coordinator = InProcCoordinator::start(
        &redis.url(),
        &[
            "--anthropic-api-key",
            API_KEY,
            "--anthropic-base-url",
            fake.url(),
            "--decompose-timeout-secs",
            "1",
        ],
    )
    .await;
    let (status, body) = coordinator.api().create("x", 1).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("did not finish within")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_answers_503_and_the_coordinator_recovers() {
    let mut redis = RedisServer::start();
    let coordinator = local_coordinator(&redis).await;
    let api = coordinator.api();
    let id = api.create_ok("before", 1).await;
    assert_eq!(api.get("/readyz").await.0, 200);

    redis.kill();
    let (status, body) = api.create("during", 1).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("Redis"));
    assert_eq!(api.get(&format!("/api/sessions/{id}")).await.0, 503);
    assert_eq!(api.get("/readyz").await.0, 503);
    assert_eq!(api.get("/healthz").await.0, 200);

    redis.start_again();
    let s = swarmq_testkit::wait_for(Duration::from_secs(15), "coordinator to reconnect", || {
        let api = api.clone();
        let id = id.clone();
        async move {
            let (status, body) = api.get(&format!("/api/sessions/{id}")).await;
            (status == 200).then_some(body)
        }
    })
    .await;
    assert_eq!(s["prompt"], "before", "AOF kept the session");
    assert_eq!(api.create("after", 1).await.0, 201);
    assert_eq!(api.get("/readyz").await.0, 200);
}
