//! Worker processes: started in their own process group with a minimal environment (cold, or
//! forked by the preloaded server: [`launcher`](crate::launcher)), stdout read
//! as bounded lines, stderr kept as a bounded tail, and the whole group killed when we are done.
//! Nothing a worker does (garbage, floods, huge lines, crashes, hangs) can hurt the runner.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use swarmq_shared::AgentJob;
use swarmq_shared::protocol::TaskLine;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};

use crate::launcher::Preloader;

/// Bytes of stderr kept for failure reasons.
const STDERR_TAIL: usize = 4096;
/// Pids of the worker processes alive now, for the per-agent memory metric ([`live_pids`]).
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// The worker processes alive now.
pub fn live_pids() -> Vec<i32> {
    LIVE.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .copied()
        .collect()
}

/// Longest a starting worker holds its start permit (see [`Worker::spawn`]).
const START_HOLD: Duration = Duration::from_secs(1);
/// How often a starting worker is checked for having gone to sleep.
const START_POLL: Duration = Duration::from_millis(20);
/// Lines buffered between the reader and the agent loop; a full buffer pauses the reader, so a
/// worker printing faster than Redis records is slowed down rather than buffered without bound.
const LINE_BUFFER: usize = 1024;

/// How to start a worker: the command and the environment every worker gets.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// PATH, HOME, LANG, SOCKET_URL, E2B_API_KEY, DEDALUS_API_KEY and the pass-through names.
    pub env: Vec<(String, String)>,
    pub max_line_bytes: usize,
    /// Nice value given to each worker's process group (0: the runner's own priority).
    pub nice: u8,
}

#[derive(Debug, thiserror::Error)]
#[error("worker command is empty")]
pub struct EmptyCommand;

impl WorkerSpec {
    pub fn new(
        command: &str,
        cwd: PathBuf,
        fixed_env: Vec<(String, String)>,
        max_line_bytes: usize,
    ) -> Result<Self, EmptyCommand> {
        let mut words = command.split_whitespace().map(str::to_owned);
        let program = words.next().ok_or(EmptyCommand)?;
        Ok(Self {
            program,
            args: words.collect(),
            cwd,
            env: fixed_env,
            max_line_bytes,
            nice: 0,
        })
    }
}

/// One item from a worker's stdout.
#[derive(Debug)]
pub enum Output {
    Line(Vec<u8>),
    /// A line longer than the limit, discarded; its length so far.
    Oversized(usize),
}

pub struct Worker {
    process: Process,
    pid: i32,
    stdin: Option<Box<dyn AsyncWrite + Send + Sync + Unpin>>,
    lines: mpsc::Receiver<Output>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    status: Option<ExitStatus>,
}

/// The worker process, however it was started.
enum Process {
    /// Our own child.
    Cold(Child),
    /// Forked by the preloaded server, which reports its exit status.
    Forked {
        exit: watch::Receiver<Option<ExitStatus>>,
    },
}

impl Process {
    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        match self {
            Self::Cold(child) => child.try_wait(),
            Self::Forked { exit } => Ok(*exit.borrow()),
        }
    }

    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            Self::Cold(child) => child.wait().await,
            Self::Forked { exit } => match exit.wait_for(Option::is_some).await {
                Ok(status) => Ok(status.unwrap_or_default()),
                Err(_) => Err(std::io::Error::other("exit status lost")),
            },
        }
    }
}

/// The environment of a worker for `job`'s task: the fixed part and the contract's four.
pub fn contract_env(
    spec: &WorkerSpec,
    job: AgentJob,
    task_id: &str,
    description: &str,
) -> Vec<(String, String)> {
    let mut env = spec.env.clone();
    env.push(("SESSION_ID".into(), job.session_id.to_string()));
    env.push(("AGENT_ID".into(), job.agent_id.to_string()));
    env.push(("TASK_ID".into(), task_id.to_owned()));
    env.push(("TASK_DESCRIPTION".into(), description.to_owned()));
    env
}

