//! Faults: runners killed, frozen and drained, Redis restarted, sessions cancelled, and workers
//! that misbehave in every way — nothing is lost, nothing is recorded twice, the runner survives.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;
use swarmq_testkit::invariants::{check_finished, recorded};
use swarmq_testkit::{Cluster, Start, fixture_worker, in_both_start_modes, wait_for};

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Waits until a fixture worker has started a TODO of `session`; returns its pid.
async fn started(cluster: &Cluster, session: &str) -> i32 {
    wait_for(Duration::from_secs(30), "a worker to start", || {
        let log = cluster.fixture_log();
        let session = session.to_owned();
        async move {
            log.iter()
                .find(|r| r.kind == "start" && r.session == session)
                .map(|r| r.pid)
        }
    })
    .await
}

async fn a_killed_runners_task_is_finished_by_another_runner(start: Start) {
    let mut cluster = Cluster::start(
        1,
        &fixture_worker(""),
        &[start.env(), ("SWARMQ_RUNNER_SLOTS", "1")],
    )
    .await;
    let id = cluster.api().create_ok("sleep:2; ok", 1).await;
    started(&cluster, &id).await;
    cluster.runners[0].signal(Signal::SIGKILL);
    let killed_at = Instant::now();
    cluster.add_runner(&[]).await;
    let s = cluster.wait_finished(&id).await;
    assert_eq!(s["status"], "completed", "{s}");
    eprintln!(
        "recovered {:?} after the kill (lease 3 s)",
        killed_at.elapsed()
    );
    let r = recorded(&cluster.redis.url(), &id).await;
    let counts = check_finished(&r);
    assert_eq!(
        counts.get("task:retry"),
        Some(&1),
        "the in-flight TODO went back once"
    );
    assert_eq!(s["todos"][0]["attempts"], 1);
    start.check(&cluster);
}

async fn a_frozen_runners_late_completion_is_rejected(start: Start) {
    let mut cluster = Cluster::start(
        1,
        &fixture_worker(""),
        &[start.env(), ("SWARMQ_RUNNER_SLOTS", "1")],
    )
    .await;
    let id = cluster.api().create_ok("sleep:1.5", 1).await;
    started(&cluster, &id).await;
    cluster.runners[0].signal(Signal::SIGSTOP);
    // Past the 3 s lease another runner takes the agent over and does the TODO again.
    cluster.add_runner(&[]).await;
    let s = cluster.wait_finished(&id).await;
    assert_eq!(s["status"], "completed", "{s}");
    // The frozen runner wakes up with its worker's completion in the pipe: whichever comes
    // first, its late write is refused (fenced), or its next heartbeat finds the lease lost and
    // aborts the agent before it writes — never recorded either way (checked below).
    cluster.runners[0].signal(Signal::SIGCONT);
    let frozen = &cluster.runners[0].process;
    wait_for(
        Duration::from_secs(20),
        "the late completion refused, or the agent aborted",
        || async {
            let refused = !frozen.log_messages("no longer holds the agent").is_empty();
            let aborted = !frozen.log_messages("lease had expired").is_empty();
            (refused || aborted).then_some(())
        },
    )
    .await;
    let r = recorded(&cluster.redis.url(), &id).await;
    check_finished(&r);
    assert_eq!(r.session.todos[0].result.as_deref(), Some("done:sleep:1.5"));
    start.check(&cluster);
}

/// Frozen past its lease with a slot idle in `BLMOVE`: the reaper hands the agent back, that
/// idle slot claims it again the moment the runner wakes, and the runner then learns it was
/// reaped and aborts everything it works — the job it holds legitimately goes back to the ready
/// list (it used to be dropped, leaving the session running with nobody on it).
async fn a_runner_frozen_past_its_lease_hands_back_the_job_it_claimed_again(start: Start) {
    let cluster = Cluster::start(
        1,
        &fixture_worker(""),
        &[start.env(), ("SWARMQ_RUNNER_SLOTS", "2")],
    )
    .await;
    let id = cluster.api().create_ok("sleep:2; ok", 1).await;
    started(&cluster, &id).await;
    cluster.runners[0].signal(Signal::SIGSTOP);
    wait_for(
        Duration::from_secs(60),
        "the reaper to hand the agent back",
        || async {
            let r = recorded(&cluster.redis.url(), &id).await;
            r.events
                .iter()
                .any(|e| e.event.name() == "task:retry")
                .then_some(())
        },
    )
    .await;
    cluster.runners[0].signal(Signal::SIGCONT);
    let s = cluster.wait_finished(&id).await;
    assert_eq!(s["status"], "completed", "{s}");
    check_finished(&recorded(&cluster.redis.url(), &id).await);
    start.check(&cluster);
}

