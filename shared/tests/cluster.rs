//! The store on a real 6-node Redis Cluster (3 primaries, 3 replicas): every transition, the
//! blocking claim, the reads that span sessions (cross-slot pipelines) and the runners' control
//! channel work where keys are spread over three primaries.

use std::time::Duration;

use swarmq_shared::store::{Delivery, StoreOptions};
use swarmq_shared::transitions::{
    AfterCompletion, AssignOutcome, CancelOutcome, CompleteOutcome, CompleteTodo, StartAgent,
    StartOutcome,
};
use swarmq_shared::{AgentJob, RunnerId, SessionStatus, Store};
use swarmq_testkit::{RedisCluster, sessions};

fn store(cluster: &RedisCluster) -> Store {
    Store::open_target(&cluster.target(), "swarmq", StoreOptions::default()).expect("store")
}

/// Starts the agent of `job` and completes its TODOs until it ends.
async fn work(store: &Store, job: AgentJob, runner: &RunnerId) -> usize {
    let start = StartAgent {
        job,
        runner,
        max_attempts: 3,
    };
    let (token, mut next) = match store.run(&start).await.expect("start") {
        StartOutcome::Started { token, next } => (token, next),
        other => panic!("start: {other:?}"),
    };
    let mut done = 0;
    while let AssignOutcome::Assigned { todo_id, .. } = next {
        let complete = CompleteTodo {
            job,
            token: &token,
            todo_id,
            result: Some("ok"),
            then: AfterCompletion::TakeNext { max_attempts: 3 },
        };
        done += 1;
        next = match store.run(&complete).await.expect("complete") {
            CompleteOutcome::Recorded { next: Some(n) } => n,
            other => panic!("complete: {other:?}"),
        };
    }
    done
}

#[tokio::test]
async fn sessions_spread_over_the_primaries_run_to_completion() {
    let cluster = RedisCluster::start().await;
    let store = store(&cluster);
    let runner = RunnerId::generate("h");
    let mut all = Vec::new();
    for _ in 0..6 {
        all.extend(sessions::running_session(&store, &["a", "b", "c"], 2).await);
    }
    let owners: std::collections::BTreeSet<u16> = all
        .iter()
        .map(|j| {
            let key = store.keys().session(j.session_id).session_hash();
            cluster.owner_of_slot(cluster.slot_of(&key)).port
        })
        .collect();
    assert!(owners.len() >= 2, "six sessions on one primary: {owners:?}");

    let mut claimer = store
        .claimer(&runner, 0, Duration::from_secs(1))
        .await
        .expect("claimer");
    let mut done = 0;
    let mut finished: Option<String> = None;
    for _ in 0..all.len() {
        let job = claimer.claim(finished.as_deref()).await.expect("claim");
        let job = job.expect("a job within the block");
        done += work(&store, AgentJob::parse(&job).expect("job"), &runner).await;
        finished = Some(job);
    }
    assert_eq!(done, 18);
    for id in all.iter().map(|j| j.session_id) {
        let session = store.snapshot(id).await.expect("snapshot").expect("exists");
        assert_eq!(session.status, SessionStatus::Completed);
    }
    // Reads over sessions of every slot (pipelines split by slot).
    let page = store.list_sessions(20, None).await.expect("list");
    assert_eq!(page.sessions.len(), 6);
    let counts = store.session_counts(20).await.expect("counts");
    assert_eq!(counts.completed, 6);
}

