//! The relay's subscriptions on a Redis Cluster: sharded pub/sub. Each watched session's `live`
//! channel is `SSUBSCRIBE`d on the node that owns the session's slot (redis's cluster
//! connection routes it, and subscribes again on the new owner after a failover or a slot move),
//! so a coordinator receives only the events of sessions its clients watch, from only the nodes
//! that hold them. Whenever messages may have been lost — a reconnection, a failover, a moved
//! slot — every room refills from its session's event stream (`XRANGE` after its last seq):
//! clients miss nothing.

use std::ops::ControlFlow;
use std::sync::Weak;

use swarmq_shared::Store;
use swarmq_shared::backoff::Backoff;
use swarmq_shared::store::{Delivery, ShardedSubscriber};
use tokio_util::sync::CancellationToken;

use super::pubsub::{Commands, Noted, Subscriptions, absorb_commands_for};
use super::relay::Inner;

pub(super) async fn run(
    store: Store,
    relay: Weak<Inner>,
    (mut subs, mut commands): (Subscriptions, Commands),
    shutdown: CancellationToken,
) {
    let mut reconnecting = false;
    loop {
        let Some(mut sub) = connect(&store, &mut subs, &mut commands, &shutdown).await else {
            return;
        };
        if reconnecting {
            resync(&relay, "relay: sharded pub/sub reconnected, repairing gaps");
        }
        reconnecting = true;
        let served = serve(&mut sub, &relay, &mut subs, &mut commands, &shutdown).await;
        if served.is_break() {
            return;
        }
        tracing::warn!("relay: sharded pub/sub connection lost, reconnecting");
    }
}

fn resync(relay: &Weak<Inner>, why: &'static str) {
    tracing::info!("{why}");
    if let Some(relay) = relay.upgrade() {
        relay.resync_rooms();
    }
}

/// Connects and subscribes every wanted channel, retrying with backoff. `None` on shutdown.
async fn connect(
    store: &Store,
    subs: &mut Subscriptions,
    commands: &mut Commands,
    shutdown: &CancellationToken,
) -> Option<ShardedSubscriber> {
    let mut backoff = Backoff::redis_reconnect();
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return None,
            s = store.sharded_subscriber() => s,
        };
        let error = match attempt {
            Ok(Some(mut sub)) => match subscribe_all(&mut sub, subs).await {
                Ok(()) => {
                    subs.confirm_waiting();
                    return Some(sub);
                }
                Err(e) => e.to_string(),
            },
            Ok(None) => "not a cluster".to_owned(),
            Err(e) => e.to_string(),
        };
        let delay = backoff.next_delay();
        tracing::warn!(
            error,
            ?delay,
            "relay: sharded pub/sub connect failed, retrying"
        );
        if !absorb_commands_for(delay, subs, commands, shutdown).await {
            return None;
        }
    }
}

async fn subscribe_all(
    sub: &mut ShardedSubscriber,
    subs: &Subscriptions,
) -> swarmq_shared::store::Result<()> {
    for session in subs.wanted.keys() {
        sub.subscribe(&subs.channel(*session)).await?;
    }
    Ok(())
}

/// Dispatches messages, repairs gaps and applies room commands until the connection is lost
/// (`Continue`) or the relay stops (`Break`).
async fn serve(
    sub: &mut ShardedSubscriber,
    relay: &Weak<Inner>,
    subs: &mut Subscriptions,
    commands: &mut Commands,
    shutdown: &CancellationToken,
) -> ControlFlow<()> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return ControlFlow::Break(()),
            delivery = sub.next() => match delivery {
                None => return ControlFlow::Continue(()),
                Some(Delivery::Gap) => {
                    if sub.repair().await.is_err() {
                        return ControlFlow::Continue(());
                    }
                    resync(relay, "relay: sharded subscription moved, repairing gaps");
                }
                Some(Delivery::Message { channel, payload }) => {
                    let Some(relay) = relay.upgrade() else { return ControlFlow::Break(()) };
                    if let Some(session) = subs.keys.session_of_channel(&channel) {
                        relay.dispatch(session, payload);
                    }
                }
            },
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return ControlFlow::Break(()) };
                if apply(sub, subs, cmd).await.is_err() {
                    return ControlFlow::Continue(());
                }
            }
        }
    }
}

/// Applies a room's command on the live subscription. `Err` when the connection failed.
async fn apply(
    sub: &mut ShardedSubscriber,
    subs: &mut Subscriptions,
    cmd: super::pubsub::SubCommand,
) -> swarmq_shared::store::Result<()> {
    match subs.note(cmd) {
        Noted::Subscribe(session, done) => {
            let result = sub.subscribe(&subs.channel(session)).await;
            match result {
                Ok(()) => drop(done.send(())),
                Err(_) => subs.wait(done),
            }
            result
        }
        Noted::Unsubscribe(session) => {
            // Best effort: a stale subscription only costs messages no room takes.
            let _ = sub.unsubscribe(&subs.channel(session)).await;
            Ok(())
        }
        Noted::Ignored => Ok(()),
    }
}
