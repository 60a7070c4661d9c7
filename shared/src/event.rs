//! The Socket.IO events, server → room `session:<id>`. The first seven are the original plan's,
//! with its exact payloads; the rest are additive. Every payload also carries `seq`, the event's
//! position in the session's stream (added when the event is recorded, see `lua/prelude.lua`).
//!
//! Most events are built here and handed to a Lua transition as JSON. The transitions that pick
//! their subject inside Redis (`task:assigned`, `agent:terminated`, `session:complete`,
//! `task:failed`/`task:retry` from the reaper) build the same shapes in Lua; the round-trip test
//! in the integration suite parses every recorded event back into [`Event`].

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, SessionId, TodoId};
use crate::model::{SessionStatus, Todo};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAssigned {
    pub todo_id: TodoId,
    pub agent_id: AgentId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCompleted {
    pub todo_id: TodoId,
    pub agent_id: AgentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// `task:failed` (attempts exhausted) and `task:retry` (the TODO went back to pending).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskFailed {
    pub todo_id: TodoId,
    pub agent_id: AgentId,
    pub error: String,
    pub attempts: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentThinking {
    pub agent_id: AgentId,
    pub action: String,
    pub timestamp: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentReasoning {
    pub agent_id: AgentId,
    pub reasoning: String,
    pub timestamp: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStreamReady {
    pub agent_id: AgentId,
    pub sandbox_id: String,
    pub stream_url: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentTerminated {
    pub agent_id: AgentId,
}

/// Sent exactly once per session, last. `status` (additive) tells `completed` from `failed` and
/// `cancelled`; old clients only read `sessionId`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionComplete {
    pub session_id: SessionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SessionStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every event a session's room can receive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data")]
pub enum Event {
    #[serde(rename = "task:created")]
    TaskCreated(Todo),
    #[serde(rename = "task:assigned")]
    TaskAssigned(TaskAssigned),
    #[serde(rename = "task:completed")]
    TaskCompleted(TaskCompleted),
    #[serde(rename = "agent:thinking")]
    AgentThinking(AgentThinking),
    #[serde(rename = "agent:reasoning")]
    AgentReasoning(AgentReasoning),
    #[serde(rename = "agent:terminated")]
    AgentTerminated(AgentTerminated),
    #[serde(rename = "session:complete")]
    SessionComplete(SessionComplete),
    #[serde(rename = "agent:stream_ready")]
    AgentStreamReady(AgentStreamReady),
    #[serde(rename = "task:failed")]
    TaskFailed(TaskFailed),
    #[serde(rename = "task:retry")]
    TaskRetry(TaskFailed),
}

impl Event {
    /// The Socket.IO event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::TaskCreated(_) => "task:created",
            Self::TaskAssigned(_) => "task:assigned",
            Self::TaskCompleted(_) => "task:completed",
            Self::AgentThinking(_) => "agent:thinking",
            Self::AgentReasoning(_) => "agent:reasoning",
            Self::AgentTerminated(_) => "agent:terminated",
            Self::SessionComplete(_) => "session:complete",
            Self::AgentStreamReady(_) => "agent:stream_ready",
            Self::TaskFailed(_) => "task:failed",
            Self::TaskRetry(_) => "task:retry",
        }
    }

    /// The payload as a JSON object, without `seq` (the recording transition adds it).
    pub fn payload_json(&self) -> String {
        let json = match self {
            Self::TaskCreated(p) => serde_json::to_string(p),
            Self::TaskAssigned(p) => serde_json::to_string(p),
            Self::TaskCompleted(p) => serde_json::to_string(p),
            Self::AgentThinking(p) => serde_json::to_string(p),
            Self::AgentReasoning(p) => serde_json::to_string(p),
            Self::AgentTerminated(p) => serde_json::to_string(p),
            Self::SessionComplete(p) => serde_json::to_string(p),
            Self::AgentStreamReady(p) => serde_json::to_string(p),
            Self::TaskFailed(p) | Self::TaskRetry(p) => serde_json::to_string(p),
        };
        // Serializing these plain structs cannot fail: no maps with non-string keys, no I/O.
        json.unwrap_or_else(|_| "{}".to_owned())
    }
}

/// An event as recorded: what the pub/sub channel carries and what replay returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
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
