//! The live view of `swarmq watch`: on a terminal, a progress bar of TODOs done/total and each
//! agent's latest action, redrawn in place; otherwise one line per event (for logs and pipes).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::api::Api;
use crate::live::{self, Update};
use crate::{one_line, short};

pub async fn watch(api: &Api, id: &str) -> anyhow::Result<ExitCode> {
    let snapshot = api.session(id).await?;
    let mut view = View::from_snapshot(&snapshot, std::io::stdout().is_terminal());
    if view.is_final() {
        view.render(true);
        return Ok(view.exit_code());
    }
    let since = snapshot["lastSeq"].as_u64().unwrap_or(0);
    view.render(true);
    live::watch(api.base(), api.token(), id, since, |update| {
        match update {
            Update::Joined(ack) => {
                if ack["truncated"] == true {
                    view.note(
                        "older events were already trimmed from the stream; showing what is left",
                    );
                }
            }
            Update::Reconnecting(why) => {
                view.note(&format!("connection lost ({why}); reconnecting"))
            }
            Update::Event { name, data } => view.apply(&name, &data),
        }
        view.render(view.is_final());
        !view.is_final()
    })
    .await?;
    Ok(view.exit_code())
}

struct Todo {
    description: String,
    status: String,
}

#[derive(Default)]
struct AgentView {
    status: String,
    action: String,
}

struct View {
    id: String,
    status: String,
    error: Option<String>,
    todos: BTreeMap<String, Todo>,
    order: Vec<String>,
    agents: BTreeMap<String, AgentView>,
    tty: bool,
    drawn: usize,
    last_draw: Option<Instant>,
}

impl View {
    fn from_snapshot(s: &Value, tty: bool) -> Self {
        let mut view = Self {
            id: s["id"].as_str().unwrap_or("?").to_owned(),
            status: s["status"].as_str().unwrap_or("?").to_owned(),
            error: s["error"].as_str().map(str::to_owned),
            todos: BTreeMap::new(),
            order: Vec::new(),
            agents: BTreeMap::new(),
            tty,
            drawn: 0,
            last_draw: None,
        };
        for t in s["todos"].as_array().into_iter().flatten() {
            let id = t["id"].as_str().unwrap_or("?").to_owned();
            view.order.push(id.clone());
            view.todos.insert(
                id,
                Todo {
                    description: t["description"].as_str().unwrap_or("").to_owned(),
                    status: t["status"].as_str().unwrap_or("?").to_owned(),
                },
            );
        }
        for a in s["agents"].as_array().into_iter().flatten() {
            view.agents.insert(
                a["id"].as_str().unwrap_or("?").to_owned(),
                AgentView {
                    status: a["status"].as_str().unwrap_or("?").to_owned(),
                    action: String::new(),
                },
            );
        }
        if !tty {
            println!("session {}  {}", view.id, view.status);
        }
        view
    }

    fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }

    fn exit_code(&self) -> ExitCode {
        if self.status == "completed" {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }

    fn set_todo(&mut self, id: &str, status: &str) {
        if let Some(t) = self.todos.get_mut(id) {
            t.status = status.to_owned();
        }
    }

    fn agent(&mut self, data: &Value) -> &mut AgentView {
        let id = data["agentId"].as_str().unwrap_or("?").to_owned();
        self.agents.entry(id).or_default()
    }

    fn apply(&mut self, name: &str, d: &Value) {
        let todo = d["todoId"].as_str().unwrap_or("");
        let line = match name {
            "task:created" => {
                let id = d["id"].as_str().unwrap_or("?").to_owned();
                if !self.todos.contains_key(&id) {
                    self.order.push(id.clone());
                }
                let description = d["description"].as_str().unwrap_or("").to_owned();
                let line = format!(
                    "todo {} created: {}",
                    short(&id),
                    one_line(&description, 80)
                );
                self.todos.insert(
                    id,
                    Todo {
                        description,
                        status: "pending".into(),
                    },
                );
                line
            }
            "task:assigned" => {
                self.set_todo(todo, "assigned");
                let a = self.agent(d);
                a.status = "working".into();
                a.action.clear();
                format!(
                    "todo {} → agent {}",
                    short(todo),
                    short(d["agentId"].as_str().unwrap_or("?"))
                )
            }
            "task:completed" => {
                self.set_todo(todo, "completed");
                self.agent(d).status = "idle".into();
                let result = d["result"]
                    .as_str()
                    .map(|r| one_line(r, 80))
                    .unwrap_or_default();
                format!("todo {} completed: {result}", short(todo))
            }
            "task:retry" => {
                self.set_todo(todo, "pending");
                format!(
                    "todo {} will be retried: {}",
                    short(todo),
                    one_line(d["error"].as_str().unwrap_or(""), 80)
                )
            }
            "task:failed" => {
                self.set_todo(todo, "failed");
                format!(
                    "todo {} failed: {}",
                    short(todo),
                    one_line(d["error"].as_str().unwrap_or(""), 80)
                )
            }
            "agent:thinking" => {
                let action = d["action"].as_str().unwrap_or("").to_owned();
                let agent = short(d["agentId"].as_str().unwrap_or("?")).to_owned();
                let line = format!("agent {agent}: {}", one_line(&action, 100));
                self.agent(d).action = action;
                line
            }
            "agent:reasoning" => format!(
                "agent {} thinks: {}",
                short(d["agentId"].as_str().unwrap_or("?")),
                one_line(d["reasoning"].as_str().unwrap_or(""), 100)
            ),
            "agent:stream_ready" => format!(
                "agent {} sandbox {} ready: {}",
                short(d["agentId"].as_str().unwrap_or("?")),
                d["sandboxId"].as_str().unwrap_or("?"),
                d["streamUrl"].as_str().unwrap_or("?")
            ),
            "agent:terminated" => {
                let a = self.agent(d);
                a.status = "terminated".into();
                a.action.clear();
                format!(
                    "agent {} terminated",
                    short(d["agentId"].as_str().unwrap_or("?"))
                )
            }
            "session:complete" => {
                self.status = d["status"].as_str().unwrap_or("completed").to_owned();
                self.error = d["error"].as_str().map(str::to_owned);
                format!("session {}", self.status)
            }
            other => format!("{other} {d}"),
        };
        if !self.tty {
            println!("{line}");
        }
    }

    fn note(&mut self, text: &str) {
        if self.tty {
            self.drawn = 0;
            println!();
        }
        eprintln!("swarmq: {text}");
    }

    fn render(&mut self, force: bool) {
        if !self.tty {
            if force && self.is_final() {
                let done = self
                    .todos
                    .values()
                    .filter(|t| t.status == "completed")
                    .count();
                println!(
                    "{} of {} TODOs completed; session {}",
                    done,
                    self.todos.len(),
                    self.status
                );
                if let Some(e) = &self.error {
                    println!("error: {e}");
                }
            }
            return;
        }
        if !force
            && self
                .last_draw
                .is_some_and(|t| t.elapsed() < Duration::from_millis(80))
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        let total = self.todos.len();
        let done = self
            .todos
            .values()
            .filter(|t| t.status == "completed")
            .count();
        let failed = self.todos.values().filter(|t| t.status == "failed").count();
        let width = 30;
        let filled = ((done + failed) * width).checked_div(total).unwrap_or(0);
        let mut lines = vec![format!(
            "session {}  {:<10} [{}{}] {done}/{total} TODOs done{}",
            short(&self.id),
            self.status,
            "█".repeat(filled),
            "░".repeat(width - filled),
            if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            }
        )];
        for (id, a) in &self.agents {
            lines.push(format!(
                "  agent {}  {:<10} {}",
                short(id),
                a.status,
                one_line(&a.action, 70)
            ));
        }
        if self.is_final() {
            for id in &self.order {
                if let Some(t) = self.todos.get(id) {
                    lines.push(format!(
                        "  {:<9} {}",
                        t.status,
                        one_line(&t.description, 80)
                    ));
                }
            }
            if let Some(e) = &self.error {
                lines.push(format!("  error: {e}"));
            }
        }
        let mut out = std::io::stdout().lock();
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A\x1b[J", self.drawn);
        }
        for l in &lines {
            let _ = writeln!(out, "{l}");
        }
        let _ = out.flush();
        self.drawn = lines.len();
    }
}
