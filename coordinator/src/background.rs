//! The coordinator's periodic duties: fail sessions whose decomposition was abandoned (their
//! coordinator died mid-POST), and reap dead runners (any live process may).

use std::time::Duration;

use swarmq_shared::{SessionStatus, Store, now_ms, reaper};
use tokio_util::sync::CancellationToken;

pub const INTERVAL: Duration = Duration::from_secs(2);

pub async fn run(store: Store, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = fail_abandoned_decompositions(&store).await {
            tracing::debug!(error = %e, "decomposition watchdog pass failed");
        }
        match reaper::reap_once(&store).await {
            Ok(report) if report.runners > 0 => tracing::warn!(?report, "reaped dead runners"),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "reaper pass failed"),
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
        } else {
            store.forget_decomposition(id).await?;
        }
    }
    Ok(())
}
