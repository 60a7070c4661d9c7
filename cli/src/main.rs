//! `swarmq`: the command line for a swarmq coordinator.
//!
//! # Layout
//! - this file: the commands (clap) and their output;
//! - [`api`]: the HTTP calls, with clear errors when the coordinator is unreachable;
//! - [`live`]: a minimal Socket.IO v5 client (Engine.IO v4 over a websocket) that joins a
//!   session with `since` and re-joins after a reconnect, so no event is missed;
//! - [`progress`]: the live terminal view (progress bar, each agent's latest action).
//!
//! Everything printed may hold text from prompts, results and events: `println!` and
//! `eprintln!` are shadowed below so that no control character or bidirectional override
//! reaches the terminal raw (they show as `\u001B`, which is also a valid JSON escape).

/// `std::println!`, with unsafe characters escaped (see `swarmq_shared::text`), and quiet when
/// the reader has gone (`swarmq list | head`): see [`print_line`].
macro_rules! println {
    () => { $crate::print_line("") };
    ($($arg:tt)*) => {
        $crate::print_line(&swarmq_shared::text::escape_for_terminal(&format!($($arg)*)))
    };
}

/// Writes one line to stdout. A closed pipe ends the program quietly with success, as `cat` or
/// `grep` do, instead of the panic `std::println!` gives; any other write error is reported.
fn print_line(line: &str) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            std::eprintln!("swarmq: cannot write to stdout: {e}");
            std::process::exit(1);
        }
        std::process::exit(0);
    }
}

/// `std::eprintln!`, with unsafe characters escaped.
macro_rules! eprintln {
    ($($arg:tt)*) => {
        std::eprintln!("{}", swarmq_shared::text::escape_for_terminal(&format!($($arg)*)))
    };
}

mod api;
mod live;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use swarmq_shared::Session;
use swarmq_shared::model::SessionSummary;

use crate::api::Api;

