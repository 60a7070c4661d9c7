//! Reading the schema's hashes back into the model: a session, its TODOs and agents
//! (`docs/redis-schema.md` lists their fields). Empty strings stand for JSON `null`.

use std::str::FromStr;

use redis::{FromRedisValue, ParsingError, Value};

use crate::ids::{AgentId, SessionId, TodoId};
use crate::model::{Agent, AgentStatus, Session, SessionStatus, Todo, TodoStatus};

/// What is wrong with a hash, for [`StoreError::Corrupt`](super::StoreError::Corrupt).
pub(crate) type Corrupt = String;

/// Flat `HGETALL` pairs → field lookup.
struct Fields(Vec<String>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .chunks_exact(2)
            .find(|pair| pair[0] == name)
            .map(|pair| pair[1].as_str())
    }

    /// A field that is present and non-empty.
    fn some(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    fn req(&self, name: &str, what: &str) -> Result<&str, Corrupt> {
        self.get(name)
            .ok_or_else(|| format!("{what} has no {name:?} field"))
    }

    /// A present, non-empty number field.
    fn num<T: FromStr>(&self, name: &str) -> Result<Option<T>, Corrupt> {
        self.some(name).map(|v| parse_num(v, name)).transpose()
    }
}

pub(crate) fn parse_num<T: FromStr>(value: &str, what: &str) -> Result<T, Corrupt> {
    value
        .parse()
        .map_err(|_| format!("{what} is {value:?}, not a number"))
}

pub(crate) fn session_status(value: &str) -> Result<SessionStatus, Corrupt> {
    SessionStatus::parse(value).ok_or_else(|| format!("session status {value:?}"))
}

fn session_from(
    s: &Fields,
    todos: Vec<Vec<String>>,
    agents: Vec<Vec<String>>,
) -> Result<Session, Corrupt> {
    let id = SessionId::parse(s.req("id", "session")?).map_err(|e| e.to_string())?;
    Ok(Session {
        id,
        prompt: s.req("prompt", "session")?.to_owned(),
        agent_count: parse_num(s.req("agentCount", "session")?, "agentCount")?,
        status: session_status(s.req("status", "session")?)?,
        todos: todos
            .into_iter()
            .map(|t| todo_from(&Fields(t)))
            .collect::<Result<_, _>>()?,
        agents: agents
            .into_iter()
            .map(|a| agent_from(&Fields(a), id))
            .collect::<Result<_, _>>()?,
        created_at: parse_num(s.req("createdAt", "session")?, "createdAt")?,
        error: s.some("error").map(str::to_owned),
        finished_at: s.num("finishedAt")?,
        last_seq: s.num("seq")?.unwrap_or(0),
    })
}

fn todo_from(f: &Fields) -> Result<Todo, Corrupt> {
    let status = f.req("status", "todo")?;
    Ok(Todo {
        id: TodoId::parse(f.req("id", "todo")?).map_err(|e| e.to_string())?,
        description: f.req("description", "todo")?.to_owned(),
        status: TodoStatus::parse(status).ok_or_else(|| format!("todo status {status:?}"))?,
        assigned_to: f.some("assignedTo").and_then(|a| AgentId::parse(a).ok()),
        result: f.get("result").map(str::to_owned),
        error: f.some("error").map(str::to_owned),
        attempts: f.num("attempts")?.unwrap_or(0),
    })
}

fn agent_from(f: &Fields, session_id: SessionId) -> Result<Agent, Corrupt> {
    let status = f.req("status", "agent")?;
    Ok(Agent {
        id: AgentId::parse(f.req("id", "agent")?).map_err(|e| e.to_string())?,
        session_id,
        status: AgentStatus::parse(status).ok_or_else(|| format!("agent status {status:?}"))?,
        current_task_id: f.some("currentTaskId").and_then(|t| TodoId::parse(t).ok()),
        sandbox_id: f.some("sandboxId").map(str::to_owned),
        stream_url: f.some("streamUrl").map(str::to_owned),
    })
}

/// `snapshot.lua`'s reply: the session hash, then every TODO hash and every agent hash.
impl FromRedisValue for Session {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        type Raw = (Vec<String>, Vec<Vec<String>>, Vec<Vec<String>>);
        let (session, todos, agents): Raw = FromRedisValue::from_redis_value(value)?;
        session_from(&Fields(session), todos, agents).map_err(ParsingError::from)
    }
}
