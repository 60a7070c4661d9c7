//! The agent loop of the original plan, for one claimed agent job: take the next pending TODO,
//! run it on the agent's worker ([`task`](crate::task)), record how it ended, repeat; nothing
//! left → the agent is terminated and the worker's stdin closed.
//!
//! Every Redis write carries the agent's lease token. If the agent was taken from us (the session
//! was cancelled, or we were presumed dead and reaped), the write answers `Stale`: we kill the
//! worker and walk away without recording anything.

use std::sync::atomic::Ordering;
use std::time::Instant;

use swarmq_shared::rate::TokenBucket;
use swarmq_shared::transitions::{
    AfterCompletion, AgentDone, AssignNext, AssignOutcome, AttemptOutcome, CompleteOutcome,
    CompleteTodo, FailAttempt, Holder, LeaseToken, ReleaseAgent, ReleaseOutcome, StartAgent,
    StartOutcome,
};
use swarmq_shared::{AgentJob, TodoId};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::ctx::Ctx;
use crate::persist::persist;
use crate::task::TaskEnd;
use crate::worker::Worker;

/// How an agent job ended for this runner.
#[derive(Debug, PartialEq, Eq)]
pub enum AgentEnd {
    /// Nothing left: the agent is terminated, its session ended (or the job was obsolete).
    /// Drop the job.
    Finished,
    /// Given up: the agent was aborted (its session cancelled, or this runner's lease lost
    /// while Redis was out of reach), or a Redis call failed in a way retrying cannot fix.
    Lost,
    /// A write was refused: the agent's token is no longer ours. Mostly the reaper took this
    /// job from our claimed list (this runner's lease had run out) — and another of our slots
    /// may have claimed it again since — so the list is left alone; when the entry is still
    /// there (the agent was terminated by a cancellation we had not heard of yet), the orphan
    /// sweep hands it back and the next claim drops it as obsolete.
    Stale,
    /// Draining: the agent was handed back; requeue the job.
    Released,
}

/// Takes the agent over and runs its TODOs until none is left, the agent is lost, or the runner
/// drains.
pub async fn run(ctx: &Ctx, job: AgentJob, cancel: CancellationToken) -> AgentEnd {
    let start = StartAgent {
        job,
        runner: &ctx.runner,
        max_attempts: ctx.config.max_attempts,
    };
    let (token, first) = match persist(ctx, "start agent", &cancel, || ctx.store.run(&start)).await
    {
        Some(StartOutcome::Started { token, next }) => (token, next),
        Some(StartOutcome::Gone { reason }) => {
            tracing::info!(reason, "agent job is obsolete, dropped");
            return AgentEnd::Finished;
        }
        None => return AgentEnd::Lost,
    };
    let mut agent = AgentRun {
        ctx,
        job,
        token,
        cancel,
        worker: None,
        one_shot: ctx.workers_one_shot.load(Ordering::Relaxed),
        batch_no: 0,
        log_lines: TokenBucket::per_second(ctx.config.max_events_per_sec),
    };
    let end = agent.work(first).await;
    if let Some(mut worker) = agent.worker.take() {
        worker.kill().await;
    }
    end
}

/// One agent held by this runner: its lease token, its worker, and what relaying needs.
pub(crate) struct AgentRun<'a> {
    pub(crate) ctx: &'a Ctx,
    pub(crate) job: AgentJob,
    pub(crate) token: LeaseToken,
    /// Fires when the agent must be abandoned (session cancelled, lease lost).
    pub(crate) cancel: CancellationToken,
    pub(crate) worker: Option<Worker>,
    /// This runner's workers turned out to be one-shot (one exited after a `complete` instead of
    /// reading its next TODO): each TODO goes straight to a fresh process.
    pub(crate) one_shot: bool,
    /// Number of the last event batch recorded under this token (see `EmitEvents`).
    pub(crate) batch_no: u64,
    /// The worker's `log` lines, at most `SWARMQ_WORKER_MAX_EVENTS_PER_SEC`.
    pub(crate) log_lines: TokenBucket,
}

/// A TODO this agent holds.
struct Assigned {
    todo_id: TodoId,
    description: String,
    /// Failed attempts before this one.
    attempts: u32,
}

