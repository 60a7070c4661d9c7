//! swarmq-bench: throughput and cost against baselines measured in the same run.
//!
//!   cargo build --release --bins && target/release/swarmq-bench [--repeat 3] [--tasks 300]
//!
//! Every figure is the median of `--repeat` runs (min–max beside it), next to its baseline; raw
//! spawn baselines bracket every run and ratios are paired (see `Baselines`):
//! - W1: TODOs/s with a Python worker that prints 10 lines and exits (one process per TODO),
//!   runner slots = cores, sessions of 2–4 agents, vs. spawning the same worker with no queue at
//!   the same parallelism (the physical limit);
//! - W1b: the same with a persistent worker (one process per agent, 4 TODOs each on stdin), vs.
//!   the W1 limit;
//! - W4: a trivial compiled worker (one `complete` line), vs. its raw spawn rate;
//! - W3: `POST /api/sessions` at 50 concurrent clients with an instant fake LLM, vs. `GET /healthz`
//!   on the same server;
//! - W2: worker print → Socket.IO client latency and a flood; memory with 1,000 and 10,000
//!   idle clients (and after they left), and while 100 viewers of a flood stop reading;
//! - UI: the dashboard in headless Chromium watching 4 agents × 200 lines/s × 30 s: worker
//!   print → rendered in the page, p50/p99, beside the npm Socket.IO client (W2's) watching the
//!   same session in the same run; the page's JS heap and DOM size at the end;
//! - FANOUT: one session watched by 1, 100 and 1,000 viewers (latency, delivered events/s,
//!   coordinator CPU per delivered event), and the flood with 10 viewers;
//! - DUR: W1 and W2 against a primary with one replica, the durability option
//!   (`SWARMQ_REDIS_MIN_REPLICAS_ACKED=1`) on vs. off in the same repeat;
//! - CLUSTER: W1, W2 and the flood on a 6-node Redis Cluster (3 primaries, 3 replicas, 3 queue
//!   shards) beside one Redis in the same repeat: the commands each primary executed (spread),
//!   commands and primary CPU per TODO and per event (the capacity model);
//! - CTRL: event latency while 200 one-shot agents start at once and next to two CPU-burning
//!   workers, and W1's throughput, with and without the workers' lower priority and start pacing;
//! - PRELOAD: the real `workers/worker.py` online against the streaming fake model, 50/200/400
//!   agents at once, cold starts beside preloaded ones: time to the first streamed line, burst
//!   time, CPU per agent start and over its whole life, and PSS per agent;
//! - scale-out: W1 with 1, 2 and 4 runners, vs. the raw spawn rate at the same parallelism;
//! - Redis commands per TODO (INFO commandstats deltas), CPU per TODO by process, and the
//!   runner's and coordinator's RSS.
//!
//! Every run checks that every session completed with every TODO done exactly once.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use swarmq_testkit::invariants::{check_finished, recorded, recorded_in};
use swarmq_testkit::{
    CoordinatorProcess, FakeAnthropic, RedisCluster, RedisServer, RunnerProcess, python, repo_root,
};
use tokio::io::AsyncReadExt;

#[derive(Parser)]
struct Args {
    /// Runs per measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// TODOs per throughput run.
    #[arg(long, default_value_t = 300)]
    tasks: usize,
    /// Only workloads whose name starts with this (W1, W1b, W2, W3, W4, DUR, CLUSTER, MEM,
    /// FANOUT, UI, CTRL, PRELOAD, SCALE).
    #[arg(long)]
    only: Option<String>,
    /// PRELOAD: agents claimed at once, per run.
    #[arg(long, value_delimiter = ',', default_value = "50,200,400")]
    agents: Vec<usize>,
    /// PRELOAD: the largest burst also run with cold starts.
    #[arg(long, default_value_t = 50)]
    cold_max: usize,
}

/// DUR: 0 = plain Redis (every other workload); 1 = with a replica, the durability option off;
/// 2 = with a replica and `SWARMQ_REDIS_MIN_REPLICAS_ACKED=1`.
static DURABILITY: AtomicUsize = AtomicUsize::new(0);

/// In DUR runs: a replica of `redis`, in sync (kept alive by the caller).
async fn replica_for(redis: &RedisServer) -> Option<RedisServer> {
    if DURABILITY.load(Ordering::Relaxed) == 0 {
        return None;
    }
    redis.cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    let replica = RedisServer::start_node(Some(redis.port()));
    for _ in 0..500 {
        let info = replica.cli(&["INFO", "replication"]).unwrap_or_default();
        if info.contains("master_link_status:up") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some(replica)
}

/// The families other than PRELOAD measure the queue against a raw spawn of the same command,
/// and count their workers' CPU as the runner's reaped children: their runners start workers
/// cold, as they did before preloading became the default (a family's own env may override).
const COLD: (&str, &str) = ("SWARMQ_WORKER_START", "cold");

/// `env` plus the durability setting of the current DUR mode.
fn durable<'a>(env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = env.to_vec();
    if DURABILITY.load(Ordering::Relaxed) == 2 {
        env.push(("SWARMQ_REDIS_MIN_REPLICAS_ACKED", "1"));
    }
    env
}

/// CLUSTER: false = one Redis (every other workload); true = the 6-node Redis Cluster (3
/// primaries, 3 replicas) with the ready queue in 3 shards.
static CLUSTER: AtomicBool = AtomicBool::new(false);

/// The Redis a run's daemons use: one `redis-server` (with a replica in DUR runs), or in CLUSTER
/// runs a 6-node Redis Cluster given to them by its seeds (`REDIS_CLUSTER_NODES`) with
/// `SWARMQ_QUEUE_SHARDS=3`.
struct Backend {
    /// The one Redis; in cluster runs an unused private server (the daemons' `REDIS_URL`, which
    /// they ignore when `REDIS_CLUSTER_NODES` is set).
    redis: RedisServer,
    _replica: Option<RedisServer>,
    cluster: Option<RedisCluster>,
    /// The daemons' cluster settings (empty for one Redis).
    cluster_env: Vec<(String, String)>,
}

/// Commands executed on each primary (by port) per command name: `INFO commandstats`, which
/// also counts the commands a script runs (as `total_commands_processed` does).
type Counts = BTreeMap<u16, BTreeMap<String, u64>>;

impl Backend {
    async fn start() -> Self {
        if !CLUSTER.load(Ordering::Relaxed) {
            let redis = RedisServer::start_everysec();
            let _replica = replica_for(&redis).await;
            return Self {
                redis,
                _replica,
                cluster: None,
                cluster_env: Vec::new(),
            };
        }
        let cluster = RedisCluster::start().await;
        // Persist as the single Redis does (AOF, fsync every second), not the testkit's `always`.
        for node in &cluster.nodes {
            node.cli(&["CONFIG", "SET", "appendfsync", "everysec"]);
        }
        let mut cluster_env = cluster.env();
        cluster_env.push(("SWARMQ_QUEUE_SHARDS".into(), "3".into()));
        Self {
            redis: RedisServer::start(),
            _replica: None,
            cluster: Some(cluster),
            cluster_env,
        }
    }

    fn url(&self) -> String {
        self.redis.url()
    }

    /// `env` plus the durability setting of the DUR mode and the cluster's settings.
    fn env<'a>(&'a self, env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env = durable(env);
        env.extend(
            self.cluster_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        env
    }

    /// The servers that take the writes: the one Redis, or the cluster's live primaries.
    fn primaries(&self) -> Vec<&RedisServer> {
        let Some(cluster) = &self.cluster else {
            return vec![&self.redis];
        };
        let ports: Vec<u16> = cluster.primaries().iter().map(|n| n.port).collect();
        let nodes = cluster.nodes.iter();
        nodes.filter(|n| ports.contains(&n.port())).collect()
    }

    /// Every redis-server of the run: the one Redis, or all six nodes (replicas included).
    fn servers(&self) -> Vec<&RedisServer> {
        match &self.cluster {
            None => vec![&self.redis],
            Some(cluster) => cluster.nodes.iter().collect(),
        }
    }

    /// Per primary (in [`Counts`]' port order): the TODOs of the sessions whose slot it serves.
    fn todos_per_primary(&self, sessions: &[(String, usize)]) -> Vec<usize> {
        let Some(cluster) = &self.cluster else {
            return vec![sessions.iter().map(|(_, n)| n).sum()];
        };
        let mut primaries = cluster.primaries();
        primaries.sort_by_key(|n| n.port);
        let mut todos = vec![0; primaries.len()];
        for (id, n) in sessions {
            let slot = swarmq_shared::keys::slot(&format!("swarmq:{{{id}}}:session"));
            let owner = primaries
                .iter()
                .position(|p| p.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)));
            todos[owner.unwrap_or(0)] += n;
        }
        todos
    }

    fn counts(&self) -> Counts {
        let primaries = self.primaries();
        primaries
            .iter()
            .map(|n| (n.port(), commandstats(n)))
            .collect()
    }

    fn store(&self) -> anyhow::Result<swarmq_shared::Store> {
        let opts = swarmq_shared::store::StoreOptions {
            queue_shards: if self.cluster.is_some() { 3 } else { 1 },
            ..Default::default()
        };
        let target = match &self.cluster {
            Some(cluster) => cluster.target(),
            None => swarmq_shared::store::RedisTarget::Single(self.url()),
        };
        swarmq_shared::Store::open_target(&target, "swarmq", opts).map_err(anyhow::Error::msg)
    }

    async fn recorded(&self, id: &str) -> swarmq_testkit::invariants::Recorded {
        match &self.cluster {
            None => recorded(&self.url(), id).await,
            Some(_) => recorded_in(&self.store().expect("store"), id).await,
        }
    }

    /// A connection the bench polls completion through (`HSTRLEN`, one command per session,
    /// sent concurrently: on a cluster each goes to the session's own primary).
    async fn poller(&self) -> anyhow::Result<Poller> {
        Ok(match &self.cluster {
            None => {
                let client = redis::Client::open(self.url())?;
                Poller::Single(client.get_multiplexed_async_connection().await?)
            }
            Some(cluster) => {
                let seeds: Vec<String> = cluster.nodes.iter().map(RedisServer::url).collect();
                let client = redis::cluster::ClusterClient::new(seeds)?;
                Poller::Cluster(client.get_async_connection().await?)
            }
        })
    }
}