#[derive(Parser)]
#[command(
    name = "swarmq",
    version,
    about = "Submit, watch, inspect and cancel swarmq sessions"
)]
struct Cli {
    /// Coordinator base URL.
    #[arg(
        long,
        env = "SWARMQ_URL",
        default_value = "http://127.0.0.1:3000",
        global = true
    )]
    url: String,
    /// API token, when the coordinator requires one.
    #[arg(long, env = "SWARMQ_API_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a session: the prompt is split into TODOs worked by N agents.
    Submit {
        prompt: String,
        /// Number of agents.
        #[arg(long, short = 'n', default_value_t = 2)]
        agents: u32,
        /// Watch it live until it ends (exit status 1 if it fails or is cancelled).
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Watch a session live until it ends (exit status 1 if it fails or is cancelled).
    Watch { id: String },
    /// Show a session.
    Get {
        id: String,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// List sessions, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a session: its workers are killed, no further TODO starts.
    Cancel { id: String },
    /// Print a read-only link to a session's dashboard page: it shows that session (and only
    /// it) to whoever has the link, until it expires. Needs the admin token.
    Share {
        id: String,
        /// How long the link works, in seconds (default 7 days, at most 90).
        #[arg(long)]
        ttl_secs: Option<u64>,
        /// Dashboard base URL, when it is not served by the coordinator at --url.
        #[arg(long, env = "SWARMQ_DASHBOARD_URL")]
        dashboard: Option<String>,
    },
    /// Registered runners and the slots they use.
    Runners {
        #[arg(long)]
        json: bool,
    },
    /// Queue depth, runners and sessions by status.
    Stats {
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("swarmq: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let api = Api::new(&cli.url, cli.token.clone())?;
    match cli.command {
        Command::Submit {
            prompt,
            agents,
            watch,
        } => {
            let id = api.submit(&prompt, agents).await?;
            println!("{id}");
            if watch {
                return progress::watch(&api, &id).await;
            }
        }
        Command::Watch { id } => return progress::watch(&api, &id).await,
        Command::Get { id, json } => {
            let session = api.session(&id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&session)?);
            } else {
                print_session(&api::typed(session)?);
            }
        }
        Command::List { limit, json } => {
            let page = api.get(&format!("/api/sessions?limit={limit}")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print_sessions(&api::typed::<Page>(page)?.sessions);
            }
        }
        Command::Cancel { id } => {
            api.cancel(&id).await?;
            println!("cancelled {id}");
        }
        Command::Share {
            id,
            ttl_secs,
            dashboard,
        } => share(&api, &id, ttl_secs, dashboard.as_deref()).await?,
        Command::Runners { json } => {
            let body = api.get("/api/runners").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                let runners = body["runners"].as_array().cloned().unwrap_or_default();
                if runners.is_empty() {
                    println!("no runners registered");
                }
                for r in runners {
                    println!(
                        "{}  {}  busy {}/{}{}{}",
                        r["id"].as_str().unwrap_or("?"),
                        r["host"].as_str().unwrap_or("?"),
                        r["busy"],
                        r["slots"],
                        if r["draining"] == true {
                            "  draining"
                        } else {
                            ""
                        },
                        if r["alive"] == true {
                            ""
                        } else {
                            "  (lease expired)"
                        },
                    );
                }
            }
        }
        Command::Stats { json } => {
            let s = api.get("/api/stats").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("ready queue     {}", s["readyQueue"]);
                println!(
                    "runners         {} live, {} of {} slots busy",
                    s["runners"]["live"], s["runners"]["busy"], s["runners"]["slots"]
                );
                let ss = &s["sessions"];
                println!(
                    "sessions        {} decomposing, {} running ({} TODOs pending), {} completed, {} failed, {} cancelled",
                    ss["decomposing"],
                    ss["running"],
                    ss["pendingTodos"],
                    ss["completed"],
                    ss["failed"],
                    ss["cancelled"]
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `GET /api/sessions`, as far as `list` shows it.
#[derive(serde::Deserialize)]
struct Page {
    sessions: Vec<SessionSummary>,
}

fn print_sessions(sessions: &[SessionSummary]) {
    for s in sessions {
        println!(
            "{}  {:<11} {} agent(s)  {}",
            s.id,
            s.status.as_str(),
            s.agent_count,
            one_line(&s.prompt, 60)
        );
    }
}

fn print_session(s: &Session) {
    println!("session   {}", s.id);
    println!("status    {}", s.status);
    if let Some(e) = &s.error {
        println!("error     {e}");
    }
    println!("prompt    {}", one_line(&s.prompt, 100));
    println!("todos");
    for t in &s.todos {
        let id = t.id.to_string();
        println!(
            "  {:<9} {}  {}",
            t.status.as_str(),
            short(&id),
            one_line(&t.description, 70)
        );
        if let Some(r) = &t.result {
            println!("            → {}", one_line(r, 90));
        }
        if let Some(e) = &t.error {
            println!("            ✗ {}", one_line(e, 90));
        }
    }
    println!("agents");
    for a in &s.agents {
        let (id, task) = (a.id.to_string(), a.current_task_id.map(|t| t.to_string()));
        println!(
            "  {:<10} {}  task {}",
            a.status.as_str(),
            short(&id),
            task.as_deref().map(short).unwrap_or("-")
        );
    }
}

pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!(
            "{}…",
            flat.chars().take(max.saturating_sub(1)).collect::<String>()
        )
    } else {
        flat
    }
}

/// `swarmq share`: mints a share token and prints the dashboard link carrying it.
async fn share(
    api: &Api,
    id: &str,
    ttl_secs: Option<u64>,
    dashboard: Option<&str>,
) -> anyhow::Result<()> {
    let query = ttl_secs
        .map(|t| format!("?ttlSecs={t}"))
        .unwrap_or_default();
    let shared = api
        .post(&format!("/api/sessions/{id}/share{query}"))
        .await?;
    let path = shared["path"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the coordinator's answer has no path"))?;
    let base = dashboard.unwrap_or(api.base()).trim_end_matches('/');
    println!("{base}{path}");
    let expires = shared["expiresAt"].as_u64().unwrap_or_default();
    let hours = expires.saturating_sub(swarmq_shared::now_ms() / 1000) / 3600;
    eprintln!(
        "read-only link to session {id}, valid {hours} h; revoke every link by rotating SWARMQ_SHARE_KEY"
    );
    Ok(())
}
