//! One task per session watched on this coordinator: the only sender of that session's events
//! to its members, so they get them in `seq` order, once each.
//!
//! It subscribes to the session's channel, then relays every recorded event after the last one
//! recorded at that moment (earlier ones are history: the room keeps the most recent of them
//! encoded, for joins, and the last session snapshot a join read). An
//! event is encoded once and offered to every member without waiting ([`Member::offer`]); a
//! member that cannot keep up is evicted, never waited for. A jump in `seq` (messages lost
//! while pub/sub reconnected) is filled from the stream first, so the room never skips one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use swarmq_shared::SessionId;
use swarmq_shared::backoff::Backoff;
use swarmq_shared::event::RawEnvelope;
use tokio::sync::{mpsc, oneshot};

use super::engine::{Frame, Sid};
use super::member::Member;
use super::protocol;
use super::pubsub::SubCommand;
use super::relay::{self, RelayRef};

/// Recent events kept per room (encoded), so that most joins replay without reading Redis.
const RING: usize = 512;
/// Events read from the stream per call when filling a gap.
const GAP_BATCH: usize = 500;
/// How often a room that heard nothing checks the stream for events it was not told about (a
/// live message lost without a reconnection to say so: a sharded subscription that did not
/// follow its slot, say). One `HGET` per quiet room per period.
const AUDIT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) enum RoomCmd {
    /// A message from the session's live channel (a recorded event's envelope).
    Event(String),
    /// A member starts catching up; the room answers with what it must replay.
    Join {
        member: Arc<Member>,
        since: Option<u64>,
        reply: oneshot::Sender<Plan>,
    },
    /// A join read the session: kept for the next joins while no event arrives.
    Snapshot(Snapshot),
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
    pub recent: Option<Vec<Frame>>,
    /// The session as of `upto`, when the room has it.
    pub snapshot: Option<Snapshot>,
}

/// A session as a join's ack carries it: encoded once, shared by the joins that use it.
#[derive(Clone)]
pub(super) struct Snapshot {
    /// The last event the snapshot reflects.
    pub last_seq: u64,
    pub json: Arc<str>,
}

pub(super) struct Room {
    session: SessionId,
    generation: u64,
    /// Highest seq relayed (at start: recorded before we subscribed).
    last: u64,
    ring: VecDeque<(u64, Frame)>,
    members: HashMap<Sid, Arc<Member>>,
    /// The session as of `last`, read by a join (dropped when the next event arrives).
    snapshot: Option<Snapshot>,
    relay: RelayRef,
    /// A gap repair failed (Redis unreachable): retried after the next delay, because the
    /// event that would trigger it again may never come (it was the session's last).
    repair_retry: Option<Backoff>,
    /// The next retry of the gap repair, when one is due.
    repair_at: Option<tokio::time::Instant>,
    /// Durability on: live messages only say that events exist; they are read from the stream
    /// once enough replicas hold them.
    replicated_only: bool,
    /// A live message arrived since the last audit (see [`AUDIT_EVERY`]).
    heard: bool,
    /// `session:complete` was relayed: nothing more will come.
    finished: bool,
}

