//! A token bucket: `rate` tokens per second, holding at most `rate` (one second of burst).

use std::time::Instant;

pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        Self {
            rate,
            tokens: rate,
            last: Instant::now(),
        }
    }

    pub fn try_take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TokenBucket;

    #[test]
    fn a_burst_beyond_the_rate_is_refused() {
        let mut bucket = TokenBucket::new(10);
        let taken = (0..100).filter(|_| bucket.try_take()).count();
        assert!((10..=11).contains(&taken), "{taken}");
    }
}
