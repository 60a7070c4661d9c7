//! Cancellation reaching this runner: the control channel carries `cancel <sessionId>`
//! (published by `cancel_session.lua`) and the session's workers are killed at once. Pub/sub
//! loses messages while disconnected, so after every (re)connection — and at every heartbeat —
//! the sessions being worked are checked directly.

use std::ops::ControlFlow;
use std::sync::Arc;

use futures_util::StreamExt;
use redis::aio::PubSub;
use swarmq_shared::backoff::Backoff;
use swarmq_shared::store::PrimaryWatch;
use swarmq_shared::{SessionId, SessionStatus};
use tokio_util::sync::CancellationToken;

use crate::ctx::Ctx;

/// Listens on the control channel until `stop`, reconnecting whenever the connection drops.
pub async fn control_loop(ctx: Arc<Ctx>, stop: CancellationToken) {
    if ctx.store.sharded_pubsub() {
        return crate::control_sharded::control_loop(ctx, stop).await;
    }
    let mut backoff = Backoff::redis_reconnect();
    loop {
        let mut moved = ctx.store.primary_watch();
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            p = subscribe(&ctx) => p,
        };
        let Some(pubsub) = connected else {
            if !backoff.wait(&stop).await {
                return;
            }
            continue;
        };
        backoff.reset();
        // Anything cancelled while we were not listening.
        check_sessions(&ctx).await;
        if dispatch(&ctx, pubsub, &mut moved, &stop).await.is_break() {
            return;
        }
        tracing::warn!("control channel lost, reconnecting");
    }
}

/// A connection subscribed to the control channel; `None` (logged) when Redis said no.
async fn subscribe(ctx: &Ctx) -> Option<PubSub> {
    let mut pubsub = match ctx.store.pubsub().await {
        Ok(pubsub) => pubsub,
        Err(e) => {
            tracing::debug!(error = %e, "control channel: connect failed");
            return None;
        }
    };
    if let Err(e) = pubsub.subscribe(ctx.store.keys().control_channel()).await {
        tracing::warn!(error = %e, "control channel: subscribe failed, retrying");
        return None;
    }
    Some(pubsub)
}

/// Acts on each control message until the connection drops or the Redis primary moves
/// (`Continue`), or `stop` (`Break`).
async fn dispatch(
    ctx: &Ctx,
    mut pubsub: PubSub,
    moved: &mut PrimaryWatch,
    stop: &CancellationToken,
) -> ControlFlow<()> {
    let mut messages = pubsub.on_message();
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => return ControlFlow::Break(()),
            _ = moved.moved() => return ControlFlow::Continue(()),
            m = messages.next() => m,
        };
        let Some(message) = message else {
            return ControlFlow::Continue(());
        };
        let Ok(payload) = message.get_payload::<String>() else {
            continue;
        };
        match payload.split_once(' ') {
            Some(("cancel", id)) => match SessionId::parse(id) {
                Ok(session) => cancel(ctx, session),
                Err(e) => tracing::warn!(error = %e, "bad control message"),
            },
            _ => tracing::warn!(payload, "unknown control message"),
        }
    }
}

/// Kills the workers of sessions that were cancelled (or vanished) behind our back.
pub async fn check_sessions(ctx: &Ctx) {
    for session in ctx.active_sessions() {
        match ctx.store.session_status(session).await {
            Ok(Some(SessionStatus::Cancelled)) | Ok(None) => cancel(ctx, session),
            _ => {}
        }
    }
}

pub(crate) fn cancel(ctx: &Ctx, session: SessionId) {
    let n = ctx.cancel_session(session);
    if n > 0 {
        tracing::info!(session_id = %session, workers = n, "session cancelled: killing its workers");
    }
}
