//! The settings both daemons take — where Redis is, the key prefix, how many events a session
//! keeps, the log format — written and documented once, and flattened into each binary's clap
//! struct (`#[command(flatten)]`), so `--help` and the env var names are the same in both.

use clap::Args;

use crate::store::Store;
use crate::telemetry::LogFormat;

#[derive(Clone, Debug, Args)]
pub struct CommonSettings {
    /// Redis URL: redis://[user:password@]host:port[/db], or rediss:// for TLS.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    #[arg(default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// Prefix of every Redis key and channel; the same on every coordinator and runner of one
    /// deployment (several deployments can share one Redis with different prefixes).
    #[arg(long, env = "SWARMQ_PREFIX", default_value = "swarmq")]
    pub prefix: String,

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
        Store::open(&self.redis_url, &self.prefix, self.events_maxlen)
    }
}
