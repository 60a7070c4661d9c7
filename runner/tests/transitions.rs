//! The agent transitions (`shared/src/lua`) called directly against a private Redis: an agent
//! takes its first TODO when it starts, ends in the same step as its last completion, and a
//! retried completion after that answers as the first call did.

use swarmq_shared::transitions::{
    AfterCompletion, AgentDone, AssignOutcome, CompleteOutcome, CompleteTodo, LeaseToken,
    StartAgent, StartOutcome,
};
use swarmq_shared::{AgentJob, RunnerId, SessionStatus, Store, TodoId};
use swarmq_testkit::{RedisServer, sessions};

const MAX_ATTEMPTS: u32 = 3;

/// A running session with `todos` TODOs and `agents` agents; returns the agents' jobs.
async fn running_session(store: &Store, todos: usize, agents: usize) -> Vec<AgentJob> {
    let descriptions: Vec<String> = (0..todos).map(|i| format!("t{i}")).collect();
    let descriptions: Vec<&str> = descriptions.iter().map(String::as_str).collect();
    sessions::running_session(store, &descriptions, agents).await
}

async fn start(store: &Store, job: AgentJob, runner: &RunnerId) -> StartOutcome {
    let start = StartAgent {
        job,
        runner,
        max_attempts: MAX_ATTEMPTS,
    };
    store.run(&start).await.unwrap()
}

/// Records a completion and takes the agent's next TODO in the same step.
async fn complete(
    store: &Store,
    job: AgentJob,
    token: &LeaseToken,
    todo_id: TodoId,
    result: Option<&str>,
) -> CompleteOutcome {
    let complete = CompleteTodo {
        job,
        token,
        todo_id,
        result,
        then: AfterCompletion::TakeNext {
            max_attempts: MAX_ATTEMPTS,
        },
    };
    store.run(&complete).await.unwrap()
}

fn ended(status: SessionStatus) -> CompleteOutcome {
    CompleteOutcome::Recorded {
        next: Some(AssignOutcome::Done(AgentDone::SessionEnded { status })),
    }
}

#[tokio::test]
async fn an_agent_starts_with_a_todo_and_ends_with_its_last_completion() {
    let redis = RedisServer::start();
    let store = Store::open(&redis.url(), "swarmq", 1000).unwrap();
    let runner = RunnerId::generate("test");
    let jobs = running_session(&store, 2, 1).await;
    let job = jobs[0];

    let StartOutcome::Started {
        token,
        next: AssignOutcome::Assigned { todo_id: first, .. },
    } = start(&store, job, &runner).await
    else {
        panic!("the agent should start with its first TODO");
    };
    let next = complete(&store, job, &token, first, Some("a")).await;
    let CompleteOutcome::Recorded {
        next: Some(AssignOutcome::Assigned {
            todo_id: second, ..
        }),
    } = next
    else {
        panic!("the completion should take the next TODO, got {next:?}");
    };
    assert_ne!(first, second);

    let last = complete(&store, job, &token, second, Some("b")).await;
    assert_eq!(last, ended(SessionStatus::Completed));
    // The same call again (its reply lost to a dropped connection): not refused as stale, and
    // nothing recorded twice.
    let retried = complete(&store, job, &token, second, Some("b")).await;
    let already = CompleteOutcome::Recorded {
        next: Some(AssignOutcome::Done(AgentDone::Already)),
    };
    assert_eq!(retried, already);

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
    let again = start(&store, job, &runner).await;
    assert!(matches!(again, StartOutcome::Gone { .. }), "{again:?}");
}

#[tokio::test]
async fn an_agent_with_nothing_to_do_ends_when_it_starts_and_the_last_one_ends_the_session() {
    let redis = RedisServer::start();
    let store = Store::open(&redis.url(), "swarmq", 1000).unwrap();
    let runner = RunnerId::generate("test");
    let jobs = running_session(&store, 1, 2).await;

    let StartOutcome::Started {
        token,
        next: AssignOutcome::Assigned { todo_id, .. },
    } = start(&store, jobs[0], &runner).await
    else {
        panic!("the first agent should take the only TODO");
    };
    let idle = start(&store, jobs[1], &runner).await;
    assert!(
        matches!(
            idle,
            StartOutcome::Started {
                next: AssignOutcome::Done(AgentDone::Terminated),
                ..
            }
        ),
        "{idle:?}"
    );
    let session = store.snapshot(jobs[0].session_id).await.unwrap().unwrap();
    assert_eq!(session.status, SessionStatus::Running);

    let next = complete(&store, jobs[0], &token, todo_id, None).await;
    assert_eq!(next, ended(SessionStatus::Completed));
}
