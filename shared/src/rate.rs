//! A token bucket: the arithmetic behind the coordinator's per-client session-creation limit and
//! the runner's per-worker `log` line limit.

use std::time::{Duration, Instant};

/// Holds at most `capacity` tokens (the burst), refilled continuously at `per_sec`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(capacity: f64, per_sec: f64, now: Instant) -> Self {
        Self {
            capacity,
            per_sec,
            tokens: capacity,
            at: now,
        }
    }

    /// `rate` a second, with one second of burst (at least 1).
    pub fn per_second(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self::new(rate, rate, Instant::now())
    }

    /// `rate` a minute, with one minute of burst.
    pub fn per_minute(rate: u32, now: Instant) -> Self {
        let capacity = f64::from(rate);
        Self::new(capacity, capacity / 60.0, now)
    }

    /// Takes one token: `Ok`, or how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.tokens = self.tokens_at(now);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
        }
    }

    /// Takes one token now; false when there is none.
    pub fn try_take(&mut self) -> bool {
        self.take(Instant::now()).is_ok()
    }

    /// Refilled to the brim by `now`: forgetting this bucket loses nothing.
    pub fn is_full_at(&self, now: Instant) -> bool {
        self.tokens_at(now) >= self.capacity
    }

    fn tokens_at(&self, now: Instant) -> f64 {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.per_sec;
        (self.tokens + refill).min(self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_beyond_the_rate_is_refused() {
        let mut bucket = TokenBucket::per_second(10);
        let taken = (0..100).filter(|_| bucket.try_take()).count();
        assert!((10..=11).contains(&taken), "{taken}");
    }

    #[test]
    fn a_refusal_says_how_long_until_the_next_token() {
        let start = Instant::now();
        let mut bucket = TokenBucket::per_minute(3, start);
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        assert_eq!(bucket.take(start), Err(Duration::from_secs(20)));
        assert!(!bucket.is_full_at(start + Duration::from_secs(59)));
        assert!(bucket.is_full_at(start + Duration::from_secs(60)));
        assert_eq!(bucket.take(start + Duration::from_secs(20)), Ok(()));
    }
}
