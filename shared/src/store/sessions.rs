//! Session-side operations: the coordinator's writes and every read of a session.

use redis::AsyncCommands;

use super::{Fields, Result, Store, StoreError};
use crate::event::{Event, EventEnvelope};
use crate::ids::{AgentId, AgentJob, SessionId, TodoId};
use crate::model::{Agent, AgentStatus, Session, SessionStatus, SessionSummary, Todo, TodoStatus};
use crate::scripts;

#[derive(Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The session left `decomposing` meanwhile (cancelled, or failed by the watchdog).
    NotDecomposing(String),
}

#[derive(Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled,
    /// Already finished (`completed`, `failed`, `cancelled`) — nothing changed.
    Finished(SessionStatus),
    NotFound,
}

/// One event as recorded in a session's stream.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    pub seq: u64,
    pub event: String,
    /// The payload JSON, `seq` included.
    pub data: String,
}

impl RecordedEvent {
    /// The typed event, as a client receives it.
    pub fn decode(&self) -> std::result::Result<EventEnvelope, serde_json::Error> {
        EventEnvelope::from_parts(&self.event, serde_json::from_str(&self.data)?)
    }
}

#[derive(Debug)]
pub struct SessionPage {
    pub sessions: Vec<SessionSummary>,
    /// Pass back as `cursor` for the next (older) page; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl Store {
    /// Records a new session as `decomposing`. False when the id is taken.
    pub async fn init_session(
        &self,
        id: SessionId,
        prompt: &str,
        agent_count: u32,
        created_at: u64,
        deadline: u64,
        retention: std::time::Duration,
    ) -> Result<bool> {
        let created: i64 = self
            .session_script(&scripts::INIT_SESSION, id)
            .key(self.keys.sessions_index())
            .key(self.keys.decomposing_zset())
            .arg(id.to_string())
            .arg(prompt)
            .arg(agent_count)
            .arg(created_at)
            .arg(deadline)
            .arg(retention.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(created == 1)
    }

    /// Writes the decomposition: TODOs, agents, their jobs and the task:created events, atomically.
    pub async fn create_session(
        &self,
        id: SessionId,
        todos: &[Todo],
        agents: &[AgentId],
    ) -> Result<CreateOutcome> {
        let mut inv = self.session_script(&scripts::CREATE_SESSION, id);
        inv.key(self.keys.ready_list())
            .key(self.keys.decomposing_zset())
            .arg(todos.len())
            .arg(agents.len());
        for todo in todos {
            inv.arg(todo.id.to_string())
                .arg(&todo.description)
                .arg(Event::TaskCreated(todo.clone()).payload_json());
        }
        for &agent_id in agents {
            let job = AgentJob {
                session_id: id,
                agent_id,
            };
            inv.arg(agent_id.to_string()).arg(job.to_string());
        }
        let outcome: String = inv.invoke_async(&mut self.conn()).await?;
        Ok(match outcome.as_str() {
            "ok" => CreateOutcome::Created,
            _ => CreateOutcome::NotDecomposing(outcome),
        })
    }

    /// Fails the session if it still has status `only_if`. True when this call failed it.
    pub async fn fail_session(
        &self,
        id: SessionId,
        error: &str,
        only_if: SessionStatus,
    ) -> Result<bool> {
        let failed: i64 = self
            .session_script(&scripts::FAIL_SESSION, id)
            .key(self.keys.decomposing_zset())
            .arg(error)
            .arg(only_if.as_str())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(failed == 1)
    }

    pub async fn cancel_session(&self, id: SessionId) -> Result<CancelOutcome> {
        let outcome: String = self
            .session_script(&scripts::CANCEL_SESSION, id)
            .key(self.keys.decomposing_zset())
            .arg(self.keys.control_channel())
            .arg(format!("cancel {id}"))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match outcome.as_str() {
            "ok" => CancelOutcome::Cancelled,
            "missing" => CancelOutcome::NotFound,
            other => CancelOutcome::Finished(SessionStatus::parse(other).ok_or_else(|| {
                StoreError::Corrupt(format!("session {id} has status {other:?}"))
            })?),
        })
    }

    /// The whole session, read in one step (its `lastSeq` matches the todos and agents).
    pub async fn snapshot(&self, id: SessionId) -> Result<Option<Session>> {
        type Raw = Option<(Vec<String>, Vec<Vec<String>>, Vec<Vec<String>>)>;
        let raw: Raw = self
            .session_script(&scripts::SNAPSHOT, id)
            .invoke_async(&mut self.conn())
            .await?;
        let Some((session, todos, agents)) = raw else {
            return Ok(None);
        };
        let s = Fields(session);
        let status = s.req("status", "session")?;
        let mut out = Session {
            id,
            prompt: s.req("prompt", "session")?.to_owned(),
            agent_count: parse_num(s.req("agentCount", "session")?, "agentCount")?,
            status: SessionStatus::parse(status)
                .ok_or_else(|| StoreError::Corrupt(format!("session status {status:?}")))?,
            todos: Vec::with_capacity(todos.len()),
            agents: Vec::with_capacity(agents.len()),
            created_at: parse_num(s.req("createdAt", "session")?, "createdAt")?,
            error: s.some("error").map(str::to_owned),
            finished_at: s
                .some("finishedAt")
                .map(|v| parse_num(v, "finishedAt"))
                .transpose()?,
            last_seq: s
                .some("seq")
                .map(|v| parse_num(v, "seq"))
                .transpose()?
                .unwrap_or(0),
        };
        for t in todos {
            out.todos.push(todo_from(&Fields(t))?);
        }
        for a in agents {
            out.agents.push(agent_from(&Fields(a), id)?);
        }
        Ok(Some(out))
    }

