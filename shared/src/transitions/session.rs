//! The coordinator's transitions: a session from `decomposing` to `running` (or `failed`),
//! cancelling it, and the one consistent read of it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Lua, Transition, json_reply, lua};
use crate::event::Event;
use crate::ids::{AgentId, AgentJob, SessionId, TodoId};
use crate::keys::Keys;
use crate::model::{Session, SessionStatus, Todo};

/// `init_session.lua`: records a new session as `decomposing`, before the planner is asked.
pub struct InitSession<'a> {
    pub id: SessionId,
    pub prompt: &'a str,
    pub agent_count: u32,
    /// Milliseconds since the epoch.
    pub created_at: u64,
    /// When a live coordinator fails the session if it is still decomposing (ms).
    pub deadline: u64,
    /// How long the session's keys live once it has finished (zero: forever).
    pub retention: Duration,
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum InitOutcome {
    Created,
    /// A session with this id exists: nothing was written.
    IdTaken,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InitArgs<'a> {
    session_id: SessionId,
    prompt: &'a str,
    agent_count: u32,
    created_at: u64,
    deadline: u64,
    retention_ms: u64,
}

impl Transition for InitSession<'_> {
    type Reply = InitOutcome;
    fn lua(&self) -> &'static Lua {
        lua!(session "init_session.lua")
    }
    fn session(&self) -> Option<SessionId> {
        Some(self.id)
    }
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![
            ("sessions", keys.sessions_index()),
            ("decomposing", keys.decomposing_zset()),
        ]
    }
    fn args(&self) -> impl Serialize {
        InitArgs {
            session_id: self.id,
            prompt: self.prompt,
            agent_count: self.agent_count,
            created_at: self.created_at,
            deadline: self.deadline,
            retention_ms: self.retention.as_millis() as u64,
        }
    }
}

/// `create_session.lua`: the decomposition written in one step — TODOs, agents, their jobs on
/// the ready list and the task:created events — if the session is still `decomposing`.
pub struct CreateSession<'a> {
    pub id: SessionId,
    pub todos: &'a [Todo],
    pub agents: &'a [AgentId],
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(
    tag = "outcome",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum CreateOutcome {
    Created,
    /// The session left `decomposing` meanwhile (cancelled, or failed by the watchdog; `None`:
    /// it is gone): nothing was written.
    NotDecomposing {
        status: Option<SessionStatus>,
    },
}

#[derive(Serialize)]
struct CreateArgs<'a> {
    todos: Vec<NewTodo<'a>>,
    agents: Vec<NewAgent>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewTodo<'a> {
    id: TodoId,
    description: &'a str,
    created_event: String,
}

#[derive(Serialize)]
struct NewAgent {
    id: AgentId,
    /// Its entry in the ready list.
    job: String,
}

impl Transition for CreateSession<'_> {
    type Reply = CreateOutcome;
    fn lua(&self) -> &'static Lua {
        lua!(session "create_session.lua")
    }
    fn session(&self) -> Option<SessionId> {
        Some(self.id)
    }
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![
            ("ready", keys.ready_list()),
            ("decomposing", keys.decomposing_zset()),
        ]
    }
    fn args(&self) -> impl Serialize {
        let todos = self
            .todos
            .iter()
            .map(|todo| NewTodo {
                id: todo.id,
                description: &todo.description,
                created_event: Event::TaskCreated(todo.clone()).payload_json(),
            })
            .collect();
        let agents = self
            .agents
            .iter()
            .map(|&agent_id| NewAgent {
                id: agent_id,
                job: AgentJob {
                    session_id: self.id,
                    agent_id,
                }
                .to_string(),
            })
            .collect();
        CreateArgs { todos, agents }
    }
}

/// `fail_session.lua`: fails a session that cannot run, if it still has status `only_if`.
pub struct FailSession<'a> {
    pub id: SessionId,
    pub error: &'a str,
    pub only_if: SessionStatus,
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum FailOutcome {
    /// This call failed the session (session:complete emitted).
    Failed,
    /// It was not in the required status: nothing changed.
    Unchanged,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FailArgs<'a> {
    error: &'a str,
    only_if: SessionStatus,
}

impl Transition for FailSession<'_> {
    type Reply = FailOutcome;
    fn lua(&self) -> &'static Lua {
        lua!(session "fail_session.lua")
    }
    fn session(&self) -> Option<SessionId> {
        Some(self.id)
    }
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![("decomposing", keys.decomposing_zset())]
    }
    fn args(&self) -> impl Serialize {
        FailArgs {
            error: self.error,
            only_if: self.only_if,
        }
    }
}

/// `cancel_session.lua`: cancels a decomposing or running session and tells the runners to
/// kill its workers.
pub struct CancelSession {
    pub id: SessionId,
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(
    tag = "outcome",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum CancelOutcome {
    Cancelled,
    /// Already finished (`completed`, `failed`, `cancelled`): nothing changed.
    Finished {
        status: SessionStatus,
    },
    NotFound,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CancelArgs {
    /// What the runners' control channel carries (see `runner/src/control.rs`).
    control_message: String,
}

impl Transition for CancelSession {
    type Reply = CancelOutcome;
    fn lua(&self) -> &'static Lua {
        lua!(session "cancel_session.lua")
    }
    fn session(&self) -> Option<SessionId> {
        Some(self.id)
    }
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![("decomposing", keys.decomposing_zset())]
    }
    fn channels(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![("control", keys.control_channel())]
    }
    fn args(&self) -> impl Serialize {
        CancelArgs {
            control_message: format!("cancel {}", self.id),
        }
    }
}

/// `snapshot.lua`: the whole session in one read, so its `lastSeq` matches its todos and
/// agents. `None` for an unknown session.
pub struct Snapshot {
    pub id: SessionId,
}

impl Transition for Snapshot {
    type Reply = Option<Session>;
    fn lua(&self) -> &'static Lua {
        lua!(session "snapshot.lua")
    }
    fn session(&self) -> Option<SessionId> {
        Some(self.id)
    }
    fn args(&self) -> impl Serialize {
        serde_json::Map::new()
    }
}

json_reply!(InitOutcome, CreateOutcome, FailOutcome, CancelOutcome);
