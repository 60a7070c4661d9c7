//! Engine.IO 4, the transport under Socket.IO: sessions over HTTP long-polling and websockets,
//! the upgrade from one to the other, and the heartbeat (<https://socket.io/docs/v4/engine-io-protocol/>).
//!
//! swarmq serves it itself, lean, because a coordinator holds thousands of mostly idle viewers:
//! a websocket session is one task and one queue that allocates nothing while empty, and keeps
//! nothing of the HTTP request it came from but what it needs. (An off-the-shelf Engine.IO layer
//! spent ~30 KB per idle connection here: three tasks, a preallocated channel block and the
//! handshake request's 16 KB read buffer, pinned by its stored headers.)
//!
//! - [`session`]: a session's bounded outgoing queue and its lifecycle.
//! - [`websocket`]: the websocket handshake, the upgrade probe, and the one task per connection.
//! - [`polling`]: long-polling `GET`s and `POST`s.

mod polling;
pub mod session;
mod websocket;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub use session::{Frame, Reason, SendError, Session};

/// What the Socket.IO layer does with sessions.
pub trait Handler: Send + Sync + 'static {
    /// A new session (its open packet is on its way).
    fn on_connect(&self, session: &Arc<Session>);
    /// A message packet's payload (the Socket.IO packet).
    fn on_message(&self, session: &Arc<Session>, payload: &str);
    /// The session ended; called once.
    fn on_disconnect(&self, session: &Arc<Session>, reason: Reason);
}

/// Timings and bounds of the Engine.IO layer.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Largest packet or polling body a client may send, in bytes.
    pub max_payload: usize,
    /// Messages that may wait to be written to one session.
    pub queue: usize,
}

impl Config {
    /// A write that makes no progress for this long means the client is gone (or frozen): its
    /// connection is dropped.
    fn write_timeout(&self) -> Duration {
        self.ping_interval + self.ping_timeout
    }
}

/// The Engine.IO server: its sessions and the Socket.IO layer above it.
pub struct Engine {
    config: Config,
    sessions: Mutex<HashMap<Sid, Arc<Session>>>,
    handler: Arc<dyn Handler>,
}

impl Engine {
    pub fn new(config: Config, handler: Arc<dyn Handler>) -> Arc<Self> {
        Arc::new(Self {
            config,
            sessions: Mutex::new(HashMap::new()),
            handler,
        })
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<Sid, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self, websocket: bool) -> Arc<Session> {
        let session = Arc::new(Session::new(Sid::new(), self.config.queue, websocket));
        self.sessions().insert(session.id, session.clone());
        self.handler.on_connect(&session);
        session
    }

    fn find(&self, sid: &str) -> Option<Arc<Session>> {
        let sid: Sid = sid.parse().ok()?;
        self.sessions().get(&sid).cloned()
    }

    /// Forgets a session whose transport ended, and tells the Socket.IO layer (once).
    fn end(&self, session: &Arc<Session>, reason: Reason) {
        session.mark_closed();
        if self.sessions().remove(&session.id).is_some() {
            self.handler.on_disconnect(session, reason);
        }
    }

    /// Closes every session (shutdown).
    pub fn close_all(&self) {
        let open: Vec<_> = self.sessions().values().cloned().collect();
        for session in open {
            session.close(Reason::ServerClose);
        }
    }

    /// The open packet: `0{"sid",…}`.
    fn open_packet(&self, session: &Session, upgrades: bool) -> String {
        format!(
            r#"0{{"sid":"{}","upgrades":{},"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
            session.id,
            if upgrades { r#"["websocket"]"# } else { "[]" },
            self.config.ping_interval.as_millis(),
            self.config.ping_timeout.as_millis(),
            self.config.max_payload
        )
    }

    /// Handles one inbound packet of a session. False when the session must end.
    fn on_packet(&self, session: &Arc<Session>, packet: &str) -> Result<(), Reason> {
        match packet.as_bytes().first() {
            Some(b'3') => {
                session.pong();
                Ok(())
            }
            Some(b'6') => Ok(()),
            Some(b'4') => {
                self.handler.on_message(session, &packet[1..]);
                Ok(())
            }
            Some(b'1') => Err(Reason::ClientGone),
            _ => Err(Reason::ProtocolError),
        }
    }
}

/// An Engine.IO session id: 20 random characters of [A-Za-z0-9].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sid([u8; 20]);

impl Sid {
    pub fn new() -> Self {
        use rand::Rng;
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        Self(std::array::from_fn(|_| {
            ALPHABET[rng.random_range(0..ALPHABET.len())]
        }))
    }

    fn as_str(&self) -> &str {
        // Only ASCII alphanumerics are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl Default for Sid {
    fn default() -> Self {
        Self::new()
    }
}

impl std::str::FromStr for Sid {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let bytes: [u8; 20] = s.as_bytes().try_into().map_err(|_| ())?;
        bytes
            .iter()
            .all(u8::is_ascii_alphanumeric)
            .then_some(Self(bytes))
            .ok_or(())
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

/// A parameter of an Engine.IO query string (its values are plain tokens: no decoding needed).
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// The protocol's error answer: `400 {"code","message"}`.
fn refuse(code: u8, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({ "code": code, "message": message })),
    )
        .into_response()
}

/// Every Engine.IO request (`GET`/`POST` on the Socket.IO path).
pub async fn serve(State(engine): State<Arc<Engine>>, request: Request) -> Response {
    let query = request.uri().query().unwrap_or("").to_owned();
    if param(&query, "EIO") != Some("4") {
        return refuse(5, "Unsupported protocol version");
    }
    let sid = param(&query, "sid");
    match (param(&query, "transport"), sid) {
        (Some("websocket"), sid) => websocket::serve(engine, request, sid),
        (Some("polling"), None) if request.method() == axum::http::Method::GET => {
            polling::handshake(&engine)
        }
        (Some("polling"), None) => refuse(2, "Bad handshake method"),
        (Some("polling"), Some(sid)) => match engine.find(sid) {
            Some(session) => polling::serve(engine, session, request).await,
            None => refuse(1, "Session ID unknown"),
        },
        _ => refuse(0, "Transport unknown"),
    }
}
