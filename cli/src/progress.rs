//! The live view of `swarmq watch`: on a terminal, a progress bar of TODOs done/total and each
//! agent's latest action, redrawn in place; otherwise one line per event (for logs and pipes).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use swarmq_shared::{
    AgentId, AgentStatus, Event, Session, SessionId, SessionStatus, Todo, TodoId, TodoStatus,
};

use crate::api::Api;
use crate::live::{self, Update};
use crate::{one_line, short};

pub async fn watch(api: &Api, id: &str) -> anyhow::Result<ExitCode> {
    let snapshot: Session = crate::api::typed(api.session(id).await?)?;
    let mut view = View::from_snapshot(&snapshot, std::io::stdout().is_terminal());
    if view.is_final() {
        view.render(true);
        return Ok(view.exit_code());
    }
    view.render(true);
    live::watch(api.base(), api.token(), id, snapshot.last_seq, |update| {
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
            Update::Event(envelope) => view.apply(&envelope.event),
            Update::Unknown { name, data } => view.print(format!("{name} {data}")),
        }
        view.render(view.is_final());
        !view.is_final()
    })
    .await?;
    Ok(view.exit_code())
}

struct TodoView {
    description: String,
    status: TodoStatus,
}

struct AgentView {
    status: AgentStatus,
    action: String,
}

struct View {
    id: SessionId,
    status: SessionStatus,
    error: Option<String>,
    todos: BTreeMap<TodoId, TodoView>,
    order: Vec<TodoId>,
    agents: BTreeMap<AgentId, AgentView>,
    tty: bool,
    drawn: usize,
    last_draw: Option<Instant>,
}

/// The first characters of an id, enough to tell a session's TODOs and agents apart.
fn tag(id: impl std::fmt::Display) -> String {
    short(&id.to_string()).to_owned()
}

impl View {
    fn from_snapshot(s: &Session, tty: bool) -> Self {
        let view = Self {
            id: s.id,
            status: s.status,
            error: s.error.clone(),
            todos: s
                .todos
                .iter()
                .map(|t| {
                    let todo = TodoView {
                        description: t.description.clone(),
                        status: t.status,
                    };
                    (t.id, todo)
                })
                .collect(),
            order: s.todos.iter().map(|t| t.id).collect(),
            agents: s
                .agents
                .iter()
                .map(|a| {
                    let agent = AgentView {
                        status: a.status,
                        action: String::new(),
                    };
                    (a.id, agent)
                })
                .collect(),
            tty,
            drawn: 0,
            last_draw: None,
        };
        if !tty {
            println!("session {}  {}", view.id, view.status);
        }
        view
    }

    fn is_final(&self) -> bool {
        self.status.is_finished()
    }

    fn exit_code(&self) -> ExitCode {
        if self.status == SessionStatus::Completed {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }

    fn set_todo(&mut self, id: TodoId, status: TodoStatus) {
        if let Some(t) = self.todos.get_mut(&id) {
            t.status = status;
        }
    }

    fn agent(&mut self, id: AgentId) -> &mut AgentView {
        self.agents.entry(id).or_insert_with(|| AgentView {
            status: AgentStatus::Booting,
            action: String::new(),
        })
    }

    /// Updates the view with one event and prints its line (when not drawing in place).
    fn apply(&mut self, event: &Event) {
        let line = match event {
            Event::TaskCreated(todo) => self.todo_created(todo),
            Event::TaskAssigned(a) => {
                self.set_todo(a.todo_id, TodoStatus::Assigned);
                let agent = self.agent(a.agent_id);
                agent.status = AgentStatus::Working;
                agent.action.clear();
                format!("todo {} → agent {}", tag(a.todo_id), tag(a.agent_id))
            }
            Event::TaskCompleted(c) => {
                self.set_todo(c.todo_id, TodoStatus::Completed);
                self.agent(c.agent_id).status = AgentStatus::Idle;
                let result = c.result.as_deref().map(|r| one_line(r, 80));
                format!(
                    "todo {} completed: {}",
                    tag(c.todo_id),
                    result.unwrap_or_default()
                )
            }
            Event::TaskRetry(f) => {
                self.set_todo(f.todo_id, TodoStatus::Pending);
                format!(
                    "todo {} will be retried: {}",
                    tag(f.todo_id),
                    one_line(&f.error, 80)
                )
            }
            Event::TaskFailed(f) => {
                self.set_todo(f.todo_id, TodoStatus::Failed);
                format!("todo {} failed: {}", tag(f.todo_id), one_line(&f.error, 80))
            }
            Event::AgentThinking(t) => {
                self.agent(t.agent_id).action = t.action.clone();
                format!("agent {}: {}", tag(t.agent_id), one_line(&t.action, 100))
            }
            Event::AgentReasoning(r) => {
                format!(
                    "agent {} thinks: {}",
                    tag(r.agent_id),
                    one_line(&r.reasoning, 100)
                )
            }
            Event::AgentStreamReady(r) => format!(
                "agent {} sandbox {} ready: {}",
                tag(r.agent_id),
                r.sandbox_id,
                r.stream_url
            ),
            Event::AgentTerminated(t) => {
                let agent = self.agent(t.agent_id);
                agent.status = AgentStatus::Terminated;
                agent.action.clear();
                format!("agent {} terminated", tag(t.agent_id))
            }
            Event::SessionComplete(c) => {
                self.status = c.status.unwrap_or(SessionStatus::Completed);
                self.error = c.error.clone();
                format!("session {}", self.status)
            }
        };
        self.print(line);
    }

    fn todo_created(&mut self, todo: &Todo) -> String {
        if !self.todos.contains_key(&todo.id) {
            self.order.push(todo.id);
        }
        let line = format!(
            "todo {} created: {}",
            tag(todo.id),
            one_line(&todo.description, 80)
        );
        let view = TodoView {
            description: todo.description.clone(),
            status: TodoStatus::Pending,
        };
        self.todos.insert(todo.id, view);
        line
    }

    /// One line per event, for logs and pipes; on a terminal the view is redrawn instead.
    fn print(&self, line: String) {
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
                    .filter(|t| t.status == TodoStatus::Completed)
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
            .filter(|t| t.status == TodoStatus::Completed)
            .count();
        let failed = self
            .todos
            .values()
            .filter(|t| t.status == TodoStatus::Failed)
            .count();
        let width = 30;
        let filled = ((done + failed) * width).checked_div(total).unwrap_or(0);
        let mut lines = vec![format!(
            "session {}  {:<10} [{}{}] {done}/{total} TODOs done{}",
            tag(self.id),
            self.status.as_str(),
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
                tag(id),
                a.status.as_str(),
                one_line(&a.action, 70)
            ));
        }
        if self.is_final() {
            for id in &self.order {
                if let Some(t) = self.todos.get(id) {
                    lines.push(format!(
                        "  {:<9} {}",
                        t.status.as_str(),
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
            let _ = writeln!(out, "{}", swarmq_shared::text::escape_for_terminal(l));
        }
        let _ = out.flush();
        self.drawn = lines.len();
    }
}
