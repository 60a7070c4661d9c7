//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use swarmq_shared::Store;

use crate::planner::{Limits, Planner};
use crate::realtime::Relay;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub planner: Arc<Planner>,
    pub relay: Relay,
    pub limits: SessionLimits,
}

#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    pub max_agents: u32,
    pub max_prompt_chars: usize,
    pub plan: Limits,
    pub decompose_timeout: Duration,
}
