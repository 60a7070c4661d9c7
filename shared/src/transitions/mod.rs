//! The state transitions: one Lua script each (`src/lua/<name>.lua`), and here one Rust type
//! each that owns its script, names its keys and arguments, and decodes its reply into an enum.
//! [`Store::run`](crate::Store::run) executes one.
//!
//! How a call crosses the boundary (`lua/prelude.lua` reads it):
//! - KEYS: every key the script touches, so Redis (and a Cluster) sees them all;
//! - ARGV\[1\]: one JSON object `{"keys": {name: index}, "channels": {name: channel},
//!   "args": {...}, "session": {...}}`, so the script reads `K.ready`, `C.control` and
//!   `ARGS.maxAttempts`, never a position;
//! - the reply: one JSON object tagged by `outcome` (a few reads answer plain arrays), decoded by
//!   the transition's `Reply` type through `FromRedisValue`.
//!
//! # Layout
//! - [`session`]: the coordinator's — init, create, fail, cancel, snapshot.
//! - [`agent`]: a runner's while it holds an agent — start, assign next, complete, fail an
//!   attempt, release, emit events, stream ready.
//! - [`registry`]: leases and the queue — heartbeat, dead runners, requeue, forget.

pub mod agent;
pub mod registry;
pub mod session;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use redis::{FromRedisValue, ParsingError, Script, ScriptInvocation, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ids::SessionId;
use crate::keys::{Keys, SessionKeys};

pub use agent::{
    AfterCompletion, AgentDone, AssignNext, AssignOutcome, AttemptOutcome, CompleteOutcome,
    CompleteTodo, EmitEvents, FailAttempt, Fenced, Holder, LeaseToken, ReleaseAgent,
    ReleaseOutcome, StartAgent, StartOutcome, StreamReady,
};
pub use registry::{
    DeadRunnerIds, DeadRunners, ForgetOutcome, ForgetRunner, Heartbeat, HeartbeatOutcome,
    RequeueJob, RequeueOutcome,
};
pub use session::{
    CancelOutcome, CancelSession, CreateOutcome, CreateSession, EnqueueJobs, EnqueueOutcome,
    FailOutcome, FailSession, IndexOutcome, IndexSession, InitOutcome, InitSession, MARKER_TTL_MS,
    Snapshot, UnindexOutcome, UnindexSessions,
};

/// One Lua transition. The value itself is the call's arguments: it serializes to what the
/// script reads as `ARGS` (derived, with fields named as the script reads them, or written out
/// where an argument is computed, such as an event payload).
pub trait Transition: Serialize {
    /// What the script answers, decoded.
    type Reply: FromRedisValue;

    /// Its script (built by the `lua!` macro).
    fn lua(&self) -> &'static Lua;

    /// The session whose keys it works on (all of [`session_keys`]), or `None` for a transition
    /// of global keys only.
    fn session(&self) -> Option<SessionId>;

    /// The keys it touches besides its session's, under the names its script reads them by.
    fn keys(&self, _keys: &Keys) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The pub/sub channels it publishes on besides its session's live channel, by name
    /// (`C.<name>`). Channels are not keys, but on a Cluster they have a slot too.
    fn channels(&self, _keys: &Keys) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Whether, with `SWARMQ_REDIS_MIN_REPLICAS_ACKED` > 0, the store waits for replicas to
    /// acknowledge this transition before answering (every state change except a lease renewal;
    /// reads say no).
    fn durable(&self) -> bool {
        true
    }
}

/// A transition's script: `lua/prelude.lua`, for a session transition `lua/session.lua`, then
/// its own file. `redis::Script` runs it by EVALSHA and reloads it after a Redis restart.
pub struct Lua {
    file: &'static str,
    script: LazyLock<Script>,
}

impl Lua {
    #[doc(hidden)]
    pub const fn new(file: &'static str, script: LazyLock<Script>) -> Self {
        Self { file, script }
    }

    /// Its SHA1, for a pipelined `EVALSHA` (the store's durable path).
    pub fn hash(&self) -> &str {
        self.script.get_hash()
    }

    /// The script's file under `src/lua/`.
    pub fn file(&self) -> &'static str {
        self.file
    }

    pub fn script(&self) -> &Script {
        &self.script
    }
}

