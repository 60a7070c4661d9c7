//! The only code that talks to Redis about sessions, agents, runners and the queue. Each method is
//! one Lua transition (`scripts`) or one plain read, with typed arguments and outcomes.
//!
//! Connections: one [`ConnectionManager`] (multiplexed, reconnects by itself, cheap to clone)
//! serves every ordinary command. Blocking `BLMOVE`s get their own connection each ([`Claimer`]),
//! never shared, with a response timeout longer than the block (see CRATE-NOTES: the default
//! 500 ms timeout would strand claimed jobs). Pub/sub is opened from [`Store::client`].

mod agents;
mod runners;
mod sessions;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, ScriptInvocation};

use crate::ids::SessionId;
use crate::keys::Keys;

pub use agents::{
    AgentDone, AssignOutcome, AttemptOutcome, Fenced, LeaseToken, Owner, StartOutcome,
};
pub use runners::{Claimer, RunnerInfo, RunnerTotals};
pub use sessions::{CancelOutcome, CreateOutcome, RecordedEvent, SessionCounts, SessionPage};

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
            .set_connection_timeout(Some(Duration::from_secs(2)))
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

    /// A session transition with the standard keys and arguments of `lua/prelude.lua` filled in.
    pub(crate) fn session_script<'a>(
        &self,
        script: &'a Script,
        session: SessionId,
    ) -> ScriptInvocation<'a> {
        let k = self.keys.session(session);
        let mut inv = script.prepare_invoke();
        inv.key(k.session_hash())
            .key(k.todo_ids_list())
            .key(k.agent_ids_list())
            .key(k.pending_list())
            .key(k.events_stream())
            .arg(k.todo_prefix())
            .arg(k.agent_prefix())
            .arg(k.live_channel())
            .arg(self.opts.events_maxlen);
        inv
    }
}

/// Flat `HGETALL` pairs → field lookup.
pub(crate) struct Fields(Vec<String>);

impl Fields {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .chunks_exact(2)
            .find(|pair| pair[0] == name)
            .map(|pair| pair[1].as_str())
    }

    /// A field that is present and non-empty.
    pub(crate) fn some(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    pub(crate) fn req(&self, name: &str, what: &str) -> Result<&str> {
        self.get(name)
            .ok_or_else(|| StoreError::Corrupt(format!("{what} has no {name:?} field")))
    }
}
