//! An event recorded without its live message (pub/sub lost it and nothing said so) still
//! reaches a watching client: a quiet room checks its session's recorded seq and relays what it
//! was never told about.

use std::time::Duration;

use serde_json::json;
use swarmq_testkit::{Cluster, Watcher, fixture_worker, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_live_message_was_lost_still_reaches_the_client() {
    let cluster = Cluster::start(1, &fixture_worker(""), &[]).await;
    let id = cluster.api().create_ok("hang", 1).await;
    let watcher = Watcher::node(&cluster.coordinator.url, &id, &["--since", "0"]);
    watcher.wait_line("ack", Duration::from_secs(30)).await;
    // Recorded as a transition records it (next seq, stream entry `<seq>-0`), never published.
    let hash = format!("swarmq:{{{id}}}:session");
    let seq = cluster
        .redis
        .cli(&["HINCRBY", &hash, "seq", "1"])
        .expect("HINCRBY");
    let seq: u64 = seq.trim().parse().expect("seq");
    let data = json!({
        "seq": seq,
        "agentId": "00000000-0000-4000-8000-000000000001",
        "action": "recorded, never published",
        "timestamp": 1,
    });
    let stream = format!("swarmq:{{{id}}}:events");
    let entry = format!("{seq}-0");
    let added = cluster.redis.cli(&[
        "XADD",
        &stream,
        &entry,
        "event",
        "agent:thinking",
        "data",
        &data.to_string(),
    ]);
    assert!(added.is_some_and(|r| r.contains(&entry)));
    wait_for(Duration::from_secs(60), "the unannounced event", || async {
        watcher
            .events()
            .into_iter()
            .any(|(name, d)| name == "agent:thinking" && d["seq"] == seq)
            .then_some(())
    })
    .await;
}
