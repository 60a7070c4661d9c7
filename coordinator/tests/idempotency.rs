//! `Idempotency-Key` on `POST /api/sessions` and `POST /api/sessions/{id}/cancel`, against two
//! coordinator processes on one Redis and a slow fake Claude: a retry gets the first answer
//! (same id, same status) from either coordinator, also while the first request is still
//! decomposing, and the model is asked once; another body under the same key is a 422; a
//! coordinator killed mid-request leaves exactly one session for the key.

use std::time::Duration;

use serde_json::{Value, json};
use swarmq_testkit::{
    Api, CoordinatorProcess, FakeAnthropic, RedisServer, anthropic::API_KEY, wait_for,
};

async fn coordinator(redis: &RedisServer, fake: &FakeAnthropic) -> CoordinatorProcess {
    CoordinatorProcess::start(
        &redis.url(),
        &[
            ("ANTHROPIC_API_KEY", API_KEY),
            ("ANTHROPIC_BASE_URL", fake.url()),
            ("SWARMQ_DECOMPOSE_TIMEOUT_SECS", "2"),
        ],
    )
    .await
}

/// POST `body` to `path` with `key`: status, body, and whether it was marked a replay.
async fn post(api: &Api, path: &str, key: &str, body: Value) -> (u16, Value, bool) {
    let response = api
        .raw()
        .post(format!("{}{path}", api.base))
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let replayed = response.headers().contains_key("idempotent-replayed");
    (status, response.json().await.expect("json body"), replayed)
}

async fn session_count(api: &Api) -> usize {
    let (_, page) = api.get("/api/sessions?limit=100").await;
    page["sessions"].as_array().expect("sessions").len()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_retries_on_two_coordinators_get_one_session_and_one_decomposition() {
    let redis = RedisServer::start();
    let fake = FakeAnthropic::start_with_delay(vec![], Duration::from_millis(800)).await;
    let (a, b) = (
        coordinator(&redis, &fake).await,
        coordinator(&redis, &fake).await,
    );
    let body = json!({ "prompt": "write the report", "agentCount": 2 });
    let mut retries = Vec::new();
    for i in 0..8 {
        let api = if i % 2 == 0 { a.api() } else { b.api() };
        let body = body.clone();
        retries.push(tokio::spawn(async move {
            post(&api, "/api/sessions", "report-1", body).await
        }));
    }
    let mut answers = Vec::new();
    for retry in retries {
        answers.push(retry.await.unwrap());
    }
    let id = &answers[0].1["sessionId"];
    assert!(id.is_string(), "{answers:?}");
    for (status, body, _) in &answers {
        assert_eq!((*status, &body["sessionId"]), (201, id), "{answers:?}");
    }
    assert_eq!(
        answers.iter().filter(|(_, _, replayed)| !replayed).count(),
        1
    );
    assert_eq!(
        fake.requests().len(),
        1,
        "the model was asked more than once"
    );
    assert_eq!(session_count(&a.api()).await, 1);
    // Later, from the other coordinator: the stored answer.
    let (status, later, replayed) = post(&b.api(), "/api/sessions", "report-1", body).await;
    assert_eq!((status, &later["sessionId"], replayed), (201, id, true));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_reused_for_another_body_is_a_422_and_a_bad_key_a_400() {
    let redis = RedisServer::start();
    let fake = FakeAnthropic::start(vec![]).await;
    let c = coordinator(&redis, &fake).await;
    let api = c.api();
    let first = json!({ "prompt": "one", "agentCount": 1 });
    assert_eq!(post(&api, "/api/sessions", "k", first).await.0, 201);
    let (status, body, _) = post(
        &api,
        "/api/sessions",
        "k",
        json!({ "prompt": "two", "agentCount": 1 }),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("another request"),
        "{body}"
    );
    for bad in ["", "has space", "{tag}", &"x".repeat(256)] {
        let (status, body, _) = post(
            &api,
            "/api/sessions",
            bad,
            json!({ "prompt": "p", "agentCount": 1 }),
        )
        .await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert!(body["error"].as_str().unwrap().contains("Idempotency-Key"));
    }
    assert_eq!(session_count(&api).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_cancel_answers_as_the_first_one() {
    let redis = RedisServer::start();
    let fake = FakeAnthropic::start(vec![]).await;
    let (a, b) = (
        coordinator(&redis, &fake).await,
        coordinator(&redis, &fake).await,
    );
    let id = a.api().create_ok("cancel me", 1).await;
    let path = format!("/api/sessions/{id}/cancel");
    let (status, first, replayed) = post(&a.api(), &path, "stop-1", json!({})).await;
    assert_eq!(
        (status, &first["status"], replayed),
        (200, &json!("cancelled"), false)
    );
    let (status, again, replayed) = post(&b.api(), &path, "stop-1", json!({})).await;
    assert_eq!((status, &again, replayed), (200, &first, true));
    // Without the key, or with a new one, a second cancel is the usual 409.
    assert_eq!(b.api().post_json(&path, json!({})).await.0, 409);
    assert_eq!(post(&b.api(), &path, "stop-2", json!({})).await.0, 409);
    // The key belongs to that cancel: creating with it is a 422.
    let create = json!({ "prompt": "p", "agentCount": 1 });
    assert_eq!(
        post(&a.api(), "/api/sessions", "stop-1", create).await.0,
        422
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_killed_mid_decomposition_leaves_one_session_for_the_key() {
    let redis = RedisServer::start();
    // The model answers after 30 s: past the 2 s decomposition timeout, so the killed
    // coordinator's session can only end by the watchdog failing it.
    let fake = FakeAnthropic::start_with_delay(vec![], Duration::from_secs(30)).await;
    let (mut a, b) = (
        coordinator(&redis, &fake).await,
        coordinator(&redis, &fake).await,
    );
    let body = json!({ "prompt": "interrupted", "agentCount": 1 });
    let first = tokio::spawn({
        let (api, body) = (a.api(), body.clone());
        async move { post(&api, "/api/sessions", "crash-1", body).await }
    });
    wait_for(
        Duration::from_secs(20),
        "the first request to reach the model",
        || async { (!fake.requests().is_empty()).then_some(()) },
    )
    .await;
    a.process.kill();
    let _ = first.await; // its connection died with the coordinator
    let (status, retry, _) = post(&b.api(), "/api/sessions", "crash-1", body.clone()).await;
    assert_eq!(status, 502, "{retry}");
    let id = retry["sessionId"].as_str().expect("session id").to_owned();
    let (again, body_again, _) = post(&b.api(), "/api/sessions", "crash-1", body).await;
    assert_eq!((again, &body_again["sessionId"]), (502, &json!(id)));
    assert_eq!(session_count(&b.api()).await, 1);
    assert_eq!(fake.requests().len(), 1);
}
