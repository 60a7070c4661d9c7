//! The agent loop of the original plan, for one claimed agent job: take the next pending TODO,
//! hand it to the agent's worker (started once; later TODOs on its stdin), relay its lines,
//! record the outcome, repeat; nothing left → terminate the agent and close the worker's stdin.
//!
//! Every Redis write carries the agent's lease token. If the agent was taken from us (the session
//! was cancelled, or we were presumed dead and reaped), the write answers `Stale`: we kill the
//! worker and walk away without recording anything.

use std::sync::atomic::Ordering;
use std::time::Duration;

use swarmq_shared::backoff::Backoff;
use swarmq_shared::event::{AgentReasoning, AgentThinking};
use swarmq_shared::protocol::{self, TaskLine, WorkerLine};
use swarmq_shared::rate::TokenBucket;
use swarmq_shared::store::{
    AgentDone, AssignOutcome, AttemptOutcome, Fenced, LeaseToken, Owner, StartOutcome,
};
use swarmq_shared::{AgentJob, Event, StoreError, TodoId, now_ms};
use tokio_util::sync::CancellationToken;

use crate::ctx::Ctx;
use crate::worker::{Output, Worker};

/// Events sent to Redis in one script call at most.
const MAX_BATCH: usize = 256;

/// How an agent job ended for this runner.
#[derive(Debug, PartialEq, Eq)]
pub enum AgentEnd {
    /// Nothing left: the agent is terminated (or the job was obsolete). Drop the job.
    Finished,
    /// Someone else holds the agent now, or the session ended. Drop the job.
    Lost,
    /// Draining: the agent was handed back; requeue the job.
    Released,
}

/// How one TODO ended.
enum TaskEnd {
    Completed(Option<String>),
    /// The attempt failed; `worker_usable` when the worker is alive and may take the next one.
    Failed {
        reason: String,
        worker_usable: bool,
    },
    /// The session was cancelled or the lease lost.
    Cancelled,
    /// Drain deadline passed mid-task.
    Drained,
    Stale,
}

pub async fn run(ctx: &Ctx, job: AgentJob, cancel: CancellationToken) -> AgentEnd {
    let max_attempts = ctx.config.max_attempts;
    let (token, first) = match persist(ctx, "start agent", &cancel, || {
        ctx.store.start_agent(job, &ctx.runner, max_attempts)
    })
    .await
    {
        Some(StartOutcome::Started(token, first)) => (token, first),
        Some(StartOutcome::Gone(reason)) => {
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
        rate: TokenBucket::per_second(ctx.config.max_events_per_sec),
    };
    let end = agent.work(first).await;
    if let Some(mut worker) = agent.worker.take() {
        worker.kill().await;
    }
    end
}

struct AgentRun<'a> {
    ctx: &'a Ctx,
    job: AgentJob,
    token: LeaseToken,
    cancel: CancellationToken,
    worker: Option<Worker>,
    /// This runner's workers turned out to be one-shot (one exited after a `complete` instead of
    /// reading its next TODO): each TODO goes straight to a fresh process.
    one_shot: bool,
    batch_no: u64,
    rate: TokenBucket,
}

