//! One TODO on an agent's worker: hand it over (on the running worker's stdin, or to a fresh
//! process), then relay the worker's stdout line by line — `log` lines become batched
//! `agent:thinking`/`agent:reasoning` events, `sandbox_ready` is recorded at once — until a
//! `complete` or `fail` line, the worker's exit, the task timeout, cancellation or the drain
//! deadline ends it.

use std::time::Duration;

use swarmq_shared::event::{AgentReasoning, AgentThinking};
use swarmq_shared::protocol::{self, LineError, TaskLine, WorkerLine};
use swarmq_shared::transitions::{EmitEvents, Fenced, StreamReady};
use swarmq_shared::{Event, TodoId, now_ms};
use tokio::time::Instant;

use crate::agent::AgentRun;
use crate::persist::persist;
use crate::worker::{Output, Worker};

/// Events sent to Redis in one script call at most.
const MAX_BATCH: usize = 256;
/// How long a worker whose stdout closed gets to exit before its exit status is read (and it is
/// killed if still running).
const EXIT_WAIT: Duration = Duration::from_secs(2);
/// Characters of a worker's stderr kept in a failure reason.
const REASON_STDERR_CHARS: usize = 1000;
/// Characters of an invalid worker line shown in the log.
const BAD_LINE_PREVIEW_CHARS: usize = 120;

/// How one TODO ended.
pub enum TaskEnd {
    Completed(Option<String>),
    /// The attempt failed; `worker_usable` when the worker is alive and may take the next one.
    Failed {
        reason: String,
        worker_usable: bool,
    },
    /// The task timeout passed: the attempt failed and the worker must go.
    TimedOut,
    /// The session was cancelled or the lease lost (or a Redis call failed in a way retrying
    /// cannot fix).
    Cancelled,
    /// The drain deadline passed mid-task.
    Drained,
    /// The agent is no longer ours: a write was rejected.
    Stale,
}

impl TaskEnd {
    /// The `outcome` label of `swarmq_task_duration_seconds`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Completed(_) => "completed",
            Self::TimedOut => "timeout",
            Self::Failed { .. } => "failed",
            Self::Cancelled | Self::Stale => "cancelled",
            Self::Drained => "handed_back",
        }
    }
}

/// How relaying a TODO's output ended.
enum Relayed {
    Ended(TaskEnd),
    /// The worker exited 0 without printing anything for this TODO.
    ExitedSilently,
}

/// What woke the relay up.
enum Wake {
    Output(Option<Output>),
    Cancelled,
    Drained,
    TimedOut,
    /// There is no worker (it was taken away).
    NoWorker,
}

/// What one TODO's relay accumulates.
#[derive(Default)]
struct Relay {
    /// Events not yet recorded.
    batch: Vec<Event>,
    /// The worker printed something for this TODO (so an exit 0 is not a one-shot worker's).
    saw_line: bool,
}

