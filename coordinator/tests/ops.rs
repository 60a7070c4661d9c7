//! What operators rely on: metrics, auth, rate limits, CORS, retention, Redis AUTH and TLS, and
//! secrets kept out of logs and Redis.

use std::time::Duration;

use swarmq_shared::store::StoreOptions;
use swarmq_shared::{Keys, SessionId, Store};
use swarmq_testkit::invariants::{check_finished, recorded};
use swarmq_testkit::redis::free_port;
use swarmq_testkit::{
    Api, Cluster, CoordinatorProcess, InProcCoordinator, RedisServer, RunnerProcess, Watcher,
    fixture_worker, wait_for,
};

const LIMIT: Duration = Duration::from_secs(60);

async fn text(url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(t) = bearer {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("GET");
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_daemons_expose_prometheus_metrics_and_health() {
    let mut cluster = Cluster::start(0, &fixture_worker(""), &[]).await;
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    cluster
        .add_runner(&[("SWARMQ_RUNNER_HTTP", &addr), ("SWARMQ_RUNNER_SLOTS", "2")])
        .await;
    let id = cluster.api().create_ok("lines:2; ok", 2).await;
    cluster.wait_finished(&id).await;

    let (status, body) = text(&format!("{}/metrics", cluster.coordinator.url), None).await;
    assert_eq!(status, 200);
    for name in [
        "swarmq_sessions_created_total",
        "swarmq_http_requests_total",
    ] {
        assert!(
            body.contains(name),
            "coordinator /metrics lacks {name}:\n{body}"
        );
    }
    let runner = format!("http://{addr}");
    let (status, body) = text(&format!("{runner}/metrics"), None).await;
    assert_eq!(status, 200);
    for name in [
        "swarmq_runner_slots",
        "swarmq_task_duration_seconds",
        "swarmq_events_published_total",
        "swarmq_worker_exits_total",
        "swarmq_sessions_finished_total",
    ] {
        assert!(body.contains(name), "runner /metrics lacks {name}:\n{body}");
    }
    assert_eq!(text(&format!("{runner}/healthz"), None).await.0, 200);
    assert_eq!(text(&format!("{runner}/readyz"), None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_token_guards_http_and_socket_io() {
    let redis = RedisServer::start();
    let tokens = ["--api-token", "tok-123", "--metrics-token", "m-456"];
    let coordinator = InProcCoordinator::offline(&redis.url(), &tokens).await;
    let base = coordinator.url.clone();
    let client = reqwest::Client::new();
    let post = |token: Option<&'static str>| {
        let mut r = client
            .post(format!("{base}/api/sessions"))
            .json(&serde_json::json!({"prompt": "a", "agentCount": 1}));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let denied = post(None).await.unwrap();
    assert_eq!(denied.status().as_u16(), 401);
    let body: serde_json::Value = denied.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("bearer token"));
    assert_eq!(post(Some("wrong")).await.unwrap().status().as_u16(), 401);
    let ok = post(Some("tok-123")).await.unwrap();
    assert_eq!(ok.status().as_u16(), 201);
    let id = ok.json::<serde_json::Value>().await.unwrap()["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        text(&format!("{base}/api/sessions/{id}"), None).await.0,
        401
    );
    assert_eq!(
        text(&format!("{base}/api/sessions/{id}"), Some("tok-123"))
            .await
            .0,
        200
    );
    assert_eq!(text(&format!("{base}/healthz"), None).await.0, 200);
    assert_eq!(text(&format!("{base}/readyz"), None).await.0, 200);
    assert_eq!(text(&format!("{base}/metrics"), None).await.0, 401);
    assert_eq!(text(&format!("{base}/metrics"), Some("m-456")).await.0, 200);

    socket_io_and_the_cli_need_the_token_too(&base, &id).await;
}

async fn socket_io_and_the_cli_need_the_token_too(base: &str, id: &str) {
    let anonymous = Watcher::node(base, id, &["--since", "0"]);
    let refused = anonymous.wait_line("connect_error", LIMIT).await;
    assert!(
        refused["message"].as_str().unwrap().contains("token"),
        "{refused}"
    );
    let authorised = Watcher::node(base, id, &["--since", "0", "--token", "tok-123"]);
    let ack = authorised.wait_line("ack", LIMIT).await;
    assert_eq!(ack["ack"]["ok"], true);

    // The CLI passes the token on HTTP (and Socket.IO).
    let cli = |token: Option<&str>| {
        let mut cmd = std::process::Command::new(swarmq_testkit::procs::binary("swarmq"));
        cmd.env_remove("SWARMQ_API_TOKEN")
            .args(["--url", base, "get", id]);
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        cmd.output().expect("swarmq")
    };
    let out = cli(None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bearer token"));
    assert!(cli(Some("tok-123")).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_creation_is_rate_limited_per_client_across_coordinators() {
    let redis = RedisServer::start();
    let limit = ["--create-rate-per-min", "3"];
    let a = InProcCoordinator::offline(&redis.url(), &limit).await;
    let b = InProcCoordinator::offline(&redis.url(), &limit).await;
    for api in [a.api(), a.api(), b.api()] {
        assert_eq!(api.create("a", 1).await.0, 201);
    }
    let api = b.api();
    let response = api
        .raw()
        .post(format!("{}/api/sessions", api.base))
        .json(&serde_json::json!({"prompt": "a", "agentCount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: serde_json::Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("the limit is 3 a minute per client address (SWARMQ_CREATE_RATE_PER_MIN"),
        "{error}"
    );
}

/// Unset, the limit is off where a token or loopback already says who may create sessions,
/// and 120 a minute per address where the API is open to other hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_creation_limit_is_off_by_default_with_a_token_or_on_loopback() {
    let redis = RedisServer::start();
    let open = [("HOST", "0.0.0.0"), ("SWARMQ_ALLOW_INSECURE", "true")];
    let cases = [
        (&[][..], 0),
        (&[("SWARMQ_API_TOKEN", "tok-123"), ("HOST", "0.0.0.0")], 0),
        (&open, 120),
    ];
    for (env, expected) in cases {
        let coordinator = CoordinatorProcess::start(&redis.url(), env).await;
        let ready = &coordinator.process.log_messages("coordinator ready")[0];
        assert_eq!(ready["create_rate_per_min"], expected, "{env:?}: {ready}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_the_configured_origins() {
    let redis = RedisServer::start();
    let origins = ["--cors-origins", "https://app.example.com"];
    let coordinator = InProcCoordinator::offline(&redis.url(), &origins).await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/sessions", coordinator.url),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_sessions_expire_after_the_retention_period() {
    let redis = RedisServer::start();
    let coordinator = InProcCoordinator::offline(&redis.url(), &["--retention-secs", "2"]).await;
    let _runner = RunnerProcess::start(
        &redis.url(),
        &fixture_worker(""),
        &[("SWARMQ_RUNNER_SLOTS", "2")],
    )
    .await;
    let api = coordinator.api();
    let id = api.create_ok("ok; ok; ok", 2).await;
    api.wait_finished(&id, LIMIT).await;
    let keys = redis.cli(&["KEYS", &format!("swarmq:{{{id}}}:*")]).unwrap();
    let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
    assert!(keys.len() >= 8, "{keys:?}");
    for key in &keys {
        let ttl: i64 = redis.cli(&["PTTL", key]).unwrap().trim().parse().unwrap();
        assert!(ttl > 0 && ttl <= 2000, "{key} has PTTL {ttl}");
    }
    wait_for(
        Duration::from_secs(10),
        "the session's keys to expire",
        || {
            let left = redis
                .cli(&["KEYS", &format!("swarmq:{{{id}}}:*")])
                .unwrap_or_default();
            async move { left.trim().is_empty().then_some(()) }
        },
    )
    .await;
    assert_eq!(api.get(&format!("/api/sessions/{id}")).await.0, 404);
    let store = Store::new(
        &redis.url(),
        Keys::new("swarmq").unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    assert_eq!(store.trim_sessions_index(0, 100).await.unwrap(), (1, 1));
    let page = store.list_sessions(10, None).await.unwrap();
    assert!(
        page.sessions
            .iter()
            .all(|s| s.id != SessionId::parse(&id).unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_auth_and_tls_urls_work_and_secrets_stay_out_of_logs() {
    let redis = RedisServer::start_secure("hunter2-secret", true);
    let url = redis.url();
    assert!(url.starts_with("rediss://"));
    let coordinator = CoordinatorProcess::start(
        &url,
        &[
            ("SWARMQ_PLANNER", "local"),
            ("ANTHROPIC_API_KEY", "sk-ant-never-log-me"),
            ("RUST_LOG", "debug"),
        ],
    )
    .await;
    let runner = RunnerProcess::start(
        &url,
        &fixture_worker(""),
        &[
            ("E2B_API_KEY", "e2b-never-log-me"),
            ("SWARMQ_RUNNER_SLOTS", "2"),
            ("RUST_LOG", "debug"),
        ],
    )
    .await;
    let api: Api = coordinator.api();
    let id = api.create_ok("lines:2; ok", 2).await;
    let s = api.wait_finished(&id, LIMIT).await;
    assert_eq!(s["status"], "completed", "{s}");
    check_finished(&recorded(&url, &id).await);
    for secret in ["hunter2-secret", "sk-ant-never-log-me", "e2b-never-log-me"] {
        for (who, logs) in [
            ("coordinator", coordinator.process.logs()),
            ("runner", runner.process.logs()),
        ] {
            assert!(
                !logs.iter().any(|l| l.contains(secret)),
                "{who} logged {secret}"
            );
        }
        let aof = std::fs::read_dir(redis.dir().join("appendonlydir"))
            .map(|d| {
                d.flatten()
                    .map(|e| std::fs::read(e.path()).unwrap_or_default())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        assert!(!aof.is_empty());
        for file in aof {
            assert!(
                !String::from_utf8_lossy(&file).contains(secret),
                "{secret} written to Redis"
            );
        }
    }
}
