//! Getting a Redis call through a Redis blip: a transition must not be lost because Redis
//! restarted or a connection dropped for a moment.

use std::future::Future;
use std::time::Duration;

use swarmq_shared::StoreError;
use swarmq_shared::backoff::Backoff;
use tokio_util::sync::CancellationToken;

use crate::ctx::Ctx;

/// The first wait before retrying a call that found Redis unavailable, doubling up to
/// [`RETRY_MAX`]: short, since a blip is usually over within a second.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Runs `call` until it succeeds. Gives up (`None`) when `cancel` fires, or at once on an error
/// that retrying cannot fix (logged as an error).
pub async fn persist<T, F, Fut>(
    ctx: &Ctx,
    what: &str,
    cancel: &CancellationToken,
    mut call: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    loop {
        match call().await {
            Ok(value) => return Some(value),
            Err(e) if e.is_unavailable() => {
                ctx.stats.count_redis_error();
                tracing::warn!(what, error = %e, "redis unavailable, retrying");
            }
            Err(e) => {
                ctx.stats.count_redis_error();
                tracing::error!(what, error = %e, "redis call failed");
                return None;
            }
        }
        if !backoff.wait(cancel).await {
            return None;
        }
    }
}
