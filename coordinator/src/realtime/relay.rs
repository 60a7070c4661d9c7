//! Relays recorded events from Redis pub/sub to this coordinator's Socket.IO rooms.
//!
//! Design:
//! - One pub/sub connection per coordinator, subscribed only to the channels of sessions that
//!   have a member on this coordinator (no traffic it does not need). When it drops (Redis
//!   restart), it reconnects with backoff, re-subscribes and asks every room to repair its gap
//!   from the session's event stream.
//! - One task per room with local members. It is the only emitter to its room, and handles live
//!   events, joins and repairs in order, so a member joining with `since` gets the replay
//!   `(since, last relayed]` and then, once in the room, everything after: no gap, no duplicate.
//! - Events carry `seq`: a room drops what it already relayed and fetches from the stream what
//!   it missed (`seq` jumped). Each coordinator relays only to its own sockets, so any number of
//!   coordinators deliver every event to every client exactly once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::value::RawValue;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::socket::Sid;
use swarmq_shared::event::RawEnvelope;
use swarmq_shared::{Keys, Session, SessionId, Store};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Events kept per room for joins that replay recent history without a Redis read.
const RING: usize = 512;
/// Rooms one socket may be in; joining more is refused (a client cannot make us subscribe to
/// arbitrarily many channels).
pub const MAX_ROOMS_PER_SOCKET: usize = 100;
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

pub fn room_name(session: SessionId) -> String {
    format!("session:{session}")
}

#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    io: SocketIo,
    store: Store,
    registry: Mutex<Registry>,
    pubsub: mpsc::UnboundedSender<SubCommand>,
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

enum RoomCmd {
    Event(String),
    Join(JoinRequest),
    Resync,
    Close,
}

struct JoinRequest {
    socket: SocketRef,
    since: Option<u64>,
    /// Taken by whoever answers first: the room (in order with the replay), or `Relay::join`
    /// when the room did not answer in time — so a client always gets an ack.
    ack: SharedAck,
    done: oneshot::Sender<Result<(), String>>,
}

type SharedAck = Arc<Mutex<Option<AckSender>>>;

fn take_ack(ack: &SharedAck) -> Option<AckSender> {
    ack.lock().unwrap_or_else(|p| p.into_inner()).take()
}

enum SubCommand {
    Subscribe {
        session: SessionId,
        generation: u64,
        done: oneshot::Sender<()>,
    },
    Unsubscribe {
        session: SessionId,
        generation: u64,
    },
}

/// What a join's ack carries.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinAck<'a> {
    ok: bool,
    session: &'a Session,
    /// The last event recorded for the session when the snapshot was read.
    last_seq: u64,
    /// Events replayed after the ack (those with `seq > since`).
    replayed: usize,
    /// True when events after `since` were already trimmed from the stream (the snapshot is
    /// then the only record of them).
    truncated: bool,
}

impl Relay {
    pub fn start(io: SocketIo, store: Store, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            io,
            store: store.clone(),
            registry: Mutex::new(Registry::default()),
            pubsub: tx,
            generation: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(pubsub_loop(store, weak, rx, shutdown));
        Self { inner }
    }

    /// Adds `socket` to the session's room; with `since`, first replays every event after it.
    /// The ack (if the client asked for one) carries the session snapshot, or `{ok:false, error}`.
    pub async fn join(
        &self,
        socket: SocketRef,
        session: SessionId,
        since: Option<u64>,
        ack: AckSender,
    ) {
        let tx = match self.register(socket.id, session) {
            Ok(tx) => tx,
            Err(error) => {
                let _ = ack.send(&serde_json::json!({ "ok": false, "error": error }));
                return;
            }
        };
        let (done, wait) = oneshot::channel();
        let ack: SharedAck = Arc::new(Mutex::new(Some(ack)));
        let request = JoinRequest {
            socket: socket.clone(),
            since,
            ack: ack.clone(),
            done,
        };
        let outcome = if tx.send(RoomCmd::Join(request)).is_err() {
            Err("the room closed, try again".to_owned())
        } else {
            match tokio::time::timeout(JOIN_TIMEOUT, wait).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err("the room closed, try again".to_owned()),
                Err(_) => Err("timed out joining the session (is Redis reachable?)".to_owned()),
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(socket = %socket.id, %session, error, "join failed");
            if let Some(ack) = take_ack(&ack) {
                let _ = ack.send(&serde_json::json!({ "ok": false, "error": error }));
            }
            self.leave(&socket, session);
        }
    }

