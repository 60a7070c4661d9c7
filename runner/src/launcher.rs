//! How worker processes are started: `Preload` (the default, for Python commands) — one Python
//! server per runner (`workers/swarmq_preload.py`, embedded in this
//! binary) imports the worker's modules once and forks a child per agent, which gets the agent's
//! own pipes (passed over a Unix socket), environment, process group and nice value. The child is
//! the worker exactly as a cold start would make it; the runner signals its group and learns its
//! exit status from the server. Other commands, and every command with `Cold`, get a fresh
//! `Command` per worker.
//!
//! If the server dies it is restarted at the next start, and a start that it lost is tried again
//! (the TODO never sees it: no attempt is counted). If it cannot be started, this runner starts
//! its workers cold from then on and says so once.

use std::collections::HashMap;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::UnixStream;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, watch};

use crate::worker::WorkerSpec;

/// The server's source, written to its private directory at start.
const SERVER_PY: &str = include_str!("../../workers/swarmq_preload.py");
/// How long the server may take to import its modules and listen.
const SERVER_START_LIMIT: Duration = Duration::from_secs(120);
/// How long a start request may wait for the child's pid.
const SPAWN_LIMIT: Duration = Duration::from_secs(30);
/// Starts tried (restarting the server if it died) before this one start goes cold.
const SPAWN_TRIES: usize = 5;
/// Pause before trying a start again on a server that is running but refused it.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// `SWARMQ_WORKER_START`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StartMode {
    /// A fresh process per worker (`SWARMQ_WORKER_CMD` as given).
    Cold,
    /// Forked from a preloaded Python server (Python script or `-m module` commands only).
    Preload,
}

/// What a preloaded server runs in each child: `python SCRIPT ARGS` or `python -m MODULE ARGS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Script(String),
    Module(String),
}

/// The Python target of a worker command, if it is one the server can run.
pub fn python_target(spec: &WorkerSpec) -> Option<(Target, Vec<String>)> {
    let name = Path::new(&spec.program).file_name()?.to_str()?;
    if !name.starts_with("python") {
        return None;
    }
    match spec.args.as_slice() {
        [flag, module, rest @ ..] if flag == "-m" => {
            Some((Target::Module(module.clone()), rest.to_vec()))
        }
        [script, rest @ ..] if !script.starts_with('-') && script.ends_with(".py") => {
            Some((Target::Script(script.clone()), rest.to_vec()))
        }
        _ => None,
    }
}

/// A worker process started by the server: its pid and, once it is gone, its exit status.
pub struct Forked {
    pub pid: i32,
    pub exit: watch::Receiver<Option<ExitStatus>>,
    pub stdin: pipe::Sender,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
}

/// The preloaded server of one runner, started on first use and restarted when it died.
pub struct Preloader {
    python: String,
    target: Target,
    args: Vec<String>,
    modules: String,
    dir: PathBuf,
    /// The running server and its generation (how many were started before it).
    server: Mutex<Option<(u64, Child)>>,
    started: AtomicU64,
    /// The server could not be started: every worker starts cold from now on.
    disabled: AtomicBool,
}

