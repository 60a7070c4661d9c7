//! swarmq-chaos: the fault-injection suite. Each scenario starts a private Redis, coordinators
//! and runners as separate processes (the built binaries, fixture workers), submits several
//! sessions with Socket.IO clients watching some of them, injects its fault with varied timing,
//! waits for every session to end, then checks the invariants:
//!
//! - every session ends (completed, failed or cancelled) — never stuck;
//! - no TODO completed twice, and no completion without an assignment to the same agent (a stale
//!   assignment's completion is never recorded);
//! - every event of each session's stream exactly once, with contiguous `seq`;
//! - every client that joined with `since` saw every event, in order.
//!
//!   cargo run -p swarmq-testkit --bin swarmq-chaos -- --runs 5 [--only NAME] [--report FILE]
//!
//! It prints a markdown table (the one in docs/reliability.md) and exits non-zero on any
//! violation.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::FutureExt;
use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};
use swarmq_shared::store::StoreOptions;
use swarmq_shared::{Keys, SessionId, Store};
use swarmq_testkit::invariants::{
    Recorded, check_client_saw_all, check_finished, recorded, recorded_in,
};
use swarmq_testkit::redis::free_port;
use swarmq_testkit::{
    Api, CoordinatorProcess, FakeAnthropic, RedisCluster, RedisServer, RunnerProcess,
    SentinelTopology, StalledClient, Watcher, fixture_worker,
};

const SCENARIOS: [&str; 12] = [
    "runner-sigkill",
    "runner-sigstop",
    "runner-sigterm",
    "coordinator-sigkill",
    "redis-restart",
    "bad-workers",
    "runner-churn",
    "slow-viewers",
    "sentinel-failover",
    "sentinel-stale-primary",
    "cluster-primary-kill",
    "cluster-reshard",
];

/// Scenarios run only when named with `--only` (none at the moment: every scenario is in the
/// default rounds of `scripts/test.sh` and `scripts/faults.sh`).
const OPT_IN: [&str; 0] = [];

#[derive(Parser)]
struct Args {
    /// Runs per scenario (each with its own timing).
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Only this scenario.
    #[arg(long)]
    only: Option<String>,
    /// Not this scenario (repeatable).
    #[arg(long)]
    skip: Vec<String>,
    /// Also write the markdown table here.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Seed for the timing choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// SWARMQ_REDIS_MIN_REPLICAS_ACKED of the daemons in the sentinel-* and cluster-* scenarios (0 measures
    /// what a failover loses without the durability option).
    #[arg(long, default_value_t = 1)]
    min_replicas_acked: u32,
}

#[derive(Default, Clone)]
struct Figures {
    runs: u32,
    sessions: u32,
    todos: u32,
    faults: u32,
    stuck: u32,
    lost: u32,
    duplicates: u32,
    events_lost: u32,
    stale_rejected: u32,
    stood_down: u32,
    /// Stalled clients told `connection:evicted` (slow-viewers).
    evicted: u32,
    worst_recovery: Duration,
    violations: Vec<String>,
}

struct Env {
    /// The Redis (for sentinel-* scenarios: the initial primary).
    redis: RedisServer,
    /// sentinel-* scenarios: the replicas and Sentinels, and the settings that point the
    /// daemons at them.
    topology: Option<SentinelTopology>,
    /// cluster-* scenarios: the 6-node Redis Cluster the daemons run on (3 queue shards).
    cluster: Option<RedisCluster>,
    redis_env: Vec<(String, String)>,
    coordinator: CoordinatorProcess,
    coordinator_port: u16,
    runners: Vec<RunnerProcess>,
    retired: Vec<RunnerProcess>,
    fixture_dir: tempfile::TempDir,
    worker: String,
}

impl Env {
    async fn start(runners: usize, extra_coordinator: &[(&str, &str)]) -> Self {
        let redis = (RedisServer::start(), None, None);
        Self::start_on(redis, Vec::new(), runners, extra_coordinator).await
    }

    /// A primary, two replicas and three Sentinels; the daemons find the primary through the
    /// Sentinels and wait for `min_acked` replicas on every transition (and the data nodes then
    /// refuse writes with fewer replicas: `min-replicas-to-write`).
    async fn start_sentinel(min_acked: u32) -> Self {
        let mut topology = SentinelTopology::start(2).await;
        if min_acked > 0 {
            topology.guard_writes(min_acked);
        }
        let primary = topology.take_initial_primary();
        let mut redis_env = topology.env();
        redis_env.push((
            "SWARMQ_REDIS_MIN_REPLICAS_ACKED".into(),
            min_acked.to_string(),
        ));
        Self::start_on((primary, Some(topology), None), redis_env, 3, &[]).await
    }

