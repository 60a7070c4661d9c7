//! One connection's membership of a room, and the delivery policy that keeps a slow client from
//! hurting anyone else.
//!
//! - Every connection has one bounded outgoing queue: its Engine.IO send buffer
//!   ([`super::Limits::queue`] packets). Rooms never wait on it: an event goes in with a
//!   non-blocking send, and a connection whose queue is full is *evicted* ([`farewell`]): it gets
//!   no further events, then `connection:evicted` with the reason (in a queue slot reserved for
//!   it), then the close, so its client reconnects and resumes with `since`. Nothing is ever
//!   skipped for a connection that stays connected.
//! - A member that has just joined is *catching up*: its own task ([`join`]) sends the ack and the
//!   replay, waiting on its queue as long as the client keeps reading, while the room parks the
//!   live events that arrive meanwhile in the member's bounded backlog. When the backlog is empty
//!   the member turns live. So a join — however long its replay — never delays the room.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use engineioxide::sid::Sid;
use engineioxide::{DisconnectReason, Str};
use serde_json::{Value, json};
use swarmq_shared::{Session, SessionId};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use super::relay::Relay;
use super::room::RoomCmd;
use super::{EioSocket, Limits, protocol};

/// How often a catching-up member retries a full queue.
const FULL_RETRY: Duration = Duration::from_millis(10);
/// A join gives up when the session snapshot cannot be read in this time.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);
/// Events read from the stream per call when a join replays more than the room remembers.
const REPLAY_BATCH: usize = 1000;

/// What swarmq keeps on each Engine.IO connection.
#[derive(Default, Debug)]
pub struct Conn {
    /// The Socket.IO socket id, set when the client connected to the namespace.
    socket_id: OnceLock<Sid>,
    /// Set once when the relay evicts the connection: nothing more is sent to it.
    evicted: AtomicBool,
    /// Set when the connection closed (or was evicted): a room must not admit it any more.
    gone: AtomicBool,
    /// Wakes the task that holds this connection's reserved queue slot ([`hold_notice_slot`]).
    notice: Mutex<Option<oneshot::Sender<Lag>>>,
}

impl Conn {
    pub fn of(socket: &EioSocket) -> &Self {
        &socket.data
    }

    /// Marks the namespace connection made; false if it already was.
    pub fn connect(&self, id: Sid) -> bool {
        self.socket_id.set(id).is_ok()
    }

    pub fn is_connected(&self) -> bool {
        self.socket_id.get().is_some()
    }

    /// Marks the connection evicted; false if it already was.
    pub fn evict(&self) -> bool {
        self.gone.store(true, Ordering::SeqCst);
        !self.evicted.swap(true, Ordering::SeqCst)
    }

    /// The connection closed: set before the relay forgets it, so that a join still on its way
    /// to a room is not admitted after the room already saw it leave.
    pub fn mark_gone(&self) {
        self.gone.store(true, Ordering::SeqCst);
    }

    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::SeqCst)
    }

    fn take_notice(&self) -> Option<oneshot::Sender<Lag>> {
        self.notice.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The connection is gone: the slot holder stops.
    pub fn release(&self) {
        drop(self.take_notice());
    }
}

/// A connection in one room.
pub struct Member {
    conn: Arc<EioSocket>,
    outbox: Mutex<Outbox>,
}

#[derive(Default)]
struct Outbox {
    /// Events go straight to the connection's queue (else they wait in `backlog`).
    live: bool,
    backlog: VecDeque<Str>,
}

impl Member {
    pub fn new(conn: Arc<EioSocket>) -> Self {
        Self {
            conn,
            outbox: Mutex::new(Outbox::default()),
        }
    }

    pub fn sid(&self) -> Sid {
        self.conn.id
    }

