//! Prometheus metrics: one recorder per process (installed once, even when tests start several
//! coordinators in one process), rendered as text by `GET /metrics`. Every metric is described
//! here, so the names live in one place; `docs/operations.md` lists them for operators.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::model::SessionStatus;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (first call) and returns the handle that renders `/metrics`.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 900.0,
                ])
                .map(|b| b.install_recorder())
                .ok()
                .and_then(Result::ok)
                // Another recorder was installed first (a test harness): render an empty one.
                .unwrap_or_else(|| PrometheusBuilder::new().build_recorder().handle());
            describe();
            start_counters_at_zero();
            handle
        })
        .clone()
}

/// A session reached a final status (`swarmq_sessions_finished_total{status}`), counted by the
/// process whose transition ended it.
pub fn count_session_finished(status: SessionStatus) {
    metrics::counter!("swarmq_sessions_finished_total", "status" => status.as_str()).increment(1);
}

/// Counters (and the fixed label values of labelled ones) that exist from the start at 0, so
/// `increase()`/`rate()` alerts see their first event (a series that appears at 1 has no
/// increase). Counters whose labels depend on the input (HTTP status, client error kind) appear
/// on first use.
const ZERO_COUNTERS: &[(&str, &[(&str, &str)])] = &[
    ("swarmq_sessions_created_total", &[]),
    (
        "swarmq_sessions_finished_total",
        &[
            ("status", "completed"),
            ("status", "failed"),
            ("status", "cancelled"),
        ],
    ),
    (
        "swarmq_llm_errors_total",
        &[
            ("status", "transport"),
            ("status", "timeout"),
            ("status", "invalid_reply"),
        ],
    ),
    ("swarmq_events_relayed_total", &[]),
    ("swarmq_events_delivered_total", &[]),
    (
        "swarmq_socket_evictions_total",
        &[
            ("reason", "queue-full"),
            ("reason", "backlog-full"),
            ("reason", "replay-stalled"),
        ],
    ),
    ("swarmq_socket_joins_refused_total", &[]),
    ("swarmq_relay_audit_repairs_total", &[]),
    ("swarmq_redis_errors_total", &[]),
    ("swarmq_reaped_runners_total", &[]),
    ("swarmq_reaped_jobs_total", &[]),
    (
        "swarmq_worker_lines_dropped_total",
        &[
            ("reason", "invalid"),
            ("reason", "oversized"),
            ("reason", "throttled"),
        ],
    ),
    ("swarmq_events_published_total", &[]),
    ("swarmq_stale_writes_rejected_total", &[]),
    ("swarmq_leases_lost_total", &[]),
    (
        "swarmq_http_connections_refused_total",
        &[
            ("reason", "connection limit reached"),
            ("reason", "per-address connection limit reached"),
        ],
    ),
    ("swarmq_http_accept_errors_total", &[]),
    ("swarmq_http_origin_refused_total", &[]),
];

fn start_counters_at_zero() {
    for (name, labels) in ZERO_COUNTERS {
        if labels.is_empty() {
            metrics::counter!(*name).increment(0);
        }
        for (key, value) in *labels {
            metrics::counter!(*name, *key => *value).increment(0);
        }
    }
}

fn describe() {
    describe_counter!(
        "swarmq_sessions_created_total",
        "Sessions created (decomposed and queued)"
    );
    describe_counter!(
        "swarmq_sessions_finished_total",
        "Sessions finished, by final status"
    );
    describe_gauge!(
        "swarmq_ready_queue_depth",
        "Agent jobs waiting for a runner"
    );
    describe_gauge!(
        "swarmq_pending_todos",
        "TODOs pending in running sessions (newest 1,000 sessions)"
    );
    describe_gauge!("swarmq_runners_live", "Runners whose lease is current");
    describe_gauge!("swarmq_runner_slots_total", "Slots of live runners");
    describe_gauge!("swarmq_runner_slots_busy", "Busy slots of live runners");
    describe_histogram!(
        "swarmq_decomposition_seconds",
        Unit::Seconds,
        "Time to decompose a prompt"
    );
    describe_counter!(
        "swarmq_llm_errors_total",
        "Failed decompositions, by HTTP status or kind"
    );
    describe_counter!(
        "swarmq_events_relayed_total",
        "Events relayed to Socket.IO rooms (once per event per room)"
    );
    describe_counter!(
        "swarmq_events_delivered_total",
        "Events handed to Socket.IO clients (once per event per client)"
    );
    describe_counter!(
        "swarmq_socket_evictions_total",
        "Socket.IO clients evicted for not keeping up, by reason"
    );
    describe_counter!(
        "swarmq_relay_audit_repairs_total",
        "Times a quiet room found events in the stream no live message had announced"
    );
    describe_counter!(
        "swarmq_socket_joins_refused_total",
        "session:join requests refused"
    );
    describe_counter!(
        "swarmq_socket_client_errors_total",
        "Socket.IO protocol mistakes by clients, by kind"
    );
    describe_gauge!("swarmq_socket_connections", "Connected Socket.IO clients");
    describe_gauge!(
        "swarmq_socket_rooms",
        "Sessions with clients on this coordinator"
    );
    describe_counter!("swarmq_http_requests_total", "HTTP requests, by status");
    describe_counter!(
        "swarmq_http_connections_refused_total",
        "Connections refused at accept by a connection cap, by reason"
    );
    describe_counter!(
        "swarmq_http_accept_errors_total",
        "Failed accepts (e.g. out of file descriptors)"
    );
    describe_counter!(
        "swarmq_http_origin_refused_total",
        "Requests refused for their Origin or Host"
    );
    describe_counter!("swarmq_redis_errors_total", "Redis calls that failed");
    describe_counter!(
        "swarmq_reaped_runners_total",
        "Dead runners whose work was handed back"
    );
    describe_counter!(
        "swarmq_reaped_jobs_total",
        "Agent jobs moved back to the ready list by the reaper"
    );
    describe_gauge!("swarmq_runner_slots", "Slots of this runner");
    describe_gauge!("swarmq_runner_busy_slots", "Agents this runner is working");
    describe_histogram!(
        "swarmq_task_duration_seconds",
        Unit::Seconds,
        "Time per TODO attempt, by outcome"
    );
    describe_counter!(
        "swarmq_worker_exits_total",
        "Worker processes ended, by outcome"
    );
    describe_counter!(
        "swarmq_worker_lines_dropped_total",
        "Worker stdout lines dropped, by reason"
    );
    describe_counter!(
        "swarmq_events_published_total",
        "Events recorded from worker output"
    );
    describe_counter!(
        "swarmq_stale_writes_rejected_total",
        "Writes refused because the agent was taken over"
    );
    describe_counter!(
        "swarmq_leases_lost_total",
        "Times this runner found it had been presumed dead"
    );
}
