//! The queue and the runner registry: claiming agent jobs, leases, and what the reaper moves.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use super::{Result, Store};
use crate::ids::RunnerId;
use crate::scripts;

/// A runner as registered (for `GET /api/runners`).
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerInfo {
    pub id: String,
    pub lease_expires_at: u64,
    /// Whatever the runner published with its heartbeat (host, slots, busy, startedAt, …).
    pub info: HashMap<String, String>,
}

/// A dedicated connection for one claiming loop: `BLMOVE` blocks the connection, so it is never
/// shared, and its response timeout exceeds the block so a slow answer is not mistaken for none.
pub struct Claimer {
    conn: MultiplexedConnection,
    ready: String,
    claimed: String,
    block: Duration,
}

impl Claimer {
    /// Waits up to the block time for a job, moving it atomically into this runner's claimed
    /// list. `Ok(None)` when none came. `finished`, the job this slot just finished, is first
    /// removed from the claimed list in the same round trip.
    pub async fn claim(&mut self, finished: Option<&str>) -> Result<Option<String>> {
        let mut pipe = redis::pipe();
        if let Some(job) = finished {
            pipe.lrem(&self.claimed, 1, job).ignore();
        }
        pipe.cmd("BLMOVE")
            .arg(&self.ready)
            .arg(&self.claimed)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(self.block.as_secs_f64());
        let (job,): (Option<String>,) = pipe.query_async(&mut self.conn).await?;
        Ok(job)
    }
}

impl Store {
    pub async fn claimer(&self, runner: &RunnerId, block: Duration) -> Result<Claimer> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(block + Duration::from_secs(10)));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Claimer {
            conn,
            ready: self.keys.ready_list(),
            claimed: self.keys.runner_claimed_list(runner),
            block,
        })
    }

    /// Renews the runner's lease. True when it was (re-)added: first beat, or it had been reaped.
    pub async fn heartbeat(
        &self,
        runner: &RunnerId,
        lease: Duration,
        info: &[(&str, String)],
    ) -> Result<bool> {
        let mut inv = scripts::HEARTBEAT.prepare_invoke();
        inv.key(self.keys.runners_zset())
            .key(self.keys.runner_info_hash(runner))
            .arg(runner.as_str())
            .arg(lease.as_millis() as u64);
        for (field, value) in info {
            inv.arg(*field).arg(value);
        }
        let added: i64 = inv.invoke_async(&mut self.conn()).await?;
        Ok(added == 1)
    }

    /// Leaves the registry (after a drain handed every job back).
    pub async fn deregister(&self, runner: &RunnerId) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .zrem(self.keys.runners_zset(), runner.as_str())
            .del(self.keys.runner_info_hash(runner))
            .del(self.keys.runner_claimed_list(runner));
        let _: () = pipe.query_async(&mut self.conn()).await?;
        Ok(())
    }

    pub async fn dead_runners(&self, limit: usize) -> Result<Vec<RunnerId>> {
        let ids: Vec<String> = scripts::DEAD_RUNNERS
            .key(self.keys.runners_zset())
            .arg(limit)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(ids.iter().filter_map(|i| RunnerId::parse(i).ok()).collect())
    }

    pub async fn claimed_jobs(&self, runner: &RunnerId) -> Result<Vec<String>> {
        Ok(self
            .conn()
            .lrange(self.keys.runner_claimed_list(runner), 0, -1)
            .await?)
    }

    /// Moves a job from `runner`'s claimed list back to the ready list (claimed next).
    pub async fn requeue_job(&self, runner: &RunnerId, job: &str) -> Result<bool> {
        let moved: i64 = scripts::REQUEUE_JOB
            .key(self.keys.runner_claimed_list(runner))
            .key(self.keys.ready_list())
            .arg(job)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(moved == 1)
    }

    /// Removes a finished job from the runner's claimed list.
    pub async fn drop_claimed(&self, runner: &RunnerId, job: &str) -> Result<()> {
        let _: i64 = self
            .conn()
            .lrem(self.keys.runner_claimed_list(runner), 1, job)
            .await?;
        Ok(())
    }

    /// Removes a reaped runner whose claimed list is empty. True when removed.
    pub async fn forget_runner(&self, runner: &RunnerId) -> Result<bool> {
        let removed: i64 = scripts::FORGET_RUNNER
            .key(self.keys.runners_zset())
            .key(self.keys.runner_claimed_list(runner))
            .key(self.keys.runner_info_hash(runner))
            .arg(runner.as_str())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(removed == 1)
    }

    /// Every registered runner with its lease expiry and published info.
    pub async fn runners(&self) -> Result<Vec<RunnerInfo>> {
        let entries: Vec<(String, u64)> = self
            .conn()
            .zrange_withscores(self.keys.runners_zset(), 0, -1)
            .await?;
        let mut pipe = redis::pipe();
        for (id, _) in &entries {
            if let Ok(r) = RunnerId::parse(id) {
                pipe.hgetall(self.keys.runner_info_hash(&r));
            } else {
                pipe.hgetall("");
            }
        }
        let infos: Vec<HashMap<String, String>> = if entries.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut self.conn()).await?
        };
        Ok(entries
            .into_iter()
            .zip(infos)
            .map(|((id, expires), info)| RunnerInfo {
                id,
                lease_expires_at: expires,
                info,
            })
            .collect())
    }

    /// Agent jobs waiting for a runner.
    pub async fn ready_depth(&self) -> Result<u64> {
        Ok(self.conn().llen(self.keys.ready_list()).await?)
    }
}

/// Live runners and their slots, summed (for `/api/stats` and the gauges).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct RunnerTotals {
    pub live: u64,
    pub slots: u64,
    pub busy: u64,
}

impl Store {
    pub async fn runner_totals(&self) -> Result<RunnerTotals> {
        let now = crate::now_ms();
        let mut totals = RunnerTotals::default();
        for r in self.runners().await? {
            if r.lease_expires_at <= now {
                continue;
            }
            let num = |k: &str| {
                r.info
                    .get(k)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            totals.live += 1;
            totals.slots += num("slots");
            totals.busy += num("busy");
        }
        Ok(totals)
    }
}
