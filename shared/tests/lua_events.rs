//! Every event a Lua transition builds (`task:assigned`, `task:retry`, `task:failed`,
//! `agent:terminated`, `session:complete`) and every one it records for Rust, decoded back into
//! `shared`'s event types field for field: each transition that emits is driven against a
//! private Redis, and each recorded payload must decode and re-encode to exactly what was
//! recorded (but `seq`) — a renamed, retyped or extra field fails here.

use serde_json::Value;
use swarmq_shared::event::{AgentReasoning, AgentThinking};
use swarmq_shared::store::RecordedEvent;
use swarmq_shared::transitions::{
    AfterCompletion, AssignNext, AssignOutcome, AttemptOutcome, CancelSession, CompleteTodo,
    EmitEvents, FailAttempt, FailSession, Fenced, Holder, LeaseToken, ReleaseAgent, StartAgent,
    StartOutcome, StreamReady, Transition,
};
use swarmq_shared::{AgentJob, Event, RunnerId, SessionId, SessionStatus, Store, TodoId};
use swarmq_testkit::{RedisServer, sessions};

async fn run<T: Transition>(store: &Store, transition: T) -> T::Reply {
    store.run(&transition).await.expect("transition")
}

/// A running session with `todos` TODOs (descriptions that need escaping) and `agents` agents.
async fn running(store: &Store, todos: usize, agents: usize) -> Vec<AgentJob> {
    let descriptions = vec!["a todo \"quoted\" é\n"; todos];
    sessions::running_session(store, &descriptions, agents).await
}

async fn start(store: &Store, job: AgentJob, runner: &RunnerId) -> (LeaseToken, TodoId) {
    let start = StartAgent {
        job,
        runner,
        max_attempts: 3,
    };
    match run(store, start).await {
        StartOutcome::Started {
            token,
            next: AssignOutcome::Assigned { todo_id, .. },
        } => (token, todo_id),
        other => panic!("start: {other:?}"),
    }
}

async fn fail(store: &Store, job: AgentJob, token: &LeaseToken, todo_id: TodoId, max: u32) {
    let fail = FailAttempt {
        job,
        token,
        todo_id,
        error: "it \"broke\"\n",
        max_attempts: max,
    };
    let outcome = run(store, fail).await;
    assert!(matches!(
        outcome,
        AttemptOutcome::Retry { .. } | AttemptOutcome::Failed { .. }
    ));
}

async fn assign(store: &Store, job: AgentJob, token: &LeaseToken, max: u32) -> AssignOutcome {
    let assign = AssignNext {
        job,
        token,
        max_attempts: max,
    };
    run(store, assign).await
}

/// Worker output (payloads built in Rust) and the sandbox.
async fn relay_lines(store: &Store, job: AgentJob, token: &LeaseToken) {
    let events = [
        Event::AgentThinking(AgentThinking {
            agent_id: job.agent_id,
            action: "click \"ok\"".into(),
            timestamp: 5,
        }),
        Event::AgentReasoning(AgentReasoning {
            agent_id: job.agent_id,
            reasoning: "because\u{0}".into(),
            timestamp: 6,
        }),
    ];
    let emit = EmitEvents {
        job,
        token,
        batch: 1,
        events: &events,
    };
    assert_eq!(run(store, emit).await, Fenced::Recorded);
    let ready = StreamReady {
        job,
        token,
        sandbox_id: "sbx",
        stream_url: "https://x/y?z=1",
    };
    assert_eq!(run(store, ready).await, Fenced::Recorded);
}

