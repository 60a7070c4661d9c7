//! Socket.IO: the default namespace at `/socket.io`, `session:join` / `session:leave` as in the
//! original plan, each session's events relayed to the clients watching it.
//!
//! `session:join` takes the session id string (live events from now on, as the plan had it), or
//! `{sessionId, since}`: the ack then carries the session snapshot and `lastSeq`, and every event
//! with `seq > since` is replayed before live ones. Bad payloads get an ack `{ok: false, error}`
//! (when an ack was asked for); a client can never take the server down or slow anyone else.
//!
//! # Layout
//! - [`protocol`]: the Socket.IO v5 packets (parse what clients send, encode what we send).
//! - [`server`]: each connection's lifecycle on Engine.IO: namespace CONNECT and the token, the
//!   two events, timeouts, counting client errors.
//! - [`relay`]: which connection watches which session; join, leave, disconnect, evict.
//! - [`room`]: one task per watched session, the only sender of its events, in `seq` order.
//! - [`member`]: one connection in one room: the non-blocking delivery, the join (ack, replay,
//!   catch-up) and the eviction of a connection that cannot keep up.
//! - [`pubsub`]: the one pub/sub connection per coordinator, reconnecting and repairing gaps.
//!
//! Socket.IO is spoken here directly on engineioxide (the Engine.IO layer socketioxide itself
//! uses) because the relay needs what socketioxide's API does not give: one encoding of an event
//! shared by every socket of a room, a per-socket answer to "was your queue full", and closing a
//! connection whose queue is full. See `docs/realtime.md` for the delivery policy.

mod member;
mod protocol;
mod pubsub;
mod relay;
mod room;
mod server;

use std::sync::Arc;
use std::time::Duration;

use engineioxide::config::EngineIoConfig;
use engineioxide::layer::EngineIoLayer;

pub use member::Conn;
pub use relay::{MAX_ROOMS_PER_SOCKET, Relay, room_name};
pub use server::Server;

/// An Engine.IO connection carrying swarmq's per-connection state.
pub type EioSocket = engineioxide::Socket<Conn>;

/// Where the Socket.IO endpoint is served (the Socket.IO default).
pub const PATH: &str = "/socket.io";

/// Bounds of what one connection may hold on this coordinator.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Packets waiting to be written to one connection; a connection that lets it fill is
    /// evicted (told why, then closed: it reconnects and resumes with `since`).
    pub queue: usize,
    /// Live events parked for a member while it still receives its replay.
    pub backlog: usize,
    /// How long a member receiving its replay may read nothing before it is evicted.
    pub stall: Duration,
    /// Largest message a client may send (websocket message or polling request body).
    pub max_message: usize,
    /// Time from the Engine.IO handshake to the namespace CONNECT.
    pub connect_timeout: Duration,
}

/// Bytes read from a websocket at a time. Clients only send small joins, so a small buffer keeps
/// an idle connection cheap (it is allocated per connection for its whole life).
const WS_READ_BUFFER: usize = 1024;

/// The Engine.IO layer serving Socket.IO at [`PATH`], and its handler (to close every
/// connection at shutdown).
pub fn layer(
    relay: Relay,
    token: Option<crate::http::Token>,
    limits: Limits,
) -> (EngineIoLayer<Server>, Server) {
    let server = Server::new(relay, token, limits);
    let config = EngineIoConfig::builder()
        .req_path(PATH)
        .max_buffer_size(limits.queue)
        .max_payload(limits.max_message as u64)
        .ws_max_message_size(limits.max_message)
        .ws_max_frame_size(limits.max_message)
        .ws_read_buffer_size(WS_READ_BUFFER)
        .build();
    (
        EngineIoLayer::from_config(Arc::new(server.clone()), config),
        server,
    )
}
