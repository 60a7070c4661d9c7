//! The coordinator's periodic duties, on one tick of [`INTERVAL`]:
//! - every tick: fail sessions whose decomposition was abandoned (their coordinator died
//!   mid-POST), reap dead runners (any live process may), sample the queue and runner gauges;
//! - every [`PENDING_GAUGE_EVERY`], from the first tick on: the pending-TODO gauge;
//! - every [`INDEX_TRIM_EVERY`]: drop expired sessions from the sessions index.

use std::time::Duration;

use swarmq_shared::transitions::FailOutcome;
use swarmq_shared::{SessionStatus, Store, StoreError, now_ms, reaper};
use tokio_util::sync::CancellationToken;

pub const INTERVAL: Duration = Duration::from_secs(2);
/// The pending-TODO gauge reads the newest sessions (two pipelined round trips over up to
/// `PENDING_GAUGE_SESSIONS` sessions): too much for every tick, and no one needs it fresher.
pub const PENDING_GAUGE_EVERY: Duration = Duration::from_secs(10);
/// Sessions whose pending lists the gauge sums (newest first).
const PENDING_GAUGE_SESSIONS: usize = 1000;
/// Retention is counted in hours or days: trimming the index once a minute keeps it honest.
pub const INDEX_TRIM_EVERY: Duration = Duration::from_secs(60);
/// Index entries looked at per trim; the next trim goes on from there.
const INDEX_TRIM_SCAN: usize = 500;
/// Abandoned decompositions failed per tick at most.
const WATCHDOG_BATCH: usize = 100;

pub async fn run(store: Store, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    let mut trim = IndexTrim::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        n += 1;
        if let Err(e) = fail_abandoned_decompositions(&store).await {
            tracing::debug!(error = %e, "decomposition watchdog pass failed");
        }
        reaper::reap_and_log(&store).await;
        let with_pending = (n - 1).is_multiple_of(ticks(PENDING_GAUGE_EVERY));
        if let Err(e) = sample_gauges(&store, with_pending).await {
            tracing::debug!(error = %e, "sampling gauges failed");
        }
        if n.is_multiple_of(ticks(INDEX_TRIM_EVERY)) {
            trim.step(&store).await;
        }
    }
}

/// Ticks of [`INTERVAL`] in `period`.
const fn ticks(period: Duration) -> u64 {
    period.as_secs() / INTERVAL.as_secs()
}

async fn fail_abandoned_decompositions(store: &Store) -> Result<(), StoreError> {
    for id in store
        .overdue_decompositions(now_ms(), WATCHDOG_BATCH)
        .await?
    {
        let message =
            "decomposition did not finish before its deadline (its coordinator stopped or hung)";
        match store.recover_decomposition(id, message).await? {
            FailOutcome::Failed => {
                tracing::warn!(session_id = %id, "failed an abandoned decomposition");
                swarmq_shared::metrics::count_session_finished(SessionStatus::Failed);
            }
            FailOutcome::Unchanged {
                status: SessionStatus::Running,
            } => {
                tracing::warn!(session_id = %id, "enqueued the jobs of a session its coordinator left");
            }
            FailOutcome::Missing | FailOutcome::Unchanged { .. } => {}
        }
    }
    Ok(())
}

async fn sample_gauges(store: &Store, with_pending: bool) -> Result<(), StoreError> {
    let ready = store.ready_depth().await?;
    metrics::gauge!("swarmq_ready_queue_depth").set(ready as f64);
    store.sample_ready(now_ms(), ready).await?;
    let runners = store.runner_totals().await?;
    metrics::gauge!("swarmq_runners_live").set(runners.live as f64);
    metrics::gauge!("swarmq_runner_slots_total").set(runners.slots as f64);
    metrics::gauge!("swarmq_runner_slots_busy").set(runners.busy as f64);
    if with_pending {
        let counts = store.session_counts(PENDING_GAUGE_SESSIONS).await?;
        metrics::gauge!("swarmq_pending_todos").set(counts.pending_todos as f64);
    }
    Ok(())
}

/// Walks the sessions index oldest first, a slice per step, then starts again, so sessions
/// kept forever at the old end cannot hide expired ones behind them.
#[derive(Default)]
struct IndexTrim {
    from: usize,
}

impl IndexTrim {
    async fn step(&mut self, store: &Store) {
        match store.trim_sessions_index(self.from, INDEX_TRIM_SCAN).await {
            Ok((dropped, looked)) => {
                if dropped > 0 {
                    tracing::info!(dropped, "dropped expired sessions from the index");
                }
                self.from = if looked < INDEX_TRIM_SCAN {
                    0
                } else {
                    self.from + looked - dropped
                };
            }
            Err(e) => tracing::debug!(error = %e, "index trim failed"),
        }
    }
}
