//! The Socket.IO events, server → room `session:<id>`. The first seven are the original plan's,
//! with its exact payloads; the rest are additive. Every payload also carries `seq`, the event's
//! position in the session's stream (added when the event is recorded: `emit` in
//! `lua/session.lua`).
//!
//! Most events are built here and handed to a Lua transition as JSON. The transitions that pick
//! their subject inside Redis (`task:assigned`, `agent:terminated`, `session:complete`,
//! `task:failed`/`task:retry`) build the same shapes in Lua (`lua/session.lua`);
//! `shared/tests/lua_events.rs` drives every transition that records an event and decodes each
//! one back into [`Event`] field for field.

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, SessionId, TodoId};
use crate::model::{SessionStatus, Todo};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskAssigned {
    pub todo_id: TodoId,
    pub agent_id: AgentId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskCompleted {
    pub todo_id: TodoId,
    pub agent_id: AgentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// `task:failed` (attempts exhausted) and `task:retry` (the TODO went back to pending).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskFailed {
    pub todo_id: TodoId,
    pub agent_id: AgentId,
    pub error: String,
    pub attempts: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentThinking {
    pub agent_id: AgentId,
    pub action: String,
    pub timestamp: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentReasoning {
    pub agent_id: AgentId,
    pub reasoning: String,
    pub timestamp: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStreamReady {
    pub agent_id: AgentId,
    pub sandbox_id: String,
    pub stream_url: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentTerminated {
    pub agent_id: AgentId,
}

/// Sent exactly once per session, last. `status` (additive) tells `completed` from `failed` and
/// `cancelled`; old clients only read `sessionId`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionComplete {
    pub session_id: SessionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SessionStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Declares [`Event`] from one table of `Variant(payload) = "socket.io:name"`: the serde tag
/// (the name on the wire, in the stream and on the channel) and [`Event::name`] both come from
/// it, so a name is written exactly once.
macro_rules! events {
    ($($(#[$doc:meta])* $variant:ident($payload:ty) = $name:literal,)+) => {
        /// Every event a session's room can receive.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "event", content = "data")]
        pub enum Event {
            $($(#[$doc])* #[serde(rename = $name)] $variant($payload),)+
        }

        impl Event {
            /// Every event name, in the order of the table.
            pub const NAMES: &[&str] = &[$($name),+];

            /// The payload type of each event in [`NAMES`](Self::NAMES), by name: its schema's
            /// name in the OpenAPI document (`seq` comes on top).
            pub const PAYLOADS: &[&str] = &[$(stringify!($payload)),+];

            /// The Socket.IO event name (the serde tag).
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $name,)+
                }
            }

            /// The payload as a JSON object, without `seq` (the recording transition adds it).
            pub fn payload_json(&self) -> String {
                match self {
                    $(Self::$variant(payload) => to_json(payload),)+
                }
            }
        }
    };
}

events! {
    TaskCreated(Todo) = "task:created",
    TaskAssigned(TaskAssigned) = "task:assigned",
    TaskCompleted(TaskCompleted) = "task:completed",
    AgentThinking(AgentThinking) = "agent:thinking",
    AgentReasoning(AgentReasoning) = "agent:reasoning",
    AgentTerminated(AgentTerminated) = "agent:terminated",
    SessionComplete(SessionComplete) = "session:complete",
    AgentStreamReady(AgentStreamReady) = "agent:stream_ready",
    /// Attempts exhausted: the TODO is `failed`.
    TaskFailed(TaskFailed) = "task:failed",
    /// An attempt failed and the TODO went back to pending.
    TaskRetry(TaskFailed) = "task:retry",
}

fn to_json(payload: &impl Serialize) -> String {
    // Serializing these plain structs cannot fail: no maps with non-string keys, no I/O.
    serde_json::to_string(payload).unwrap_or_else(|_| "{}".to_owned())
}

/// An event as recorded: what the pub/sub channel carries and what replay returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
}

impl EventEnvelope {
    /// Decodes an event from its parts as recorded in the stream or received from a room: its
    /// name and its payload, which carries `seq`.
    pub fn from_parts(name: &str, data: serde_json::Value) -> Result<Self, serde_json::Error> {
        let seq = data
            .get("seq")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| serde::de::Error::missing_field("seq"))?;
        serde_json::from_value(serde_json::json!({ "seq": seq, "event": name, "data": data }))
    }
}

/// The borrowed view the relay uses: it forwards `data` untouched, without re-serializing.
#[derive(Debug, Deserialize)]
pub struct RawEnvelope<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub event: &'a str,
    #[serde(borrow)]
    pub data: &'a serde_json::value::RawValue,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_parse_with_seq_inside_the_payload() {
        let agent = AgentId::new();
        let json = format!(
            r#"{{"seq":7,"event":"agent:thinking","data":{{"agentId":"{agent}","action":"click","timestamp":5,"seq":7}}}}"#
        );
        let env: EventEnvelope = serde_json::from_str(&json).unwrap();
        assert_eq!(env.seq, 7);
        assert_eq!(env.event.name(), "agent:thinking");
        let raw: RawEnvelope = serde_json::from_str(&json).unwrap();
        assert_eq!(raw.event, "agent:thinking");
    }

    #[test]
    fn every_name_is_the_serde_tag() {
        let agent = AgentId::new();
        let events = [
            Event::AgentTerminated(AgentTerminated { agent_id: agent }),
            Event::SessionComplete(SessionComplete {
                session_id: SessionId::new(),
                status: Some(SessionStatus::Cancelled),
                error: None,
            }),
        ];
        for event in events {
            let v = serde_json::to_value(&event).unwrap();
            assert_eq!(v["event"], event.name());
            assert!(Event::NAMES.contains(&event.name()));
        }
        assert_eq!(Event::NAMES.len(), 10);
    }

    #[test]
    fn a_received_event_decodes_from_its_name_and_payload() {
        let agent = AgentId::new();
        let data = serde_json::json!({"agentId": agent, "seq": 3});
        let env = EventEnvelope::from_parts("agent:terminated", data).unwrap();
        assert_eq!(env.seq, 3);
        assert_eq!(
            env.event,
            Event::AgentTerminated(AgentTerminated { agent_id: agent })
        );
        let no_seq = serde_json::json!({"agentId": agent});
        assert!(EventEnvelope::from_parts("agent:terminated", no_seq).is_err());
        let unknown = serde_json::json!({"seq": 1});
        assert!(EventEnvelope::from_parts("agent:dancing", unknown).is_err());
    }

    #[test]
    fn payloads_keep_the_plan_shapes() {
        let e = Event::TaskAssigned(TaskAssigned {
            todo_id: TodoId::new(),
            agent_id: AgentId::new(),
        });
        let v: serde_json::Value = serde_json::from_str(&e.payload_json()).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["agentId", "todoId"]);
    }
}
