//! Sessions as a coordinator service: validating a request, creating a session (the plan's
//! steps 2–7) and cancelling one. The HTTP handlers (`http/sessions.rs`) call these and only
//! turn their outcomes into responses, so the same service could serve another front door.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use swarmq_shared::transitions::{
    CancelOutcome, CreateOutcome, CreateSession, FailSession, InitOutcome, InitSession,
};
use swarmq_shared::{AgentId, SessionId, SessionStatus, Store, StoreError, Todo, now_ms};
use tracing::Instrument;

use crate::planner::{Limits, Planner};

/// The most the watchdog waits beyond the planner's own timeout before it fails a session
/// still decomposing (as long again as the timeout, at most this), so it never races a live
/// coordinator that is still finishing the call.
const WATCHDOG_GRACE_MAX: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    pub max_agents: u32,
    pub max_prompt_chars: usize,
    pub plan: Limits,
    pub decompose_timeout: Duration,
    /// How long a finished session's keys are kept.
    pub retention: Duration,
}

/// A validated request for a session (`POST /api/sessions` `{prompt, agentCount}`).
#[derive(Debug, PartialEq)]
pub struct NewSession {
    pub prompt: String,
    pub agent_count: u32,
}

/// Why a request for a session is refused, naming the field at fault.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRequest(String);

impl NewSession {
    /// Validates a request's fields, naming the field at fault.
    pub fn parse(
        body: &Map<String, Value>,
        limits: &SessionLimits,
    ) -> Result<Self, InvalidRequest> {
        let invalid = |message: String| Err(InvalidRequest(message));
        if let Some(unknown) = body
            .keys()
            .find(|k| k.as_str() != "prompt" && k.as_str() != "agentCount")
        {
            return invalid(format!(
                "unknown field {:?}: expected only \"prompt\" and \"agentCount\"",
                unknown.chars().take(40).collect::<String>()
            ));
        }
        let prompt = match body.get("prompt") {
            None | Some(Value::Null) => return invalid("prompt is required".into()),
            Some(Value::String(p)) => p,
            Some(_) => return invalid("prompt must be a string".into()),
        };
        if prompt.trim().is_empty() {
            return invalid("prompt must not be empty".into());
        }
        swarmq_shared::text::check("prompt", prompt).map_err(InvalidRequest)?;
        let chars = prompt.chars().count();
        if chars > limits.max_prompt_chars {
            return invalid(format!(
                "prompt is too long: {chars} characters, the limit is {}",
                limits.max_prompt_chars
            ));
        }
        let agent_count = parse_agent_count(body.get("agentCount"), limits.max_agents)?;
        Ok(Self {
            prompt: prompt.clone(),
            agent_count,
        })
    }
}

fn parse_agent_count(value: Option<&Value>, max: u32) -> Result<u32, InvalidRequest> {
    let invalid = |message: &str| Err(InvalidRequest(message.to_owned()));
    let out_of_range = || {
        Err(InvalidRequest(format!(
            "agentCount must be between 1 and {max}"
        )))
    };
    match value {
        None | Some(Value::Null) => invalid("agentCount is required"),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(n) if n >= 1 && n <= i64::from(max) => Ok(n as u32),
            Some(_) => out_of_range(),
            None if n.as_u64().is_some() => out_of_range(),
            // 3.0 is an integer to JSON Schema (and to JavaScript).
            None => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f >= 1.0 && f <= f64::from(max) => Ok(f as u32),
                Some(f) if f.fract() == 0.0 => out_of_range(),
                _ => invalid("agentCount must be an integer"),
            },
        },
        Some(_) => invalid("agentCount must be an integer"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A fresh random id collided with an existing session: nothing was written.
    #[error("session id {0} already exists")]
    IdTaken(SessionId),
    /// This coordinator stalled past the decomposition deadline between indexing the session
    /// and writing it, and the watchdog gave the id up: nothing was written (try again).
    #[error("session {0} was abandoned before it was recorded")]
    Abandoned(SessionId),
    /// Decomposition failed, or finished after the session was failed for taking too long; the
    /// session exists (failed) and the client gets its id.
    #[error("{message}")]
    Decomposition {
        session_id: SessionId,
        message: String,
    },
}

