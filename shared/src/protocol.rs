//! The worker protocol (docs/worker-protocol.md): JSON lines a worker prints on stdout, and the
//! task lines the runner writes to its stdin. Worker output is untrusted: every way a line can be
//! wrong is a [`LineError`], never a panic.

use serde::{Deserialize, Serialize};

/// One stdout line of a worker.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerLine {
    /// `action` → `agent:thinking`, `reasoning` → `agent:reasoning` (both when both are set).
    Log {
        #[serde(default)]
        action: Option<String>,
        #[serde(default)]
        reasoning: Option<String>,
    },
    SandboxReady {
        #[serde(rename = "sandboxId")]
        sandbox_id: String,
        #[serde(rename = "streamUrl")]
        stream_url: String,
    },
    /// The current task is done. `todoId` may be omitted; naming another TODO is rejected.
    Complete {
        #[serde(default, rename = "todoId")]
        todo_id: Option<String>,
        #[serde(default)]
        result: Option<serde_json::Value>,
    },
    /// The current attempt failed; the runner retries up to its attempt limit.
    Fail {
        #[serde(default, rename = "todoId")]
        todo_id: Option<String>,
        #[serde(default)]
        reason: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    #[error("line is not a JSON object: {0}")]
    NotJson(String),
    #[error("unknown line type {0:?}")]
    UnknownType(String),
    #[error("line has no \"type\" field")]
    MissingType,
    #[error("malformed {kind:?} line: {reason}")]
    Malformed { kind: String, reason: String },
    #[error("log line has neither \"action\" nor \"reasoning\"")]
    EmptyLog,
}

const KNOWN_TYPES: [&str; 4] = ["log", "sandbox_ready", "complete", "fail"];

/// Parses one line (without its newline). Blank lines are the caller's to skip.
pub fn parse_line(bytes: &[u8]) -> Result<WorkerLine, LineError> {
    let text = std::str::from_utf8(bytes).map_err(|_| LineError::InvalidUtf8)?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| LineError::NotJson(e.to_string()))?;
    if !value.is_object() {
        return Err(LineError::NotJson("not an object".into()));
    }
    let kind = match value.get("type") {
        Some(serde_json::Value::String(t)) => t.clone(),
        _ => return Err(LineError::MissingType),
    };
    if !KNOWN_TYPES.contains(&kind.as_str()) {
        return Err(LineError::UnknownType(kind.chars().take(40).collect()));
    }
    let line: WorkerLine = serde_json::from_value(value).map_err(|e| LineError::Malformed {
        kind: kind.clone(),
        reason: e.to_string(),
    })?;
    if let WorkerLine::Log {
        action: None,
        reasoning: None,
    } = line
    {
        return Err(LineError::EmptyLog);
    }
    Ok(line)
}

/// The result of a `complete` line as the string stored on the TODO: strings as they are, any
/// other JSON value in its compact JSON form.
pub fn result_text(result: Option<serde_json::Value>) -> Option<String> {
    match result? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// A task the runner writes to a persistent worker's stdin, one JSON line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskLine {
    pub task_id: String,
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_lines_parse() {
        assert_eq!(
            parse_line(br#"{"type":"log","action":"click"}"#).unwrap(),
            WorkerLine::Log {
                action: Some("click".into()),
                reasoning: None
            }
        );
        assert!(matches!(
            parse_line(br#"{"type":"complete","todoId":"x","result":{"a":1}}"#).unwrap(),
            WorkerLine::Complete {
                todo_id: Some(_),
                result: Some(_)
            }
        ));
        assert!(matches!(
            parse_line(br#"{"type":"sandbox_ready","sandboxId":"s","streamUrl":"u"}"#).unwrap(),
            WorkerLine::SandboxReady { .. }
        ));
    }

    #[test]
    fn bad_lines_are_typed_errors() {
        assert!(matches!(parse_line(b"hello"), Err(LineError::NotJson(_))));
        assert!(matches!(parse_line(b"[1,2]"), Err(LineError::NotJson(_))));
        assert!(matches!(parse_line(b"{}"), Err(LineError::MissingType)));
        assert!(matches!(
            parse_line(br#"{"type":5}"#),
            Err(LineError::MissingType)
        ));
        assert!(matches!(
            parse_line(br#"{"type":"boom"}"#),
            Err(LineError::UnknownType(_))
        ));
        assert!(matches!(
            parse_line(br#"{"type":"log"}"#),
            Err(LineError::EmptyLog)
        ));
        assert!(matches!(
            parse_line(br#"{"type":"log","action":5}"#),
            Err(LineError::Malformed { .. })
        ));
        assert!(matches!(
            parse_line(b"\xff\xfe"),
            Err(LineError::InvalidUtf8)
        ));
        assert!(matches!(
            parse_line(br#"{"type":"sandbox_ready"}"#),
            Err(LineError::Malformed { .. })
        ));
    }

    #[test]
    fn results_of_any_json_type_become_text() {
        assert_eq!(result_text(Some(serde_json::json!("x"))), Some("x".into()));
        assert_eq!(
            result_text(Some(serde_json::json!({"a":1}))),
            Some(r#"{"a":1}"#.into())
        );
        assert_eq!(result_text(Some(serde_json::Value::Null)), None);
    }
}

#[cfg(test)]
mod fuzz {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Random bytes, JSON-looking fragments and mutated valid lines: the parser answers every one
    /// with a line or a typed error, never a panic.
    #[test]
    fn the_worker_line_parser_survives_random_input() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let seeds: [&[u8]; 5] = [
            br#"{"type":"log","action":"a","reasoning":"b"}"#,
            br#"{"type":"complete","todoId":"67e55044-10b1-426f-9247-bb680e5fe0c8","result":[1,{"x":null}]}"#,
            br#"{"type":"sandbox_ready","sandboxId":"s","streamUrl":"u"}"#,
            br#"{"type":"fail","reason":"\u0000\ud800"}"#,
            b"{\"type\":\"log\",\"action\":\"\xf0\x9f\x98\x80\"}",
        ];
        let alphabet = b"{}[]\":,\\ntypelogcompletefail0123456789 \x00\xff\xc3";
        let mut parsed = 0;
        for i in 0..200_000 {
            let line: Vec<u8> = match i % 3 {
                0 => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
                1 => (0..rng.random_range(0..64))
                    .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                    .collect(),
                _ => {
                    let mut l = seeds[rng.random_range(0..seeds.len())].to_vec();
                    for _ in 0..rng.random_range(1..4) {
                        let at = rng.random_range(0..l.len());
                        match rng.random_range(0..3) {
                            0 => l[at] = rng.random(),
                            1 => {
                                l.remove(at);
                            }
                            _ => l.insert(at, alphabet[rng.random_range(0..alphabet.len())]),
                        }
                    }
                    l
                }
            };
            if parse_line(&line).is_ok() {
                parsed += 1;
            }
        }
        assert!(parsed > 0, "some mutations stay valid");
    }
}