/// `lua!(session "x.lua")` or `lua!(global "x.lua")`: a `&'static Lua` for `src/lua/x.lua` with
/// the preludes it needs.
macro_rules! lua {
    (session $file:literal) => {
        $crate::transitions::lua!(@static $file, concat!(
            include_str!("../lua/prelude.lua"),
            include_str!("../lua/session.lua"),
            include_str!(concat!("../lua/", $file))
        ))
    };
    (global $file:literal) => {
        $crate::transitions::lua!(@static $file, concat!(
            include_str!("../lua/prelude.lua"),
            include_str!(concat!("../lua/", $file))
        ))
    };
    (@static $file:literal, $source:expr) => {{
        static LUA: $crate::transitions::Lua = $crate::transitions::Lua::new(
            $file,
            std::sync::LazyLock::new(|| redis::Script::new($source)),
        );
        &LUA
    }};
}
pub(crate) use lua;

/// Implements [`Transition`] from the facts of one transition: its type and reply, its script —
/// `session "<file>" in <path of its session id>`, or `global "<file>"` — and then, after a `;`,
/// its other trait items (`keys`, `channels`).
macro_rules! transition {
    ($ty:ty => $reply:ty, session $file:literal in $($path:ident).+ $(; $($items:tt)*)?) => {
        $crate::transitions::transition!(
            @impl $ty, $reply, $crate::transitions::lua!(session $file), [$($path).+]
            $($($items)*)?
        );
    };
    ($ty:ty => $reply:ty, global $file:literal $(; $($items:tt)*)?) => {
        $crate::transitions::transition!(
            @impl $ty, $reply, $crate::transitions::lua!(global $file), [] $($($items)*)?
        );
    };
    (@impl $ty:ty, $reply:ty, $lua:expr, [$($path:ident).*] $($items:tt)*) => {
        impl $crate::transitions::Transition for $ty {
            type Reply = $reply;
            fn lua(&self) -> &'static $crate::transitions::Lua {
                $lua
            }
            fn session(&self) -> Option<$crate::ids::SessionId> {
                $crate::transitions::transition!(@session self $($path).*)
            }
            $($items)*
        }
    };
    (@session $self:ident) => {
        None
    };
    (@session $self:ident $($path:ident).+) => {
        Some($self.$($path).+)
    };
}
pub(crate) use transition;

/// The keys every session transition gets, named as `lua/session.lua` reads them.
pub fn session_keys(k: &SessionKeys) -> [(&'static str, String); 5] {
    [
        ("session", k.session_hash()),
        ("todos", k.todo_ids_list()),
        ("agents", k.agent_ids_list()),
        ("pending", k.pending_list()),
        ("events", k.events_stream()),
    ]
}

/// Every key `t` touches, by name: what must live in one slot on a Redis Cluster.
pub fn all_keys<T: Transition>(t: &T, keys: &Keys) -> Vec<(&'static str, String)> {
    let mut all = Vec::new();
    if let Some(session) = t.session() {
        all.extend(session_keys(&keys.session(session)));
    }
    all.extend(t.keys(keys));
    all
}

/// Every channel `t` publishes on, by name: its session's live channel first.
pub fn all_channels<T: Transition>(t: &T, keys: &Keys) -> Vec<(&'static str, String)> {
    let mut all = Vec::new();
    if let Some(session) = t.session() {
        all.push(("live", keys.session(session).live_channel()));
    }
    all.extend(t.channels(keys));
    all
}

/// How a session transition builds the keys of its TODOs and agents and caps its events
/// (`CALL.session` in Lua).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionNames {
    todo_prefix: String,
    agent_prefix: String,
    events_maxlen: u64,
    /// How events and session messages are published: `PUBLISH` (one Redis, Sentinel), or
    /// `SPUBLISH` on a Cluster (sharded pub/sub: only the node owning the session's slot and
    /// its replicas carry the message, not every node).
    publish: &'static str,
}

/// How a transition's script is called beyond its own keys and arguments: the store's settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Calling {
    pub events_maxlen: u64,
    /// On a Cluster: publish with `SPUBLISH`.
    pub sharded: bool,
}

/// ARGV\[1\]: the whole call but its keys' values.
#[derive(Serialize)]
struct Call<A> {
    keys: BTreeMap<&'static str, usize>,
    channels: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<SessionNames>,
    args: A,
}

/// The invocation of `t`: its keys in KEYS, the rest in ARGV\[1\].
pub(crate) fn invocation<T: Transition>(
    t: &T,
    keys: &Keys,
    calling: Calling,
) -> serde_json::Result<ScriptInvocation<'static>> {
    let (keys, arg) = call_parts(t, keys, calling)?;
    let mut inv = t.lua().script.prepare_invoke();
    for key in keys {
        inv.key(key);
    }
    inv.arg(arg);
    Ok(inv)
}

/// `EVALSHA` of `t`, to pipeline with other commands (the caller loads the script on NOSCRIPT).
pub(crate) fn evalsha<T: Transition>(
    t: &T,
    keys: &Keys,
    calling: Calling,
) -> serde_json::Result<redis::Cmd> {
    let (keys, arg) = call_parts(t, keys, calling)?;
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(t.lua().hash()).arg(keys.len()).arg(keys).arg(arg);
    Ok(cmd)
}

