//! The coordinator's periodic duties: fail sessions whose decomposition was abandoned (their
//! coordinator died mid-POST), reap dead runners (any live process may), sample the queue gauges
//! for /metrics, and trim expired sessions from the index.

use std::time::Duration;

use swarmq_shared::{SessionStatus, Store, now_ms, reaper};
use tokio_util::sync::CancellationToken;

pub const INTERVAL: Duration = Duration::from_secs(2);

pub async fn run(store: Store, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    let mut trim_from = 0usize;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        n += 1;
        if let Err(e) = fail_abandoned_decompositions(&store).await {
            tracing::debug!(error = %e, "decomposition watchdog pass failed");
        }
        match reaper::reap_once(&store).await {
            Ok(report) if report.runners > 0 => tracing::warn!(?report, "reaped dead runners"),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "reaper pass failed"),
        }
        if let Err(e) = sample_gauges(&store, n % 5 == 1).await {
            tracing::debug!(error = %e, "sampling gauges failed");
        }
        if n.is_multiple_of(30) {
            const SCAN: usize = 500;
            match store.trim_sessions_index(trim_from, SCAN).await {
                Ok((dropped, looked)) => {
                    if dropped > 0 {
                        tracing::info!(dropped, "dropped expired sessions from the index");
                    }
                    // Walk the whole index over successive passes, then start again.
                    trim_from = if looked < SCAN {
                        0
                    } else {
                        trim_from + looked - dropped
                    };
                }
                Err(e) => tracing::debug!(error = %e, "index trim failed"),
            }
        }
    }
}

async fn fail_abandoned_decompositions(store: &Store) -> Result<(), swarmq_shared::StoreError> {
    for id in store.overdue_decompositions(now_ms(), 100).await? {
        let message =
            "decomposition did not finish before its deadline (its coordinator stopped or hung)";
        if store
            .fail_session(id, message, SessionStatus::Decomposing)
            .await?
        {
            tracing::warn!(session_id = %id, "failed an abandoned decomposition");
            metrics::counter!("swarmq_sessions_finished_total", "status" => "failed").increment(1);
        } else {
            store.forget_decomposition(id).await?;
        }
    }
    Ok(())
}

async fn sample_gauges(store: &Store, with_pending: bool) -> Result<(), swarmq_shared::StoreError> {
    metrics::gauge!("swarmq_ready_queue_depth").set(store.ready_depth().await? as f64);
    let runners = store.runner_totals().await?;
    metrics::gauge!("swarmq_runners_live").set(runners.live as f64);
    metrics::gauge!("swarmq_runner_slots_total").set(runners.slots as f64);
    metrics::gauge!("swarmq_runner_slots_busy").set(runners.busy as f64);
    if with_pending {
        let counts = store.session_counts(1000).await?;
        metrics::gauge!("swarmq_pending_todos").set(counts.pending_todos as f64);
    }
    Ok(())
}