    /// Sessions newest first. `cursor` is a previous page's `next_cursor`.
    pub async fn list_sessions(&self, limit: usize, cursor: Option<&str>) -> Result<SessionPage> {
        let (max_score, after) = match cursor.and_then(parse_cursor) {
            Some((score, id)) => (score.to_string(), Some((score, id))),
            None => ("+inf".to_owned(), None),
        };
        // Ties on createdAt come back in reverse member order; overfetch to skip the ones the
        // previous page already returned.
        let entries: Vec<(String, u64)> = self
            .conn()
            .zrevrangebyscore_limit_withscores(
                self.keys.sessions_index(),
                max_score,
                "-inf",
                0,
                (limit + 64) as isize,
            )
            .await?;
        let mut ids = Vec::with_capacity(limit + 1);
        for (member, score) in entries {
            if let Some((s, ref last)) = after
                && score == s
                && member.as_str() >= last.as_str()
            {
                continue;
            }
            if let Ok(id) = SessionId::parse(&member) {
                ids.push((id, score));
            }
            if ids.len() > limit {
                break;
            }
        }
        let more = ids.len() > limit;
        ids.truncate(limit);
        let mut pipe = redis::pipe();
        for (id, _) in &ids {
            pipe.cmd("HMGET")
                .arg(self.keys.session(*id).session_hash())
                .arg(&["prompt", "agentCount", "status", "createdAt", "error"]);
        }
        let rows: Vec<Vec<Option<String>>> = if ids.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut self.conn()).await?
        };
        let mut sessions = Vec::with_capacity(ids.len());
        for ((id, _), row) in ids.iter().zip(rows) {
            // Expired by retention but not yet trimmed from the index: skip.
            let [
                Some(prompt),
                Some(count),
                Some(status),
                Some(created),
                error,
            ] = <[Option<String>; 5]>::try_from(row)
                .map_err(|_| StoreError::Corrupt("HMGET row length".into()))?
            else {
                continue;
            };
            sessions.push(SessionSummary {
                id: *id,
                prompt,
                agent_count: parse_num(&count, "agentCount")?,
                status: SessionStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("session status {status:?}")))?,
                created_at: parse_num(&created, "createdAt")?,
                error: error.filter(|e| !e.is_empty()),
            });
        }
        let next_cursor = if more {
            ids.last().map(|(id, score)| format!("{score}-{id}"))
        } else {
            None
        };
        Ok(SessionPage {
            sessions,
            next_cursor,
        })
    }

    /// Recorded events with `seq > since`, oldest first, at most `max`.
    pub async fn events_after(
        &self,
        id: SessionId,
        since: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let reply: redis::streams::StreamRangeReply = self
            .conn()
            .xrange_count(
                self.keys.session(id).events_stream(),
                format!("({since}-0"),
                "+",
                max,
            )
            .await?;
        reply
            .ids
            .into_iter()
            .map(|entry| {
                let seq = entry
                    .id
                    .split_once('-')
                    .and_then(|(ms, _)| ms.parse().ok())
                    .ok_or_else(|| StoreError::Corrupt(format!("stream id {:?}", entry.id)))?;
                let field = |name: &str| -> Result<String> {
                    entry
                        .get::<String>(name)
                        .ok_or_else(|| StoreError::Corrupt(format!("stream entry has no {name}")))
                };
                Ok(RecordedEvent {
                    seq,
                    event: field("event")?,
                    data: field("data")?,
                })
            })
            .collect()
    }

    /// The seq of the session's last event; `None` for an unknown session.
    pub async fn last_seq(&self, id: SessionId) -> Result<Option<u64>> {
        let seq: Option<u64> = self
            .conn()
            .hget(self.keys.session(id).session_hash(), "seq")
            .await?;
        Ok(seq)
    }

    /// Sessions still `decomposing` past their deadline (their coordinator died or hung).
    pub async fn overdue_decompositions(&self, now: u64, limit: usize) -> Result<Vec<SessionId>> {
        let ids: Vec<String> = self
            .conn()
            .zrangebyscore_limit(self.keys.decomposing_zset(), "-inf", now, 0, limit as isize)
            .await?;
        Ok(ids
            .iter()
            .filter_map(|i| SessionId::parse(i).ok())
            .collect())
    }

    /// Forgets a decomposing entry whose session does not exist.
    pub async fn forget_decomposition(&self, id: SessionId) -> Result<()> {
        let _: i64 = self
            .conn()
            .zrem(self.keys.decomposing_zset(), id.to_string())
            .await?;
        Ok(())
    }
}

