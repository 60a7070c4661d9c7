//! A client that reads slowly or not at all never delays the other clients of its room, and is
//! never skipped silently: it is evicted (told why, then closed) and resumes with `since`.
//! Real processes and clients: private Redis, the runner binary with a flooding fixture worker,
//! the official npm socket.io-client, and a raw websocket client that stops reading.

use std::time::Duration;

use serde_json::Value;
use swarmq_testkit::invariants::{Recorded, check_client_saw_all, check_finished, recorded};
use swarmq_testkit::{Cluster, StalledClient, Watcher, fixture_worker};

/// Generous bounds that only catch a hang, never time the healthy path.
const LIMIT: Duration = Duration::from_secs(120);

/// A runner that relays a flood of 2 KB lines as fast as the worker prints them (16 MB: more
/// than the kernel's socket buffers and the coordinator's per-connection queue hold), and a
/// coordinator with the given per-connection queue.
async fn flooding_cluster(socket_queue: &str) -> Cluster {
    let events = ("SWARMQ_EVENTS_MAXLEN", "100000");
    Cluster::start_with(
        1,
        &fixture_worker(""),
        &[("SWARMQ_WORKER_MAX_EVENTS_PER_SEC", "1000000"), events],
        &["--socket-queue", socket_queue, "--events-maxlen", "100000"],
    )
    .await
}

const FLOOD: &str = "sleep:2,flood:8000:2000";

/// What a stalled client received before it was evicted is exactly the first events of the
/// session, in order: nothing was skipped.
fn assert_prefix(r: &Recorded, events: &[(String, Value)]) {
    for (i, (name, data)) in events.iter().enumerate() {
        let seq = data["seq"].as_u64().expect("seq");
        assert_eq!(
            seq,
            i as u64 + 1,
            "event {i} ({name}) out of order or skipped"
        );
        assert_eq!(r.events[i].event.name(), name, "event {seq}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_does_not_change_what_a_healthy_one_receives() {
    // The default queue: what a deployment runs.
    let cluster = flooding_cluster("2048").await;
    let id = cluster.api().create_ok(FLOOD, 1).await;
    let stalled = StalledClient::join(&cluster.coordinator.url, &id, 0).await;
    let healthy = Watcher::node(&cluster.coordinator.url, &id, &["--since", "0"]);

    // The healthy client gets every event, in order, and session:complete — while the stalled
    // one is connected or after it was evicted, whichever the coordinator chose.
    let events = healthy.finish(LIMIT).await;
    let r = recorded(&cluster.redis.url(), &id).await;
    check_finished(&r);
    check_client_saw_all(&r, &events);

    // The stalled client, reading again, finds a prefix of the events, the reason it was
    // dropped, and the close.
    let resumed = stalled.resume(Duration::from_secs(30)).await;
    let notice = resumed
        .evicted
        .expect("the stalled client was told it was evicted");
    assert_eq!(notice["reason"], "queue-full", "{notice}");
    assert!(
        notice["message"]
            .as_str()
            .is_some_and(|m| m.contains("since"))
    );
    assert!(resumed.closed, "the connection was closed after the notice");
    assert!(
        resumed.events.len() < r.events.len(),
        "it was evicted before the end"
    );
    assert_prefix(&r, &resumed.events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_evicted_and_resumes_with_exactly_the_recorded_events() {
    // A small queue, so that the slow client falls out of it many times over.
    let cluster = flooding_cluster("64").await;
    let id = cluster.api().create_ok(FLOOD, 1).await;
    let slow = Watcher::node(
        &cluster.coordinator.url,
        &id,
        &["--since", "0", "--slow", "2", "--timeout", "300"],
    );
    let healthy = Watcher::node(&cluster.coordinator.url, &id, &["--since", "0"]);

    let r_events = healthy.finish(LIMIT).await;
    let r = recorded(&cluster.redis.url(), &id).await;
    check_client_saw_all(&r, &r_events);

    let slow_lines = slow.lines();
    let slow_events = slow.finish(Duration::from_secs(300)).await;
    check_client_saw_all(&r, &slow_events);
    let evictions: Vec<Value> = slow_lines
        .into_iter()
        .filter(|l| l["type"] == "evicted")
        .collect();
    assert!(!evictions.is_empty(), "the slow client was never evicted");
}
