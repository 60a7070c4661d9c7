//! Text that could poison a session or a terminal: prompts with control characters or
//! bidirectional overrides are refused with a 400 naming the character; what workers report
//! (events, results) is shown by the CLI with those characters escaped, never raw.

use std::time::Duration;

use swarmq_testkit::procs::swarmq_cli;
use swarmq_testkit::{CoordinatorProcess, RedisServer, RunnerProcess, fixture_worker};

/// Exit status and everything the CLI printed (stdout, then stderr).
fn cli(url: &str, args: &[&str]) -> (i32, String) {
    let out = swarmq_cli(url, args);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn assert_printable(out: &str) {
    let raw: Vec<char> = out
        .chars()
        .filter(|c| swarmq_shared::text::is_unsafe(*c))
        .collect();
    assert!(raw.is_empty(), "raw {raw:?} printed:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_refused_in_prompts_and_escaped_in_output() {
    let redis = RedisServer::start();
    let coordinator = CoordinatorProcess::start(&redis.url(), &[("SWARMQ_PLANNER", "local")]).await;
    let api = coordinator.api();
    for (prompt, named) in [
        ("plan\0 a trip", "NUL (U+0000)"),
        ("\u{1b}[2Jclear", "escape (ESC) (U+001B)"),
        ("invoice\u{202E}fdp.exe", "bidirectional override (U+202E)"),
    ] {
        let (status, body) = api.create(prompt, 1).await;
        assert_eq!(status, 400, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains("prompt contains") && error.contains(named),
            "{error}"
        );
    }
    let (list_status, list) = api.get("/api/sessions").await;
    assert_eq!(list_status, 200);
    assert_eq!(
        list["sessions"].as_array().map(Vec::len),
        Some(0),
        "nothing stored"
    );

    let _runner = RunnerProcess::start(&redis.url(), &fixture_worker(""), &[]).await;
    let url = coordinator.url.clone();
    let watched = tokio::task::spawn_blocking(move || {
        cli(&url, &["submit", "escape; ok", "-n", "1", "--watch"])
    })
    .await
    .unwrap();
    assert_eq!(watched.0, 0, "{}", watched.1);
    assert_printable(&watched.1);
    assert!(watched.1.contains("\\u001B[31mred"), "{}", watched.1);
    let id = watched.1.lines().next().unwrap().trim().to_owned();
    api.wait_finished(&id, Duration::from_secs(60)).await;
    for args in [vec!["get", id.as_str()], vec!["get", id.as_str(), "--json"]] {
        let (code, out) = cli(&coordinator.url, &args);
        assert_eq!(code, 0, "{out}");
        assert_printable(&out);
        assert!(out.contains("\\u202E"), "{out}");
    }
    let (_, json) = cli(&coordinator.url, &["get", &id, "--json"]);
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("--json stays valid JSON");
    let results: Vec<&str> = parsed["todos"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["result"].as_str())
        .collect();
    assert!(
        results.contains(&"\u{1b}[31mred\u{1b}[0m \u{202E}evil"),
        "{results:?}"
    );
}