#[derive(Clone)]
pub struct SessionService {
    store: Store,
    planner: Arc<Planner>,
    limits: SessionLimits,
}

impl SessionService {
    pub fn new(store: Store, planner: Planner, limits: SessionLimits) -> Self {
        Self {
            store,
            planner: Arc::new(planner),
            limits,
        }
    }

    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// Records the session, decomposes its prompt, then writes TODOs, agents, agent jobs and
    /// task:created events in one transition. A coordinator dying in between leaves a
    /// `decomposing` session that the watchdog fails after the deadline, never half a session.
    pub async fn create(&self, new: NewSession) -> Result<SessionId, CreateError> {
        let id = SessionId::new();
        self.create_as(id, &new).await?;
        Ok(id)
    }

    /// [`create`](Self::create) under a chosen id: `IdTaken` when a session with that id was
    /// already recorded (by a concurrent retry of the same idempotent request), before any
    /// decomposition — so two callers racing on one id decompose once.
    pub async fn create_as(&self, id: SessionId, new: &NewSession) -> Result<(), CreateError> {
        let span =
            tracing::info_span!("create_session", session_id = %id, agents = new.agent_count);
        async {
            self.record(id, new).await?;
            let descriptions = self.decompose(id, new).await?;
            self.enqueue(id, descriptions, new.agent_count).await
        }
        .instrument(span)
        .await
    }

