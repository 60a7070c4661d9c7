//! Cancellation on a Redis Cluster: no channel that every runner hears (a classic `PUBLISH`
//! would be relayed to every node). `cancel_session.lua` `SPUBLISH`es `cancel <sessionId>` on
//! the session's own control channel, in its slot; this runner `SSUBSCRIBE`s to the control
//! channels of exactly the sessions whose agents it works (following its in-memory set of
//! active agents, no Redis call when nothing changed), on the nodes that own them. A newly
//! watched session is checked once right after subscribing, and every gap (a reconnection, a
//! failover, a moved slot) re-checks them all, so a cancel published meanwhile is not missed.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use swarmq_shared::backoff::Backoff;
use swarmq_shared::store::{Delivery, ShardedSubscriber};
use swarmq_shared::{SessionId, SessionStatus};
use tokio_util::sync::CancellationToken;

use crate::control::{cancel, check_sessions};
use crate::ctx::Ctx;

/// How often the subscriptions follow the agents this runner works (in memory only).
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

pub async fn control_loop(ctx: Arc<Ctx>, stop: CancellationToken) {
    let mut backoff = Backoff::redis_reconnect();
    loop {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            s = ctx.store.sharded_subscriber() => s,
        };
        let Ok(Some(mut sub)) = connected else {
            if !backoff.wait(&stop).await {
                return;
            }
            continue;
        };
        backoff.reset();
        check_sessions(&ctx).await;
        if serve(&ctx, &mut sub, &stop).await.is_break() {
            return;
        }
        tracing::warn!("sharded control channels lost, reconnecting");
    }
}

async fn serve(
    ctx: &Ctx,
    sub: &mut ShardedSubscriber,
    stop: &CancellationToken,
) -> ControlFlow<()> {
    let mut watched: HashSet<SessionId> = HashSet::new();
    let mut follow = tokio::time::interval(FOLLOW_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return ControlFlow::Break(()),
            _ = follow.tick() => {
                if follow_agents(ctx, sub, &mut watched).await.is_err() {
                    return ControlFlow::Continue(());
                }
            }
            delivery = sub.next() => match delivery {
                None => return ControlFlow::Continue(()),
                Some(Delivery::Gap) => {
                    if sub.repair().await.is_err() {
                        return ControlFlow::Continue(());
                    }
                    check_sessions(ctx).await;
                }
                Some(Delivery::Message { payload, .. }) => on_message(ctx, &payload),
            },
        }
    }
}

/// Subscribes the control channels of sessions newly worked here (checking each once, for a
/// cancel published before the subscription) and drops those of sessions no longer worked.
async fn follow_agents(
    ctx: &Ctx,
    sub: &mut ShardedSubscriber,
    watched: &mut HashSet<SessionId>,
) -> swarmq_shared::store::Result<()> {
    let active: HashSet<SessionId> = ctx.active_sessions().into_iter().collect();
    let keys = ctx.store.keys().clone();
    for gone in watched.difference(&active).copied().collect::<Vec<_>>() {
        let _ = sub.unsubscribe(&keys.session(gone).control_channel()).await;
        watched.remove(&gone);
    }
    for new in active.difference(watched).copied().collect::<Vec<_>>() {
        sub.subscribe(&keys.session(new).control_channel()).await?;
        watched.insert(new);
        match ctx.store.session_status(new).await {
            Ok(Some(SessionStatus::Cancelled)) | Ok(None) => cancel(ctx, new),
            _ => {}
        }
    }
    Ok(())
}

fn on_message(ctx: &Ctx, payload: &str) {
    match payload.split_once(' ') {
        Some(("cancel", id)) => match SessionId::parse(id) {
            Ok(session) => cancel(ctx, session),
            Err(e) => tracing::warn!(error = %e, "bad control message"),
        },
        _ => tracing::warn!(payload, "unknown control message"),
    }
}
