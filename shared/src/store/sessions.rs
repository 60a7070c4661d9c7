//! Reads of sessions: lists, events, statuses and counts (their writes are transitions).

use redis::AsyncCommands;

use super::hashes::{parse_num, session_status};
use super::{Result, Store, StoreError};
use crate::event::EventEnvelope;
use crate::ids::SessionId;
use crate::model::{SessionStatus, SessionSummary};
use crate::transitions::{UnindexOutcome, UnindexSessions};

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
                agent_count: parse_num(&count, "agentCount").map_err(StoreError::Corrupt)?,
                status: session_status(&status).map_err(StoreError::Corrupt)?,
                created_at: parse_num(&created, "createdAt").map_err(StoreError::Corrupt)?,
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
        let mut xrange = redis::cmd("XRANGE");
        xrange
            .arg(self.keys.session(id).events_stream())
            .arg(format!("({since}-0"))
            .arg("+")
            .arg("COUNT")
            .arg(max);
        let reply: redis::streams::StreamRangeReply = self.read(id, xrange).await?;
        recorded(reply)
    }

    /// Recorded events with `seq < before`, newest first, at most `max` (a page of history
    /// for `GET /api/sessions/:id/events`).
    pub async fn events_before(
        &self,
        id: SessionId,
        before: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        // Seqs start at 1; and Redis refuses the exclusive bound `(0-0` (schemathesis found
        // the 500 it made).
        if before <= 1 {
            return Ok(Vec::new());
        }
        let reply: redis::streams::StreamRangeReply = self
            .conn()
            .xrevrange_count(
                self.keys.session(id).events_stream(),
                format!("({before}-0"),
                "-",
                max,
            )
            .await?;
        recorded(reply)
    }

    /// The seq of the session's last event; `None` for an unknown session.
    pub async fn last_seq(&self, id: SessionId) -> Result<Option<u64>> {
        let mut hget = redis::cmd("HGET");
        hget.arg(self.keys.session(id).session_hash()).arg("seq");
        self.read(id, hget).await
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

/// Stream entries as [`RecordedEvent`]s, in the reply's order.
fn recorded(reply: redis::streams::StreamRangeReply) -> Result<Vec<RecordedEvent>> {
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

fn parse_cursor(cursor: &str) -> Option<(u64, String)> {
    let (score, id) = cursor.split_once('-')?;
    Some((score.parse().ok()?, SessionId::parse(id).ok()?.to_string()))
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
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
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
        if gone.is_empty() {
            return Ok((0, looked));
        }
        // Not a plain ZREM: an entry still in the decomposing set may belong to a session
        // about to be written (`Store::open_session`).
        let UnindexOutcome::Dropped { count } = self.run(&UnindexSessions { ids: gone }).await?;
        Ok((count as usize, looked))
    }
}