/// The KEYS and ARGV\[1\] of `t`.
fn call_parts<T: Transition>(
    t: &T,
    keys: &Keys,
    calling: Calling,
) -> serde_json::Result<(Vec<String>, String)> {
    let mut index = BTreeMap::new();
    let mut all = Vec::new();
    for (position, (name, key)) in all_keys(t, keys).into_iter().enumerate() {
        all.push(key);
        index.insert(name, position + 1);
    }
    let session = t.session().map(|id| {
        let k = keys.session(id);
        SessionNames {
            todo_prefix: k.todo_prefix(),
            agent_prefix: k.agent_prefix(),
            events_maxlen: calling.events_maxlen,
            publish: if calling.sharded {
                "SPUBLISH"
            } else {
                "PUBLISH"
            },
        }
    });
    let call = Call {
        keys: index,
        channels: all_channels(t, keys).into_iter().collect(),
        session,
        args: t,
    };
    Ok((all, serde_json::to_string(&call)?))
}

/// `serialize_with` for a duration the script takes in milliseconds.
pub(crate) fn millis<S: serde::Serializer>(
    d: &std::time::Duration,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Decodes a script's JSON reply (see the module doc).
pub(crate) fn decode_json<T: DeserializeOwned>(value: Value) -> Result<T, ParsingError> {
    match value {
        Value::BulkString(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            let text: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
            ParsingError::from(format!("{e} in reply {text:?}"))
        }),
        other => Err(format!("expected a JSON reply, got {other:?}").into()),
    }
}

