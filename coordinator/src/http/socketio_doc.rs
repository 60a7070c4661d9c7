//! The Socket.IO contract, as the `x-socketio` section of `GET /api/openapi.json`: the path,
//! how to authenticate, what a client emits (`session:join`, `session:leave`) and what the
//! acks and the room's events carry. Event names and payload schemas come from
//! [`Event`]'s table and the payload types themselves, so they cannot drift either; prose is in
//! `docs/realtime.md`.

use serde::Serialize;
use serde_json::{Value, json};
use swarmq_shared::event::Event;
use swarmq_shared::{Session, SessionId};

/// `session:join` / `session:leave` payload, second form (the first is the bare session id).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct JoinRequest {
    session_id: SessionId,
    /// The last `seq` received: every event after it is replayed before live ones.
    since: Option<u64>,
}

/// The ack of `session:join` with `{sessionId, since}`; a refusal is `{ok: false, error}`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct JoinAck {
    ok: bool,
    session: Option<Session>,
    last_seq: Option<u64>,
    /// Events that follow the ack before the live ones.
    replayed: Option<u64>,
    /// Events after `since` were already trimmed from the stream.
    truncated: Option<bool>,
    error: Option<String>,
}

/// `connection:evicted`: the client could not keep up and is disconnected.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ConnectionEvicted {
    /// `queue_full`, `backlog_full` or `replay_stalled`.
    reason: String,
    message: String,
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The `x-socketio` section.
pub fn section() -> Value {
    let with_seq = |payload: &str| {
        json!({ "allOf": [schema(payload), {
            "type": "object", "required": ["seq"],
            "properties": { "seq": { "type": "integer", "minimum": 1,
                "description": "position in the session's event stream" } } }] })
    };
    let mut events: serde_json::Map<String, Value> = Event::NAMES
        .iter()
        .zip(Event::PAYLOADS)
        .map(|(name, payload)| ((*name).to_owned(), with_seq(payload)))
        .collect();
    events.insert("connection:evicted".into(), schema("ConnectionEvicted"));
    let join = json!({ "oneOf": [
        { "type": "string", "format": "uuid", "description": "live events from now on" },
        schema("JoinRequest") ] });
    json!({
        "path": "/socket.io",
        "protocol": "Socket.IO v4 (Engine.IO 4), default namespace, polling and websocket",
        "auth": "with SWARMQ_API_TOKEN set: connect with auth {token}; else connect_error",
        "clientEvents": {
            "session:join": { "payload": join, "ack": schema("JoinAck") },
            "session:leave": { "payload": join, "ack": { "type": "object",
                "properties": { "ok": { "type": "boolean" }, "error": { "type": "string" } } } },
        },
        "room": "session:<sessionId>",
        "serverEvents": events,
    })
}
