//! The configured secrets and the bearer check, shared with the runner (`swarmq_shared::token`).

pub use swarmq_shared::token::{Token, require_bearer};
