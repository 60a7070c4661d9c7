//! Agent-side operations: what a runner does while it holds an agent job. Every call carries the
//! agent's [`LeaseToken`]; a call from a holder that lost the agent (reaped, cancelled) answers
//! `Stale` and changes nothing.

use std::fmt;

use super::{Result, Store, StoreError};
use crate::event::{AgentStreamReady, Event, TaskCompleted};
use crate::ids::{AgentJob, RunnerId, TodoId};
use crate::scripts;

/// The fencing token of one holding of an agent (the agent hash's `token` counter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseToken(String);

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum StartOutcome {
    /// Ours now, with the token every later call carries and the agent's next TODO.
    Started(LeaseToken, AssignOutcome),
    /// The job is obsolete (session not running, agent terminated): drop it.
    Gone(String),
}

#[derive(Debug, PartialEq, Eq)]
pub enum AssignOutcome {
    Assigned {
        todo_id: TodoId,
        description: String,
        /// Failed attempts before this one.
        attempts: u32,
    },
    /// Nothing was pending: the agent ended in the same step.
    Done(AgentDone),
    Stale,
    Ended(String),
}

/// How an agent with nothing left to do ended.
#[derive(Debug, PartialEq, Eq)]
pub enum AgentDone {
    /// Terminated; other agents of the session still run.
    Terminated,
    /// Terminated, and this was the last agent: the session ended with this status.
    SessionEnded(String),
    /// It had been terminated already (a retried call).
    Already,
}

/// The answer of a fenced write.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Fenced {
    Ok,
    /// This holder lost the agent: nothing was recorded.
    Stale,
    /// The TODO is not this agent's current one: nothing was recorded.
    Mismatch,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Retry { attempts: u32 },
    Failed { attempts: u32 },
    Rejected(Fenced),
}

