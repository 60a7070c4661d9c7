//! Claimed jobs no slot works: a `BLMOVE` whose answer was lost to a dropped connection leaves
//! its job in this runner's claimed list with nobody on it. The sweep (every heartbeat) hands
//! such jobs back; at shutdown, whatever is still claimed goes back too.

use std::collections::HashSet;

use swarmq_shared::transitions::{RequeueJob, RequeueOutcome};

use crate::ctx::Ctx;

/// Jobs seen idle in the claimed list at the last sweep.
#[derive(Default)]
pub struct OrphanSweep {
    suspects: HashSet<String>,
}

impl OrphanSweep {
    /// A job seen idle at two consecutive sweeps goes back to the ready list (once is not
    /// enough: a slot may have claimed it a moment ago and not started it yet).
    pub async fn sweep(&mut self, ctx: &Ctx) {
        let Ok(claimed) = ctx.store.claimed_jobs(&ctx.runner).await else {
            return;
        };
        let idle: HashSet<String> = claimed
            .into_iter()
            .filter(|job| !ctx.is_active(job))
            .collect();
        for job in idle.intersection(&self.suspects) {
            if requeue(ctx, job).await {
                tracing::warn!(job, "handed back an orphaned claimed job");
            }
        }
        self.suspects = idle;
    }
}

/// At shutdown, after every slot stopped: whatever is still in our claimed list goes back.
pub async fn hand_back_stranded(ctx: &Ctx) {
    let Ok(claimed) = ctx.store.claimed_jobs(&ctx.runner).await else {
        return;
    };
    for job in claimed {
        if requeue(ctx, &job).await {
            tracing::info!(job, "handed back a claimed job");
        }
    }
}

/// Moves `job` from our claimed list back to the ready list; true when this call moved it.
pub async fn requeue(ctx: &Ctx, job: &str) -> bool {
    let requeue = RequeueJob {
        runner: &ctx.runner,
        job,
    };
    matches!(ctx.store.run(&requeue).await, Ok(RequeueOutcome::Moved))
}
