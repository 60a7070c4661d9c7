//! Decomposition: turning a prompt into `agentCount` independent TODO descriptions.
//!
//! - [`anthropic`]: Claude through the Messages API (reqwest), with the official SDKs' retry rules.
//! - [`local`]: an offline, deterministic splitter for demos, tests and machines without a key.
//! - [`reply`]: validation of an untrusted model reply into TODO descriptions.

pub mod anthropic;
pub mod local;
pub mod reply;

use std::time::Duration;

pub use anthropic::AnthropicPlanner;

/// The longest TODO description the model is asked for.
pub const ASKED_DESCRIPTION_CHARS: usize = 1000;
/// The longest TODO description accepted: twice what is asked, because models overshoot a
/// character budget they cannot count, and failing a whole session over a TODO of 1,100
/// characters helps no one; a reply beyond this did not follow the instruction at all.
pub const MAX_DESCRIPTION_CHARS: usize = 2 * ASKED_DESCRIPTION_CHARS;

/// What a decomposition may produce.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_todos: usize,
    pub max_description_chars: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("Anthropic API error {status} ({kind}): {message}")]
    Api {
        status: u16,
        kind: String,
        message: String,
    },
    #[error("could not reach the Anthropic API: {0}")]
    Transport(String),
    #[error("decomposition did not finish within {0:?}")]
    Timeout(Duration),
    #[error("the model's reply was cut off (stop_reason max_tokens)")]
    Truncated,
    #[error("the model refused to decompose the prompt")]
    Refused,
    #[error("the model's reply is not the expected JSON: {0}")]
    InvalidReply(String),
    #[error("the model returned no TODOs")]
    NoTodos,
    #[error("the model returned {got} TODOs, more than the limit of {max}")]
    TooManyTodos { got: usize, max: usize },
    #[error("TODO {index} of the model's reply is invalid: {reason}")]
    BadTodo { index: usize, reason: String },
}

impl PlanError {
    /// The `status` label of `swarmq_llm_errors_total`.
    pub fn metric_label(&self) -> String {
        match self {
            Self::Api { status, .. } => status.to_string(),
            Self::Transport(_) => "transport".into(),
            Self::Timeout(_) => "timeout".into(),
            _ => "invalid_reply".into(),
        }
    }
}

pub enum Planner {
    Anthropic(AnthropicPlanner),
    Local,
}

impl Planner {
    pub fn describe(&self) -> String {
        match self {
            Self::Anthropic(p) => format!("anthropic ({})", p.model()),
            Self::Local => "local (offline, no API calls)".into(),
        }
    }

    /// TODO descriptions for the prompt, validated against `limits`.
    pub async fn plan(
        &self,
        prompt: &str,
        agent_count: u32,
        limits: Limits,
    ) -> Result<Vec<String>, PlanError> {
        match self {
            Self::Anthropic(p) => p.plan(prompt, agent_count, limits).await,
            Self::Local => Ok(local::plan(prompt, agent_count, limits)),
        }
    }
}