    pub fn leave(&self, socket: &SocketRef, session: SessionId) {
        socket.leave(room_name(session));
        let mut reg = self.lock();
        if let Some(set) = reg.by_socket.get_mut(&socket.id) {
            set.remove(&session);
            if set.is_empty() {
                reg.by_socket.remove(&socket.id);
            }
        }
        reg.drop_member(session, socket.id);
    }

    pub fn disconnected(&self, sid: Sid) {
        let mut reg = self.lock();
        for session in reg.by_socket.remove(&sid).unwrap_or_default() {
            reg.drop_member(session, sid);
        }
    }

    /// Sessions with members on this coordinator.
    pub fn rooms(&self) -> usize {
        self.lock().rooms.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding this lock would be a bug in a few lines of map updates; keep
        // serving rather than poison every later join.
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn register(
        &self,
        sid: Sid,
        session: SessionId,
    ) -> Result<mpsc::UnboundedSender<RoomCmd>, String> {
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
        let (tx, rx) = mpsc::unbounded_channel();
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        let room = Room {
            session,
            name: room_name(session),
            generation,
            last: 0,
            ring: VecDeque::new(),
            inner: Arc::downgrade(&self.inner),
        };
        tokio::spawn(room.run(rx));
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
}

impl Registry {
    fn drop_member(&mut self, session: SessionId, sid: Sid) {
        if let Some(handle) = self.rooms.get_mut(&session) {
            handle.members.remove(&sid);
            if handle.members.is_empty() {
                let _ = handle.tx.send(RoomCmd::Close);
                self.rooms.remove(&session);
                metrics::gauge!("swarmq_socket_rooms").set(self.rooms.len() as f64);
            }
        }
    }
}

struct Room {
    session: SessionId,
    name: String,
    generation: u64,
    /// Highest seq emitted to the room (or, at start, recorded before we subscribed: those are
    /// served from the stream by joins, not relayed live).
    last: u64,
    ring: VecDeque<Recent>,
    inner: std::sync::Weak<Inner>,
}

struct Recent {
    seq: u64,
    event: String,
    data: Box<RawValue>,
}

impl Room {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<RoomCmd>) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let (done, subscribed) = oneshot::channel();
        let _ = inner.pubsub.send(SubCommand::Subscribe {
            session: self.session,
            generation: self.generation,
            done,
        });
        drop(inner);
        if subscribed.await.is_err() {
            return;
        }
        // Everything recorded up to now is history (served from the stream); live starts after.
        self.last = loop {
            let Some(inner) = self.inner.upgrade() else {
                return;
            };
            match inner.store.last_seq(self.session).await {
                Ok(seq) => break seq.unwrap_or(0),
                Err(e) => {
                    tracing::warn!(session_id = %self.session, error = %e, "relay: reading seq failed, retrying");
                    drop(inner);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        while let Some(cmd) = rx.recv().await {
            match cmd {
                RoomCmd::Event(raw) => self.on_live(&raw).await,
                RoomCmd::Join(request) => self.on_join(request).await,
                RoomCmd::Resync => self.catch_up(u64::MAX).await,
                RoomCmd::Close => break,
            }
        }
        if let Some(inner) = self.inner.upgrade() {
            let _ = inner.pubsub.send(SubCommand::Unsubscribe {
                session: self.session,
                generation: self.generation,
            });
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
            self.catch_up(envelope.seq - 1).await;
        }
        if envelope.seq > self.last {
            self.deliver(
                envelope.seq,
                envelope.event.to_owned(),
                envelope.data.to_owned(),
            )
            .await;
        }
    }

    /// Relays recorded events after `self.last` up to `upto` from the stream.
    async fn catch_up(&mut self, upto: u64) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        while self.last < upto {
            let batch = match inner.store.events_after(self.session, self.last, 500).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(session_id = %self.session, error = %e, "relay: gap repair failed");
                    return;
                }
            };
            if batch.is_empty() {
                return;
            }
            for event in batch {
                if event.seq > upto {
                    return;
                }
                match RawValue::from_string(event.data) {
                    Ok(data) => self.deliver(event.seq, event.event, data).await,
                    Err(e) => {
                        tracing::warn!(seq = event.seq, error = %e, "relay: bad stream entry")
                    }
                }
            }
        }
    }

