//! Secrets stay with the runner: it reads them from files, and a worker running as the same
//! user cannot read the runner's environment or memory (`/proc/<runner>/environ`, `/mem`). The
//! runner's `/metrics` can require a bearer token.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use swarmq_testkit::redis::free_port;
use swarmq_testkit::{InProcCoordinator, Process, RedisServer};

const LIMIT: Duration = Duration::from_secs(60);

/// Who runs the runner: as root (where nothing is private), the unprivileged `nobody` with the
/// system Python (the project's may live under /root); otherwise the test's own user.
fn runner_user() -> (Option<u32>, String) {
    let fixture = swarmq_testkit::repo_root().join("testkit/fixtures/fixture_worker.py");
    // SAFETY: geteuid has no preconditions.
    if unsafe { nix::libc::geteuid() } == 0 {
        (
            Some(65534),
            format!("/usr/bin/python3 {}", fixture.display()),
        )
    } else {
        (None, swarmq_testkit::fixture_worker(""))
    }
}

/// A file `nobody` may read, as a secret file would be for the runner's user.
fn secret_file(dir: &tempfile::TempDir, name: &str, value: &str) -> String {
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path.display().to_string()
}

async fn get(url: &str, bearer: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("GET").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cannot_read_the_runners_environment_or_memory() {
    let redis = RedisServer::start_secure("pa55word", false);
    let coordinator = InProcCoordinator::offline(&redis.url(), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (uid, worker) = runner_user();
    let http = format!("127.0.0.1:{}", free_port());
    let envs: Vec<(String, String)> = [
        (
            "REDIS_URL_FILE",
            secret_file(&dir, "redis_url", &redis.url()),
        ),
        (
            "SWARMQ_METRICS_TOKEN_FILE",
            secret_file(&dir, "metrics", "m3trics"),
        ),
        ("SWARMQ_SNOOP_MARKER", "the runner's secret".to_owned()),
        ("SWARMQ_WORKER_CMD", worker),
        ("SWARMQ_RUNNER_HTTP", http.clone()),
        ("HOME", "/tmp".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let runner = Process::spawn_as("swarmq-runner", &envs, uid);
    runner.wait_log("runner starting", LIMIT).await;

    let api = coordinator.api();
    let id = api.create_ok("snoop", 1).await;
    let session = api.wait_finished(&id, LIMIT).await;
    let result = session["todos"][0]["result"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pid = runner.pid();
    assert!(
        result.contains(&format!("{pid}:environ=denied")),
        "{result}"
    );
    assert!(result.contains(&format!("{pid}:mem=denied")), "{result}");
    assert!(!result.contains("+SECRET"), "{result}");

    let metrics = format!("http://{http}/metrics");
    assert_eq!(get(&metrics, None).await, 401);
    assert_eq!(get(&metrics, Some("wrong")).await, 401);
    assert_eq!(get(&metrics, Some("m3trics")).await, 200);
    assert_eq!(get(&format!("http://{http}/healthz"), None).await, 200);
    let logs = runner.logs().join("\n");
    assert!(
        !logs.contains("pa55word") && !logs.contains("m3trics"),
        "secrets in logs"
    );
}

#[test]
fn a_secret_set_twice_or_unreadable_stops_the_start_with_one_line() {
    let run = |envs: &[(&str, &str)]| {
        let out = std::process::Command::new(swarmq_testkit::procs::binary("swarmq-runner"))
            .env_clear()
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[
        ("REDIS_URL", "redis://x"),
        ("REDIS_URL_FILE", "/etc/hostname"),
    ]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err.trim(),
        "swarmq-runner: REDIS_URL and REDIS_URL_FILE are both set: use one"
    );
    let (code, err) = run(&[("ANTHROPIC_API_KEY_FILE", "/no/such/file")]);
    assert_eq!(code, Some(2));
    assert!(
        err.trim()
            .starts_with("swarmq-runner: ANTHROPIC_API_KEY_FILE: cannot read /no/such/file"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1);
}
