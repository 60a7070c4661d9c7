//! The session-creation limit, counted in Redis so that every coordinator behind a load
//! balancer counts the same clients: one counter per client per fixed one-minute window.

use std::time::Duration;

use super::{Result, Store};

/// The window the limit counts in.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

impl Store {
    /// Counts one creation by `client`: `Ok(None)` when it is within `per_window`, else
    /// `Some(wait)` until the window ends. Atomic (MULTI), so concurrent coordinators never
    /// both let the last one through.
    pub async fn take_creation(&self, client: &str, per_window: u32) -> Result<Option<Duration>> {
        let key = self.keys.create_rate(client);
        let (count, ttl_ms): (u64, i64) = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(RATE_WINDOW.as_millis() as u64)
            .arg("NX")
            .ignore()
            .pttl(&key)
            .query_async(&mut self.conn())
            .await?;
        if count <= u64::from(per_window) {
            return Ok(None);
        }
        let wait = u64::try_from(ttl_ms).unwrap_or(RATE_WINDOW.as_millis() as u64);
        Ok(Some(Duration::from_millis(wait)))
    }
}
