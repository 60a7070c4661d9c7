//! The Socket.IO server side of each connection, on top of the Engine.IO sessions: the namespace
//! CONNECT (with the token check), `session:join` / `session:leave`, DISCONNECT — and nothing
//! else. A client can never take the server down: malformed packets close its own connection, a
//! connection that never completes its namespace CONNECT is closed after a deadline, and client
//! mistakes are counted (`swarmq_socket_client_errors_total`) and logged rate-limited
//! (`client_log`).

use std::sync::Arc;

use serde_json::{Value, json};
use swarmq_shared::SessionId;

use super::engine::{Handler, Reason, Sid};
use super::join::refusal;
use super::member::Conn;
use super::protocol::{self, Incoming};
use super::relay::Relay;
use super::{EioSocket, Limits};
use crate::share::{Access, Auth};

/// Handles every Engine.IO session of this coordinator as a Socket.IO connection.
pub struct Server {
    relay: Relay,
    auth: Arc<Auth>,
    limits: Limits,
}

impl Server {
    pub fn new(relay: Relay, auth: Arc<Auth>, limits: Limits) -> Self {
        Self {
            relay,
            auth,
            limits,
        }
    }

    fn on_packet(&self, packet: Incoming, socket: &Arc<EioSocket>) {
        match packet {
            Incoming::Connect { namespace, auth } => {
                self.namespace_connect(socket, &namespace, auth)
            }
            Incoming::Disconnect { .. } => {
                self.relay.disconnected(socket.id);
                socket.close(Reason::ClientGone);
            }
            Incoming::Event {
                namespace,
                name,
                payload,
                ack,
            } => {
                if namespace != "/" || !Conn::of(socket).is_connected() {
                    return client_error(socket, "event before connecting to the namespace", true);
                }
                self.on_event(socket, &name, &payload, ack);
            }
        }
    }

    fn namespace_connect(&self, socket: &Arc<EioSocket>, namespace: &str, auth: Option<Value>) {
        if namespace != "/" {
            let _ = socket.emit(protocol::connect_error("Invalid namespace"));
            return client_error(socket, "unknown namespace", false);
        }
        let access = match self.check_token(auth.as_ref()) {
            Ok(access) => access,
            Err(message) => {
                let _ = socket.emit(protocol::connect_error(message));
                return client_error(socket, "refused token", false);
            }
        };
        let id = Sid::new();
        if Conn::of(socket).connect(id, access) {
            metrics::gauge!("swarmq_socket_connections").increment(1.0);
            let _ = socket.emit(protocol::connected(id));
        }
    }

    /// With `SWARMQ_API_TOKEN` set, the CONNECT must carry `auth: {token}`: the admin token,
    /// or a share token (then only its session can be joined).
    fn check_token(&self, auth: Option<&Value>) -> Result<Access, &'static str> {
        let presented = auth.and_then(|a| a.get("token")).and_then(Value::as_str);
        match self.auth.check(presented, crate::share::now_secs()) {
            Err("missing token") => Err("missing token: connect with auth: {token}"),
            other => other,
        }
    }

    fn on_event(&self, socket: &Arc<EioSocket>, name: &str, payload: &Value, ack: Option<u64>) {
        let answer = |body: Value| {
            if let Some(id) = ack {
                let _ = socket.emit(protocol::ack(id, &body));
            }
        };
        let request = JoinPayload::parse(payload);
        match (name, request) {
            ("session:join", Ok(req)) if !Conn::of(socket).may_join(req.session) => {
                client_error(socket, "join outside a share token's session", false);
                answer(json!({ "ok": false, "error": crate::share::SCOPE }));
            }
            ("session:join", Ok(req)) => {
                // The relay answers the ack itself, in order with the replay.
                self.relay.join(socket.clone(), req.session, req.since, ack);
            }
            ("session:leave", Ok(req)) => {
                self.relay.leave(socket.id, req.session);
                answer(json!({ "ok": true }));
            }
            ("session:join" | "session:leave", Err(error)) => {
                client_error(socket, "bad join payload", false);
                answer(refusal(&error));
            }
            _ => client_error(socket, "unknown event", false),
        }
    }
}

/// Counts a client's mistake; `fatal` ones (protocol violations) close its connection.
fn client_error(socket: &Arc<EioSocket>, kind: &'static str, fatal: bool) {
    metrics::counter!("swarmq_socket_client_errors_total", "kind" => kind).increment(1);
    tracing::debug!(socket = %socket.id, kind, fatal, "socket.io client error");
    crate::client_log::client_error(kind, "socket.io");
    if fatal {
        socket.close(Reason::ProtocolError);
    }
}

impl Handler for Server {
    fn on_connect(&self, socket: &Arc<EioSocket>) {
        // A connection must complete its namespace CONNECT in time, or it is closed: idle
        // handshakes cannot pile up.
        let deadline = self.limits.connect_timeout;
        let weak = Arc::downgrade(socket);
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            if let Some(socket) = weak.upgrade()
                && !Conn::of(&socket).is_connected()
            {
                client_error(&socket, "no namespace connect in time", true);
            }
        });
    }

    fn on_message(&self, socket: &Arc<EioSocket>, payload: &str) {
        match protocol::parse(payload) {
            Ok(packet) => self.on_packet(packet, socket),
            Err(_) => client_error(socket, "malformed packet", true),
        }
    }

    fn on_disconnect(&self, socket: &Arc<EioSocket>, _reason: Reason) {
        Conn::of(socket).mark_gone();
        if Conn::of(socket).is_connected() {
            metrics::gauge!("swarmq_socket_connections").decrement(1.0);
        }
        self.relay.disconnected(socket.id);
    }
}

/// A `session:join` / `session:leave` payload: the session id string (the plan's form) or
/// `{sessionId, since}`.
#[derive(Debug, PartialEq)]
struct JoinPayload {
    session: SessionId,
    since: Option<u64>,
}

impl JoinPayload {
    fn parse(value: &Value) -> Result<Self, String> {
        let (id, since) = match value {
            Value::String(id) => (id.as_str(), None),
            Value::Object(o) => {
                let id = o
                    .get("sessionId")
                    .and_then(Value::as_str)
                    .ok_or("sessionId (a string) is required")?;
                let since = match o.get("since") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_u64().ok_or("since must be a non-negative integer")?),
                };
                (id, since)
            }
            _ => return Err("expected a session id string or {sessionId, since}".into()),
        };
        let session = SessionId::parse(id).map_err(|e| e.to_string())?;
        Ok(Self { session, since })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_join_forms_parse() {
        let id = SessionId::new();
        assert_eq!(
            JoinPayload::parse(&json!(id.to_string())),
            Ok(JoinPayload {
                session: id,
                since: None
            })
        );
        assert_eq!(
            JoinPayload::parse(&json!({"sessionId": id.to_string(), "since": 4})),
            Ok(JoinPayload {
                session: id,
                since: Some(4)
            })
        );
        for bad in [
            json!(5),
            json!({"since": 1}),
            json!({"sessionId": id.to_string(), "since": -1}),
            json!("nope"),
            Value::Null,
        ] {
            assert!(JoinPayload::parse(&bad).is_err(), "{bad}");
        }
    }
}
