//! Staying alive in the registry and reacting to the rest of the cluster:
//! - the heartbeat renews this runner's lease every third of it, and notices when it had been
//!   presumed dead (its agents were handed to others) so it aborts them;
//! - every beat also reaps other dead runners, checks that the sessions it works are not
//!   cancelled (in case a pub/sub notice was missed), and hands back orphaned claimed jobs;
//! - the control loop listens for `cancel <sessionId>` and kills that session's workers at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use swarmq_shared::backoff::Backoff;
use swarmq_shared::{SessionId, SessionStatus, now_ms, reaper};
use tokio_util::sync::CancellationToken;

use crate::ctx::Ctx;

/// First heartbeat; waits for Redis. False when shut down before it came.
pub async fn register(ctx: &Ctx, shutdown: &CancellationToken) -> bool {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        match ctx
            .store
            .heartbeat(&ctx.runner, ctx.config.lease(), &info(ctx))
            .await
        {
            Ok(_) => return true,
            Err(e) => tracing::warn!(error = %e, "cannot register with Redis yet, retrying"),
        }
        if !backoff.wait(shutdown).await {
            return false;
        }
    }
}

fn info(ctx: &Ctx) -> Vec<(&'static str, String)> {
    vec![
        ("host", super::hostname()),
        ("pid", std::process::id().to_string()),
        ("slots", ctx.config.slots().to_string()),
        ("busy", ctx.busy().to_string()),
        ("draining", ctx.draining.is_cancelled().to_string()),
        ("version", env!("CARGO_PKG_VERSION").to_owned()),
        ("beatAt", now_ms().to_string()),
    ]
}

pub async fn heartbeat_loop(ctx: Arc<Ctx>, stop: CancellationToken) {
    let period = ctx.config.lease() / 3;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut suspects: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        match ctx
            .store
            .heartbeat(&ctx.runner, ctx.config.lease(), &info(&ctx))
            .await
        {
            Ok(true) => {
                tracing::error!(
                    "this runner's lease had expired and its agents were handed to other runners; aborting them"
                );
                ctx.lost_all_leases();
            }
            Ok(false) => {}
            Err(e) => {
                ctx.stats.redis_error();
                tracing::warn!(error = %e, "heartbeat failed");
                continue;
            }
        }
        check_sessions(&ctx).await;
        reaper::reap_and_log(&ctx.store).await;
        sweep_orphans(&ctx, &mut suspects).await;
    }
}

/// Kills the workers of sessions that were cancelled (or vanished) behind our back.
async fn check_sessions(ctx: &Ctx) {
    for session in ctx.active_sessions() {
        match ctx.store.session_status(session).await {
            Ok(Some(SessionStatus::Cancelled)) | Ok(None) => cancel(ctx, session),
            _ => {}
        }
    }
}

fn cancel(ctx: &Ctx, session: SessionId) {
    let n = ctx.cancel_session(session);
    if n > 0 {
        tracing::info!(session_id = %session, workers = n, "session cancelled: killing its workers");
    }
}

/// A job can sit in our claimed list without a slot working it (a BLMOVE whose answer was lost
/// to a dropped connection). Seen idle at two consecutive beats → back to the ready list.
async fn sweep_orphans(ctx: &Ctx, suspects: &mut HashSet<String>) {
    let Ok(claimed) = ctx.store.claimed_jobs(&ctx.runner).await else {
        return;
    };
    let idle: HashSet<String> = claimed
        .into_iter()
        .filter(|job| !ctx.is_active(job))
        .collect();
    for job in idle.intersection(suspects) {
        if let Ok(true) = ctx.store.requeue_job(&ctx.runner, job).await {
            tracing::warn!(job, "handed back an orphaned claimed job");
        }
    }
    *suspects = idle;
}

/// At shutdown, after every slot stopped: whatever is still in our claimed list goes back.
pub async fn hand_back_stranded(ctx: &Ctx) {
    let Ok(claimed) = ctx.store.claimed_jobs(&ctx.runner).await else {
        return;
    };
    for job in claimed {
        if let Ok(true) = ctx.store.requeue_job(&ctx.runner, &job).await {
            tracing::info!(job, "handed back a claimed job");
        }
    }
}

pub async fn control_loop(ctx: Arc<Ctx>, stop: CancellationToken) {
    let channel = ctx.store.keys().control_channel();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            p = ctx.store.client().get_async_pubsub() => p,
        };
        let mut pubsub = match connected {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "control channel: connect failed");
                if !backoff.wait(&stop).await {
                    return;
                }
                continue;
            }
        };
        if let Err(e) = pubsub.subscribe(&channel).await {
            tracing::warn!(error = %e, "control channel: subscribe failed, retrying");
            if !backoff.wait(&stop).await {
                return;
            }
            continue;
        }
        backoff.reset();
        // Anything cancelled while we were not listening.
        check_sessions(&ctx).await;
        let mut messages = pubsub.on_message();
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => return,
                m = messages.next() => m,
            };
            let Some(message) = message else {
                tracing::warn!("control channel lost, reconnecting");
                break;
            };
            let Ok(payload) = message.get_payload::<String>() else {
                continue;
            };
            match payload.split_once(' ') {
                Some(("cancel", id)) => match SessionId::parse(id) {
                    Ok(session) => cancel(&ctx, session),
                    Err(e) => tracing::warn!(error = %e, "bad control message"),
                },
                _ => tracing::warn!(payload, "unknown control message"),
            }
        }
    }
}