impl Room {
    pub fn spawn(
        session: SessionId,
        generation: u64,
        relay: RelayRef,
        replicated_only: bool,
    ) -> mpsc::UnboundedSender<RoomCmd> {
        let (tx, rx) = mpsc::unbounded_channel();
        let room = Self {
            session,
            generation,
            last: 0,
            ring: VecDeque::new(),
            members: HashMap::new(),
            snapshot: None,
            relay,
            repair_retry: None,
            repair_at: None,
            replicated_only,
            heard: false,
            finished: false,
        };
        tokio::spawn(room.run(rx));
        tx
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<RoomCmd>) {
        if !self.start().await {
            return;
        }
        let mut audit = tokio::time::interval(AUDIT_EVERY);
        audit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        audit.tick().await;
        loop {
            let repair_at = self.repair_at;
            let cmd = tokio::select! {
                cmd = rx.recv() => cmd,
                _ = audit.tick(), if !self.finished => {
                    self.audit().await;
                    continue;
                }
                _ = tokio::time::sleep_until(repair_at.unwrap_or_else(tokio::time::Instant::now)), if repair_at.is_some() => {
                    self.fill_gap(u64::MAX).await;
                    continue;
                }
            };
            match cmd {
                Some(RoomCmd::Event(raw)) => {
                    self.heard = true;
                    self.on_live(&raw).await
                }
                Some(RoomCmd::Join {
                    member,
                    since,
                    reply,
                }) => self.admit(member, since, reply),
                Some(RoomCmd::Snapshot(snapshot)) => {
                    if snapshot.last_seq == self.last {
                        self.snapshot = Some(snapshot);
                    }
                }
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
        let mut backoff = Backoff::redis_reconnect();
        loop {
            let Some(relay) = relay::upgrade(&self.relay) else {
                return false;
            };
            match relay.inner().store.last_seq(self.session).await {
                Ok(seq) => {
                    self.last = seq.unwrap_or(0);
                    self.fill_ring(&relay).await;
                    return true;
                }
                Err(e) => {
                    tracing::warn!(session_id = %self.session, error = %e, "relay: reading seq failed, retrying");
                }
            }
            drop(relay);
            tokio::time::sleep(backoff.next_delay()).await;
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
        if self.replicated_only {
            // Durability on: a message may come from a primary that dies before any replica
            // has its event. The stream, read with a fence, holds only what a failover keeps.
            self.fill_gap(envelope.seq).await;
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

    /// A quiet period: if the stream holds events the room was never told about, relays them.
    async fn audit(&mut self) {
        if std::mem::take(&mut self.heard) || self.repair_at.is_some() {
            return;
        }
        let Some(relay) = relay::upgrade(&self.relay) else {
            return;
        };
        let recorded = relay.inner().store.last_seq(self.session).await;
        drop(relay);
        if let Ok(Some(seq)) = recorded
            && seq > self.last
        {
            tracing::warn!(
                session_id = %self.session,
                from = self.last,
                to = seq,
                "relay: events recorded without a live message; relaying them from the stream"
            );
            metrics::counter!("swarmq_relay_audit_repairs_total").increment(1);
            self.fill_gap(seq).await;
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
                        .get_or_insert_with(Backoff::redis_reconnect)
                        .next_delay();
                    tracing::warn!(session_id = %self.session, error = %e, ?delay, "relay: gap repair failed, retrying");
                    self.repair_at = Some(tokio::time::Instant::now() + delay);
                    return;
                }
            };
            self.repair_retry = None;
            self.repair_at = None;
            if batch.is_empty() {
                return;
            }
            for event in batch.into_iter().take_while(|e| e.seq <= upto) {
                self.deliver(event.seq, &event.event, &event.data);
            }
        }
        self.repair_retry = None;
        self.repair_at = None;
    }

    /// Keeps the session's most recent events (up to `last`), so that joins replay them from
    /// memory. Best effort: a join whose `since` the ring does not reach reads the stream.
    async fn fill_ring(&mut self, relay: &super::relay::Relay) {
        let from = self.last.saturating_sub(RING as u64);
        let Ok(events) = relay
            .inner()
            .store
            .events_after(self.session, from, RING)
            .await
        else {
            return;
        };
        self.ring = events
            .into_iter()
            .take_while(|e| e.seq <= self.last)
            .map(|e| (e.seq, protocol::event(&e.event, &e.data)))
            .collect();
    }

    /// Encodes the event once and offers it to every member; evicts those that cannot keep up.
    fn deliver(&mut self, seq: u64, event: &str, data: &str) {
        self.finished |= event == "session:complete";
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
        self.snapshot = None;
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
            snapshot: self.snapshot.clone(),
        });
    }

    fn recent_since(&self, since: u64) -> Option<Vec<Frame>> {
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