enum Poller {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Poller {
    /// Of `ids`, the sessions not completed yet (HSTRLEN of the status: 9 = "completed").
    async fn unfinished<'a>(&self, ids: Vec<&'a String>) -> anyhow::Result<Vec<&'a String>> {
        let lengths = match self {
            Poller::Single(conn) => hstrlen_all(conn, &ids).await?,
            Poller::Cluster(conn) => hstrlen_all(conn, &ids).await?,
        };
        Ok(ids
            .into_iter()
            .zip(lengths)
            .filter(|(_, len)| *len != 9)
            .map(|(id, _)| id)
            .collect())
    }
}

async fn hstrlen_all<C>(conn: &C, ids: &[&String]) -> redis::RedisResult<Vec<u64>>
where
    C: redis::aio::ConnectionLike + Clone + Send,
{
    let queries = ids.iter().map(|id| {
        let mut conn = conn.clone();
        let key = format!("swarmq:{{{id}}}:session");
        async move {
            redis::cmd("HSTRLEN")
                .arg(key)
                .arg("status")
                .query_async::<u64>(&mut conn)
                .await
        }
    });
    futures_util::future::join_all(queries)
        .await
        .into_iter()
        .collect()
}

/// The commands each primary executed between two [`Backend::counts`], the bench's own
/// (`HSTRLEN` polling, `INFO`) left out: per primary by command name.
fn primary_deltas(before: &Counts, after: &Counts) -> Vec<BTreeMap<String, u64>> {
    let mut per_primary = Vec::new();
    for (port, after) in after {
        let before = before.get(port);
        let mut delta = BTreeMap::new();
        for (name, calls) in after {
            let was = before.and_then(|b| b.get(name)).copied().unwrap_or(0);
            if calls > &was && name != "hstrlen" && name != "info" {
                delta.insert(name.clone(), calls - was);
            }
        }
        per_primary.push(delta);
    }
    per_primary
}

/// [`primary_deltas`] as each primary's total, and summed by command name.
fn count_delta(before: &Counts, after: &Counts) -> (Vec<u64>, BTreeMap<String, u64>) {
    let deltas = primary_deltas(before, after);
    let mut by_command = BTreeMap::new();
    for delta in &deltas {
        for (name, calls) in delta {
            *by_command.entry(name.clone()).or_default() += calls;
        }
    }
    (
        deltas.iter().map(|d| d.values().sum()).collect(),
        by_command,
    )
}

/// A primary's busiest commands: `name calls, …`.
fn busiest(delta: &BTreeMap<String, u64>) -> String {
    let mut top: Vec<(&String, &u64)> = delta.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1));
    let top: Vec<String> = top
        .iter()
        .take(8)
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    top.join(", ")
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn stat(v: &[f64]) -> String {
    let mut s = v.to_vec();
    let m = median(&mut s);
    format!("{m:.1} ({:.1}–{:.1})", s[0], s[s.len() - 1])
}

/// Ratios of runs to their own baselines (`Baselines::around`): median (min–max).
fn ratio_stat(runs: &[f64], baselines: &[f64]) -> String {
    let mut ratios: Vec<f64> = runs.iter().zip(baselines).map(|(r, b)| r / b).collect();
    let m = median(&mut ratios);
    format!("{m:.2} ({:.2}–{:.2})", ratios[0], ratios[ratios.len() - 1])
}

/// Raw spawn baselines taken before the first run and after every run, so that each run is
/// compared with the mean of the baselines just before and just after it: the machine's speed
/// drifts (shared host), and bracketing cancels a drift that is steady over one run.
#[derive(Default)]
struct Baselines {
    rates: Vec<f64>,
    busy: Vec<f64>,
    worker_cpu: Vec<f64>,
}

impl Baselines {
    async fn measure(&mut self, cmd: &[String], n: usize, parallel: usize) {
        let (rate, busy, worker) = raw_spawn_rate(cmd, n, parallel).await;
        self.rates.push(rate);
        self.busy.push(busy);
        self.worker_cpu.push(worker);
    }

    /// For run i, the mean of the baselines just before and after it.
    fn around(&self) -> Vec<f64> {
        self.rates.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect()
    }

    /// Medians: machine CPU busy share, CPU ms per worker process.
    fn cpu(&self) -> (f64, f64) {
        (
            median(&mut self.busy.clone()),
            median(&mut self.worker_cpu.clone()),
        )
    }
}

/// Machine-wide CPU ticks (busy, total) from /proc/stat, to tell whether a run was CPU-bound.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle and iowait are fields 4 and 5.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Share of the machine's CPU that was busy since `before` (from `machine_ticks`).
fn busy_since(before: (u64, u64)) -> f64 {
    let now = machine_ticks();
    (now.0 - before.0) as f64 / (now.1 - before.1).max(1) as f64
}

/// The raw rate of running `cmd` `n` times, `parallel` at once, reading its stdout: no queue.
/// Also returns the share of the machine's CPU that was busy meanwhile and the CPU ms each
/// worker process used.
async fn raw_spawn_rate(cmd: &[String], n: usize, parallel: usize) -> (f64, f64, f64) {
    let next = Arc::new(AtomicUsize::new(0));
    let me = std::process::id() as i32;
    let workers_before = children_cpu_ms(me);
    let ticks = machine_ticks();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let next = next.clone();
        let cmd = cmd.to_vec();
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let mut child = tokio::process::Command::new(&cmd[0])
                    .args(&cmd[1..])
                    .env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .env("SESSION_ID", "00000000-0000-4000-8000-000000000001")
                    .env("AGENT_ID", "00000000-0000-4000-8000-000000000002")
                    .env("TASK_ID", "00000000-0000-4000-8000-000000000003")
                    .env("TASK_DESCRIPTION", "x")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("spawn worker");
                let mut out = Vec::new();
                if let Some(mut s) = child.stdout.take() {
                    let _ = s.read_to_end(&mut out).await;
                }
                let _ = child.wait().await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (
        n as f64 / started.elapsed().as_secs_f64(),
        busy_since(ticks),
        (children_cpu_ms(me) - workers_before) / n as f64,
    )
}

