//! The settings both daemons take — where Redis is, the key prefix, how many events a session
//! keeps, the log format — written and documented once, and flattened into each binary's clap
//! struct (`#[command(flatten)]`), so `--help` and the env var names are the same in both.

use std::time::Duration;

use clap::Args;

use crate::store::{RedisTarget, Store, StoreOptions};
use crate::telemetry::LogFormat;

#[derive(Clone, Debug, Args)]
pub struct CommonSettings {
    /// Redis URL: redis://[user:password@]host:port[/db], or rediss:// for TLS. With
    /// REDIS_SENTINELS only its user, password, db and scheme are used (the host comes from
    /// Sentinel).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    #[arg(default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// Redis Sentinels, host:port,host:port,…: when set, the primary is whatever they name for
    /// REDIS_SENTINEL_MASTER, followed across failovers.
    #[arg(long, env = "REDIS_SENTINELS", default_value = "")]
    pub redis_sentinels: String,

    /// The master name the Sentinels monitor (required with REDIS_SENTINELS).
    #[arg(long, env = "REDIS_SENTINEL_MASTER")]
    pub redis_sentinel_master: Option<String>,

    /// Password of the Sentinels themselves (their requirepass), if any.
    #[arg(long, env = "REDIS_SENTINEL_PASSWORD", hide_env_values = true)]
    pub redis_sentinel_password: Option<String>,

    /// Redis Cluster seed nodes, comma-separated URLs (redis://[user:password@]host:port, or
    /// rediss:// for TLS) or host:port: when set, swarmq runs on that cluster (its slot map is
    /// learned from any live seed) and REDIS_URL / REDIS_SENTINELS are not used.
    #[arg(
        long,
        env = "REDIS_CLUSTER_NODES",
        default_value = "",
        hide_env_values = true
    )]
    pub redis_cluster_nodes: String,

    /// Password of the Redis data nodes with REDIS_SENTINELS or REDIS_CLUSTER_NODES (else the
    /// one in REDIS_URL / the node URLs); ignored with a plain REDIS_URL.
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// Durability: replicas that must acknowledge (WAIT) every state transition before it is
    /// acted on or answered; 0 answers as soon as the primary has it (a failover can lose it).
    #[arg(long, env = "SWARMQ_REDIS_MIN_REPLICAS_ACKED", default_value_t = 0)]
    pub redis_min_replicas_acked: u64,

    /// How long to wait for those acknowledgements (ms); short of them the call fails as
    /// unavailable (503 / retried), never silently.
    #[arg(long, env = "SWARMQ_REDIS_WAIT_TIMEOUT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=4000))]
    pub redis_wait_timeout_ms: u64,

    /// Prefix of every Redis key and channel; the same on every coordinator and runner of one
    /// deployment (several deployments can share one Redis with different prefixes).
    #[arg(long, env = "SWARMQ_PREFIX", default_value = "swarmq")]
    pub prefix: String,

    /// Shards of the ready queue: lists with their own hash tags, spread over a Redis Cluster's
    /// primaries; a session's agent jobs go to one shard (from its id) and runners claim from
    /// all. The same on every coordinator and runner; 1 (the default) is one list. Changing it
    /// strands the jobs waiting in shards that no longer exist (drain the queue first).
    #[arg(long, env = "SWARMQ_QUEUE_SHARDS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub queue_shards: u16,

    /// Approximate number of events kept per session for replay (Redis stream MAXLEN ~); use
    /// the same value on every coordinator and runner.
    #[arg(long, env = "SWARMQ_EVENTS_MAXLEN", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub events_maxlen: u64,

    /// Log format: human or json. RUST_LOG sets the filter (default info).
    #[arg(long, env = "SWARMQ_LOG_FORMAT", default_value = "human")]
    pub log_format: LogFormat,
}

impl CommonSettings {
    /// The store these settings name. It connects at its first command, so a daemon can start
    /// before Redis does; the error (a malformed URL or prefix) never shows the URL's password.
    pub fn store(&self) -> Result<Store, String> {
        let opts = StoreOptions {
            events_maxlen: self.events_maxlen,
            min_replicas_acked: self.redis_min_replicas_acked,
            wait_timeout: Duration::from_millis(self.redis_wait_timeout_ms),
            queue_shards: self.queue_shards,
            ..StoreOptions::default()
        };
        Store::open_target(&self.target()?, &self.prefix, opts)
    }

    /// Where Redis is, for the startup log line (never a password).
    pub fn redis_description(&self) -> String {
        self.target()
            .map(|t| t.describe())
            .unwrap_or_else(|e| e.to_string())
    }

    /// Where Redis is: the cluster, REDIS_URL, or the Sentinels.
    pub fn target(&self) -> Result<RedisTarget, String> {
        if !self.redis_cluster_nodes.trim().is_empty() {
            if !self.redis_sentinels.trim().is_empty() {
                return Err("set REDIS_CLUSTER_NODES or REDIS_SENTINELS, not both".into());
            }
            return RedisTarget::cluster(&self.redis_cluster_nodes, self.redis_password.as_deref());
        }
        RedisTarget::parse(
            &self.redis_url,
            &self.redis_sentinels,
            self.redis_sentinel_master.as_deref(),
            self.redis_sentinel_password.as_deref(),
            self.redis_password.as_deref(),
        )
    }
}