impl Worker {
    /// Starts the worker for `job` with its first task in the environment: forked by the
    /// preloaded server when there is one that can, else cold. `permit`, if any, is a place
    /// among the workers starting at once: it is given back when the worker's start-up burst of
    /// CPU is over — at its first stdout output, when it goes to sleep (waiting on the network,
    /// a timer, its stdin), when it exits — or after [`START_HOLD`], whichever comes first.
    pub async fn spawn(
        spec: &WorkerSpec,
        preloader: Option<&Preloader>,
        job: AgentJob,
        task: (&str, &str),
        permit: Option<OwnedSemaphorePermit>,
    ) -> std::io::Result<Self> {
        let env = contract_env(spec, job, task.0, task.1);
        if let Some(pre) = preloader
            && let Some(forked) = pre.spawn(spec, &env).await
        {
            let process = Process::Forked { exit: forked.exit };
            let stdin = Box::new(forked.stdin);
            let io = (forked.stdout, forked.stderr);
            return Ok(Self::assemble(
                process, forked.pid, stdin, io, spec, job, permit,
            ));
        }
        let mut child = Command::new(&spec.program)
            .args(&spec.args)
            .current_dir(&spec.cwd)
            .env_clear()
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        let missing = || std::io::Error::other("worker pipes missing");
        let stdin = Box::new(child.stdin.take().ok_or_else(missing)?);
        let io = (
            child.stdout.take().ok_or_else(missing)?,
            child.stderr.take().ok_or_else(missing)?,
        );
        Ok(Self::assemble(
            Process::Cold(child),
            pid,
            stdin,
            io,
            spec,
            job,
            permit,
        ))
    }

    fn assemble(
        process: Process,
        pid: i32,
        stdin: Box<dyn AsyncWrite + Send + Sync + Unpin>,
        (stdout, stderr): (
            impl AsyncRead + Send + Unpin + 'static,
            impl AsyncRead + Send + Unpin + 'static,
        ),
        spec: &WorkerSpec,
        job: AgentJob,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        lower_priority(pid, spec.nice);
        LIVE.lock().unwrap_or_else(|p| p.into_inner()).insert(pid);
        let (tx, lines) = mpsc::channel(LINE_BUFFER);
        tokio::spawn(read_lines(stdout, tx, spec.max_line_bytes, (pid, permit)));
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        tokio::spawn(keep_tail(stderr, tail.clone(), job));
        Self {
            process,
            pid,
            stdin: Some(stdin),
            lines,
            stderr: tail,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The next stdout item; `None` once stdout is closed (the worker exited, or closed it).
    pub async fn next_output(&mut self) -> Option<Output> {
        self.lines.recv().await
    }

    /// True when no stdout line is waiting (time to flush a batch).
    pub fn output_drained(&self) -> bool {
        self.lines.is_empty()
    }

    /// Writes the next task to the worker's stdin. An error means the worker is gone.
    pub async fn send_task(&mut self, task: &TaskLine) -> std::io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdin closed"))?;
        let mut line = serde_json::to_vec(task).map_err(std::io::Error::other)?;
        line.push(b'\n');
        stdin.write_all(&line).await?;
        stdin.flush().await
    }

    /// True when the process has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        if self.status.is_some() {
            return true;
        }
        match self.process.try_wait() {
            Ok(Some(status)) => {
                self.status = Some(status);
                record_exit(if status.success() { "ok" } else { "failed" });
                true
            }
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Waits up to `limit` for the process to exit; kills the group if it does not.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let status = match tokio::time::timeout(limit, self.process.wait()).await {
            Ok(Ok(status)) => status,
            _ => return self.kill().await,
        };
        self.status = Some(status);
        record_exit(if status.success() { "ok" } else { "failed" });
        // Children the worker left behind in its group go with it.
        self.signal_group(Signal::SIGKILL);
        status
    }

    /// Closes stdin (no more tasks), lets the worker clean up for `grace`, then kills the group.
    pub async fn finish(mut self, grace: Duration) -> ExitStatus {
        self.stdin.take();
        self.wait_exit(grace).await
    }

    /// SIGTERM to the group, SIGKILL one second later if anything is left; reaps the process.
    pub async fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            self.signal_group(Signal::SIGKILL);
            return status;
        }
        self.stdin.take();
        self.signal_group(Signal::SIGTERM);
        let status = match tokio::time::timeout(Duration::from_secs(1), self.process.wait()).await {
            Ok(Ok(status)) => status,
            _ => {
                self.signal_group(Signal::SIGKILL);
                match self.process.wait().await {
                    Ok(status) => status,
                    Err(_) => std::os::unix::process::ExitStatusExt::from_raw(9),
                }
            }
        };
        self.signal_group(Signal::SIGKILL);
        self.status = Some(status);
        record_exit("killed");
        status
    }

    fn signal_group(&self, signal: Signal) {
        if self.pid > 0 {
            // ESRCH (group already gone) is the normal case after an exit.
            let _ = killpg(Pid::from_raw(self.pid), signal);
        }
    }

    /// The last few KiB of stderr, lossily decoded.
    pub fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let (a, b) = tail.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }
}

