//! One Engine.IO session: its outgoing queue and its lifecycle, whichever transport carries it.
//!
//! The queue is the connection's one bounded buffer ([`Session::emit`] refuses a message when
//! `limit - 1` are waiting; the last slot is kept for [`Session::emit_last`], the eviction
//! notice). It allocates nothing while empty: the transport takes the whole queue at once, so
//! a burst's memory goes with the burst.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::Sid;
use crate::realtime::member::Conn;

/// An encoded Engine.IO packet (`4…` for a message), shared by every session it is sent to.
pub type Frame = Utf8Bytes;

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The client closed it (close packet, websocket close, connection lost).
    ClientGone,
    /// No pong within the ping timeout, or a write that made no progress for as long.
    Timeout,
    /// The client broke the protocol (bad packet, overlapping polls, oversized message).
    ProtocolError,
    /// The server closed it (eviction, failed namespace connect, shutdown).
    ServerClose,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The queue is full: the client is not keeping up.
    Full(Frame),
    /// The session is closing or closed.
    Closed(Frame),
}

pub struct Session {
    pub id: Sid,
    /// What the Socket.IO layer keeps on the connection.
    pub data: Conn,
    limit: usize,
    state: Mutex<State>,
    /// Wakes the transport: something to send, or the session is closing.
    wake: Notify,
    /// The transport is a websocket (the session started on one, or upgraded).
    websocket: AtomicBool,
    /// A ping was sent and its pong has not come back yet.
    awaiting_pong: AtomicBool,
    /// A long-polling `GET` is waiting (only one at a time is allowed).
    polling: AtomicBool,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Frame>,
    /// Set by [`Session::close`]: the transport sends what is queued, then the close packet.
    closing: Option<Reason>,
    /// The transport is gone: nothing more can be queued.
    closed: bool,
}

/// What a transport takes from the queue.
pub enum Outgoing {
    Frames(VecDeque<Frame>),
    /// Nothing left to send and the session is closing.
    Close(Reason),
    Idle,
}

impl Session {
    pub fn new(id: Sid, limit: usize, websocket: bool) -> Self {
        Self {
            id,
            data: Conn::default(),
            limit: limit.max(2),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            websocket: AtomicBool::new(websocket),
            awaiting_pong: AtomicBool::new(false),
            polling: AtomicBool::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a message (`frame` is a whole `4…` packet) without waiting. Keeps the last slot of
    /// the queue free for [`Session::emit_last`].
    pub fn emit(&self, frame: Frame) -> Result<(), SendError> {
        self.push(frame, self.limit - 1)
    }

    /// Queues the connection's last message (the eviction notice) in the slot kept for it.
    pub fn emit_last(&self, frame: Frame) -> Result<(), SendError> {
        self.push(frame, self.limit)
    }

    fn push(&self, frame: Frame, limit: usize) -> Result<(), SendError> {
        let mut state = self.state();
        if state.closing.is_some() || state.closed {
            return Err(SendError::Closed(frame));
        }
        if state.queue.len() >= limit {
            return Err(SendError::Full(frame));
        }
        state.queue.push_back(frame);
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    /// Queues a control packet (ping, noop): never refused while the session is open.
    pub(super) fn control(&self, packet: &'static str) {
        let mut state = self.state();
        if state.closing.is_none() && !state.closed {
            state.queue.push_back(Frame::from_static(packet));
            drop(state);
            self.wake.notify_one();
        }
    }

    /// Asks the transport to send what is queued, then the close packet, then end.
    pub fn close(&self, reason: Reason) {
        let mut state = self.state();
        if state.closing.is_none() && !state.closed {
            state.closing = Some(reason);
        }
        drop(state);
        self.wake.notify_one();
    }

    pub fn is_closing(&self) -> bool {
        let state = self.state();
        state.closing.is_some() || state.closed
    }

    /// Everything queued (at most `max` packets), or the close once the queue is empty.
    pub(super) fn take(&self, max: usize) -> Outgoing {
        let mut state = self.state();
        if state.queue.len() > max {
            return Outgoing::Frames(state.queue.drain(..max).collect());
        }
        if !state.queue.is_empty() {
            return Outgoing::Frames(std::mem::take(&mut state.queue));
        }
        match state.closing {
            Some(reason) => Outgoing::Close(reason),
            None => Outgoing::Idle,
        }
    }

    /// The transport ended: refuse everything from now on and drop what is left.
    pub(super) fn mark_closed(&self) {
        let mut state = self.state();
        state.closed = true;
        state.queue = VecDeque::new();
    }

    /// Resolves when there may be something to take.
    pub(super) async fn woken(&self) {
        self.wake.notified().await;
    }

    pub(super) fn is_websocket(&self) -> bool {
        self.websocket.load(Ordering::SeqCst)
    }

    /// Sends a ping; the heartbeat then waits for [`Session::pong`].
    pub(super) fn ping(&self) {
        self.awaiting_pong.store(true, Ordering::SeqCst);
        self.control("2");
    }

    pub(super) fn pong(&self) {
        self.awaiting_pong.store(false, Ordering::SeqCst);
    }

    pub(super) fn awaiting_pong(&self) -> bool {
        self.awaiting_pong.load(Ordering::SeqCst)
    }

    /// Starts a long poll; false if one is already waiting.
    pub(super) fn begin_poll(&self) -> bool {
        !self.polling.swap(true, Ordering::SeqCst)
    }

    pub(super) fn end_poll(&self) {
        self.polling.store(false, Ordering::SeqCst);
    }

    pub(super) fn set_websocket(&self) {
        self.websocket.store(true, Ordering::SeqCst);
        // A poll that is waiting answers now (with a noop) so the client moves to the websocket.
        self.wake.notify_waiters();
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(limit: usize) -> Session {
        Session::new(Sid::new(), limit, true)
    }

    #[test]
    fn the_last_slot_is_kept_for_the_last_message() {
        let s = session(3);
        assert!(s.emit("4a".into()).is_ok());
        assert!(s.emit("4b".into()).is_ok());
        assert_eq!(s.emit("4c".into()), Err(SendError::Full("4c".into())));
        assert!(s.emit_last("4bye".into()).is_ok());
        assert!(matches!(
            s.emit_last("4more".into()),
            Err(SendError::Full(_))
        ));
        let Outgoing::Frames(all) = s.take(usize::MAX) else {
            panic!("frames expected")
        };
        assert_eq!(all.len(), 3);
        assert!(s.emit("4d".into()).is_ok(), "taking the queue frees it");
    }

    #[test]
    fn a_take_is_bounded() {
        let s = session(8);
        for i in 0..5 {
            s.emit(format!("4{i}").into()).unwrap();
        }
        assert!(matches!(s.take(3), Outgoing::Frames(f) if f.len() == 3 && f[0] == "40"));
        assert!(matches!(s.take(3), Outgoing::Frames(f) if f.len() == 2 && f[0] == "43"));
        assert!(matches!(s.take(3), Outgoing::Idle));
    }

    #[test]
    fn a_closing_session_sends_what_is_queued_first() {
        let s = session(8);
        s.emit("4a".into()).unwrap();
        s.close(Reason::ServerClose);
        assert!(matches!(s.emit("4b".into()), Err(SendError::Closed(_))));
        assert!(matches!(s.take(1), Outgoing::Frames(f) if f.len() == 1));
        assert!(matches!(s.take(1), Outgoing::Close(Reason::ServerClose)));
        s.mark_closed();
        assert!(s.is_closing());
    }
}
