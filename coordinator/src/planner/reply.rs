//! Validation of a model's decomposition reply. The reply is untrusted: it may be wrapped in
//! prose or a code fence, malformed, empty, too long, or of the wrong shape; each is a clear
//! [`PlanError`] and never a guess.

use serde_json::Value;

use super::{Limits, PlanError};

/// TODO descriptions from the model's text, which should hold `{"todos":[{"description":...}]}`.
pub fn parse_todos(text: &str, limits: Limits) -> Result<Vec<String>, PlanError> {
    let json = extract_object(text).ok_or_else(|| {
        PlanError::InvalidReply(format!("no JSON object in the reply ({})", preview(text)))
    })?;
    let value: Value = serde_json::from_str(json)
        .map_err(|e| PlanError::InvalidReply(format!("{e} ({})", preview(json))))?;
    let todos = value
        .get("todos")
        .ok_or_else(|| PlanError::InvalidReply("no \"todos\" field".into()))?
        .as_array()
        .ok_or_else(|| PlanError::InvalidReply("\"todos\" is not an array".into()))?;
    if todos.is_empty() {
        return Err(PlanError::NoTodos);
    }
    if todos.len() > limits.max_todos {
        return Err(PlanError::TooManyTodos {
            got: todos.len(),
            max: limits.max_todos,
        });
    }
    todos
        .iter()
        .enumerate()
        .map(|(i, todo)| {
            let bad = |reason: &str| PlanError::BadTodo {
                index: i + 1,
                reason: reason.to_owned(),
            };
            let description = match todo {
                Value::Object(o) => o
                    .get("description")
                    .ok_or_else(|| bad("no \"description\""))?
                    .as_str()
                    .ok_or_else(|| bad("\"description\" is not a string"))?,
                Value::String(s) => s.as_str(),
                _ => return Err(bad("not an object")),
            };
            let description = description.trim();
            if description.is_empty() {
                return Err(bad("empty description"));
            }
            let chars = description.chars().count();
            if chars > limits.max_description_chars {
                return Err(bad(&format!(
                    "description has {chars} characters, more than {}",
                    limits.max_description_chars
                )));
            }
            // Model output is not refused for a stray control character, but never stored raw.
            Ok(swarmq_shared::text::neutralise(description).into_owned())
        })
        .collect()
}

/// The outermost `{…}` of the text, tolerating a code fence or prose around it.
fn extract_object(text: &str) -> Option<&str> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    (end > start).then(|| &text[start..=end])
}

fn preview(text: &str) -> String {
    let short: String = text.chars().take(80).collect();
    if short.len() < text.len() {
        format!("starts with {short:?}…")
    } else {
        format!("{short:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_todos: 3,
        max_description_chars: 20,
    };

    #[test]
    fn control_characters_from_the_model_are_neutralised() {
        let text = "{\"todos\":[{\"description\":\"a\\u0000b\\u001b[2J\\u202ec\"}]}";
        let todos = parse_todos(text, LIMITS).unwrap();
        assert_eq!(todos, ["a\u{FFFD}b\u{FFFD}[2J\u{FFFD}c"]);
    }

    #[test]
    fn fenced_json_is_accepted() {
        let text = "Here you go:\n```json\n{\"todos\":[{\"description\":\" a \"},{\"description\":\"b\"}]}\n```";
        assert_eq!(parse_todos(text, LIMITS).unwrap(), ["a", "b"]);
    }

    #[test]
    fn every_bad_shape_is_a_clear_error() {
        type Check = fn(&PlanError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("no json here", |e| matches!(e, PlanError::InvalidReply(_))),
            ("{\"todos\": [", |e| matches!(e, PlanError::InvalidReply(_))),
            ("{\"tasks\": []}", |e| {
                matches!(e, PlanError::InvalidReply(_))
            }),
            ("{\"todos\": {}}", |e| {
                matches!(e, PlanError::InvalidReply(_))
            }),
            ("{\"todos\": []}", |e| *e == PlanError::NoTodos),
            ("{\"todos\": [\"a\",\"b\",\"c\",\"d\"]}", |e| {
                matches!(e, PlanError::TooManyTodos { got: 4, max: 3 })
            }),
            ("{\"todos\": [{\"description\": \"  \"}]}", |e| {
                matches!(e, PlanError::BadTodo { index: 1, .. })
            }),
            ("{\"todos\": [{\"description\": 5}]}", |e| {
                matches!(e, PlanError::BadTodo { .. })
            }),
            ("{\"todos\": [7]}", |e| {
                matches!(e, PlanError::BadTodo { .. })
            }),
            (
                "{\"todos\": [{\"description\": \"this one is far too long for the limit\"}]}",
                |e| matches!(e, PlanError::BadTodo { .. }),
            ),
        ];
        for (text, check) in cases {
            let err = parse_todos(text, LIMITS).unwrap_err();
            assert!(check(&err), "{text:?} gave {err:?}");
        }
    }
}

#[cfg(test)]
mod fuzz {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Untrusted model replies of every shape: a list of TODOs or a typed error, never a panic.
    #[test]
    fn the_reply_parser_survives_random_replies() {
        let limits = Limits {
            max_todos: 4,
            max_description_chars: 50,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let pieces = [
            "{",
            "}",
            "[",
            "]",
            "\"todos\"",
            ":",
            ",",
            "\"description\"",
            "\"x\"",
            "null",
            "1e999",
            "```json",
            "```",
            "é",
            "\u{0}",
            "{\"todos\":[{\"description\":\"a\"}]}",
            " ",
            "\\\"",
            "-0",
        ];
        for _ in 0..100_000 {
            let text: String = (0..rng.random_range(0..24))
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect();
            if let Ok(todos) = parse_todos(&text, limits) {
                assert!(!todos.is_empty() && todos.len() <= 4);
                assert!(
                    todos
                        .iter()
                        .all(|t| !t.trim().is_empty() && t.chars().count() <= 50)
                );
            }
        }
    }
}
