//! Exponential backoff: the one way swarmq waits before trying again (opening a connection,
//! a transition during a Redis blip, registering, re-subscribing, calling the Anthropic API).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Doubling delays from `first` up to `max`: with 100 ms and 2 s, `next_delay` gives 100 ms,
/// 200 ms, 400 ms, … 2 s, 2 s. `reset` after a success starts again from `first`.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// For reconnecting to Redis (a connection, a subscription): 100 ms doubling to 2 s — back
    /// at once after a blip, a few commands a second at most while Redis is down for longer.
    pub const fn redis_reconnect() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(2))
    }

    /// The delay to wait now; the one after it is twice as long (at most `max`).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(self.max);
        delay
    }

    /// Back to `first` (the thing being retried worked).
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps the next delay. False when `cancel` fired first: the caller stops retrying.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = cancel.cancelled() => false,
        }
    }

    /// The delay before retry number `n` (0 = the first retry) of a sequence that starts at
    /// `first` and doubles up to `max`, for callers that count attempts rather than keep state.
    pub fn nth(first: Duration, n: u32, max: Duration) -> Duration {
        first
            .saturating_mul(2u32.saturating_pow(n.min(31)))
            .min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(100 * MS, 350 * MS);
        let delays: Vec<_> = (0..4).map(|_| b.next_delay()).collect();
        assert_eq!(delays, [100 * MS, 200 * MS, 350 * MS, 350 * MS]);
        b.reset();
        assert_eq!(b.next_delay(), 100 * MS);
    }

    #[test]
    fn the_nth_delay_matches_the_sequence_and_never_overflows() {
        let mut b = Backoff::new(3 * MS, 1000 * MS);
        for n in 0..12 {
            assert_eq!(
                Backoff::nth(3 * MS, n, 1000 * MS),
                b.next_delay(),
                "n = {n}"
            );
        }
        let huge = Backoff::nth(Duration::from_secs(600), u32::MAX, Duration::from_secs(60));
        assert_eq!(huge, Duration::from_secs(60));
    }

    #[tokio::test]
    async fn waiting_stops_when_cancelled() {
        let mut b = Backoff::new(10 * MS, Duration::from_secs(600));
        let cancel = CancellationToken::new();
        assert!(b.wait(&cancel).await);
        cancel.cancel();
        assert!(!b.wait(&cancel).await);
    }
}