/// Who claims to hold an agent when releasing it.
pub enum Owner<'a> {
    Token(&'a LeaseToken),
    Runner(&'a RunnerId),
}

impl Store {
    /// Takes the agent over (bumping its fencing token) and gets its next TODO, in one step.
    pub async fn start_agent(
        &self,
        job: AgentJob,
        runner: &RunnerId,
        max_attempts: u32,
    ) -> Result<StartOutcome> {
        let reply: Vec<String> = self
            .session_script(&scripts::START_AGENT, job.session_id)
            .arg(job.agent_id.to_string())
            .arg(runner.as_str())
            .arg(max_attempts)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match reply.as_slice() {
            [tag, token, next @ ..] if tag == "ok" => {
                StartOutcome::Started(LeaseToken(token.clone()), parse_assign(next)?)
            }
            [tag, reason] if tag == "gone" => StartOutcome::Gone(reason.clone()),
            other => {
                return Err(StoreError::Corrupt(format!(
                    "start_agent replied {other:?}"
                )));
            }
        })
    }

    pub async fn assign_next(
        &self,
        job: AgentJob,
        token: &LeaseToken,
        max_attempts: u32,
    ) -> Result<AssignOutcome> {
        let reply: Vec<String> = self
            .session_script(&scripts::ASSIGN_NEXT, job.session_id)
            .arg(job.agent_id.to_string())
            .arg(&token.0)
            .arg(max_attempts)
            .invoke_async(&mut self.conn())
            .await?;
        parse_assign(&reply)
    }

    /// Records a `complete`. With `next` (the attempt limit), also takes the agent's next TODO
    /// in the same step, as `assign_next` would (ending the agent when none is pending), and
    /// returns it.
    pub async fn complete_todo(
        &self,
        job: AgentJob,
        token: &LeaseToken,
        todo_id: TodoId,
        result: Option<String>,
        next: Option<u32>,
    ) -> Result<(Fenced, Option<AssignOutcome>)> {
        let mut inv = self.session_script(&scripts::COMPLETE_TODO, job.session_id);
        inv.arg(job.agent_id.to_string())
            .arg(&token.0)
            .arg(todo_id.to_string())
            .arg(if result.is_some() { "1" } else { "0" })
            .arg(result.as_deref().unwrap_or(""));
        let payload = Event::TaskCompleted(TaskCompleted {
            todo_id,
            agent_id: job.agent_id,
            result,
        })
        .payload_json();
        let reply: Vec<String> = inv
            .arg(payload)
            .arg(next.map(|n| n.to_string()).unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await?;
        match reply.split_first() {
            Some((tag, rest)) if tag == "ok" => {
                let next = if rest.is_empty() {
                    None
                } else {
                    Some(parse_assign(rest)?)
                };
                Ok((Fenced::Ok, next))
            }
            Some((tag, [])) => Ok((fenced(tag)?, None)),
            _ => Err(StoreError::Corrupt(format!(
                "complete_todo replied {reply:?}"
            ))),
        }
    }

    pub async fn fail_attempt(
        &self,
        job: AgentJob,
        token: &LeaseToken,
        todo_id: TodoId,
        error: &str,
        max_attempts: u32,
    ) -> Result<AttemptOutcome> {
        let reply: Vec<String> = self
            .session_script(&scripts::FAIL_ATTEMPT, job.session_id)
            .arg(job.agent_id.to_string())
            .arg(&token.0)
            .arg(todo_id.to_string())
            .arg(error)
            .arg(max_attempts)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match reply.as_slice() {
            [tag, n] if tag == "retry" => AttemptOutcome::Retry {
                attempts: super::sessions::parse_num(n, "attempts")?,
            },
            [tag, n] if tag == "failed" => AttemptOutcome::Failed {
                attempts: super::sessions::parse_num(n, "attempts")?,
            },
            [tag] => AttemptOutcome::Rejected(fenced(tag)?),
            other => {
                return Err(StoreError::Corrupt(format!(
                    "fail_attempt replied {other:?}"
                )));
            }
        })
    }

    /// Detaches the agent from its holder; its in-flight TODO goes back to pending. The caller
    /// then moves the job back to the ready list. False when `owner` no longer holds it.
    pub async fn release_agent(
        &self,
        job: AgentJob,
        owner: Owner<'_>,
        count_attempt: bool,
        reason: &str,
    ) -> Result<bool> {
        let (mode, who) = match owner {
            Owner::Token(t) => ("token", t.0.as_str()),
            Owner::Runner(r) => ("runner", r.as_str()),
        };
        let released: i64 = self
            .session_script(&scripts::RELEASE_AGENT, job.session_id)
            .arg(job.agent_id.to_string())
            .arg(mode)
            .arg(who)
            .arg(if count_attempt { 1 } else { 0 })
            .arg(reason)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(released == 1)
    }

    /// Records a batch of relayed events. `batch` must increase per token: a retried batch (its
    /// reply lost to a dropped connection) is recognised and not recorded twice.
    pub async fn emit_events(
        &self,
        job: AgentJob,
        token: &LeaseToken,
        batch: u64,
        events: &[Event],
    ) -> Result<Fenced> {
        let mut inv = self.session_script(&scripts::EMIT_EVENTS, job.session_id);
        inv.arg(job.agent_id.to_string()).arg(&token.0).arg(batch);
        for event in events {
            inv.arg(event.name()).arg(event.payload_json());
        }
        let reply: String = inv.invoke_async(&mut self.conn()).await?;
        fenced(&reply)
    }

    pub async fn stream_ready(
        &self,
        job: AgentJob,
        token: &LeaseToken,
        sandbox_id: String,
        stream_url: String,
    ) -> Result<Fenced> {
        let mut inv = self.session_script(&scripts::STREAM_READY, job.session_id);
        inv.arg(job.agent_id.to_string())
            .arg(&token.0)
            .arg(&sandbox_id)
            .arg(&stream_url);
        let payload = Event::AgentStreamReady(AgentStreamReady {
            agent_id: job.agent_id,
            sandbox_id,
            stream_url,
        })
        .payload_json();
        let reply: String = inv.arg(payload).invoke_async(&mut self.conn()).await?;
        fenced(&reply)
    }
}

/// next_todo's reply (see `lua/prelude.lua`).
fn parse_assign(reply: &[String]) -> Result<AssignOutcome> {
    Ok(match reply {
        [tag, todo, description, attempts] if tag == "assigned" => AssignOutcome::Assigned {
            todo_id: TodoId::parse(todo).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            description: description.clone(),
            attempts: super::sessions::parse_num(attempts, "attempts")?,
        },
        [tag, outcome] if tag == "done" => AssignOutcome::Done(match outcome.as_str() {
            "terminated" => AgentDone::Terminated,
            "already" => AgentDone::Already,
            ended => AgentDone::SessionEnded(ended.to_owned()),
        }),
        [tag] if tag == "stale" => AssignOutcome::Stale,
        [tag, status] if tag == "ended" => AssignOutcome::Ended(status.clone()),
        other => return Err(StoreError::Corrupt(format!("next TODO reply {other:?}"))),
    })
}

fn fenced(reply: &str) -> Result<Fenced> {
    match reply {
        "ok" => Ok(Fenced::Ok),
        "stale" => Ok(Fenced::Stale),
        "mismatch" => Ok(Fenced::Mismatch),
        other => Err(StoreError::Corrupt(format!(
            "fenced write replied {other:?}"
        ))),
    }
}