impl Preloader {
    pub fn new(spec: &WorkerSpec, modules: &str) -> std::io::Result<Option<Self>> {
        let Some((target, args)) = python_target(spec) else {
            return Ok(None);
        };
        let dir = std::env::temp_dir().join(format!("swarmq-preload-{}", uuid::Uuid::new_v4()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        std::fs::write(dir.join("swarmq_preload.py"), SERVER_PY)?;
        Ok(Some(Self {
            python: spec.program.clone(),
            target,
            args,
            modules: modules.to_owned(),
            dir,
            server: Mutex::new(None),
            started: AtomicU64::new(0),
            disabled: AtomicBool::new(false),
        }))
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    /// The pid of the running server, if any (tests kill it).
    pub async fn server_pid(&self) -> Option<u32> {
        self.server.lock().await.as_ref().and_then(|(_, c)| c.id())
    }

    /// Starts a worker with `env`; `None` when this start must go cold (the server cannot run).
    pub async fn spawn(&self, spec: &WorkerSpec, env: &[(String, String)]) -> Option<Forked> {
        for _ in 0..SPAWN_TRIES {
            let generation = self.ensure_server(spec).await?;
            match tokio::time::timeout(SPAWN_LIMIT, self.request(spec, env)).await {
                Ok(Ok(forked)) => return Some(forked),
                Ok(Err(e)) if self.server_alive(generation).await => {
                    // Still running: a full listen backlog (a burst with no start limit) or a
                    // refused request; try again shortly rather than restart a healthy server.
                    tracing::debug!(error = %e, "worker server refused a start; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "worker server lost a start; retrying"),
                Err(_) => tracing::warn!("worker server did not answer a start; retrying"),
            }
            self.stop_server(generation).await;
        }
        tracing::warn!(
            "worker server failed {SPAWN_TRIES} starts in a row; starting this one cold"
        );
        None
    }

    /// Starts the server unless it is running; its generation. `None` when it cannot run
    /// (logged once).
    pub async fn ensure_server(&self, spec: &WorkerSpec) -> Option<u64> {
        if self.is_disabled() {
            return None;
        }
        let mut server = self.server.lock().await;
        if let Some((generation, child)) = server.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                return Some(*generation);
            }
            tracing::warn!("worker server exited; restarting it");
        }
        match self.start_server(spec).await {
            Ok(child) => {
                let generation = self.started.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::info!(
                    pid = child.id(),
                    generation,
                    "worker server ready: workers start preloaded"
                );
                *server = Some((generation, child));
                Some(generation)
            }
            Err(e) => {
                *server = None;
                self.disabled.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot start the worker server; starting workers cold");
                None
            }
        }
    }

    /// At shutdown (workers are gone): stops the server and removes its directory.
    pub async fn stop(&self) {
        if let Some((_, mut child)) = self.server.lock().await.take() {
            let _ = child.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Whether the server of `generation` is still the running one.
    async fn server_alive(&self, generation: u64) -> bool {
        let mut server = self.server.lock().await;
        match server.as_mut() {
            Some((g, child)) if *g == generation => matches!(child.try_wait(), Ok(None)),
            _ => false,
        }
    }

    /// Stops the server of `generation` (one that lost a start), unless it was replaced already.
    async fn stop_server(&self, generation: u64) {
        let mut server = self.server.lock().await;
        if server.as_ref().is_some_and(|(g, _)| *g == generation)
            && let Some((_, mut child)) = server.take()
        {
            let _ = child.kill().await;
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("sock")
    }

    async fn start_server(&self, spec: &WorkerSpec) -> std::io::Result<Child> {
        let socket = self.socket();
        let _ = std::fs::remove_file(&socket);
        let mut cmd = Command::new(&self.python);
        cmd.arg(self.dir.join("swarmq_preload.py"))
            .arg("--socket")
            .arg(&socket)
            .arg("--preload")
            .arg(&self.modules);
        match &self.target {
            Target::Script(s) => cmd.arg("--script").arg(s),
            Target::Module(m) => cmd.arg("--module").arg(m),
        };
        cmd.arg("--")
            .args(&self.args)
            .current_dir(&spec.cwd)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // The server keeps the runner's CPU priority, not the workers' (`SWARMQ_WORKER_NICE`):
        // like the runner relaying lines, it is on the path of every start, and it forks them
        // one at a time; niced, a burst's own children would starve it. Each child lowers its
        // priority first thing after the fork (and the runner sets it on the child's group).
        let mut child = cmd.spawn()?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(log_server_stderr(stderr));
        }
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut ready = String::new();
        let mut stdout = BufReader::new(stdout);
        match tokio::time::timeout(SERVER_START_LIMIT, stdout.read_line(&mut ready)).await {
            Ok(Ok(_)) if ready.trim() == "ready" => Ok(child),
            Ok(Ok(_)) => Err(std::io::Error::other(format!(
                "the server exited before it was ready ({:?})",
                child.try_wait().ok().flatten()
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::other("the server was not ready in time")),
        }
    }

    /// One start: the environment and the child's pipe ends to the server, its pid back.
    async fn request(
        &self,
        spec: &WorkerSpec,
        env: &[(String, String)],
    ) -> std::io::Result<Forked> {
        let mut stream = UnixStream::connect(self.socket()).await?;
        let (stdin_r, stdin_w) = pipe_pair()?;
        let (stdout_r, stdout_w) = pipe_pair()?;
        let (stderr_r, stderr_w) = pipe_pair()?;
        let env: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut line = serde_json::to_vec(&serde_json::json!({ "env": env, "nice": spec.nice }))
            .map_err(std::io::Error::other)?;
        line.push(b'\n');
        let fds = [
            stdin_r.as_raw_fd(),
            stdout_w.as_raw_fd(),
            stderr_w.as_raw_fd(),
        ];
        let sent = loop {
            stream.writable().await?;
            let fd = stream.as_raw_fd();
            match stream.try_io(Interest::WRITABLE, || {
                let cmsg = [ControlMessage::ScmRights(&fds)];
                sendmsg::<()>(fd, &[IoSlice::new(&line)], &cmsg, MsgFlags::empty(), None)
                    .map_err(std::io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        stream.write_all(&line[sent..]).await?;
        drop((stdin_r, stdout_w, stderr_w));
        let mut replies = BufReader::new(stream).lines();
        let pid = match replies.next_line().await? {
            Some(l) => l
                .strip_prefix("pid ")
                .and_then(|p| p.trim().parse::<i32>().ok())
                .ok_or_else(|| std::io::Error::other(format!("unexpected reply {l:?}")))?,
            None => return Err(std::io::Error::other("the server closed the connection")),
        };
        let (tx, exit) = watch::channel(None);
        tokio::spawn(watch_exit(replies, pid, tx));
        Ok(Forked {
            pid,
            exit,
            stdin: pipe::Sender::from_owned_fd(stdin_w)?,
            stdout: pipe::Receiver::from_owned_fd(stdout_r)?,
            stderr: pipe::Receiver::from_owned_fd(stderr_r)?,
        })
    }
}

impl Drop for Preloader {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads the child's `exit S` line; when the server died first, waits for the process to vanish
/// (its status is then unknown and reported as 0, with a warning).
async fn watch_exit(
    mut replies: tokio::io::Lines<BufReader<UnixStream>>,
    pid: i32,
    tx: watch::Sender<Option<ExitStatus>>,
) {
    if let Ok(Some(line)) = replies.next_line().await
        && let Some(status) = line
            .strip_prefix("exit ")
            .and_then(|s| s.trim().parse().ok())
    {
        let _ = tx.send(Some(ExitStatus::from_raw(status)));
        return;
    }
    tracing::warn!(
        pid,
        "worker server gone: this worker's exit status will be unknown"
    );
    wait_vanished(pid).await;
    let _ = tx.send(Some(ExitStatus::from_raw(0)));
}

/// Waits until process `pid` (not our child) has exited, with a pidfd.
async fn wait_vanished(pid: i32) {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return; // ESRCH: already gone
    }
    // SAFETY: `fd` is a descriptor we just opened and own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the OwnedFd is moved in and stays open, unchanged, as long as the AsyncFd lives.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    };
    if let Ok(fd) = registered {
        let _ = fd.readable().await;
    }
}

/// A close-on-exec pipe: (read end, write end).
fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

async fn log_server_stderr(stderr: tokio::process::ChildStderr) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::warn!(line = %line, "worker server");
    }
}
