//! Socket.IO with real clients (the official npm socket.io-client and python-socketio) against
//! a real cluster: private Redis, coordinators, the runner binary and fixture workers.

use std::collections::HashMap;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use swarmq_testkit::invariants::{check_client_saw_all, check_finished, recorded};
use swarmq_testkit::{
    Cluster, CoordinatorProcess, FakeAnthropic, InProcCoordinator, Reply, Watcher, fixture_worker,
};

const LIMIT: Duration = Duration::from_secs(60);

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// The plan's payload shapes (plus the additive `seq`, and `status` on session:complete).
fn assert_plan_shape(event: &str, data: &Value) {
    let expected: &[&str] = match event {
        "task:created" => &["assignedTo", "description", "id", "seq", "status"],
        "task:assigned" => &["agentId", "seq", "todoId"],
        "task:completed" => &["agentId", "result", "seq", "todoId"],
        "agent:thinking" => &["action", "agentId", "seq", "timestamp"],
        "agent:reasoning" => &["agentId", "reasoning", "seq", "timestamp"],
        "agent:terminated" => &["agentId", "seq"],
        "session:complete" => &["seq", "sessionId", "status"],
        "agent:stream_ready" => &["agentId", "sandboxId", "seq", "streamUrl"],
        other => panic!("unexpected event {other}"),
    };
    assert_eq!(keys(data), expected, "{event} payload {data}");
}