fn commandstats(redis: &RedisServer) -> BTreeMap<String, u64> {
    let text = redis.cli(&["INFO", "commandstats"]).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// CPU time (user + system) a process has used, in ms.
fn cpu_ms(pid: i32) -> f64 {
    stat_ms(pid, 11)
}

/// CPU time (user + system) of a process's exited and reaped children (its workers), in ms.
fn children_cpu_ms(pid: i32) -> f64 {
    stat_ms(pid, 13)
}

/// The sum of two adjacent tick fields of /proc/<pid>/stat, from index `first` after the
/// command name, in ms.
fn stat_ms(pid: i32, first: usize) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime, stime, cutime, cstime are fields 14–17 of /proc/pid/stat (indexes 11–14 after
    // the name).
    (ticks(first) + ticks(first + 1)) * 1000.0 / 100.0
}

/// Thousands of bench viewers share one address: no per-address connection cap.
const UNCAPPED: (&str, &str) = ("SWARMQ_MAX_CONNECTIONS_PER_IP", "0");

fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

struct QueueRun {
    /// CPU ms per TODO of the runner(s), the coordinator and redis-server.
    cpu_per_todo: Vec<f64>,
    /// Share of the machine's CPU busy during the run.
    busy: f64,
    /// CPU ms per TODO of the worker processes (reaped by the runners).
    worker_cpu: f64,
    /// TODOs completed by each runner process.
    per_runner: Vec<usize>,
    rate: f64,
    commands_per_todo: f64,
    scripts_per_todo: f64,
    by_command: BTreeMap<String, u64>,
    /// Commands executed by each primary (one for a single Redis) during the run, and the TODOs
    /// of the sessions each one serves.
    per_primary: Vec<u64>,
    todos_per_primary: Vec<usize>,
    /// CPU ms per TODO of the primaries together (the one Redis, or the cluster's primaries).
    primary_cpu_per_todo: f64,
    /// Seconds from the first session's creation to the last one's end.
    elapsed: f64,
    runner_rss_idle_kb: u64,
    runner_rss_busy_kb: u64,
    coordinator_rss_kb: u64,
}

/// TODOs/s through swarmq: sessions of 2–4 agents with `per_agent` TODOs each, `tasks` in all.
async fn queue_rate(worker_cmd: &str, tasks: usize, per_agent: usize) -> anyhow::Result<QueueRun> {
    queue_rate_with(worker_cmd, tasks, per_agent, 1, &[]).await
}

/// `queue_rate` with `runners` runner processes (slots = cores each) and extra runner settings.
async fn queue_rate_with(
    worker_cmd: &str,
    tasks: usize,
    per_agent: usize,
    runners: usize,
    runner_env: &[(&'static str, String)],
) -> anyhow::Result<QueueRun> {
    let redis = Backend::start().await;
    let coordinator = CoordinatorProcess::start(
        &redis.url(),
        &redis.env(&[
            ("SWARMQ_PLANNER", "local"),
            UNCAPPED,
            ("SWARMQ_CREATE_RATE_PER_MIN", "0"),
            ("SWARMQ_MAX_AGENTS", "4"),
        ]),
    )
    .await;
    let slots = cores().to_string();
    let cwd = repo_root().display().to_string();
    let mut fleet = Vec::new();
    let mut env = vec![
        COLD,
        ("SWARMQ_RUNNER_SLOTS", slots.as_str()),
        ("SWARMQ_WORKER_CWD", &cwd),
    ];
    env.extend(runner_env.iter().map(|(k, v)| (*k, v.as_str())));
    for _ in 0..runners {
        fleet.push(RunnerProcess::start(&redis.url(), worker_cmd, &redis.env(&env)).await);
    }
    let runner = &fleet[0];
    let runner_rss_idle_kb = rss_kb(runner.process.pid());
    let api = coordinator.api();
    let mut plan = Vec::new();
    let mut left = tasks;
    let mut agents = 2;
    while left > 0 {
        let todos = (agents * per_agent).min(left);
        plan.push((vec!["x"; todos].join("; "), agents.min(todos) as u32));
        left -= todos;
        agents = if agents == 4 { 2 } else { agents + 1 };
    }
    let before = redis.counts();
    let pid = |n: &&RedisServer| n.pid().map(|p| p as i32).unwrap_or(0);
    let pids = [
        fleet.iter().map(|r| r.process.pid()).collect::<Vec<_>>(),
        vec![coordinator.process.pid()],
        redis.servers().iter().map(pid).collect(),
        redis.primaries().iter().map(pid).collect(),
    ];
    let workers_before: f64 = pids[0].iter().map(|p| children_cpu_ms(*p)).sum();
    let cpu_before: Vec<f64> = pids
        .iter()
        .map(|group| group.iter().map(|p| cpu_ms(*p)).sum())
        .collect();
    let ticks = machine_ticks();
    let started = Instant::now();
    let mut ids = Vec::new();
    for (prompt, agents) in &plan {
        ids.push(
            api.create_ok(if prompt.contains(';') { prompt } else { "x" }, *agents)
                .await,
        );
    }
    // Completion is polled with HSTRLEN (length of the status string: 9 = "completed"), a
    // command swarmq itself never uses, so it can be left out of the cost figures.
    let poller = redis.poller().await?;
    let mut runner_rss_busy_kb = 0;
    let mut pending: Vec<&String> = ids.iter().collect();
    while !pending.is_empty() {
        runner_rss_busy_kb = runner_rss_busy_kb.max(rss_kb(runner.process.pid()));
        pending = poller.unfinished(pending).await?;
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "benchmark run did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let busy = busy_since(ticks);
    let worker_cpu =
        (pids[0].iter().map(|p| children_cpu_ms(*p)).sum::<f64>() - workers_before) / tasks as f64;
    let cpu_per_todo: Vec<f64> = pids
        .iter()
        .zip(&cpu_before)
        .map(|(group, before)| {
            (group.iter().map(|p| cpu_ms(*p)).sum::<f64>() - before) / tasks as f64
        })
        .collect();
    let after = redis.counts();
    // Nothing lost, nothing twice: every session audited.
    let mut done_todos = 0;
    for id in &ids {
        let r = redis.recorded(id).await;
        assert_eq!(
            r.session.status.as_str(),
            "completed",
            "session {id} did not complete"
        );
        check_finished(&r);
        done_todos += r.session.todos.len();
    }
    assert_eq!(done_todos, tasks, "every TODO done");
    let (per_primary, by_command) = count_delta(&before, &after);
    if CLUSTER.load(Ordering::Relaxed) {
        for (i, delta) in primary_deltas(&before, &after).iter().enumerate() {
            eprintln!("W1 primary {i}: {}", busiest(delta));
        }
    }
    let primary_cpu_per_todo = cpu_per_todo[3];
    let sizes = plan.iter().map(|(p, _)| p.split(';').count());
    let sessions: Vec<(String, usize)> = ids.iter().cloned().zip(sizes).collect();
    let todos_per_primary = redis.todos_per_primary(&sessions);
    let total: u64 = by_command.values().sum();
    let scripts = by_command.get("evalsha").copied().unwrap_or(0);
    let per_runner: Vec<usize> = fleet
        .iter()
        .map(|r| r.process.log_messages("TODO completed").len())
        .collect();
    Ok(QueueRun {
        cpu_per_todo,
        busy,
        worker_cpu,
        per_runner,
        rate: tasks as f64 / elapsed,
        commands_per_todo: total as f64 / tasks as f64,
        scripts_per_todo: scripts as f64 / tasks as f64,
        by_command,
        per_primary,
        todos_per_primary,
        primary_cpu_per_todo,
        elapsed,
        runner_rss_idle_kb,
        runner_rss_busy_kb,
        coordinator_rss_kb: rss_kb(coordinator.process.pid()),
    })
}

/// Percentiles of `samples` (ms): (p50, p95, p99).
fn percentiles(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    (at(0.5), at(0.95), at(0.99))
}

/// Baseline for W2: Redis PUBLISH → subscriber receive on this machine (ms).
async fn pubsub_latency(redis: &RedisServer) -> anyhow::Result<(f64, f64, f64)> {
    use futures_util::StreamExt;
    let client = redis::Client::open(redis.url())?;
    let mut sub = client.get_async_pubsub().await?;
    sub.subscribe("bench").await?;
    let mut publisher = client.get_multiplexed_async_connection().await?;
    let receiver = tokio::spawn(async move {
        let mut stream = sub.into_on_message();
        let mut out = Vec::new();
        while out.len() < 1000 {
            let Some(msg) = stream.next().await else {
                break;
            };
            let sent: f64 = msg
                .get_payload::<String>()
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0.0);
            out.push(wall_ms() - sent);
        }
        out
    });
    for _ in 0..1000 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("bench")
            .arg(format!("{:.3}", wall_ms()))
            .query_async(&mut publisher)
            .await?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(percentiles(receiver.await?))
}

fn wall_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// The npm-client benchmark script: `CLIENTS` connections per session.
fn latency_client(
    url: &str,
    clients: usize,
    ids: &[String],
    connect_only: bool,
) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(repo_root().join("tests/clients/latency.mjs"))
        .arg(url)
        .arg(clients.to_string())
        .arg(ids.join(","));
    if connect_only {
        cmd.arg("--connect-only");
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node latency.mjs")
}

async fn next_json(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    kind: &str,
) -> anyhow::Result<serde_json::Value> {
    while let Some(line) = lines.next_line().await? {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["type"] == kind
        {
            return Ok(v);
        }
    }
    anyhow::bail!("the benchmark client ended before printing {kind}")
}

struct Relay {
    p50: f64,
    p95: f64,
    p99: f64,
    stamped: u64,
    expected: u64,
    baseline: (f64, f64, f64),
    /// Events received by all connections together (each once per connection).
    received: u64,
    /// Stamped (or flood) lines received per second, all connections together, from the first
    /// to the last of them.
    delivered_per_sec: f64,
    /// Connections the coordinator evicted for not keeping up (they resumed with `since`).
    evicted: u64,
    /// Coordinator CPU from the moment every client had joined to the end.
    coordinator_cpu_ms: f64,
    /// From the runner's start to the last session's end.
    wall_secs: f64,
    /// Redis cost from the sessions' creation to the end: commands each primary executed, the
    /// events recorded, and the primaries' CPU ms.
    cost: RelayCost,
}

#[derive(Default)]
struct RelayCost {
    per_primary: Vec<u64>,
    events: u64,
    primary_cpu_ms: f64,
    /// How long the primaries' CPU was counted (s).
    window_secs: f64,
}

impl RelayCost {
    fn commands_per_event(&self) -> f64 {
        self.per_primary.iter().sum::<u64>() as f64 / self.events.max(1) as f64
    }
}

impl Relay {
    fn cpu_us_per_delivery(&self) -> f64 {
        self.coordinator_cpu_ms * 1000.0 / self.received as f64
    }
}

/// Stamped lines per TODO and the pause between them (each session runs two TODOs), after
/// `warmup_secs` of waiting for every worker to have started.
#[derive(Clone, Copy)]
struct Pace {
    lines: usize,
    interval_secs: f64,
    warmup_secs: f64,
}

/// W2's pace: 20 lines 25 ms apart per TODO, after 3 s.
const W2_PACE: Pace = Pace {
    lines: 20,
    interval_secs: 0.025,
    warmup_secs: 3.0,
};

/// What else a relay run's runner does: `hogs` agents of another session burning a core each,
/// and the runner's extra settings.
#[derive(Default)]
struct Load {
    hogs: usize,
    runner_env: Vec<(&'static str, String)>,
}

/// A runner of the W2 worker (`bench/workers/stamp.py`), which stamps or floods its lines.
async fn stamp_runner(redis_url: &str, env: &[(&str, &str)]) -> RunnerProcess {
    let worker = format!(
        "{} {}",
        python(),
        repo_root().join("bench/workers/stamp.py").display()
    );
    let env: Vec<_> = std::iter::once(COLD).chain(env.iter().copied()).collect();
    RunnerProcess::start(redis_url, &worker, &env).await
}

/// W2: `sessions` in flight, `clients` Socket.IO connections each; the worker stamps each line.
/// With `flood`, one session whose worker prints that many lines as fast as it can.
async fn relay_run(
    sessions: usize,
    clients: usize,
    flood: usize,
    pace: Pace,
    load: &Load,
) -> anyhow::Result<(Relay, serde_json::Value)> {
    use tokio::io::AsyncBufReadExt;
    let redis = Backend::start().await;
    // On a cluster: classic pub/sub on one node (where the subscriber is), the nearest baseline.
    let baseline = pubsub_latency(redis.primaries()[0]).await?;
    // A viewer evicted during a flood resumes from the stream, so the stream must still hold
    // what it missed: keep the whole flood (the default keeps the last 10,000 events).
    let maxlen = (flood + 1_000).max(10_000).to_string();
    let coordinator = CoordinatorProcess::start(
        &redis.url(),
        &redis.env(&[
            ("SWARMQ_PLANNER", "local"),
            UNCAPPED,
            ("SWARMQ_CREATE_RATE_PER_MIN", "0"),
            ("SWARMQ_EVENTS_MAXLEN", &maxlen),
        ]),
    )
    .await;
    let api = coordinator.api();
    let (before, primary_cpu) = (redis.counts(), primaries_cpu_ms(&redis));
    let window = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..sessions {
        ids.push(
            api.create_ok(
                if flood > 0 { "flood" } else { "a; b" },
                if flood > 0 { 1 } else { 2 },
            )
            .await,
        );
    }
    if load.hogs > 0 {
        api.create_ok(&vec!["burn"; load.hogs].join("; "), load.hogs as u32)
            .await;
    }
    let mut client = latency_client(&coordinator.url, clients, &ids, false);
    let mut lines = tokio::io::BufReader::new(client.stdout.take().expect("stdout")).lines();
    next_json(&mut lines, "joined").await?;
    let slots = (sessions * 2 + load.hogs).max(cores()).to_string();
    let flood_s = flood.to_string();
    let (lines_s, interval_s) = (pace.lines.to_string(), pace.interval_secs.to_string());
    let warmup_s = pace.warmup_secs.to_string();
    let cpu_before = cpu_ms(coordinator.process.pid());
    let mut env = vec![
        ("SWARMQ_RUNNER_SLOTS", slots.as_str()),
        ("BENCH_FLOOD", &flood_s),
        ("BENCH_WARMUP", &warmup_s),
        ("BENCH_LINES", &lines_s),
        ("BENCH_INTERVAL", &interval_s),
        (
            "SWARMQ_WORKER_PASS_ENV",
            "BENCH_FLOOD,BENCH_WARMUP,BENCH_LINES,BENCH_INTERVAL",
        ),
        ("SWARMQ_WORKER_MAX_EVENTS_PER_SEC", "10000000"),
        ("SWARMQ_EVENTS_MAXLEN", &maxlen),
    ];
    env.extend(load.runner_env.iter().map(|(k, v)| (*k, v.as_str())));
    let started = Instant::now();
    let _runner = stamp_runner(&redis.url(), &redis.env(&env)).await;
    let summary =
        tokio::time::timeout(Duration::from_secs(300), next_json(&mut lines, "summary")).await??;
    let wall_secs = started.elapsed().as_secs_f64();
    let coordinator_cpu_ms = cpu_ms(coordinator.process.pid()) - cpu_before;
    let mut cost = RelayCost {
        per_primary: count_delta(&before, &redis.counts()).0,
        primary_cpu_ms: primaries_cpu_ms(&redis) - primary_cpu,
        window_secs: window.elapsed().as_secs_f64(),
        events: 0,
    };
    for id in &ids {
        let r = redis.recorded(id).await;
        cost.events += r.events.len() as u64;
        if flood > 0 {
            // The stream keeps the last SWARMQ_EVENTS_MAXLEN events only: check the end state;
            // the client's count below is the loss check.
            anyhow::ensure!(
                r.session.status.as_str() == "completed",
                "flood session did not complete"
            );
        } else {
            check_finished(&r);
        }
    }
    let expected = (if flood > 0 {
        flood
    } else {
        sessions * 2 * pace.lines
    } * clients) as u64;
    let got = if flood > 0 {
        summary["flood"].as_u64()
    } else {
        summary["stamped"].as_u64()
    }
    .unwrap_or(0);
    anyhow::ensure!(
        got == expected,
        "events lost: a client received {got} of {expected}"
    );
    let f = |k: &str| summary[k].as_f64().unwrap_or(f64::NAN);
    Ok((
        Relay {
            p50: f("p50"),
            p95: f("p95"),
            p99: f("p99"),
            stamped: got,
            expected,
            baseline,
            received: summary["received"].as_u64().unwrap_or(0),
            delivered_per_sec: got as f64
                / f(if flood > 0 {
                    "floodSeconds"
                } else {
                    "stampSeconds"
                }),
            evicted: summary["evicted"].as_u64().unwrap_or(0),
            coordinator_cpu_ms,
            wall_secs,
            cost,
        },
        summary,
    ))
}

/// Coordinator RSS idle and with `n` connected, joined Socket.IO clients.
async fn coordinator_memory(n: usize) -> anyhow::Result<(u64, u64)> {
    use tokio::io::AsyncBufReadExt;
    let redis = RedisServer::start_everysec();
    let coordinator =
        CoordinatorProcess::start(&redis.url(), &[("SWARMQ_PLANNER", "local"), UNCAPPED]).await;
    let id = coordinator.api().create_ok("one; two", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss_kb(coordinator.process.pid());
    let mut client = latency_client(&coordinator.url, n, std::slice::from_ref(&id), true);
    let mut lines = tokio::io::BufReader::new(client.stdout.take().expect("stdout")).lines();
    tokio::time::timeout(Duration::from_secs(120), next_json(&mut lines, "joined")).await??;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = rss_kb(coordinator.process.pid());
    drop(client.stdin.take());
    let _ = client.wait().await;
    Ok((idle, loaded))
}

/// FANOUT: one session watched by 1, 100 and 1,000 viewers — latency at a steady 100 lines/s,
/// and delivered events/s when the worker floods — then the flood with 10 viewers; coordinator
/// CPU per delivered event for each.
async fn fanout(repeat: usize) -> anyhow::Result<()> {
    const STEADY: Pace = Pace {
        lines: 200,
        interval_secs: 0.01,
        warmup_secs: 3.0,
    };
    for viewers in [1, 100, 1000] {
        let (mut p50, mut p99, mut rate, mut cpu) = (vec![], vec![], vec![], vec![]);
        for _ in 0..repeat {
            let (r, _) = relay_run(1, viewers, 0, STEADY, &Load::default()).await?;
            p50.push(r.p50);
            p99.push(r.p99);
            rate.push(r.delivered_per_sec);
            cpu.push(r.cpu_us_per_delivery());
        }
        println!(
            "| FANOUT {viewers} viewer(s), 100 lines/s: print → client p50 / p99 ms; delivered events/s; coordinator CPU µs per delivered event | {} / {} | {} | {} |",
            stat(&p50),
            stat(&p99),
            stat(&rate),
            stat(&cpu)
        );
        let flood = (200_000 / viewers).clamp(2_000, 100_000);
        flood_row(&format!("{viewers} viewer(s)"), viewers, flood, repeat).await?;
    }
    flood_row("10 viewers", 10, 100_000, repeat).await
}

async fn flood_row(label: &str, viewers: usize, flood: usize, repeat: usize) -> anyhow::Result<()> {
    let (mut rate, mut cpu, mut evicted) = (vec![], vec![], 0);
    for _ in 0..repeat {
        let (r, _) = relay_run(1, viewers, flood, W2_PACE, &Load::default()).await?;
        rate.push(r.delivered_per_sec);
        cpu.push(r.cpu_us_per_delivery());
        evicted += r.evicted;
    }
    println!(
        "| FANOUT flood of {flood} lines, {label}: delivered events/s (all viewers); coordinator CPU µs per delivered event | {} | {} | {evicted} evictions, none lost |",
        stat(&rate),
        stat(&cpu)
    );
    Ok(())
}

/// CTRL: the control plane first. Event latency while 200 one-shot agents start at once on one
/// runner, and while two workers burn a core each, with workers at the runner's priority and no
/// start pacing ("before") against the defaults (nice 10, pacing), alternated in the same run;
/// then W1's throughput with both, bracketing each other.
async fn control_plane(repeat: usize, py: &str, w1: &str, tasks: usize) -> anyhow::Result<()> {
    const BURST: Pace = Pace {
        lines: 20,
        interval_secs: 0.1,
        warmup_secs: 0.0,
    };
    let before = || {
        vec![
            ("SWARMQ_WORKER_NICE", "0".to_owned()),
            ("SWARMQ_WORKER_MAX_STARTING", "0".to_owned()),
        ]
    };
    for (label, sessions, hogs, pace) in [
        ("200 one-shot agents starting at once", 100, 0, BURST),
        (
            "2 workers burning 100 % CPU, 10 sessions × 2 agents",
            10,
            2,
            W2_PACE,
        ),
    ] {
        let mut rows: [(Vec<f64>, Vec<f64>, Vec<f64>); 2] = Default::default();
        for _ in 0..repeat {
            for (i, runner_env) in [before(), vec![]].into_iter().enumerate() {
                let load = Load { hogs, runner_env };
                let (r, _) = relay_run(sessions, 1, 0, pace, &load).await?;
                rows[i].0.push(r.p50);
                rows[i].1.push(r.p99);
                rows[i].2.push(r.wall_secs);
            }
        }
        for (name, (p50, p99, wall)) in ["before: nice 0, no pacing", "after: defaults"]
            .iter()
            .zip(&rows)
        {
            println!(
                "| CTRL {label}, {name}: print → client p50 / p99 ms; all sessions done (s) | {} / {} | {} | | p50 ≤ 5 ms, p99 ≤ 50 ms |",
                stat(p50),
                stat(p99),
                stat(wall)
            );
        }
    }
    let mut rates: [Vec<f64>; 2] = Default::default();
    let cmd = format!("{py} {w1}");
    for _ in 0..repeat {
        for (i, runner_env) in [before(), vec![]].into_iter().enumerate() {
            rates[i].push(queue_rate_with(&cmd, tasks, 2, 1, &runner_env).await?.rate);
        }
    }
    println!(
        "| CTRL W1 TODOs/s with the defaults (nice 10, pacing) | {} | nice 0, no pacing: {} | {} | within 5 % |",
        stat(&rates[1]),
        stat(&rates[0]),
        ratio_stat(&rates[1], &rates[0])
    );
    Ok(())
}

/// Coordinator RSS (KB): idle, with `n` connected, joined, idle viewers, and at each of
/// `after` (seconds) once they all left.
async fn coordinator_memory_cycle(n: usize, after: &[u64]) -> anyhow::Result<Vec<u64>> {
    use tokio::io::AsyncBufReadExt;
    let redis = RedisServer::start_everysec();
    let coordinator =
        CoordinatorProcess::start(&redis.url(), &[("SWARMQ_PLANNER", "local"), UNCAPPED]).await;
    let id = coordinator.api().create_ok("one; two", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = coordinator.process.pid();
    let mut rss = vec![rss_kb(pid)];
    let mut client = latency_client(&coordinator.url, n, std::slice::from_ref(&id), true);
    let mut lines = tokio::io::BufReader::new(client.stdout.take().expect("stdout")).lines();
    tokio::time::timeout(Duration::from_secs(300), next_json(&mut lines, "joined")).await??;
    tokio::time::sleep(Duration::from_secs(2)).await;
    rss.push(rss_kb(pid));
    drop(client.stdin.take());
    let _ = client.wait().await;
    let left = Instant::now();
    for secs in after {
        tokio::time::sleep(Duration::from_secs(*secs).saturating_sub(left.elapsed())).await;
        rss.push(rss_kb(pid));
    }
    Ok(rss)
}

/// Coordinator RSS (KB) sampled every 500 ms while `frozen` viewers that stopped reading watch
/// a session flooding `flood` lines (and one healthy viewer follows it to the end).
async fn coordinator_memory_frozen(frozen: usize, flood: usize) -> anyhow::Result<Vec<u64>> {
    use tokio::io::AsyncBufReadExt;
    let redis = RedisServer::start_everysec();
    // The healthy viewer may itself be evicted by the flood and resume with `since`: the whole
    // flood stays replayable, so that it can still receive every event.
    let maxlen = (flood + 1000).to_string();
    let coordinator = CoordinatorProcess::start(
        &redis.url(),
        &[
            ("SWARMQ_PLANNER", "local"),
            UNCAPPED,
            ("SWARMQ_EVENTS_MAXLEN", &maxlen),
        ],
    )
    .await;
    let id = coordinator.api().create_ok("flood", 1).await;
    let mut stalled = Vec::new();
    for _ in 0..frozen {
        stalled.push(swarmq_testkit::StalledClient::join(&coordinator.url, &id, 0).await);
    }
    let mut healthy = latency_client(&coordinator.url, 1, std::slice::from_ref(&id), false);
    let mut lines = tokio::io::BufReader::new(healthy.stdout.take().expect("stdout")).lines();
    next_json(&mut lines, "joined").await?;
    let flood_s = flood.to_string();
    let _runner = stamp_runner(
        &redis.url(),
        &[
            ("BENCH_FLOOD", &flood_s),
            ("SWARMQ_WORKER_PASS_ENV", "BENCH_FLOOD"),
            ("SWARMQ_WORKER_MAX_EVENTS_PER_SEC", "10000000"),
            ("SWARMQ_EVENTS_MAXLEN", &maxlen),
        ],
    )
    .await;
    let pid = coordinator.process.pid();
    let summary = next_json(&mut lines, "summary");
    tokio::pin!(summary);
    let mut samples = vec![rss_kb(pid)];
    loop {
        tokio::select! {
            s = &mut summary => {
                let s = s?;
                anyhow::ensure!(s["flood"].as_u64() == Some(flood as u64), "the healthy viewer lost events: {s}");
                break;
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => samples.push(rss_kb(pid)),
        }
    }
    samples.push(rss_kb(pid));
    drop(stalled);
    Ok(samples)
}

/// Requests/s and latency percentiles (ms) of `n` requests from `concurrency` clients.
async fn http_load(url: String, post: bool, n: usize, concurrency: usize) -> (f64, f64, f64) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, url) = (client.clone(), next.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let t = Instant::now();
                let request = if post {
                    client
                        .post(&url)
                        .json(&serde_json::json!({"prompt": "bench", "agentCount": 2}))
                } else {
                    client.get(&url)
                };
                let response = request.send().await.expect("request");
                assert!(response.status().is_success(), "{}", response.status());
                let _ = response.bytes().await;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (rate, pct(0.5), pct(0.99))
}

/// DUR: W1 and W2 (10 sessions × 2 clients) against a primary with one replica, the durability
/// option on (`WAIT 1` after every transition) against off, alternating within each repeat.
async fn durability_cost(args: &Args, w1: &str) -> anyhow::Result<()> {
    let (mut rate, mut p50, mut p99) = ([vec![], vec![]], [vec![], vec![]], [vec![], vec![]]);
    for _ in 0..args.repeat {
        for (i, mode) in [1, 2].into_iter().enumerate() {
            DURABILITY.store(mode, Ordering::Relaxed);
            rate[i].push(queue_rate(w1, args.tasks, 2).await?.rate);
            let (r, _) = relay_run(10, 2, 0, W2_PACE, &Load::default()).await?;
            anyhow::ensure!(r.stamped == r.expected);
            p50[i].push(r.p50);
            p99[i].push(r.p99);
        }
    }
    DURABILITY.store(0, Ordering::Relaxed);
    println!(
        "| DUR W1 TODOs/s with one replica: option on (WAIT 1) vs off | {} | off {} | {} | |",
        stat(&rate[1]),
        stat(&rate[0]),
        ratio_stat(&rate[1], &rate[0])
    );
    println!(
        "| DUR W2 10 × 2 p50 / p99 ms with one replica: on vs off | {} / {} | off {} / {} | p99 {} | |",
        stat(&p50[1]),
        stat(&p99[1]),
        stat(&p50[0]),
        stat(&p99[0]),
        ratio_stat(&p99[1], &p99[0])
    );
    Ok(())
}

/// CPU ms the primaries (the one Redis, or the cluster's primaries) have used so far.
fn primaries_cpu_ms(redis: &Backend) -> f64 {
    let pids = redis
        .primaries()
        .iter()
        .filter_map(|n| n.pid())
        .collect::<Vec<_>>();
    pids.iter().map(|p| cpu_ms(*p as i32)).sum()
}

/// Each primary's share of the commands (%), and the largest deviation from an even share (%).
fn spread(per_primary: &[u64]) -> (Vec<f64>, f64) {
    let total = per_primary.iter().sum::<u64>().max(1) as f64;
    let even = 100.0 / per_primary.len().max(1) as f64;
    let shares: Vec<f64> = per_primary
        .iter()
        .map(|c| *c as f64 * 100.0 / total)
        .collect();
    let worst = shares
        .iter()
        .map(|s| (s - even).abs() * 100.0 / even)
        .fold(0.0, f64::max);
    (shares, worst)
}

/// The primaries' CPU (ms per s, all together) of a fresh Redis (or cluster) with nothing
/// connected, over 3 s: the fixed cost (cron, and on a cluster its gossip and replication links).
async fn idle_primaries_cpu() -> f64 {
    let redis = Backend::start().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = primaries_cpu_ms(&redis);
    tokio::time::sleep(Duration::from_secs(3)).await;
    (primaries_cpu_ms(&redis) - before) / 3.0
}

/// One topology's figures in the CLUSTER family, one entry per repeat.
#[derive(Default)]
struct TopologyRuns {
    rate: Vec<f64>,
    /// W1: commands per TODO, primaries' CPU ms per TODO, the worst deviation from an even
    /// spread over the primaries (%), and each run's shares.
    commands_per_todo: Vec<f64>,
    cpu_per_todo: Vec<f64>,
    worst: Vec<f64>,
    shares: Vec<String>,
    /// W1: each primary's share of the TODOs (its sessions'), and the largest deviation of a
    /// primary's commands per TODO it hosts from the mean (%): the spread with the luck of the
    /// session ids' hashing taken out.
    todo_shares: Vec<String>,
    worst_per_todo: Vec<f64>,
    /// W1: commands per second each primary executed, per run; and (last run) commands per
    /// TODO by command name.
    rates_per_primary: Vec<String>,
    by_command: String,
    /// W2 10 sessions × 2 clients: print → client ms.
    p50: Vec<f64>,
    p99: Vec<f64>,
    /// The flood: events/s at the client, commands and primaries' CPU µs per recorded event,
    /// each primary's share.
    flood: Vec<f64>,
    commands_per_event: Vec<f64>,
    cpu_us_per_event: Vec<f64>,
    /// The primaries' CPU with nothing connected (ms per s, all primaries), measured in a run
    /// of its own; and the CPU per TODO and per event less that idle cost.
    idle: Vec<f64>,
    net_cpu_per_todo: Vec<f64>,
    net_cpu_us_per_event: Vec<f64>,
    flood_shares: Vec<String>,
}

/// The flood of the CLUSTER family (W2's size).
const CLUSTER_FLOOD: usize = 100_000;

impl TopologyRuns {
    /// W1, W2 10 × 2 and the flood, once each, on the topology `CLUSTER` says.
    async fn add(&mut self, w1: &str, tasks: usize) -> anyhow::Result<()> {
        let idle = idle_primaries_cpu().await;
        self.idle.push(idle);
        let run = queue_rate(w1, tasks, 2).await?;
        self.net_cpu_per_todo
            .push(run.primary_cpu_per_todo - idle * run.elapsed / tasks as f64);
        let (shares, worst) = spread(&run.per_primary);
        self.rate.push(run.rate);
        self.commands_per_todo.push(run.commands_per_todo);
        self.cpu_per_todo.push(run.primary_cpu_per_todo);
        self.worst.push(worst);
        self.shares.push(format!("{shares:.0?}"));
        let per_sec = run.per_primary.iter().map(|c| *c as f64 / run.elapsed);
        self.rates_per_primary
            .push(format!("{:.0?}", per_sec.collect::<Vec<_>>()));
        let by_command = run
            .by_command
            .iter()
            .map(|(name, calls)| format!("{name} {:.2}", *calls as f64 / tasks as f64));
        self.by_command = by_command.collect::<Vec<_>>().join(", ");
        let todos: Vec<u64> = run.todos_per_primary.iter().map(|n| *n as u64).collect();
        self.todo_shares.push(format!("{:.0?}", spread(&todos).0));
        let per_todo: Vec<f64> = run
            .per_primary
            .iter()
            .zip(&todos)
            .map(|(c, t)| *c as f64 / (*t).max(1) as f64)
            .collect();
        let mean = per_todo.iter().sum::<f64>() / per_todo.len().max(1) as f64;
        let worst_per_todo = per_todo.iter().map(|v| (v - mean).abs() * 100.0 / mean);
        self.worst_per_todo.push(worst_per_todo.fold(0.0, f64::max));
        let (r, _) = relay_run(10, 2, 0, W2_PACE, &Load::default()).await?;
        anyhow::ensure!(r.stamped == r.expected);
        self.p50.push(r.p50);
        self.p99.push(r.p99);
        let (r, summary) = relay_run(1, 1, CLUSTER_FLOOD, W2_PACE, &Load::default()).await?;
        let secs = summary["floodSeconds"].as_f64().unwrap_or(f64::NAN);
        self.flood.push(r.stamped as f64 / secs);
        self.commands_per_event.push(r.cost.commands_per_event());
        let events = r.cost.events.max(1) as f64;
        self.cpu_us_per_event
            .push(r.cost.primary_cpu_ms * 1000.0 / events);
        let idle_ms = idle * r.cost.window_secs;
        self.net_cpu_us_per_event
            .push((r.cost.primary_cpu_ms - idle_ms) * 1000.0 / events);
        self.flood_shares
            .push(format!("{:.0?}", spread(&r.cost.per_primary).0));
        eprintln!(
            "CLUSTER run (cluster: {}, replica: {}): W1 {:.1} TODOs/s, shares {shares:.1?}, flood commands per primary {:?}",
            CLUSTER.load(Ordering::Relaxed),
            DURABILITY.load(Ordering::Relaxed),
            run.rate,
            r.cost.per_primary
        );
        Ok(())
    }
}

/// CLUSTER: W1, W2 (10 sessions × 2 clients) and the W2 flood on one Redis and on the 6-node
/// Redis Cluster (3 primaries, 3 replicas, `SWARMQ_QUEUE_SHARDS=3`), alternating within each
/// repeat; the commands each primary executed (`INFO commandstats` deltas) give the spread over
/// the primaries and the commands per TODO and per event, and the primaries' CPU gives what a
/// primary's core sustains (the capacity model in docs/operations.md).
async fn cluster_family(args: &Args, w1: &str) -> anyhow::Result<()> {
    let mut runs: [TopologyRuns; 3] = Default::default();
    for _ in 0..args.repeat {
        // One Redis; one Redis with a replica (what each of the cluster's primaries feeds);
        // the cluster.
        for (i, (cluster, durability)) in
            [(false, 0), (false, 1), (true, 0)].into_iter().enumerate()
        {
            CLUSTER.store(cluster, Ordering::Relaxed);
            DURABILITY.store(durability, Ordering::Relaxed);
            let added = runs[i].add(w1, args.tasks).await;
            CLUSTER.store(false, Ordering::Relaxed);
            DURABILITY.store(0, Ordering::Relaxed);
            added?;
        }
    }
    let [single, replicated, cluster] = &runs;
    println!(
        "| CLUSTER W1 TODOs/s: 6-node cluster (3 primaries, 3 queue shards) vs one Redis | {} | one Redis {} | {} | |",
        stat(&cluster.rate),
        stat(&single.rate),
        ratio_stat(&cluster.rate, &single.rate)
    );
    let within = cluster.worst.iter().filter(|w| **w <= 20.0).count();
    println!(
        "| CLUSTER W1 commands per primary: largest deviation from an even third (%) | {} | shares per run (%): {}; the primaries' shares of the TODOs (their sessions'): {} | within ±20 % in {within} of {} runs | ±20 % |",
        stat(&cluster.worst),
        cluster.shares.join(", "),
        cluster.todo_shares.join(", "),
        cluster.worst.len()
    );
    println!(
        "| CLUSTER W1 commands per TODO hosted, per primary: largest deviation from the mean (%) | {} | commands/s per primary, per run: {} (one Redis: {}) | | |",
        stat(&cluster.worst_per_todo),
        cluster.rates_per_primary.join(", "),
        single.rates_per_primary.join(", ")
    );
    println!(
        "| CLUSTER W2 10 × 2 print → client p50 / p99 ms: cluster vs one Redis | {} / {} | one Redis {} / {} | p99 {} | |",
        stat(&cluster.p50),
        stat(&cluster.p99),
        stat(&single.p50),
        stat(&single.p99),
        ratio_stat(&cluster.p99, &single.p99)
    );
    println!(
        "| CLUSTER W2 flood of {CLUSTER_FLOOD} lines, events/s at the client: cluster vs one Redis | {} | one Redis {} | {} | flood's commands per primary (%): {} |",
        stat(&cluster.flood),
        stat(&single.flood),
        ratio_stat(&cluster.flood, &single.flood),
        cluster.flood_shares.join(", ")
    );
    println!(
        "| CLUSTER one Redis with a replica (no WAIT): W1 TODOs/s; W2 10 × 2 p50 / p99 ms; flood events/s | {} | {} / {} | {} | |",
        stat(&replicated.rate),
        stat(&replicated.p50),
        stat(&replicated.p99),
        stat(&replicated.flood)
    );
    for (name, r) in [
        ("one Redis", single),
        ("one Redis with a replica", replicated),
        ("cluster", cluster),
    ] {
        println!(
            "| CLUSTER cost, {name}: commands per TODO (W1) / per event (flood); primaries' CPU ms per TODO / µs per event (idle cost included) | {} / {} | {} / {} | idle: {} ms/s | |",
            stat(&r.commands_per_todo),
            stat(&r.commands_per_event),
            stat(&r.cpu_per_todo),
            stat(&r.cpu_us_per_event),
            stat(&r.idle)
        );
        println!(
            "| CLUSTER capacity, {name}: primaries' CPU ms per TODO / µs per event less the idle cost; so one primary core sustains TODOs/s / events/s | {} / {} | {:.0} / {:.0} | | |",
            stat(&r.net_cpu_per_todo),
            stat(&r.net_cpu_us_per_event),
            1000.0 / median(&mut r.net_cpu_per_todo.clone()),
            1e6 / median(&mut r.net_cpu_us_per_event.clone())
        );
    }
    for (name, r) in [("one Redis", single), ("cluster", cluster)] {
        println!(
            "\nCLUSTER W1 commands per TODO by command, {name} (last run): {}",
            r.by_command
        );
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wants = |w: &str| args.only.as_deref().is_none_or(|o| w.starts_with(o));
    let py = python();
    let w1 = repo_root()
        .join("bench/workers/w1.py")
        .display()
        .to_string();
    let tiny = repo_root().join("target/bench-tiny").display().to_string();
    let status = std::process::Command::new("cc")
        .args(["-O2", "-o", &tiny])
        .arg(repo_root().join("bench/workers/tiny.c"))
        .status()?;
    anyhow::ensure!(status.success(), "cc could not build bench/workers/tiny.c");
    let p = cores();
    println!(
        "machine: {p} cores; {} TODOs per run; median of {} runs (min–max)\n",
        args.tasks, args.repeat
    );
    println!(
        "| workload | swarmq | baseline | ratio to the baseline of the same repeat: median (min–max) | target |\n|---|---|---|---|---|"
    );
    let mut cost = None;
    let mut w4_cost: Option<QueueRun> = None;
    // Medians of the raw spawn baselines of W1 and W4: machine CPU busy share, CPU ms per worker.
    let (mut w1_raw, mut w4_raw) = ((0.0, 0.0), (0.0, 0.0));
    if wants("W1") {
        let cmd = [py.clone(), w1.clone()];
        let mut raw = Baselines::default();
        raw.measure(&cmd, args.tasks, p).await;
        let (mut queue, mut persistent) = (Vec::new(), Vec::new());
        for _ in 0..args.repeat {
            let run = queue_rate(&format!("{py} {w1}"), args.tasks, 2).await?;
            queue.push(run.rate);
            cost = Some(run);
            persistent.push(
                queue_rate(&format!("{py} {w1} --persistent"), args.tasks, 4)
                    .await?
                    .rate,
            );
            raw.measure(&cmd, args.tasks, p).await;
        }
        w1_raw = raw.cpu();
        let around = raw.around();
        println!(
            "| W1 TODOs/s, Python worker, one process per TODO | {} | raw spawn {} | {} | ≥ 0.90 |",
            stat(&queue),
            stat(&raw.rates),
            ratio_stat(&queue, &around)
        );
        println!(
            "| W1b TODOs/s, persistent worker, 4 TODOs per agent | {} | W1 raw spawn {} | {}× | ≥ 2× |",
            stat(&persistent),
            stat(&raw.rates),
            ratio_stat(&persistent, &around)
        );
    }
    if wants("W4") {
        let cmd = std::slice::from_ref(&tiny);
        let mut raw = Baselines::default();
        raw.measure(cmd, args.tasks, p).await;
        let mut queue = Vec::new();
        for _ in 0..args.repeat {
            let run = queue_rate(&tiny, args.tasks, 2).await?;
            queue.push(run.rate);
            w4_cost = Some(run);
            raw.measure(cmd, args.tasks, p).await;
        }
        w4_raw = raw.cpu();
        println!(
            "| W4 TODOs/s, trivial compiled worker | {} | raw spawn {} | {} | ≥ 0.80 |",
            stat(&queue),
            stat(&raw.rates),
            ratio_stat(&queue, &raw.around())
        );
    }
    if wants("W3") {
        let (mut posts, mut p50s, mut p99s, mut health) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.repeat {
            let redis = RedisServer::start_everysec();
            let fake = FakeAnthropic::start(vec![]).await;
            let coordinator = CoordinatorProcess::start(
                &redis.url(),
                &[
                    ("ANTHROPIC_API_KEY", swarmq_testkit::anthropic::API_KEY),
                    UNCAPPED,
                    ("ANTHROPIC_BASE_URL", fake.url()),
                    ("SWARMQ_CREATE_RATE_PER_MIN", "0"),
                ],
            )
            .await;
            let (rate, p50, p99) =
                http_load(format!("{}/api/sessions", coordinator.url), true, 2000, 50).await;
            posts.push(rate);
            p50s.push(p50);
            p99s.push(p99);
            health.push(
                http_load(format!("{}/healthz", coordinator.url), false, 2000, 50)
                    .await
                    .0,
            );
        }
        println!(
            "| W3 POST /api/sessions/s at 50 concurrent (instant fake LLM) | {} | GET /healthz {} | {:.2} | ≥ 1,000/s |",
            stat(&posts),
            stat(&health),
            median(&mut posts.clone()) / median(&mut health.clone())
        );
        println!(
            "| W3 POST latency p50 / p99 (ms) | {} / {} | | | p99 ≤ 20 ms |",
            stat(&p50s),
            stat(&p99s)
        );
    }
    if wants("W2") {
        for (sessions, clients, p99_target) in
            [(10, 2, "p50 ≤ 5 ms, p99 ≤ 25 ms"), (50, 5, "p99 ≤ 100 ms")]
        {
            let (mut p50, mut p95, mut p99, mut base50, mut base99) =
                (vec![], vec![], vec![], vec![], vec![]);
            let mut counted = 0;
            for _ in 0..args.repeat {
                let (r, _) = relay_run(sessions, clients, 0, W2_PACE, &Load::default()).await?;
                p50.push(r.p50);
                p95.push(r.p95);
                p99.push(r.p99);
                base50.push(r.baseline.0);
                base99.push(r.baseline.2);
                counted += r.stamped;
                anyhow::ensure!(r.stamped == r.expected);
            }
            println!(
                "| W2 worker print → client, {sessions} sessions × {clients} clients: p50 / p95 / p99 ms | {} / {} / {} | Redis pub/sub p50 {} / p99 {} | | {p99_target} ({counted} events, none lost) |",
                stat(&p50),
                stat(&p95),
                stat(&p99),
                stat(&base50),
                stat(&base99)
            );
        }
        let mut rates = Vec::new();
        let flood = 100_000;
        for _ in 0..args.repeat {
            let (r, summary) = relay_run(1, 1, flood, W2_PACE, &Load::default()).await?;
            let secs = summary["floodSeconds"].as_f64().unwrap_or(f64::NAN);
            rates.push(r.stamped as f64 / secs);
        }
        println!(
            "| W2 flood: one worker printing {flood} lines as fast as it can, events/s at the client | {} | | | ≥ 20,000/s, zero loss (all {flood} received) |",
            stat(&rates)
        );
    }
    if wants("DUR") {
        durability_cost(&args, &format!("{py} {w1}")).await?;
    }
    if wants("CLUSTER") {
        cluster_family(&args, &format!("{py} {w1}")).await?;
    }
    if wants("MEM") {
        let (mut idle, mut loaded) = (Vec::new(), Vec::new());
        for _ in 0..args.repeat {
            let (i, l) = coordinator_memory(1000).await?;
            idle.push(i as f64 / 1024.0);
            loaded.push(l as f64 / 1024.0);
        }
        println!(
            "| coordinator RSS MB with 1,000 connected Socket.IO clients | {} | idle {} | | ≤ 50 MB |",
            stat(&loaded),
            stat(&idle)
        );
        let after = [5, 15, 30, 60];
        let cycle = coordinator_memory_cycle(10_000, &after).await?;
        let mb = |kb: u64| format!("{:.1}", kb as f64 / 1024.0);
        let gone: Vec<String> = after
            .iter()
            .zip(&cycle[2..])
            .map(|(s, kb)| format!("{s} s: {}", mb(*kb)))
            .collect();
        println!(
            "| coordinator RSS MB with 10,000 connected, joined, idle viewers (one run) | {} | idle {}; after they left: {} | | ≤ 100 MB; ≤ 20 MB within 1 min |",
            mb(cycle[1]),
            mb(cycle[0]),
            gone.join(", ")
        );
        let frozen = coordinator_memory_frozen(100, 400_000).await?;
        let quarters: Vec<String> = (1..=4)
            .map(|q| mb(frozen[(frozen.len() - 1) * q / 4]))
            .collect();
        println!(
            "| coordinator RSS MB while 100 viewers of a session flooding 400,000 lines stopped reading (one run, sampled every 0.5 s) | max {} | at start {}; at each quarter of the flood {} | | bounded (not growing with the flood) |",
            mb(frozen.iter().copied().max().unwrap_or(0)),
            mb(frozen[0]),
            quarters.join(" / ")
        );
        eprintln!("frozen-viewer RSS series (KB, every 0.5 s): {frozen:?}");
    }
    if wants("FANOUT") {
        fanout(args.repeat).await?;
    }
    if wants("UI") {
        ui_family(args.repeat).await?;
    }
    if wants("PRELOAD") {
        preload_family(&args.agents, args.cold_max).await?;
    }
    if wants("CTRL") {
        control_plane(args.repeat, &py, &w1, args.tasks).await?;
    }
    if wants("SCALE") {
        // Every runner brings `p` slots, so n runners run n × p workers at once: on this one
        // machine that is n × p processes on p cores. The baseline is the raw spawn rate at that
        // same parallelism, bracketing each run like W1.
        let cmd = [py.clone(), w1.clone()];
        for runners in [1, 2, 4] {
            let mut raw = Baselines::default();
            raw.measure(&cmd, args.tasks, p * runners).await;
            let mut rates = Vec::new();
            let mut shares = String::new();
            for _ in 0..args.repeat {
                let run =
                    queue_rate_with(&format!("{py} {w1}"), args.tasks, 2, runners, &[]).await?;
                rates.push(run.rate);
                shares = format!("{:?}", run.per_runner);
                raw.measure(&cmd, args.tasks, p * runners).await;
            }
            println!(
                "| scale-out: W1 with {runners} runner process(es), slots = cores each ({} workers at once) | {} TODOs/s | raw spawn at {} at once {} | {} | TODOs per runner (last run): {shares} |",
                p * runners,
                stat(&rates),
                p * runners,
                stat(&raw.rates),
                ratio_stat(&rates, &raw.around())
            );
        }
    }
    let cpu_line = |name: &str, run: &QueueRun, (raw_busy, raw_worker): (f64, f64)| {
        let cpu = &run.cpu_per_todo;
        println!(
            "{name}: CPU ms per TODO — runner {:.2}, coordinator {:.2}, redis-server {:.2}, the worker process {:.2} (raw spawn baseline: {:.2}); wall time per TODO per slot {:.2} ms; machine CPU busy {:.0} % (raw spawn baseline: {:.0} %)",
            cpu[0],
            cpu[1],
            cpu[2],
            run.worker_cpu,
            raw_worker,
            p as f64 * 1000.0 / run.rate,
            run.busy * 100.0,
            raw_busy * 100.0
        );
    };
    println!();
    if let Some(run) = &cost {
        cpu_line("W1 (one run)", run, w1_raw);
    }
    if let Some(run) = &w4_cost {
        cpu_line("W4 (last run)", run, w4_raw);
    }
    if let Some(run) = cost {
        println!(
            "\nRedis per TODO (W1, one run): {:.1} commands executed, {:.2} of them script calls (EVALSHA; the commands a script runs count too)",
            run.commands_per_todo, run.scripts_per_todo
        );
        for (name, calls) in &run.by_command {
            println!(
                "  {name:<12} {:>6.2} per TODO",
                *calls as f64 / args.tasks as f64
            );
        }
        println!(
            "\nRSS: runner idle {} KB, busy (max) {} KB; coordinator after the run {} KB",
            run.runner_rss_idle_kb, run.runner_rss_busy_kb, run.coordinator_rss_kb
        );
    }
    Ok(())
}

/// Set in the page before the dashboard's scripts: times every stamped line (`t=<ms>`) from the
/// worker's print to the animation frame that inserts it into its agent's feed.
const RENDER_PROBE: &str = r#"
window.__lat = [];
window.__long = [];
new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push([Math.round(e.startTime), Math.round(e.duration)]); }).observe({ type: 'longtask', buffered: true });
window.swarmqRenderProbe = (texts) => {
  const now = performance.timeOrigin + performance.now();
  for (const t of texts) if (t.startsWith('t=')) window.__lat.push(now - Number(t.slice(2)));
};"#;

const PAGE_SUMMARY: &str = r#"(() => {
  const s = [...window.__lat].sort((a, b) => a - b);
  const at = (p) => s[Math.min(s.length - 1, Math.floor(s.length * p))];
  return { n: s.length, p50: at(0.5), p90: at(0.9), p95: at(0.95), p99: at(0.99), max: s[s.length - 1],
    longTasks: window.__long.length, longMs: window.__long.reduce((a, b) => a + b[1], 0), longest: [...window.__long].sort((a, b) => b[1] - a[1]).slice(0, 8),
    heapMb: performance.memory ? performance.memory.usedJSHeapSize / 1048576 : null,
    nodes: document.getElementsByTagName('*').length };
})()"#;

struct UiRun {
    page: serde_json::Value,
    client: serde_json::Value,
    /// Stamped lines per second per agent, as the client received them.
    per_agent_rate: f64,
    load_before: String,
}

/// One session of 4 agents, each printing 200 stamped lines/s for 30 s, watched at once by the
/// dashboard (headless Chromium) and by W2's npm Socket.IO client.
async fn ui_run() -> anyhow::Result<UiRun> {
    use tokio::io::AsyncBufReadExt;
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let redis = RedisServer::start_everysec();
    let coordinator = CoordinatorProcess::start(&redis.url(), &[("SWARMQ_PLANNER", "local")]).await;
    let id = coordinator.api().create_ok("a; b; c; d", 4).await;
    let mut client = latency_client(&coordinator.url, 1, std::slice::from_ref(&id), false);
    let mut lines = tokio::io::BufReader::new(client.stdout.take().expect("stdout")).lines();
    next_json(&mut lines, "joined").await?;
    let mut browser = swarmq_testkit::Browser::start("bench-ui");
    browser
        .command(serde_json::json!({"cmd": "init", "js": RENDER_PROBE}))
        .await
        .map_err(anyhow::Error::msg)?;
    browser
        .open("main", &format!("{}/sessions/{id}", coordinator.url))
        .await;
    browser
        .wait("main", "document.body.dataset.joined === '1'")
        .await;
    let _runner = stamp_runner(
        &redis.url(),
        &[
            ("SWARMQ_RUNNER_SLOTS", "4"),
            ("BENCH_WARMUP", "3"),
            ("BENCH_LINES", "6000"),
            ("BENCH_RATE", "200"),
            (
                "SWARMQ_WORKER_PASS_ENV",
                "BENCH_WARMUP,BENCH_LINES,BENCH_RATE",
            ),
            ("SWARMQ_WORKER_MAX_EVENTS_PER_SEC", "10000000"),
        ],
    )
    .await;
    let client =
        tokio::time::timeout(Duration::from_secs(300), next_json(&mut lines, "summary")).await??;
    browser
        .wait_for(
            "main",
            "document.querySelector('#summary [data-status]')?.dataset.status === 'completed' && window.__lat.length >= 24000",
            Duration::from_secs(120),
        )
        .await;
    let page = browser.eval("main", PAGE_SUMMARY).await;
    let stamped = client["stamped"].as_f64().unwrap_or(0.0);
    anyhow::ensure!(
        stamped == 24_000.0,
        "the client received {stamped} of 24,000 lines"
    );
    let secs = client["stampSeconds"].as_f64().unwrap_or(f64::NAN);
    Ok(UiRun {
        page,
        client,
        per_agent_rate: stamped / 4.0 / secs,
        load_before,
    })
}

async fn ui_family(repeat: usize) -> anyhow::Result<()> {
    let (mut page50, mut page99, mut client50, mut client99, mut rates) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut last = None;
    for _ in 0..repeat {
        let run = ui_run().await?;
        let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        page50.push(f(&run.page, "p50"));
        page99.push(f(&run.page, "p99"));
        client50.push(f(&run.client, "p50"));
        client99.push(f(&run.client, "p99"));
        rates.push(run.per_agent_rate);
        eprintln!(
            "UI run: page {} client {} load before {}",
            run.page,
            run.client,
            run.load_before.trim()
        );
        last = Some(run);
    }
    let gap: Vec<f64> = page99.iter().zip(&client99).map(|(p, c)| p - c).collect();
    println!(
        "| UI worker print → rendered in the dashboard (headless Chromium), 4 agents × {} lines/s × 30 s: p50 / p99 ms | {} / {} | the npm Socket.IO client (W2's) on the same session, same run: p50 {} / p99 {} | page p99 − client p99: {} ms | p99 within 50 ms of W2's p99 |",
        stat(&rates),
        stat(&page50),
        stat(&page99),
        stat(&client50),
        stat(&client99),
        stat(&gap)
    );
    if let Some(run) = last {
        println!(
            "UI (last run): the page held {} DOM elements and {} MB of JS heap after 24,000 lines; load average before the run: {}",
            run.page["nodes"],
            run.page["heapMb"]
                .as_f64()
                .map_or("?".into(), |m| format!("{m:.1}")),
            run.load_before.trim()
        );
    }
    Ok(())
}

/// The children of `parent` (from a scan of /proc).
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                == Some(parent)
        })
        .collect()
}

