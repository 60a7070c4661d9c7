//! What every task of a runner shares: the store, the settings, the worker command, the
//! drain signals, the agents being worked (each with the token that aborts it) and the counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use swarmq_shared::{AgentJob, RunnerId, SessionId, Store};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::launcher::Preloader;
use crate::worker::WorkerSpec;

pub struct Ctx {
    pub store: Store,
    pub config: Config,
    pub runner: RunnerId,
    pub spec: WorkerSpec,
    /// Stop claiming, finish the current TODOs, hand agents back.
    pub draining: CancellationToken,
    /// The drain period is over: kill workers now and hand their TODOs back.
    pub drain_deadline: CancellationToken,
    /// One worker exited after its `complete` instead of reading the next TODO on stdin: this
    /// runner's worker command is one-shot, so every TODO starts a fresh process.
    pub workers_one_shot: AtomicBool,
    /// Places among the workers starting at once (`SWARMQ_WORKER_MAX_STARTING`); `None`: no limit.
    pub starting: Option<Arc<Semaphore>>,
    /// The preloaded worker server (`SWARMQ_WORKER_START=preload`); `None`: cold starts.
    pub preloader: Option<Preloader>,
    /// Agents this runner is working, by activation (two slots may hold the same job for a
    /// moment: one whose agent went stale after a reap, one that claimed it again since), each
    /// with the token that aborts it.
    active: Mutex<HashMap<u64, (AgentJob, CancellationToken)>>,
    /// The number of the next activation.
    activations: AtomicU64,
    /// Parent of every agent's token; replaced when this runner learns it was reaped.
    epoch: Mutex<CancellationToken>,
    pub stats: Stats,
}

impl Ctx {
    pub fn new(
        store: Store,
        config: Config,
        runner: RunnerId,
        spec: WorkerSpec,
        preloader: Option<Preloader>,
    ) -> Self {
        Self {
            preloader,
            starting: config.max_starting().map(|n| Arc::new(Semaphore::new(n))),
            store,
            config,
            runner,
            spec,
            draining: CancellationToken::new(),
            drain_deadline: CancellationToken::new(),
            workers_one_shot: AtomicBool::new(false),
            active: Mutex::new(HashMap::new()),
            activations: AtomicU64::new(0),
            epoch: Mutex::new(CancellationToken::new()),
            stats: Stats::default(),
        }
    }

    /// Registers an agent being worked.
    pub fn activate(&self, job: AgentJob) -> Activation {
        let epoch = lock(&self.epoch).clone();
        let cancel = epoch.child_token();
        let id = self.activations.fetch_add(1, Ordering::Relaxed);
        let mut active = lock(&self.active);
        active.insert(id, (job, cancel.clone()));
        metrics::gauge!("swarmq_runner_busy_slots").set(active.len() as f64);
        Activation {
            id,
            cancel,
            lease_lost: epoch,
        }
    }

    /// Forgets an activation (only that one: another slot may hold the same job now).
    pub fn deactivate(&self, activation: &Activation) {
        let mut active = lock(&self.active);
        active.remove(&activation.id);
        metrics::gauge!("swarmq_runner_busy_slots").set(active.len() as f64);
    }

    pub fn busy(&self) -> usize {
        lock(&self.active).len()
    }

    /// One worker proved one-shot (it exited after its `complete` instead of reading the next
    /// TODO on stdin). The worker command is the same for every agent of this runner, so new
    /// agents start each TODO in a fresh process instead of finding out again.
    pub fn note_workers_one_shot(&self) {
        if !self.workers_one_shot.swap(true, Ordering::Relaxed) {
            tracing::info!("workers exit after each TODO: one process per TODO from now on");
        }
    }

    pub fn is_active(&self, job: &str) -> bool {
        lock(&self.active)
            .values()
            .any(|(j, _)| j.to_string() == job)
    }

    pub fn active_sessions(&self) -> Vec<SessionId> {
        let mut sessions: Vec<SessionId> = lock(&self.active)
            .values()
            .map(|(j, _)| j.session_id)
            .collect();
        sessions.sort();
        sessions.dedup();
        sessions
    }