    pub fn conn(&self) -> &Arc<EioSocket> {
        &self.conn
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands one event (encoded once for the whole room) to this member without waiting: into
    /// the connection's queue when live, into the backlog while catching up. `Err` when the
    /// member cannot keep up: the caller evicts it.
    pub fn offer(&self, frame: &Str, backlog_limit: usize) -> Result<(), Lag> {
        if Conn::of(&self.conn).is_evicted() {
            return Ok(());
        }
        let mut outbox = self.outbox();
        if !outbox.live {
            if outbox.backlog.len() >= backlog_limit {
                return Err(Lag::BacklogFull);
            }
            outbox.backlog.push_back(frame.clone());
            return Ok(());
        }
        // A closed connection is cleaned up by its disconnect; only a full one is lagging.
        match self.conn.emit(frame.clone()) {
            Err(TrySendError::Full(_)) => Err(Lag::QueueFull),
            _ => Ok(()),
        }
    }

    /// Answers the client's ack `id` (if it asked for one) without waiting.
    pub fn answer(&self, ack: Option<u64>, body: &Value) {
        if let Some(id) = ack {
            let _ = self.conn.emit(protocol::ack(id, body));
        }
    }
}

/// Why a member cannot take an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lag {
    /// Its connection's queue is full.
    QueueFull,
    /// It is still receiving its replay and too many live events piled up meanwhile.
    BacklogFull,
    /// It read nothing for the whole patience period while receiving its replay.
    ReplayStalled,
}

impl Lag {
    /// The `reason` of the eviction notice and of `swarmq_socket_evictions_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::QueueFull => "queue-full",
            Self::BacklogFull => "backlog-full",
            Self::ReplayStalled => "replay-stalled",
        }
    }
}

/// Why a member stopped receiving.
#[derive(Debug)]
enum Stop {
    /// The connection closed or was evicted meanwhile: nothing more to do.
    Gone,
    /// The client did not read for the whole patience period.
    Stalled,
}

/// Sends one frame to a catching-up member, waiting while its queue is full — for at most
/// `patience` without progress.
async fn send_waiting(member: &Member, frame: Str, patience: Duration) -> Result<(), Stop> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut frame = frame;
    loop {
        if Conn::of(&member.conn).is_evicted() {
            return Err(Stop::Gone);
        }
        match member.conn.emit(frame) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(_)) => return Err(Stop::Gone),
            Err(TrySendError::Full(back)) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(Stop::Stalled);
                }
                frame = back;
                tokio::time::sleep(FULL_RETRY).await;
            }
        }
    }
}

