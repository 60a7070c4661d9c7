//! Rate-limited logging of client mistakes (refused origins, refused connections, Socket.IO
//! protocol errors, bad tokens). One hostile client can make thousands a second; the log keeps
//! at most [`LINES_PER_MINUTE`] of them a minute and then says how many it left out. Every one is
//! still counted in the metrics by its caller.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Client-error lines logged per minute at most, across all clients.
pub const LINES_PER_MINUTE: u32 = 20;
const WINDOW: Duration = Duration::from_secs(60);

struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
}

static WINDOW_STATE: Mutex<Option<Window>> = Mutex::new(None);

/// Logs `kind` / `detail` at INFO unless this minute's budget is spent.
pub fn client_error(kind: &str, detail: &str) {
    if let Some(suppressed) = admit(Instant::now()) {
        if suppressed > 0 {
            tracing::info!(
                suppressed,
                "client errors: {suppressed} more lines were left out in the last minute (see swarmq_*_client_errors metrics)"
            );
        }
        tracing::info!(kind, detail, "client error");
    }
}

/// `Some(left out since the last logged line)` when a line may be logged now.
fn admit(now: Instant) -> Option<u64> {
    let mut state = WINDOW_STATE.lock().unwrap_or_else(|p| p.into_inner());
    let window = state.get_or_insert(Window {
        start: now,
        logged: 0,
        suppressed: 0,
    });
    if now.duration_since(window.start) >= WINDOW {
        window.start = now;
        window.logged = 0;
    }
    if window.logged >= LINES_PER_MINUTE {
        window.suppressed += 1;
        return None;
    }
    window.logged += 1;
    Some(std::mem::take(&mut window.suppressed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_logs_a_bounded_number_of_lines_and_counts_the_rest() {
        let t0 = Instant::now();
        let logged = (0..1000).filter(|_| admit(t0).is_some()).count();
        assert!(logged <= LINES_PER_MINUTE as usize, "{logged}");
        let next = admit(t0 + WINDOW).expect("a new minute logs again");
        assert!(next >= 1000 - LINES_PER_MINUTE as u64, "{next}");
    }
}