/// Proportional set size of a process (shared pages divided among their users), in KB.
fn pss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// PRELOAD: worker processes whose PSS is read per sampling round, at most.
const PSS_SAMPLE: usize = 32;

/// One PRELOAD run: `n` agents of the real worker, claimed at once.
struct AgentLoad {
    /// Per agent: ms from its `task:assigned` to its first `agent:reasoning`.
    first_reasoning: Vec<f64>,
    /// From the first `task:assigned` to the last agent's first `agent:reasoning`.
    burst_secs: f64,
    /// Per agent start: its worker process's own CPU (user + system, from the fork or exec)
    /// read when the agent's first `agent:reasoning` is published (see [`start_cpu_ms`]).
    start_cpu_ms: Vec<f64>,
    /// Preloaded: the server's own CPU during the burst (accepting, forking, reaping) / n.
    server_ms_per_agent: f64,
    /// CPU of the worker processes over their whole life (start, one streamed call, exit) / n.
    cpu_ms_per_agent: f64,
    /// PSS per worker process: the mean of each one's peak. And how many were sampled.
    pss_mb_per_agent: f64,
    sampled: usize,
    /// Preloaded: the server's own PSS and CPU (its imports), counted once.
    server_pss_mb: f64,
    server_cpu_ms: f64,
}

