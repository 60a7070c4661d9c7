//! The runner registry and the queue: leases (Redis clock), and moving a dead runner's jobs
//! back to the ready list. All global keys, under the `{<prefix>}` hash tag.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};
use serde::{Deserialize, Serialize};

use super::{Lua, Transition, json_reply, lua};
use crate::ids::{RunnerId, SessionId};
use crate::keys::Keys;
use crate::store::RunnerInfo;

/// `heartbeat.lua`: a runner renews its lease and republishes its info.
pub struct Heartbeat<'a> {
    pub runner: &'a RunnerId,
    pub lease: Duration,
    pub info: &'a RunnerInfo,
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum HeartbeatOutcome {
    Renewed,
    /// The runner was (re-)added: its first beat — or it had been reaped as dead, its agents
    /// handed to others, and it must drop them.
    Added,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HeartbeatArgs<'a> {
    runner_id: &'a RunnerId,
    lease_ms: u64,
    info: BTreeMap<&'static str, String>,
}

impl Transition for Heartbeat<'_> {
    type Reply = HeartbeatOutcome;
    fn lua(&self) -> &'static Lua {
        lua!(global "heartbeat.lua")
    }
    fn session(&self) -> Option<SessionId> {
        None
    }
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![
            ("runners", keys.runners_zset()),
            ("info", keys.runner_info_hash(self.runner)),
        ]
    }
    fn args(&self) -> impl Serialize {
        HeartbeatArgs {
            runner_id: self.runner,
            lease_ms: self.lease.as_millis() as u64,
            info: self.info.fields(),
        }
    }
}

/// `dead_runners.lua`: runners whose lease expired, at most `limit`.
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

#[derive(Serialize)]
struct DeadRunnersArgs {
    limit: usize,
}

impl Transition for DeadRunners {
    type Reply = DeadRunnerIds;
    fn lua(&self) -> &'static Lua {
        lua!(global "dead_runners.lua")
    }
    fn session(&self) -> Option<SessionId> {
        None
    }
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![("runners", keys.runners_zset())]
    }
    fn args(&self) -> impl Serialize {
        DeadRunnersArgs { limit: self.limit }
    }
}

/// `requeue_job.lua`: moves one job from `runner`'s claimed list back to the ready list, at
/// the end that is claimed next.
pub struct RequeueJob<'a> {
    pub runner: &'a RunnerId,
    pub job: &'a str,
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum RequeueOutcome {
    Moved,
    /// It was not in the claimed list (someone else moved it): nothing changed.
    NotThere,
}

#[derive(Serialize)]
struct RequeueArgs<'a> {
    job: &'a str,
}

impl Transition for RequeueJob<'_> {
    type Reply = RequeueOutcome;
    fn lua(&self) -> &'static Lua {
        lua!(global "requeue_job.lua")
    }
    fn session(&self) -> Option<SessionId> {
        None
    }
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![
            ("claimed", keys.runner_claimed_list(self.runner)),
            ("ready", keys.ready_list()),
        ]
    }
    fn args(&self) -> impl Serialize {
        RequeueArgs { job: self.job }
    }
}

/// `forget_runner.lua`: removes a reaped runner whose claimed list is empty, unless it came
/// back meanwhile.
pub struct ForgetRunner<'a> {
    pub runner: &'a RunnerId,
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum ForgetOutcome {
    Forgotten,
    /// Jobs are left in its claimed list, or its lease is current again.
    Kept,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ForgetArgs<'a> {
    runner_id: &'a RunnerId,
}

impl Transition for ForgetRunner<'_> {
    type Reply = ForgetOutcome;
    fn lua(&self) -> &'static Lua {
        lua!(global "forget_runner.lua")
    }
    fn session(&self) -> Option<SessionId> {
        None
    }
    fn keys(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        vec![
            ("runners", keys.runners_zset()),
            ("claimed", keys.runner_claimed_list(self.runner)),
            ("info", keys.runner_info_hash(self.runner)),
        ]
    }
    fn args(&self) -> impl Serialize {
        ForgetArgs {
            runner_id: self.runner,
        }
    }
}

json_reply!(HeartbeatOutcome, RequeueOutcome, ForgetOutcome);
