//! One task per session watched on this coordinator: the only sender of that session's events
//! to its members, so they get them in `seq` order, once each.
//!
//! It subscribes to the session's channel, then relays every recorded event after the last one
//! recorded at that moment (earlier ones are history, served to joins from the stream). An
//! event is encoded once and offered to every member without waiting ([`Member::offer`]); a
//! member that cannot keep up is evicted, never waited for. A jump in `seq` (messages lost
//! while pub/sub reconnected) is filled from the stream first, so the room never skips one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use engineioxide::Str;
use engineioxide::sid::Sid;
use swarmq_shared::SessionId;
use swarmq_shared::event::RawEnvelope;
use tokio::sync::{mpsc, oneshot};

use super::member::Member;
use super::protocol;
use super::pubsub::SubCommand;
use super::relay::{self, RelayRef};

/// Recent events kept per room (encoded), so that most joins replay without reading Redis.
const RING: usize = 512;
/// Events read from the stream per call when filling a gap.
const GAP_BATCH: usize = 500;
/// Pause before retrying a failed read of Redis (the seq at start, a gap repair), doubling up
/// to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(2);

pub(super) enum RoomCmd {
    /// A message from the session's live channel (a recorded event's envelope).
    Event(String),
    /// A member starts catching up; the room answers with what it must replay.
    Join {
        member: Arc<Member>,
        since: Option<u64>,
        reply: oneshot::Sender<Plan>,
    },
    Leave(Sid),
    /// Pub/sub reconnected: fetch from the stream whatever was published meanwhile.
    Resync,
    Close,
}

/// What a joining member must replay before the live events the room parks for it.
pub(super) struct Plan {
    /// The last event the room relayed: the replay covers `(since, upto]`.
    pub upto: u64,
    /// Those events, when the room still holds them all.
    pub recent: Option<Vec<Str>>,
}

pub(super) struct Room {
    session: SessionId,
    generation: u64,
    /// Highest seq relayed (at start: recorded before we subscribed).
    last: u64,
    ring: VecDeque<(u64, Str)>,
    members: HashMap<Sid, Arc<Member>>,
    relay: RelayRef,
    /// A gap repair failed (Redis unreachable): retried after this delay, because the event
    /// that would trigger it again may never come (it was the session's last).
    repair_retry: Option<Duration>,
}

impl Room {
    pub fn spawn(
        session: SessionId,
        generation: u64,
        relay: RelayRef,
    ) -> mpsc::UnboundedSender<RoomCmd> {
        let (tx, rx) = mpsc::unbounded_channel();
        let room = Self {
            session,
            generation,
            last: 0,
            ring: VecDeque::new(),
            members: HashMap::new(),
            relay,
            repair_retry: None,
        };
        tokio::spawn(room.run(rx));
        tx
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<RoomCmd>) {
        if !self.start().await {
            return;
        }
        loop {
            let retry = self.repair_retry;
            let cmd = tokio::select! {
                cmd = rx.recv() => cmd,
                _ = tokio::time::sleep(retry.unwrap_or_default()), if retry.is_some() => {
                    self.fill_gap(u64::MAX).await;
                    continue;
                }
            };
            match cmd {
                Some(RoomCmd::Event(raw)) => self.on_live(&raw).await,
                Some(RoomCmd::Join {
                    member,
                    since,
                    reply,
                }) => self.admit(member, since, reply),
                Some(RoomCmd::Leave(sid)) => {
                    self.members.remove(&sid);
                }
                Some(RoomCmd::Resync) => self.fill_gap(u64::MAX).await,
                Some(RoomCmd::Close) | None => break,
            }
        }
        if let Some(relay) = relay::upgrade(&self.relay) {
            let _ = relay.inner().pubsub.send(SubCommand::Unsubscribe {
                session: self.session,
                generation: self.generation,
            });
        }
    }

