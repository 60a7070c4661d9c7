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
    pub idempotency: crate::idempotency::Idempotency,
    pub relay: Relay,
    /// Checks credentials and mints share tokens.
    pub auth: Arc<crate::share::Auth>,
    pub create_limiter: RateLimiter,
    /// Proxies whose X-Forwarded-For names the client (see `client_addr`).
    pub trusted_proxies: Arc<crate::client_addr::TrustedProxies>,
    pub metrics: PrometheusHandle,
}