/// The model the PRELOAD agents talk to: first text after 0.5 s, then 10 lines 0.3 s apart.
const MODEL_PACE: swarmq_testkit::Streaming = swarmq_testkit::Streaming {
    first_delay: Duration::from_millis(500),
    chunks: 10,
    interval: Duration::from_millis(300),
};

/// CPU (user + system) a process has used so far, in ms: from `/proc/<pid>/schedstat` (ns, the
/// scheduler's own count) where the kernel has it, else from `/proc/<pid>/stat` (whole clock
/// ticks: 10 ms steps, too coarse for one start).
fn start_cpu_ms(pid: i32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|ns| ns / 1e6)
        .unwrap_or_else(|| cpu_ms(pid))
}

/// Which worker process serves which agent, from the runner's `worker started` debug lines
/// (`pid`, and `agent_id` in their span list), read as the runner logs them.
struct WorkerPids {
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    read: usize,
    by_agent: std::collections::HashMap<String, i32>,
}

impl WorkerPids {
    fn pid(&mut self, agent: &str) -> Option<i32> {
        if !self.by_agent.contains_key(agent) {
            let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
            for line in &logs[self.read..] {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                if v["message"] != "worker started" {
                    continue;
                }
                let spans = v["spans"].as_array().map(Vec::as_slice).unwrap_or_default();
                let id = spans.iter().find_map(|s| s["agent_id"].as_str());
                if let (Some(id), Some(pid)) = (id, v["pid"].as_i64()) {
                    self.by_agent.insert(id.to_owned(), pid as i32);
                }
            }
            self.read = logs.len();
        }
        self.by_agent.get(agent).copied()
    }
}

