//! Sessions written straight through the store's transitions, for tests that drive the
//! transitions themselves (no coordinator, no runner).

use std::time::Duration;

use swarmq_shared::transitions::{CreateOutcome, CreateSession, InitOutcome, InitSession};
use swarmq_shared::{AgentId, AgentJob, SessionId, Store, Todo};

/// A new session, still `decomposing` (no deadline, kept forever).
pub async fn decomposing_session(store: &Store, agents: usize) -> SessionId {
    let id = SessionId::new();
    let init = InitSession {
        id,
        prompt: "p",
        agent_count: agents as u32,
        created_at: 1,
        deadline: u64::MAX,
        retention: Duration::ZERO,
    };
    let outcome = store.open_session(&init).await.expect("open_session");
    assert_eq!(outcome, InitOutcome::Created);
    id
}

/// A running session with one TODO per description and `agents` agents; their jobs.
pub async fn running_session(store: &Store, descriptions: &[&str], agents: usize) -> Vec<AgentJob> {
    let id = decomposing_session(store, agents).await;
    let todos: Vec<Todo> = descriptions
        .iter()
        .map(|d| Todo::new((*d).to_owned()))
        .collect();
    let agent_ids: Vec<AgentId> = (0..agents).map(|_| AgentId::new()).collect();
    let create = CreateSession {
        id,
        todos: &todos,
        agents: &agent_ids,
    };
    let outcome = store.start_session(&create).await.expect("start_session");
    assert_eq!(outcome, CreateOutcome::Created);
    agent_ids
        .into_iter()
        .map(|agent_id| AgentJob {
            session_id: id,
            agent_id,
        })
        .collect()
}