/// Gives the worker's process group (it leads it) the nice value `nice`, so the runner relaying
/// its lines runs first when workers saturate the CPU. Set from here, right after the spawn,
/// rather than in the child before `exec`: a `pre_exec` hook would make every spawn a full
/// `fork` of the runner instead of `posix_spawn`; anything the worker forks inherits the value.
fn lower_priority(pid: i32, nice: u8) {
    if pid <= 0 || nice == 0 {
        return;
    }
    // SAFETY: setpriority only reads its integer arguments.
    let rc = unsafe { libc::setpriority(libc::PRIO_PGRP, pid as libc::id_t, i32::from(nice)) };
    if rc != 0 {
        tracing::debug!(pid, error = %std::io::Error::last_os_error(), "could not renice a worker");
    }
}

impl Drop for Worker {
    /// As `kill_on_drop` does for a cold worker: a forked worker is not left running unwatched.
    fn drop(&mut self) {
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.pid);
        if let Process::Forked { exit } = &self.process
            && self.status.is_none()
            && exit.borrow().is_none()
            && self.pid > 0
        {
            let _ = nix::sys::signal::kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
    }
}

fn record_exit(outcome: &'static str) {
    metrics::counter!("swarmq_worker_exits_total", "outcome" => outcome).increment(1);
}

/// Splits stdout into lines of at most `max` bytes; longer ones are discarded up to their newline.
async fn read_lines(
    stdout: impl AsyncRead + Unpin,
    tx: mpsc::Sender<Output>,
    max: usize,
    (pid, permit): (i32, Option<OwnedSemaphorePermit>),
) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    if let Some(permit) = permit {
        // `fill_buf` is cancel-safe: what it read stays buffered for the loop below.
        let started = async {
            tokio::select! {
                _ = reader.fill_buf() => {}
                _ = asleep(pid) => {}
            }
        };
        let _ = tokio::time::timeout(START_HOLD, started).await;
        drop(permit);
    }
    let mut line: Vec<u8> = Vec::new();
    let mut discarding: Option<usize> = None;
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (part, has_newline) = match memchr(b'\n', chunk) {
            Some(i) => (&chunk[..i], true),
            None => (chunk, false),
        };
        let consumed = part.len() + usize::from(has_newline);
        match discarding.as_mut() {
            Some(seen) => *seen += part.len(),
            None if line.len() + part.len() > max => {
                discarding = Some(line.len() + part.len());
                line.clear();
            }
            None => line.extend_from_slice(part),
        }
        reader.consume(consumed);
        if has_newline {
            let item = match discarding.take() {
                Some(seen) => Output::Oversized(seen),
                None => Output::Line(std::mem::take(&mut line)),
            };
            if tx.send(item).await.is_err() {
                break;
            }
        }
    }
    if let Some(seen) = discarding {
        let _ = tx.send(Output::Oversized(seen)).await;
    } else if !line.is_empty() {
        // A last line without its newline still counts.
        let _ = tx.send(Output::Line(line)).await;
    }
}

/// Returns once process `pid` sleeps (state `S`: waiting for something, not computing) or is
/// gone.
async fn asleep(pid: i32) {
    loop {
        tokio::time::sleep(START_POLL).await;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if !matches!(state, Some("R" | "D")) {
            return;
        }
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

async fn keep_tail(
    mut stderr: impl AsyncRead + Unpin,
    tail: Arc<Mutex<VecDeque<u8>>>,
    job: AgentJob,
) {
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tracing::debug!(
            session_id = %job.session_id,
            agent_id = %job.agent_id,
            stderr = %String::from_utf8_lossy(&buf[..n]).trim_end(),
            "worker stderr"
        );
        let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
        t.extend(&buf[..n]);
        let excess = t.len().saturating_sub(STDERR_TAIL);
        t.drain(..excess);
    }
}
