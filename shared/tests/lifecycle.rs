//! A session's life across slots (docs/redis-schema.md): a coordinator that stops between any
//! two single-slot steps of creating a session leaves nothing, or a whole session that runs —
//! each test plays the steps a coordinator got through, then what the watchdog does.

use std::time::Duration;

use redis::AsyncCommands;
use swarmq_shared::transitions::{
    CreateOutcome, CreateSession, FailOutcome, FailSession, IndexSession, InitOutcome, InitSession,
};
use swarmq_shared::{AgentId, SessionId, SessionStatus, Store, Todo};
use swarmq_testkit::RedisServer;

const PREFIX: &str = "swarmq";

fn store(redis: &RedisServer) -> Store {
    Store::open(&redis.url(), PREFIX, 1000).expect("store")
}

fn init(id: SessionId) -> InitSession<'static> {
    InitSession {
        id,
        prompt: "p",
        agent_count: 2,
        created_at: 1,
        deadline: 2,
        retention: Duration::ZERO,
    }
}

fn index(id: SessionId) -> IndexSession {
    IndexSession {
        session_id: id,
        created_at: 1,
        deadline: 2,
    }
}

async fn zscore(redis: &RedisServer, key: &str, id: SessionId) -> Option<String> {
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    conn.zscore(key, id.to_string()).await.expect("zscore")
}

async fn ready(redis: &RedisServer) -> Vec<String> {
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    conn.lrange(format!("{{{PREFIX}}}:ready"), 0, -1)
        .await
        .expect("lrange")
}

#[tokio::test]
async fn stopped_after_indexing_leaves_nothing_and_the_id_is_retired() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let id = SessionId::new();
    store.run(&index(id)).await.expect("index");

    let page = store.list_sessions(10, None).await.expect("list");
    assert!(page.sessions.is_empty(), "a session that was never written");
    assert_eq!(store.trim_sessions_index(0, 10).await.expect("trim").0, 0);

    let outcome = store
        .recover_decomposition(id, "gone")
        .await
        .expect("watchdog");
    assert_eq!(outcome, FailOutcome::Missing);
    assert_eq!(zscore(&redis, "{swarmq}:sessions", id).await, None);
    assert_eq!(zscore(&redis, "{swarmq}:decomposing", id).await, None);

    // The coordinator wakes up and writes its session: refused, and nothing stays indexed.
    let late = store.open_session(&init(id)).await.expect("open");
    assert_eq!(late, InitOutcome::Abandoned);
    assert_eq!(store.snapshot(id).await.expect("snapshot"), None);
    assert_eq!(zscore(&redis, "{swarmq}:sessions", id).await, None);
}

#[tokio::test]
async fn a_session_is_listed_from_the_moment_it_exists() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let id = SessionId::new();
    assert_eq!(
        store.open_session(&init(id)).await.expect("open"),
        InitOutcome::Created
    );
    let page = store.list_sessions(10, None).await.expect("list");
    assert_eq!(page.sessions.len(), 1);
    assert_eq!(page.sessions[0].status, SessionStatus::Decomposing);
    assert!(zscore(&redis, "{swarmq}:decomposing", id).await.is_some());
}

#[tokio::test]
async fn stopped_before_enqueueing_the_watchdog_enqueues_the_jobs_once() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let id = SessionId::new();
    store.open_session(&init(id)).await.expect("open");
    let todos = [Todo::new("t".into())];
    let agents = [AgentId::new(), AgentId::new()];
    let create = CreateSession {
        id,
        todos: &todos,
        agents: &agents,
    };
    // Only the session's step: the coordinator stops before the queue's.
    assert_eq!(
        store.run(&create).await.expect("create"),
        CreateOutcome::Created
    );
    assert!(ready(&redis).await.is_empty());

    let outcome = store
        .recover_decomposition(id, "gone")
        .await
        .expect("watchdog");
    assert_eq!(
        outcome,
        FailOutcome::Unchanged {
            status: SessionStatus::Running
        }
    );
    let mut jobs = ready(&redis).await;
    jobs.sort();
    let mut want = create.jobs();
    want.sort();
    assert_eq!(jobs, want);
    assert_eq!(zscore(&redis, "{swarmq}:decomposing", id).await, None);

    // A second watchdog pass, or the coordinator's own late enqueue, pushes nothing more.
    store
        .recover_decomposition(id, "gone")
        .await
        .expect("again");
    assert_eq!(ready(&redis).await.len(), 2);
}

#[tokio::test]
async fn a_whole_creation_enqueues_and_leaves_the_decomposing_set() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let id = SessionId::new();
    store.open_session(&init(id)).await.expect("open");
    let todos = [Todo::new("t".into())];
    let agents = [AgentId::new()];
    let create = CreateSession {
        id,
        todos: &todos,
        agents: &agents,
    };
    let outcome = store.start_session(&create).await.expect("start");
    assert_eq!(outcome, CreateOutcome::Created);
    assert_eq!(ready(&redis).await, create.jobs());
    assert_eq!(zscore(&redis, "{swarmq}:decomposing", id).await, None);
}

#[tokio::test]
async fn stopped_after_failing_the_watchdog_only_drops_the_entry() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let id = SessionId::new();
    store.open_session(&init(id)).await.expect("open");
    let fail = FailSession {
        id,
        error: "planner down",
        only_if: SessionStatus::Decomposing,
    };
    assert_eq!(store.run(&fail).await.expect("fail"), FailOutcome::Failed);
    assert!(zscore(&redis, "{swarmq}:decomposing", id).await.is_some());

    let outcome = store
        .recover_decomposition(id, "gone")
        .await
        .expect("watchdog");
    assert_eq!(
        outcome,
        FailOutcome::Unchanged {
            status: SessionStatus::Failed
        }
    );
    assert_eq!(zscore(&redis, "{swarmq}:decomposing", id).await, None);
    let page = store.list_sessions(10, None).await.expect("list");
    assert_eq!(page.sessions[0].status, SessionStatus::Failed);
}

#[tokio::test]
async fn an_abandoned_decomposition_is_failed_by_the_watchdog() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let id = SessionId::new();
    store.open_session(&init(id)).await.expect("open");
    let outcome = store
        .recover_decomposition(id, "gone")
        .await
        .expect("watchdog");
    assert_eq!(outcome, FailOutcome::Failed);
    assert_eq!(zscore(&redis, "{swarmq}:decomposing", id).await, None);
    let status = store.session_status(id).await.expect("status");
    assert_eq!(status, Some(SessionStatus::Failed));
}
