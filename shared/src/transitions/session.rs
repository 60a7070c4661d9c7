//! The coordinator's transitions: a session from `decomposing` to `running` (or `failed`),
//! cancelling it, and the one consistent read of it.

use std::time::Duration;

use serde::Serialize;

use super::{millis, reply, transition};
use crate::event::Event;
use crate::ids::{AgentId, AgentJob, SessionId, TodoId};
use crate::keys::Keys;
use crate::model::{Session, SessionStatus, Todo};

/// How long the tombstone of an abandoned id and the "jobs enqueued" marker live: far longer
/// than any coordinator stall they guard against (ms).
pub const MARKER_TTL_MS: u64 = 24 * 3600 * 1000;

/// `index_session.lua`: step 1 of recording a session — the sessions index and the
/// decomposing set (global slot), before the session exists. Run by
/// [`Store::open_session`](crate::Store::open_session).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexSession {
    pub session_id: SessionId,
    /// Milliseconds since the epoch.
    pub created_at: u64,
    /// When a live coordinator fails the session if it is still decomposing (ms).
    pub deadline: u64,
}

reply! {
    pub enum IndexOutcome { Indexed }
}

transition!(IndexSession => IndexOutcome, global "index_session.lua";
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![("sessions", keys.sessions_index()), ("decomposing", keys.decomposing_zset())]
    }
);

/// `init_session.lua`: step 2 — records a new session as `decomposing` (its slot only), before
/// the planner is asked. [`Store::open_session`](crate::Store::open_session) runs both steps.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitSession<'a> {
    #[serde(rename = "sessionId")]
    pub id: SessionId,
    pub prompt: &'a str,
    pub agent_count: u32,
    /// Milliseconds since the epoch.
    pub created_at: u64,
    /// When a live coordinator fails the session if it is still decomposing (ms): written by
    /// step 1 ([`IndexSession`]).
    #[serde(skip)]
    pub deadline: u64,
    /// How long the session's keys live once it has finished (zero: forever).
    #[serde(rename = "retentionMs", serialize_with = "millis")]
    pub retention: Duration,
}

reply! {
    /// `Created`; `IdTaken`: a session with this id exists and nothing was written; or
    /// `Abandoned`: the watchdog gave up on this id (its coordinator stalled past the deadline
    /// between the steps) and nothing was written.
    pub enum InitOutcome { Created, IdTaken, Abandoned }
}

transition!(InitSession<'_> => InitOutcome, session "init_session.lua" in id;
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![("gone", keys.session(self.id).gone_marker())]
    }
);

/// `create_session.lua`: the decomposition written in one step — TODOs, agents and the
/// task:created events — if the session is still `decomposing`. Its agent jobs go onto the
/// queue next ([`EnqueueJobs`]); [`Store::start_session`](crate::Store::start_session) runs
/// both steps.
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
    agents: &'a [AgentId],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewTodo<'a> {
    id: TodoId,
    description: &'a str,
    created_event: String,
}

transition!(CreateSession<'_> => CreateOutcome, session "create_session.lua" in id);

impl CreateSession<'_> {
    /// Its agents' entries in the ready list.
    pub fn jobs(&self) -> Vec<String> {
        self.agents
            .iter()
            .map(|&agent_id| {
                AgentJob {
                    session_id: self.id,
                    agent_id,
                }
                .to_string()
            })
            .collect()
    }
}

/// `enqueue_jobs.lua`: a running session's agent jobs onto the ready queue, once however often
/// it is called (the coordinator, then maybe the watchdog). Queue slot only.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnqueueJobs {
    #[serde(skip)]
    pub session_id: SessionId,
    pub jobs: Vec<String>,
    pub marker_ttl_ms: u64,
}

reply! {
    /// `Enqueued`, or `Already`: an earlier call pushed them and nothing changed.
    pub enum EnqueueOutcome { Enqueued, Already }
}

transition!(EnqueueJobs => EnqueueOutcome, global "enqueue_jobs.lua";
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        let ready = keys.ready_shard(keys.shard_of(self.session_id));
        vec![("ready", ready), ("enqueued", keys.enqueued_marker(self.session_id))]
    }
);

/// `unindex_sessions.lua`: drops index entries of sessions found without keys, unless still in
/// the decomposing set. Global slot only.
#[derive(Serialize)]
pub struct UnindexSessions {
    pub ids: Vec<String>,
}

reply! {
    pub enum UnindexOutcome { Dropped { count: u64 } }
}

transition!(UnindexSessions => UnindexOutcome, global "unindex_sessions.lua";
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![("sessions", keys.sessions_index()), ("decomposing", keys.decomposing_zset())]
    }
);

impl Serialize for CreateSession<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let todos = self.todos.iter().map(|todo| NewTodo {
            id: todo.id,
            description: &todo.description,
            created_event: Event::TaskCreated(todo.clone()).payload_json(),
        });
        let args = CreateArgs {
            todos: todos.collect(),
            agents: self.agents,
        };
        args.serialize(s)
    }
}

/// `fail_session.lua`: fails a session that cannot run, if it still has status `only_if` (its
/// slot only; [`Store::fail_session`](crate::Store::fail_session) then drops its decomposing
/// entry).
pub struct FailSession<'a> {
    pub id: SessionId,
    pub error: &'a str,
    pub only_if: SessionStatus,
}

reply! {
    /// `Failed`: this call failed the session (session:complete emitted); `Unchanged`: it was
    /// not in the required status; `Missing`: there is no session, and a tombstone now keeps
    /// one from being written under this id.
    pub enum FailOutcome {
        Failed,
        Unchanged { status: SessionStatus },
        Missing,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FailArgs<'a> {
    error: &'a str,
    only_if: SessionStatus,
    gone_ttl_ms: u64,
}

impl Serialize for FailSession<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        FailArgs {
            error: self.error,
            only_if: self.only_if,
            gone_ttl_ms: MARKER_TTL_MS,
        }
        .serialize(s)
    }
}

transition!(FailSession<'_> => FailOutcome, session "fail_session.lua" in id;
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![("gone", keys.session(self.id).gone_marker())]
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
    fn channels(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        let session = keys.session(self.id).control_channel();
        vec![("control", keys.control_channel()), ("sessionControl", session)]
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