async fn cancelling_a_session_kills_its_workers_at_once(start: Start) {
    let cluster = Cluster::start(
        1,
        &fixture_worker(""),
        &[start.env(), ("SWARMQ_RUNNER_SLOTS", "2")],
    )
    .await;
    let id = cluster.api().create_ok("hang; hang; ok; ok", 2).await;
    let pid = started(&cluster, &id).await;
    wait_for(Duration::from_secs(10), "both workers", || {
        let n = cluster
            .fixture_log()
            .iter()
            .filter(|r| r.kind == "start")
            .count();
        async move { (n >= 2).then_some(()) }
    })
    .await;
    let pids: Vec<i32> = cluster.fixture_log().iter().map(|r| r.pid).collect();
    let (status, body) = cluster
        .api()
        .post_json(&format!("/api/sessions/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let cancelled_at = Instant::now();
    wait_for(Duration::from_secs(5), "workers to die", || {
        let pids = pids.clone();
        async move { pids.iter().all(|p| !alive(*p)).then_some(()) }
    })
    .await;
    eprintln!(
        "workers killed {:?} after the cancel",
        cancelled_at.elapsed()
    );
    assert!(!alive(pid));
    // No further TODO of it started.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cluster
            .fixture_log()
            .iter()
            .filter(|r| r.kind == "start")
            .count(),
        2
    );
    let r = recorded(&cluster.redis.url(), &id).await;
    check_finished(&r);
    assert_eq!(r.session.status.as_str(), "cancelled");
    start.check(&cluster);
}

async fn sigterm_lets_the_current_todo_finish_then_hands_the_agent_back(start: Start) {
    let mut cluster = Cluster::start(
        1,
        &fixture_worker(""),
        &[
            start.env(),
            ("SWARMQ_RUNNER_SLOTS", "1"),
            ("SWARMQ_DRAIN_SECS", "10"),
        ],
    )
    .await;
    let id = cluster.api().create_ok("sleep:1; ok; ok", 1).await;
    started(&cluster, &id).await;
    cluster.runners[0].signal(Signal::SIGTERM);
    let status = cluster.runners[0]
        .process
        .wait_exit(Duration::from_secs(15))
        .await;
    assert!(
        status.is_some_and(|s| s.success()),
        "drained runner exits 0: {status:?}"
    );
    // Its TODO was finished before it left; the rest waits for another runner.
    let s = cluster.api().session(&id).await;
    assert_eq!(s["todos"][0]["status"], "completed", "{s}");
    assert_eq!(s["status"], "running");
    cluster.add_runner(&[]).await;
    let s = cluster.wait_finished(&id).await;
    assert_eq!(s["status"], "completed");
    check_finished(&recorded(&cluster.redis.url(), &id).await);
    start.check(&cluster);
}

async fn past_the_drain_period_the_todo_is_handed_back_without_costing_an_attempt(start: Start) {
    let mut cluster = Cluster::start(
        1,
        &fixture_worker(""),
        &[
            start.env(),
            ("SWARMQ_RUNNER_SLOTS", "1"),
            ("SWARMQ_DRAIN_SECS", "1"),
        ],
    )
    .await;
    let id = cluster.api().create_ok("sleep:2,crash-once", 1).await;
    let pid = started(&cluster, &id).await;
    cluster.runners[0].signal(Signal::SIGTERM);
    let status = cluster.runners[0]
        .process
        .wait_exit(Duration::from_secs(10))
        .await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(!alive(pid), "the worker was killed with its runner");
    let s = cluster.api().session(&id).await;
    assert_eq!(s["todos"][0]["status"], "pending", "{s}");
    assert!(
        s["todos"][0].get("attempts").is_none(),
        "drain costs no attempt: {s}"
    );
    assert_eq!(
        cluster
            .redis
            .cli(&["ZCARD", "{swarmq}:runners"])
            .unwrap()
            .trim(),
        "0",
        "deregistered"
    );
    cluster.add_runner(&[]).await;
    let s = cluster.wait_finished(&id).await;
    // crash-once crashes the second process's first run: one counted attempt, then success.
    assert_eq!(s["status"], "completed", "{s}");
    check_finished(&recorded(&cluster.redis.url(), &id).await);
    start.check(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarting_mid_session_loses_nothing() {
    let mut cluster = Cluster::start(2, &fixture_worker(""), &[("SWARMQ_RUNNER_SLOTS", "2")]).await;
    let api = cluster.api();
    let a = api
        .create_ok("lines:3,sleep:1,lines:3; sleep:1; lines:2", 2)
        .await;
    let b = api.create_ok("sleep:1.5; lines:5; ok", 2).await;
    started(&cluster, &a).await;
    cluster.redis.restart();
    for id in [&a, &b] {
        let s = cluster
            .api()
            .wait_finished(id, Duration::from_secs(60))
            .await;
        assert_eq!(s["status"], "completed", "{s}");
        check_finished(&recorded(&cluster.redis.url(), id).await);
    }
    for runner in &cluster.runners {
        assert!(
            runner.process.wait_exit_now().is_none(),
            "runners survive a Redis restart"
        );
    }
}

async fn misbehaving_workers_never_hurt_the_runner(start: Start) {
    let cluster = Cluster::start(
        1,
        &fixture_worker(""),
        &[
            start.env(),
            ("SWARMQ_RUNNER_SLOTS", "3"),
            ("SWARMQ_TASK_TIMEOUT_SECS", "2"),
            ("SWARMQ_MAX_ATTEMPTS", "2"),
            ("SWARMQ_WORKER_MAX_EVENTS_PER_SEC", "200"),
        ],
    )
    .await;
    let api = cluster.api();
    let good = api
        .create_ok(
            "garbage; huge; wrongid; flood:5000; fail-once; crash-once; sandbox,lines:3",
            3,
        )
        .await;
    let bad = api.create_ok("crash; exit0; hang; fail", 3).await;
    the_well_behaved_lines_got_through(&cluster, &good).await;
    each_misbehaviour_failed_its_todo_with_its_reason(&cluster, &bad).await;
    the_runner_survived_and_reported(&cluster);
    start.check(&cluster);
}

/// The good session completed; the flood was throttled, not relayed whole, and nothing else was
/// dropped; the wrong-id completion completed nothing it named.
async fn the_well_behaved_lines_got_through(cluster: &Cluster, good: &str) {
    let s = cluster.wait_finished(good).await;
    assert_eq!(s["status"], "completed", "{s}");
    let r = recorded(&cluster.redis.url(), good).await;
    let counts = check_finished(&r);
    let thinking = counts.get("agent:thinking").copied().unwrap_or(0);
    assert!(
        thinking < 3000,
        "{thinking} thinking events from a 5000-line flood at 200/s"
    );
    assert!(
        r.session
            .todos
            .iter()
            .all(|t| t.result.as_deref() != Some("wrong"))
    );
}

async fn each_misbehaviour_failed_its_todo_with_its_reason(cluster: &Cluster, bad: &str) {
    let s = cluster.wait_finished(bad).await;
    assert_eq!(s["status"], "failed", "{s}");
    let r = recorded(&cluster.redis.url(), bad).await;
    check_finished(&r);
    let error_of = |d: &str| {
        r.session
            .todos
            .iter()
            .find(|t| t.description == d)
            .and_then(|t| t.error.clone())
            .unwrap_or_default()
    };
    assert!(
        error_of("crash").contains("exit status: 3")
            && error_of("crash").contains("crashing on purpose"),
        "{}",
        error_of("crash")
    );
    for (todo, reason) in [
        ("exit0", "without reporting complete"),
        ("hang", "timed out"),
        ("fail", "fixture says no"),
    ] {
        assert!(error_of(todo).contains(reason), "{}", error_of(todo));
    }
    assert!(
        r.session
            .todos
            .iter()
            .all(|t| t.status.as_str() == "failed" && t.attempts == 2)
    );
    assert_eq!(s["error"], "4 of 4 TODOs failed");
}

fn the_runner_survived_and_reported(cluster: &Cluster) {
    let runner = &cluster.runners[0].process;
    assert!(
        runner.wait_exit_now().is_none(),
        "the runner is still running"
    );
    assert!(
        !runner.log_messages("too long").is_empty(),
        "the huge line was reported"
    );
    assert!(
        !runner.log_messages("bad worker line").is_empty(),
        "garbage was reported"
    );
}

async fn a_worker_that_ignores_stdin_eof_is_killed_after_the_grace_period(start: Start) {
    let cluster = Cluster::start(
        1,
        &fixture_worker("--ignore-eof"),
        &[start.env(), ("SWARMQ_WORKER_EXIT_GRACE_SECS", "1")],
    )
    .await;
    let id = cluster.api().create_ok("ok", 1).await;
    let pid = started(&cluster, &id).await;
    let s = cluster.wait_finished(&id).await;
    assert_eq!(s["status"], "completed");
    wait_for(
        Duration::from_secs(5),
        "the stubborn worker to be killed",
        || async move { (!alive(pid)).then_some(()) },
    )
    .await;
    start.check(&cluster);
}

/// A SIGKILLed runner leaves no preloaded worker running, not even one that ignores its stdin's
/// end: the worker server ends its children's groups when its runner is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runner_leaves_no_preloaded_worker_behind() {
    let cluster = Cluster::start(
        1,
        &fixture_worker("--ignore-eof"),
        &[Start::Preload.env(), ("SWARMQ_RUNNER_SLOTS", "1")],
    )
    .await;
    let id = cluster.api().create_ok("sleep:60; ok", 1).await;
    let pid = started(&cluster, &id).await;
    cluster.runners[0].signal(Signal::SIGKILL);
    wait_for(
        Duration::from_secs(15),
        "the orphaned worker to be ended",
        || async move { (!alive(pid)).then_some(()) },
    )
    .await;
}

in_both_start_modes!(
    a_killed_runners_task_is_finished_by_another_runner,
    a_frozen_runners_late_completion_is_rejected,
    a_runner_frozen_past_its_lease_hands_back_the_job_it_claimed_again,
    cancelling_a_session_kills_its_workers_at_once,
    sigterm_lets_the_current_todo_finish_then_hands_the_agent_back,
    past_the_drain_period_the_todo_is_handed_back_without_costing_an_attempt,
    misbehaving_workers_never_hurt_the_runner,
    a_worker_that_ignores_stdin_eof_is_killed_after_the_grace_period,
);