    /// A 6-node Redis Cluster (3 primaries, 3 replicas); the daemons find it by its seeds,
    /// shard the queue over the 3 primaries and wait for `min_acked` replicas per transition.
    /// (`redis` is then an unused private server: nothing is written to it.)
    async fn start_cluster(min_acked: u32) -> Self {
        let cluster = RedisCluster::start().await;
        let mut redis_env = cluster.env();
        redis_env.push(("SWARMQ_QUEUE_SHARDS".into(), "3".into()));
        redis_env.push((
            "SWARMQ_REDIS_MIN_REPLICAS_ACKED".into(),
            min_acked.to_string(),
        ));
        let redis = (RedisServer::start(), None, Some(cluster));
        Self::start_on(redis, redis_env, 3, &[]).await
    }

    async fn start_on(
        (redis, topology, cluster): (RedisServer, Option<SentinelTopology>, Option<RedisCluster>),
        redis_env: Vec<(String, String)>,
        runners: usize,
        extra_coordinator: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let port_s = port.to_string();
        let mut env: Vec<(&str, &str)> = vec![
            ("SWARMQ_PLANNER", "local"),
            ("PORT", &port_s),
            ("SWARMQ_DECOMPOSE_TIMEOUT_SECS", "2"),
        ];
        env.extend_from_slice(extra_coordinator);
        env.extend(redis_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let coordinator = CoordinatorProcess::start(&redis.url(), &env).await;
        let mut this = Self {
            redis,
            topology,
            cluster,
            redis_env,
            coordinator,
            coordinator_port: port,
            runners: Vec::new(),
            retired: Vec::new(),
            fixture_dir: tempfile::tempdir().expect("dir"),
            worker: fixture_worker(""),
        };
        for _ in 0..runners {
            this.add_runner(&[]).await;
        }
        this
    }

    async fn add_runner(&mut self, extra: &[(&str, &str)]) {
        let dir = self.fixture_dir.path().display().to_string();
        let mut env: Vec<(&str, &str)> = vec![
            ("SWARMQ_RUNNER_SLOTS", "2"),
            ("SWARMQ_LEASE_SECS", "3"),
            ("SWARMQ_DRAIN_SECS", "2"),
            ("SWARMQ_WORKER_EXIT_GRACE_SECS", "1"),
            ("SWARMQ_TASK_TIMEOUT_SECS", "3"),
            ("SWARMQ_MAX_ATTEMPTS", "3"),
            ("SWARMQ_WORKER_MAX_EVENTS_PER_SEC", "500"),
            ("FIXTURE_DIR", &dir),
            ("SWARMQ_WORKER_PASS_ENV", "FIXTURE_DIR"),
        ];
        if self.topology.is_some() || self.cluster.is_some() {
            // Longer than a failover: a lease shorter than it expires every runner at once.
            env.retain(|(key, _)| *key != "SWARMQ_LEASE_SECS");
            env.push(("SWARMQ_LEASE_SECS", "10"));
        }
        env.extend(self.redis_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k, v));
        }
        let runner = RunnerProcess::start(&self.redis.url(), &self.worker, &env).await;
        self.runners.push(runner);
    }

    fn runner_id(runner: &RunnerProcess) -> String {
        runner.process.log_messages("runner starting")[0]["runner_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A store that reads what the daemons wrote (behind Sentinel: wherever the primary is now).
    fn store(&self) -> anyhow::Result<Store> {
        let keys = Keys::new("swarmq")?;
        if let Some(c) = &self.cluster {
            let opts = StoreOptions {
                queue_shards: 3,
                ..StoreOptions::default()
            };
            return Store::open_target(&c.target(), "swarmq", opts).map_err(anyhow::Error::msg);
        }
        Ok(match &self.topology {
            Some(t) => Store::with_target(&t.target(), keys, StoreOptions::default())?,
            None => Store::new(&self.redis.url(), keys, StoreOptions::default())?,
        })
    }

    /// A session's recorded state and events, read from where the daemons wrote them.
    async fn recorded(&self, store: &Store, url: &str, id: &str) -> Recorded {
        if self.cluster.is_some() {
            recorded_in(store, id).await
        } else {
            recorded(url, id).await
        }
    }

    /// The URL of the primary now (for the audit's direct reads).
    fn primary_url(&self) -> String {
        match &self.topology {
            Some(t) => t
                .primary_port()
                .filter(|p| *p != self.redis.port())
                .map(|p| t.url_of(p))
                .unwrap_or_else(|| self.redis.url()),
            None => self.redis.url(),
        }
    }

    async fn submit(&self, prompts: &[(&str, u32)]) -> Vec<String> {
        let api = self.coordinator.api();
        let mut ids = Vec::new();
        for (prompt, agents) in prompts {
            ids.push(api.create_ok(prompt, *agents).await);
        }
        ids
    }
}

/// Session creations in flight when coordinator-sigkill kills the coordinator.
const KEYED_POSTS: usize = 6;

/// `POST /api/sessions` number `i` of coordinator-sigkill, with `Idempotency-Key: late-<i>`:
/// its status and body, or `None` when the connection died.
async fn keyed_post(api: Api, i: usize) -> Option<(u16, serde_json::Value)> {
    let body = serde_json::json!({ "prompt": format!("late {i}; b"), "agentCount": 2 });
    let response = api
        .raw()
        .post(format!("{}/api/sessions", api.base))
        .header("Idempotency-Key", format!("late-{i}"))
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

/// After the restart, each keyed POST again, as a client retrying: it must get a session id
/// (201, or 502 for one failed by the watchdog), and each key exactly one session.
async fn retry_keyed_posts(api: &Api, store: &Store, figures: &mut Figures) -> anyhow::Result<()> {
    let mut retried = Vec::new();
    for i in 0..KEYED_POSTS {
        match keyed_post(api.clone(), i).await {
            Some((201 | 502, body)) => {
                retried.push((i, body["sessionId"].as_str().unwrap_or_default().to_owned()));
            }
            other => figures
                .violations
                .push(format!("retry of late-{i} answered {other:?}")),
        }
    }
    let page = store.list_sessions(100, None).await?;
    for (i, id) in retried {
        let prompt = format!("late {i}; b");
        let sessions: Vec<String> = page
            .sessions
            .iter()
            .filter(|s| s.prompt == prompt)
            .map(|s| s.id.to_string())
            .collect();
        if sessions != [id.clone()] {
            figures.violations.push(format!(
                "key late-{i}: retry got {id}, sessions for it: {sessions:?}"
            ));
        }
    }
    Ok(())
}

/// A mix of short sessions: several TODOs per agent, some printing lines.
fn workload(rng: &mut impl Rng, n: usize) -> Vec<(String, u32)> {
    (0..n)
        .map(|_| {
            let todos = rng.random_range(3..=6);
            let prompt = (0..todos)
                .map(|_| {
                    format!(
                        "sleep:{:.2},lines:{}",
                        rng.random_range(0.1..0.6),
                        rng.random_range(0..6)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            (prompt, rng.random_range(2..=3))
        })
        .collect()
}

async fn wait_all_finished(store: &Store, ids: &[String], limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut stuck = Vec::new();
    for id in ids {
        let sid = SessionId::parse(id).expect("id");
        loop {
            let status = store.session_status(sid).await.ok().flatten();
            if status.is_some_and(|s| s.is_finished()) {
                break;
            }
            if Instant::now() > deadline {
                stuck.push(format!("{id}: {status:?}"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stuck
}

/// Counts and checks one finished session; violations are collected, not fatal.
fn audit(r: &Recorded, figures: &mut Figures) {
    figures.sessions += 1;
    figures.todos += r.session.todos.len() as u32;
    let mut completions: HashMap<String, u32> = HashMap::new();
    for e in &r.events {
        if let swarmq_shared::Event::TaskCompleted(c) = &e.event {
            *completions.entry(c.todo_id.to_string()).or_default() += 1;
        }
    }
    figures.duplicates += completions
        .values()
        .map(|n| n.saturating_sub(1))
        .sum::<u32>();
    figures.lost += r
        .session
        .todos
        .iter()
        .filter(|t| !matches!(t.status.as_str(), "completed" | "failed"))
        .count() as u32
        * u32::from(r.session.status.as_str() != "cancelled");
    let expected: Vec<u64> = (1..=r.session.last_seq).collect();
    let got: Vec<u64> = r.events.iter().map(|e| e.seq).collect();
    figures.events_lost += expected.len().saturating_sub(got.len()) as u32;
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| check_finished(r))) {
        figures
            .violations
            .push(format!("session {}: {}", r.session.id, panic_text(&panic)));
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

async fn run_once(
    name: &str,
    args: &Args,
    rng: &mut rand::rngs::StdRng,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let slow_llm;
    let mut env = match name {
        "coordinator-sigkill" => {
            slow_llm =
                Some(FakeAnthropic::start_with_delay(vec![], Duration::from_millis(300)).await);
            let url = slow_llm
                .as_ref()
                .map(|f| f.url().to_owned())
                .unwrap_or_default();
            Env::start(
                3,
                &[
                    ("SWARMQ_PLANNER", "anthropic"),
                    ("ANTHROPIC_API_KEY", swarmq_testkit::anthropic::API_KEY),
                    ("ANTHROPIC_BASE_URL", &url),
                ],
            )
            .await
        }
        "slow-viewers" => {
            slow_llm = None;
            slow_viewers_env().await
        }
        "sentinel-failover" | "sentinel-stale-primary" => {
            slow_llm = None;
            Env::start_sentinel(args.min_replicas_acked).await
        }
        "cluster-primary-kill" | "cluster-reshard" => {
            slow_llm = None;
            Env::start_cluster(args.min_replicas_acked).await
        }
        _ => {
            slow_llm = None;
            Env::start(3, &[]).await
        }
    };
    let _keep = slow_llm;
    let store = env.store()?;
    let prompts: Vec<(String, u32)> = match name {
        "bad-workers" => vec![
            ("garbage; huge; wrongid; flood:3000; ok".into(), 2),
            ("crash-once; fail-once; sandbox,lines:3; ok".into(), 2),
            ("crash; exit0; hang; ok".into(), 3),
        ],
        "slow-viewers" => {
            let mut prompts = workload(rng, 4);
            prompts.insert(0, (FLOODING_SESSION.into(), 2));
            prompts
        }
        _ => workload(rng, 6),
    };
    let refs: Vec<(&str, u32)> = prompts.iter().map(|(p, a)| (p.as_str(), *a)).collect();
    let mut ids = env.submit(&refs).await;
    let watch_url = format!("http://127.0.0.1:{}", env.coordinator_port);
    let watchers: Vec<(String, Watcher)> = ids
        .iter()
        .take(2)
        .map(|id| {
            (
                id.clone(),
                Watcher::node(&watch_url, id, &["--since", "0", "--timeout", "150"]),
            )
        })
        .collect();
    let (slow_viewers, stalled) = if name == "slow-viewers" {
        watch_slowly(&watch_url, &ids[0]).await
    } else {
        (Vec::new(), Vec::new())
    };
    let delay = Duration::from_millis(rng.random_range(200..1200));
    tokio::time::sleep(delay).await;
    let mut recovery = Duration::ZERO;
    match name {
        "runner-sigkill" => {
            let victim = rng.random_range(0..env.runners.len());
            let id = Env::runner_id(&env.runners[victim]);
            env.runners[victim].signal(Signal::SIGKILL);
            let killed = Instant::now();
            figures.faults += 1;
            env.add_runner(&[]).await;
            // Recovered when the reaper has handed its jobs back and forgotten it.
            loop {
                let gone = env
                    .redis
                    .cli(&["ZSCORE", "{swarmq}:runners", &id])
                    .is_some_and(|s| s.trim().is_empty());
                if gone || killed.elapsed() > Duration::from_secs(60) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            recovery = killed.elapsed();
        }
        "runner-sigstop" => {
            let victim = rng.random_range(0..env.runners.len());
            let id = Env::runner_id(&env.runners[victim]);
            env.runners[victim].signal(Signal::SIGSTOP);
            let stopped = Instant::now();
            figures.faults += 1;
            let frozen_for = Duration::from_millis(rng.random_range(3500..5500));
            // Recovered when the reaper has handed the frozen runner's work to others.
            while stopped.elapsed() < frozen_for {
                let gone = env
                    .redis
                    .cli(&["ZSCORE", "{swarmq}:runners", &id])
                    .is_some_and(|s| s.trim().is_empty());
                if gone && recovery.is_zero() {
                    recovery = stopped.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            env.runners[victim].signal(Signal::SIGCONT);
        }
        "runner-sigterm" => {
            let victim = rng.random_range(0..env.runners.len());
            env.runners[victim].signal(Signal::SIGTERM);
            figures.faults += 1;
            let started = Instant::now();
            let status = env.runners[victim]
                .process
                .wait_exit(Duration::from_secs(15))
                .await;
            recovery = started.elapsed();
            if !status.is_some_and(|s| s.success()) {
                figures
                    .violations
                    .push(format!("drained runner exited with {status:?}"));
            }
            env.add_runner(&[]).await;
        }
        "coordinator-sigkill" => {
            // POSTs in flight (slow model) when the coordinator dies; then it comes back on the
            // same port and its clients reconnect.
            let api = env.coordinator.api();
            // These die with the coordinator: a connection error is expected.
            let posts: Vec<_> = (0..KEYED_POSTS)
                .map(|i| tokio::spawn(keyed_post(api.clone(), i)))
                .collect();
            tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
            env.coordinator.process.signal(Signal::SIGKILL);
            let killed = Instant::now();
            figures.faults += 1;
            for post in posts {
                if let Ok(Some((201, body))) = post.await
                    && let Some(id) = body["sessionId"].as_str()
                {
                    ids.push(id.to_owned());
                }
            }
            let port = env.coordinator_port.to_string();
            let url = env.redis.url();
            let fake_url = _keep
                .as_ref()
                .map(|f| f.url().to_owned())
                .unwrap_or_default();
            env.coordinator = CoordinatorProcess::start(
                &url,
                &[
                    ("PORT", &port),
                    ("SWARMQ_PLANNER", "anthropic"),
                    ("ANTHROPIC_API_KEY", swarmq_testkit::anthropic::API_KEY),
                    ("ANTHROPIC_BASE_URL", &fake_url),
                    ("SWARMQ_DECOMPOSE_TIMEOUT_SECS", "2"),
                ],
            )
            .await;
            recovery = killed.elapsed();
            // Every POST retried with its key: one session per key, whatever the first got.
            retry_keyed_posts(&env.coordinator.api(), &store, figures).await?;
            // Sessions the dead coordinator had started are in the index; all must end.
            let page = store.list_sessions(100, None).await?;
            for s in page.sessions {
                let id = s.id.to_string();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        "redis-restart" => {
            env.redis.kill();
            figures.faults += 1;
            let down = Instant::now();
            let (status, _) = env.coordinator.api().create("while redis is down", 1).await;
            let answered_in = down.elapsed();
            if status != 503 {
                figures
                    .violations
                    .push(format!("POST while Redis was down answered {status}"));
            }
            if answered_in > Duration::from_secs(10) {
                figures
                    .violations
                    .push(format!("POST while Redis was down took {answered_in:?}"));
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
            env.redis.start_again();
            let back = Instant::now();
            loop {
                let (status, body) = env
                    .coordinator
                    .api()
                    .create("after the restart; b", 2)
                    .await;
                if status == 201 {
                    ids.push(body["sessionId"].as_str().unwrap_or_default().to_owned());
                    break;
                }
                if back.elapsed() > Duration::from_secs(30) {
                    figures
                        .violations
                        .push("coordinator did not recover from the Redis restart".into());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            recovery = back.elapsed();
        }
        "bad-workers" => {
            figures.faults += 12;
        }
        "sentinel-failover" | "sentinel-stale-primary" => {
            recovery = primary_fault(name, &env, rng, figures, &mut ids).await;
        }
        "cluster-primary-kill" => {
            recovery = cluster_primary_kill(&mut env, figures, &mut ids).await;
        }
        "cluster-reshard" => {
            recovery = cluster_reshard(&env, rng, figures, &ids);
        }
        "slow-viewers" => {
            figures.faults += (slow_viewers.len() + stalled.len()) as u32;
        }
        "runner-churn" => {
            for _ in 0..3 {
                env.add_runner(&[]).await;
                env.add_runner(&[]).await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(300..900))).await;
                for _ in 0..2 {
                    let victim = rng.random_range(0..env.runners.len());
                    let runner = env.runners.remove(victim);
                    runner.signal(if rng.random_bool(0.7) {
                        Signal::SIGTERM
                    } else {
                        Signal::SIGKILL
                    });
                    figures.faults += 1;
                    env.retired.push(runner);
                }
            }
        }
        other => anyhow::bail!("unknown scenario {other}"),
    }
    figures.worst_recovery = figures.worst_recovery.max(recovery);

    let stuck = wait_all_finished(&store, &ids, Duration::from_secs(120)).await;
    figures.stuck += stuck.len() as u32;
    for s in &stuck {
        figures.violations.push(format!("stuck session {s}"));
    }
    if !stuck.is_empty() {
        // What the runners could not get through: the errors they gave up on.
        for runner in env.runners.iter().chain(env.retired.iter()) {
            for line in runner.process.log_messages("redis call failed") {
                eprintln!("{name}: runner gave up: {line}");
            }
            let warnings: Vec<String> = runner
                .process
                .logs()
                .into_iter()
                .filter(|l| l.contains("\"WARN\"") && !l.contains("redis::"))
                .collect();
            for line in warnings.iter().rev().take(3) {
                eprintln!("{name}: runner's last warnings: {line}");
            }
        }
        if let Some(cluster) = env.cluster.as_ref() {
            // Which node owns what, and who replicates whom, when sessions got stuck.
            for node in &cluster.nodes {
                let port = node.port();
                let role = cluster
                    .cli(port, &["ROLE"])
                    .unwrap_or_else(|| "down".into());
                eprintln!("{name}: node {port} ROLE {}", role.replace('\n', " "));
            }
            if let Some(node) = cluster.nodes.first() {
                let nodes = cluster
                    .cli(node.port(), &["CLUSTER", "NODES"])
                    .unwrap_or_default();
                eprintln!("{name}: CLUSTER NODES\n{nodes}");
            }
        }
    }
    let url = env.primary_url();
    for id in &ids {
        let sid = SessionId::parse(id)?;
        if store.snapshot(sid).await?.is_none() {
            figures.violations.push(format!("session {id} vanished"));
            continue;
        }
        let r = env.recorded(&store, &url, id).await;
        audit(&r, figures);
    }
    audit_stalled(&url, stalled, figures).await;
    for (id, watcher) in watchers.into_iter().chain(slow_viewers) {
        let r = env.recorded(&store, &url, &id).await;
        let outcome = AssertUnwindSafe(async {
            let events = watcher.finish(Duration::from_secs(60)).await;
            check_client_saw_all(&r, &events);
        })
        .catch_unwind()
        .await;
        if let Err(panic) = outcome {
            figures.events_lost += 1;
            figures
                .violations
                .push(format!("client of {id}: {}", panic_text(&panic)));
        }
    }
    for runner in env.runners.iter().chain(env.retired.iter()) {
        figures.stale_rejected += runner
            .process
            .log_messages("no longer holds the agent")
            .len() as u32;
        figures.stood_down += runner.process.log_messages("lease had expired").len() as u32;
    }
    if let Some(t) = &env.topology {
        eprintln!("{name}: {} failover(s) this run", t.switches());
    }
    figures.runs += 1;
    Ok(())
}

/// sentinel-*: SIGKILLs the primary (or SIGSTOPs it, then SIGCONTs it once the Sentinels have
/// failed over, so it comes back as a stale primary) while sessions run and clients watch.
/// Meanwhile the API must answer (503 or 200) within 10 s, never hang; recovered when a session
/// can be created again. Returns the recovery time.
async fn primary_fault(
    name: &str,
    env: &Env,
    rng: &mut rand::rngs::StdRng,
    figures: &mut Figures,
    ids: &mut Vec<String>,
) -> Duration {
    let Some(topology) = &env.topology else {
        return Duration::ZERO;
    };
    let old = env.redis.port();
    let freeze = name == "sentinel-stale-primary";
    env.redis.signal(if freeze { "STOP" } else { "KILL" });
    figures.faults += 1;
    let down = Instant::now();
    let api = env.coordinator.api();
    let mut failed_over = false;
    loop {
        if created_during_failover(&api, figures, ids).await {
            break;
        }
        if !failed_over && topology.primary_port().is_some_and(|p| p != old) {
            failed_over = true;
            if freeze {
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..1500))).await;
                env.redis.signal("CONT");
            }
        }
        if down.elapsed() > Duration::from_secs(60) {
            figures
                .violations
                .push("no session could be created within 60 s".into());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if freeze && !failed_over {
        env.redis.signal("CONT");
    }
    down.elapsed()
}

/// One `POST` while a primary is down: it must answer 201, 503 or 429 within 10 s (else a
/// violation). True once a session was created (its id added to `ids`).
async fn created_during_failover(api: &Api, figures: &mut Figures, ids: &mut Vec<String>) -> bool {
    let asked = Instant::now();
    let (status, body) = api.create("during the failover; b", 2).await;
    if asked.elapsed() > Duration::from_secs(10) || !matches!(status, 201 | 503 | 429) {
        figures.violations.push(format!(
            "POST during the failover answered {status} in {:?}",
            asked.elapsed()
        ));
    }
    if status == 201 {
        ids.push(body["sessionId"].as_str().unwrap_or_default().to_owned());
    }
    status == 201
}

/// Whether a node other than `old` now serves `slot` (its replica was promoted).
fn promoted(cluster: &RedisCluster, old: u16, slot: u16) -> bool {
    cluster
        .primaries()
        .iter()
        .any(|n| n.port != old && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
}

/// cluster-primary-kill: SIGKILLs the primary that owns the first watched session (its replica
/// is promoted), restarts the dead node once it has been replaced (it rejoins as a replica:
/// with `WAIT 1` its shard needs one), while the API must answer 201/503/429 within 10 s.
/// Recovered when a session can be created again. Returns the recovery time.
async fn cluster_primary_kill(
    env: &mut Env,
    figures: &mut Figures,
    ids: &mut Vec<String>,
) -> Duration {
    let key = Keys::new("swarmq")
        .map(|k| {
            k.session(SessionId::parse(&ids[0]).unwrap_or_default())
                .session_hash()
        })
        .unwrap_or_default();
    let api = env.coordinator.api();
    let Some(cluster) = env.cluster.as_mut() else {
        return Duration::ZERO;
    };
    let slot = cluster.slot_of(&key);
    let old = cluster.owner_of_slot(slot).port;
    cluster.kill(old);
    figures.faults += 1;
    let down = Instant::now();
    let mut restarted = false;
    loop {
        if created_during_failover(&api, figures, ids).await {
            break;
        }
        if !restarted && promoted(cluster, old, slot) {
            cluster.restart(old).await;
            restarted = true;
        }
        if down.elapsed() > Duration::from_secs(90) {
            figures
                .violations
                .push("no session could be created within 90 s".into());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered = down.elapsed();
    // A creation can succeed before the failover finished (its session's slot on another
    // shard): the dead node still comes back, or with `WAIT 1` its shard, left without a
    // replica, would refuse every write from then on.
    if !restarted {
        while !promoted(cluster, old, slot) && down.elapsed() < Duration::from_secs(90) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        cluster.restart(old).await;
    }
    recovered
}

/// cluster-reshard: while sessions run, moves the slot of the first watched session and the
/// slot of a queue shard to other primaries (keys and all: `MIGRATING`/`IMPORTING`/`MIGRATE`),
/// then `redis-cli --cluster reshard`s 200 slots between two primaries. Returns how long the
/// moves took.
fn cluster_reshard(
    env: &Env,
    rng: &mut rand::rngs::StdRng,
    figures: &mut Figures,
    ids: &[String],
) -> Duration {
    let Some(cluster) = &env.cluster else {
        return Duration::ZERO;
    };
    let started = Instant::now();
    let keys = Keys::new("swarmq").map(|k| k.sharded(3));
    let Ok(keys) = keys else {
        return Duration::ZERO;
    };
    let session = keys
        .session(SessionId::parse(&ids[0]).unwrap_or_default())
        .session_hash();
    let shard = keys.ready_shard(rng.random_range(0..3));
    for key in [session, shard] {
        let slot = cluster.slot_of(&key);
        let from = cluster.owner_of_slot(slot).port;
        if let Some(to) = cluster.primaries().into_iter().find(|n| n.port != from) {
            cluster.move_slot(slot, to.port);
            figures.faults += 1;
        }
    }
    let primaries = cluster.primaries();
    if primaries.len() >= 2 {
        cluster.reshard(primaries[0].port, primaries[1].port, 200);
        figures.faults += 1;
    }
    started.elapsed()
}

/// A session that floods 8,000 lines of about 1 KB (8 MB: more than the kernel's socket buffers
/// and a connection's queue hold) after its viewers joined.
const FLOODING_SESSION: &str = "sleep:1.5,flood:8000:1000; ok";

/// A small per-connection queue, so that slow viewers fall out of it many times over, and
/// runners that relay the flood unthrottled.
async fn slow_viewers_env() -> Env {
    let maxlen = ("SWARMQ_EVENTS_MAXLEN", "50000");
    let mut env = Env::start(0, &[("SWARMQ_SOCKET_QUEUE", "128"), maxlen]).await;
    for _ in 0..3 {
        env.add_runner(&[("SWARMQ_WORKER_MAX_EVENTS_PER_SEC", "1000000"), maxlen])
            .await;
    }
    env
}

/// Slow official clients (each blocks 1 ms per event: they get evicted and resume with `since`)
/// and raw clients that stop reading altogether, all watching `id`.
async fn watch_slowly(
    url: &str,
    id: &str,
) -> (Vec<(String, Watcher)>, Vec<(String, StalledClient)>) {
    let slow = (0..3)
        .map(|_| {
            let args = ["--since", "0", "--slow", "1", "--timeout", "150"];
            (id.to_owned(), Watcher::node(url, id, &args))
        })
        .collect();
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push((id.to_owned(), StalledClient::join(url, id, 0).await));
    }
    (slow, stalled)
}

/// A stalled client, reading again after the session ended, must find the session's first
/// events in order — all of them, or a prefix followed by the close of its connection (it was
/// evicted, and told so when the notice could still reach it). Events missing from a connection
/// that stayed open would have been dropped silently.
async fn audit_stalled(url: &str, stalled: Vec<(String, StalledClient)>, figures: &mut Figures) {
    for (id, client) in stalled {
        let r = recorded(url, &id).await;
        let resumed = client.resume(Duration::from_secs(30)).await;
        let in_order = resumed.events.len() <= r.events.len()
            && resumed
                .events
                .iter()
                .zip(&r.events)
                .all(|((name, data), e)| data["seq"] == e.seq && name == e.event.name());
        let complete = resumed.events.len() == r.events.len();
        if !in_order {
            figures.events_lost += 1;
            figures.violations.push(format!(
                "stalled client of {id}: events skipped or out of order"
            ));
        } else if !complete && !resumed.closed {
            figures.events_lost += 1;
            figures.violations.push(format!(
                "stalled client of {id}: {} of {} events on a connection still open",
                resumed.events.len(),
                r.events.len()
            ));
        }
        if resumed.evicted.is_some() {
            figures.evicted += 1;
        }
    }
}

fn table(results: &[(&str, Figures)]) -> String {
    let mut out = String::from(
        "| scenario | runs | sessions | TODOs | faults injected | stuck sessions | TODOs lost | duplicates recorded | events lost | late writes rejected | runners that stood down | worst recovery |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (name, f) in results {
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            f.runs,
            f.sessions,
            f.todos,
            f.faults,
            f.stuck,
            f.lost,
            f.duplicates,
            f.events_lost,
            f.stale_rejected,
            f.stood_down,
            if f.worst_recovery.is_zero() {
                "—".to_owned()
            } else {
                format!("{:.1} s", f.worst_recovery.as_secs_f64())
            }
        ));
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(swarmq_shared::now_ms);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    eprintln!("swarmq-chaos: seed {seed}");
    let mut results = Vec::new();
    let mut failed = false;
    for name in SCENARIOS {
        if args.only.as_deref().is_some_and(|o| o != name) || args.skip.iter().any(|s| s == name) {
            continue;
        }
        // Opt-in until they pass every run (docs/reliability.md, "Redis Cluster").
        if OPT_IN.contains(&name) && args.only.as_deref() != Some(name) {
            continue;
        }
        let mut figures = Figures::default();
        for run in 0..args.runs {
            let started = Instant::now();
            if let Err(e) = run_once(name, &args, &mut rng, &mut figures).await {
                figures.violations.push(format!("run {run} aborted: {e:#}"));
            }
            eprintln!(
                "{name} run {} done in {:.1} s",
                run + 1,
                started.elapsed().as_secs_f64()
            );
        }
        for v in &figures.violations {
            eprintln!("VIOLATION {name}: {v}");
        }
        if figures.evicted > 0 {
            eprintln!(
                "{name}: {} stalled clients were evicted and told so",
                figures.evicted
            );
        }
        failed |= !figures.violations.is_empty();
        results.push((name, figures));
    }
    let report = table(&results);
    println!("{report}");
    if let Some(path) = args.report {
        std::fs::write(&path, &report)?;
    }
    anyhow::ensure!(!failed, "invariants violated (see VIOLATION lines)");
    Ok(())
}
