//! The runner registry and the queue: leases (Redis clock), and moving a dead runner's jobs
//! back to the ready list. All global keys, under the `{<prefix>}` hash tag.

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};
use serde::Serialize;

use super::{millis, reply, transition};
use crate::ids::RunnerId;
use crate::keys::Keys;
use crate::store::RunnerInfo;

/// `heartbeat.lua`: a runner renews its lease and republishes its info.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat<'a> {
    #[serde(rename = "runnerId")]
    pub runner: &'a RunnerId,
    #[serde(rename = "leaseMs", serialize_with = "millis")]
    pub lease: Duration,
    #[serde(serialize_with = "info_fields")]
    pub info: &'a RunnerInfo,
}

/// The info as the hash's fields (all strings: a Lua number or boolean is no hash value).
fn info_fields<S: serde::Serializer>(info: &&RunnerInfo, s: S) -> Result<S::Ok, S::Error> {
    info.fields().serialize(s)
}

reply! {
    /// `Renewed`, or `Added`: the runner was (re-)added — its first beat, or it had been reaped
    /// as dead, its agents handed to others, and it must drop them.
    pub enum HeartbeatOutcome { Renewed, Added }
}

transition!(Heartbeat<'_> => HeartbeatOutcome, global "heartbeat.lua";
    fn durable(&self) -> bool {
        false
    }
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![("runners", keys.runners_zset()), ("info", keys.runner_info_hash(self.runner))]
    }
);

/// `dead_runners.lua`: runners whose lease expired, at most `limit`.
#[derive(Serialize)]
pub struct DeadRunners {
    pub limit: usize,
}

/// Their ids. A member that is not a runner id (a hand-edited key) is skipped, not fatal: the
/// reaper must keep reaping the others.
#[derive(Debug, PartialEq, Eq)]
pub struct DeadRunnerIds(pub Vec<RunnerId>);

impl FromRedisValue for DeadRunnerIds {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let ids: Vec<String> = FromRedisValue::from_redis_value(value)?;
        Ok(Self(
            ids.iter()
                .filter_map(|id| RunnerId::parse(id).ok())
                .collect(),
        ))
    }
}

transition!(DeadRunners => DeadRunnerIds, global "dead_runners.lua";
    fn durable(&self) -> bool {
        false
    }
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![("runners", keys.runners_zset())]
    }
);

/// `requeue_job.lua`: moves one job from `runner`'s claimed list back to the ready list, at
/// the end that is claimed next — both of the job's queue shard.
#[derive(Serialize)]
pub struct RequeueJob<'a> {
    #[serde(skip)]
    pub runner: &'a RunnerId,
    pub job: &'a str,
}

reply! {
    /// `Moved`, or `NotThere`: it was not in the claimed list (someone else moved it) and
    /// nothing changed.
    pub enum RequeueOutcome { Moved, NotThere }
}

transition!(RequeueJob<'_> => RequeueOutcome, global "requeue_job.lua";
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        let shard = keys.shard_of_job(self.job);
        let claimed = keys.claimed_shard(self.runner, shard);
        vec![("claimed", claimed), ("ready", keys.ready_shard(shard))]
    }
);

/// `forget_runner.lua`: removes a reaped runner whose claimed list is empty, unless it came
/// back meanwhile. With several queue shards the claimed lists live in their shards' slots, so
/// [`Store::forget_runner`](crate::Store::forget_runner) checks them first and the script only
/// the lease.
#[derive(Serialize)]
pub struct ForgetRunner<'a> {
    #[serde(rename = "runnerId")]
    pub runner: &'a RunnerId,
}

reply! {
    /// `Forgotten`, or `Kept`: jobs are left in its claimed list, or its lease is current again.
    pub enum ForgetOutcome { Forgotten, Kept }
}

transition!(ForgetRunner<'_> => ForgetOutcome, global "forget_runner.lua";
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        let runner = self.runner;
        let mut all = vec![("runners", keys.runners_zset()), ("info", keys.runner_info_hash(runner))];
        if keys.shard_count() == 1 {
            all.push(("claimed", keys.runner_claimed_list(runner)));
        }
        all
    }
);