/// What the loop does after recording a TODO's end.
enum Step {
    /// Go on; with the next TODO when recording already took it (one round trip per TODO).
    Next(Option<AssignOutcome>),
    Stop(AgentEnd),
}

impl AgentRun<'_> {
    /// Runs TODOs, starting with `first` (taken when the agent was started), until none is left.
    async fn work(&mut self, first: AssignOutcome) -> AgentEnd {
        let mut taken = Some(first);
        loop {
            let todo = match self.next_todo(taken.take()).await {
                Ok(todo) => todo,
                Err(end) => return end,
            };
            let span =
                tracing::info_span!("todo", todo_id = %todo.todo_id, attempt = todo.attempts + 1);
            match self.run_and_record(todo).instrument(span).await {
                Step::Next(next) => taken = next,
                Step::Stop(end) => return end,
            }
        }
    }

    /// The TODO to run: the one already `taken`, else the agent's next. `Err` when the agent's
    /// run is over: nothing was left, the runner is draining, or the agent is no longer ours.
    async fn next_todo(&mut self, taken: Option<AssignOutcome>) -> Result<Assigned, AgentEnd> {
        if let Some(AssignOutcome::Done(done)) = taken {
            return Err(self.done(done).await);
        }
        if self.ctx.draining.is_cancelled() {
            return Err(self.release("runner draining").await);
        }
        let next = match taken {
            Some(next) => Some(next),
            None => self.assign_next().await,
        };
        match next {
            Some(AssignOutcome::Assigned {
                todo_id,
                description,
                attempts,
            }) => Ok(Assigned {
                todo_id,
                description,
                attempts,
            }),
            Some(AssignOutcome::Done(done)) => Err(self.done(done).await),
            Some(AssignOutcome::Stale) => Err(AgentEnd::Stale),
            Some(AssignOutcome::Ended { .. }) => Err(AgentEnd::Finished),
            None => Err(AgentEnd::Lost),
        }
    }

    async fn assign_next(&self) -> Option<AssignOutcome> {
        let ctx = self.ctx;
        let assign = AssignNext {
            job: self.job,
            token: &self.token,
            max_attempts: ctx.config.max_attempts,
        };
        persist(ctx, "assign next TODO", &self.cancel, || {
            ctx.store.run(&assign)
        })
        .await
    }

    /// Runs one TODO on the worker and records how it ended.
    async fn run_and_record(&mut self, todo: Assigned) -> Step {
        let started = Instant::now();
        let end = self.run_task(todo.todo_id, &todo.description).await;
        metrics::histogram!("swarmq_task_duration_seconds", "outcome" => end.outcome())
            .record(started.elapsed().as_secs_f64());
        match end {
            TaskEnd::Completed(result) => {
                self.record_completion(todo.todo_id, result.as_deref(), started)
                    .await
            }
            TaskEnd::Failed {
                reason,
                worker_usable,
            } => {
                if !worker_usable {
                    self.discard_worker().await;
                }
                self.record_failure(todo.todo_id, &reason).await
            }
            TaskEnd::TimedOut => {
                self.discard_worker().await;
                let reason = format!(
                    "timed out after {} s (worker process group killed)",
                    self.ctx.config.task_timeout_secs
                );
                self.record_failure(todo.todo_id, &reason).await
            }
            TaskEnd::Cancelled => Step::Stop(AgentEnd::Lost),
            TaskEnd::Stale => Step::Stop(AgentEnd::Stale),
            TaskEnd::Drained => {
                self.discard_worker().await;
                Step::Stop(
                    self.release("runner shut down before the TODO finished")
                        .await,
                )
            }
        }
    }

    /// Records a `complete`, taking the next TODO in the same step unless draining.
    async fn record_completion(
        &self,
        todo_id: TodoId,
        result: Option<&str>,
        started: Instant,
    ) -> Step {
        let ctx = self.ctx;
        let then = if ctx.draining.is_cancelled() {
            AfterCompletion::Stop
        } else {
            AfterCompletion::TakeNext {
                max_attempts: ctx.config.max_attempts,
            }
        };
        let complete = CompleteTodo {
            job: self.job,
            token: &self.token,
            todo_id,
            result,
            then,
        };
        let outcome = persist(ctx, "complete TODO", &self.cancel, || {
            ctx.store.run(&complete)
        })
        .await;
        match outcome {
            Some(CompleteOutcome::Recorded { next }) => {
                let took_ms = started.elapsed().as_millis() as u64;
                tracing::info!(took_ms, "TODO completed");
                // For the dashboard's chart only: off the agent's path, and a lost count is not
                // worth a retry.
                let (store, now) = (ctx.store.clone(), swarmq_shared::now_ms());
                tokio::spawn(async move {
                    if let Err(e) = store.count_completed(now).await {
                        tracing::debug!(error = %e, "counting the completion failed");
                    }
                });
                Step::Next(next)
            }
            Some(CompleteOutcome::Mismatch) => {
                tracing::warn!("completion not recorded: TODO no longer ours");
                Step::Next(None)
            }
            Some(CompleteOutcome::Stale) => {
                ctx.stats.count_stale_write();
                tracing::warn!("completion rejected: this runner no longer holds the agent");
                Step::Stop(AgentEnd::Stale)
            }
            None => Step::Stop(AgentEnd::Lost),
        }
    }

    /// Records a failed attempt; before a retry, waits the retry backoff.
    async fn record_failure(&self, todo_id: TodoId, reason: &str) -> Step {
        tracing::warn!(reason, "attempt failed");
        let ctx = self.ctx;
        let fail = FailAttempt {
            job: self.job,
            token: &self.token,
            todo_id,
            error: reason,
            max_attempts: ctx.config.max_attempts,
        };
        let outcome = persist(ctx, "record failed attempt", &self.cancel, || {
            ctx.store.run(&fail)
        })
        .await;
        match outcome {
            Some(AttemptOutcome::Retry { attempts }) => {
                tokio::select! {
                    _ = tokio::time::sleep(ctx.config.retry_backoff(attempts)) => {}
                    _ = self.cancel.cancelled() => return Step::Stop(AgentEnd::Lost),
                    _ = ctx.draining.cancelled() => {}
                }
                Step::Next(None)
            }
            Some(AttemptOutcome::Failed { attempts }) => {
                tracing::warn!(attempts, "TODO failed for good");
                Step::Next(None)
            }
            Some(AttemptOutcome::Mismatch) => Step::Next(None),
            Some(AttemptOutcome::Stale) => Step::Stop(AgentEnd::Stale),
            None => Step::Stop(AgentEnd::Lost),
        }
    }

    /// Kills the worker, if any: it cannot take another TODO.
    async fn discard_worker(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            worker.kill().await;
        }
    }

    /// Nothing was pending, so the agent ended: its worker gets its stdin closed and the exit
    /// grace period to clean up before the slot takes its next job.
    async fn done(&mut self, done: AgentDone) -> AgentEnd {
        match done {
            AgentDone::SessionEnded { status } => {
                tracing::info!(%status, "last agent terminated: session ended");
                swarmq_shared::metrics::count_session_finished(status);
            }
            AgentDone::Terminated | AgentDone::Already => tracing::info!("agent terminated"),
        }
        if let Some(worker) = self.worker.take() {
            let status = worker.finish(self.ctx.config.exit_grace()).await;
            tracing::debug!(%status, "worker exited after stdin closed");
        }
        AgentEnd::Finished
    }

    /// Hands the agent back (its in-flight TODO, if any, returns to pending; no attempt counted).
    /// An idle worker gets its stdin closed and the exit grace period to free its sandbox.
    async fn release(&mut self, reason: &str) -> AgentEnd {
        if let Some(worker) = self.worker.take() {
            worker.finish(self.ctx.config.exit_grace()).await;
        }
        let ctx = self.ctx;
        let release = ReleaseAgent {
            job: self.job,
            holder: Holder::Token(&self.token),
            count_attempt: false,
            reason,
        };
        match persist(ctx, "release agent", &self.cancel, || {
            ctx.store.run(&release)
        })
        .await
        {
            Some(ReleaseOutcome::Released) => AgentEnd::Released,
            Some(ReleaseOutcome::NotHeld) => AgentEnd::Stale,
            None => AgentEnd::Lost,
        }
    }
}
