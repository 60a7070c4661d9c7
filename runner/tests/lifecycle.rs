//! The runner binary against a private Redis: the plan's agent loop with persistent and one-shot
//! workers, agentCount across runners, the worker environment, and the real default worker.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use swarmq_testkit::invariants::{check_finished, recorded};
use swarmq_testkit::{
    Cluster, FixtureRecord, Start, fixture_worker, in_both_start_modes, python, repo_root,
};

fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

async fn persistent_worker_serves_all_of_an_agents_todos_then_exits(start: Start) {
    let cluster = Cluster::start(
        1,
        &fixture_worker(""),
        &[start.env(), ("SWARMQ_RUNNER_SLOTS", "2")],
    )
    .await;
    let id = cluster
        .api()
        .create_ok("lines:2; ok; sandbox; ok; lines:1", 2)
        .await;
    let s = cluster.wait_finished(&id).await;
    assert_eq!(s["status"], "completed", "{s}");
    let r = recorded(&cluster.redis.url(), &id).await;
    check_finished(&r);

    // One process per agent served every TODO of that agent, each TODO once.
    let log = cluster.fixture_log();
    let starts: Vec<&FixtureRecord> = log.iter().filter(|r| r.kind == "start").collect();
    assert_eq!(starts.len(), 5);
    let mut pids: HashMap<&str, HashSet<i32>> = HashMap::new();
    for r in &starts {
        pids.entry(r.agent.as_str()).or_default().insert(r.pid);
    }
    assert!(
        pids.values().all(|p| p.len() == 1),
        "one worker per agent: {pids:?}"
    );
    let todos: HashSet<&str> = starts.iter().map(|r| r.todo.as_str()).collect();
    assert_eq!(todos.len(), 5);
    // stdin was closed: the workers exited by themselves.
    let all: Vec<i32> = pids.values().flatten().copied().collect();
    swarmq_testkit::wait_for(Duration::from_secs(10), "workers to exit", || {
        let all = all.clone();
        async move { all.iter().all(|p| !alive(*p)).then_some(()) }
    })
    .await;
    start.check(&cluster);
}

async fn one_shot_workers_get_a_fresh_process_for_each_todo(start: Start) {
    let cluster = Cluster::start(
        1,
        &fixture_worker("--oneshot"),
        &[start.env(), ("SWARMQ_RUNNER_SLOTS", "2")],
    )
    .await;
    let id = cluster.api().create_ok("ok; ok; ok; ok; ok", 2).await;
    let s = cluster.wait_finished(&id).await;
    assert_eq!(s["status"], "completed", "{s}");
    check_finished(&recorded(&cluster.redis.url(), &id).await);
    let log = cluster.fixture_log();
    let pids: HashSet<i32> = log
        .iter()
        .filter(|r| r.kind == "start")
        .map(|r| r.pid)
        .collect();
    assert_eq!(pids.len(), 5, "a process per TODO");
    // Re-delivery to a fresh process did not cost an attempt.
    for todo in s["todos"].as_array().unwrap() {
        assert!(todo.get("attempts").is_none(), "{todo}");
    }
    start.check(&cluster);
}

async fn agent_count_bounds_concurrency_however_many_runners_run(start: Start) {
    let mut cluster = Cluster::start(
        3,
        &fixture_worker(""),
        &[start.env(), ("SWARMQ_RUNNER_SLOTS", "4")],
    )
    .await;
    let _ = &mut cluster;
    let api = cluster.api();
    let work = ["sleep:0.3"; 6].join("; ");
    let a = api.create_ok(&work, 2).await;
    let b = api.create_ok(&work, 3).await;
    for id in [&a, &b] {
        let s = cluster.wait_finished(id).await;
        assert_eq!(s["status"], "completed");
        check_finished(&recorded(&cluster.redis.url(), id).await);
    }
    let log = cluster.fixture_log();
    for (id, limit) in [(&a, 2), (&b, 3)] {
        // Sweep start/end stamps: the number of TODOs of this session running at once.
        let mut edges: Vec<(u64, i32)> = log
            .iter()
            .filter(|r| &r.session == id)
            .map(|r| (r.ms, if r.kind == "start" { 1 } else { -1 }))
            .collect();
        edges.sort_by_key(|(ms, delta)| (*ms, *delta));
        let (mut now, mut max) = (0, 0);
        for (_, delta) in edges {
            now += delta;
            max = max.max(now);
        }
        assert!(
            max <= limit,
            "session ran {max} TODOs at once, agentCount is {limit}"
        );
        assert!(max >= 1);
    }
    start.check(&cluster);
}

