//! The only code that talks to Redis about sessions, agents, runners and the queue: every state
//! change is a [`Transition`] run by [`Store::run`]; the plain reads are methods here.
//!
//! Connections, all opened in this module: one [`ConnectionManager`] (multiplexed, reconnects
//! by itself, cheap to clone) serves every ordinary command. Blocking `BLMOVE`s get their own
//! connection each ([`Claimer`]), never shared, with a response timeout longer than the block
//! (redis 1.x's default 500 ms timeout would answer "timed out" while Redis still moves the
//! job later, stranding it). Pub/sub connections come from [`Store::pubsub`].

mod hashes;
pub mod idempotency;
mod rate;
mod runners;
mod sessions;
mod stats;

use std::time::Duration;

use redis::FromRedisValue;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};

use crate::ids::SessionId;
use crate::keys::Keys;
use crate::model::Session;
use crate::transitions::{self, Snapshot, Transition};

pub use runners::{Claimer, RegisteredRunner, RunnerInfo, RunnerTotals};
pub use sessions::{RecordedEvent, SessionCounts, SessionPage};
pub use stats::{MAX_SERIES_SECS, STATS_TTL_SECS, StatsPoint};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered, but not with what the schema promises (a hand-edited key, a version skew).
    #[error("unexpected data in redis: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// True when Redis could not be reached or did not answer in time: worth retrying later and
    /// worth a 503, unlike a corrupt reply.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_unrecoverable_error()
                    || matches!(
                        e.kind(),
                        redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                            | redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain)
                            | redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown)
                            | redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown)
                            | redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
                    )
            }
            Self::Corrupt(_) => false,
        }
    }
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
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            events_maxlen: 10_000,
            response_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    opts: StoreOptions,
}

impl Store {
    /// Prepares a store without connecting: the first command connects, and every later one
    /// reconnects after Redis comes back, so a daemon can start before Redis does.
    pub fn new(url: &str, keys: Keys, opts: StoreOptions) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(opts.response_timeout))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            client,
            conn,
            keys,
            opts,
        })
    }

    /// `new` from the daemons' settings, with an error that never shows the URL's password.
    pub fn open(url: &str, prefix: &str, events_maxlen: u64) -> std::result::Result<Self, String> {
        let keys = Keys::new(prefix).map_err(|e| e.to_string())?;
        let opts = StoreOptions {
            events_maxlen,
            ..StoreOptions::default()
        };
        Self::new(url, keys, opts).map_err(|e| {
            let url = crate::telemetry::redact_url(url);
            match e {
                StoreError::Redis(e) => match e.detail() {
                    Some(detail) => format!("invalid REDIS_URL {url}: {} ({detail})", e.category()),
                    None => format!("invalid REDIS_URL {url}: {}", e.category()),
                },
                other => format!("invalid REDIS_URL {url}: {other}"),
            }
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub async fn ping(&self) -> Result<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// A connection of its own, for a blocking command that must not hold up others (and must
    /// not be cut off while it blocks: `response_timeout` exceeds the block).
    async fn exclusive(&self, response_timeout: Duration) -> Result<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    /// Pub/sub on its own connection (it does not reconnect by itself: callers loop).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub> {
        Ok(self.client.get_async_pubsub().await?)
    }

    /// Runs one transition: its keys and arguments go to its script, its reply comes back
    /// decoded (a reply that does not decode is [`StoreError::Corrupt`], never retried).
    pub async fn run<T: Transition>(&self, transition: &T) -> Result<T::Reply> {
        let file = transition.lua().file();
        let invocation = transitions::invocation(transition, &self.keys, self.opts.events_maxlen)
            .map_err(|e| StoreError::Corrupt(format!("{file}: arguments: {e}")))?;
        let reply: redis::Value = invocation.invoke_async(&mut self.conn()).await?;
        T::Reply::from_redis_value(reply)
            .map_err(|e| StoreError::Corrupt(format!("{file} replied: {e}")))
    }

    /// The whole session, read in one step (its `lastSeq` matches the todos and agents).
    pub async fn snapshot(&self, id: SessionId) -> Result<Option<Session>> {
        self.run(&Snapshot { id }).await
    }
}
