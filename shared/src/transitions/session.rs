//! The coordinator's transitions: a session from `decomposing` to `running` (or `failed`),
//! cancelling it, and the one consistent read of it.

use std::time::Duration;

use serde::Serialize;

use super::{millis, reply, transition};
use crate::event::Event;
use crate::ids::{AgentId, AgentJob, SessionId, TodoId};
use crate::keys::Keys;
use crate::model::{Session, SessionStatus, Todo};

/// `init_session.lua`: records a new session as `decomposing`, before the planner is asked.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitSession<'a> {
    #[serde(rename = "sessionId")]
    pub id: SessionId,
    pub prompt: &'a str,
    pub agent_count: u32,
    /// Milliseconds since the epoch.
    pub created_at: u64,
    /// When a live coordinator fails the session if it is still decomposing (ms).
    pub deadline: u64,
    /// How long the session's keys live once it has finished (zero: forever).
    #[serde(rename = "retentionMs", serialize_with = "millis")]
    pub retention: Duration,
}

reply! {
    /// `Created`, or `IdTaken`: a session with this id exists and nothing was written.
    pub enum InitOutcome { Created, IdTaken }
}

transition!(InitSession<'_> => InitOutcome, session "init_session.lua" in id;
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![("sessions", keys.sessions_index()), ("decomposing", keys.decomposing_zset())]
    }
);

/// `create_session.lua`: the decomposition written in one step — TODOs, agents, their jobs on
/// the ready list and the task:created events — if the session is still `decomposing`.
pub struct CreateSession<'a> {
    pub id: SessionId,
    pub todos: &'a [Todo],
    pub agents: &'a [AgentId],
}

reply! {
    pub enum CreateOutcome {
        Created,
        /// The session left `decomposing` meanwhile (cancelled, or failed by the watchdog; `None`:
        /// it is gone): nothing was written.
        NotDecomposing {
            status: Option<SessionStatus>,
        },
    }
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

transition!(CreateSession<'_> => CreateOutcome, session "create_session.lua" in id;
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![("ready", keys.ready_list()), ("decomposing", keys.decomposing_zset())]
    }
);

impl Serialize for CreateSession<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let todos = self.todos.iter().map(|todo| NewTodo {
            id: todo.id,
            description: &todo.description,
            created_event: Event::TaskCreated(todo.clone()).payload_json(),
        });
        let agents = self.agents.iter().map(|&agent_id| NewAgent {
            id: agent_id,
            job: AgentJob {
                session_id: self.id,
                agent_id,
            }
            .to_string(),
        });
        let args = CreateArgs {
            todos: todos.collect(),
            agents: agents.collect(),
        };
        args.serialize(s)
    }
}

/// `fail_session.lua`: fails a session that cannot run, if it still has status `only_if`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailSession<'a> {
    #[serde(skip)]
    pub id: SessionId,
    pub error: &'a str,
    pub only_if: SessionStatus,
}

reply! {
    /// `Failed`: this call failed the session (session:complete emitted); or `Unchanged`: it was
    /// not in the required status.
    pub enum FailOutcome { Failed, Unchanged }
}

transition!(FailSession<'_> => FailOutcome, session "fail_session.lua" in id;
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![("decomposing", keys.decomposing_zset())]
    }
);

/// `cancel_session.lua`: cancels a decomposing or running session and tells the runners to
/// kill its workers.
pub struct CancelSession {
    pub id: SessionId,
}

reply! {
    pub enum CancelOutcome {
        Cancelled,
        /// Already finished (`completed`, `failed`, `cancelled`): nothing changed.
        Finished {
            status: SessionStatus,
        },
        NotFound,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CancelArgs {
    /// What the runners' control channel carries (see `runner/src/control.rs`).
    control_message: String,
}

transition!(CancelSession => CancelOutcome, session "cancel_session.lua" in id;
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![("decomposing", keys.decomposing_zset())]
    }
    fn channels(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![("control", keys.control_channel())]
    }
);

impl Serialize for CancelSession {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let control_message = format!("cancel {}", self.id);
        CancelArgs { control_message }.serialize(s)
    }
}

/// `snapshot.lua`: the whole session in one read, so its `lastSeq` matches its todos and
/// agents. `None` for an unknown session.
#[derive(Serialize)]
pub struct Snapshot {
    #[serde(skip)]
    pub id: SessionId,
}

transition!(Snapshot => Option<Session>, session "snapshot.lua" in id;
    fn durable(&self) -> bool {
        false
    }
);
