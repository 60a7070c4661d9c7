//! Per-client limit on session creation: a token bucket per IP (`SWARMQ_CREATE_RATE_PER_MIN`,
//! burst of the same size), kept in memory per coordinator and pruned so it stays small.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use swarmq_shared::rate::TokenBucket;

/// Clients remembered before the full buckets are forgotten (bounds the memory a flood of
/// addresses can take).
const MAX_CLIENTS: usize = 50_000;

pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` when `ip` may create a session now, else how long until it may.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_CLIENTS {
            // Forget clients whose bucket has refilled: they lose nothing.
            buckets.retain(|_, bucket| !bucket.is_full_at(now));
        }
        buckets
            .entry(ip)
            .or_insert_with(|| TokenBucket::per_minute(self.per_minute, now))
            .take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_past_the_limit_is_refused_with_a_wait() {
        let limiter = RateLimiter::new(3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(ip).is_ok());
        }
        let wait = limiter.check(ip).unwrap_err();
        assert!(
            wait > Duration::from_secs(10) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(
            limiter.check("10.0.0.2".parse().unwrap()).is_ok(),
            "other clients unaffected"
        );
        assert!(RateLimiter::new(0).check(ip).is_ok());
    }
}
