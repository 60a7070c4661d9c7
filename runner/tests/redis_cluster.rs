//! Redis Cluster: both daemons on a real 6-node cluster (3 primaries, 3 replicas) given by its
//! seed nodes (`REDIS_CLUSTER_NODES`, AUTH from the URLs): sessions spread over the primaries
//! run to the end with nothing lost or recorded twice, and a client watching over Socket.IO
//! sees every event.

use std::time::Duration;

use swarmq_shared::Store;
use swarmq_shared::store::StoreOptions;
use swarmq_testkit::invariants::{check_client_saw_all, check_finished, recorded_in};
use swarmq_testkit::{CoordinatorProcess, RedisCluster, RunnerProcess, Watcher, fixture_worker};

/// A REDIS_URL that is never used with a cluster (nothing listens on port 1).
const UNUSED_URL: &str = "redis://127.0.0.1:1";

struct Deployment {
    cluster: RedisCluster,
    coordinator: CoordinatorProcess,
    _runners: Vec<RunnerProcess>,
    _fixtures: tempfile::TempDir,
}

async fn deploy(cluster: RedisCluster, extra: &[(&str, &str)]) -> Deployment {
    let fixtures = tempfile::tempdir().unwrap();
    let mut env = cluster.env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let common: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let coordinator = CoordinatorProcess::start(UNUSED_URL, &common).await;
    let fixture_dir = fixtures.path().display().to_string();
    let mut runner_env = common.clone();
    runner_env.extend([
        ("FIXTURE_DIR", fixture_dir.as_str()),
        ("SWARMQ_WORKER_PASS_ENV", "FIXTURE_DIR"),
        ("SWARMQ_RUNNER_SLOTS", "2"),
    ]);
    if !extra.iter().any(|(k, _)| *k == "SWARMQ_LEASE_SECS") {
        runner_env.push(("SWARMQ_LEASE_SECS", "10"));
    }
    let worker = fixture_worker("");
    let mut runners = Vec::new();
    for _ in 0..2 {
        runners.push(RunnerProcess::start(UNUSED_URL, &worker, &runner_env).await);
    }
    Deployment {
        cluster,
        coordinator,
        _runners: runners,
        _fixtures: fixtures,
    }
}

fn store(cluster: &RedisCluster) -> Store {
    Store::open_target(&cluster.target(), "swarmq", StoreOptions::default()).expect("store")
}

async fn finishes_intact(d: &Deployment, ids: &[String]) {
    let store = store(&d.cluster);
    for id in ids {
        let s = finished_or_dump(d, id).await;
        assert_eq!(s["status"], "completed", "{s}");
        check_finished(&recorded_in(&store, id).await);
    }
}

