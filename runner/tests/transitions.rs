//! The agent transitions (`shared/src/lua`) called directly against a private Redis: an agent
//! takes its first TODO when it starts, ends in the same step as its last completion, and a
//! retried completion after that answers as the first call did.

use std::time::Duration;

use swarmq_shared::store::{AgentDone, AssignOutcome, CreateOutcome, Fenced, StartOutcome};
use swarmq_shared::{AgentId, AgentJob, RunnerId, SessionId, SessionStatus, Store, Todo};
use swarmq_testkit::RedisServer;

const MAX_ATTEMPTS: u32 = 3;

/// A running session with `todos` TODOs and `agents` agents; returns the agents' jobs.
async fn running_session(store: &Store, todos: usize, agents: usize) -> Vec<AgentJob> {
    let id = SessionId::new();
    let created = store
        .init_session(id, "p", agents as u32, 1, u64::MAX, Duration::ZERO)
        .await
        .unwrap();
    assert!(created);
    let todos: Vec<Todo> = (0..todos).map(|i| Todo::new(format!("t{i}"))).collect();
    let agent_ids: Vec<AgentId> = (0..agents).map(|_| AgentId::new()).collect();
    let outcome = store.create_session(id, &todos, &agent_ids).await.unwrap();
    assert_eq!(outcome, CreateOutcome::Created);
    agent_ids
        .into_iter()
        .map(|agent_id| AgentJob {
            session_id: id,
            agent_id,
        })
        .collect()
}

#[tokio::test]
async fn an_agent_starts_with_a_todo_and_ends_with_its_last_completion() {
    let redis = RedisServer::start();
    let store = Store::open(&redis.url(), "swarmq", 1000).unwrap();
    let runner = RunnerId::generate("test");
    let jobs = running_session(&store, 2, 1).await;
    let job = jobs[0];

    let StartOutcome::Started(token, AssignOutcome::Assigned { todo_id: first, .. }) =
        store.start_agent(job, &runner, MAX_ATTEMPTS).await.unwrap()
    else {
        panic!("the agent should start with its first TODO");
    };
    let (fenced, next) = store
        .complete_todo(job, &token, first, Some("a".into()), Some(MAX_ATTEMPTS))
        .await
        .unwrap();
    assert_eq!(fenced, Fenced::Ok);
    let Some(AssignOutcome::Assigned {
        todo_id: second, ..
    }) = next
    else {
        panic!("the completion should take the next TODO, got {next:?}");
    };
    assert_ne!(first, second);

    let last = store
        .complete_todo(job, &token, second, Some("b".into()), Some(MAX_ATTEMPTS))
        .await
        .unwrap();
    assert_eq!(
        last,
        (
            Fenced::Ok,
            Some(AssignOutcome::Done(AgentDone::SessionEnded(
                "completed".into()
            )))
        )
    );
    // The same call again (its reply lost to a dropped connection): not refused as stale, and
    // nothing recorded twice.
    let retried = store
        .complete_todo(job, &token, second, Some("b".into()), Some(MAX_ATTEMPTS))
        .await
        .unwrap();
    assert_eq!(
        retried,
        (Fenced::Ok, Some(AssignOutcome::Done(AgentDone::Already)))
    );

    let session = store.snapshot(job.session_id).await.unwrap().unwrap();
    assert_eq!(session.status, SessionStatus::Completed);
    let events = store.events_after(job.session_id, 0, 1000).await.unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let count = |name: &str| names.iter().filter(|n| **n == name).count();
    assert_eq!(count("task:completed"), 2, "{names:?}");
    assert_eq!(count("agent:terminated"), 1, "{names:?}");
    assert_eq!(count("session:complete"), 1, "{names:?}");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());

    // The job is obsolete now: a runner that claims it again is told to drop it.
    let again = store.start_agent(job, &runner, MAX_ATTEMPTS).await.unwrap();
    assert!(matches!(again, StartOutcome::Gone(_)), "{again:?}");
}

#[tokio::test]
async fn an_agent_with_nothing_to_do_ends_when_it_starts_and_the_last_one_ends_the_session() {
    let redis = RedisServer::start();
    let store = Store::open(&redis.url(), "swarmq", 1000).unwrap();
    let runner = RunnerId::generate("test");
    let jobs = running_session(&store, 1, 2).await;

    let StartOutcome::Started(token, AssignOutcome::Assigned { todo_id, .. }) = store
        .start_agent(jobs[0], &runner, MAX_ATTEMPTS)
        .await
        .unwrap()
    else {
        panic!("the first agent should take the only TODO");
    };
    let idle = store
        .start_agent(jobs[1], &runner, MAX_ATTEMPTS)
        .await
        .unwrap();
    assert!(
        matches!(
            idle,
            StartOutcome::Started(_, AssignOutcome::Done(AgentDone::Terminated))
        ),
        "{idle:?}"
    );
    let session = store.snapshot(jobs[0].session_id).await.unwrap().unwrap();
    assert_eq!(session.status, SessionStatus::Running);

    let (_, next) = store
        .complete_todo(jobs[0], &token, todo_id, None, Some(MAX_ATTEMPTS))
        .await
        .unwrap();
    assert_eq!(
        next,
        Some(AssignOutcome::Done(AgentDone::SessionEnded(
            "completed".into()
        )))
    );
}
