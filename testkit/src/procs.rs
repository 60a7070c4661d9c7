//! The built binaries as separate processes, with JSON logs captured for assertions.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `target/<profile>/<name>`, next to the running test binary.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let here = exe.parent().expect("exe dir").to_owned();
    // A test binary lives in target/<profile>/deps, a bin in target/<profile>.
    let dir = if here.join(name).exists() {
        here
    } else {
        here.parent().expect("target dir").to_owned()
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// Runs the `swarmq` CLI against the coordinator at `url` and waits for it.
pub fn swarmq_cli(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(binary("swarmq"))
        .env("SWARMQ_URL", url)
        .args(args)
        .output()
        .expect("run swarmq")
}

/// A child process whose stderr (JSON log lines) is collected.
pub struct Process {
    child: Child,
    name: String,
    logs: Arc<Mutex<Vec<String>>>,
    /// Set once every line of stderr was read (EOF).
    logs_complete: Arc<std::sync::atomic::AtomicBool>,
    status: Option<ExitStatus>,
}

/// Log lines of each process a failing test prints (its last ones: what led to the failure).
const LOG_TAIL_ON_FAILURE: usize = 80;

impl Process {
    pub fn spawn(name: &str, envs: &[(String, String)]) -> Self {
        Self::spawn_as(name, envs, None)
    }

    /// [`Process::spawn`] as another user (`uid`, with the same number as its group), so a test
    /// run as root can check what a same-user worker can reach.
    pub fn spawn_as(name: &str, envs: &[(String, String)], uid: Option<u32>) -> Self {
        let mut cmd = Command::new(binary(name));
        if let Some(uid) = uid {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(uid);
        }
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("SWARMQ_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .current_dir(crate::repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn binary");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        let logs_complete = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let complete = logs_complete.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("SWARMQ_TEST_ECHO").is_some() {
                    eprintln!("{line}");
                }
                sink.lock().expect("logs").push(line);
            }
            complete.store(true, std::sync::atomic::Ordering::Release);
        });
        Self {
            child,
            name: name.to_owned(),
            logs,
            logs_complete,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("logs").clone()
    }

    /// The collected log lines themselves, growing as the process logs: for a watcher that
    /// reads them as they come (a bench) rather than copying them all each time.
    pub fn log_lines(&self) -> Arc<Mutex<Vec<String>>> {
        self.logs.clone()
    }

    /// Log lines (parsed) whose message contains `needle`.
    pub fn log_messages(&self, needle: &str) -> Vec<serde_json::Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"].as_str().is_some_and(|m| m.contains(needle)))
            .collect()
    }

    /// Waits (without blocking the runtime) for a log message containing `needle`.
    pub async fn wait_log(&self, needle: &str, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = self.log_messages(needle).into_iter().next() {
                return v;
            }
            if Instant::now() > deadline {
                panic!("no {needle:?} in logs:\n{}", self.logs().join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.pid()), signal);
    }

    /// Waits for the process to exit, up to `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
                self.wait_logs_complete().await;
                return self.status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// After the exit: waits (a few seconds at most: a child of its own may hold stderr open)
    /// until the reader has every line the process wrote, so that `logs()` is complete.
    async fn wait_logs_complete(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self
            .logs_complete
            .load(std::sync::atomic::Ordering::Acquire)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The exit status if the process has already exited (without waiting).
    pub fn wait_exit_now(&self) -> Option<ExitStatus> {
        let pid = Pid::from_raw(self.pid());
        match nix::sys::wait::waitpid(
            pid,
            Some(
                nix::sys::wait::WaitPidFlag::WNOHANG
                    | nix::sys::wait::WaitPidFlag::WNOWAIT
                    | nix::sys::wait::WaitPidFlag::WEXITED,
            ),
        ) {
            Ok(nix::sys::wait::WaitStatus::StillAlive) => None,
            Ok(_) => Some(std::os::unix::process::ExitStatusExt::from_raw(0)),
            Err(_) => self.status,
        }
    }

    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what its daemons logged last (CI keeps nothing else).
        if std::thread::panicking() && std::env::var_os("SWARMQ_TEST_ECHO").is_none() {
            let logs = self.logs();
            let tail = &logs[logs.len().saturating_sub(LOG_TAIL_ON_FAILURE)..];
            eprintln!(
                "--- last {} log lines of {} (pid {}) ---",
                tail.len(),
                self.name,
                self.child.id()
            );
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// `swarmq-coordinator` on a free port.
pub struct CoordinatorProcess {
    pub process: Process,
    pub url: String,
}

impl CoordinatorProcess {
    pub async fn start(redis_url: &str, extra: &[(&str, &str)]) -> Self {
        let mut envs: Vec<(String, String)> = vec![
            ("REDIS_URL".into(), redis_url.into()),
            ("HOST".into(), "127.0.0.1".into()),
            ("PORT".into(), "0".into()),
        ];
        envs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let process = Process::spawn("swarmq-coordinator", &envs);
        let ready = process
            .wait_log("coordinator ready", Duration::from_secs(20))
            .await;
        let addr = ready["addr"]
            .as_str()
            .expect("addr in ready log")
            .to_owned();
        Self {
            process,
            url: format!("http://{addr}"),
        }
    }

    pub fn api(&self) -> crate::Api {
        crate::Api::new(&self.url)
    }
}

/// `swarmq-runner` with a worker command.
pub struct RunnerProcess {
    pub process: Process,
}

impl RunnerProcess {
    pub async fn start(redis_url: &str, worker_cmd: &str, extra: &[(&str, &str)]) -> Self {
        let mut envs: Vec<(String, String)> = vec![
            ("REDIS_URL".into(), redis_url.into()),
            ("SWARMQ_WORKER_CMD".into(), worker_cmd.into()),
            ("SWARMQ_RETRY_BACKOFF_MS".into(), "50".into()),
        ];
        envs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let process = Process::spawn("swarmq-runner", &envs);
        process
            .wait_log("runner ready", Duration::from_secs(20))
            .await;
        Self { process }
    }

    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }
}