#[tokio::test]
async fn events_and_the_cancel_come_over_sharded_pub_sub_from_the_sessions_node() {
    let cluster = RedisCluster::start().await;
    let store = store(&cluster);
    assert!(store.sharded_pubsub());
    let jobs = sessions::running_session(&store, &["a"], 1).await;
    let id = jobs[0].session_id;
    let keys = store.keys().session(id);
    let mut sub = store
        .sharded_subscriber()
        .await
        .expect("connect")
        .expect("a cluster");
    sub.subscribe(&keys.live_channel()).await.expect("live");
    sub.subscribe(&keys.control_channel())
        .await
        .expect("control");
    let outcome = store.cancel_session(id).await.expect("cancel");
    assert_eq!(outcome, CancelOutcome::Cancelled);
    let mut got = Vec::new();
    while got.len() < 3 {
        let next = tokio::time::timeout(Duration::from_secs(10), sub.next()).await;
        match next.expect("within 10 s").expect("connected") {
            Delivery::Message { channel, payload } => got.push((channel, payload)),
            Delivery::Gap => {}
        }
    }
    // agent:terminated and session:complete on the live channel, then the runners' cancel.
    assert!(got[0].1.contains("agent:terminated"), "{got:?}");
    assert!(got[1].1.contains("session:complete"), "{got:?}");
    assert_eq!(got[2], (keys.control_channel(), format!("cancel {id}")));
}

fn sharded_store(cluster: &RedisCluster, shards: u16) -> Store {
    let opts = StoreOptions {
        queue_shards: shards,
        ..StoreOptions::default()
    };
    Store::open_target(&cluster.target(), "swarmq", opts).expect("store")
}

/// Commands all primaries processed so far (`INFO stats`).
fn commands(cluster: &RedisCluster) -> u64 {
    cluster
        .primaries()
        .iter()
        .filter_map(|n| cluster.cli(n.port, &["INFO", "stats"]))
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("total_commands_processed:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_queue_shards_on_three_primaries_are_claimed_evenly() {
    let cluster = RedisCluster::start().await;
    let store = sharded_store(&cluster, 3);
    let keys = store.keys().clone();
    let owners: std::collections::BTreeSet<u16> = (0..3)
        .map(|i| {
            cluster
                .owner_of_slot(cluster.slot_of(&keys.ready_shard(i)))
                .port
        })
        .collect();
    assert_eq!(owners.len(), 3, "the shards share a primary");
    for _ in 0..30 {
        sessions::running_session(&store, &["a"], 2).await;
    }
    let depths = store.ready_depths().await.expect("depths");
    eprintln!("jobs per shard: {depths:?}");
    assert_eq!(depths.iter().sum::<u64>(), 60);
    assert!(
        depths.iter().all(|d| *d > 0),
        "a shard got nothing: {depths:?}"
    );

    let mut claimers = Vec::new();
    for r in 0..3 {
        let store = store.clone();
        claimers.push(tokio::spawn(async move {
            let runner = RunnerId::generate(&format!("r{r}"));
            let mut claimer = store
                .claimer(&runner, 0, Duration::from_secs(1))
                .await
                .expect("claimer");
            let mut got = Vec::new();
            while let Some(job) = claimer.claim(None).await.expect("claim") {
                got.push(job);
            }
            got
        }));
    }
    let mut claims = Vec::new();
    let mut all = Vec::new();
    for c in claimers {
        let got = c.await.expect("claimer task");
        claims.push(got.len());
        all.extend(got);
    }
    eprintln!("claims per runner: {claims:?}");
    let unique: std::collections::BTreeSet<&String> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (60, 60), "each job claimed once");
    assert_eq!(store.ready_depths().await.expect("depths"), vec![0, 0, 0]);

    // Idle: one claimer blocking on empty shards costs one command per shard per block.
    let runner = RunnerId::generate("idle");
    let mut idle = store
        .claimer(&runner, 0, Duration::from_secs(1))
        .await
        .expect("claimer");
    // What reading the counters costs by itself (redis-cli's own commands).
    let overhead = {
        let a = commands(&cluster);
        commands(&cluster) - a
    };
    let before = commands(&cluster);
    for _ in 0..3 {
        assert_eq!(idle.claim(None).await.expect("claim"), None);
    }
    let spent = commands(&cluster) - before - overhead;
    eprintln!("an idle claimer: {spent} commands over 3 blocks of 1 s (3 shards)");
}
