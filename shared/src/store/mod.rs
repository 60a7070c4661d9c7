//! The only code that talks to Redis about sessions, agents, runners and the queue: every state
//! change is a [`Transition`] run by [`Store::run`]; the plain reads are methods here.
//!
//! Connections, all opened in this module: one [`ConnectionManager`] (multiplexed, reconnects
//! by itself, cheap to clone) serves every ordinary command. Blocking `BLMOVE`s get their own
//! connection each ([`Claimer`]), never shared, with a response timeout longer than the block
//! (redis 1.x's default 500 ms timeout would answer "timed out" while Redis still moves the
//! job later, stranding it). Pub/sub connections come from [`Store::pubsub`].
//!
//! Where those connections go is the [`RedisTarget`]: one URL, or the primary a set of
//! Sentinels names (`target`); behind Sentinel the command connection follows failovers by
//! itself (`conn`).
//!
//! Durability (`SWARMQ_REDIS_MIN_REPLICAS_ACKED` = n > 0): a [`Transition::durable`] transition
//! is pipelined with `WAIT n timeout` on the same connection, and fails as
//! [`StoreError::NotReplicated`] (unavailable: 503, or retried by the runner) when fewer than n
//! replicas acknowledged it. The transition did run on the primary; every transition is safe
//! to run again (fencing tokens, "already recorded" answers), so a retry neither loses nor
//! duplicates it. On the shared multiplexed connection WAIT covers every write sent on it so
//! far, which only makes it stricter.
//!
//! The relay's reads ([`Store::with_replicated_reads`]) are fenced the same way when durability
//! is on: the read, a write of the fence key and `WAIT n` go in one pipeline on one connection
//! (so one node answers all three), and the answer is [`StoreError::NotReplicated`] unless n
//! replicas hold everything the read saw. Clients are then only ever sent events a failover
//! keeps: a primary that froze or died before its replicas had an event never lets it out.

mod conn;
mod hashes;
pub mod idempotency;
mod lifecycle;
mod rate;
mod runners;
mod sessions;
mod sharded;
mod stats;
mod target;

use std::sync::Arc;
use std::time::Duration;

use redis::FromRedisValue;
use redis::aio::ConnectionManagerConfig;

use crate::ids::SessionId;
use crate::keys::Keys;
use crate::model::Session;
use crate::transitions::{self, Snapshot, Transition};

pub use runners::{Claimer, RegisteredRunner, RunnerInfo, RunnerTotals};
pub use sessions::{RecordedEvent, SessionCounts, SessionPage};
pub use sharded::{Delivery, ShardedSubscriber};
pub use stats::{MAX_SERIES_SECS, STATS_TTL_SECS, StatsPoint};
pub use target::{ClusterTarget, RedisTarget, SentinelTarget, Tls};

use conn::Conn;
use target::Target;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered, but not with what the schema promises (a hand-edited key, a version skew).
    #[error("unexpected data in redis: {0}")]
    Corrupt(String),
    /// Durability on: the primary ran the transition but fewer than `wanted` replicas
    /// acknowledged it in time. Unavailable: the caller retries (every transition may run again).
    #[error("only {acked} of {wanted} replicas acknowledged the write in time")]
    NotReplicated { acked: u64, wanted: u64 },
}

impl StoreError {
    /// True when Redis could not be reached or did not answer in time: worth retrying later and
    /// worth a 503, unlike a corrupt reply.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Redis(e) => unavailable(e),
            Self::Corrupt(_) => false,
            Self::NotReplicated { .. } => true,
        }
    }
}

/// See [`StoreError::is_unavailable`]; also what makes a Sentinel connection re-resolve.
fn unavailable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        // A Cluster's slot map still naming a dead node once redis's own retries are spent.
        || e.kind() == redis::ErrorKind::ClusterConnectionNotFound
        // A server error, alone or inside a pipeline (the durable path's EVALSHA + WAIT
        // answers "Pipeline failure: [(0, NOREPLICAS …)]", whose code is not at the top).
        || e.clone().into_server_errors().is_some_and(|errors| {
            errors.iter().any(|(_, s)| {
                // A primary configured with min-replicas-to-write that has too few replicas
                // (a stale primary that came back alone, or a new one before its replicas
                // reattached).
                s.code() == "NOREPLICAS"
                    || s.kind().is_some_and(|k| {
                        use redis::ServerErrorKind as K;
                        // A primary loading, failing over or demoted; a Cluster mid-failover
                        // or mid-reshard (MOVED/ASK left after the client's retries).
                        matches!(
                            k,
                            K::BusyLoading
                                | K::TryAgain
                                | K::ClusterDown
                                | K::MasterDown
                                | K::ReadOnly
                                | K::Moved
                                | K::Ask
                        )
                    })
            })
        })
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                | redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain)
                | redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown)
                | redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown)
                | redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
                | redis::ErrorKind::Server(redis::ServerErrorKind::Moved)
                | redis::ErrorKind::Server(redis::ServerErrorKind::Ask)
        )
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// How long opening a connection may take before it counts as failed (Redis is away).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Tuning that the daemons take from their settings.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Approximate cap of each session's event stream (XADD MAXLEN ~).
    pub events_maxlen: u64,
    /// How long an ordinary command may take before it counts as failed.
    pub response_timeout: Duration,
    /// Replicas that must acknowledge each durable transition (0: do not wait).
    pub min_replicas_acked: u64,
    /// How long to wait for them (`WAIT`'s timeout).
    pub wait_timeout: Duration,
    /// Shards of the ready queue (`SWARMQ_QUEUE_SHARDS`; 1 = one list).
    pub queue_shards: u16,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            events_maxlen: 10_000,
            response_timeout: Duration::from_secs(5),
            min_replicas_acked: 0,
            wait_timeout: Duration::from_secs(1),
            queue_shards: 1,
        }
    }
}

