//! What every handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use swarmq_shared::Store;

use crate::ratelimit::RateLimiter;
use crate::realtime::Relay;
use crate::sessions::SessionService;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub sessions: SessionService,
    pub relay: Relay,
    pub create_limiter: Arc<RateLimiter>,
    /// Use X-Forwarded-For as the client address (behind a trusted proxy).
    pub trust_forwarded_for: bool,
    pub metrics: PrometheusHandle,
}
