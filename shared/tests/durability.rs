//! The durability option against a real Redis whose primary has no replica: a write refused by
//! the primary itself (`min-replicas-to-write`: `NOREPLICAS`, inside the EVALSHA + WAIT
//! pipeline, or the relay's fence write) is "unavailable" — a 503 or a retry, never an internal
//! error — and a write it accepts but no replica acknowledges is `NotReplicated`.

use std::time::Duration;

use swarmq_shared::keys::Keys;
use swarmq_shared::store::{RedisTarget, StoreOptions};
use swarmq_shared::transitions::InitSession;
use swarmq_shared::{SessionId, Store, StoreError};
use swarmq_testkit::{RedisServer, sessions};

fn durable_store(redis: &RedisServer) -> Store {
    let opts = StoreOptions {
        min_replicas_acked: 1,
        wait_timeout: Duration::from_millis(100),
        ..StoreOptions::default()
    };
    let target = RedisTarget::Single(redis.url());
    Store::with_target(&target, Keys::new("swarmq").unwrap(), opts).unwrap()
}

#[tokio::test]
async fn writes_a_primary_refuses_or_no_replica_acknowledges_are_unavailable() {
    let redis = RedisServer::start();
    let plain = Store::new(
        &redis.url(),
        Keys::new("swarmq").unwrap(),
        StoreOptions::default(),
    )
    .unwrap();
    let jobs = sessions::running_session(&plain, &["a"], 1).await;
    let session = jobs[0].session_id;
    let store = durable_store(&redis);

    // Accepted by the primary, acknowledged by nobody.
    let err = store
        .with_replicated_reads()
        .last_seq(session)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotReplicated {
                acked: 0,
                wanted: 1
            }
        ),
        "{err:?}"
    );

    // Refused by the primary itself.
    redis.cli(&["CONFIG", "SET", "min-replicas-to-write", "1"]);
    let err = store
        .with_replicated_reads()
        .events_after(session, 0, 10)
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "fenced read: {err:?}");
    let init = InitSession {
        id: SessionId::new(),
        prompt: "p",
        agent_count: 1,
        created_at: 1,
        deadline: u64::MAX,
        retention: Duration::ZERO,
    };
    let err = store.run(&init).await.unwrap_err();
    assert!(err.is_unavailable(), "durable transition: {err:?}");
    // Plain reads are not affected.
    assert!(plain.last_seq(session).await.unwrap().is_some());
}
