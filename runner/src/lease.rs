//! Staying alive in the registry: the first heartbeat registers this runner; then every third
//! of a lease it renews the lease (republishing its [`RunnerInfo`]) and, on the same beat, does
//! the other periodic duties — checks that the sessions it works were not cancelled behind its
//! back ([`control`]), reaps dead runners (`swarmq_shared::reaper`), and hands back orphaned
//! claimed jobs ([`orphans`](crate::orphans)). A beat that finds the lease had expired (the
//! runner was reaped as dead, its agents given to others) aborts every agent this runner works.

use std::sync::Arc;

use swarmq_shared::backoff::Backoff;
use swarmq_shared::store::RunnerInfo;
use swarmq_shared::transitions::{Heartbeat, HeartbeatOutcome};
use swarmq_shared::{StoreError, now_ms, reaper};
use tokio_util::sync::CancellationToken;

use crate::control;
use crate::ctx::Ctx;
use crate::orphans::OrphanSweep;

/// Heartbeats per lease: a beat may be lost or late twice before the lease runs out.
const BEATS_PER_LEASE: u32 = 3;

/// First heartbeat; waits for Redis. False when shut down before it came.
pub async fn register(ctx: &Ctx, shutdown: &CancellationToken) -> bool {
    let mut backoff = Backoff::redis_reconnect();
    loop {
        match beat(ctx).await {
            Ok(_) => return true,
            Err(e) => tracing::warn!(error = %e, "cannot register with Redis yet, retrying"),
        }
        if !backoff.wait(shutdown).await {
            return false;
        }
    }
}

/// Renews the lease every third of it until `stop`, with the duties that share its cadence.
pub async fn heartbeat_loop(ctx: Arc<Ctx>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(ctx.config.lease() / BEATS_PER_LEASE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut orphans = OrphanSweep::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        match beat(&ctx).await {
            Ok(HeartbeatOutcome::Added) => {
                tracing::error!(
                    "this runner's lease had expired and its agents were handed to other runners; aborting them"
                );
                ctx.abort_all_agents();
            }
            Ok(HeartbeatOutcome::Renewed) => {}
            Err(e) => {
                ctx.stats.count_redis_error();
                tracing::warn!(error = %e, "heartbeat failed");
                continue;
            }
        }
        control::check_sessions(&ctx).await;
        reaper::reap_and_log(&ctx.store).await;
        orphans.sweep(&ctx).await;
    }
}

/// One heartbeat: the lease renewed, what this runner is doing published.
async fn beat(ctx: &Ctx) -> Result<HeartbeatOutcome, StoreError> {
    let info = info(ctx);
    let heartbeat = Heartbeat {
        runner: &ctx.runner,
        lease: ctx.config.lease(),
        info: &info,
    };
    ctx.store.run(&heartbeat).await
}

fn info(ctx: &Ctx) -> RunnerInfo {
    RunnerInfo {
        host: Some(super::hostname()),
        pid: u64::from(std::process::id()),
        slots: ctx.config.slots() as u64,
        busy: ctx.busy() as u64,
        draining: ctx.draining.is_cancelled(),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        beat_at: now_ms(),
    }
}
