//! Operator settings. Each is a flag and an env var; the doc comments are the `--help` text.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use swarmq_shared::settings::CommonSettings;

use crate::planner::{Limits, MAX_DESCRIPTION_CHARS};
use crate::sessions::SessionLimits;

/// Session creations a minute per client address when the API is open to other hosts without
/// a token and `SWARMQ_CREATE_RATE_PER_MIN` is unset.
pub const DEFAULT_OPEN_CREATE_RATE: u32 = 120;

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

    /// Address to listen on. Default: 0.0.0.0 with SWARMQ_API_TOKEN set, 127.0.0.1 without; a
    /// non-loopback address without a token is refused unless SWARMQ_ALLOW_INSECURE is set.
    #[arg(long, env = "HOST")]
    pub host: Option<IpAddr>,

    /// Serve an open API (no SWARMQ_API_TOKEN) on a non-loopback HOST. Anyone who can reach it
    /// can create sessions (spending the Anthropic key), read prompts and cancel work.
    #[arg(long, env = "SWARMQ_ALLOW_INSECURE", default_value = "false",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_insecure: bool,

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

    /// Key signing share tokens (read-only links to one session). Unset: derived from
    /// SWARMQ_API_TOKEN. Changing it revokes every share token it signed.
    #[arg(long, env = "SWARMQ_SHARE_KEY", hide_env_values = true)]
    pub share_key: Option<String>,

    /// The share key before the last rotation: tokens it signed are still accepted (never
    /// minted) until it is removed.
    #[arg(long, env = "SWARMQ_SHARE_KEY_PREVIOUS", hide_env_values = true)]
    pub share_key_previous: Option<String>,

    /// Bearer token protecting /metrics. Unset: /metrics is open.
    #[arg(long, env = "SWARMQ_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Browser origins allowed besides the coordinator's own, comma-separated
    /// (e.g. https://app.example.com), or * for any. Unset: same-origin only. Requests from
    /// other origins (API, Socket.IO handshake and websocket upgrade) are refused with 403.
    #[arg(long, env = "SWARMQ_CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    /// Session creations allowed per client per minute, counted in Redis across all
    /// coordinators (0 = unlimited); beyond it POST /api/sessions answers 429 with
    /// Retry-After. A client is the API token when one is set, else the client address.
    /// Unset: off with an API token or on loopback, 120 when the API is open to other hosts.
    #[arg(long, env = "SWARMQ_CREATE_RATE_PER_MIN")]
    pub create_rate_per_min: Option<u32>,

    /// How long an `Idempotency-Key` is remembered after its first use (seconds): a retry
    /// within it gets the first answer, after it the key is new again.
    #[arg(long, env = "SWARMQ_IDEMPOTENCY_TTL_SECS", default_value_t = 86_400)]
    pub idempotency_ttl_secs: u64,

    /// Proxies whose X-Forwarded-For is believed: addresses or CIDR blocks, comma-separated
    /// (e.g. 127.0.0.1,10.0.0.0/8). From them the client is the last untrusted hop; they are
    /// exempt from the per-address connection cap. Unset: the peer address is the client.
    #[arg(long, env = "SWARMQ_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,

    /// Replaced by SWARMQ_TRUSTED_PROXIES (setting it true without a proxy list is an error).
    #[arg(long, env = "SWARMQ_TRUST_FORWARDED_FOR", default_value = "false", hide = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub trust_forwarded_for: bool,

    /// Open connections at most (websockets included); more get a 503 and are closed. Lowered
    /// at start to what the open-file limit leaves room for.
    #[arg(long, env = "SWARMQ_MAX_CONNECTIONS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Open connections per client address (IPv4 address or IPv6 /64) at most; trusted proxies
    /// are exempt. 0 = no per-address cap.
    #[arg(long, env = "SWARMQ_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: u32,

    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open.
    #[arg(long, env = "SWARMQ_HEADER_READ_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout_secs: u64,

    /// After SIGTERM: seconds in-flight requests (a POST /api/sessions may be decomposing for up
    /// to SWARMQ_DECOMPOSE_TIMEOUT_SECS) get to finish before the coordinator stops anyway.
    /// Idle connections close at once. Whatever stops it must wait longer.
    #[arg(long, env = "SWARMQ_SHUTDOWN_GRACE_SECS", default_value_t = 130,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_secs: u64,

    /// Seconds a request body may send nothing before the request is dropped.
    #[arg(long, env = "SWARMQ_IDLE_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout_secs: u64,

    /// Finished sessions' keys expire after this many seconds (0 = keep forever); the sessions
    /// index drops them as they go.
    #[arg(long, env = "SWARMQ_RETENTION_SECS", default_value_t = 604_800)]
    pub retention_secs: u64,

    /// Socket.IO: packets that may wait to be written to one connection. A connection that lets
    /// its queue fill (a client that stopped reading) is evicted: sent `connection:evicted`,
    /// then closed, so it reconnects and resumes with `since`. Other clients never wait for it.
    #[arg(long, env = "SWARMQ_SOCKET_QUEUE", default_value_t = 2048,
          value_parser = clap::value_parser!(u32).range(16..=1_000_000))]
    pub socket_queue: u32,

    /// Socket.IO: live events parked for a client while it still receives the replay of its
    /// join; beyond this it is evicted (as above).
    #[arg(long, env = "SWARMQ_SOCKET_BACKLOG", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(16..=1_000_000))]
    pub socket_backlog: u32,

    /// Socket.IO: seconds a client receiving its replay may read nothing before it is evicted.
    #[arg(long, env = "SWARMQ_SOCKET_STALL_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub socket_stall_secs: u64,

    /// Socket.IO: largest message a client may send, in bytes (a websocket message or a polling
    /// request body); clients only send small joins. Larger ones close the connection.
    #[arg(long, env = "SWARMQ_SOCKET_MAX_MESSAGE_BYTES", default_value_t = 65_536,
          value_parser = clap::value_parser!(u32).range(1024..=16_777_216))]
    pub socket_max_message_bytes: u32,

    /// Socket.IO: seconds from the connection's handshake to its namespace CONNECT (where the
    /// token is checked); a connection that does not get there in time is closed.
    #[arg(long, env = "SWARMQ_SOCKET_CONNECT_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub socket_connect_timeout_secs: u64,
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

    /// What a session may ask for and how long it may take.
    /// The creation limit in force: the setting, else off unless the API is open to other
    /// hosts without a token (`SWARMQ_ALLOW_INSECURE`), where each address gets 120 a minute.
    pub fn create_rate(&self, secured: bool, host: IpAddr) -> u32 {
        match self.create_rate_per_min {
            Some(n) => n,
            None if secured || host.is_loopback() => 0,
            None => DEFAULT_OPEN_CREATE_RATE,
        }
    }

    pub fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            max_agents: self.max_agents,
            max_prompt_chars: self.max_prompt_chars as usize,
            plan: Limits {
                max_todos: self.max_todos as usize,
                max_description_chars: MAX_DESCRIPTION_CHARS,
            },
            decompose_timeout: self.decompose_timeout(),
            retention: Duration::from_secs(self.retention_secs),
        }
    }

    pub fn conn_limits(&self) -> crate::listener::ConnLimits {
        crate::listener::ConnLimits {
            max_connections: crate::listener::fit_to_open_file_limit(self.max_connections as usize),
            max_per_ip: self.max_connections_per_ip as usize,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
        }
    }

    /// Where to listen, from HOST and whether the API has a token: an open API stays on
    /// loopback unless SWARMQ_ALLOW_INSECURE says otherwise.
    pub fn listen_host(&self) -> Result<IpAddr, String> {
        let secured = crate::token::Token::from_setting(self.api_token.as_deref()).is_some();
        match self.host {
            None if secured => Ok(IpAddr::from([0, 0, 0, 0])),
            None => Ok(IpAddr::from([127, 0, 0, 1])),
            Some(host) if secured || host.is_loopback() || self.allow_insecure => Ok(host),
            Some(host) => Err(format!(
                "refusing to listen on {host} without SWARMQ_API_TOKEN: anyone who can reach it could create sessions (spending your Anthropic key), read prompts and cancel work; set SWARMQ_API_TOKEN, or HOST=127.0.0.1, or SWARMQ_ALLOW_INSECURE=true"
            )),
        }
    }

    pub fn socket_limits(&self) -> crate::realtime::Limits {
        crate::realtime::Limits {
            queue: self.socket_queue as usize,
            backlog: self.socket_backlog as usize,
            stall: Duration::from_secs(self.socket_stall_secs),
            max_message: self.socket_max_message_bytes as usize,
            connect_timeout: Duration::from_secs(self.socket_connect_timeout_secs),
        }
    }
}