    /// Kills the workers of a session (it was cancelled or ended). Returns how many.
    pub fn cancel_session(&self, session: SessionId) -> usize {
        let active = lock(&self.active);
        let mut n = 0;
        for (job, token) in active.values() {
            if job.session_id == session {
                token.cancel();
                n += 1;
            }
        }
        n
    }

    /// This runner was presumed dead and its agents handed to others: abort them all.
    pub fn abort_all_agents(&self) {
        metrics::counter!("swarmq_leases_lost_total").increment(1);
        let mut epoch = lock(&self.epoch);
        epoch.cancel();
        *epoch = CancellationToken::new();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counters reported in logs (and at shutdown).
#[derive(Default, Debug)]
pub struct Stats {
    pub lines_invalid: AtomicU64,
    pub lines_oversized: AtomicU64,
    pub lines_throttled: AtomicU64,
    pub events_published: AtomicU64,
    pub stale_rejected: AtomicU64,
    pub redis_errors: AtomicU64,
    pub agents_run: AtomicUsize,
}

impl Stats {
    pub fn count_invalid_line(&self) {
        self.lines_invalid.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("swarmq_worker_lines_dropped_total", "reason" => "invalid").increment(1);
    }
    pub fn count_oversized_line(&self) {
        self.lines_oversized.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("swarmq_worker_lines_dropped_total", "reason" => "oversized")
            .increment(1);
    }
    pub fn count_throttled_line(&self) {
        self.lines_throttled.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("swarmq_worker_lines_dropped_total", "reason" => "throttled")
            .increment(1);
    }
    pub fn count_events_published(&self, n: usize) {
        self.events_published.fetch_add(n as u64, Ordering::Relaxed);
        metrics::counter!("swarmq_events_published_total").increment(n as u64);
    }
    pub fn count_stale_write(&self) {
        self.stale_rejected.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("swarmq_stale_writes_rejected_total").increment(1);
    }
    pub fn count_redis_error(&self) {
        self.redis_errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("swarmq_redis_errors_total").increment(1);
    }
}

/// One agent being worked by one slot.
pub struct Activation {
    id: u64,
    /// Aborts the agent (its session was cancelled or ended, or this runner's lease was lost).
    pub cancel: CancellationToken,
    /// Fires only when the abort is this runner's lost lease.
    pub lease_lost: CancellationToken,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn ctx() -> Ctx {
        let config = Config::try_parse_from(["swarmq-runner"]).expect("the default settings");
        // Never connected: these tests touch no Redis.
        let store = Store::open("redis://127.0.0.1:1", "swarmq", 1_000).expect("a lazy store");
        let spec = WorkerSpec::new("python3 worker.py", ".".into(), Vec::new(), 1 << 20)
            .expect("a command");
        let runner = RunnerId::parse("runner-1").expect("an id");
        Ctx::new(store, config, runner, spec, None)
    }

    /// Two slots may hold one job for a moment (one whose agent went stale after a reap, one
    /// that claimed it again): the first one's end must leave the second visible to
    /// cancellation and to the orphan sweep.
    #[tokio::test]
    async fn two_slots_holding_one_job_are_tracked_apart() {
        let ctx = ctx();
        let job = AgentJob::parse(
            "6f1c2d4e-0a1b-4c2d-8e3f-405162738495/7a8b9c0d-1e2f-4a3b-8c4d-5e6f70819203",
        )
        .expect("a job");
        let first = ctx.activate(job);
        let second = ctx.activate(job);
        assert_eq!(ctx.busy(), 2);
        ctx.deactivate(&first);
        assert!(
            ctx.is_active(&job.to_string()),
            "the second slot still works it"
        );
        assert_eq!(ctx.cancel_session(job.session_id), 1);
        assert!(second.cancel.is_cancelled() && !first.cancel.is_cancelled());
        ctx.deactivate(&second);
        assert!(!ctx.is_active(&job.to_string()));
        assert_eq!(ctx.busy(), 0);
    }
}
