//! Socket.IO, default namespace: `session:join` / `session:leave` as in the original plan.
//!
//! `session:join` takes the session id string (live events from now on, as the plan had it), or
//! `{sessionId, since}`: the ack then carries the session snapshot and `lastSeq`, and every event
//! with `seq > since` is replayed before live ones. Bad payloads get an ack `{error}` (when an
//! ack was asked for) and are otherwise ignored; a client can never take the server down.

mod relay;

use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use swarmq_shared::SessionId;

pub use relay::{MAX_ROOMS_PER_SOCKET, Relay, room_name};

use crate::http::Token;

pub fn attach(io: &SocketIo, relay: Relay, token: Option<Token>) {
    let handler = move |socket: SocketRef| {
        let relay = relay.clone();
        async move { on_connect(socket, relay) }
    };
    // With SWARMQ_API_TOKEN set, a connection must carry `auth: {token}`; otherwise the client
    // gets a connect_error naming the problem.
    let check = move |TryData(auth): TryData<Value>| {
        let token = token.clone();
        async move {
            let Some(token) = token else { return Ok(()) };
            let presented = auth
                .ok()
                .and_then(|a| a.get("token").and_then(Value::as_str).map(str::to_owned));
            match presented {
                Some(p) if token.matches(&p) => Ok(()),
                Some(_) => Err(AuthError("invalid token")),
                None => Err(AuthError("missing token: connect with auth: {token}")),
            }
        }
    };
    io.ns("/", handler.with(check));
}

#[derive(Debug)]
struct AuthError(&'static str);

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

fn on_connect(socket: SocketRef, relay: Relay) {
    tracing::debug!(socket = %socket.id, "socket connected");
    metrics::gauge!("swarmq_socket_connections").increment(1.0);
    let r = relay.clone();
    socket.on(
        "session:join",
        move |socket: SocketRef, TryData(payload): TryData<Value>, ack: AckSender| {
            let relay = r.clone();
            async move {
                let request = payload
                    .map_err(|_| "payload is not JSON".to_owned())
                    .and_then(|p| JoinPayload::parse(&p));
                match request {
                    // The relay answers the ack itself, in order with the replay.
                    Ok(req) => relay.join(socket, req.session, req.since, ack).await,
                    Err(error) => {
                        tracing::debug!(socket = %socket.id, error, "join refused");
                        let _ = ack.send(&json!({ "ok": false, "error": error }));
                    }
                }
            }
        },
    );
    let r = relay.clone();
    socket.on(
        "session:leave",
        move |socket: SocketRef, TryData(payload): TryData<Value>, ack: AckSender| {
            let relay = r.clone();
            async move {
                match payload.ok().as_ref().map(JoinPayload::parse) {
                    Some(Ok(req)) => {
                        relay.leave(&socket, req.session);
                        let _ = ack.send(&json!({ "ok": true }));
                    }
                    Some(Err(error)) => {
                        let _ = ack.send(&json!({ "ok": false, "error": error }));
                    }
                    None => {
                        let _ = ack.send(&json!({ "ok": false, "error": "payload is not JSON" }));
                    }
                }
            }
        },
    );
    socket.on_disconnect(move |socket: SocketRef| {
        let relay = relay.clone();
        async move {
            metrics::gauge!("swarmq_socket_connections").decrement(1.0);
            relay.disconnected(socket.id)
        }
    });
}

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
        ] {
            assert!(JoinPayload::parse(&bad).is_err(), "{bad}");
        }
    }
}
