//! The relay: which of this coordinator's connections watch which session, and the handle the
//! Socket.IO handlers use to join, leave, disconnect and evict.
//!
//! Each session watched here has one room task ([`super::room`]) that is the only sender of that
//! session's events to its members; the registry below only decides when a room starts (first
//! member) and stops (last member gone), and forwards membership changes to it in order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use swarmq_shared::{SessionId, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::engine::Sid;
use super::join;
use super::member::{self, Conn, Lag, Member};
use super::pubsub::{self, SubCommand};
use super::room::{Room, RoomCmd};
use super::{EioSocket, Limits};

/// Sessions one connection may watch at once: a client cannot make us subscribe to arbitrarily
/// many channels.
pub const MAX_ROOMS_PER_SOCKET: usize = 100;

/// The Socket.IO room of a session (the original plan's name, used in logs and docs).
pub fn room_name(session: SessionId) -> String {
    format!("session:{session}")
}

#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) store: Store,
    pub(super) limits: Limits,
    registry: Mutex<Registry>,
    pub(super) pubsub: mpsc::UnboundedSender<SubCommand>,
    /// Tells a room's subscription apart from an earlier one of the same session.
    generation: AtomicU64,
}

#[derive(Default)]
struct Registry {
    rooms: HashMap<SessionId, RoomHandle>,
    by_socket: HashMap<Sid, HashSet<SessionId>>,
}

struct RoomHandle {
    tx: mpsc::UnboundedSender<RoomCmd>,
    members: HashSet<Sid>,
}

impl Relay {
    /// Starts the relay. With durability on, its reads answer only what enough replicas hold
    /// (`Store::with_replicated_reads`), and live messages are taken as news only: the room
    /// reads the event itself that way (see `Room::on_live`).
    pub fn start(store: Store, limits: Limits, shutdown: CancellationToken) -> Self {
        let store = store.with_replicated_reads();
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            store: store.clone(),
            limits,
            registry: Mutex::new(Registry::default()),
            pubsub: tx,
            generation: AtomicU64::new(0),
        });
        tokio::spawn(pubsub::run(store, Arc::downgrade(&inner), rx, shutdown));
        Self { inner }
    }

    /// Starts `conn` watching `session`: the ack (if asked for), the replay of every event after
    /// `since` (none for a plain join), then live events — see [`member::join`].
    pub fn join(
        &self,
        conn: Arc<EioSocket>,
        session: SessionId,
        since: Option<u64>,
        ack: Option<u64>,
    ) {
        let member = Arc::new(Member::new(conn));
        match self.register(&member, session) {
            Ok(room) => {
                tokio::spawn(join::join(self.clone(), member, session, since, ack, room));
            }
            Err(error) => member.answer(ack, &join::refusal(&error)),
        }
    }

    pub fn leave(&self, sid: Sid, session: SessionId) {
        let mut reg = self.lock();
        if let Some(set) = reg.by_socket.get_mut(&sid) {
            set.remove(&session);
            if set.is_empty() {
                reg.by_socket.remove(&sid);
            }
        }
        reg.drop_member(session, sid);
    }

    /// The connection is gone: it leaves every room.
    pub fn disconnected(&self, sid: Sid) {
        let mut reg = self.lock();
        for session in reg.by_socket.remove(&sid).unwrap_or_default() {
            reg.drop_member(session, sid);
        }
    }

    /// The connection could not keep up: it gets no more events, is told why, and is closed so
    /// that its client reconnects and resumes with `since` (see [`member::farewell`]).
    pub fn evict(&self, conn: &Arc<EioSocket>, lag: Lag) {
        if !Conn::of(conn).evict() {
            return;
        }
        let reason = lag.reason();
        metrics::counter!("swarmq_socket_evictions_total", "reason" => reason).increment(1);
        tracing::info!(socket = %conn.id, reason, "evicting a socket that cannot keep up");
        self.disconnected(conn.id);
        member::farewell(conn, lag, self.inner.limits);
    }

    /// Sessions with members on this coordinator.
    pub fn rooms(&self) -> usize {
        self.lock().rooms.len()
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock()
    }

    /// Records the membership and returns the room's command channel, starting the room if it is
    /// the session's first member here.
    fn register(
        &self,
        member: &Arc<Member>,
        session: SessionId,
    ) -> Result<mpsc::UnboundedSender<RoomCmd>, String> {
        let sid = member.sid();
        let mut reg = self.lock();
        let joined = reg.by_socket.entry(sid).or_default();
        if !joined.contains(&session) && joined.len() >= MAX_ROOMS_PER_SOCKET {
            return Err(format!(
                "a connection may join at most {MAX_ROOMS_PER_SOCKET} sessions"
            ));
        }
        joined.insert(session);
        if let Some(handle) = reg.rooms.get_mut(&session) {
            handle.members.insert(sid);
            return Ok(handle.tx.clone());
        }
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        let replicated_only = self.inner.store.reads_replicated();
        let tx = Room::spawn(
            session,
            generation,
            Arc::downgrade(&self.inner),
            replicated_only,
        );
        reg.rooms.insert(
            session,
            RoomHandle {
                tx: tx.clone(),
                members: HashSet::from([sid]),
            },
        );
        metrics::gauge!("swarmq_socket_rooms").set(reg.rooms.len() as f64);
        Ok(tx)
    }

    pub(super) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock would be a bug in a few lines of map updates; keep
        // serving rather than poison every later join.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks every room to repair the gap a pub/sub reconnection may have opened.
    pub(super) fn resync_rooms(&self) {
        for handle in self.lock().rooms.values() {
            let _ = handle.tx.send(RoomCmd::Resync);
        }
    }

    /// Hands a live message to its session's room, if the session is watched here.
    pub(super) fn dispatch(&self, session: SessionId, payload: String) {
        if let Some(handle) = self.lock().rooms.get(&session) {
            let _ = handle.tx.send(RoomCmd::Event(payload));
        }
    }
}

/// The relay of a room task: weak, so that rooms never keep a stopped relay alive.
pub(super) type RelayRef = Weak<Inner>;

pub(super) fn upgrade(relay: &RelayRef) -> Option<Relay> {
    relay.upgrade().map(|inner| Relay { inner })
}

impl Registry {
    fn drop_member(&mut self, session: SessionId, sid: Sid) {
        let Some(handle) = self.rooms.get_mut(&session) else {
            return;
        };
        handle.members.remove(&sid);
        let _ = handle.tx.send(RoomCmd::Leave(sid));
        if handle.members.is_empty() {
            let _ = handle.tx.send(RoomCmd::Close);
            self.rooms.remove(&session);
            metrics::gauge!("swarmq_socket_rooms").set(self.rooms.len() as f64);
        }
    }
}
