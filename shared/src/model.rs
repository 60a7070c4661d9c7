//! The public data model: the original plan's Step 1 types, field for field (camelCase JSON, the
//! same status strings). Additions are optional fields and new status values an old client can
//! ignore: `failed` TODOs, `cancelled` sessions, `error`, `attempts`, `finishedAt`, `lastSeq`.

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, SessionId, TodoId};

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        // Every status text is its variant's name in lower case; said twice because the
        // OpenAPI derive cannot read a `rename` passed through this macro.
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            pub fn parse(value: &str) -> Option<Self> {
                match value {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

string_enum!(
    /// `decomposing` → `running` → `completed` | `failed`; `cancelled` from either active state.
    SessionStatus {
        Decomposing = "decomposing",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
    }
);

impl SessionStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

string_enum!(
    /// `failed` is additive: a TODO whose attempts ran out.
    TodoStatus {
        Pending = "pending",
        Assigned = "assigned",
        Completed = "completed",
        Failed = "failed",
    }
);

string_enum!(
    AgentStatus {
        Booting = "booting",
        Working = "working",
        Idle = "idle",
        Terminated = "terminated",
    }
);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Todo {
    pub id: TodoId,
    pub description: String,
    pub status: TodoStatus,
    pub assigned_to: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Why the last attempt failed (or why the TODO failed for good).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Attempts that ended in failure so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
}

impl Todo {
    pub fn new(description: String) -> Self {
        Self {
            id: TodoId::new(),
            description,
            status: TodoStatus::Pending,
            assigned_to: None,
            result: None,
            error: None,
            attempts: 0,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    pub id: AgentId,
    pub session_id: SessionId,
    pub status: AgentStatus,
    pub current_task_id: Option<TodoId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: SessionId,
    pub prompt: String,
    pub agent_count: u32,
    pub status: SessionStatus,
    pub todos: Vec<Todo>,
    pub agents: Vec<Agent>,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// Sequence number of the last event recorded for this session: join with `since` = this to
    /// receive exactly the events that follow the snapshot.
    #[serde(default)]
    pub last_seq: u64,
}

/// One line of `GET /api/sessions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub id: SessionId,
    pub prompt: String,
    pub agent_count: u32,
    pub status: SessionStatus,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn todo_serializes_with_the_plan_field_names() {
        let todo = Todo::new("write it".into());
        let v = serde_json::to_value(&todo).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["assignedTo", "description", "id", "status"]);
        assert_eq!(v["status"], "pending");
        assert!(v["assignedTo"].is_null());
    }

    #[test]
    fn statuses_use_the_plan_strings() {
        assert_eq!(
            SessionStatus::parse("decomposing"),
            Some(SessionStatus::Decomposing)
        );
        assert_eq!(AgentStatus::Booting.as_str(), "booting");
        assert_eq!(
            serde_json::to_string(&TodoStatus::Assigned).unwrap(),
            "\"assigned\""
        );
        assert_eq!(SessionStatus::parse("Running"), None);
    }
}
