//! Redis Sentinel: both daemons find the primary through three Sentinels, and when the primary
//! is SIGKILLed mid-session (or frozen, failed over and resumed as a stale primary) they follow
//! the failover by themselves — the API answers 503 meanwhile and never hangs, and the session
//! finishes with nothing lost or recorded twice (durability on: `WAIT 1`).

use std::time::Duration;

use swarmq_shared::keys::Keys;
use swarmq_shared::store::{RedisTarget, StoreOptions};
use swarmq_shared::{SessionId, Store};
use swarmq_testkit::invariants::{check_finished, recorded};
use swarmq_testkit::{
    Api, CoordinatorProcess, RunnerProcess, SentinelTopology, fixture_worker, wait_for,
};

struct Deployment {
    topology: SentinelTopology,
    coordinator: CoordinatorProcess,
    _runners: Vec<RunnerProcess>,
    _fixtures: tempfile::TempDir,
}

async fn deploy(min_replicas: &str) -> Deployment {
    deploy_on(SentinelTopology::start(2).await, min_replicas).await
}

async fn deploy_on(topology: SentinelTopology, min_replicas: &str) -> Deployment {
    topology.guard_writes(min_replicas.parse().expect("a count"));
    let fixtures = tempfile::tempdir().unwrap();
    let mut env = topology.env();
    env.push((
        "SWARMQ_REDIS_MIN_REPLICAS_ACKED".into(),
        min_replicas.into(),
    ));
    let common: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // REDIS_URL's host is never used with Sentinel (nothing listens on port 1); its scheme is.
    let url = topology.unused_url();
    let coordinator = CoordinatorProcess::start(url, &common).await;
    let fixture_dir = fixtures.path().display().to_string();
    let mut runner_env = common.clone();
    runner_env.extend([
        ("FIXTURE_DIR", fixture_dir.as_str()),
        ("SWARMQ_WORKER_PASS_ENV", "FIXTURE_DIR"),
        // A few failovers long, no more: a runner whose connection lands on a primary that
        // resumed stale must re-resolve at its first NOREPLICAS, not wait out the ~10 s until
        // Sentinel demotes it (this test ran into a lease that expired so, and a job stranded
        // after it, 2 runs in 2 under load before both were fixed).
        ("SWARMQ_LEASE_SECS", "10"),
        ("SWARMQ_RUNNER_SLOTS", "2"),
    ]);
    let worker = fixture_worker("");
    let mut runners = Vec::new();
    for _ in 0..2 {
        runners.push(RunnerProcess::start(url, &worker, &runner_env).await);
    }
    Deployment {
        topology,
        coordinator,
        _runners: runners,
        _fixtures: fixtures,
    }
}

