//! Real Socket.IO clients watching a session: the official npm `socket.io-client`
//! (`tests/clients/watch.mjs`) or `python-socketio` (`tests/clients/watch.py`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Watcher {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    /// Reads the client's stdout until EOF.
    reader: Option<std::thread::JoinHandle<()>>,
    /// python-socketio's threaded client runs each event handler in its own thread, so it may
    /// print events out of order; its events are put back in `seq` order (which is what `seq`
    /// is for). The npm client delivers in order and is checked as it printed.
    reorders: bool,
}

impl Watcher {
    /// The npm client; `args` as `watch.mjs` takes them (e.g. `["--since", "0"]`).
    pub fn node(url: &str, session: &str, args: &[&str]) -> Self {
        let dir = crate::repo_root().join("tests/clients");
        assert!(
            dir.join("node_modules/socket.io-client").exists(),
            "the npm test client is not installed: run `npm ci --prefix tests/clients`"
        );
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("watch.mjs"))
            .arg(url)
            .arg(session)
            .args(args);
        Self::spawn(cmd, false)
    }

    /// The python-socketio client.
    pub fn python(url: &str, session: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new(crate::python());
        cmd.arg(crate::repo_root().join("tests/clients/watch.py"))
            .arg(url)
            .arg(session)
            .args(args);
        Self::spawn(cmd, true)
    }

    fn spawn(mut cmd: Command, reorders: bool) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn watcher");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("lines").push(v);
                }
            }
        });
        Self {
            child,
            lines,
            reader: Some(reader),
            reorders,
        }
    }

    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().expect("lines").clone()
    }

    /// `(event, data)` of every event received so far.
    pub fn events(&self) -> Vec<(String, Value)> {
        let mut events: Vec<(String, Value)> = self
            .lines()
            .into_iter()
            .filter(|l| l["type"] == "event")
            .map(|l| {
                (
                    l["event"].as_str().unwrap_or("").to_owned(),
                    l["data"].clone(),
                )
            })
            .collect();
        if self.reorders {
            events.sort_by_key(|(_, d)| d["seq"].as_u64());
        }
        events
    }

    /// Waits until the client printed a line of `kind` (e.g. "ack", "connect").
    pub async fn wait_line(&self, kind: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| l["type"] == kind) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "client printed no {kind:?} line: {:?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the client to exit (it does after `session:complete`); returns its events.
    pub async fn finish(mut self, limit: Duration) -> Vec<(String, Value)> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Every line the client printed is read once its stdout reaches EOF.
                if let Some(reader) = self.reader.take() {
                    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
                }
                assert!(status.success(), "client failed: {:?}", self.lines());
                return self.events();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("client did not see session:complete: {:?}", self.lines());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