impl AgentRun<'_> {
    /// Gives the TODO to the worker (stdin of the running one, or a fresh process) and relays
    /// its output until the TODO ends.
    pub(crate) async fn run_task(&mut self, todo_id: TodoId, description: &str) -> TaskEnd {
        let task = TaskLine {
            task_id: todo_id.to_string(),
            description: description.to_owned(),
        };
        let mut via_stdin = self.hand_to_running_worker(&task).await;
        let deadline = Instant::now() + self.ctx.config.task_timeout();
        loop {
            if let Err(end) = self.ensure_worker(&task).await {
                return end;
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
                    self.ctx.note_workers_one_shot();
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

    /// Writes the task on the running worker's stdin; false when there is none to take it (a
    /// fresh process gets it in its environment instead).
    async fn hand_to_running_worker(&mut self, task: &TaskLine) -> bool {
        if self.one_shot {
            // It is exiting after its `complete`. A slot runs one worker process at a time, so the
            // next starts when this one is gone (within the exit grace, or killed): overlapping
            // them only makes them compete for the same cores (docs/benchmarks.md, W1).
            if let Some(old) = self.worker.take() {
                old.finish(self.ctx.config.exit_grace()).await;
            }
            return false;
        }
        let Some(worker) = self.worker.as_mut() else {
            return false;
        };
        if !worker.has_exited() && worker.send_task(task).await.is_ok() {
            return true;
        }
        if let Some(mut gone) = self.worker.take() {
            gone.kill().await;
        }
        false
    }

    /// Starts a worker with the task in its environment, unless one is running; first waits for
    /// a place among the workers starting at once (`SWARMQ_WORKER_MAX_STARTING`).
    async fn ensure_worker(&mut self, task: &TaskLine) -> Result<(), TaskEnd> {
        if self.worker.is_some() {
            return Ok(());
        }
        let permit = match self.ctx.starting.clone() {
            Some(starting) => tokio::select! {
                permit = starting.acquire_owned() => permit.ok(),
                _ = self.cancel.cancelled() => return Err(TaskEnd::Cancelled),
                _ = self.ctx.drain_deadline.cancelled() => return Err(TaskEnd::Drained),
            },
            None => None,
        };
        let spec = &self.ctx.spec;
        let preloader = self.ctx.preloader.as_ref();
        let started = Worker::spawn(
            spec,
            preloader,
            self.job,
            (&task.task_id, &task.description),
            permit,
        );
        match started.await {
            Ok(worker) => {
                tracing::debug!(pid = worker.pid(), "worker started");
                self.worker = Some(worker);
                Ok(())
            }
            Err(e) => Err(TaskEnd::Failed {
                reason: format!("could not start worker {:?}: {e}", spec.program),
                worker_usable: false,
            }),
        }
    }

    /// Relays the worker's output, one item at a time, until the TODO ends.
    async fn relay_until_done(&mut self, todo_id: TodoId, deadline: Instant) -> Relayed {
        let mut relay = Relay::default();
        loop {
            let item = match self.wake(deadline).await {
                Wake::Output(item) => item,
                Wake::Cancelled => return Relayed::Ended(TaskEnd::Cancelled),
                Wake::Drained => {
                    let _ = self.flush(&mut relay.batch).await;
                    return Relayed::Ended(TaskEnd::Drained);
                }
                Wake::TimedOut => {
                    let _ = self.flush(&mut relay.batch).await;
                    return Relayed::Ended(TaskEnd::TimedOut);
                }
                Wake::NoWorker => return Relayed::ExitedSilently,
            };
            let ended = match item {
                Some(Output::Line(line)) => self.handle_line(todo_id, &line, &mut relay).await,
                Some(Output::Oversized(len)) => {
                    self.oversized_line(len);
                    relay.saw_line = true;
                    None
                }
                None => return self.stdout_closed(&mut relay).await,
            };
            if let Some(end) = ended {
                return Relayed::Ended(end);
            }
            if let Err(end) = self.flush_if_due(&mut relay.batch).await {
                return Relayed::Ended(end);
            }
        }
    }

    /// Waits for the next stdout item, or whatever must end the TODO first.
    async fn wake(&mut self, deadline: Instant) -> Wake {
        let drain_deadline = self.ctx.drain_deadline.clone();
        let Some(worker) = self.worker.as_mut() else {
            return Wake::NoWorker;
        };
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Wake::Cancelled,
            _ = drain_deadline.cancelled() => Wake::Drained,
            _ = tokio::time::sleep_until(deadline) => Wake::TimedOut,
            item = worker.next_output() => Wake::Output(item),
        }
    }

    /// Handles one stdout line. `Some` when it ended the TODO (`complete`, `fail`, or a write
    /// rejected as stale).
    async fn handle_line(
        &mut self,
        todo_id: TodoId,
        line: &[u8],
        relay: &mut Relay,
    ) -> Option<TaskEnd> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        relay.saw_line = true;
        let parsed = match protocol::parse_line(line) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.invalid_line(&e, line);
                return None;
            }
        };
        match parsed {
            WorkerLine::Log { action, reasoning } => {
                self.log_line(action, reasoning, &mut relay.batch);
                None
            }
            WorkerLine::SandboxReady {
                sandbox_id,
                stream_url,
            } => self
                .sandbox_ready(&sandbox_id, &stream_url, &mut relay.batch)
                .await
                .err(),
            WorkerLine::Complete {
                todo_id: named,
                result,
            } => {
                let end = TaskEnd::Completed(protocol::result_text(result));
                self.end_if_current(named.as_deref(), todo_id, end, &mut relay.batch)
                    .await
            }
            WorkerLine::Fail {
                todo_id: named,
                reason,
            } => {
                let reason = reason
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| "worker reported failure".into());
                let end = TaskEnd::Failed {
                    reason: format!("worker: {reason}"),
                    worker_usable: true,
                };
                self.end_if_current(named.as_deref(), todo_id, end, &mut relay.batch)
                    .await
            }
        }
    }

    /// A `log` line: its action and reasoning become events, unless the worker is over its rate.
    fn log_line(
        &mut self,
        action: Option<String>,
        reasoning: Option<String>,
        batch: &mut Vec<Event>,
    ) {
        if !self.log_lines.try_take() {
            self.ctx.stats.count_throttled_line();
            return;
        }
        let (agent_id, timestamp) = (self.job.agent_id, now_ms());
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

    /// A `sandbox_ready` line, recorded at once (after the events before it).
    async fn sandbox_ready(
        &mut self,
        sandbox_id: &str,
        stream_url: &str,
        batch: &mut Vec<Event>,
    ) -> Result<(), TaskEnd> {
        self.flush(batch).await?;
        let ctx = self.ctx;
        let ready = StreamReady {
            job: self.job,
            token: &self.token,
            sandbox_id,
            stream_url,
        };
        match persist(ctx, "record sandbox", &self.cancel, || {
            ctx.store.run(&ready)
        })
        .await
        {
            Some(Fenced::Recorded) => Ok(()),
            Some(Fenced::Stale) => Err(TaskEnd::Stale),
            // Cancelled, or a call that retrying cannot fix: not a sign of a reap.
            None => Err(TaskEnd::Cancelled),
        }
    }

    /// A `complete` or `fail` line ends the TODO with `end` (once the events before it are
    /// recorded) — if it names the current TODO, or none (meaning the current one).
    async fn end_if_current(
        &mut self,
        named: Option<&str>,
        current: TodoId,
        end: TaskEnd,
        batch: &mut Vec<Event>,
    ) -> Option<TaskEnd> {
        let is_current = named.is_none_or(|id| TodoId::parse(id).is_ok_and(|id| id == current));
        if !is_current {
            self.ctx.stats.count_invalid_line();
            let verb = if matches!(end, TaskEnd::Completed(_)) {
                "completed"
            } else {
                "failed"
            };
            tracing::warn!(named = ?named, "worker {verb} another TODO; ignored");
            return None;
        }
        Some(self.flush(batch).await.err().unwrap_or(end))
    }

    fn invalid_line(&self, error: &LineError, line: &[u8]) {
        self.ctx.stats.count_invalid_line();
        let preview: String = String::from_utf8_lossy(line)
            .chars()
            .take(BAD_LINE_PREVIEW_CHARS)
            .collect();
        tracing::warn!(error = %error, line = %preview, "ignored a bad worker line");
    }

    fn oversized_line(&self, len: usize) {
        self.ctx.stats.count_oversized_line();
        let limit = self.ctx.spec.max_line_bytes;
        tracing::warn!(len, limit, "worker line too long, discarded");
    }

    /// The worker closed its stdout (it exited, or is about to): the TODO failed, unless the
    /// worker said nothing and exited 0 (a one-shot worker done with its previous TODO).
    async fn stdout_closed(&mut self, relay: &mut Relay) -> Relayed {
        if let Err(end) = self.flush(&mut relay.batch).await {
            return Relayed::Ended(end);
        }
        if relay.saw_line {
            let reason = self.exit_reason("exited without reporting complete").await;
            return Relayed::Ended(TaskEnd::Failed {
                reason,
                worker_usable: false,
            });
        }
        let exit = match self.worker.as_mut() {
            Some(w) => w.wait_exit(EXIT_WAIT).await,
            None => return Relayed::ExitedSilently,
        };
        if exit.success() {
            return Relayed::ExitedSilently;
        }
        let reason = self.exit_reason("exited").await;
        Relayed::Ended(TaskEnd::Failed {
            reason,
            worker_usable: false,
        })
    }

    /// The failure reason for a worker that exited: its status and the tail of its stderr.
    async fn exit_reason(&mut self, what: &str) -> String {
        let Some(worker) = self.worker.as_mut() else {
            return what.to_owned();
        };
        let status = worker.wait_exit(EXIT_WAIT).await;
        let tail = worker.stderr_tail();
        let mut reason = if status.success() {
            format!("worker {what} (exit status 0)")
        } else {
            format!("worker {status}")
        };
        if !tail.is_empty() {
            let skip = tail.chars().count().saturating_sub(REASON_STDERR_CHARS);
            reason.push_str("; stderr: ");
            reason.extend(tail.chars().skip(skip));
        }
        reason
    }

    /// Records the batch when the worker has nothing more waiting, or the batch is full.
    async fn flush_if_due(&mut self, batch: &mut Vec<Event>) -> Result<(), TaskEnd> {
        let drained = self.worker.as_ref().is_none_or(Worker::output_drained);
        if !batch.is_empty() && (drained || batch.len() >= MAX_BATCH) {
            self.flush(batch).await?;
        }
        Ok(())
    }

    /// Records the batched events. `Err(Stale)` when the agent is no longer ours.
    async fn flush(&mut self, batch: &mut Vec<Event>) -> Result<(), TaskEnd> {
        if batch.is_empty() {
            return Ok(());
        }
        self.batch_no += 1;
        let ctx = self.ctx;
        let emit = EmitEvents {
            job: self.job,
            token: &self.token,
            batch: self.batch_no,
            events: batch,
        };
        let outcome = persist(ctx, "record events", &self.cancel, || ctx.store.run(&emit)).await;
        let count = batch.len();
        batch.clear();
        match outcome {
            Some(Fenced::Recorded) => {
                ctx.stats.count_events_published(count);
                Ok(())
            }
            Some(Fenced::Stale) => {
                ctx.stats.count_stale_write();
                tracing::warn!(
                    count,
                    "events rejected: this runner no longer holds the agent"
                );
                Err(TaskEnd::Stale)
            }
            None => Err(TaskEnd::Cancelled),
        }
    }
}