/// Polls the session until the Sentinels name a new primary; counts the 503s (every call
/// answers: the test client gives up after 30 s, the API bounds its Redis waits well below).
async fn through_failover(api: &Api, d: &Deployment, id: &str, old: u16) -> (u16, usize) {
    let mut unavailable = 0;
    for _ in 0..600 {
        let (status, body) = api.get(&format!("/api/sessions/{id}")).await;
        assert!(
            status == 200 || status == 503,
            "GET session answered {status}: {body}"
        );
        unavailable += usize::from(status == 503);
        if let Some(new) = d.topology.primary_port().filter(|p| *p != old) {
            return (new, unavailable);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no failover from :{old}");
}

/// Creates a session, retrying while the API answers 503 (as a client should during a failover)
/// or 429 (those retries count against the per-address creation rate).
async fn create_retrying(api: &Api, prompt: &str, agents: u32) -> String {
    for _ in 0..60 {
        let (status, body) = api.create(prompt, agents).await;
        assert!(
            matches!(status, 201 | 503 | 429),
            "create answered {status}: {body}"
        );
        if let Some(id) = body["sessionId"].as_str() {
            return id.to_owned();
        }
        eprintln!("create answered {status}: {body}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("no 201 within 60 attempts after the failover");
}

async fn finishes_intact(d: &Deployment, primary: u16, ids: &[String]) {
    let api = d.coordinator.api();
    for id in ids {
        let s = api.wait_finished(id, Duration::from_secs(90)).await;
        assert_eq!(s["status"], "completed", "{s}");
        check_finished(&recorded(&d.topology.url_of(primary), id).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_killed_mid_session_fails_over_and_loses_nothing() {
    let mut d = deploy("1").await;
    let api = d.coordinator.api();
    let old = d.topology.primary_port().expect("a primary");
    let a = api
        .create_ok("sleep:1; lines:3; sleep:1; ok; lines:2", 2)
        .await;
    let b = api.create_ok("lines:4; sleep:1.5; ok", 2).await;
    d.topology.node_mut(old).kill();
    let (new, unavailable) = through_failover(&api, &d, &a, old).await;
    eprintln!("failed over from :{old} to :{new}; {unavailable} answers were 503 meanwhile");
    let c = create_retrying(&api, "ok; lines:2", 1).await;
    finishes_intact(&d, new, &[a, b, c]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primary_that_resumes_stale_is_never_written_to() {
    let d = deploy("1").await;
    let api = d.coordinator.api();
    let old = d.topology.primary_port().expect("a primary");
    let a = api
        .create_ok("sleep:1; lines:3; sleep:1; ok; lines:2", 2)
        .await;
    d.topology.node(old).signal("STOP");
    let (new, unavailable) = through_failover(&api, &d, &a, old).await;
    d.topology.node(old).signal("CONT");
    eprintln!("failed over from frozen :{old} to :{new}; {unavailable} answers were 503");
    let b = create_retrying(&api, "lines:3; ok", 2).await;
    finishes_intact(&d, new, &[a, b]).await;
    // The resumed node was demoted and copied the new primary's data.
    wait_for(
        Duration::from_secs(30),
        "the old primary to become a replica",
        || async {
            let role = d.topology.node(old).cli(&["ROLE"])?;
            role.starts_with("slave").then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_replica_to_acknowledge_writes_fail_as_503_and_are_retried_whole() {
    let d = deploy("1").await;
    let api = d.coordinator.api();
    let primary = d.topology.primary_port().expect("a primary");
    let a = api.create_ok("sleep:1; lines:3; ok; lines:2", 2).await;
    let replicas: Vec<u16> = d.topology.nodes[1..].iter().map(|n| n.port()).collect();
    for port in &replicas {
        d.topology.node(*port).signal("STOP");
    }
    // Sentinel does not fail over (the primary is fine): every write now waits for an
    // acknowledgement that cannot come, so the API answers 503 and the runners retry.
    let (status, body) = api.create("ok", 1).await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = api.get(&format!("/api/sessions/{a}")).await;
    assert_eq!(status, 200, "reads do not wait for replicas");
    // The relay's reads do: it sends clients only what a failover would keep.
    let session = SessionId::parse(&a).expect("session id");
    let opts = StoreOptions {
        min_replicas_acked: 1,
        wait_timeout: Duration::from_millis(200),
        ..StoreOptions::default()
    };
    let target = RedisTarget::Single(d.topology.url_of(primary));
    let store = Store::with_target(&target, Keys::new("swarmq").unwrap(), opts).unwrap();
    let recorded_events = store
        .events_after(session, 0, 10)
        .await
        .expect("plain read");
    assert!(!recorded_events.is_empty());
    let relayed = store
        .with_replicated_reads()
        .events_after(session, 0, 10)
        .await;
    assert!(relayed.is_err(), "a fenced read answered {relayed:?}");
    for port in &replicas {
        d.topology.node(*port).signal("CONT");
    }
    let b = create_retrying(&api, "lines:2; ok", 1).await;
    finishes_intact(&d, primary, &[a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_and_data_nodes_that_require_passwords() {
    // REDIS_SENTINEL_PASSWORD for the Sentinels, REDIS_PASSWORD for the data nodes (REDIS_URL
    // has none).
    let topology = SentinelTopology::start_with_auth(1, Some("data-pw"), Some("sentinel-pw")).await;
    let d = deploy_on(topology, "1").await;
    let primary = d.topology.primary_port().expect("a primary");
    let a = d.coordinator.api().create_ok("lines:2; ok", 2).await;
    finishes_intact(&d, primary, &[a]).await;
    for line in d.coordinator.process.logs() {
        assert!(
            !line.contains("data-pw") && !line.contains("sentinel-pw"),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_and_data_nodes_over_tls_follow_a_failover() {
    // No plain port is open anywhere: every connection (to the Sentinels, to the data nodes,
    // replication, Sentinel to Sentinel) is TLS.
    let topology = SentinelTopology::start_tls(2, Some("data-pw")).await;
    let mut d = deploy_on(topology, "1").await;
    let api = d.coordinator.api();
    let old = d.topology.primary_port().expect("a primary");
    let a = api.create_ok("sleep:1; lines:3; ok", 2).await;
    d.topology.node_mut(old).kill();
    let (new, _) = through_failover(&api, &d, &a, old).await;
    let b = create_retrying(&api, "lines:2; ok", 1).await;
    finishes_intact(&d, new, &[a, b]).await;
}
