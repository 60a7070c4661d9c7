//! The queue and the runner registry: claiming agent jobs, what runners publish, and the
//! reads of both (leases and moving jobs back are transitions: `transitions::registry`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::conn::Conn;
use super::{Result, Store};
use crate::ids::RunnerId;
use redis::AsyncCommands;

/// What a runner publishes about itself with every heartbeat (its info hash): written by
/// [`Heartbeat`](crate::transitions::Heartbeat) through [`RunnerInfo::fields`], read back by
/// [`Store::runners`] through [`RunnerInfo::from_fields`] — one struct for both ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunnerInfo {
    pub host: Option<String>,
    pub pid: u64,
    pub slots: u64,
    /// Agents it is working.
    pub busy: u64,
    /// Stopping: claims nothing new.
    pub draining: bool,
    pub version: Option<String>,
    /// When it published this (ms, its own clock; the lease uses Redis's).
    pub beat_at: u64,
}

impl RunnerInfo {
    /// The hash fields, as `heartbeat.lua` writes them.
    pub fn fields(&self) -> BTreeMap<&'static str, String> {
        let mut fields = BTreeMap::from([
            ("pid", self.pid.to_string()),
            ("slots", self.slots.to_string()),
            ("busy", self.busy.to_string()),
            ("draining", self.draining.to_string()),
            ("beatAt", self.beat_at.to_string()),
        ]);
        if let Some(host) = &self.host {
            fields.insert("host", host.clone());
        }
        if let Some(version) = &self.version {
            fields.insert("version", version.clone());
        }
        fields
    }

    /// Read back from the hash. Tolerant: a missing or malformed field (an expired hash, an
    /// older runner) reads as zero or absent rather than hiding the runner.
    pub fn from_fields(hash: &HashMap<String, String>) -> Self {
        let num = |k: &str| hash.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Self {
            host: hash.get("host").cloned(),
            pid: num("pid"),
            slots: num("slots"),
            busy: num("busy"),
            draining: hash.get("draining").is_some_and(|d| d == "true"),
            version: hash.get("version").cloned(),
            beat_at: num("beatAt"),
        }
    }
}

/// A runner in the registry (for `GET /api/runners`).
#[derive(Clone, Debug)]
pub struct RegisteredRunner {
    pub id: String,
    /// Ms, Redis clock: past it, the runner is dead.
    pub lease_expires_at: u64,
    pub info: RunnerInfo,
}

/// A dedicated connection for one claiming loop: `BLMOVE` blocks the connection, so it is never
/// shared, and its response timeout exceeds the block so a slow answer is not mistaken for none.
///
/// With several queue shards (`SWARMQ_QUEUE_SHARDS`) each claim first looks at every other
/// shard without blocking (`LMOVE`, starting after its home shard), then blocks on its home
/// shard (`BLMOVE`), and moves its home on by one whenever a block ends empty: no shard is
/// skipped for long, and an idle claimer costs one command per shard per block period — no
/// busy polling. Different slots of a runner start at different homes.
pub struct Claimer {
    conn: Conn,
    /// Per shard: its ready list and this runner's claimed list there.
    shards: Vec<(String, String)>,
    home: usize,
    block: Duration,
    keys: crate::keys::Keys,
}

impl Claimer {
    /// Waits up to the block time for a job, moving it atomically into this runner's claimed
    /// list of its shard. `Ok(None)` when none came. `finished`, the job this slot just
    /// finished, is first removed from its claimed list (in the same round trip when it is of
    /// the home shard).
    pub async fn claim(&mut self, finished: Option<&str>) -> Result<Option<String>> {
        let n = self.shards.len();
        if let Some(job) = finished {
            let shard = self.keys.shard_of_job(job);
            if shard != self.home {
                let _: i64 = self.conn.lrem(&self.shards[shard].1, 1, job).await?;
            }
        }
        for step in 1..n {
            let (ready, claimed) = &self.shards[(self.home + step) % n];
            let job: Option<String> = redis::cmd("LMOVE")
                .arg(ready)
                .arg(claimed)
                .arg("RIGHT")
                .arg("LEFT")
                .query_async(&mut self.conn)
                .await?;
            if job.is_some() {
                return Ok(job);
            }
        }
        let (ready, claimed) = &self.shards[self.home];
        let mut pipe = redis::pipe();
        if let Some(job) = finished.filter(|j| self.keys.shard_of_job(j) == self.home) {
            pipe.lrem(claimed, 1, job).ignore();
        }
        pipe.cmd("BLMOVE")
            .arg(ready)
            .arg(claimed)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(self.block.as_secs_f64());
        let (job,): (Option<String>,) = pipe.query_async(&mut self.conn).await?;
        if job.is_none() {
            self.home = (self.home + 1) % n;
        }
        Ok(job)
    }
}

