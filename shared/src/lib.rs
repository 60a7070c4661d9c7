//! What both swarmq daemons share: the public data model, the event enum, the worker line
//! protocol, the Redis key schema, the Lua state transitions and a typed [`Store`] around them,
//! and the pieces of a daemon both need (settings, probes, backoff, rate limiting, signals).
//!
//! # Layout
//! - [`ids`]: newtype ids (`SessionId`, `AgentId`, `TodoId`, `RunnerId`) and `AgentJob`.
//! - [`model`]: `Session`, `Todo`, `Agent` exactly as the original plan's Step 1 types.
//! - [`event`]: the Socket.IO events, one enum; every transition that records state emits them.
//! - [`protocol`]: the lines a worker prints and the task lines it reads.
//! - [`keys`]: every Redis key and channel name; no other module formats a key.
//! - [`transitions`]: one type per Lua transition (the scripts are under `src/lua/`).
//! - [`store`]: the only code that talks to Redis: runs transitions, does the plain reads,
//!   opens every connection.
//! - [`reaper`]: hands a dead runner's work back; run by every live process.
//! - [`settings`]: the settings both daemons take; [`cli`]: parsing settings into one line of
//!   error at most.
//! - [`probes`]: `/metrics`, `/healthz`, `/readyz` for both daemons; [`metrics`]: the
//!   Prometheus recorder and every metric's description.
//! - [`telemetry`]: tracing set-up; [`shutdown`]: stopping on SIGINT/SIGTERM.
//! - [`backoff`]: the retry delays; [`rate`]: the token bucket.
//! - [`secrets`]: secret settings read from files or systemd credentials.
//! - [`token`]: configured secrets and the HTTP bearer check.
//! - [`text`]: characters a prompt or TODO may not hold, and printing text safely.

pub mod backoff;
pub mod cli;
pub mod event;
pub mod failpoint;
pub mod ids;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod probes;
pub mod protocol;
pub mod rate;
pub mod reaper;
pub mod secrets;
pub mod settings;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod token;
pub mod transitions;

pub use event::{Event, EventEnvelope};
pub use ids::{AgentId, AgentJob, IdError, RunnerId, SessionId, TodoId};
pub use keys::Keys;
pub use model::{Agent, AgentStatus, Session, SessionStatus, Todo, TodoStatus};
pub use store::{Store, StoreError};

/// Milliseconds since the Unix epoch, the unit of every timestamp in the public contract.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