impl AgentRun<'_> {
    /// Runs TODOs, starting with `first` (taken when the agent was started), until none is left.
    async fn work(&mut self, first: AssignOutcome) -> AgentEnd {
        let ctx = self.ctx;
        let max_attempts = ctx.config.max_attempts;
        // The next TODO, when starting the agent or recording a completion already took it
        // (one round trip per TODO).
        let mut taken = Some(first);
        loop {
            if let Some(AssignOutcome::Done(done)) = taken {
                return self.done(done).await;
            }
            if ctx.draining.is_cancelled() {
                return self.release("runner draining").await;
            }
            let (job, token) = (self.job, self.token.clone());
            let next = match taken.take() {
                Some(next) => Some(next),
                None => {
                    persist(ctx, "assign next TODO", &self.cancel, || {
                        ctx.store.assign_next(job, &token, max_attempts)
                    })
                    .await
                }
            };
            let (todo_id, description, attempts) = match next {
                Some(AssignOutcome::Assigned {
                    todo_id,
                    description,
                    attempts,
                }) => (todo_id, description, attempts),
                Some(AssignOutcome::Done(done)) => return self.done(done).await,
                Some(AssignOutcome::Stale) | Some(AssignOutcome::Ended(_)) | None => {
                    return AgentEnd::Lost;
                }
            };
            let span = tracing::info_span!("todo", todo_id = %todo_id, attempt = attempts + 1);
            let _enter = span.enter();
            let started = std::time::Instant::now();
            let end = self.run_task(todo_id, &description).await;
            metrics::histogram!("swarmq_task_duration_seconds", "outcome" => end.outcome())
                .record(started.elapsed().as_secs_f64());
            match end {
                TaskEnd::Completed(result) => {
                    let token = self.token.clone();
                    // A draining runner takes no further TODO.
                    let then_next = (!ctx.draining.is_cancelled()).then_some(max_attempts);
                    let outcome = persist(ctx, "complete TODO", &self.cancel, || {
                        ctx.store
                            .complete_todo(job, &token, todo_id, result.clone(), then_next)
                    })
                    .await;
                    match outcome {
                        Some((Fenced::Ok, next)) => {
                            taken = next;
                            tracing::info!(
                                took_ms = started.elapsed().as_millis() as u64,
                                "TODO completed"
                            )
                        }
                        Some((Fenced::Mismatch, _)) => {
                            tracing::warn!("completion not recorded: TODO no longer ours")
                        }
                        Some((Fenced::Stale, _)) | None => {
                            ctx.stats.stale_rejected();
                            tracing::warn!(
                                "completion rejected: this runner no longer holds the agent"
                            );
                            return AgentEnd::Lost;
                        }
                    }
                }
                TaskEnd::Failed {
                    reason,
                    worker_usable,
                } => {
                    tracing::warn!(reason, "attempt failed");
                    if !worker_usable && let Some(mut w) = self.worker.take() {
                        w.kill().await;
                    }
                    let token = self.token.clone();
                    let outcome = persist(ctx, "record failed attempt", &self.cancel, || {
                        ctx.store
                            .fail_attempt(job, &token, todo_id, &reason, max_attempts)
                    })
                    .await;
                    match outcome {
                        Some(AttemptOutcome::Retry { attempts }) => {
                            let wait = ctx.config.retry_backoff(attempts);
                            tokio::select! {
                                _ = tokio::time::sleep(wait) => {}
                                _ = self.cancel.cancelled() => return AgentEnd::Lost,
                                _ = ctx.draining.cancelled() => {}
                            }
                        }
                        Some(AttemptOutcome::Failed { attempts }) => {
                            tracing::warn!(attempts, "TODO failed for good")
                        }
                        Some(AttemptOutcome::Rejected(Fenced::Mismatch)) => {}
                        Some(AttemptOutcome::Rejected(_)) | None => return AgentEnd::Lost,
                    }
                }
                TaskEnd::Cancelled | TaskEnd::Stale => return AgentEnd::Lost,
                TaskEnd::Drained => {
                    if let Some(mut w) = self.worker.take() {
                        w.kill().await;
                    }
                    return self
                        .release("runner shut down before the TODO finished")
                        .await;
                }
            }
        }
    }

    /// Nothing was pending, so the agent ended: its worker gets its stdin closed and the exit
    /// grace period to clean up before the slot takes its next job.
    async fn done(&mut self, done: AgentDone) -> AgentEnd {
        match done {
            AgentDone::SessionEnded(status) => {
                tracing::info!(status, "last agent terminated: session ended");
                metrics::counter!("swarmq_sessions_finished_total", "status" => status)
                    .increment(1);
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
        let (job, token) = (self.job, self.token.clone());
        match persist(ctx, "release agent", &self.cancel, || {
            ctx.store
                .release_agent(job, Owner::Token(&token), false, reason)
        })
        .await
        {
            Some(true) => AgentEnd::Released,
            _ => AgentEnd::Lost,
        }
    }

    /// Gives the TODO to the worker (stdin of the running one, or a fresh process) and relays
    /// its output until the TODO ends.
    async fn run_task(&mut self, todo_id: TodoId, description: &str) -> TaskEnd {
        let task = TaskLine {
            task_id: todo_id.to_string(),
            description: description.to_owned(),
        };
        let mut via_stdin = false;
        if self.one_shot {
            // It is exiting after its `complete`. A slot runs one worker process at a time, so the
            // next starts when this one is gone (within the exit grace, or killed): overlapping
            // them only makes them compete for the same cores (docs/benchmarks.md, W1).
            if let Some(old) = self.worker.take() {
                old.finish(self.ctx.config.exit_grace()).await;
            }
        } else if let Some(worker) = self.worker.as_mut() {
            if !worker.has_exited() && worker.send_task(&task).await.is_ok() {
                via_stdin = true;
            } else if let Some(mut w) = self.worker.take() {
                w.kill().await;
            }
        }
        let deadline = tokio::time::Instant::now() + self.ctx.config.task_timeout();
        loop {
            if self.worker.is_none() {
                match Worker::spawn(&self.ctx.spec, self.job, &task.task_id, &task.description) {
                    Ok(w) => {
                        tracing::debug!(pid = w.pid(), "worker started");
                        self.worker = Some(w);
                    }
                    Err(e) => {
                        return TaskEnd::Failed {
                            reason: format!(
                                "could not start worker {:?}: {e}",
                                self.ctx.spec.program
                            ),
                            worker_usable: false,
                        };
                    }
                }
            }
            match self.relay_until_done(todo_id, deadline).await {
                Relayed::Ended(end) => return end,
                Relayed::ExitedSilently if via_stdin => {
                    // A one-shot worker exited after its last TODO before reading this one:
                    // deliver it to a fresh process, without counting an attempt.
                    tracing::debug!(
                        "worker exited without reading its next TODO; starting a fresh one"
                    );
                    self.worker = None;
                    self.one_shot = true;
                    ctx_one_shot(self.ctx);
                    via_stdin = false;
                }
                Relayed::ExitedSilently => {
                    let reason = self.exit_reason("exited without reporting complete").await;
                    return TaskEnd::Failed {
                        reason,
                        worker_usable: false,
                    };
                }
            }
        }
    }

    async fn exit_reason(&mut self, what: &str) -> String {
        let Some(worker) = self.worker.as_mut() else {
            return what.to_owned();
        };
        let status = worker.wait_exit(Duration::from_secs(2)).await;
        let tail = worker.stderr_tail();
        let mut reason = if status.success() {
            format!("worker {what} (exit status 0)")
        } else {
            format!("worker {status}")
        };
        if !tail.is_empty() {
            let tail: String = tail
                .chars()
                .rev()
                .take(1000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            reason.push_str("; stderr: ");
            reason.push_str(&tail);
        }
        reason
    }

    async fn relay_until_done(
        &mut self,
        todo_id: TodoId,
        deadline: tokio::time::Instant,
    ) -> Relayed {
        let ctx = self.ctx;
        let mut batch: Vec<Event> = Vec::new();
        let mut saw_line = false;
        let drain_deadline = ctx.drain_deadline.clone();
        loop {
            let Some(worker) = self.worker.as_mut() else {
                return Relayed::ExitedSilently;
            };
            let item = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Relayed::Ended(TaskEnd::Cancelled),
                _ = drain_deadline.cancelled() => {
                    let _ = self.flush(&mut batch).await;
                    return Relayed::Ended(TaskEnd::Drained);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let _ = self.flush(&mut batch).await;
                    if let Some(w) = self.worker.as_mut() {
                        w.kill().await;
                    }
                    let reason = format!("timed out after {} s (worker process group killed)", ctx.config.task_timeout_secs);
                    return Relayed::Ended(TaskEnd::Failed { reason, worker_usable: false });
                }
                item = worker.next_output() => item,
            };
            let line = match item {
                Some(Output::Line(line)) => line,
                Some(Output::Oversized(len)) => {
                    ctx.stats.line_oversized();
                    tracing::warn!(
                        len,
                        limit = ctx.spec.max_line_bytes,
                        "worker line too long, discarded"
                    );
                    saw_line = true;
                    continue;
                }
                None => {
                    if let Err(end) = self.flush(&mut batch).await {
                        return Relayed::Ended(end);
                    }
                    if saw_line {
                        let reason = self.exit_reason("exited without reporting complete").await;
                        return Relayed::Ended(TaskEnd::Failed {
                            reason,
                            worker_usable: false,
                        });
                    }
                    let exit = match self.worker.as_mut() {
                        Some(w) => w.wait_exit(Duration::from_secs(2)).await,
                        None => return Relayed::ExitedSilently,
                    };
                    if exit.success() {
                        return Relayed::ExitedSilently;
                    }
                    let reason = self.exit_reason("exited").await;
                    return Relayed::Ended(TaskEnd::Failed {
                        reason,
                        worker_usable: false,
                    });
                }
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            saw_line = true;
            let parsed = match protocol::parse_line(&line) {
                Ok(parsed) => parsed,
                Err(e) => {
                    ctx.stats.line_invalid();
                    let preview: String =
                        String::from_utf8_lossy(&line).chars().take(120).collect();
                    tracing::warn!(error = %e, line = %preview, "ignored a bad worker line");
                    continue;
                }
            };
            match parsed {
                WorkerLine::Log { action, reasoning } => {
                    if !self.rate.try_take() {
                        ctx.stats.line_throttled();
                        continue;
                    }
                    let timestamp = now_ms();
                    let agent_id = self.job.agent_id;
                    if let Some(action) = action {
                        batch.push(Event::AgentThinking(AgentThinking {
                            agent_id,
                            action,
                            timestamp,
                        }));
                    }
                    if let Some(reasoning) = reasoning {
                        batch.push(Event::AgentReasoning(AgentReasoning {
                            agent_id,
                            reasoning,
                            timestamp,
                        }));
                    }
                }
                WorkerLine::SandboxReady {
                    sandbox_id,
                    stream_url,
                } => {
                    if let Err(end) = self.flush(&mut batch).await {
                        return Relayed::Ended(end);
                    }
                    let (job, token) = (self.job, self.token.clone());
                    let outcome = persist(ctx, "record sandbox", &self.cancel, || {
                        ctx.store
                            .stream_ready(job, &token, sandbox_id.clone(), stream_url.clone())
                    })
                    .await;
                    if !matches!(outcome, Some(Fenced::Ok)) {
                        return Relayed::Ended(TaskEnd::Stale);
                    }
                }
                WorkerLine::Complete {
                    todo_id: named,
                    result,
                } => {
                    if !names_current(named.as_deref(), todo_id) {
                        ctx.stats.line_invalid();
                        tracing::warn!(named = ?named, "worker completed another TODO; ignored");
                        continue;
                    }
                    if let Err(end) = self.flush(&mut batch).await {
                        return Relayed::Ended(end);
                    }
                    return Relayed::Ended(TaskEnd::Completed(protocol::result_text(result)));
                }
                WorkerLine::Fail {
                    todo_id: named,
                    reason,
                } => {
                    if !names_current(named.as_deref(), todo_id) {
                        ctx.stats.line_invalid();
                        tracing::warn!(named = ?named, "worker failed another TODO; ignored");
                        continue;
                    }
                    if let Err(end) = self.flush(&mut batch).await {
                        return Relayed::Ended(end);
                    }
                    let reason = reason
                        .filter(|r| !r.trim().is_empty())
                        .unwrap_or_else(|| "worker reported failure".into());
                    return Relayed::Ended(TaskEnd::Failed {
                        reason: format!("worker: {reason}"),
                        worker_usable: true,
                    });
                }
            }
            let drained = self.worker.as_ref().is_none_or(Worker::output_drained);
            if !batch.is_empty()
                && (drained || batch.len() >= MAX_BATCH)
                && let Err(end) = self.flush(&mut batch).await
            {
                return Relayed::Ended(end);
            }
        }
    }

    /// Records the batched events. `Err(Stale)` when the agent is no longer ours.
    async fn flush(&mut self, batch: &mut Vec<Event>) -> Result<(), TaskEnd> {
        if batch.is_empty() {
            return Ok(());
        }
        self.batch_no += 1;
        let ctx = self.ctx;
        let (job, token, n) = (self.job, self.token.clone(), self.batch_no);
        let outcome = persist(ctx, "record events", &self.cancel, || {
            ctx.store.emit_events(job, &token, n, batch)
        })
        .await;
        let count = batch.len();
        batch.clear();
        match outcome {
            Some(Fenced::Ok) => {
                ctx.stats.events_published(count);
                Ok(())
            }
            _ => {
                ctx.stats.stale_rejected();
                tracing::warn!(
                    count,
                    "events rejected: this runner no longer holds the agent"
                );
                Err(TaskEnd::Stale)
            }
        }
    }
}

impl TaskEnd {
    /// The `outcome` label of `swarmq_task_duration_seconds`.
    fn outcome(&self) -> &'static str {
        match self {
            Self::Completed(_) => "completed",
            Self::Failed { reason, .. } if reason.starts_with("timed out") => "timeout",
            Self::Failed { .. } => "failed",
            Self::Cancelled | Self::Stale => "cancelled",
            Self::Drained => "handed_back",
        }
    }
}

enum Relayed {
    Ended(TaskEnd),
    /// The worker exited 0 without printing anything for this TODO.
    ExitedSilently,
}

/// The worker command is the same for every agent of this runner: once one worker proved
/// one-shot, new agents start each TODO in a fresh process instead of finding out again.
fn ctx_one_shot(ctx: &Ctx) {
    if !ctx.workers_one_shot.swap(true, Ordering::Relaxed) {
        tracing::info!("workers exit after each TODO: one process per TODO from now on");
    }
}

/// A `complete`/`fail` line names the current TODO (or none, meaning the current one).
fn names_current(named: Option<&str>, current: TodoId) -> bool {
    match named {
        None => true,
        Some(id) => TodoId::parse(id).is_ok_and(|id| id == current),
    }
}

/// Runs a Redis call until it succeeds: a transition must not be lost to a Redis blip. Gives up
/// (`None`) when `cancel` fires, or on an error that retrying cannot fix (logged).
pub async fn persist<T, F, Fut>(
    ctx: &Ctx,
    what: &str,
    cancel: &CancellationToken,
    mut call: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        match call().await {
            Ok(value) => return Some(value),
            Err(e) if e.is_unavailable() => {
                ctx.stats.redis_error();
                tracing::warn!(what, error = %e, "redis unavailable, retrying");
            }
            Err(e) => {
                ctx.stats.redis_error();
                tracing::error!(what, error = %e, "redis call failed");
                return None;
            }
        }
        if !backoff.wait(cancel).await {
            return None;
        }
    }
}
