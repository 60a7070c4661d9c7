//! Operator settings. Each is a flag and an env var; the doc comments are the `--help` text.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use swarmq_shared::settings::CommonSettings;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlannerKind {
    /// Claude through the Anthropic Messages API (needs ANTHROPIC_API_KEY).
    Anthropic,
    /// Offline, deterministic: splits the prompt locally; no API call.
    Local,
}

#[derive(Clone, Debug, Parser)]
#[command(
    name = "swarmq-coordinator",
    version,
    about = "swarmq coordinator: the session HTTP API, Claude decomposition and the Socket.IO relay"
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonSettings,

    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,

    /// Anthropic API key; when set, decomposition uses Claude unless SWARMQ_PLANNER=local.
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<String>,

    /// Anthropic API base URL (as the official SDKs read it).
    #[arg(
        long,
        env = "ANTHROPIC_BASE_URL",
        default_value = "https://api.anthropic.com"
    )]
    pub anthropic_base_url: String,

    /// Model used for decomposition.
    #[arg(
        long,
        env = "ANTHROPIC_MODEL",
        default_value = "claude-sonnet-4-5-20250929"
    )]
    pub anthropic_model: String,

    /// Planner: anthropic or local. Default: anthropic when ANTHROPIC_API_KEY is set, else local.
    #[arg(long, env = "SWARMQ_PLANNER", value_enum)]
    pub planner: Option<PlannerKind>,

    /// Largest agentCount a session may ask for.
    #[arg(long, env = "SWARMQ_MAX_AGENTS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub max_agents: u32,

    /// Largest number of TODOs a decomposition may produce; more fails the session.
    #[arg(long, env = "SWARMQ_MAX_TODOS", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_todos: u32,

    /// Longest accepted prompt, in characters.
    #[arg(long, env = "SWARMQ_MAX_PROMPT_CHARS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=60_000))]
    pub max_prompt_chars: u32,

    /// Time allowed for one decomposition, retries included. A session still decomposing
    /// this long after its coordinator died is failed by any live coordinator.
    #[arg(long, env = "SWARMQ_DECOMPOSE_TIMEOUT_SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub decompose_timeout_secs: u64,

    /// Bearer token required on /api/* (`Authorization: Bearer …`) and for Socket.IO connections
    /// (`auth: {token}`). Unset: the API is open. /healthz and /readyz are always open.
    #[arg(long, env = "SWARMQ_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Bearer token protecting /metrics. Unset: /metrics is open.
    #[arg(long, env = "SWARMQ_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Allowed CORS origins, comma-separated (e.g. https://app.example.com), or * for any.
    #[arg(long, env = "SWARMQ_CORS_ORIGINS", default_value = "*")]
    pub cors_origins: String,

    /// Session creations allowed per client IP per minute on this coordinator (0 = unlimited);
    /// beyond it POST /api/sessions answers 429 with retry-after.
    #[arg(long, env = "SWARMQ_CREATE_RATE_PER_MIN", default_value_t = 120)]
    pub create_rate_per_min: u32,

    /// Take the client IP for the rate limit from X-Forwarded-For (only behind a trusted proxy).
    #[arg(long, env = "SWARMQ_TRUST_FORWARDED_FOR", default_value = "false",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub trust_forwarded_for: bool,

    /// Finished sessions' keys expire after this many seconds (0 = keep forever); the sessions
    /// index drops them as they go.
    #[arg(long, env = "SWARMQ_RETENTION_SECS", default_value_t = 604_800)]
    pub retention_secs: u64,
}

impl Config {
    pub fn planner_kind(&self) -> PlannerKind {
        self.planner.unwrap_or(if self.anthropic_api_key.is_some() {
            PlannerKind::Anthropic
        } else {
            PlannerKind::Local
        })
    }

    pub fn decompose_timeout(&self) -> Duration {
        Duration::from_secs(self.decompose_timeout_secs)
    }
}