    /// Subscribes, then takes the session's last recorded seq as the start of live delivery.
    /// False when the relay is gone.
    async fn start(&mut self) -> bool {
        let Some(relay) = relay::upgrade(&self.relay) else {
            return false;
        };
        let (done, subscribed) = oneshot::channel();
        let _ = relay.inner().pubsub.send(SubCommand::Subscribe {
            session: self.session,
            generation: self.generation,
            done,
        });
        drop(relay);
        if subscribed.await.is_err() {
            return false;
        }
        loop {
            let Some(relay) = relay::upgrade(&self.relay) else {
                return false;
            };
            match relay.inner().store.last_seq(self.session).await {
                Ok(seq) => {
                    self.last = seq.unwrap_or(0);
                    return true;
                }
                Err(e) => {
                    tracing::warn!(session_id = %self.session, error = %e, "relay: reading seq failed, retrying");
                }
            }
            drop(relay);
            tokio::time::sleep(FIRST_RETRY).await;
        }
    }

    async fn on_live(&mut self, raw: &str) {
        let envelope: RawEnvelope = match serde_json::from_str(raw) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(session_id = %self.session, error = %e, "relay: unparseable message dropped");
                return;
            }
        };
        if envelope.seq <= self.last {
            return;
        }
        if envelope.seq > self.last + 1 {
            // Missed some (pub/sub dropped while reconnecting): fetch them from the stream.
            self.fill_gap(envelope.seq - 1).await;
        }
        if envelope.seq == self.last + 1 {
            self.deliver(envelope.seq, envelope.event, envelope.data.get());
        }
    }

    /// Relays recorded events after `self.last` up to `upto` from the stream. On a Redis error
    /// the repair is retried later (see `repair_retry`); nothing after the gap is relayed first.
    async fn fill_gap(&mut self, upto: u64) {
        let Some(relay) = relay::upgrade(&self.relay) else {
            return;
        };
        while self.last < upto {
            let batch = match relay
                .inner()
                .store
                .events_after(self.session, self.last, GAP_BATCH)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    let delay = self
                        .repair_retry
                        .map_or(FIRST_RETRY, |d| (d * 2).min(MAX_RETRY));
                    tracing::warn!(session_id = %self.session, error = %e, ?delay, "relay: gap repair failed, retrying");
                    self.repair_retry = Some(delay);
                    return;
                }
            };
            self.repair_retry = None;
            if batch.is_empty() {
                return;
            }
            for event in batch.into_iter().take_while(|e| e.seq <= upto) {
                self.deliver(event.seq, &event.event, &event.data);
            }
        }
        self.repair_retry = None;
    }

    /// Encodes the event once and offers it to every member; evicts those that cannot keep up.
    fn deliver(&mut self, seq: u64, event: &str, data: &str) {
        let frame = protocol::event(event, data);
        metrics::counter!("swarmq_events_relayed_total").increment(1);
        metrics::counter!("swarmq_events_delivered_total").increment(self.members.len() as u64);
        let relay = relay::upgrade(&self.relay);
        let backlog = relay
            .as_ref()
            .map_or(usize::MAX, |r| r.inner().limits.backlog);
        let lagging: Vec<_> = self
            .members
            .values()
            .filter_map(|m| {
                m.offer(&frame, backlog)
                    .err()
                    .map(|lag| (m.conn().clone(), lag))
            })
            .collect();
        self.last = seq;
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.ring.push_back((seq, frame));
        if let Some(relay) = relay {
            for (conn, lag) in lagging {
                relay.evict(&conn, lag);
            }
        }
    }

    /// Adds a member (catching up) and tells it what to replay: `(since, last]`, from the ring
    /// when it still holds all of them.
    fn admit(&mut self, member: Arc<Member>, since: Option<u64>, reply: oneshot::Sender<Plan>) {
        let recent = since.and_then(|since| self.recent_since(since));
        // A connection that left while its join was on the way (its Leave came first).
        if !super::member::Conn::of(member.conn()).is_gone() {
            self.members.insert(member.sid(), member);
        }
        let _ = reply.send(Plan {
            upto: self.last,
            recent,
        });
    }

    fn recent_since(&self, since: u64) -> Option<Vec<Str>> {
        let (first, _) = self.ring.front()?;
        (*first <= since + 1).then(|| {
            self.ring
                .iter()
                .filter(|(seq, _)| *seq > since)
                .map(|(_, frame)| frame.clone())
                .collect()
        })
    }
}
