//! Giving freed memory back to the operating system.
//!
//! glibc's allocator keeps the pages of freed memory mapped (and counted in the RSS) in each of
//! its arenas until something trims them; after thousands of viewers leave, that is tens of MB
//! a coordinator would otherwise hold for good. A trim every [`INTERVAL`] returns them; it walks
//! the free lists, well under a millisecond for this process.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub const INTERVAL: Duration = Duration::from_secs(10);

/// Trims the allocator every [`INTERVAL`] until `stop` fires.
pub async fn release_periodically(stop: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => release_free_memory(),
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only releases free pages of the allocator's own arenas; it takes the
    // allocator's locks like any malloc call and touches no memory the program owns.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}
