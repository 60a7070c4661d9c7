//! Named steps a test can stop a daemon at: with `SWARMQ_FAILPOINT=<name>` (debug builds only;
//! release builds compile this to nothing) the process logs `failpoint reached` when it gets
//! there and waits forever, so that the test can SIGKILL it at exactly that step — between two
//! single-slot writes of a session, say (`coordinator/tests/kill_steps.rs`).

/// Waits forever here when `SWARMQ_FAILPOINT` names this step.
pub async fn pause(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("SWARMQ_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::warn!(failpoint = name, "failpoint reached, waiting to be killed");
        std::future::pending::<()>().await;
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
