//! Operator settings of both binaries: a bad value stops start-up with one clear line naming the
//! flag and the env var; `--help` documents every setting and never shows a secret's value.

use std::process::Command;

use swarmq_testkit::procs::binary;

fn run(bin: &str, envs: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary(bin))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(envs.iter().copied())
        .args(args)
        .current_dir(swarmq_testkit::repo_root())
        .output()
        .expect("run binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const RUNNER: &str = "swarmq-runner";
const COORDINATOR: &str = "swarmq-coordinator";

/// Bad settings: the binary, the variable, its value, what the one line must name.
#[rustfmt::skip]
const BAD_SETTINGS: &[(&str, &str, &str, &str)] = &[
    (RUNNER, "SWARMQ_LEASE_SECS", "soon", "SWARMQ_LEASE_SECS"),
    (RUNNER, "SWARMQ_RUNNER_SLOTS", "0", "SWARMQ_RUNNER_SLOTS"),
    (RUNNER, "SWARMQ_MAX_ATTEMPTS", "-1", "SWARMQ_MAX_ATTEMPTS"),
    (RUNNER, "SWARMQ_LOG_FORMAT", "xml", "SWARMQ_LOG_FORMAT"),
    (RUNNER, "SWARMQ_WORKER_CMD", "   ", "SWARMQ_WORKER_CMD"),
    (RUNNER, "SWARMQ_WORKER_CMD", "no-such-program-xyz", "not found"),
    (RUNNER, "SWARMQ_WORKER_CWD", "/no/such/dir", "SWARMQ_WORKER_CWD"),
    (RUNNER, "SWARMQ_WORKER_PASS_ENV", "A B", "SWARMQ_WORKER_PASS_ENV"),
    (RUNNER, "SWARMQ_PREFIX", "a{b}", "prefix"),
    (RUNNER, "REDIS_URL", "http://nope", "REDIS_URL"),
    (COORDINATOR, "PORT", "eighty", "PORT"),
    (COORDINATOR, "SWARMQ_MAX_AGENTS", "0", "SWARMQ_MAX_AGENTS"),
    (COORDINATOR, "SWARMQ_PLANNER", "magic", "SWARMQ_PLANNER"),
    (COORDINATOR, "SWARMQ_PLANNER", "anthropic", "ANTHROPIC_API_KEY"),
    (COORDINATOR, "HOST", "not-an-ip", "HOST"),
    (COORDINATOR, "REDIS_URL", "redis://user:hunter2@[bad", "REDIS_URL"),
];

#[test]
fn bad_settings_stop_start_up_with_one_clear_line() {
    for (bin, var, value, needle) in BAD_SETTINGS {
        let (code, _, stderr) = run(bin, &[(var, value)], &[]);
        assert!(
            code == 1 || code == 2,
            "{bin} {var}={value:?} exited {code}: {stderr}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{bin} {var}={value:?}: one line, got {stderr:?}"
        );
        assert!(lines[0].starts_with(bin), "{:?}", lines[0]);
        assert!(
            lines[0].contains(needle),
            "{bin} {var}={value:?}: {:?} lacks {needle:?}",
            lines[0]
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("hunter2"),
            "{stderr}"
        );
    }
}

/// Settings each binary's `--help` must document.
#[rustfmt::skip]
const COORDINATOR_SETTINGS: &[&str] = &[
    "REDIS_URL", "SWARMQ_PREFIX", "HOST", "PORT", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL", "SWARMQ_PLANNER", "SWARMQ_MAX_AGENTS", "SWARMQ_LOG_FORMAT",
];
#[rustfmt::skip]
const RUNNER_SETTINGS: &[&str] = &[
    "SWARMQ_WORKER_CMD", "SWARMQ_WORKER_CWD", "SWARMQ_RUNNER_SLOTS", "SWARMQ_TASK_TIMEOUT_SECS",
    "SWARMQ_MAX_ATTEMPTS", "SWARMQ_LEASE_SECS", "SWARMQ_DRAIN_SECS", "SOCKET_URL", "E2B_API_KEY",
    "DEDALUS_API_KEY", "SWARMQ_WORKER_PASS_ENV",
];

#[test]
fn help_documents_every_setting_and_hides_secrets() {
    let secret = [
        ("ANTHROPIC_API_KEY", "sk-very-secret"),
        ("REDIS_URL", "redis://:hunter2@h:1"),
        ("E2B_API_KEY", "e2b-secret"),
    ];
    let (code, help, _) = run(COORDINATOR, &secret, &["--help"]);
    assert_eq!(code, 0);
    for var in COORDINATOR_SETTINGS {
        assert!(help.contains(var), "coordinator --help lacks {var}");
    }
    let (code, runner_help, _) = run(RUNNER, &secret, &["--help"]);
    assert_eq!(code, 0);
    for var in RUNNER_SETTINGS {
        assert!(runner_help.contains(var), "runner --help lacks {var}");
    }
    for text in [&help, &runner_help] {
        assert!(
            !text.contains("sk-very-secret")
                && !text.contains("hunter2")
                && !text.contains("e2b-secret")
        );
    }
}
