//! The connection every ordinary command goes through. With one fixed address it is redis's own
//! [`ConnectionManager`]. Behind Sentinel it is [`Followed`]: one multiplexed connection to the
//! primary of the moment, dropped on any error that says "this node is gone or no longer the
//! primary" (I/O, timeout, `READONLY`, `MASTERDOWN`), so the next command asks the Sentinels
//! again. The failing command itself fails (unavailable: the API answers 503, the runner retries).

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::{Mutex, watch};

use super::target::{Target, no_primary_error as unavailable};
use super::{Result, StoreError};

#[derive(Clone)]
pub(crate) enum Conn {
    Direct(ConnectionManager),
    Followed(Followed),
    /// A Redis Cluster: redis's async cluster connection routes each command by its keys' slot
    /// and follows `MOVED`/`ASK` and failovers (see [`Conn::Cluster`]'s pipelines below).
    Cluster(ClusterConnection),
    /// One plain connection of its own (a blocking claimer's).
    Plain(MultiplexedConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Direct(c) => c.req_packed_command(cmd),
            Self::Followed(f) => Box::pin(f.command(cmd)),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Plain(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Direct(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Followed(f) => Box::pin(f.commands(pipeline, offset, count)),
            Self::Cluster(c) => Box::pin(cluster_commands(c.clone(), pipeline, offset, count)),
            Self::Plain(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Direct(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Plain(c) => c.get_db(),
            Self::Followed(_) => 0,
        }
    }
}

/// A pipeline on a cluster: sent whole when its keys share one slot (redis's cluster client
/// refuses others before sending: `CrossSlot`); a non-atomic pipeline over several slots (a
/// page of sessions' hashes) is sent command by command instead, concurrently, and answered in
/// order. An atomic one (`MULTI`) over several slots stays an error: swarmq sends none.
async fn cluster_commands(
    mut conn: ClusterConnection,
    pipeline: &Pipeline,
    offset: usize,
    count: usize,
) -> redis::RedisResult<Vec<Value>> {
    match conn.req_packed_commands(pipeline, offset, count).await {
        Err(e)
            if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot)
                && !pipeline.is_transaction()
                && offset == 0 =>
        {
            let each = pipeline.cmd_iter().map(|cmd| {
                let mut conn = conn.clone();
                async move { conn.req_packed_command(cmd).await }
            });
            futures_util::future::try_join_all(each).await
        }
        other => other,
    }
}

/// How long after a failed attempt to find the primary further commands fail at once instead
/// of each trying again in turn (commands queue on the lock meanwhile: without this, the
/// hundredth would wait a hundred attempts).
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// How old the live connection must be before a short `WAIT` drops it (see
/// [`Followed::suspect`]).
const SUSPECT_AFTER: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Live {
    /// The connection, its number (so a late error drops only the one it came from) and when
    /// it was opened.
    conn: Option<(u64, MultiplexedConnection, Instant)>,
    /// When the last attempt to connect failed, and why.
    failed: Option<(Instant, String)>,
}

/// The command connection of a Sentinel deployment (see the module doc). Cheap to clone.
#[derive(Clone)]
pub(crate) struct Followed(Arc<Inner>);

struct Inner {
    target: Arc<Target>,
    config: AsyncConnectionConfig,
    /// The live connection and its number (so a late error drops only the one it came from).
    current: Mutex<Live>,
    /// The primary's address, announced whenever a new connection lands on another node:
    /// pub/sub users reconnect on it (a frozen-then-demoted primary never closes their socket).
    primary: watch::Sender<String>,
}

impl Followed {
    pub(crate) fn new(target: Arc<Target>, config: AsyncConnectionConfig) -> Self {
        let (primary, _) = watch::channel(String::new());
        Self(Arc::new(Inner {
            target,
            config,
            current: Mutex::new(Live::default()),
            primary,
        }))
    }

    pub(crate) fn primary_changes(&self) -> watch::Receiver<String> {
        let mut rx = self.0.primary.subscribe();
        rx.mark_unchanged();
        rx
    }

    async fn command(&self, cmd: &Cmd) -> redis::RedisResult<Value> {
        let (n, mut conn) = self.get().await?;
        let reply = conn.req_packed_command(cmd).await;
        let gone = reply
            .as_ref()
            .map_or_else(gone, |v| answers_gone(std::slice::from_ref(v)));
        self.check(n, gone, reply).await
    }

    async fn commands(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<Value>> {
        let (n, mut conn) = self.get().await?;
        let reply = conn.req_packed_commands(pipeline, offset, count).await;
        let gone = reply.as_ref().map_or_else(gone, |v| answers_gone(v));
        self.check(n, gone, reply).await
    }

    /// Drops the live connection, so the next command asks the Sentinels again: for a primary
    /// that took a write no replica acknowledged (`WAIT` came back short), which a stale
    /// primary that has not refused it (no `min-replicas-to-write`) does. Not a connection
    /// younger than [`SUSPECT_AFTER`]: it may be the new one already, and on a healthy primary
    /// whose replicas lag every write would reconnect.
    pub(crate) async fn suspect(&self) {
        let mut live = self.0.current.lock().await;
        if live
            .conn
            .as_ref()
            .is_some_and(|(_, _, opened)| opened.elapsed() >= SUSPECT_AFTER)
        {
            tracing::warn!("redis: no replica acknowledged a write, re-resolving the primary");
            live.conn = None;
        }
    }

    /// The live connection, or a new one to the primary the Sentinels name now.
    async fn get(&self) -> redis::RedisResult<(u64, MultiplexedConnection)> {
        let mut live = self.0.current.lock().await;
        if let Some((n, conn, _)) = live.conn.as_ref() {
            return Ok((*n, conn.clone()));
        }
        if let Some((at, why)) = &live.failed
            && at.elapsed() < RETRY_AFTER
        {
            return Err(unavailable(why.clone()));
        }
        let (conn, addr) = match self.0.target.connect(&self.0.config).await {
            Ok(found) => found,
            Err(e) => {
                live.failed = Some((Instant::now(), e.to_string()));
                return Err(match e {
                    StoreError::Redis(e) => e,
                    other => unavailable(other.to_string()),
                });
            }
        };
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The first primary found is no move: only later changes are announced.
        self.0.primary.send_if_modified(|old| {
            let moved = !old.is_empty() && *old != addr;
            if moved {
                tracing::warn!(from = %old, to = %addr, "redis: following a new primary");
            }
            *old = addr;
            moved
        });
        *live = Live {
            conn: Some((n, conn.clone(), Instant::now())),
            failed: None,
        };
        Ok((n, conn))
    }

    /// Drops connection `n` when its reply said its node is gone or demoted (`gone`: why).
    async fn check<T>(
        &self,
        n: u64,
        gone: Option<String>,
        reply: redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        if let Some(why) = gone {
            let mut live = self.0.current.lock().await;
            if live
                .conn
                .as_ref()
                .is_some_and(|(current, ..)| *current == n)
            {
                tracing::warn!(error = %why, "redis: dropping the primary connection, will re-resolve");
                live.conn = None;
            }
        }
        reply
    }
}

/// Why an error says its node is gone or no longer a primary that can write, if it does.
fn gone(e: &redis::RedisError) -> Option<String> {
    StoreError::Redis(e.clone())
        .is_unavailable()
        .then(|| e.to_string())
}

/// The same for a reply: redis hands a server error back as a value (`NOREPLICAS` from a stale
/// primary, `READONLY` from a demoted one, in a pipeline one per command), not as an `Err`.
fn answers_gone(values: &[Value]) -> Option<String> {
    values.iter().find_map(|v| match v {
        Value::ServerError(e) => gone(&e.clone().into()),
        _ => None,
    })
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Opens a [`Conn`] for `target`: redis's `ConnectionManager` for one fixed address, a
/// cluster connection (connecting in the background) for a cluster.
pub(crate) fn open(
    target: &Arc<Target>,
    config: AsyncConnectionConfig,
    manager: redis::aio::ConnectionManagerConfig,
    response_timeout: Duration,
) -> Result<Conn> {
    if let Some(client) = target.cluster_client(Some(response_timeout))? {
        let config = redis::cluster::ClusterConfig::new();
        return Ok(Conn::Cluster(
            client.get_pending_async_connection_with_config(config),
        ));
    }
    Ok(match target.as_ref() {
        Target::Single(client) => Conn::Direct(ConnectionManager::new_lazy_with_config(
            client.clone(),
            manager,
        )?),
        Target::Sentinel(_) | Target::Cluster(..) => {
            Conn::Followed(Followed::new(target.clone(), config))
        }
    })
}
