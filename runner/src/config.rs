//! Operator settings of a runner. Each is a flag and an env var; the doc comments are `--help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use swarmq_shared::backoff::Backoff;
use swarmq_shared::settings::CommonSettings;

/// The longest wait between attempts at a TODO, however many failed (`SWARMQ_RETRY_BACKOFF_MS`
/// doubles per attempt up to this).
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Parser)]
#[command(
    name = "swarmq-runner",
    version,
    about = "swarmq runner: claims agent jobs from Redis and runs their worker processes"
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonSettings,

    /// Worker command, split on whitespace (no shell quoting: wrap complex commands in a script).
    #[arg(
        long,
        env = "SWARMQ_WORKER_CMD",
        default_value = "python3 workers/worker.py"
    )]
    pub worker_cmd: String,

    /// How workers start: `preload` (forked from one Python server per runner that imported
    /// the worker's modules once; `python SCRIPT.py` and `python -m MODULE` commands only, any
    /// other command starts cold) or `cold` (a fresh process each, always).
    #[arg(
        long,
        env = "SWARMQ_WORKER_START",
        value_enum,
        default_value = "preload"
    )]
    pub worker_start: crate::launcher::StartMode,

    /// Modules the preloaded server imports before forking workers (comma-separated;
    /// `module:function` also calls a warm-up function of it). One that fails is logged and left
    /// to the worker.
    #[arg(
        long,
        env = "SWARMQ_PRELOAD_MODULES",
        default_value = "swarmq_worker,anthropic,worker:preload"
    )]
    pub preload_modules: String,

    /// Working directory of workers (the project root for the default worker).
    #[arg(long, env = "SWARMQ_WORKER_CWD", default_value = ".")]
    pub worker_cwd: PathBuf,

    /// Agents (worker processes) this runner runs at once. Default: the number of CPUs; with
    /// SWARMQ_WORKER_START=preload, half the available memory at 32 MB per agent (at least the
    /// CPUs, at most 256).
    #[arg(long, env = "SWARMQ_RUNNER_SLOTS", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub slots: Option<u32>,

    /// CPU priority of workers: their nice value (0–19), so that when workers saturate the
    /// host's CPU the runner, which relays their lines, still runs first. 0 leaves them at the
    /// runner's own priority.
    #[arg(long, env = "SWARMQ_WORKER_NICE", default_value_t = 10,
          value_parser = clap::value_parser!(u8).range(0..=19))]
    pub worker_nice: u8,

    /// Workers that may be starting at once (started, and neither printed a line, went to sleep
    /// nor exited yet; one second at most each); the others wait their turn, so a burst of
    /// hundreds of agents does not start hundreds of interpreters at once. Default: 2 × the
    /// number of CPUs; 0 = no limit.
    #[arg(long, env = "SWARMQ_WORKER_MAX_STARTING",
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub worker_max_starting: Option<u32>,

    /// Longest a worker may spend on one TODO before its process group is killed.
    #[arg(long, env = "SWARMQ_TASK_TIMEOUT_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub task_timeout_secs: u64,

    /// Attempts per TODO (crashes, timeouts, `fail` lines, dead runners) before it is failed.
    #[arg(long, env = "SWARMQ_MAX_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,

    /// Runner lease: a runner silent this long is dead and its work is handed to others.
    #[arg(long, env = "SWARMQ_LEASE_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_secs: u64,

    /// On SIGTERM/SIGINT: how long running workers may finish their TODO before they are killed
    /// and their work handed back to the queue.
    #[arg(long, env = "SWARMQ_DRAIN_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub drain_secs: u64,

    /// After stdin is closed (no TODO left), how long a worker may take to clean up and exit.
    #[arg(long, env = "SWARMQ_WORKER_EXIT_GRACE_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub worker_exit_grace_secs: u64,

    /// First retry delay after a failed attempt, doubling per attempt (capped at 60 s).
    #[arg(long, env = "SWARMQ_RETRY_BACKOFF_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub retry_backoff_ms: u64,

    /// Longest stdout line accepted from a worker; longer lines are discarded and counted.
    #[arg(long, env = "SWARMQ_WORKER_MAX_LINE_BYTES", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(256..=16_777_216))]
    pub max_line_bytes: u64,

    /// `log` lines per second accepted from one worker (same burst); the excess is dropped and
    /// counted. `complete`, `fail` and `sandbox_ready` are never dropped.
    #[arg(long, env = "SWARMQ_WORKER_MAX_EVENTS_PER_SEC", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_events_per_sec: u32,

    /// Extra environment variable names passed from the runner to workers (comma-separated),
    /// e.g. ANTHROPIC_API_KEY,ANTHROPIC_BASE_URL. Nothing else of the runner's environment is.
    #[arg(
        long,
        env = "SWARMQ_WORKER_PASS_ENV",
        default_value = "",
        hide_env_values = true
    )]
    pub worker_pass_env: String,

    /// Passed to workers as SOCKET_URL.
    #[arg(long, env = "SOCKET_URL", default_value = "http://localhost:3000")]
    pub socket_url: String,

    /// Passed to workers as E2B_API_KEY.
    #[arg(
        long,
        env = "E2B_API_KEY",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub e2b_api_key: String,

    /// Passed to workers as DEDALUS_API_KEY.
    #[arg(
        long,
        env = "DEDALUS_API_KEY",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub dedalus_api_key: String,

    /// Address of a small HTTP listener serving /metrics, /healthz and /readyz
    /// (e.g. 0.0.0.0:9090). Unset: no listener.
    #[arg(long, env = "SWARMQ_RUNNER_HTTP")]
    pub runner_http: Option<std::net::SocketAddr>,

    /// Bearer token protecting the runner's /metrics (`Authorization: Bearer …`); /healthz and
    /// /readyz stay open. Unset: /metrics is open.
    #[arg(long, env = "SWARMQ_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

impl Config {
    pub fn slots(&self) -> usize {
        self.slots.map(|s| s as usize).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
    }

    /// Workers allowed to be starting at once; `None`: no limit.
    pub fn max_starting(&self) -> Option<usize> {
        let n = self
            .worker_max_starting
            .map(|n| n as usize)
            .unwrap_or_else(|| {
                2 * std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            });
        (n > 0).then_some(n)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    pub fn task_timeout(&self) -> Duration {
        Duration::from_secs(self.task_timeout_secs)
    }

    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_secs)
    }

    pub fn exit_grace(&self) -> Duration {
        Duration::from_secs(self.worker_exit_grace_secs)
    }

    /// Backoff before retrying after the `attempts`-th failure.
    pub fn retry_backoff(&self, attempts: u32) -> Duration {
        Backoff::nth(
            Duration::from_millis(self.retry_backoff_ms),
            attempts.saturating_sub(1),
            MAX_RETRY_BACKOFF,
        )
    }
}
