//! The relay's one pub/sub connection: subscribed only to the channels of sessions watched on
//! this coordinator, it hands each message to its session's room.
//!
//! `redis`'s pub/sub does not reconnect by itself (CRATE-NOTES), so this loop does: connect,
//! re-subscribe every wanted channel, then ask every room to fill from the stream whatever was
//! published while it was away — clients miss nothing across a Redis restart.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use swarmq_shared::backoff::Backoff;
use swarmq_shared::store::PrimaryWatch;
use swarmq_shared::{Keys, SessionId, Store};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::relay::Inner;

pub(super) enum SubCommand {
    /// A room starts: subscribe its channel, then answer `done`.
    Subscribe {
        session: SessionId,
        generation: u64,
        done: oneshot::Sender<()>,
    },
    /// A room stopped. Ignored if a newer room of the session subscribed since.
    Unsubscribe { session: SessionId, generation: u64 },
}

pub(super) type Commands = mpsc::UnboundedReceiver<SubCommand>;

/// What a command changed in [`Subscriptions`].
pub(super) enum Noted {
    /// Subscribe this session's channel, then tell the room.
    Subscribe(SessionId, oneshot::Sender<()>),
    Unsubscribe(SessionId),
    Ignored,
}

impl Subscriptions {
    /// A room waits for its subscription: answered once the connection has it.
    pub(super) fn wait(&mut self, done: oneshot::Sender<()>) {
        self.waiting.push(done);
    }
}

/// The channels rooms want (by the generation of the room that asked), and rooms still waiting
/// for their subscription.
pub(super) struct Subscriptions {
    pub(super) keys: Keys,
    pub(super) wanted: HashMap<SessionId, u64>,
    waiting: Vec<oneshot::Sender<()>>,
}

pub(super) async fn run(
    store: Store,
    relay: Weak<Inner>,
    mut commands: Commands,
    shutdown: CancellationToken,
) {
    let mut subs = Subscriptions {
        keys: store.keys().clone(),
        wanted: HashMap::new(),
        waiting: Vec::new(),
    };
    if store.sharded_pubsub() {
        return super::sharded::run(store, relay, (subs, commands), shutdown).await;
    }
    let mut reconnecting = false;
    loop {
        let mut moved = store.primary_watch();
        let Some((sink, stream)) = connect(&store, &mut subs, &mut commands, &shutdown).await
        else {
            return;
        };
        if reconnecting {
            tracing::info!(
                channels = subs.wanted.len(),
                "relay: pub/sub reconnected, repairing gaps"
            );
            if let Some(relay) = relay.upgrade() {
                relay.resync_rooms();
            }
        }
        reconnecting = true;
        let streams = (sink, stream, &mut moved);
        let served = serve(streams, &relay, &mut subs, &mut commands, &shutdown).await;
        if served.is_break() {
            return;
        }
        tracing::warn!("relay: pub/sub connection lost, reconnecting");
    }
}

/// Connects and subscribes every wanted channel, retrying with backoff (rooms may come and go
/// meanwhile). `None` on shutdown.
async fn connect(
    store: &Store,
    subs: &mut Subscriptions,
    commands: &mut Commands,
    shutdown: &CancellationToken,
) -> Option<(PubSubSink, PubSubStream)> {
    let mut backoff = Backoff::redis_reconnect();
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return None,
            p = store.pubsub() => p.map_err(|e| e.to_string()),
        };
        let error = match attempt {
            Ok(pubsub) => {
                let (mut sink, stream) = pubsub.split();
                match subs.resubscribe(&mut sink).await {
                    Ok(()) => {
                        subs.confirm_waiting();
                        return Some((sink, stream));
                    }
                    Err(e) => e.to_string(),
                }
            }
            Err(e) => e,
        };
        let delay = backoff.next_delay();
        tracing::warn!(error, ?delay, "relay: pub/sub connect failed, retrying");
        if !absorb_commands_for(delay, subs, commands, shutdown).await {
            return None;
        }
    }
}

