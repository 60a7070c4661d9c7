//! Hands a dead runner's work back to the queue. Every live process (coordinators and runners)
//! runs [`reap_once`] periodically, so recovery needs no particular process to survive.
//!
//! A runner is dead when its lease (`runners` zset score, Redis clock) has passed. For each agent
//! job in its claimed list: `release_agent` (by runner id, attempt counted) puts the in-flight
//! TODO back to pending and fences the old holder; `requeue_job` moves the job back to the ready
//! list. Both steps are idempotent and guarded, so two reapers racing, or a reaper dying halfway,
//! never duplicate or lose a job. A runner that was only frozen notices at its next heartbeat
//! (re-added) and drops what it held; its late writes are rejected by the fencing token.

use crate::ids::{AgentJob, RunnerId};
use crate::store::{Result, Store};
use crate::transitions::{
    DeadRunners, ForgetOutcome, Holder, ReleaseAgent, ReleaseOutcome, RequeueJob, RequeueOutcome,
};

/// Dead runners handled per pass at most (the next pass takes the rest).
const RUNNERS_PER_PASS: usize = 32;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReapReport {
    pub runners: usize,
    pub jobs_requeued: usize,
    pub todos_released: usize,
}

pub async fn reap_once(store: &Store) -> Result<ReapReport> {
    let mut report = ReapReport::default();
    let dead = store
        .run(&DeadRunners {
            limit: RUNNERS_PER_PASS,
        })
        .await?;
    for runner in dead.0 {
        report.runners += 1;
        reap_runner(store, &runner, &mut report).await?;
        metrics::counter!("swarmq_reaped_runners_total").increment(1);
    }
    metrics::counter!("swarmq_reaped_jobs_total").increment(report.jobs_requeued as u64);
    Ok(report)
}

/// One pass, as every live process runs it periodically: what it did is logged (a warning when
/// it found dead runners), a failure only at debug level (the next pass retries).
pub async fn reap_and_log(store: &Store) {
    match reap_once(store).await {
        Ok(report) if report.runners > 0 => tracing::warn!(?report, "reaped dead runners"),
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "reaper pass failed"),
    }
}

async fn reap_runner(store: &Store, runner: &RunnerId, report: &mut ReapReport) -> Result<()> {
    let reason = format!("runner {runner} stopped responding (lease expired)");
    for job in store.claimed_jobs(runner).await? {
        match AgentJob::parse(&job) {
            Ok(agent_job) => {
                let release = ReleaseAgent {
                    job: agent_job,
                    holder: Holder::Runner(runner),
                    count_attempt: true,
                    reason: &reason,
                };
                if store.run(&release).await? == ReleaseOutcome::Released {
                    report.todos_released += 1;
                }
            }
            Err(e) => {
                tracing::warn!(%runner, error = %e, "dropping a malformed claimed job");
                store.drop_claimed(runner, &job).await?;
                continue;
            }
        }
        let requeue = RequeueJob { runner, job: &job };
        if store.run(&requeue).await? == RequeueOutcome::Moved {
            report.jobs_requeued += 1;
            tracing::warn!(%runner, job, "requeued the job of a dead runner");
        }
    }
    if store.forget_runner(runner).await? == ForgetOutcome::Forgotten {
        tracing::info!(%runner, "forgot dead runner");
    }
    Ok(())
}
