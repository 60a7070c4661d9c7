//! The preloaded worker server under faults: killed in the middle of a burst of starts, it is
//! restarted and every agent still finishes exactly once, without a counted attempt.

use std::collections::HashSet;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use swarmq_testkit::invariants::{check_finished, recorded};
use swarmq_testkit::{Cluster, Start, fixture_worker, wait_for};

/// Pids of the worker servers the runner started, in order.
fn server_pids(cluster: &Cluster) -> Vec<i32> {
    cluster.runners[0]
        .process
        .log_messages("worker server ready")
        .iter()
        .filter_map(|v| v["pid"].as_i64().or_else(|| v["fields"]["pid"].as_i64()))
        .map(|p| p as i32)
        .collect()
}

/// Waits until the fixture workers have started at least `n` TODOs.
async fn starts_reach(cluster: &Cluster, n: usize) {
    wait_for(Duration::from_secs(60), "workers to start", || {
        let count = cluster
            .fixture_log()
            .iter()
            .filter(|r| r.kind == "start")
            .count();
        async move { (count >= n).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_worker_server_mid_burst_loses_no_agent_and_costs_no_attempt() {
    let cluster = Cluster::start(
        1,
        &fixture_worker("--oneshot"),
        &[
            Start::Preload.env(),
            ("SWARMQ_RUNNER_SLOTS", "8"),
            ("SWARMQ_PRELOAD_MODULES", "json"),
        ],
    )
    .await;
    let api = cluster.api();
    let work = ["sleep:0.05"; 12].join("; ");
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(api.create_ok(&work, 4).await);
    }
    // Kill the server twice while the 48 one-shot starts are under way.
    for (round, after) in [(1, 5), (2, 20)] {
        starts_reach(&cluster, after).await;
        let pids = server_pids(&cluster);
        assert_eq!(pids.len(), round, "servers started so far: {pids:?}");
        kill(Pid::from_raw(pids[round - 1]), Signal::SIGKILL).expect("kill the worker server");
    }
    for id in &ids {
        let s = cluster.wait_finished(id).await;
        assert_eq!(s["status"], "completed", "{s}");
        for todo in s["todos"].as_array().expect("todos") {
            assert!(
                todo.get("attempts").is_none(),
                "an attempt was counted: {todo}"
            );
        }
        check_finished(&recorded(&cluster.redis.url(), id).await);
    }
    let servers: HashSet<i32> = server_pids(&cluster).into_iter().collect();
    assert!(
        servers.len() >= 3,
        "the server was restarted after each kill: {servers:?}"
    );
    for needle in [
        "lost a start",
        "exited; restarting",
        "exit status will be unknown",
    ] {
        let n = cluster.runners[0].process.log_messages(needle).len();
        eprintln!("runner logged {n} × {needle:?}");
    }
    Start::Preload.check(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_with_no_start_limit_is_served_by_one_server() {
    let cluster = Cluster::start(
        1,
        &fixture_worker(""),
        &[
            Start::Preload.env(),
            ("SWARMQ_RUNNER_SLOTS", "64"),
            ("SWARMQ_WORKER_MAX_STARTING", "0"),
            ("SWARMQ_PRELOAD_MODULES", "json"),
        ],
    )
    .await;
    let api = cluster.api();
    let work = ["ok"; 8].join("; ");
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(api.create_ok(&work, 8).await);
    }
    for id in &ids {
        let s = cluster.wait_finished(id).await;
        assert_eq!(s["status"], "completed", "{s}");
        check_finished(&recorded(&cluster.redis.url(), id).await);
    }
    assert_eq!(
        server_pids(&cluster).len(),
        1,
        "one server, never restarted"
    );
    Start::Preload.check(&cluster);
}

/// The value of metric `name` in a Prometheus text page, if present.
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_reports_what_an_agent_and_the_server_cost_in_memory() {
    let addr = format!("127.0.0.1:{}", swarmq_testkit::redis::free_port());
    let cluster = Cluster::start(
        1,
        &fixture_worker(""),
        &[
            Start::Preload.env(),
            ("SWARMQ_RUNNER_SLOTS", "2"),
            ("SWARMQ_RUNNER_HTTP", &addr),
            ("SWARMQ_PRELOAD_MODULES", "json"),
        ],
    )
    .await;
    let id = cluster.api().create_ok("hang; hang", 2).await;
    starts_reach(&cluster, 2).await;
    let api = cluster.api();
    // Sampled every 10 s: wait for a sample taken while the two workers run.
    let (agent, server) = wait_for(Duration::from_secs(60), "memory metrics", || {
        let request = api.raw().get(format!("http://{addr}/metrics")).send();
        async move {
            let page = request.await.ok()?.text().await.ok()?;
            let agent = metric(&page, "swarmq_worker_pss_bytes")?;
            Some((agent, metric(&page, "swarmq_worker_server_pss_bytes")?))
        }
    })
    .await;
    // Both measured (a forked agent's PSS may exceed this small server's: it preloads only
    // `json`, and the agent's own allocations are its alone).
    assert!(
        agent > 100_000.0 && server > 100_000.0,
        "agent {agent} B, server {server} B"
    );
    let (status, _) = cluster
        .api()
        .post_json(&format!("/api/sessions/{id}/cancel"), serde_json::json!({}))
        .await;
    assert_eq!(status, 200);
}