/// Each TODO created → assigned → completed; agents terminated before session:complete, last.
fn assert_plan_order(events: &[(String, Value)]) {
    let mut stage: HashMap<String, u8> = HashMap::new();
    for (name, data) in events {
        match name.as_str() {
            "task:created" => assert!(
                stage
                    .insert(data["id"].as_str().unwrap().into(), 1)
                    .is_none()
            ),
            "task:assigned" => {
                let s = stage
                    .get_mut(data["todoId"].as_str().unwrap())
                    .expect("assigned before created");
                assert_eq!(*s, 1);
                *s = 2;
            }
            "task:completed" => {
                let s = stage
                    .get_mut(data["todoId"].as_str().unwrap())
                    .expect("completed before created");
                assert_eq!(*s, 2, "completed before assigned");
                *s = 3;
            }
            _ => {}
        }
    }
    assert!(
        stage.values().all(|s| *s == 3),
        "every TODO completed: {stage:?}"
    );
    assert_eq!(
        events.last().map(|(n, _)| n.as_str()),
        Some("session:complete")
    );
    let terminated = events
        .iter()
        .filter(|(n, _)| n == "agent:terminated")
        .count();
    assert!(terminated >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_client_receives_the_plan_events_in_order_and_they_match_the_api() {
    let cluster = Cluster::start(1, &fixture_worker(""), &[("SWARMQ_RUNNER_SLOTS", "2")]).await;
    let api = cluster.api();
    let id = api.create_ok("sandbox,lines:2; lines:1; ok", 2).await;
    let watcher = Watcher::node(&cluster.coordinator.url, &id, &["--since", "0"]);
    let events = watcher.finish(LIMIT).await;

    for (name, data) in &events {
        assert_plan_shape(name, data);
    }
    assert_plan_order(&events);
    let names: std::collections::HashSet<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    for required in [
        "task:created",
        "task:assigned",
        "task:completed",
        "agent:thinking",
        "agent:reasoning",
        "agent:terminated",
        "session:complete",
        "agent:stream_ready",
    ] {
        assert!(names.contains(required), "no {required}");
    }
    let r = recorded(&cluster.redis.url(), &id).await;
    check_finished(&r);
    check_client_saw_all(&r, &events);
    // The API agrees with what the events said.
    let s = api.session(&id).await;
    assert_eq!(s["status"], "completed");
    for (name, data) in &events {
        if name == "task:completed" {
            let todo = s["todos"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["id"] == data["todoId"])
                .unwrap();
            assert_eq!(todo["status"], "completed");
            assert_eq!(todo["assignedTo"], data["agentId"]);
            assert_eq!(todo["result"], data["result"]);
        }
        if name == "agent:stream_ready" {
            let agent = s["agents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["id"] == data["agentId"])
                .unwrap();
            assert_eq!(agent["sandboxId"], data["sandboxId"]);
            assert_eq!(agent["streamUrl"], data["streamUrl"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_receives_every_event_of_another_session() {
    let cluster = Cluster::start(1, &fixture_worker(""), &[("SWARMQ_RUNNER_SLOTS", "2")]).await;
    let id = cluster.api().create_ok("lines:3; lines:2; ok; ok", 2).await;
    let events = Watcher::python(&cluster.coordinator.url, &id, &["--since", "0"])
        .finish(LIMIT)
        .await;
    for (name, data) in &events {
        assert_plan_shape(name, data);
    }
    assert_plan_order(&events);
    let r = recorded(&cluster.redis.url(), &id).await;
    check_finished(&r);
    check_client_saw_all(&r, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_joining_after_the_end_gets_the_whole_history() {
    let cluster = Cluster::start(1, &fixture_worker(""), &[("SWARMQ_RUNNER_SLOTS", "2")]).await;
    let id = cluster.api().create_ok("lines:3; ok; ok", 2).await;
    cluster.wait_finished(&id).await;
    let r = recorded(&cluster.redis.url(), &id).await;

    let watcher = Watcher::node(&cluster.coordinator.url, &id, &["--since", "0"]);
    let ack = watcher.wait_line("ack", LIMIT).await["ack"].clone();
    assert_eq!(ack["ok"], true);
    assert_eq!(ack["lastSeq"], r.events.len());
    assert_eq!(ack["session"]["status"], "completed");
    check_client_saw_all(&r, &watcher.finish(LIMIT).await);

    // From the middle: exactly the events after `since`.
    let since = r.events.len() / 2;
    let events = Watcher::node(
        &cluster.coordinator.url,
        &id,
        &["--since", &since.to_string()],
    )
    .finish(LIMIT)
    .await;
    let seqs: Vec<u64> = events
        .iter()
        .map(|(_, d)| d["seq"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = ((since as u64 + 1)..=r.events.len() as u64).collect();
    assert_eq!(seqs, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_id_join_keeps_the_original_live_only_behaviour() {
    let mut cluster = Cluster::start(0, &fixture_worker(""), &[]).await;
    let id = cluster.api().create_ok("ok; ok", 1).await;
    let watcher = Watcher::node(&cluster.coordinator.url, &id, &["--plain"]);
    watcher.wait_line("connect", LIMIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.add_runner(&[]).await;
    let events = watcher.finish(LIMIT).await;
    // task:created happened before the join and is not replayed for plain joins.
    assert!(events.iter().all(|(n, _)| n != "task:created"));
    assert_eq!(
        events.iter().filter(|(n, _)| n == "task:completed").count(),
        2
    );
    let r = recorded(&cluster.redis.url(), &id).await;
    let first = events[0].1["seq"].as_u64().unwrap();
    let expected: Vec<u64> = (first..=r.events.len() as u64).collect();
    let got: Vec<u64> = events
        .iter()
        .map(|(_, d)| d["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(got, expected, "live events, each once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinators_each_deliver_every_event_once() {
    let cluster = Cluster::start(0, &fixture_worker(""), &[]).await;
    let second = InProcCoordinator::start(&cluster.redis.url(), &["--planner", "local"]).await;
    let id = cluster
        .api()
        .create_ok("lines:5; lines:5; lines:5", 2)
        .await;
    let on_a = Watcher::node(&cluster.coordinator.url, &id, &["--since", "0"]);
    let on_b = Watcher::node(&second.url, &id, &["--since", "0"]);
    let on_b2 = Watcher::python(&second.url, &id, &["--since", "0"]);
    on_a.wait_line("ack", LIMIT).await;
    on_b.wait_line("ack", LIMIT).await;
    on_b2.wait_line("ack", LIMIT).await;
    let mut cluster = cluster;
    cluster.add_runner(&[]).await;
    let (a, b, b2) = (
        on_a.finish(LIMIT).await,
        on_b.finish(LIMIT).await,
        on_b2.finish(LIMIT).await,
    );
    let r = recorded(&cluster.redis.url(), &id).await;
    check_finished(&r);
    check_client_saw_all(&r, &a);
    check_client_saw_all(&r, &b);
    check_client_saw_all(&r, &b2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_repairs_the_gap_when_redis_restarts_mid_session() {
    let mut cluster = Cluster::start(1, &fixture_worker(""), &[("SWARMQ_RUNNER_SLOTS", "2")]).await;
    let id = cluster
        .api()
        .create_ok(
            "lines:2,sleep:1.5,lines:2; lines:2,sleep:1.5,lines:2; ok",
            2,
        )
        .await;
    let watcher = Watcher::node(
        &cluster.coordinator.url,
        &id,
        &["--since", "0", "--timeout", "90"],
    );
    watcher.wait_line("ack", LIMIT).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.redis.restart();
    let events = watcher.finish(Duration::from_secs(90)).await;
    let r = recorded(&cluster.redis.url(), &id).await;
    check_finished(&r);
    check_client_saw_all(&r, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_do_not_hurt_others() {
    let cluster = Cluster::start(1, &fixture_worker(""), &[]).await;
    let id = cluster.api().create_ok("lines:3; ok", 1).await;
    let hostile = Watcher::node(
        &cluster.coordinator.url,
        &id,
        &["--garbage", "--rooms", "2000", "--since", "0"],
    );
    let good = Watcher::node(&cluster.coordinator.url, &id, &["--since", "0"]);
    let events = good.finish(LIMIT).await;
    let r = recorded(&cluster.redis.url(), &id).await;
    check_client_saw_all(&r, &events);
    // The hostile client may start later than the good one finishes on a loaded machine.
    let garbage_acks = || -> Vec<Value> {
        hostile
            .lines()
            .into_iter()
            .filter(|l| l["type"] == "garbage-ack")
            .collect()
    };
    let garbage = swarmq_testkit::wait_for(LIMIT, "the garbage joins' acks", || {
        let acks = garbage_acks();
        async move { (acks.len() >= 7).then_some(acks) }
    })
    .await;
    assert_eq!(garbage.len(), 7, "each garbage join answered: {garbage:?}");
    assert!(
        garbage
            .iter()
            .all(|g| g["ack"]["ok"] == false && g["ack"]["error"].is_string())
    );
    // The server is still fine.
    assert_eq!(cluster.api().get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_decomposition_is_failed_by_a_live_coordinator() {
    let cluster = Cluster::start(0, &fixture_worker(""), &[]).await;
    let fake = FakeAnthropic::start(vec![Reply::Hang]).await;
    let mut doomed = CoordinatorProcess::start(
        &cluster.redis.url(),
        &[
            ("ANTHROPIC_API_KEY", swarmq_testkit::anthropic::API_KEY),
            ("ANTHROPIC_BASE_URL", fake.url()),
            ("SWARMQ_DECOMPOSE_TIMEOUT_SECS", "2"),
        ],
    )
    .await;
    let api = doomed.api();
    let post = tokio::spawn(async move { api.create("never finishes", 1).await });
    // Wait until the session is recorded as decomposing, then kill its coordinator.
    let list = cluster.api();
    let id = swarmq_testkit::wait_for(LIMIT, "a decomposing session", || {
        let list = list.clone();
        async move {
            let (_, body) = list.get("/api/sessions").await;
            body["sessions"][0]["id"].as_str().map(str::to_owned)
        }
    })
    .await;
    doomed.process.signal(Signal::SIGKILL);
    doomed.process.wait_exit(Duration::from_secs(5)).await;
    post.abort();
    assert_eq!(cluster.api().session(&id).await["status"], "decomposing");
    let s = cluster.wait_finished(&id).await;
    assert_eq!(s["status"], "failed");
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .contains("decomposition did not finish"),
        "{s}"
    );
    let r = recorded(&cluster.redis.url(), &id).await;
    check_finished(&r);
}