/// Declares a script's reply: one JSON object tagged by `outcome`, its names in camelCase (as
/// `reply` in `lua/prelude.lua` writes it), decoded by `FromRedisValue`.
macro_rules! reply {
    ($(#[$meta:meta])* pub enum $name:ident { $($variants:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, PartialEq, Eq, serde::Deserialize)]
        #[serde(tag = "outcome", rename_all = "camelCase", rename_all_fields = "camelCase")]
        pub enum $name { $($variants)* }
        $crate::transitions::json_reply!($name);
    };
}
pub(crate) use reply;

/// `FromRedisValue` for reply types the scripts send as one JSON object.
macro_rules! json_reply {
    ($($ty:ty),+ $(,)?) => {
        $(impl redis::FromRedisValue for $ty {
            fn from_redis_value(value: redis::Value) -> Result<Self, redis::ParsingError> {
                $crate::transitions::decode_json(value)
            }
        })+
    };
}
pub(crate) use json_reply;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::event::Event;
    use crate::ids::{AgentId, AgentJob, RunnerId};
    use crate::keys::slot;
    use crate::model::{SessionStatus, Todo};
    use crate::store::RunnerInfo;

    /// Channels a script sends a classic `PUBLISH` on: a Cluster relays those to every node
    /// whatever their slot, so they need not share the script's slot (`SPUBLISH` ones would).
    const BROADCAST: &[&str] = &["control"];

    /// The Cluster slot of every key `t` is called with and every channel it publishes on
    /// in its slot; panics naming them when they span two slots.
    fn one_slot<T: Transition>(t: &T, keys: &Keys) -> u16 {
        let mut slots: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        let named = all_keys(t, keys).into_iter().chain(
            all_channels(t, keys)
                .into_iter()
                .filter(|(name, _)| !BROADCAST.contains(name)),
        );
        for (name, key) in named {
            slots
                .entry(slot(&key))
                .or_default()
                .push(format!("{name}={key}"));
        }
        assert_eq!(slots.len(), 1, "{} spans slots: {slots:?}", t.lua().file());
        *slots.keys().next().unwrap_or(&0)
    }

    /// What docs/redis-schema.md promises: every transition — the runners', the registry's and
    /// the coordinator's — touches exactly one Cluster slot (its session's, or the queue's),
    /// computed with CRC16 as Redis Cluster does.
    #[test]
    fn every_transition_touches_one_slot() {
        let keys = Keys::new("q").unwrap();
        let job = AgentJob {
            session_id: SessionId::new(),
            agent_id: AgentId::new(),
        };
        let id = job.session_id;
        let session = slot(&keys.session(id).session_hash());
        let queue = slot(&keys.ready_list());
        for (file, got) in session_transitions(&keys, job) {
            assert_eq!(got, session, "{file}");
        }
        for (file, got) in queue_transitions(&keys, id) {
            assert_eq!(got, queue, "{file}");
        }
        // Sharded: the queue's transitions of a session's jobs touch that session's shard.
        let sharded = Keys::new("q").unwrap().sharded(3);
        let shard = slot(&sharded.ready_shard(sharded.shard_of(id)));
        let requeue = RequeueJob {
            runner: &RunnerId::generate("h"),
            job: &job.to_string(),
        };
        assert_eq!(one_slot(&requeue, &sharded), shard);
        let enqueue = EnqueueJobs {
            session_id: id,
            jobs: vec![job.to_string()],
            marker_ttl_ms: 1,
        };
        assert_eq!(one_slot(&enqueue, &sharded), shard);
        let forget = ForgetRunner {
            runner: &RunnerId::generate("h"),
        };
        assert_eq!(one_slot(&forget, &sharded), slot(&sharded.runners_zset()));
    }

    fn session_transitions(keys: &Keys, job: AgentJob) -> Vec<(&'static str, u16)> {
        let (id, runner) = (job.session_id, RunnerId::generate("h"));
        let token = LeaseToken("1".into());
        let todos = [Todo::new("t".into())];
        let agents = [job.agent_id];
        let events: [Event; 0] = [];
        let k = keys;
        vec![
            (
                "init",
                one_slot(
                    &InitSession {
                        id,
                        prompt: "p",
                        agent_count: 1,
                        created_at: 0,
                        deadline: 0,
                        retention: Duration::ZERO,
                    },
                    k,
                ),
            ),
            (
                "create",
                one_slot(
                    &CreateSession {
                        id,
                        todos: &todos,
                        agents: &agents,
                    },
                    k,
                ),
            ),
            (
                "fail",
                one_slot(
                    &FailSession {
                        id,
                        error: "e",
                        only_if: SessionStatus::Decomposing,
                    },
                    k,
                ),
            ),
            ("cancel", one_slot(&CancelSession { id }, k)),
            ("snapshot", one_slot(&Snapshot { id }, k)),
            (
                "start",
                one_slot(
                    &StartAgent {
                        job,
                        runner: &runner,
                        max_attempts: 1,
                    },
                    k,
                ),
            ),
            (
                "assign",
                one_slot(
                    &AssignNext {
                        job,
                        token: &token,
                        max_attempts: 1,
                    },
                    k,
                ),
            ),
            (
                "complete",
                one_slot(
                    &CompleteTodo {
                        job,
                        token: &token,
                        todo_id: todos[0].id,
                        result: Some("r"),
                        then: AfterCompletion::Stop,
                    },
                    k,
                ),
            ),
            (
                "fail_attempt",
                one_slot(
                    &FailAttempt {
                        job,
                        token: &token,
                        todo_id: todos[0].id,
                        error: "e",
                        max_attempts: 1,
                    },
                    k,
                ),
            ),
            (
                "release",
                one_slot(
                    &ReleaseAgent {
                        job,
                        holder: Holder::Runner(&runner),
                        count_attempt: true,
                        reason: "r",
                    },
                    k,
                ),
            ),
            (
                "emit",
                one_slot(
                    &EmitEvents {
                        job,
                        token: &token,
                        batch: 1,
                        events: &events,
                    },
                    k,
                ),
            ),
            (
                "stream_ready",
                one_slot(
                    &StreamReady {
                        job,
                        token: &token,
                        sandbox_id: "s",
                        stream_url: "u",
                    },
                    k,
                ),
            ),
        ]
    }

    fn queue_transitions(keys: &Keys, id: SessionId) -> Vec<(&'static str, u16)> {
        let runner = RunnerId::generate("h");
        let info = RunnerInfo::default();
        let k = keys;
        vec![
            (
                "index",
                one_slot(
                    &IndexSession {
                        session_id: id,
                        created_at: 0,
                        deadline: 0,
                    },
                    k,
                ),
            ),
            (
                "enqueue",
                one_slot(
                    &EnqueueJobs {
                        session_id: id,
                        jobs: vec![],
                        marker_ttl_ms: 1,
                    },
                    k,
                ),
            ),
            (
                "unindex",
                one_slot(
                    &UnindexSessions {
                        ids: vec![id.to_string()],
                    },
                    k,
                ),
            ),
            (
                "heartbeat",
                one_slot(
                    &Heartbeat {
                        runner: &runner,
                        lease: Duration::from_secs(1),
                        info: &info,
                    },
                    k,
                ),
            ),
            ("dead_runners", one_slot(&DeadRunners { limit: 1 }, k)),
            (
                "requeue",
                one_slot(
                    &RequeueJob {
                        runner: &runner,
                        job: "j",
                    },
                    k,
                ),
            ),
            ("forget", one_slot(&ForgetRunner { runner: &runner }, k)),
        ]
    }
}