    /// How long after its creation a session still `decomposing` is failed by the watchdog.
    pub fn decompose_deadline(&self) -> Duration {
        let timeout = self.limits.decompose_timeout;
        timeout + timeout.min(WATCHDOG_GRACE_MAX)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The plan's steps 2–3: the session exists, `decomposing`, with a deadline.
    async fn record(&self, id: SessionId, new: &NewSession) -> Result<(), CreateError> {
        let created_at = now_ms();
        let deadline = created_at + self.decompose_deadline().as_millis() as u64;
        let init = InitSession {
            id,
            prompt: &new.prompt,
            agent_count: new.agent_count,
            created_at,
            deadline,
            retention: self.limits.retention,
        };
        match self.store.open_session(&init).await? {
            InitOutcome::Created => {
                swarmq_shared::failpoint::pause("opened").await;
                Ok(())
            }
            InitOutcome::IdTaken => Err(CreateError::IdTaken(id)),
            InitOutcome::Abandoned => Err(CreateError::Abandoned(id)),
        }
    }

    /// Step 4: TODO descriptions from the planner; on failure the session is failed.
    async fn decompose(&self, id: SessionId, new: &NewSession) -> Result<Vec<String>, CreateError> {
        let started = Instant::now();
        let planned = self
            .planner
            .plan(&new.prompt, new.agent_count, self.limits.plan)
            .await;
        let descriptions = match planned {
            Ok(d) => d,
            Err(e) => {
                let message = format!("decomposition failed: {e}");
                tracing::warn!(error = %e, "decomposition failed");
                metrics::counter!("swarmq_llm_errors_total", "status" => e.metric_label())
                    .increment(1);
                swarmq_shared::metrics::count_session_finished(SessionStatus::Failed);
                let fail = FailSession {
                    id,
                    error: &message,
                    only_if: SessionStatus::Decomposing,
                };
                self.store.fail_session(&fail).await?;
                return Err(CreateError::Decomposition {
                    session_id: id,
                    message,
                });
            }
        };
        tracing::info!(
            todos = descriptions.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "decomposed"
        );
        metrics::histogram!("swarmq_decomposition_seconds").record(started.elapsed().as_secs_f64());
        Ok(descriptions)
    }

    /// Steps 5–7: TODOs, agents and their jobs, atomically — unless the session left
    /// `decomposing` meanwhile (cancelled: fine; failed by the watchdog: too late).
    async fn enqueue(
        &self,
        id: SessionId,
        descriptions: Vec<String>,
        agent_count: u32,
    ) -> Result<(), CreateError> {
        let todos: Vec<Todo> = descriptions.into_iter().map(Todo::new).collect();
        let agents: Vec<AgentId> = (0..agent_count).map(|_| AgentId::new()).collect();
        let create = CreateSession {
            id,
            todos: &todos,
            agents: &agents,
        };
        match self.store.start_session(&create).await? {
            CreateOutcome::Created => {
                metrics::counter!("swarmq_sessions_created_total").increment(1);
                Ok(())
            }
            CreateOutcome::NotDecomposing {
                status: Some(SessionStatus::Cancelled),
            } => {
                tracing::info!("session was cancelled while decomposing");
                Ok(())
            }
            CreateOutcome::NotDecomposing { status } => {
                let status = status.map_or("missing", SessionStatus::as_str);
                Err(CreateError::Decomposition {
                    session_id: id,
                    message: format!("session is {status}: decomposition took longer than allowed"),
                })
            }
        }
    }

    /// Cancels a decomposing or running session: its workers are killed wherever they run.
    pub async fn cancel(&self, id: SessionId) -> Result<CancelOutcome, StoreError> {
        let outcome = self.store.cancel_session(id).await?;
        if outcome == CancelOutcome::Cancelled {
            tracing::info!(session_id = %id, "session cancelled");
            swarmq_shared::metrics::count_session_finished(SessionStatus::Cancelled);
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn limits() -> SessionLimits {
        SessionLimits {
            max_agents: 4,
            max_prompt_chars: 10,
            plan: Limits {
                max_todos: 8,
                max_description_chars: 100,
            },
            decompose_timeout: std::time::Duration::from_secs(1),
            retention: std::time::Duration::from_secs(60),
        }
    }

    fn parse(body: Value) -> Result<NewSession, String> {
        NewSession::parse(body.as_object().unwrap(), &limits()).map_err(|e| e.to_string())
    }

    #[test]
    fn valid_bodies_parse() {
        assert_eq!(
            parse(json!({"prompt": "hi", "agentCount": 4})),
            Ok(NewSession {
                prompt: "hi".into(),
                agent_count: 4
            })
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (json!({"agentCount": 1}), "prompt is required"),
            (
                json!({"prompt": 5, "agentCount": 1}),
                "prompt must be a string",
            ),
            (
                json!({"prompt": "  \n", "agentCount": 1}),
                "prompt must not be empty",
            ),
            (
                json!({"prompt": "x".repeat(11), "agentCount": 1}),
                "prompt is too long",
            ),
            (
                json!({"prompt": "a\u{0}b", "agentCount": 1}),
                "prompt contains a NUL (U+0000) at character 1",
            ),
            (
                json!({"prompt": "\u{1b}[2J", "agentCount": 1}),
                "prompt contains an escape (ESC)",
            ),
            (
                json!({"prompt": "abc\u{202e}gpj.exe", "agentCount": 1}),
                "bidirectional override (U+202E)",
            ),
            (json!({"prompt": "a"}), "agentCount is required"),
            (
                json!({"prompt": "a", "agentCount": 1.5}),
                "agentCount must be an integer",
            ),
            (
                json!({"prompt": "a", "agentCount": "2"}),
                "agentCount must be an integer",
            ),
            (json!({"prompt": "a", "agentCount": 0}), "between 1 and 4"),
            (json!({"prompt": "a", "agentCount": 5}), "between 1 and 4"),
            (json!({"prompt": "a", "agentCount": -3}), "between 1 and 4"),
            (
                json!({"prompt": "a", "agentCount": u64::MAX}),
                "between 1 and 4",
            ),
            (
                json!({"prompt": "a", "agentCount": 1, "x": 1}),
                "unknown field \"x\"",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(body.clone()).unwrap_err();
            assert!(
                err.contains(expected),
                "{body} gave {err:?}, wanted {expected:?}"
            );
        }
    }
}
