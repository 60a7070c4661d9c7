//! A coordinator SIGKILLed at each step of `POST /api/sessions` on a real 6-node Redis Cluster,
//! where a session's creation is a sequence of single-slot writes (docs/redis-schema.md, "A
//! session's life across slots"): whatever step it dies after, another coordinator's watchdog
//! leaves no half session — nothing at all, a failed decomposition, or a whole session that runs
//! to its end — and nothing stays behind in the index, the decomposing set or the queue.
//!
//! The coordinator is stopped at the step by a failpoint (`SWARMQ_FAILPOINT`, debug builds:
//! it waits there), then killed with SIGKILL.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use swarmq_shared::store::StoreOptions;
use swarmq_shared::{SessionId, Store};
use swarmq_testkit::invariants::{check_finished, recorded_in};
use swarmq_testkit::{CoordinatorProcess, RedisCluster, RunnerProcess, fixture_worker, wait_for};

/// A REDIS_URL that is never used with a cluster (nothing listens on port 1).
const UNUSED_URL: &str = "redis://127.0.0.1:1";
const LIMIT: Duration = Duration::from_secs(90);

/// The steps, in order, and what the session must end as once the watchdog has seen it.
const STEPS: [(&str, Option<&str>); 4] = [
    // Index entries written, the session not: it never existed.
    ("indexed", None),
    // The session written, `decomposing`: the watchdog fails it.
    ("opened", Some("failed")),
    // TODOs and agents written, `running`, jobs not queued: the watchdog queues them.
    ("created", Some("completed")),
    // Jobs queued, the decomposing entry left: the runners finish it, the watchdog drops it.
    ("enqueued", Some("completed")),
];

fn env(cluster: &RedisCluster, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = cluster.env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Starts a coordinator that stops at `step`, posts a session to it, waits until it is there
/// and SIGKILLs it. Returns the session's id (from the creation's log span).
async fn killed_at(cluster: &RedisCluster, step: &str) -> SessionId {
    // Deadline of what it creates: 1 s + 1 s of grace, so the watchdog acts at once.
    let env = env(
        cluster,
        &[
            ("SWARMQ_FAILPOINT", step),
            ("SWARMQ_DECOMPOSE_TIMEOUT_SECS", "1"),
        ],
    );
    let mut doomed = CoordinatorProcess::start(UNUSED_URL, &borrowed(&env)).await;
    // The request never gets an answer: the coordinator dies while it waits.
    let request = doomed
        .api()
        .raw()
        .post(format!("{}/api/sessions", doomed.url))
        .json(&serde_json::json!({ "prompt": "lines:2; ok", "agentCount": 2 }))
        .send();
    let post = tokio::spawn(request);
    let reached = doomed.process.wait_log("failpoint reached", LIMIT).await;
    let id = reached["span"]["session_id"]
        .as_str()
        .or_else(|| reached["spans"][0]["session_id"].as_str())
        .unwrap_or_else(|| panic!("no session id on {reached}"));
    let id = SessionId::parse(id).expect("session id");
    doomed.process.signal(Signal::SIGKILL);
    doomed.process.wait_exit(LIMIT).await.expect("killed");
    let _ = post.await;
    id
}

/// Waits until the watchdog has dealt with `id`: out of the decomposing set, and (if it exists)
/// finished. Returns its final status, `None` if it does not exist.
async fn settled(store: &Store, survivor: &CoordinatorProcess, id: SessionId) -> Option<String> {
    let api = survivor.api();
    wait_for(
        LIMIT,
        "the watchdog and the runners to settle the session",
        || {
            let api = api.clone();
            async move {
                let pending = store.overdue_decompositions(u64::MAX, 1000).await.ok()?;
                if pending.contains(&id) {
                    return None;
                }
                let (status, s) = api.get(&format!("/api/sessions/{id}")).await;
                match status {
                    404 => Some(None),
                    200 if ["completed", "failed"].contains(&s["status"].as_str()?) => {
                        Some(Some(s["status"].as_str()?.to_owned()))
                    }
                    _ => None,
                }
            }
        },
    )
    .await
}

/// Every session the list shows exists; the ready queue is empty.
async fn nothing_half(survivor: &CoordinatorProcess, store: &Store) {
    let api = survivor.api();
    let (status, list) = api.get("/api/sessions?limit=100").await;
    assert_eq!(status, 200, "{list}");
    for s in list["sessions"].as_array().expect("sessions") {
        let id = s["id"].as_str().expect("id");
        let (status, body) = api.get(&format!("/api/sessions/{id}")).await;
        assert_eq!(status, 200, "listed but missing: {id}: {body}");
    }
    assert_eq!(store.ready_depth().await.expect("ready depth"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_at_each_step_of_a_creation_leaves_no_half_session() {
    let cluster = RedisCluster::start().await;
    let store =
        Store::open_target(&cluster.target(), "swarmq", StoreOptions::default()).expect("store");
    let fixtures = tempfile::tempdir().unwrap();
    let fixture_dir = fixtures.path().display().to_string();
    let survivor_env = env(&cluster, &[]);
    let survivor = CoordinatorProcess::start(UNUSED_URL, &borrowed(&survivor_env)).await;
    let runner_env = env(
        &cluster,
        &[
            ("FIXTURE_DIR", &fixture_dir),
            ("SWARMQ_WORKER_PASS_ENV", "FIXTURE_DIR"),
        ],
    );
    let _runner =
        RunnerProcess::start(UNUSED_URL, &fixture_worker(""), &borrowed(&runner_env)).await;
    for (step, expected) in STEPS {
        let id = killed_at(&cluster, step).await;
        let status = settled(&store, &survivor, id).await;
        assert_eq!(status.as_deref(), expected, "killed after {step:?}");
        if expected == Some("completed") {
            check_finished(&recorded_in(&store, &id.to_string()).await);
        }
        let listed = listed(&survivor, id).await;
        assert_eq!(listed, expected.is_some(), "listed after {step:?}");
        nothing_half(&survivor, &store).await;
    }
}

/// Whether `GET /api/sessions` lists the session.
async fn listed(survivor: &CoordinatorProcess, id: SessionId) -> bool {
    let (_, list) = survivor.api().get("/api/sessions?limit=100").await;
    let id = id.to_string();
    list["sessions"]
        .as_array()
        .is_some_and(|all| all.iter().any(|s| s["id"] == Value::String(id.clone())))
}
