//! A session's life across slots: the coordinator's four changes of a session, each a short
//! sequence of single-slot transitions in an order that a coordinator killed between any two of
//! them cannot turn into half a session (`docs/redis-schema.md`, "A session's life across
//! slots"). The order, in short: the global slot is written *before* the session's slot when a
//! session appears (index, then session), and *after* it when it moves on (session, then queue,
//! then the decomposing entry goes). Whatever a stopped coordinator leaves undone, the
//! decomposing entry it leaves behind makes the watchdog ([`Store::recover_decomposition`])
//! finish.

use redis::AsyncCommands;

use super::{Result, Store};
use crate::ids::{AgentJob, SessionId};
use crate::model::SessionStatus;
use crate::transitions::{
    CancelOutcome, CancelSession, CreateOutcome, CreateSession, EnqueueJobs, FailOutcome,
    FailSession, IndexSession, InitOutcome, InitSession, MARKER_TTL_MS,
};

impl Store {
    /// Records a new session: its index entries first (global slot), then the session itself
    /// (its slot). Killed in between, the entries point at nothing: listings skip it and the
    /// watchdog drops both at the deadline (leaving a tombstone, so a stalled coordinator cannot
    /// write the session afterwards: [`InitOutcome::Abandoned`]).
    pub async fn open_session(&self, init: &InitSession<'_>) -> Result<InitOutcome> {
        let index = IndexSession {
            session_id: init.id,
            created_at: init.created_at,
            deadline: init.deadline,
        };
        self.run(&index).await?;
        crate::failpoint::pause("indexed").await;
        let outcome = self.run(init).await?;
        if outcome == InitOutcome::Abandoned {
            self.forget_session_entries(init.id).await?;
        }
        Ok(outcome)
    }

    /// Starts a decomposed session: TODOs and agents (its slot), then its agent jobs on the
    /// ready queue (the queue's slot, once), then its decomposing entry goes. Killed after the
    /// first step, the session waits, `running`, until the watchdog enqueues its jobs.
    pub async fn start_session(&self, create: &CreateSession<'_>) -> Result<CreateOutcome> {
        let outcome = self.run(create).await?;
        crate::failpoint::pause("created").await;
        if outcome == CreateOutcome::Created {
            self.enqueue_session(create.id, create.jobs()).await?;
        }
        Ok(outcome)
    }

    /// Fails a session (its slot), then drops its decomposing entry (global slot) — unless it
    /// is running and may still need its jobs enqueued (the watchdog's part).
    pub async fn fail_session(&self, fail: &FailSession<'_>) -> Result<FailOutcome> {
        let outcome = self.run(fail).await?;
        match &outcome {
            FailOutcome::Missing => self.forget_session_entries(fail.id).await?,
            FailOutcome::Unchanged {
                status: SessionStatus::Running | SessionStatus::Decomposing,
            } => {}
            FailOutcome::Failed | FailOutcome::Unchanged { .. } => {
                self.forget_decomposition(fail.id).await?
            }
        }
        Ok(outcome)
    }

    /// Cancels a session (its slot, which also tells the runners), then drops its decomposing
    /// entry (global slot).
    pub async fn cancel_session(&self, id: SessionId) -> Result<CancelOutcome> {
        let outcome = self.run(&CancelSession { id }).await?;
        crate::failpoint::pause("cancelled").await;
        if outcome != CancelOutcome::NotFound {
            self.forget_decomposition(id).await?;
        }
        Ok(outcome)
    }

    /// The watchdog's step for a session still in the decomposing set past its deadline:
    /// fails it if still `decomposing`; enqueues its jobs if it is `running` (its coordinator
    /// stopped between [`Store::start_session`]'s steps; a second enqueue pushes nothing);
    /// drops the entries of a session that was never written (tombstoning its id).
    pub async fn recover_decomposition(&self, id: SessionId, error: &str) -> Result<FailOutcome> {
        let fail = FailSession {
            id,
            error,
            only_if: SessionStatus::Decomposing,
        };
        let outcome = self.fail_session(&fail).await?;
        if let FailOutcome::Unchanged {
            status: SessionStatus::Running,
        } = outcome
        {
            let agents: Vec<String> = self
                .conn()
                .lrange(self.keys.session(id).agent_ids_list(), 0, -1)
                .await?;
            let jobs = agents
                .iter()
                .filter_map(|a| crate::ids::AgentId::parse(a).ok())
                .map(|agent_id| {
                    AgentJob {
                        session_id: id,
                        agent_id,
                    }
                    .to_string()
                })
                .collect();
            self.enqueue_session(id, jobs).await?;
        }
        Ok(outcome)
    }

    async fn enqueue_session(&self, id: SessionId, jobs: Vec<String>) -> Result<()> {
        let enqueue = EnqueueJobs {
            session_id: id,
            jobs,
            marker_ttl_ms: MARKER_TTL_MS,
        };
        self.run(&enqueue).await?;
        crate::failpoint::pause("enqueued").await;
        self.forget_decomposition(id).await
    }

    /// Drops both index entries of a session that was never written.
    async fn forget_session_entries(&self, id: SessionId) -> Result<()> {
        let member = id.to_string();
        let _: (i64, i64) = redis::pipe()
            .atomic()
            .zrem(self.keys.decomposing_zset(), &member)
            .zrem(self.keys.sessions_index(), &member)
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }
}
