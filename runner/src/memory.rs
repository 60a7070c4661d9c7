//! What an agent costs in memory, for operators sizing slots: every few seconds the PSS
//! (proportional set size: shared pages divided among the processes sharing them, so the
//! preloaded server's pages count once) of a sample of this runner's worker processes, as
//! `swarmq_worker_pss_bytes` (mean per worker), and of the preloaded server as
//! `swarmq_worker_server_pss_bytes`. Also the default slot count of a preloaded runner.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ctx::Ctx;
use crate::worker::live_pids;

/// How often worker memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Worker processes read per sample at most (reading one costs a walk of its page tables).
const SAMPLE_SIZE: usize = 32;
/// Memory budgeted per preloaded agent for the default slot count: the measured PSS of an agent
/// of `workers/worker.py` (13.3 MB, docs/benchmarks.md, PRELOAD) with room for a long answer.
const AGENT_BUDGET_BYTES: u64 = 32 << 20;
/// Default slots of a preloaded runner at most.
const MAX_DEFAULT_SLOTS: usize = 256;

/// Samples worker memory into the metrics until `stop`.
pub async fn sample_loop(ctx: Arc<Ctx>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let server = match &ctx.preloader {
            Some(pre) => pre.server_pid().await,
            None => None,
        };
        let sampled = tokio::task::spawn_blocking(move || {
            let pids = live_pids();
            let step = pids.len().div_ceil(SAMPLE_SIZE).max(1);
            let sizes: Vec<u64> = pids.iter().step_by(step).filter_map(|p| pss(*p)).collect();
            (sizes, server.and_then(|p| pss(p as i32)))
        })
        .await;
        let Ok((sizes, server)) = sampled else {
            continue;
        };
        if !sizes.is_empty() {
            let mean = sizes.iter().sum::<u64>() / sizes.len() as u64;
            metrics::gauge!("swarmq_worker_pss_bytes").set(mean as f64);
        }
        if let Some(bytes) = server {
            metrics::gauge!("swarmq_worker_server_pss_bytes").set(bytes as f64);
        }
    }
}

/// PSS of a process in bytes (`/proc/<pid>/smaps_rollup`).
fn pss(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let kb: u64 = text
        .lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Default slots of a runner whose agents start preloaded: they mostly wait on the model, so
/// memory, not CPU, bounds them — half of the memory available now, at
/// [`AGENT_BUDGET_BYTES`] per agent, between the CPU count and [`MAX_DEFAULT_SLOTS`].
pub fn preloaded_slots(cpus: usize) -> usize {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024);
    ((available / 2 / AGENT_BUDGET_BYTES) as usize).clamp(cpus, MAX_DEFAULT_SLOTS.max(cpus))
}
