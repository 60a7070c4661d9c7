//! swarmq runner: the daemon operators start on every worker host. It claims agent jobs from the
//! Redis ready list, runs each agent's worker process, relays the worker's stdout as events, and
//! records every transition through the shared Lua scripts.
//!
//! # Layout
//! - [`config`]: the operator settings (clap).
//! - this file: [`Runner`] — registration, the claiming slots, drain and shutdown.
//! - [`agent`]: the agent loop for one claimed job (next TODO, run it, record it, repeat).
//! - [`task`]: one TODO on the agent's worker: hand it over, relay the worker's lines.
//! - [`worker`]: worker processes (process group, minimal env, bounded lines, kill).
//! - [`launcher`]: starting them cold or forked from the preloaded Python server.
//! - [`memory`]: per-agent memory (PSS) in the metrics; the default slots of preloaded runners.
//! - [`persist`](mod@persist): retrying a Redis call through a blip.
//! - [`lease`]: registration and the heartbeat, with the duties on its beat (reaping dead
//!   runners is `swarmq_shared::reaper`).
//! - [`control`]: cancel notifications; [`orphans`]: claimed jobs no slot works.
//! - [`http`]: the optional `/metrics`, `/healthz`, `/readyz` listener.
//! - [`ctx`]: what the tasks share, and the runner's counters.

pub mod agent;
pub mod config;
pub mod control;
pub mod control_sharded;
pub mod ctx;
pub mod http;
pub mod launcher;
pub mod lease;
pub mod memory;
pub mod orphans;
pub mod persist;
pub mod task;
pub mod worker;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use swarmq_shared::backoff::Backoff;
use swarmq_shared::transitions::RequeueJob;
use swarmq_shared::{AgentJob, RunnerId};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use config::Config;

use crate::agent::AgentEnd;
use crate::ctx::Ctx;
use crate::launcher::{Preloader, StartMode};
use crate::persist::persist;
use crate::worker::WorkerSpec;

/// How long one BLMOVE waits before the slot checks whether it should stop.
const CLAIM_BLOCK: Duration = Duration::from_secs(2);
/// The longest wait between attempts to open a claiming connection: every slot retries, so a
/// runner with many slots must not hammer a Redis that is down.
const CLAIM_RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How long a slot keeps trying to update its claimed list through a Redis outage: past it the
/// job stays there, and the reaper hands it back once this runner's lease expires.
const CLAIMED_UPDATE_LIMIT: Duration = Duration::from_secs(15);
/// Environment names every worker gets from the contract; pass-through cannot override them.
const CONTRACT_ENV: [&str; 7] = [
    "SESSION_ID",
    "AGENT_ID",
    "TASK_ID",
    "TASK_DESCRIPTION",
    "SOCKET_URL",
    "E2B_API_KEY",
    "DEDALUS_API_KEY",
];

pub struct Runner {
    ctx: Arc<Ctx>,
}

impl Runner {
    pub fn build(mut config: Config) -> anyhow::Result<Self> {
        let store = config.common.store().map_err(anyhow::Error::msg)?;
        let cwd = config.worker_cwd.canonicalize().with_context(|| {
            format!(
                "SWARMQ_WORKER_CWD {} is not an existing directory",
                config.worker_cwd.display()
            )
        })?;
        let mut spec = WorkerSpec::new(
            &config.worker_cmd,
            cwd,
            worker_env(&config)?,
            config.max_line_bytes as usize,
        )
        .context("SWARMQ_WORKER_CMD is empty")?;
        spec.nice = config.worker_nice;
        check_program(&spec)?;
        let preloader = preloader(&config, &spec)?;
        if preloader.is_some() && config.slots.is_none() {
            let cpus = config.slots();
            config.slots = Some(memory::preloaded_slots(cpus) as u32);
        }
        let runner = RunnerId::generate(&hostname());
        Ok(Self {
            ctx: Arc::new(Ctx::new(store, config, runner, spec, preloader)),
        })
    }

    pub fn id(&self) -> &RunnerId {
        &self.ctx.runner
    }