    async fn deliver(&mut self, seq: u64, event: String, data: Box<RawValue>) {
        metrics::counter!("swarmq_events_relayed_total").increment(1);
        // Per socket rather than one room broadcast: a broadcast silently drops the event for a
        // socket whose send buffer is full, while `emit_to` waits for it (bounded), so a client
        // that is merely slow during a burst still gets every event.
        if let Some(inner) = self.inner.upgrade() {
            for socket in inner.io.to(self.name.clone()).sockets() {
                emit_to(&socket, &event, &data).await;
            }
        }
        self.last = seq;
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.ring.push_back(Recent { seq, event, data });
    }

    async fn on_join(&mut self, request: JoinRequest) {
        let JoinRequest {
            socket,
            since,
            ack,
            done,
        } = request;
        let result = self.join(&socket, since).await;
        let ack = take_ack(&ack);
        match result {
            Ok((ack_body, events)) => {
                if let Some(ack) = ack {
                    let _ = ack.send(&ack_body);
                }
                for (event, data) in &events {
                    emit_to(&socket, event, data).await;
                }
                socket.join(self.name.clone());
                let _ = done.send(Ok(()));
            }
            Err(error) => {
                if let Some(ack) = ack {
                    let _ = ack.send(&serde_json::json!({ "ok": false, "error": error }));
                }
                let _ = done.send(Err(error));
            }
        }
    }

    /// The ack body and the events to replay for a join.
    async fn join(
        &mut self,
        socket: &SocketRef,
        since: Option<u64>,
    ) -> Result<(serde_json::Value, Vec<(String, Box<RawValue>)>), String> {
        if !socket.connected() {
            return Err("socket disconnected".into());
        }
        let Some(inner) = self.inner.upgrade() else {
            return Err("shutting down".into());
        };
        let snapshot = match inner.store.snapshot(self.session).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(format!("session {} not found", self.session)),
            Err(e) => {
                tracing::warn!(session_id = %self.session, error = %e, "join: snapshot failed");
                return Err("storage unavailable, try again".into());
            }
        };
        let (events, truncated) = match since {
            Some(since) if since < self.last => self.history(&inner.store, since).await?,
            _ => (Vec::new(), false),
        };
        let ack = JoinAck {
            ok: true,
            session: &snapshot,
            last_seq: snapshot.last_seq,
            replayed: events.len(),
            truncated,
        };
        let body = serde_json::to_value(&ack).map_err(|e| e.to_string())?;
        Ok((body, events))
    }

    /// Events `(since, self.last]`, from the ring when it reaches back far enough, else the
    /// stream. Also tells whether the stream had already trimmed some of them.
    async fn history(
        &self,
        store: &Store,
        since: u64,
    ) -> Result<(Vec<(String, Box<RawValue>)>, bool), String> {
        if self
            .ring
            .front()
            .is_some_and(|first| first.seq <= since + 1)
        {
            let events = self
                .ring
                .iter()
                .filter(|e| e.seq > since)
                .map(|e| (e.event.clone(), e.data.clone()))
                .collect();
            return Ok((events, false));
        }
        let mut events = Vec::new();
        let mut cursor = since;
        let mut truncated = false;
        while cursor < self.last {
            let batch = store
                .events_after(self.session, cursor, 1000)
                .await
                .map_err(|_| "storage unavailable, try again".to_owned())?;
            let Some(first) = batch.first() else { break };
            if cursor == since && first.seq > since + 1 {
                truncated = true;
            }
            for e in batch {
                if e.seq > self.last {
                    break;
                }
                cursor = e.seq;
                if let Ok(data) = RawValue::from_string(e.data) {
                    events.push((e.event, data));
                }
            }
            if cursor >= self.last {
                break;
            }
        }
        Ok((events, truncated))
    }
}

