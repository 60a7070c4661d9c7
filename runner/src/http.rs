//! The runner's optional HTTP listener (`SWARMQ_RUNNER_HTTP`): `/metrics`, `/healthz` and
//! `/readyz` (not ready while draining), served by the probes both daemons share. `/metrics`
//! needs `SWARMQ_METRICS_TOKEN` as a bearer token when it is set.

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use swarmq_shared::probes;
use swarmq_shared::token::{Token, require_bearer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ctx::Ctx;

pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>, stop: CancellationToken) {
    let mut metrics: Router = probes::metrics_routes(swarmq_shared::metrics::install());
    if let Some(token) = Token::from_setting(ctx.config.metrics_token.as_deref()) {
        metrics = metrics.route_layer(middleware::from_fn_with_state(token, require_bearer));
    }
    let app = metrics.merge(probes::health_routes(
        ctx.store.clone(),
        Some(ctx.draining.clone()),
    ));
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "runner http listener failed");
    }
}
