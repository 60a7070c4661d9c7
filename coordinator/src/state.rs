//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use swarmq_shared::Store;

use crate::planner::{Limits, Planner};
use crate::ratelimit::RateLimiter;
use crate::realtime::Relay;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub planner: Arc<Planner>,
    pub relay: Relay,
    pub limits: SessionLimits,
    pub create_limiter: Arc<RateLimiter>,
    /// Use X-Forwarded-For as the client address (behind a trusted proxy).
    pub trust_forwarded_for: bool,
    pub metrics: PrometheusHandle,
}

#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    pub max_agents: u32,
    pub max_prompt_chars: usize,
    pub plan: Limits,
    pub decompose_timeout: Duration,
    /// How long a finished session's keys are kept.
    pub retention: Duration,
}