/// Waits `delay` while still recording what rooms want. False on shutdown.
pub(super) async fn absorb_commands_for(
    delay: Duration,
    subs: &mut Subscriptions,
    commands: &mut Commands,
    shutdown: &CancellationToken,
) -> bool {
    let deadline = tokio::time::sleep(delay);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = &mut deadline => return true,
            cmd = commands.recv() => match cmd {
                Some(cmd) => subs.record(cmd),
                None => return false,
            },
        }
    }
}

/// Dispatches messages to rooms and applies room commands until the connection is lost
/// (`Continue`) or the relay stops (`Break`).
async fn serve(
    (mut sink, mut stream, moved): (PubSubSink, PubSubStream, &mut PrimaryWatch),
    relay: &Weak<Inner>,
    subs: &mut Subscriptions,
    commands: &mut Commands,
    shutdown: &CancellationToken,
) -> ControlFlow<()> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return ControlFlow::Break(()),
            _ = moved.moved() => {
                tracing::warn!("relay: the Redis primary moved, resubscribing there");
                return ControlFlow::Continue(());
            }
            message = stream.next() => {
                let Some(message) = message else { return ControlFlow::Continue(()) };
                let Some(relay) = relay.upgrade() else { return ControlFlow::Break(()) };
                let session = subs.keys.session_of_channel(message.get_channel_name());
                if let (Some(session), Ok(payload)) = (session, message.get_payload::<String>()) {
                    relay.dispatch(session, payload);
                }
            }
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return ControlFlow::Break(()) };
                if subs.apply(cmd, &mut sink).await.is_err() {
                    return ControlFlow::Continue(());
                }
            }
        }
    }
}

impl Subscriptions {
    pub(super) fn channel(&self, session: SessionId) -> String {
        self.keys.session(session).live_channel()
    }

    /// Notes a command while disconnected; it takes effect at the next subscribe.
    pub(super) fn record(&mut self, cmd: SubCommand) {
        if let Noted::Subscribe(_, done) = self.note(cmd) {
            self.waiting.push(done);
        }
    }

    /// Applies a command on the live connection. `Err` when the connection failed.
    async fn apply(&mut self, cmd: SubCommand, sink: &mut PubSubSink) -> redis::RedisResult<()> {
        match self.note(cmd) {
            Noted::Subscribe(session, done) => {
                let result = sink.subscribe(self.channel(session)).await;
                match result {
                    Ok(()) => drop(done.send(())),
                    Err(_) => self.waiting.push(done),
                }
                result
            }
            Noted::Unsubscribe(session) => {
                // Best effort: a stale subscription only costs messages no room takes.
                let _ = sink.unsubscribe(self.channel(session)).await;
                Ok(())
            }
            Noted::Ignored => Ok(()),
        }
    }

    /// Updates what rooms want. An unsubscribe from an older room of the session (a newer one
    /// subscribed since) is ignored.
    pub(super) fn note(&mut self, cmd: SubCommand) -> Noted {
        match cmd {
            SubCommand::Subscribe {
                session,
                generation,
                done,
            } => {
                self.wanted.insert(session, generation);
                Noted::Subscribe(session, done)
            }
            SubCommand::Unsubscribe {
                session,
                generation,
            } if self.wanted.get(&session) == Some(&generation) => {
                self.wanted.remove(&session);
                Noted::Unsubscribe(session)
            }
            SubCommand::Unsubscribe { .. } => Noted::Ignored,
        }
    }

    async fn resubscribe(&self, sink: &mut PubSubSink) -> redis::RedisResult<()> {
        let channels: Vec<String> = self.wanted.keys().map(|s| self.channel(*s)).collect();
        if channels.is_empty() {
            return Ok(());
        }
        sink.subscribe(&channels).await
    }

    pub(super) fn confirm_waiting(&mut self) {
        for done in self.waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