async fn workers_get_exactly_the_contract_environment(start: Start) {
    let cluster = Cluster::start(
        1,
        &fixture_worker(""),
        &[
            start.env(),
            ("SWARMQ_RUNNER_SLOTS", "1"),
            ("E2B_API_KEY", "e2b-secret"),
        ],
    )
    .await;
    let id = cluster.api().create_ok("env", 1).await;
    let s = cluster.wait_finished(&id).await;
    let names: HashSet<&str> = s["todos"][0]["result"]
        .as_str()
        .unwrap()
        .split(' ')
        .collect();
    for required in [
        "SESSION_ID",
        "AGENT_ID",
        "TASK_ID",
        "TASK_DESCRIPTION",
        "SOCKET_URL",
        "E2B_API_KEY",
        "DEDALUS_API_KEY",
        "PATH",
    ] {
        assert!(
            names.contains(required),
            "{required} missing from {names:?}"
        );
    }
    let allowed: HashSet<&str> = [
        "SESSION_ID",
        "AGENT_ID",
        "TASK_ID",
        "TASK_DESCRIPTION",
        "SOCKET_URL",
        "E2B_API_KEY",
        "DEDALUS_API_KEY",
        "PATH",
        "HOME",
        "LANG",
        "FIXTURE_DIR",
        "LC_CTYPE",
    ]
    .into();
    let extra: Vec<&&str> = names.iter().filter(|n| !allowed.contains(**n)).collect();
    assert!(extra.is_empty(), "runner leaked {extra:?} to the worker");
    start.check(&cluster);
}

/// The nice value of process `pid` (field 19 of /proc/<pid>/stat).
fn nice_of(pid: i32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(16)?
        .parse()
        .ok()
}

/// Workers run below the runner's CPU priority (SWARMQ_WORKER_NICE, default 10), so relaying
/// their lines comes first when they saturate the host. The preloaded worker server, which every
/// start goes through, keeps the runner's priority.
async fn workers_run_at_a_lower_cpu_priority_than_the_runner(start: Start) {
    let cluster = Cluster::start(1, &fixture_worker(""), &[start.env()]).await;
    let id = cluster.api().create_ok("nice", 1).await;
    let s = cluster.wait_finished(&id).await;
    assert_eq!(s["todos"][0]["result"], "nice:10", "{s}");
    start.check(&cluster);
    let runner = &cluster.runners[0].process;
    for ready in runner.log_messages("worker server ready") {
        let server = ready["pid"].as_i64().expect("server pid") as i32;
        assert_eq!(
            nice_of(server),
            nice_of(runner.pid()),
            "the server's priority"
        );
    }
}

async fn the_default_python_worker_completes_a_session_offline(start: Start) {
    let cmd = format!("{} workers/worker.py", python());
    let cluster = Cluster::start(
        1,
        &cmd,
        &[
            start.env(),
            ("SWARMQ_RUNNER_SLOTS", "2"),
            ("SWARMQ_WORKER_CWD", &repo_root().display().to_string()),
        ],
    )
    .await;
    let id = cluster
        .api()
        .create_ok("write a haiku; review it; publish it", 2)
        .await;
    let s = cluster.wait_finished(&id).await;
    assert_eq!(s["status"], "completed", "{s}");
    let r = recorded(&cluster.redis.url(), &id).await;
    let counts = check_finished(&r);
    assert!(counts.get("agent:stream_ready").copied().unwrap_or(0) >= 1);
    assert!(
        s["todos"][0]["result"]
            .as_str()
            .unwrap()
            .contains("offline")
    );
    start.check(&cluster);
}

async fn a_shell_worker_obeying_the_protocol_works_too(start: Start) {
    let script = repo_root().join("workers/examples/echo_worker.sh");
    let cluster = Cluster::start(
        1,
        &format!("sh {}", script.display()),
        &[start.env(), ("SWARMQ_RUNNER_SLOTS", "1")],
    )
    .await;
    let id = cluster.api().create_ok("one; two; three", 1).await;
    let s = cluster.wait_finished(&id).await;
    assert_eq!(s["status"], "completed", "{s}");
    check_finished(&recorded(&cluster.redis.url(), &id).await);
}

in_both_start_modes!(
    persistent_worker_serves_all_of_an_agents_todos_then_exits,
    one_shot_workers_get_a_fresh_process_for_each_todo,
    agent_count_bounds_concurrency_however_many_runners_run,
    workers_get_exactly_the_contract_environment,
    workers_run_at_a_lower_cpu_priority_than_the_runner,
    the_default_python_worker_completes_a_session_offline,
    a_shell_worker_obeying_the_protocol_works_too,
);
