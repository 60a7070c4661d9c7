//! What a runner does while it holds an agent job. Every call but [`StartAgent`] carries the
//! agent's [`LeaseToken`]; a call from a holder that lost the agent (reaped, cancelled) answers
//! `Stale` and changes nothing.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{reply, transition};
use crate::event::{AgentStreamReady, Event, TaskCompleted};
use crate::ids::{AgentJob, RunnerId, TodoId};
use crate::model::SessionStatus;

/// The fencing token of one holding of an agent (the agent hash's `token` counter).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(pub(crate) String);

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

reply! {
    /// The agent's next TODO, as `next_todo` in `lua/session.lua` answers.
    pub enum AssignOutcome {
        Assigned {
            todo_id: TodoId,
            description: String,
            /// Failed attempts before this one.
            attempts: u32,
        },
        /// Nothing was pending: the agent ended in the same step.
        Done(AgentDone),
        /// The token is no longer the agent's.
        Stale,
        /// The session is not running any more (`None`: it is gone).
        Ended { status: Option<SessionStatus> },
    }
}

/// How an agent with nothing left to do ended.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(
    tag = "ending",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum AgentDone {
    /// Terminated; other agents of the session still run.
    Terminated,
    /// Terminated, and this was the last agent: the session ended with this status.
    SessionEnded { status: SessionStatus },
    /// It had been terminated already (a retried call).
    Already,
}

/// `start_agent.lua`: takes a claimed agent over (bumping its fencing token) and gets its next
/// TODO, in one step.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartAgent<'a> {
    pub job: AgentJob,
    pub runner: &'a RunnerId,
    pub max_attempts: u32,
}

reply! {
    pub enum StartOutcome {
        /// Ours now, with the token every later call carries and the agent's next TODO.
        Started {
            token: LeaseToken,
            next: AssignOutcome,
        },
        /// The job is obsolete (session not running, agent terminated): drop it.
        Gone { reason: String },
    }
}

transition!(StartAgent<'_> => StartOutcome, session "start_agent.lua" in job.session_id);

/// `assign_next.lua`: gives the agent its next TODO, or ends it when none is pending.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignNext<'a> {
    pub job: AgentJob,
    pub token: &'a LeaseToken,
    pub max_attempts: u32,
}

transition!(AssignNext<'_> => AssignOutcome, session "assign_next.lua" in job.session_id);

/// What a completion does once recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterCompletion {
    /// Take the agent's next TODO in the same step (as [`AssignNext`] would, ending the agent
    /// when none is pending), saving a round trip per TODO.
    TakeNext { max_attempts: u32 },
    /// Nothing more (a draining runner takes no further TODO).
    Stop,
}

/// `complete_todo.lua`: records a worker's `complete` (the plan's completeTask).
pub struct CompleteTodo<'a> {
    pub job: AgentJob,
    pub token: &'a LeaseToken,
    pub todo_id: TodoId,
    pub result: Option<&'a str>,
    pub then: AfterCompletion,
}

reply! {
    pub enum CompleteOutcome {
        /// Recorded now, or by this holder before (a retried call); with
        /// [`AfterCompletion::TakeNext`], the agent's next TODO.
        Recorded { next: Option<AssignOutcome> },
        /// This holder lost the agent: nothing was recorded.
        Stale,
        /// The TODO is not this agent's current one: nothing was recorded.
        Mismatch,
    }
}

/// [`CompleteTodo`]'s arguments: its fields, the task:completed payload, and `takeNext` only
/// when the next TODO is to be taken.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CompleteArgs<'a> {
    #[serde(flatten)]
    fenced: Fencing<'a>,
    todo_id: TodoId,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a str>,
    completed_event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    take_next: Option<TakeNext>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TakeNext {
    max_attempts: u32,
}

/// Who writes: the agent (its job) and the holder's token.
#[derive(Serialize)]
struct Fencing<'a> {
    job: AgentJob,
    token: &'a LeaseToken,
}

transition!(CompleteTodo<'_> => CompleteOutcome, session "complete_todo.lua" in job.session_id);

impl Serialize for CompleteTodo<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let completed = TaskCompleted {
            todo_id: self.todo_id,
            agent_id: self.job.agent_id,
            result: self.result.map(str::to_owned),
        };
        let take_next = match self.then {
            AfterCompletion::TakeNext { max_attempts } => Some(TakeNext { max_attempts }),
            AfterCompletion::Stop => None,
        };
        CompleteArgs {
            fenced: Fencing {
                job: self.job,
                token: self.token,
            },
            todo_id: self.todo_id,
            result: self.result,
            completed_event: Event::TaskCompleted(completed).payload_json(),
            take_next,
        }
        .serialize(s)
    }
}

/// `fail_attempt.lua`: one attempt at a TODO failed (worker crashed, timed out, said `fail`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailAttempt<'a> {
    pub job: AgentJob,
    pub token: &'a LeaseToken,
    pub todo_id: TodoId,
    pub error: &'a str,
    pub max_attempts: u32,
}

reply! {
    pub enum AttemptOutcome {
        /// Back to pending (task:retry); `attempts` failed so far.
        Retry { attempts: u32 },
        /// Attempts exhausted: the TODO failed (task:failed).
        Failed { attempts: u32 },
        /// This holder lost the agent: nothing was recorded.
        Stale,
        /// The TODO is not this agent's current one: nothing was recorded.
        Mismatch,
    }
}