/// What the bench saw of one agent: when its first `task:assigned` and first `agent:reasoning`
/// were published (ms, bench clock), and its worker's CPU at that first reasoning.
#[derive(Default)]
struct FirstEvents {
    assigned: f64,
    reasoning: f64,
    start_cpu_ms: Option<f64>,
}

/// Per agent id: its [`FirstEvents`], until `n` agents have reasoned.
async fn watch_first_events(
    redis_url: String,
    n: usize,
    mut pids: WorkerPids,
) -> anyhow::Result<std::collections::HashMap<String, FirstEvents>> {
    use futures_util::StreamExt;
    let client = redis::Client::open(redis_url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe("swarmq:{*}:live").await?;
    let mut seen: std::collections::HashMap<String, FirstEvents> = Default::default();
    let mut reasoned = 0;
    let mut messages = pubsub.on_message();
    while reasoned < n {
        let Some(msg) = messages.next().await else {
            anyhow::bail!("pub/sub ended");
        };
        let now = wall_ms();
        let v: serde_json::Value = serde_json::from_slice(msg.get_payload_bytes())?;
        let Some(agent) = v["data"]["agentId"].as_str() else {
            continue;
        };
        let entry = seen.entry(agent.to_owned()).or_default();
        match v["event"].as_str() {
            Some("task:assigned") if entry.assigned == 0.0 => entry.assigned = now,
            Some("agent:reasoning") if entry.reasoning == 0.0 => {
                entry.reasoning = now;
                entry.start_cpu_ms = pids.pid(agent).map(start_cpu_ms);
                reasoned += 1;
            }
            _ => {}
        }
    }
    Ok(seen)
}

/// PRELOAD: `n` agents (sessions of 8, one TODO each) of `workers/worker.py` online, against the
/// streaming fake model, on one runner with `n` slots, started `mode` (cold or preload).
async fn agent_load(n: usize, mode: &str) -> anyhow::Result<AgentLoad> {
    let redis = RedisServer::start_everysec();
    let fake = FakeAnthropic::start_streaming(MODEL_PACE).await;
    let coordinator = CoordinatorProcess::start(
        &redis.url(),
        &[
            ("SWARMQ_PLANNER", "local"),
            ("SWARMQ_CREATE_RATE_PER_MIN", "0"),
            ("SWARMQ_MAX_AGENTS", "8"),
        ],
    )
    .await;
    let (slots, cwd) = (n.to_string(), repo_root().display().to_string());
    let runner = RunnerProcess::start(
        &redis.url(),
        &format!("{} workers/worker.py", python()),
        &[
            ("SWARMQ_RUNNER_SLOTS", &slots),
            ("SWARMQ_WORKER_CWD", &cwd),
            ("SWARMQ_WORKER_START", mode),
            // This family measures starts, not priorities: on a shared host niced workers would
            // also yield to everyone else's jobs (docs/benchmarks.md, CTRL).
            ("SWARMQ_WORKER_NICE", "0"),
            // `worker started` (pid, agent) lines: which process to read a start's CPU from.
            ("RUST_LOG", "info,swarmq_runner::task=debug"),
            ("ANTHROPIC_API_KEY", swarmq_testkit::anthropic::API_KEY),
            ("ANTHROPIC_BASE_URL", fake.url()),
            (
                "SWARMQ_WORKER_PASS_ENV",
                "ANTHROPIC_API_KEY,ANTHROPIC_BASE_URL",
            ),
        ],
    )
    .await;
    let parent = if mode == "preload" {
        let ready = runner
            .process
            .wait_log("worker server ready", Duration::from_secs(120))
            .await;
        ready["pid"].as_i64().unwrap_or(0) as i32
    } else {
        runner.process.pid()
    };
    let pids = WorkerPids {
        logs: runner.process.log_lines(),
        read: 0,
        by_agent: Default::default(),
    };
    let watcher = tokio::spawn(watch_first_events(redis.url(), n, pids));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (cpu_before, server_cpu_before) = (children_cpu_ms(parent), cpu_ms(parent));
    let api = coordinator.api();
    let mut ids = Vec::new();
    for size in (0..n).step_by(8).map(|i| (n - i).min(8)) {
        ids.push(
            api.create_ok(&vec!["x"; size].join("; "), size as u32)
                .await,
        );
    }
    // Each worker's own peak PSS: workers start and end at different times. For preloaded ones
    // this is conservative (a child's share of the server's pages is largest when few share).
    // At most PSS_SAMPLE workers per round (a different share each round): reading one walks
    // its page tables, and reading all 400 took ~1 s of the very CPU the burst is timed on
    // (0.9 s longer bursts, measured).
    let mut peaks: std::collections::HashMap<i32, u64> = Default::default();
    let mut round = 0;
    while !watcher.is_finished() {
        let children = children_of(parent);
        let step = children.len().div_ceil(PSS_SAMPLE).max(1);
        for &pid in children.iter().skip(round % step).step_by(step) {
            let peak = peaks.entry(pid).or_default();
            *peak = (*peak).max(pss_kb(pid));
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let (best, pss) = (peaks.len(), peaks.values().sum::<u64>());
    let seen = watcher.await??;
    for id in &ids {
        api.wait_finished(id, Duration::from_secs(600)).await;
    }
    while !children_of(parent).is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let server_burst_ms = cpu_ms(parent) - server_cpu_before;
    let first_assigned = seen.values().map(|v| v.assigned).fold(f64::MAX, f64::min);
    let last_reasoning = seen.values().map(|v| v.reasoning).fold(0.0, f64::max);
    Ok(AgentLoad {
        first_reasoning: seen.values().map(|v| v.reasoning - v.assigned).collect(),
        burst_secs: (last_reasoning - first_assigned) / 1000.0,
        start_cpu_ms: seen.values().filter_map(|v| v.start_cpu_ms).collect(),
        server_ms_per_agent: if mode == "preload" {
            server_burst_ms / n as f64
        } else {
            0.0
        },
        cpu_ms_per_agent: (children_cpu_ms(parent) - cpu_before) / n as f64,
        pss_mb_per_agent: pss as f64 / 1024.0 / best.max(1) as f64,
        sampled: best,
        server_pss_mb: if mode == "preload" {
            pss_kb(parent) as f64 / 1024.0
        } else {
            0.0
        },
        server_cpu_ms: if mode == "preload" {
            server_cpu_before
        } else {
            0.0
        },
    })
}

/// PRELOAD: cold beside preloaded starts of the real worker at each size (cold only up to
/// `cold_max` agents: each cold agent costs ~1.5 s of CPU and ~70 MB).
async fn preload_family(sizes: &[usize], cold_max: usize) -> anyhow::Result<()> {
    for &n in sizes {
        for mode in ["cold", "preload"] {
            if mode == "cold" && n > cold_max {
                continue;
            }
            let run = agent_load(n, mode).await?;
            let (p50, _, p99) = percentiles(run.first_reasoning.clone());
            let (start_p50, _, start_p99) = if run.start_cpu_ms.is_empty() {
                (f64::NAN, f64::NAN, f64::NAN) // no `worker started` line was read
            } else {
                percentiles(run.start_cpu_ms.clone())
            };
            let start_mean =
                run.start_cpu_ms.iter().sum::<f64>() / run.start_cpu_ms.len().max(1) as f64;
            let server = if mode == "preload" {
                format!(
                    "; server once: PSS {:.1} MB, CPU {:.0} ms; server during the burst: {:.2} ms per agent (accept, fork, reap)",
                    run.server_pss_mb, run.server_cpu_ms, run.server_ms_per_agent
                )
            } else {
                String::new()
            };
            println!(
                "| PRELOAD {n} agents, {mode}: task:assigned → first agent:reasoning p50 / p99 ms; all working (s); CPU ms per agent START (its process at its first agent:reasoning, mean; p50 / p99; {} of {n} read); CPU ms per agent (whole worker life); PSS MB per agent (peak of each of {} sampled){server} | {p50:.0} / {p99:.0} | {:.2} | {start_mean:.1} ({start_p50:.1} / {start_p99:.1}) | {:.1} | {:.1} | ≤ 20 ms CPU per start, ≤ 15 MB PSS; 400 working within 5 s |",
                run.start_cpu_ms.len(),
                run.sampled,
                run.burst_secs,
                run.cpu_ms_per_agent,
                run.pss_mb_per_agent
            );
        }
    }
    Ok(())
}
