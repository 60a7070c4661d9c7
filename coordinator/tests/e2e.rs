//! The whole system as users run it: the built binaries as separate processes (two coordinators,
//! three runners running the real worker offline and the fixture worker), a private Redis, and
//! clients nobody here wrote (npm socket.io-client, python-socketio) plus the swarmq CLI.

use std::time::Duration;

use serde_json::Value;
use swarmq_testkit::invariants::{check_client_saw_all, check_finished, recorded};
use swarmq_testkit::{
    CoordinatorProcess, RedisServer, RunnerProcess, Watcher, fixture_worker, python, repo_root,
};

const LIMIT: Duration = Duration::from_secs(90);

fn cli(url: &str, args: &[&str]) -> (i32, String) {
    let out = swarmq_testkit::procs::swarmq_cli(url, args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_processes_serves_sessions_to_clients_on_any_coordinator() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = CoordinatorProcess::start(&url, &[("SWARMQ_PLANNER", "local")]).await;
    let b = CoordinatorProcess::start(&url, &[("SWARMQ_PLANNER", "local")]).await;
    let real_worker = format!("{} workers/worker.py", python());
    let cwd = repo_root().display().to_string();
    let offline_env = [
        ("SWARMQ_WORKER_CWD", cwd.as_str()),
        ("SWARMQ_RUNNER_SLOTS", "2"),
        ("WORKER_OFFLINE_STEP_SECS", "0.01"),
        ("SWARMQ_WORKER_PASS_ENV", "WORKER_OFFLINE_STEP_SECS"),
    ];
    let _r1 = RunnerProcess::start(&url, &real_worker, &offline_env).await;
    let _r2 = RunnerProcess::start(&url, &real_worker, &offline_env).await;
    let _r3 =
        RunnerProcess::start(&url, &fixture_worker(""), &[("SWARMQ_RUNNER_SLOTS", "2")]).await;

    // Created through A, watched on B with the npm client.
    let first = a
        .api()
        .create_ok(
            "find flights; pick a hotel; list restaurants; draft an itinerary",
            3,
        )
        .await;
    let on_b = Watcher::node(&b.url, &first, &["--since", "0"]);
    // Created through B, watched on A with python-socketio.
    let second = b
        .api()
        .create_ok("summarise the news; translate it", 2)
        .await;
    let on_a = Watcher::python(&a.url, &second, &["--since", "0"]);

    let first_events = on_b.finish(LIMIT).await;
    let second_events = on_a.finish(LIMIT).await;
    for (id, events) in [(&first, &first_events), (&second, &second_events)] {
        each_client_saw_its_session_complete(&a, &url, id, events).await;
    }

    // Joining after the end with since 0 gets the whole history, on either coordinator.
    let late = Watcher::node(&a.url, &first, &["--since", "0"])
        .finish(LIMIT)
        .await;
    check_client_saw_all(&recorded(&url, &first).await, &late);
    operators_and_the_cli_see_the_same(&a, &b, &first, &second).await;
}

async fn each_client_saw_its_session_complete(
    a: &CoordinatorProcess,
    redis_url: &str,
    id: &str,
    events: &[(String, Value)],
) {
    let r = recorded(redis_url, id).await;
    check_finished(&r);
    check_client_saw_all(&r, events);
    let api_view = a.api().session(id).await;
    assert_eq!(api_view["status"], "completed");
    let completed: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "task:completed")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(completed.len(), api_view["todos"].as_array().unwrap().len());
}

/// Operators' views (runners, stats), and the CLI agrees.
async fn operators_and_the_cli_see_the_same(
    a: &CoordinatorProcess,
    b: &CoordinatorProcess,
    first: &str,
    second: &str,
) {
    let (status, runners) = b.api().get("/api/runners").await;
    assert_eq!(status, 200);
    let live: Vec<&Value> = runners["runners"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["alive"] == true)
        .collect();
    assert_eq!(live.len(), 3, "{runners}");
    let (_, stats) = a.api().get("/api/stats").await;
    assert_eq!(stats["sessions"]["completed"], 2, "{stats}");
    assert_eq!(stats["readyQueue"], 0);
    assert_eq!(stats["runners"]["slots"], 6);

    let (code, out) = cli(&a.url, &["get", first, "--json"]);
    assert_eq!(code, 0);
    let parsed: Value = serde_json::from_str(&out).expect("get --json is JSON");
    assert_eq!(parsed["id"], first);
    let (code, out) = cli(&b.url, &["watch", second]);
    assert_eq!(code, 0, "watch of a completed session exits 0: {out}");
    let (code, out) = cli(&b.url, &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains(first) && out.contains(second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_watches_live_and_reports_failure_by_exit_status() {
    let redis = RedisServer::start();
    let url = redis.url();
    let coordinator = CoordinatorProcess::start(&url, &[("SWARMQ_PLANNER", "local")]).await;
    let _runner = RunnerProcess::start(
        &url,
        &fixture_worker(""),
        &[("SWARMQ_RUNNER_SLOTS", "2"), ("SWARMQ_MAX_ATTEMPTS", "1")],
    )
    .await;
    let base = coordinator.url.clone();
    let watch = |args: Vec<String>| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&base, &args)
        })
    };
    let (code, out) = watch(vec![
        "submit".into(),
        "lines:3,sleep:0.5; ok".into(),
        "--agents".into(),
        "2".into(),
        "--watch".into(),
    ])
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("2 of 2 TODOs completed; session completed"),
        "{out}"
    );
    assert!(out.contains("completed: done:ok"), "{out}");

    let (code, out) = watch(vec![
        "submit".into(),
        "ok; crash".into(),
        "-n".into(),
        "1".into(),
        "-w".into(),
    ])
    .await
    .unwrap();
    assert_eq!(code, 1, "a failed session exits 1: {out}");
    assert!(out.contains("session failed"), "{out}");

    let (code, _) = cli(
        &coordinator.url,
        &["get", "6f1c1f2e-3b1a-4c53-9b0f-2f1f3f4e5d6c"],
    );
    assert_eq!(code, 2);
    let (code, _) = cli("http://127.0.0.1:1", &["list"]);
    assert_eq!(code, 2);
}