impl Store {
    /// A claimer for one slot (`n`, so a runner's slots start at different home shards).
    pub async fn claimer(&self, runner: &RunnerId, n: usize, block: Duration) -> Result<Claimer> {
        let conn = self.exclusive(block + Duration::from_secs(10)).await?;
        let keys = &self.keys;
        let shards: Vec<(String, String)> = (0..keys.shard_count())
            .map(|i| (keys.ready_shard(i), keys.claimed_shard(runner, i)))
            .collect();
        let first = usize::from(crate::keys::slot(runner.as_str()));
        Ok(Claimer {
            home: (first + n) % shards.len(),
            conn,
            shards,
            block,
            keys: keys.clone(),
        })
    }

    /// Leaves the registry (after a drain handed every job back).
    pub async fn deregister(&self, runner: &RunnerId) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .zrem(self.keys.runners_zset(), runner.as_str())
            .del(self.keys.runner_info_hash(runner));
        let _: () = pipe.query_async(&mut self.conn()).await?;
        for shard in 0..self.keys.shard_count() {
            let _: i64 = self
                .conn()
                .del(self.keys.claimed_shard(runner, shard))
                .await?;
        }
        Ok(())
    }

    /// The jobs `runner` holds, from every shard.
    pub async fn claimed_jobs(&self, runner: &RunnerId) -> Result<Vec<String>> {
        let mut all = Vec::new();
        for shard in 0..self.keys.shard_count() {
            let jobs: Vec<String> = self
                .conn()
                .lrange(self.keys.claimed_shard(runner, shard), 0, -1)
                .await?;
            all.extend(jobs);
        }
        Ok(all)
    }

    /// Removes a finished job from the runner's claimed list (of the job's shard).
    pub async fn drop_claimed(&self, runner: &RunnerId, job: &str) -> Result<()> {
        let claimed = self.keys.claimed_shard(runner, self.keys.shard_of_job(job));
        let _: i64 = self.conn().lrem(claimed, 1, job).await?;
        Ok(())
    }

    /// Removes a reaped runner whose claimed lists are all empty, unless it came back
    /// meanwhile ([`ForgetRunner`](crate::transitions::ForgetRunner); with several shards the
    /// lists are checked first, each in its own slot).
    pub async fn forget_runner(
        &self,
        runner: &RunnerId,
    ) -> Result<crate::transitions::ForgetOutcome> {
        if self.keys.shard_count() > 1 {
            for shard in 0..self.keys.shard_count() {
                let len: u64 = self
                    .conn()
                    .llen(self.keys.claimed_shard(runner, shard))
                    .await?;
                if len > 0 {
                    return Ok(crate::transitions::ForgetOutcome::Kept);
                }
            }
        }
        self.run(&crate::transitions::ForgetRunner { runner }).await
    }

    /// Every registered runner with its lease expiry and published info.
    pub async fn runners(&self) -> Result<Vec<RegisteredRunner>> {
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
            .map(|((id, expires), info)| RegisteredRunner {
                id,
                lease_expires_at: expires,
                info: RunnerInfo::from_fields(&info),
            })
            .collect())
    }

    /// Agent jobs waiting for a runner, over every shard.
    pub async fn ready_depth(&self) -> Result<u64> {
        Ok(self.ready_depths().await?.iter().sum())
    }

    /// Agent jobs waiting in each shard of the ready queue.
    pub async fn ready_depths(&self) -> Result<Vec<u64>> {
        let mut depths = Vec::new();
        for shard in 0..self.keys.shard_count() {
            depths.push(self.conn().llen(self.keys.ready_shard(shard)).await?);
        }
        Ok(depths)
    }
}

/// Live runners and their slots, summed (for `/api/stats` and the gauges).
#[derive(Clone, Copy, Debug, Default, serde::Serialize, utoipa::ToSchema)]
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
            totals.live += 1;
            totals.slots += r.info.slots;
            totals.busy += r.info.busy;
        }
        Ok(totals)
    }
}
