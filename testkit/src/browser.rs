//! The dashboard in a real browser: Debian's headless Chromium driven by npm `playwright-core`
//! (`tests/clients/dashboard.mjs`), one JSON command per line. Pages are named, so a test can
//! hold several (two coordinators side by side). If the test panics, every page is saved as a
//! screenshot in its output folder (`target/test-output/<name>/`) before the browser closes.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How long a `wait` may take unless the test says otherwise.
pub const WAIT: Duration = Duration::from_secs(90);

pub struct Browser {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: mpsc::UnboundedReceiver<Value>,
    pub output_dir: PathBuf,
}

/// Where Debian installs Chromium (`apt-get install chromium`); `SWARMQ_CHROMIUM` overrides.
pub fn chromium() -> PathBuf {
    std::env::var_os("SWARMQ_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

impl Browser {
    /// A fresh browser (its own profile: empty sessionStorage) for the test `name`.
    pub fn start(name: &str) -> Self {
        let clients = crate::repo_root().join("tests/clients");
        assert!(
            clients.join("node_modules/playwright-core").exists(),
            "playwright-core is not installed: run `npm ci --prefix tests/clients`"
        );
        assert!(
            chromium().exists(),
            "{} is missing: `apt-get install chromium` (scripts/test.sh does it)",
            chromium().display()
        );
        let output_dir = crate::repo_root().join("target/test-output").join(name);
        std::fs::create_dir_all(&output_dir).expect("test output dir");
        let mut child = Command::new("node")
            .arg(clients.join("dashboard.mjs"))
            .arg(&output_dir)
            .env("SWARMQ_CHROMIUM", chromium())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node dashboard.mjs");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, replies) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Self {
            stdin: child.stdin.take(),
            child,
            replies,
            output_dir,
        }
    }

    /// Sends one command and answers its value, or the driver's error.
    pub async fn command(&mut self, command: Value) -> Result<Value, String> {
        let stdin = self.stdin.as_mut().expect("browser is open");
        writeln!(stdin, "{command}").map_err(|e| format!("browser driver gone: {e}"))?;
        stdin.flush().map_err(|e| e.to_string())?;
        let reply = self
            .replies
            .recv()
            .await
            .ok_or_else(|| "browser driver exited".to_owned())?;
        if reply["ok"] == true {
            Ok(reply["value"].clone())
        } else {
            Err(reply["error"].as_str().unwrap_or("?").to_owned())
        }
    }

    async fn must(&mut self, command: Value) -> Value {
        let what = command.to_string();
        self.command(command)
            .await
            .unwrap_or_else(|e| panic!("browser: {what}: {e}"))
    }

    pub async fn open(&mut self, page: &str, url: &str) {
        self.must(json!({"cmd": "open", "page": page, "url": url}))
            .await;
    }

    pub async fn fill(&mut self, page: &str, selector: &str, value: &str) {
        self.must(json!({"cmd": "fill", "page": page, "selector": selector, "value": value}))
            .await;
    }

    pub async fn click(&mut self, page: &str, selector: &str) {
        self.must(json!({"cmd": "click", "page": page, "selector": selector}))
            .await;
    }

    /// Waits until the JavaScript expression is truthy in the page; answers its value.
    pub async fn wait(&mut self, page: &str, js: &str) -> Value {
        self.wait_for(page, js, WAIT).await
    }

    pub async fn wait_for(&mut self, page: &str, js: &str, limit: Duration) -> Value {
        let ms = limit.as_millis() as u64;
        self.must(json!({"cmd": "wait", "page": page, "js": js, "timeoutMs": ms}))
            .await
    }

    /// The JavaScript expression's value in the page.
    pub async fn eval(&mut self, page: &str, js: &str) -> Value {
        self.must(json!({"cmd": "eval", "page": page, "js": js}))
            .await
    }

    /// Console errors and dialogs of every page so far.
    pub async fn console_errors(&mut self) -> Vec<String> {
        let v = self.must(json!({"cmd": "consoleErrors"})).await;
        serde_json::from_value(v).unwrap_or_default()
    }

    pub async fn screenshot(&mut self, page: &str, path: &std::path::Path) {
        self.must(json!({"cmd": "screenshot", "page": page, "path": path}))
            .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            // A panicking test closes stdin without "close": the driver saves screenshots.
            if !std::thread::panicking() {
                let _ = writeln!(stdin, "{}", json!({"cmd": "close"}));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