fn parse_cursor(cursor: &str) -> Option<(u64, String)> {
    let (score, id) = cursor.split_once('-')?;
    Some((score.parse().ok()?, SessionId::parse(id).ok()?.to_string()))
}

pub(crate) fn parse_num<T: std::str::FromStr>(value: &str, what: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} is {value:?}, not a number")))
}

fn todo_from(f: &Fields) -> Result<Todo> {
    let status = f.req("status", "todo")?;
    Ok(Todo {
        id: TodoId::parse(f.req("id", "todo")?).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        description: f.req("description", "todo")?.to_owned(),
        status: TodoStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("todo status {status:?}")))?,
        assigned_to: f.some("assignedTo").and_then(|a| AgentId::parse(a).ok()),
        result: f.get("result").map(str::to_owned),
        error: f.some("error").map(str::to_owned),
        attempts: f
            .some("attempts")
            .map(|a| parse_num(a, "attempts"))
            .transpose()?
            .unwrap_or(0),
    })
}

fn agent_from(f: &Fields, session_id: SessionId) -> Result<Agent> {
    let status = f.req("status", "agent")?;
    Ok(Agent {
        id: AgentId::parse(f.req("id", "agent")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        session_id,
        status: AgentStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("agent status {status:?}")))?,
        current_task_id: f.some("currentTaskId").and_then(|t| TodoId::parse(t).ok()),
        sandbox_id: f.some("sandboxId").map(str::to_owned),
        stream_url: f.some("streamUrl").map(str::to_owned),
    })
}

impl Store {
    /// The session's status; `None` for an unknown (or expired) session.
    pub async fn session_status(&self, id: SessionId) -> Result<Option<SessionStatus>> {
        let status: Option<String> = self
            .conn()
            .hget(self.keys.session(id).session_hash(), "status")
            .await?;
        Ok(status.as_deref().and_then(SessionStatus::parse))
    }
}

/// Counts over the newest sessions, for `GET /api/stats`.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionCounts {
    pub decomposing: u64,
    pub running: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// TODOs waiting in the pending lists of running sessions.
    pub pending_todos: u64,
    /// How many of the newest sessions were counted (the index may hold more).
    pub scanned: u64,
}

impl Store {
    /// Status counts over the `limit` newest sessions (pipelined: two round trips).
    pub async fn session_counts(&self, limit: usize) -> Result<SessionCounts> {
        let ids: Vec<String> = self
            .conn()
            .zrevrange(
                self.keys.sessions_index(),
                0,
                limit.saturating_sub(1) as isize,
            )
            .await?;
        let ids: Vec<SessionId> = ids
            .iter()
            .filter_map(|i| SessionId::parse(i).ok())
            .collect();
        let mut counts = SessionCounts::default();
        if ids.is_empty() {
            return Ok(counts);
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            let k = self.keys.session(*id);
            pipe.hget(k.session_hash(), "status").llen(k.pending_list());
        }
        let rows: Vec<(Option<String>, u64)> = pipe.query_async(&mut self.conn()).await?;
        for (status, pending) in rows {
            let Some(status) = status.as_deref().and_then(SessionStatus::parse) else {
                continue;
            };
            counts.scanned += 1;
            match status {
                SessionStatus::Decomposing => counts.decomposing += 1,
                SessionStatus::Running => {
                    counts.running += 1;
                    counts.pending_todos += pending;
                }
                SessionStatus::Completed => counts.completed += 1,
                SessionStatus::Failed => counts.failed += 1,
                SessionStatus::Cancelled => counts.cancelled += 1,
            }
        }
        Ok(counts)
    }
}

impl Store {
    /// Drops index entries of sessions whose keys expired (retention), looking at `scan` entries
    /// from position `start` (oldest first). Returns (dropped, looked at); callers move `start`
    /// on so that sessions kept forever at the old end cannot hide expired ones behind them.
    pub async fn trim_sessions_index(&self, start: usize, scan: usize) -> Result<(usize, usize)> {
        let oldest: Vec<String> = self
            .conn()
            .zrange(
                self.keys.sessions_index(),
                start as isize,
                (start + scan).saturating_sub(1) as isize,
            )
            .await?;
        let looked = oldest.len();
        let ids: Vec<SessionId> = oldest
            .iter()
            .filter_map(|i| SessionId::parse(i).ok())
            .collect();
        if ids.is_empty() {
            return Ok((0, looked));
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.exists(self.keys.session(*id).session_hash());
        }
        let exists: Vec<bool> = pipe.query_async(&mut self.conn()).await?;
        let gone: Vec<String> = ids
            .iter()
            .zip(exists)
            .filter(|(_, e)| !e)
            .map(|(id, _)| id.to_string())
            .collect();
        if !gone.is_empty() {
            let _: i64 = self.conn().zrem(self.keys.sessions_index(), &gone).await?;
        }
        Ok((gone.len(), looked))
    }
}