transition!(FailAttempt<'_> => AttemptOutcome, session "fail_attempt.lua" in job.session_id);

/// Who claims to hold an agent when releasing it.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Holder<'a> {
    /// A runner releasing its own agent (draining).
    Token(&'a LeaseToken),
    /// The reaper releasing a dead runner's agent.
    Runner(&'a RunnerId),
}

/// `release_agent.lua`: detaches the agent from its holder; its in-flight TODO goes back to
/// pending. The caller then moves the job back to the ready list.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseAgent<'a> {
    pub job: AgentJob,
    pub holder: Holder<'a>,
    /// Count the interrupted attempt (the reaper: the TODO may be what killed the runner).
    pub count_attempt: bool,
    pub reason: &'a str,
}

reply! {
    /// `Released`, or `NotHeld`: `holder` no longer holds the agent, or it is terminated, and
    /// nothing changed.
    pub enum ReleaseOutcome { Released, NotHeld }
}

transition!(ReleaseAgent<'_> => ReleaseOutcome, session "release_agent.lua" in job.session_id);

reply! {
    /// The answer of a fenced write that cannot mismatch: `Recorded`, or `Stale` when this
    /// holder lost the agent (nothing was recorded).
    #[derive(Clone, Copy)]
    pub enum Fenced { Recorded, Stale }
}

/// `emit_events.lua`: records a batch of events relayed from the worker. `batch` increases per
/// token: a retried batch (its reply lost to a dropped connection) is not recorded twice.
pub struct EmitEvents<'a> {
    pub job: AgentJob,
    pub token: &'a LeaseToken,
    pub batch: u64,
    pub events: &'a [Event],
}

#[derive(Serialize)]
struct EmitArgs<'a> {
    #[serde(flatten)]
    fenced: Fencing<'a>,
    batch: u64,
    events: Vec<NamedPayload>,
}

#[derive(Serialize)]
struct NamedPayload {
    name: &'static str,
    payload: String,
}

transition!(EmitEvents<'_> => Fenced, session "emit_events.lua" in job.session_id);

impl Serialize for EmitEvents<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let events = self.events.iter().map(|e| NamedPayload {
            name: e.name(),
            payload: e.payload_json(),
        });
        EmitArgs {
            fenced: Fencing {
                job: self.job,
                token: self.token,
            },
            batch: self.batch,
            events: events.collect(),
        }
        .serialize(s)
    }
}

/// `stream_ready.lua`: the worker's sandbox is up (stored on the agent, agent:stream_ready).
pub struct StreamReady<'a> {
    pub job: AgentJob,
    pub token: &'a LeaseToken,
    pub sandbox_id: &'a str,
    pub stream_url: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StreamReadyArgs<'a> {
    #[serde(flatten)]
    fenced: Fencing<'a>,
    sandbox_id: &'a str,
    stream_url: &'a str,
    ready_event: String,
}

transition!(StreamReady<'_> => Fenced, session "stream_ready.lua" in job.session_id);

impl Serialize for StreamReady<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ready = AgentStreamReady {
            agent_id: self.job.agent_id,
            sandbox_id: self.sandbox_id.to_owned(),
            stream_url: self.stream_url.to_owned(),
        };
        StreamReadyArgs {
            fenced: Fencing {
                job: self.job,
                token: self.token,
            },
            sandbox_id: self.sandbox_id,
            stream_url: self.stream_url,
            ready_event: Event::AgentStreamReady(ready).payload_json(),
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use redis::{FromRedisValue, Value};

    use super::*;

    fn decode<T: FromRedisValue>(json: &str) -> T {
        T::from_redis_value(Value::BulkString(json.as_bytes().to_vec())).unwrap()
    }

    #[test]
    fn nested_replies_decode_into_their_enums() {
        let todo = TodoId::new();
        let reply = format!(
            r#"{{"outcome":"started","token":"7","next":{{"outcome":"assigned","todoId":"{todo}","description":"d","attempts":1}}}}"#
        );
        assert_eq!(
            decode::<StartOutcome>(&reply),
            StartOutcome::Started {
                token: LeaseToken("7".into()),
                next: AssignOutcome::Assigned {
                    todo_id: todo,
                    description: "d".into(),
                    attempts: 1
                }
            }
        );
        assert_eq!(
            decode::<CompleteOutcome>(
                r#"{"outcome":"recorded","next":{"ending":"sessionEnded","status":"failed","outcome":"done"}}"#
            ),
            CompleteOutcome::Recorded {
                next: Some(AssignOutcome::Done(AgentDone::SessionEnded {
                    status: SessionStatus::Failed
                }))
            }
        );
        assert_eq!(
            decode::<CompleteOutcome>(r#"{"outcome":"recorded"}"#),
            CompleteOutcome::Recorded { next: None }
        );
        assert_eq!(
            decode::<AssignOutcome>(r#"{"outcome":"ended"}"#),
            AssignOutcome::Ended { status: None }
        );
    }

    #[test]
    fn an_unknown_outcome_is_an_error_not_a_guess() {
        for bad in [r#"{"outcome":"ok"}"#, r#"{"outcome":"retry"}"#, "stale"] {
            let decoded = AttemptOutcome::from_redis_value(Value::BulkString(bad.into()));
            assert!(decoded.is_err(), "{bad}");
        }
        assert!(Fenced::from_redis_value(Value::Int(1)).is_err());
    }
}