    /// Runs until `shutdown` fires, then drains: stops claiming, lets workers finish their TODO
    /// within the drain period, kills what is left, hands unfinished agents back, deregisters.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let ctx = self.ctx;
        let config = &ctx.config;
        tracing::info!(
            runner_id = %ctx.runner,
            slots = config.slots(),
            worker = %config.worker_cmd,
            worker_start = ?config.worker_start,
            worker_nice = config.worker_nice,
            max_starting = ?config.max_starting(),
            cwd = %ctx.spec.cwd.display(),
            redis = %config.common.redis_description(),
            "runner starting"
        );
        let background = CancellationToken::new();
        swarmq_shared::metrics::install();
        metrics::gauge!("swarmq_runner_slots").set(config.slots() as f64);
        if let Some(addr) = config.runner_http {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("SWARMQ_RUNNER_HTTP: cannot listen on {addr}"))?;
            tracing::info!(addr = %listener.local_addr()?, "metrics and health on http");
            tokio::spawn(http::serve(listener, ctx.clone(), background.clone()));
        }
        if !lease::register(&ctx, &shutdown).await {
            background.cancel();
            return Ok(());
        }
        tokio::spawn(lease::heartbeat_loop(ctx.clone(), background.clone()));
        if ctx.preloader.is_some() {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                if let Some(pre) = &ctx.preloader {
                    pre.ensure_server(&ctx.spec).await;
                }
            });
        }
        tokio::spawn(control::control_loop(ctx.clone(), background.clone()));
        tokio::spawn(memory::sample_loop(ctx.clone(), background.clone()));

        let mut slots = JoinSet::new();
        for n in 0..config.slots() {
            let ctx = ctx.clone();
            slots.spawn(slot(ctx, n).instrument(tracing::info_span!("slot", n)));
        }
        tracing::info!(runner_id = %ctx.runner, "runner ready, claiming agent jobs");
        shutdown.cancelled().await;
        drain(&ctx, slots).await;
        if let Some(pre) = &ctx.preloader {
            pre.stop().await;
        }
        background.cancel();
        tracing::info!(runner_id = %ctx.runner, stats = ?ctx.stats, "runner stopped");
        Ok(())
    }
}

/// Stops claiming and lets the slots finish their TODOs within the drain period (after it,
/// workers are killed and their agents handed back); then whatever is still claimed goes back
/// to the queue and the runner leaves the registry.
async fn drain(ctx: &Ctx, mut slots: JoinSet<()>) {
    tracing::info!(
        busy = ctx.busy(),
        drain_secs = ctx.config.drain_secs,
        "draining"
    );
    ctx.draining.cancel();
    let deadline = ctx.drain_deadline.clone();
    let drain = ctx.config.drain();
    tokio::spawn(async move {
        tokio::time::sleep(drain).await;
        deadline.cancel();
    });
    while slots.join_next().await.is_some() {}
    orphans::hand_back_stranded(ctx).await;
    if let Err(e) = ctx.store.deregister(&ctx.runner).await {
        tracing::warn!(error = %e, "could not deregister (the lease will expire)");
    }
}

/// One claiming loop: BLMOVE an agent job, run the agent, repeat, until draining.
async fn slot(ctx: Arc<Ctx>, n: usize) {
    let mut claimer = None;
    let mut backoff = Backoff::new(Duration::from_millis(100), CLAIM_RECONNECT_MAX);
    // The job this slot finished, still in the claimed list: removed with the next claim.
    let mut finished: Option<String> = None;
    let mut moved = ctx.store.primary_watch();
    loop {
        if ctx.draining.is_cancelled() {
            break;
        }
        if claimer.is_none() {
            match ctx.store.claimer(&ctx.runner, n, CLAIM_BLOCK).await {
                Ok(c) => claimer = Some(c),
                Err(e) => {
                    tracing::warn!(slot = n, error = %e, "cannot open a claiming connection, retrying");
                    if !backoff.wait(&ctx.draining).await {
                        break;
                    }
                    continue;
                }
            }
        }
        let Some(c) = claimer.as_mut() else { continue };
        let claimed = tokio::select! {
            r = c.claim(finished.as_deref()) => r,
            _ = ctx.draining.cancelled() => break,
            // Behind Sentinel: a BLMOVE parked on a frozen old primary would wait out its
            // timeout; whatever it moves there is discarded when that node is demoted.
            _ = moved.moved() => {
                claimer = None;
                continue;
            }
        };
        match claimed {
            Ok(job) => {
                finished = None;
                if let Some(raw) = job {
                    backoff.reset();
                    finished = run_job(&ctx, raw).await;
                }
            }
            Err(e) => {
                tracing::warn!(slot = n, error = %e, "claim failed, reconnecting");
                claimer = None;
            }
        }
    }
    if let Some(raw) = finished {
        drop_finished(&ctx, &raw).await;
    }
}

/// Runs one claimed job. Returns it when it is finished with (to leave the claimed list with the
/// next claim); a job handed back while draining goes back to the ready list here.
async fn run_job(ctx: &Arc<Ctx>, raw: String) -> Option<String> {
    let job = match AgentJob::parse(&raw) {
        Ok(job) => job,
        Err(e) => {
            tracing::warn!(error = %e, "dropping a malformed agent job");
            return Some(raw);
        }
    };
    let activation = ctx.activate(job);
    let span = tracing::info_span!(
        "agent",
        runner_id = %ctx.runner,
        session_id = %job.session_id,
        agent_id = %job.agent_id
    );
    let end = agent::run(ctx, job, activation.cancel.clone())
        .instrument(span)
        .await;
    ctx.deactivate(&activation);
    match end {
        AgentEnd::Finished => Some(raw),
        // Aborted because our lease ran out (Redis unreachable for longer than it): the reaper
        // handed back what it found in our claimed list, but this job may have been claimed
        // again since and be ours alone — back to the ready list with it (a no-op when it is
        // no longer in our claimed list), never dropped with nobody working it.
        AgentEnd::Lost if activation.lease_lost.is_cancelled() => {
            tracing::warn!(job = %raw, "agent aborted after a lost lease: handing its job back");
            requeue_claimed(ctx, &raw).await;
            None
        }
        // Its session was cancelled: nothing left to do.
        AgentEnd::Lost if activation.cancel.is_cancelled() => Some(raw),
        // A Redis call failed for good while the agent is still ours: the job stays in our
        // claimed list, and the orphan sweep hands it back (at-least-once, never dropped).
        AgentEnd::Lost => {
            tracing::warn!(job = %raw, "agent given up; the orphan sweep will hand its job back");
            None
        }
        // The reaper took this job from our claimed list already, and it may be there again
        // since, claimed by another of our slots: removing it "as finished" would strand that
        // claim (nobody would ever requeue it).
        AgentEnd::Stale => None,
        AgentEnd::Released => {
            requeue_claimed(ctx, &raw).await;
            None
        }
    }
}