/// Emits to one socket, waiting (up to 2 s) when its send buffer is full instead of dropping;
/// a client stuck longer than that loses the event and can re-join with `since` to repair.
async fn emit_to(socket: &SocketRef, event: &str, data: &RawValue) {
    for _ in 0..200 {
        match socket.emit(event, data) {
            Ok(()) => return,
            Err(socketioxide::SendError::Socket(
                socketioxide::SocketError::InternalChannelFull,
            )) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => {
                tracing::debug!(error = %e, "emit to a socket failed");
                return;
            }
        }
    }
    tracing::warn!(socket = %socket.id, event, "socket send buffer stayed full for 2 s; event dropped for it");
}

/// Owns the pub/sub connection: (re)subscribes what rooms want, dispatches messages to rooms.
async fn pubsub_loop(
    store: Store,
    inner: std::sync::Weak<Inner>,
    mut commands: mpsc::UnboundedReceiver<SubCommand>,
    shutdown: CancellationToken,
) {
    let keys: Keys = store.keys().clone();
    let mut wanted: HashMap<SessionId, u64> = HashMap::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut backoff = Duration::from_millis(100);
    let mut connected_before = false;
    loop {
        let pubsub = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = store.client().get_async_pubsub() => p,
        };
        let (mut sink, mut stream) = match pubsub {
            Ok(p) => p.split(),
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "relay: pub/sub connect failed, retrying");
                let deadline = tokio::time::sleep(backoff);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = &mut deadline => break,
                        cmd = commands.recv() => match cmd {
                            Some(SubCommand::Subscribe { session, generation, done }) => {
                                wanted.insert(session, generation);
                                waiting.push(done);
                            }
                            Some(SubCommand::Unsubscribe { session, generation }) => {
                                if wanted.get(&session) == Some(&generation) {
                                    wanted.remove(&session);
                                }
                            }
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let channels: Vec<String> = wanted
            .keys()
            .map(|s| keys.session(*s).live_channel())
            .collect();
        if !channels.is_empty()
            && let Err(e) = sink.subscribe(&channels).await
        {
            tracing::warn!(error = %e, ?backoff, "relay: re-subscribe failed, reconnecting");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        }
        backoff = Duration::from_millis(100);
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
        if connected_before {
            tracing::info!(
                channels = channels.len(),
                "relay: pub/sub reconnected, repairing gaps"
            );
            if let Some(inner) = inner.upgrade() {
                let reg = inner.registry.lock().unwrap_or_else(|p| p.into_inner());
                for handle in reg.rooms.values() {
                    let _ = handle.tx.send(RoomCmd::Resync);
                }
            }
        }
        connected_before = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                message = stream.next() => {
                    let Some(message) = message else {
                        tracing::warn!("relay: pub/sub connection lost, reconnecting");
                        break;
                    };
                    let Some(session) = keys.session_of_channel(message.get_channel_name()) else { continue };
                    let Ok(payload) = message.get_payload::<String>() else { continue };
                    let Some(inner) = inner.upgrade() else { return };
                    let reg = inner.registry.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(handle) = reg.rooms.get(&session) {
                        let _ = handle.tx.send(RoomCmd::Event(payload));
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(SubCommand::Subscribe { session, generation, done }) => {
                        wanted.insert(session, generation);
                        if sink.subscribe(keys.session(session).live_channel()).await.is_ok() {
                            let _ = done.send(());
                        } else {
                            waiting.push(done);
                            break;
                        }
                    }
                    Some(SubCommand::Unsubscribe { session, generation }) => {
                        if wanted.get(&session) == Some(&generation) {
                            wanted.remove(&session);
                            let _ = sink.unsubscribe(keys.session(session).live_channel()).await;
                        }
                    }
                    None => return,
                },
            }
        }
    }
}
