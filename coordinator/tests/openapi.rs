//! The API against its own description: schemathesis (tests/requirements.txt) reads
//! `GET /api/openapi.json` from a real coordinator process on a private Redis and fuzzes every
//! operation with a fixed seed and a bounded number of examples, checking that no answer is a
//! 5xx, breaks the documented schema, status codes, content types or headers. The inputs that
//! once failed are replayed below as plain requests, so a fix cannot quietly regress.

use std::process::Command;

use serde_json::json;
use swarmq_testkit::{CoordinatorProcess, RedisServer};

/// Fixed so that a failure reproduces; the examples per operation keep the run to seconds.
const SEED: &str = "16";
const MAX_EXAMPLES: &str = "20";

async fn coordinator() -> (RedisServer, CoordinatorProcess) {
    let redis = RedisServer::start();
    let coordinator = CoordinatorProcess::start(
        &redis.url(),
        &[
            ("SWARMQ_PLANNER", "local"),
            ("SWARMQ_CREATE_RATE_PER_MIN", "0"),
        ],
    )
    .await;
    (redis, coordinator)
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_wrong() {
    let (_redis, coordinator) = coordinator().await;
    let url = coordinator.url.clone();
    // schemathesis keeps a cache in its working directory: not in the repository.
    let scratch = tempfile::tempdir().unwrap();
    let cwd = scratch.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(swarmq_testkit::python())
            .current_dir(cwd)
            .args(["-m", "schemathesis.cli", "--config-file"])
            .arg(swarmq_testkit::repo_root().join("tests/schemathesis.toml"))
            .arg("run")
            .arg(format!("{url}/api/openapi.json"))
            .args([
                "--seed",
                SEED,
                "--max-examples",
                MAX_EXAMPLES,
                "--workers",
                "1",
            ])
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args(["--checks", "all", "--generation-database", "none"])
            .args(["--no-color"])
            .output()
            .expect("run schemathesis (pip install -r tests/requirements.txt)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_description_is_openapi_3_1_and_served_without_a_token() {
    let (_redis, coordinator) = coordinator().await;
    let (status, doc) = coordinator.api().get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for path in [
        "/api/sessions",
        "/api/sessions/{id}",
        "/api/sessions/{id}/cancel",
        "/api/stats",
    ] {
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }
}

/// What schemathesis once found, replayed: each was a schema-valid request the coordinator
/// refused, or an answer the schema did not allow.
#[tokio::test(flavor = "multi_thread")]
async fn examples_that_once_failed() {
    let (_redis, coordinator) = coordinator().await;
    let api = coordinator.api();
    // A status string ("running") the schema spelled "Running".
    let id = api.create_ok("00", 1).await;
    let (_, doc) = api.get("/api/openapi.json").await;
    let statuses = &doc["components"]["schemas"]["SessionStatus"]["enum"];
    assert_eq!(
        statuses,
        &json!(["decomposing", "running", "completed", "failed", "cancelled"])
    );
    let (_, page) = api.get("/api/sessions?limit=1").await;
    assert!(
        statuses
            .as_array()
            .unwrap()
            .contains(&page["sessions"][0]["status"])
    );
    // An agentCount above this coordinator's SWARMQ_MAX_AGENTS, which the schema allowed.
    let request = &doc["components"]["schemas"]["CreateSessionRequest"]["properties"];
    assert_eq!(request["agentCount"]["maximum"], 4);
    assert_eq!(request["prompt"]["maxLength"], 10_000);
    // 3.0 is an integer to JSON Schema.
    let (status, body) = api
        .post_json(
            "/api/sessions",
            json!({ "prompt": "\u{12d}#`", "agentCount": 3.0 }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // The 201 links to reading the session.
    let link = &doc["paths"]["/api/sessions"]["post"]["responses"]["201"]["links"]["readSession"];
    assert_eq!(link["operationId"], "readSession");
    assert_eq!(api.get(&format!("/api/sessions/{id}")).await.0, 200);
    // `before=0` made Redis refuse the exclusive bound `(0-0`: a 500.
    let (status, page) = api
        .get(&format!("/api/sessions/{id}/events?before=0&limit=1"))
        .await;
    assert_eq!((status, &page["events"]), (200, &json!([])), "{page}");
}