/// Moves a job of ours from the claimed list back to the ready list.
async fn requeue_claimed(ctx: &Ctx, raw: &str) {
    let requeue = RequeueJob {
        runner: &ctx.runner,
        job: raw,
    };
    update_claimed(ctx, "requeue agent job", raw, || ctx.store.run(&requeue)).await;
}

/// Removes a finished job from the claimed list when the slot stops (no next claim to carry it).
async fn drop_finished(ctx: &Ctx, raw: &str) {
    update_claimed(ctx, "drop agent job", raw, || {
        ctx.store.drop_claimed(&ctx.runner, raw)
    })
    .await;
}

/// Updates our claimed list through Redis blips, for at most [`CLAIMED_UPDATE_LIMIT`].
async fn update_claimed<T, F, Fut>(ctx: &Ctx, what: &str, job: &str, call: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, swarmq_shared::StoreError>>,
{
    let never = CancellationToken::new();
    let update = persist(ctx, what, &never, call);
    if tokio::time::timeout(CLAIMED_UPDATE_LIMIT, update)
        .await
        .is_err()
    {
        tracing::warn!(
            job,
            what,
            "could not update the claimed list; the reaper will"
        );
    }
}

/// The preloaded worker server, when `SWARMQ_WORKER_START=preload` and the command is a Python
/// script or module; other commands start cold (said once, here).
fn preloader(config: &Config, spec: &WorkerSpec) -> anyhow::Result<Option<Preloader>> {
    if config.worker_start != StartMode::Preload {
        return Ok(None);
    }
    let pre = Preloader::new(spec, &config.preload_modules)
        .context("cannot create the worker server's directory")?;
    if pre.is_none() {
        tracing::info!(
            worker = %config.worker_cmd,
            "SWARMQ_WORKER_START=preload needs `python SCRIPT.py` or `python -m MODULE`; starting workers cold"
        );
    }
    Ok(pre)
}

/// PATH, HOME and LANG from the runner, the contract's pass-through values, and the operator's
/// extra names. Nothing else of the runner's environment (Redis URL, secrets) reaches a worker.
fn worker_env(config: &Config) -> anyhow::Result<Vec<(String, String)>> {
    let mut env = vec![(
        "PATH".to_owned(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
    )];
    for name in ["HOME", "LANG"] {
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_owned(), value));
        }
    }
    env.push(("SOCKET_URL".into(), config.socket_url.clone()));
    env.push(("E2B_API_KEY".into(), config.e2b_api_key.clone()));
    env.push(("DEDALUS_API_KEY".into(), config.dedalus_api_key.clone()));
    for name in config
        .worker_pass_env
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        anyhow::ensure!(
            valid,
            "SWARMQ_WORKER_PASS_ENV: {name:?} is not an environment variable name"
        );
        anyhow::ensure!(
            !CONTRACT_ENV.contains(&name) && !["PATH", "HOME", "LANG"].contains(&name),
            "SWARMQ_WORKER_PASS_ENV: {name} is already part of the worker environment"
        );
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_owned(), value));
        }
    }
    Ok(env)
}

/// Fails at start when the worker program cannot be found, rather than at every TODO.
fn check_program(spec: &WorkerSpec) -> anyhow::Result<()> {
    let program = Path::new(&spec.program);
    let found = if program.components().count() > 1 {
        spec.cwd.join(program).exists()
    } else {
        let path = spec
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
    };
    anyhow::ensure!(
        found,
        "SWARMQ_WORKER_CMD: program {:?} not found (relative to {} or on PATH)",
        spec.program,
        spec.cwd.display()
    );
    // A script argument (`python3 workers/worker.py`) must exist too, or every TODO would fail.
    for arg in spec.args.iter().filter(|a| !a.starts_with('-')) {
        let looks_like_file =
            arg.contains('/') || [".py", ".sh", ".js"].iter().any(|e| arg.ends_with(e));
        anyhow::ensure!(
            !looks_like_file || spec.cwd.join(arg).exists(),
            "SWARMQ_WORKER_CMD: {arg} not found in SWARMQ_WORKER_CWD={} (set it to the swarmq checkout)",
            spec.cwd.display()
        );
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "runner".into())
}