/// The body of a refused join's ack.
pub fn refusal(error: &str) -> Value {
    json!({ "ok": false, "error": error })
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

/// A join, start to finish: snapshot, a place in the room, the ack, the replay, the backlog,
/// then live. A refused join answers `{ok: false, error}` and leaves the room.
pub(super) async fn join(
    relay: Relay,
    member: Arc<Member>,
    session: SessionId,
    since: Option<u64>,
    ack: Option<u64>,
    room: mpsc::UnboundedSender<RoomCmd>,
) {
    let patience = relay.inner().limits.stall;
    let outcome = match prepare(&relay, &member, session, since, &room).await {
        Ok((body, replay)) => {
            member.answer_waiting(ack, &body, patience).await;
            send_replay(&member, replay, patience).await
        }
        Err(error) => {
            tracing::debug!(socket = %member.sid(), %session, error, "join refused");
            metrics::counter!("swarmq_socket_joins_refused_total").increment(1);
            member.answer(ack, &refusal(&error));
            relay.leave(member.sid(), session);
            return;
        }
    };
    match outcome {
        Ok(()) | Err(Stop::Gone) => {}
        Err(Stop::Stalled) => relay.evict(member.conn(), Lag::ReplayStalled),
    }
}

impl Member {
    async fn answer_waiting(&self, ack: Option<u64>, body: &Value, patience: Duration) {
        if let Some(id) = ack {
            let _ = send_waiting(self, protocol::ack(id, body), patience).await;
        }
    }
}

/// Reads the snapshot, takes the member's place in the room and gathers the replay: the ack body
/// and the frames to send after it.
async fn prepare(
    relay: &Relay,
    member: &Arc<Member>,
    session: SessionId,
    since: Option<u64>,
    room: &mpsc::UnboundedSender<RoomCmd>,
) -> Result<(Value, Vec<Str>), String> {
    let store = &relay.inner().store;
    let snapshot = match tokio::time::timeout(SNAPSHOT_TIMEOUT, store.snapshot(session)).await {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => return Err(format!("session {session} not found")),
        Ok(Err(e)) => {
            tracing::warn!(session_id = %session, error = %e, "join: snapshot failed");
            return Err("storage unavailable, try again".into());
        }
        Err(_) => return Err("timed out reading the session (is Redis reachable?)".into()),
    };
    let (reply, plan) = oneshot::channel();
    room.send(RoomCmd::Join {
        member: member.clone(),
        since,
        reply,
    })
    .map_err(|_| "the room closed, try again".to_owned())?;
    let plan = plan
        .await
        .map_err(|_| "the room closed, try again".to_owned())?;
    let (replay, truncated) = match since {
        Some(since) if since < plan.upto => match plan.recent {
            Some(frames) => (frames, false),
            None => read_replay(relay, session, since, plan.upto).await?,
        },
        _ => (Vec::new(), false),
    };
    let body = serde_json::to_value(JoinAck {
        ok: true,
        session: &snapshot,
        last_seq: snapshot.last_seq,
        replayed: replay.len(),
        truncated,
    })
    .map_err(|e| e.to_string())?;
    Ok((body, replay))
}

/// Events `(since, upto]` from the session's stream, encoded; and whether the stream had already
/// trimmed some of them.
async fn read_replay(
    relay: &Relay,
    session: SessionId,
    since: u64,
    upto: u64,
) -> Result<(Vec<Str>, bool), String> {
    let store = &relay.inner().store;
    let mut frames = Vec::new();
    let mut cursor = since;
    let mut truncated = false;
    while cursor < upto {
        let batch = store
            .events_after(session, cursor, REPLAY_BATCH)
            .await
            .map_err(|_| "storage unavailable, try again".to_owned())?;
        let Some(first) = batch.first() else { break };
        truncated |= cursor == since && first.seq > since + 1;
        let before = cursor;
        for event in batch.into_iter().take_while(|e| e.seq <= upto) {
            cursor = event.seq;
            frames.push(protocol::event(&event.event, &event.data));
        }
        if cursor == before {
            break;
        }
    }
    Ok((frames, truncated))
}

/// Sends the replay, then whatever live events the room parked meanwhile, until none is left;
/// then the member is live.
async fn send_replay(member: &Member, replay: Vec<Str>, patience: Duration) -> Result<(), Stop> {
    for frame in replay {
        send_waiting(member, frame, patience).await?;
    }
    loop {
        let parked = {
            let mut outbox = member.outbox();
            if outbox.backlog.is_empty() {
                outbox.live = true;
                return Ok(());
            }
            std::mem::take(&mut outbox.backlog)
        };
        for frame in parked {
            send_waiting(member, frame, patience).await?;
        }
    }
}

/// Reserves one slot of the connection's queue for the eviction notice, for as long as the
/// connection lives: when the connection is evicted its queue is full by definition, and the
/// client must still learn why. Started when the client connects to the namespace.
pub(super) fn reserve_notice_slot(conn: &Arc<EioSocket>, limits: Limits) {
    let (tx, rx) = oneshot::channel();
    *Conn::of(conn)
        .notice
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(tx);
    tokio::spawn(hold_notice_slot(conn.clone(), rx, limits));
}

async fn hold_notice_slot(conn: Arc<EioSocket>, evicted: oneshot::Receiver<Lag>, limits: Limits) {
    let Ok(slot) = conn.reserve() else {
        return;
    };
    // An error means the connection closed without being evicted.
    if let Ok(lag) = evicted.await {
        slot.emit(eviction_notice(lag, limits));
        close(&conn);
    }
}

/// Tells an evicted connection why and closes it. The notice goes in the slot reserved for it,
/// right after the last event the connection was given; closing lets the Engine.IO writer drain
/// what is queued first, so a client that reads on sees every event it was given, the notice,
/// then the close — and reconnects and re-joins with the last `seq` it received.
pub(super) fn farewell(conn: &Arc<EioSocket>, lag: Lag) {
    match Conn::of(conn).take_notice() {
        Some(slot_holder) => {
            if slot_holder.send(lag).is_err() {
                close(conn);
            }
        }
        None => close(conn),
    }
}

fn close(conn: &Arc<EioSocket>) {
    conn.close(DisconnectReason::TransportClose);
}

/// `connection:evicted {reason, message}`.
fn eviction_notice(lag: Lag, limits: Limits) -> Str {
    let message = match lag {
        Lag::QueueFull => format!(
            "more than {} events were waiting to be sent on this connection",
            limits.queue
        ),
        Lag::BacklogFull => format!(
            "more than {} live events arrived while this connection was still receiving its replay",
            limits.backlog
        ),
        Lag::ReplayStalled => format!(
            "the client read nothing for {} s while receiving its replay",
            limits.stall.as_secs()
        ),
    };
    let body = json!({
        "reason": lag.reason(),
        "message": format!("{message}: the connection will be closed; reconnect and re-join with since = the last seq received"),
    });
    protocol::event("connection:evicted", &body.to_string())
}
