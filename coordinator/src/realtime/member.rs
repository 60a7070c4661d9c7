//! One connection's membership of a room, and the delivery policy that keeps a slow client from
//! hurting anyone else.
//!
//! - Every connection has one bounded outgoing queue: its Engine.IO send buffer
//!   ([`super::Limits::queue`] packets). Rooms never wait on it: an event goes in with a
//!   non-blocking send, and a connection whose queue is full is *evicted* ([`farewell`]): it gets
//!   no further events, then `connection:evicted` with the reason (in a queue slot reserved for
//!   it), then the close, so its client reconnects and resumes with `since`. Nothing is ever
//!   skipped for a connection that stays connected.
//! - A member that has just joined is *catching up*: its own task (`super::join`) sends the ack
//!   and the replay, waiting on its queue as long as the client keeps reading, while the room
//!   parks the live events that arrive meanwhile in the member's bounded backlog. When the
//!   backlog is empty the member turns live. So a join — however long its replay — never delays
//!   the room.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde_json::{Value, json};

use super::engine::{Frame, Reason, SendError, Sid};
use super::{EioSocket, Limits, protocol};

/// What swarmq keeps on each Engine.IO connection.
#[derive(Default, Debug)]
pub struct Conn {
    /// The Socket.IO socket id, set when the client connected to the namespace.
    socket_id: OnceLock<Sid>,
    /// What its CONNECT's token grants (set with `socket_id`).
    access: OnceLock<crate::share::Access>,
    /// Set once when the relay evicts the connection: nothing more is sent to it.
    evicted: AtomicBool,
    /// Set when the connection closed (or was evicted): a room must not admit it any more.
    gone: AtomicBool,
}

impl Conn {
    pub fn of(socket: &EioSocket) -> &Self {
        &socket.data
    }

    /// Marks the namespace connection made; false if it already was.
    pub fn connect(&self, id: Sid, access: crate::share::Access) -> bool {
        let _ = self.access.set(access);
        self.socket_id.set(id).is_ok()
    }

    /// A share token's connection joins only its session's room.
    pub fn may_join(&self, session: swarmq_shared::SessionId) -> bool {
        match self.access.get() {
            Some(crate::share::Access::Share(own)) => *own == session,
            _ => true,
        }
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
}

/// A connection in one room.
pub struct Member {
    conn: Arc<EioSocket>,
    outbox: Mutex<Outbox>,
}

#[derive(Default)]
pub(super) struct Outbox {
    /// Events go straight to the connection's queue (else they wait in `backlog`).
    pub(super) live: bool,
    pub(super) backlog: VecDeque<Frame>,
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

    pub(super) fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands one event (encoded once for the whole room) to this member without waiting: into
    /// the connection's queue when live, into the backlog while catching up. `Err` when the
    /// member cannot keep up: the caller evicts it.
    pub fn offer(&self, frame: &Frame, backlog_limit: usize) -> Result<(), Lag> {
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
            Err(SendError::Full(_)) => Err(Lag::QueueFull),
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

/// Tells an evicted connection why and closes it. The notice takes the queue slot kept for it,
/// right after the last event the connection was given; the close lets the transport write what
/// is queued first, so a client that reads on sees every event it was given, the notice, then
/// the close — and reconnects and re-joins with the last `seq` it received.
pub(super) fn farewell(conn: &Arc<EioSocket>, lag: Lag, limits: Limits) {
    let _ = conn.emit_last(eviction_notice(lag, limits));
    conn.close(Reason::ServerClose);
}

/// `connection:evicted {reason, message}`.
fn eviction_notice(lag: Lag, limits: Limits) -> Frame {
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
