//! The worker-contract tests run against both ways a runner starts workers
//! (`SWARMQ_WORKER_START`): [`in_both_start_modes!`](crate::in_both_start_modes) makes a `cold`
//! and a `preload` test of one test function taking a [`Start`].

use crate::Cluster;

/// How the runners of a test start their workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Cold,
    Preload,
}

impl Start {
    /// The runner setting to pass (with the test's own).
    pub fn env(self) -> (&'static str, &'static str) {
        match self {
            Self::Cold => ("SWARMQ_WORKER_START", "cold"),
            Self::Preload => ("SWARMQ_WORKER_START", "preload"),
        }
    }

    /// In preload mode: the cluster's workers really were forked by a worker server, and none
    /// went cold. (Cold mode has nothing to check.)
    pub fn check(self, cluster: &Cluster) {
        if self == Self::Cold {
            return;
        }
        let logged = |needle: &str| {
            cluster
                .runners
                .iter()
                .any(|r| !r.process.log_messages(needle).is_empty())
        };
        assert!(logged("worker server ready"), "no worker server started");
        for cold in ["starting workers cold", "starting this one cold"] {
            assert!(!logged(cold), "a runner fell back to cold starts ({cold})");
        }
    }
}

/// `in_both_start_modes!(test_fn, ...)`: for each `async fn test_fn(start: Start)`, a module
/// `test_fn` with the tests `cold` and `preload`.
#[macro_export]
macro_rules! in_both_start_modes {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cold() {
                super::$name($crate::Start::Cold).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn preload() {
                super::$name($crate::Start::Preload).await
            }
        }
    )+};
}
