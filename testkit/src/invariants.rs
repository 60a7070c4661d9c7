//! What must hold of a finished session, checked against the recorded state and the event
//! stream (straight from Redis), and of what a client received.

use std::collections::HashMap;

use serde_json::Value;
use swarmq_shared::store::StoreOptions;
use swarmq_shared::{EventEnvelope, Keys, Session, SessionId, SessionStatus, Store, TodoStatus};

/// The recorded events of a session (stream order) and its snapshot.
pub struct Recorded {
    pub session: Session,
    pub events: Vec<EventEnvelope>,
}

pub async fn recorded(redis_url: &str, session: &str) -> Recorded {
    let store = Store::new(
        redis_url,
        Keys::new("swarmq").expect("keys"),
        StoreOptions::default(),
    )
    .expect("store");
    recorded_in(&store, session).await
}

/// [`recorded`], read through `store` (a Redis Cluster's, say).
pub async fn recorded_in(store: &Store, session: &str) -> Recorded {
    let id = SessionId::parse(session).expect("session id");
    let snapshot = store
        .snapshot(id)
        .await
        .expect("snapshot")
        .expect("session exists");
    let raw = store.events_after(id, 0, 1_000_000).await.expect("events");
    let events = raw
        .iter()
        .map(|e| {
            e.decode().unwrap_or_else(|err| {
                panic!(
                    "recorded event does not parse ({err}): {} {}",
                    e.event, e.data
                )
            })
        })
        .collect();
    Recorded {
        session: snapshot,
        events,
    }
}

/// Checks a finished session; panics with the reason. Returns per-name event counts.
pub fn check_finished(r: &Recorded) -> HashMap<String, usize> {
    let s = &r.session;
    assert!(
        s.status.is_finished(),
        "session not finished: {:?}",
        s.status
    );
    // Every seq exactly once, contiguous from 1 (nothing lost, nothing twice).
    for (i, e) in r.events.iter().enumerate() {
        assert_eq!(
            e.seq,
            i as u64 + 1,
            "event seq gap/duplicate at position {i}"
        );
    }
    assert_eq!(
        s.last_seq,
        r.events.len() as u64,
        "lastSeq vs stream length"
    );
    let names: Vec<(&str, Value)> = r
        .events
        .iter()
        .map(|e| {
            let v = serde_json::to_value(&e.event).expect("event");
            (e.event.name(), v["data"].clone())
        })
        .collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (name, _) in &names {
        *counts.entry((*name).to_owned()).or_default() += 1;
    }
    // session:complete exactly once, last.
    assert_eq!(
        counts.get("session:complete"),
        Some(&1),
        "session:complete count"
    );
    assert_eq!(
        names.last().map(|(n, _)| *n),
        Some("session:complete"),
        "session:complete is last"
    );
    // Per TODO: created once, first; completed at most once, by the agent that holds it, after an
    // assignment to that agent.
    for todo in &s.todos {
        let id = todo.id.to_string();
        let of = |name: &str| -> Vec<(usize, &Value)> {
            names
                .iter()
                .enumerate()
                .filter(|(_, (n, d))| {
                    *n == name
                        && (d["todoId"].as_str() == Some(&id) || d["id"].as_str() == Some(&id))
                })
                .map(|(i, (_, d))| (i, d))
                .collect()
        };
        let created = of("task:created");
        assert_eq!(created.len(), 1, "task:created for {id}");
        let completed = of("task:completed");
        assert!(
            completed.len() <= 1,
            "TODO {id} completed {} times",
            completed.len()
        );
        let assigned = of("task:assigned");
        match todo.status {
            TodoStatus::Completed => {
                assert_eq!(
                    completed.len(),
                    1,
                    "completed TODO {id} has no task:completed"
                );
                let (at, data) = completed[0];
                let agent = data["agentId"].as_str().expect("agentId");
                assert_eq!(
                    todo.assigned_to.map(|a| a.to_string()).as_deref(),
                    Some(agent)
                );
                assert!(
                    assigned
                        .iter()
                        .any(|(i, d)| *i < at && d["agentId"].as_str() == Some(agent)),
                    "task:completed for {id} without a prior task:assigned to {agent}"
                );
                assert!(created[0].0 < at);
            }
            _ => assert!(
                completed.is_empty(),
                "TODO {id} is {:?} but has task:completed",
                todo.status
            ),
        }
        if todo.status == TodoStatus::Failed {
            assert_eq!(of("task:failed").len(), 1, "task:failed for {id}");
        }
    }
    // Every agent terminated, once.
    for agent in &s.agents {
        let id = agent.id.to_string();
        let n = names
            .iter()
            .filter(|(n, d)| *n == "agent:terminated" && d["agentId"].as_str() == Some(&id))
            .count();
        assert_eq!(n, 1, "agent:terminated for {id}");
    }
    match s.status {
        SessionStatus::Completed => assert!(
            s.todos.iter().all(|t| t.status == TodoStatus::Completed),
            "completed session with unfinished TODOs"
        ),
        SessionStatus::Failed if !s.todos.is_empty() => assert!(
            s.todos.iter().any(|t| t.status == TodoStatus::Failed),
            "failed session without a failed TODO"
        ),
        _ => {}
    }
    counts
}

/// A client that joined with `since: 0` must have received every recorded event exactly once,
/// in order.
pub fn check_client_saw_all(r: &Recorded, received: &[(String, Value)]) {
    let seqs: Vec<u64> = received
        .iter()
        .map(|(_, d)| d["seq"].as_u64().expect("payload carries seq"))
        .collect();
    let expected: Vec<u64> = r.events.iter().map(|e| e.seq).collect();
    if let Some(i) = (0..seqs.len().max(expected.len())).find(|&i| seqs.get(i) != expected.get(i)) {
        let around = |v: &[u64]| v[i.saturating_sub(3)..(i + 3).min(v.len())].to_vec();
        panic!(
            "client events vs recorded events: {} received, {} recorded; first difference at \
             index {i}: received {:?}…, recorded {:?}…",
            seqs.len(),
            expected.len(),
            around(&seqs),
            around(&expected)
        );
    }
    for ((name, _), e) in received.iter().zip(&r.events) {
        assert_eq!(name, e.event.name());
    }
}