/// The finished session; or, after 90 s, the session and every daemon's log, then a panic
/// (a stuck session under faults is diagnosed from them).
async fn finished_or_dump(d: &Deployment, id: &str) -> serde_json::Value {
    let api = d.coordinator.api();
    let mut last = serde_json::Value::Null;
    for _ in 0..900 {
        let (status, s) = api.get(&format!("/api/sessions/{id}")).await;
        let done =
            ["completed", "failed", "cancelled"].contains(&s["status"].as_str().unwrap_or(""));
        if status == 200 && done {
            return s;
        }
        last = s;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for r in &d._runners {
        r.process
            .logs()
            .iter()
            .for_each(|l| eprintln!("runner: {l}"));
    }
    d.coordinator
        .process
        .logs()
        .iter()
        .for_each(|l| eprintln!("coordinator: {l}"));
    panic!("session {id} did not finish in 90 s: {last:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_run_to_the_end_on_a_six_node_cluster_with_auth() {
    let d = deploy(
        RedisCluster::start_with_password(Some("cluster-pw")).await,
        &[],
    )
    .await;
    let api = d.coordinator.api();
    let first = api.create_ok("lines:3; ok; lines:2; ok", 2).await;
    let watcher = Watcher::node(&d.coordinator.url, &first, &["--since", "0"]);
    let mut ids = vec![first.clone()];
    for _ in 0..4 {
        ids.push(api.create_ok("lines:2; ok", 2).await);
    }
    finishes_intact(&d, &ids).await;
    let seen = watcher.finish(Duration::from_secs(60)).await;
    check_client_saw_all(&recorded_in(&store(&d.cluster), &first).await, &seen);
    let (status, body) = api.get("/api/sessions").await;
    assert_eq!(status, 200, "{body}");
    for line in d.coordinator.process.logs() {
        assert!(!line.contains("cluster-pw"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_load_fails_over_and_clients_miss_nothing() {
    let d = deploy(
        RedisCluster::start().await,
        &[("SWARMQ_REDIS_MIN_REPLICAS_ACKED", "1")],
    )
    .await;
    let api = d.coordinator.api();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            api.create_ok("sleep:1; lines:3; ok; lines:2; sleep:1; ok", 2)
                .await,
        );
    }
    let watched = Watcher::node(&d.coordinator.url, &ids[0], &["--since", "0"]);
    let key = swarmq_shared::Keys::new("swarmq")
        .expect("keys")
        .session(swarmq_shared::SessionId::parse(&ids[0]).expect("id"))
        .session_hash();
    let mut cluster = d.cluster;
    // The watched session's primary: its events' node fails over under the client.
    let killed = cluster.kill_primary_of(&key).await;
    eprintln!("killed the watched session's primary :{killed}; its replica took over");
    // With WAIT 1 the promoted replica, alone in its shard, answers 503 until a replica is
    // back: the operator restarts the dead node, which rejoins as its replica.
    cluster.restart(killed).await;
    let d = Deployment { cluster, ..d };
    ids.push(create_retrying(&api, "lines:2; ok", 2).await);
    finishes_intact(&d, &ids).await;
    let seen = watched.finish(Duration::from_secs(60)).await;
    check_client_saw_all(&recorded_in(&store(&d.cluster), &ids[0]).await, &seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_moved_under_load_lose_nothing_and_clients_miss_nothing() {
    let d = deploy(RedisCluster::start().await, &[]).await;
    let api = d.coordinator.api();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            api.create_ok("sleep:1; lines:3; ok; lines:2; sleep:1; ok", 2)
                .await,
        );
    }
    let watched = Watcher::node(&d.coordinator.url, &ids[0], &["--since", "0"]);
    let keys = swarmq_shared::Keys::new("swarmq").expect("keys");
    let live = keys.session(swarmq_shared::SessionId::parse(&ids[0]).expect("id"));
    for key in ["{swarmq}:ready".to_owned(), live.session_hash()] {
        let slot = d.cluster.slot_of(&key);
        let from = d.cluster.owner_of_slot(slot).port;
        let to = d.cluster.primaries().into_iter().find(|n| n.port != from);
        let to = to.expect("another primary").port;
        d.cluster.move_slot(slot, to);
        eprintln!("moved slot {slot} ({key}) from :{from} to :{to}");
    }
    ids.push(create_retrying(&api, "lines:2; ok", 2).await);
    finishes_intact(&d, &ids).await;
    let seen = watched.finish(Duration::from_secs(60)).await;
    check_client_saw_all(&recorded_in(&store(&d.cluster), &ids[0]).await, &seen);
}

/// Creates a session, retrying while the API answers 503 (as a client should during a failover).
async fn create_retrying(api: &swarmq_testkit::Api, prompt: &str, agents: u32) -> String {
    for _ in 0..60 {
        let (status, body) = api.create(prompt, agents).await;
        assert!(
            matches!(status, 201 | 503),
            "create answered {status}: {body}"
        );
        if let Some(id) = body["sessionId"].as_str() {
            return id.to_owned();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("no 201 within 60 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_runners_jobs_on_a_sharded_queue_are_handed_back() {
    let mut d = deploy(RedisCluster::start().await, &[("SWARMQ_QUEUE_SHARDS", "3")]).await;
    let api = d.coordinator.api();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(api.create_ok("sleep:1; lines:2; ok; sleep:1; ok", 2).await);
    }
    // Both runners are busy (2 slots each, 8 agents queued): kill one mid-work.
    swarmq_testkit::wait_for(Duration::from_secs(30), "both runners working", || async {
        let busy = d
            ._runners
            .iter()
            .all(|r| !r.process.log_messages("TODO completed").is_empty());
        busy.then_some(())
    })
    .await;
    d._runners[0]
        .process
        .signal(nix::sys::signal::Signal::SIGKILL);
    finishes_intact(&d, &ids).await;
    d._runners.remove(0);
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// The fixture workers' start records of this deployment: their pids.
fn started_pids(d: &Deployment) -> Vec<i32> {
    let log = std::fs::read_to_string(d._fixtures.path().join("log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.starts_with("start "))
        .filter_map(|l| l.split_whitespace().nth(5)?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_runners_over_the_sessions_sharded_control_channel() {
    let d = deploy(RedisCluster::start().await, &[("SWARMQ_LEASE_SECS", "30")]).await;
    let api = d.coordinator.api();
    let id = api.create_ok("hang; hang; ok; ok", 2).await;
    let pids = swarmq_testkit::wait_for(Duration::from_secs(30), "both workers", || async {
        let pids = started_pids(&d);
        (pids.len() >= 2).then_some(pids)
    })
    .await;
    let (status, body) = api
        .post_json(&format!("/api/sessions/{id}/cancel"), serde_json::json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let cancelled_at = std::time::Instant::now();
    swarmq_testkit::wait_for(Duration::from_secs(20), "workers to die", || {
        let pids = pids.clone();
        async move { pids.iter().all(|p| !alive(*p)).then_some(()) }
    })
    .await;
    eprintln!(
        "workers killed {:?} after the cancel",
        cancelled_at.elapsed()
    );
    let s = finished_or_dump(&d, &id).await;
    assert_eq!(s["status"], "cancelled", "{s}");
    check_finished(&recorded_in(&store(&d.cluster), &id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_run_to_the_end_on_a_cluster_over_tls() {
    // No plain port anywhere: clients, the cluster bus and replication speak TLS only
    // (`rediss://…#insecure` seeds: the test certificate is self-signed).
    let d = deploy(RedisCluster::start_tls(Some("cluster-pw")).await, &[]).await;
    let api = d.coordinator.api();
    let first = api.create_ok("lines:3; ok; lines:2; ok", 2).await;
    let watcher = Watcher::node(&d.coordinator.url, &first, &["--since", "0"]);
    let mut ids = vec![first.clone()];
    for _ in 0..3 {
        ids.push(api.create_ok("lines:2; ok", 2).await);
    }
    finishes_intact(&d, &ids).await;
    let seen = watcher.finish(Duration::from_secs(60)).await;
    check_client_saw_all(&recorded_in(&store(&d.cluster), &first).await, &seen);
}