/// Retries and failures of every kind, a release, a completion, terminations, and the session
/// ending failed with an error.
async fn a_session_with_every_failure(store: &Store, runner: &RunnerId) -> SessionId {
    let jobs = running(store, 3, 2).await;
    let (a1, a2) = (jobs[0], jobs[1]);
    let (t1, x) = start(store, a1, runner).await;
    relay_lines(store, a1, &t1).await;
    fail(store, a1, &t1, x, 3).await; // task:retry
    // x failed once: with a limit of 1 it fails instead of being assigned (next_todo).
    let AssignOutcome::Assigned { todo_id: y, .. } = assign(store, a1, &t1, 1).await else {
        panic!("a1 should get the next TODO");
    };
    let complete = CompleteTodo {
        job: a1,
        token: &t1,
        todo_id: y,
        result: Some("done \"well\""),
        then: AfterCompletion::Stop,
    };
    run(store, complete).await;
    let (_, z) = start(store, a2, runner).await;
    let release = ReleaseAgent {
        job: a2,
        holder: Holder::Runner(runner),
        count_attempt: true,
        reason: "runner gone",
    };
    run(store, release).await; // task:retry from the release
    let (t2, again) = start(store, a2, runner).await;
    assert_eq!(again, z);
    fail(store, a2, &t2, z, 1).await; // task:failed from fail_attempt
    assign(store, a2, &t2, 3).await; // agent:terminated
    assign(store, a1, &t1, 3).await; // agent:terminated, session:complete (failed)
    a1.session_id
}

/// A completion without a result that ends the session `completed`.
async fn a_session_that_completes(store: &Store, runner: &RunnerId) -> SessionId {
    let jobs = running(store, 1, 1).await;
    let (token, todo_id) = start(store, jobs[0], runner).await;
    let complete = CompleteTodo {
        job: jobs[0],
        token: &token,
        todo_id,
        result: None,
        then: AfterCompletion::TakeNext { max_attempts: 3 },
    };
    run(store, complete).await;
    jobs[0].session_id
}

async fn a_cancelled_session(store: &Store, runner: &RunnerId) -> SessionId {
    let jobs = running(store, 2, 1).await;
    start(store, jobs[0], runner).await;
    let id = jobs[0].session_id;
    run(store, CancelSession { id }).await;
    id
}

async fn a_failed_decomposition(store: &Store) -> SessionId {
    let id = sessions::decomposing_session(store, 1).await;
    let fail = FailSession {
        id,
        error: "decomposition failed: \"no\"",
        only_if: SessionStatus::Decomposing,
    };
    run(store, fail).await;
    id
}

/// Decodes a recorded event strictly: the typed event, encoded again, is the recorded payload
/// exactly, `seq` aside.
fn decode_strictly(recorded: &RecordedEvent) -> Event {
    let name = &recorded.event;
    let envelope = recorded
        .decode()
        .unwrap_or_else(|e| panic!("{name} does not decode ({e}): {}", recorded.data));
    assert_eq!(envelope.seq, recorded.seq, "{name}: seq in the payload");
    let mut payload: Value = serde_json::from_str(&recorded.data).expect("payload is JSON");
    payload.as_object_mut().expect("an object").remove("seq");
    let typed = serde_json::to_value(&envelope.event).expect("encodes");
    assert_eq!(
        typed["data"], payload,
        "{name}: fields differ from the recorded payload"
    );
    envelope.event
}

#[tokio::test]
async fn every_event_a_transition_records_decodes_into_the_shared_types_field_for_field() {
    let redis = RedisServer::start();
    let store = Store::open(&redis.url(), "swarmq", 1000).unwrap();
    let runner = RunnerId::generate("test");
    let sessions = [
        a_session_with_every_failure(&store, &runner).await,
        a_session_that_completes(&store, &runner).await,
        a_cancelled_session(&store, &runner).await,
        a_failed_decomposition(&store).await,
    ];
    let mut seen: Vec<&str> = Vec::new();
    let mut endings = Vec::new();
    for id in sessions {
        for recorded in store.events_after(id, 0, 10_000).await.unwrap() {
            let event = decode_strictly(&recorded);
            if let Event::SessionComplete(c) = &event {
                endings.push((c.status, c.error.is_some()));
            }
            seen.push(event.name());
        }
    }
    for name in Event::NAMES {
        assert!(
            seen.contains(name),
            "no transition recorded {name}: {seen:?}"
        );
    }
    let failed = Some(SessionStatus::Failed);
    let expected = [
        (failed, true),
        (Some(SessionStatus::Completed), false),
        (Some(SessionStatus::Cancelled), false),
        (failed, true),
    ];
    assert_eq!(endings, expected);
}
