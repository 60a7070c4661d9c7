//! The offline planner. Deterministic, so demos and tests are repeatable:
//! - a prompt of several clauses (lines or `;`-separated) gives one TODO per clause (the last
//!   ones merged if there are more than `max_todos`);
//! - a single clause gives `agentCount` TODOs, each a numbered part of the prompt.

use super::Limits;

pub fn plan(prompt: &str, agent_count: u32, limits: Limits) -> Vec<String> {
    let clauses: Vec<&str> = prompt
        .split(['\n', ';'])
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let todos: Vec<String> = if clauses.len() >= 2 {
        let max = limits.max_todos.max(1);
        let mut todos: Vec<String> = clauses.iter().take(max).map(|c| c.to_string()).collect();
        if clauses.len() > max {
            let rest = clauses[max..].join("; ");
            if let Some(last) = todos.last_mut() {
                last.push_str("; ");
                last.push_str(&rest);
            }
        }
        todos
    } else {
        let n = agent_count.max(1) as usize;
        let n = n.min(limits.max_todos.max(1));
        let topic = prompt.trim();
        (1..=n)
            .map(|i| {
                if n == 1 {
                    topic.to_owned()
                } else {
                    format!("Part {i} of {n}: {topic}")
                }
            })
            .collect()
    };
    todos
        .into_iter()
        .map(|t| truncate_chars(t, limits.max_description_chars))
        .collect()
}

fn truncate_chars(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_todos: 4,
        max_description_chars: crate::planner::MAX_DESCRIPTION_CHARS,
    };

    #[test]
    fn one_clause_becomes_one_part_per_agent() {
        assert_eq!(
            plan("Research AI agents", 2, LIMITS),
            [
                "Part 1 of 2: Research AI agents",
                "Part 2 of 2: Research AI agents"
            ]
        );
    }

    #[test]
    fn clauses_become_todos_and_overflow_is_merged() {
        assert_eq!(plan("a; b\nc", 1, LIMITS), ["a", "b", "c"]);
        assert_eq!(plan("a;b;c;d;e;f", 2, LIMITS), ["a", "b", "c", "d; e; f"]);
    }
}
