//! Identifiers. Session, agent and TODO ids are UUIDs rendered in their hyphenated lower-case form,
//! which also makes them safe inside Redis hash tags (no `{`/`}`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("malformed {what} id {value:?}: expected a UUID")]
    Malformed { what: &'static str, value: String },
    #[error("malformed agent job {0:?}: expected <sessionId>/<agentId>")]
    Job(String),
    #[error("malformed runner id {0:?}: 1-100 characters of [A-Za-z0-9._-]")]
    Runner(String),
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// Parses the canonical hyphenated form only, so one id has one spelling (and one key).
            pub fn parse(value: &str) -> Result<Self, IdError> {
                let malformed = || IdError::Malformed { what: $what, value: value.chars().take(80).collect() };
                if value.len() != 36 {
                    return Err(malformed());
                }
                Uuid::try_parse(value).map(Self).map_err(|_| malformed())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }
    };
}

uuid_id!(
    /// One user request: a prompt split into TODOs worked by `agentCount` agents.
    SessionId,
    "session"
);
uuid_id!(
    /// One agent of a session: the unit of scheduling, served by one worker process at a time.
    AgentId,
    "agent"
);
uuid_id!(
    /// One TODO produced by decomposition.
    TodoId,
    "todo"
);

/// A runner process. Fresh at every start: `<host>-<random>`, so a restarted runner never inherits
/// the leases of its previous life (those are reaped like any dead runner's).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunnerId(String);

impl RunnerId {
    pub fn generate(host: &str) -> Self {
        let host: String = host
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
            .take(60)
            .collect();
        let host = if host.is_empty() {
            "runner".to_owned()
        } else {
            host
        };
        let suffix = Uuid::new_v4().simple().to_string();
        Self(format!("{host}-{}", &suffix[..12]))
    }

    pub fn parse(value: &str) -> Result<Self, IdError> {
        let ok = !value.is_empty()
            && value.len() <= 100
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError::Runner(value.chars().take(100).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An entry of the ready list: "run this agent of this session" (`<sessionId>/<agentId>` there;
/// `{sessionId, agentId}` as serde writes it, e.g. for a transition's arguments).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentJob {
    pub session_id: SessionId,
    pub agent_id: AgentId,
}

impl AgentJob {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let (s, a) = value
            .split_once('/')
            .ok_or_else(|| IdError::Job(value.chars().take(80).collect()))?;
        Ok(Self {
            session_id: SessionId::parse(s)?,
            agent_id: AgentId::parse(a)?,
        })
    }
}

impl fmt::Display for AgentJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.session_id, self.agent_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_canonical_form() {
        let id = SessionId::new();
        assert_eq!(SessionId::parse(&id.to_string()), Ok(id));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
    }

    #[test]
    fn non_canonical_or_hostile_ids_are_rejected() {
        for bad in [
            "",
            "abc",
            "{x}",
            "67e5504410b1426f9247bb680e5fe0c8",
            "urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8",
            "67e55044-10b1-426f-9247-bb680e5fe0cz",
        ] {
            assert!(SessionId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn agent_jobs_parse_back() {
        let job = AgentJob {
            session_id: SessionId::new(),
            agent_id: AgentId::new(),
        };
        assert_eq!(AgentJob::parse(&job.to_string()), Ok(job));
        assert!(AgentJob::parse("nope").is_err());
    }

    #[test]
    fn runner_ids_are_key_safe() {
        let id = RunnerId::generate("web{1}.example.com");
        assert!(!id.as_str().contains('{'));
        assert_eq!(RunnerId::parse(id.as_str()), Ok(id));
        assert!(RunnerId::parse("a b").is_err());
    }
}
