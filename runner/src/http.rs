//! The runner's optional HTTP listener (`SWARMQ_RUNNER_HTTP`): `/metrics`, `/healthz` and
//! `/readyz` (not ready while draining), served by the probes both daemons share.

use std::sync::Arc;

use axum::Router;
use swarmq_shared::probes;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ctx::Ctx;

pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>, stop: CancellationToken) {
    let app: Router = probes::metrics_routes(swarmq_shared::metrics::install()).merge(
        probes::health_routes(ctx.store.clone(), Some(ctx.draining.clone())),
    );
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "runner http listener failed");
    }
}