/// See [`Store::primary_watch`].
pub struct PrimaryWatch(Option<tokio::sync::watch::Receiver<String>>);

impl PrimaryWatch {
    /// Resolves when the primary moved since this watch was taken (or last resolved).
    pub async fn moved(&mut self) {
        if let Some(rx) = &mut self.0
            && rx.changed().await.is_ok()
        {
            return;
        }
        std::future::pending::<()>().await
    }
}

#[derive(Clone)]
pub struct Store {
    target: Arc<Target>,
    conn: Conn,
    keys: Keys,
    opts: StoreOptions,
    /// Reads answer only what `min_replicas_acked` replicas hold (the relay's store).
    replicated_reads: bool,
}

impl Store {
    /// A store for one fixed Redis URL (see [`Store::with_target`]).
    pub fn new(url: &str, keys: Keys, opts: StoreOptions) -> Result<Self> {
        Self::with_target(&RedisTarget::Single(url.to_owned()), keys, opts)
    }

    /// Prepares a store without connecting: the first command connects, and every later one
    /// reconnects after Redis comes back (behind Sentinel: to the primary of the moment), so a
    /// daemon can start before Redis does.
    pub fn with_target(target: &RedisTarget, keys: Keys, opts: StoreOptions) -> Result<Self> {
        let target = Arc::new(Target::open(target)?);
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(opts.response_timeout))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(opts.response_timeout))
            .set_connection_timeout(Some(CONNECT_TIMEOUT));
        let conn = conn::open(&target, config, manager, opts.response_timeout)?;
        Ok(Self {
            target,
            conn,
            keys,
            opts,
            replicated_reads: false,
        })
    }

    /// `new` from the daemons' settings, with an error that never shows the URL's password.
    pub fn open(url: &str, prefix: &str, events_maxlen: u64) -> std::result::Result<Self, String> {
        let opts = StoreOptions {
            events_maxlen,
            ..StoreOptions::default()
        };
        Self::open_target(&RedisTarget::Single(url.to_owned()), prefix, opts)
    }

    /// `with_target` from the daemons' settings, with an error that never shows a password.
    pub fn open_target(
        target: &RedisTarget,
        prefix: &str,
        opts: StoreOptions,
    ) -> std::result::Result<Self, String> {
        let keys = Keys::new(prefix)
            .map_err(|e| e.to_string())?
            .sharded(opts.queue_shards);
        Self::with_target(target, keys, opts).map_err(|e| {
            let what = target.describe();
            match e {
                StoreError::Redis(e) => match e.detail() {
                    Some(detail) => {
                        format!("invalid Redis address {what}: {} ({detail})", e.category())
                    }
                    None => format!("invalid Redis address {what}: {}", e.category()),
                },
                other => format!("invalid Redis address {what}: {other}"),
            }
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// This store, with its session reads (`events_after`, `last_seq`, `snapshot`) answering
    /// only what `min_replicas_acked` replicas hold (see the module doc); the same store when
    /// durability is off. For the relay: what it sends clients, a failover never takes back.
    pub fn with_replicated_reads(&self) -> Self {
        Self {
            replicated_reads: self.opts.min_replicas_acked > 0,
            ..self.clone()
        }
    }

    /// Whether this store's reads answer only what enough replicas hold.
    pub fn reads_replicated(&self) -> bool {
        self.replicated_reads
    }

    /// `read`, fenced when this store's reads must be replicated (see the module doc).
    pub(crate) async fn read<T: FromRedisValue>(
        &self,
        session: SessionId,
        read: redis::Cmd,
    ) -> Result<T> {
        if !self.replicated_reads {
            return Ok(read.query_async(&mut self.conn()).await?);
        }
        let mut pipe = redis::pipe();
        pipe.add_command(read);
        self.add_fence(&mut pipe, session);
        let (value, acked): (T, u64) = pipe.query_async(&mut self.conn()).await?;
        self.check_acked(acked, "read").await?;
        Ok(value)
    }

    /// A write of the fence key (so that `WAIT` has something of this connection's to count:
    /// it covers everything the primary had accepted before) and the `WAIT`.
    fn add_fence(&self, pipe: &mut redis::Pipeline, session: SessionId) {
        pipe.cmd("SET")
            .arg(self.keys.session(session).fence())
            .arg(crate::now_ms())
            .arg("PX")
            .arg(60_000)
            .ignore();
        self.add_wait(pipe);
    }

    fn add_wait(&self, pipe: &mut redis::Pipeline) {
        pipe.cmd("WAIT")
            .arg(self.opts.min_replicas_acked)
            .arg(self.opts.wait_timeout.as_millis() as u64);
    }

    /// Behind Sentinel, a short count also makes the next command ask the Sentinels again: it
    /// is what a stale primary answers when it does not refuse writes itself.
    async fn check_acked(&self, acked: u64, what: &str) -> Result<()> {
        let wanted = self.opts.min_replicas_acked;
        if acked < wanted {
            tracing::warn!(what, acked, wanted, "not acknowledged by enough replicas");
            if let Conn::Followed(f) = &self.conn {
                f.suspect().await;
            }
            return Err(StoreError::NotReplicated { acked, wanted });
        }
        Ok(())
    }

    pub(crate) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    pub async fn ping(&self) -> Result<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Fires each time the store follows a failover to another primary (never with one fixed
    /// URL). Pub/sub loops take one before connecting and reconnect when it fires: a frozen old
    /// primary that comes back demoted never closes their socket.
    pub fn primary_watch(&self) -> PrimaryWatch {
        PrimaryWatch(match &self.conn {
            Conn::Followed(f) => Some(f.primary_changes()),
            Conn::Direct(_) | Conn::Cluster(_) | Conn::Plain(_) => None,
        })
    }

    /// A connection of its own, for a blocking command that must not hold up others (and must
    /// not be cut off while it blocks: `response_timeout` exceeds the block).
    /// On a cluster: a cluster connection of its own (it follows `MOVED`/`ASK` and failovers
    /// like the shared one).
    async fn exclusive(&self, response_timeout: Duration) -> Result<Conn> {
        if let Some(client) = self.target.cluster_client(Some(response_timeout))? {
            let config = redis::cluster::ClusterConfig::new();
            let conn = client.get_async_connection_with_config(config).await?;
            return Ok(Conn::Cluster(conn));
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        Ok(Conn::Plain(self.target.connect(&config).await?.0))
    }

    /// Pub/sub on its own connection (it does not reconnect by itself: callers loop).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub> {
        self.target.pubsub().await
    }

    /// Whether events and session messages go over sharded pub/sub (`SPUBLISH` /
    /// `SSUBSCRIBE`): on a Redis Cluster, where classic pub/sub reaches every node.
    pub fn sharded_pubsub(&self) -> bool {
        matches!(self.target.as_ref(), Target::Cluster(..))
    }

    fn calling(&self) -> transitions::Calling {
        transitions::Calling {
            events_maxlen: self.opts.events_maxlen,
            sharded: self.sharded_pubsub(),
        }
    }

    /// Runs one transition: its keys and arguments go to its script, its reply comes back
    /// decoded (a reply that does not decode is [`StoreError::Corrupt`], never retried).
    pub async fn run<T: Transition>(&self, transition: &T) -> Result<T::Reply> {
        let file = transition.lua().file();
        let reply = if self.opts.min_replicas_acked > 0 && transition.durable() {
            self.run_replicated(transition, false).await?
        } else if self.replicated_reads && !transition.durable() {
            self.run_replicated(transition, true).await?
        } else {
            let invocation = transitions::invocation(transition, &self.keys, self.calling())
                .map_err(|e| StoreError::Corrupt(format!("{file}: arguments: {e}")))?;
            invocation.invoke_async(&mut self.conn()).await?
        };
        T::Reply::from_redis_value(reply)
            .map_err(|e| StoreError::Corrupt(format!("{file} replied: {e}")))
    }

    /// `EVALSHA` and `WAIT` in one pipeline on one connection (see the module doc), with a
    /// write of the fence key between them when the script only reads (`fence`); loads the
    /// script first when Redis does not know it (a restarted or newly promoted primary).
    async fn run_replicated<T: Transition>(
        &self,
        transition: &T,
        fence: bool,
    ) -> Result<redis::Value> {
        let lua = transition.lua();
        let evalsha = transitions::evalsha(transition, &self.keys, self.calling())
            .map_err(|e| StoreError::Corrupt(format!("{}: arguments: {e}", lua.file())))?;
        let mut pipe = redis::pipe();
        pipe.add_command(evalsha);
        // A read of no session has no fence key; none is called through a replicated store.
        match transition.session().filter(|_| fence) {
            Some(session) => self.add_fence(&mut pipe, session),
            None => self.add_wait(&mut pipe),
        }
        let mut conn = self.conn();
        let first: redis::RedisResult<(redis::Value, u64)> = pipe.query_async(&mut conn).await;
        let (reply, acked) = match first {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                lua.script().load_async(&mut conn).await?;
                pipe.query_async(&mut conn).await?
            }
            other => other?,
        };
        self.check_acked(acked, lua.file()).await?;
        Ok(reply)
    }

    /// The whole session, read in one step (its `lastSeq` matches the todos and agents).
    pub async fn snapshot(&self, id: SessionId) -> Result<Option<Session>> {
        self.run(&Snapshot { id }).await
    }
}
