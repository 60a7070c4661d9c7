//! Cluster statistics over the last minutes, for the dashboard's chart (`GET /api/stats/series`):
//! TODOs completed per second (counted by the runner that recorded each completion) and the
//! ready-queue depth (sampled by every coordinator's background tick). One hash per minute,
//! `{<p>}:stats:<minute>`, expiring after [`STATS_TTL_SECS`], so the keys cost a few KB and
//! need no cleanup. Second boundaries use each process's own clock (a skew of a second between
//! hosts moves a count by a bar of the chart, nothing more).

use std::collections::HashMap;

use super::{Result, Store};

/// How long a minute's statistics are kept.
pub const STATS_TTL_SECS: i64 = 15 * 60;
/// The longest series [`Store::stats_series`] answers.
pub const MAX_SERIES_SECS: u64 = 10 * 60;

/// One second of the series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsPoint {
    /// Unix seconds.
    pub t: u64,
    /// TODOs completed in that second.
    pub completed: u64,
    /// Ready-queue depth sampled in that second; `None` when no coordinator sampled it.
    pub ready: Option<u64>,
}

impl Store {
    /// Counts one completed TODO in the second `now_ms` falls in.
    pub async fn count_completed(&self, now_ms: u64) -> Result<()> {
        let sec = now_ms / 1000;
        let key = self.keys.stats_minute(sec / 60);
        let _: (i64, i64) = redis::pipe()
            .hincr(&key, format!("done:{sec}"), 1)
            .expire(&key, STATS_TTL_SECS)
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Records the ready-queue depth sampled at `now_ms` (last writer of a second wins).
    pub async fn sample_ready(&self, now_ms: u64, depth: u64) -> Result<()> {
        let sec = now_ms / 1000;
        let key = self.keys.stats_minute(sec / 60);
        let _: (i64, i64) = redis::pipe()
            .hset(&key, format!("ready:{sec}"), depth)
            .expire(&key, STATS_TTL_SECS)
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// The last `secs` whole seconds before `now_ms` (at most [`MAX_SERIES_SECS`]), oldest first.
    pub async fn stats_series(&self, now_ms: u64, secs: u64) -> Result<Vec<StatsPoint>> {
        let secs = secs.clamp(1, MAX_SERIES_SECS);
        let last = now_ms / 1000 - 1;
        let first = last + 1 - secs;
        let minutes: Vec<u64> = (first / 60..=last / 60).collect();
        let mut pipe = redis::pipe();
        for m in &minutes {
            pipe.hgetall(self.keys.stats_minute(*m));
        }
        let hashes: Vec<HashMap<String, u64>> = pipe.query_async(&mut self.conn()).await?;
        let mut merged: HashMap<String, u64> = HashMap::new();
        for hash in hashes {
            merged.extend(hash);
        }
        Ok((first..=last)
            .map(|t| StatsPoint {
                t,
                completed: merged.get(&format!("done:{t}")).copied().unwrap_or(0),
                ready: merged.get(&format!("ready:{t}")).copied(),
            })
            .collect())
    }
}
