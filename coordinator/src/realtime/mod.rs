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
//! - [`member`]: one connection in one room: the non-blocking delivery and the eviction of a
//!   connection that cannot keep up.
//! - [`join`]: a join in its own task: the ack, the replay, the catch-up, then live.
//! - [`pubsub`]: the one pub/sub connection per coordinator, reconnecting and repairing gaps.
//! - [`engine`]: Engine.IO 4 (long-polling, websocket, upgrade, heartbeat), served by swarmq
//!   itself, lean enough for thousands of idle viewers per coordinator.
//!
//! The relay needs what the Socket.IO crates' APIs do not give: one encoding of an event shared
//! by every socket of a room, a per-socket answer to "is your queue full", closing a connection
//! whose queue is full, and a few KB per idle viewer. See `docs/realtime.md` for the policy.

pub mod engine;
mod join;
mod member;
mod protocol;
mod pubsub;
mod relay;
mod room;
mod server;
mod sharded;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::any;

pub use engine::Engine;
pub use member::Conn;
pub use relay::{MAX_ROOMS_PER_SOCKET, Relay, room_name};
pub use server::Server;

/// An Engine.IO session carrying swarmq's per-connection state.
pub type EioSocket = engine::Session;

/// Where the Socket.IO endpoint is served (the Socket.IO default).
pub const PATH: &str = "/socket.io";

/// Engine.IO heartbeat: a ping every interval, a pong expected within the timeout (the
/// Socket.IO defaults, which clients read from the handshake).
const PING_INTERVAL: Duration = Duration::from_secs(25);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Bounds of what one connection may hold on this coordinator.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Messages waiting to be written to one connection; a connection that lets it fill is
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

/// The Socket.IO routes (`/socket.io/`, every transport) and the engine behind them (to close
/// every connection at shutdown).
pub fn routes(
    relay: Relay,
    auth: Arc<crate::share::Auth>,
    limits: Limits,
) -> (Router, Arc<Engine>) {
    let server = Arc::new(Server::new(relay, auth, limits));
    let config = engine::Config {
        ping_interval: PING_INTERVAL,
        ping_timeout: PING_TIMEOUT,
        max_payload: limits.max_message,
        queue: limits.queue,
    };
    let engine = Engine::new(config, server);
    let router = Router::new()
        .route(&format!("{PATH}/"), any(engine::serve))
        .route(PATH, any(engine::serve))
        .with_state(engine.clone());
    (router, engine)
}
