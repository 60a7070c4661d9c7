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
        ("SWARMQ_LEASE_SECS", "10"),
        ("SWARMQ_RUNNER_SLOTS", "2"),
    ]);
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
    let api = d.coordinator.api();
    let store = store(&d.cluster);
    for id in ids {
        let s = api.wait_finished(id, Duration::from_secs(90)).await;
        assert_eq!(s["status"], "completed", "{s}");
        check_finished(&recorded_in(&store, id).await);
    }
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
