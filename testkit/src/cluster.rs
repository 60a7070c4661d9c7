//! A whole local deployment for one test: private Redis, in-process coordinators (port 0) and
//! runner processes, plus a fixture directory workers can record into.

use std::time::Duration;

use swarmq_coordinator::{Application, Config};
use swarmq_shared::cli;
use tokio_util::sync::CancellationToken;

use crate::{Api, RedisServer, RunnerProcess};

/// A coordinator running inside the test process.
pub struct InProcCoordinator {
    pub url: String,
    stop: CancellationToken,
}

impl InProcCoordinator {
    /// One with the offline planner (no API key needed); `args` as for [`Self::start`].
    pub async fn offline(redis_url: &str, args: &[&str]) -> Self {
        let argv: Vec<&str> = ["--planner", "local"].iter().chain(args).copied().collect();
        Self::start(redis_url, &argv).await
    }

    /// Starts one against `redis_url`; `args` are extra `--flag value` settings.
    pub async fn start(redis_url: &str, args: &[&str]) -> Self {
        let mut argv = vec![
            "swarmq-coordinator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--redis-url",
            redis_url,
        ];
        argv.extend_from_slice(args);
        let config: Config = match cli::try_parse(argv) {
            Ok(c) => c,
            Err(cli::ParseExit::Invalid(line)) => panic!("bad test settings: {line}"),
            Err(cli::ParseExit::Print(e)) => panic!("{e}"),
        };
        let app = Application::build(config)
            .await
            .expect("coordinator builds");
        let url = format!("http://{}", app.local_addr());
        let stop = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(stop.clone()));
        Self { url, stop }
    }

    pub fn api(&self) -> Api {
        Api::new(&self.url)
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for InProcCoordinator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub struct Cluster {
    pub redis: RedisServer,
    pub coordinator: InProcCoordinator,
    pub runners: Vec<RunnerProcess>,
    pub fixture_dir: tempfile::TempDir,
    worker_cmd: String,
    runner_env: Vec<(String, String)>,
}

impl Cluster {
    /// Redis, one coordinator (local planner) and `runners` runner processes running
    /// `worker_cmd`, each with `runner_env` (FIXTURE_DIR is passed to workers).
    pub async fn start(runners: usize, worker_cmd: &str, runner_env: &[(&str, &str)]) -> Self {
        Self::start_with(runners, worker_cmd, runner_env, &[]).await
    }

    /// `start`, with extra coordinator settings (`--flag value` pairs).
    pub async fn start_with(
        runners: usize,
        worker_cmd: &str,
        runner_env: &[(&str, &str)],
        coordinator_args: &[&str],
    ) -> Self {
        let redis = RedisServer::start();
        let mut args = vec!["--planner", "local", "--max-agents", "8"];
        args.extend_from_slice(coordinator_args);
        let coordinator = InProcCoordinator::start(&redis.url(), &args).await;
        let fixture_dir = tempfile::tempdir().expect("fixture dir");
        let mut env: Vec<(String, String)> = vec![
            (
                "FIXTURE_DIR".into(),
                fixture_dir.path().display().to_string(),
            ),
            ("SWARMQ_WORKER_PASS_ENV".into(), "FIXTURE_DIR".into()),
            ("SWARMQ_LEASE_SECS".into(), "3".into()),
            ("SWARMQ_WORKER_EXIT_GRACE_SECS".into(), "2".into()),
        ];
        for (k, v) in runner_env {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        let mut cluster = Self {
            redis,
            coordinator,
            runners: Vec::new(),
            fixture_dir,
            worker_cmd: worker_cmd.to_owned(),
            runner_env: env,
        };
        for _ in 0..runners {
            cluster.add_runner(&[]).await;
        }
        cluster
    }

    pub async fn add_runner(&mut self, extra: &[(&str, &str)]) -> usize {
        let mut env: Vec<(&str, &str)> = self
            .runner_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .collect();
        env.extend_from_slice(extra);
        let runner = RunnerProcess::start(&self.redis.url(), &self.worker_cmd, &env).await;
        self.runners.push(runner);
        self.runners.len() - 1
    }

    pub fn api(&self) -> Api {
        self.coordinator.api()
    }

    /// The fixture workers' start/end records: (kind, ms, session, agent, todo, pid).
    pub fn fixture_log(&self) -> Vec<FixtureRecord> {
        let text = std::fs::read_to_string(self.fixture_dir.path().join("log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 6).then(|| FixtureRecord {
                    kind: f[0].to_owned(),
                    ms: f[1].parse().unwrap_or(0),
                    session: f[2].to_owned(),
                    agent: f[3].to_owned(),
                    todo: f[4].to_owned(),
                    pid: f[5].parse().unwrap_or(0),
                })
            })
            .collect()
    }

    pub async fn wait_finished(&self, session: &str) -> serde_json::Value {
        self.api()
            .wait_finished(session, Duration::from_secs(60))
            .await
    }
}

#[derive(Clone, Debug)]
pub struct FixtureRecord {
    pub kind: String,
    pub ms: u64,
    pub session: String,
    pub agent: String,
    pub todo: String,
    pub pid: i32,
}
