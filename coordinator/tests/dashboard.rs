//! The web dashboard in a real browser (Debian's headless Chromium driven by npm
//! `playwright-core`, `tests/clients/dashboard.mjs`), against real Redis, real runner processes
//! and fixture workers. Each test waits for conditions in the page, never for time; on a
//! failure every page is saved under `target/test-output/<test>/`.

use std::time::Duration;

use serde_json::{Value, json};
use swarmq_testkit::redis::free_port;
use swarmq_testkit::{
    Api, Browser, Cluster, CoordinatorProcess, InProcCoordinator, RedisServer, RunnerProcess,
    fixture_worker, wait_for,
};

const LIMIT: Duration = Duration::from_secs(60);

/// What a Session page shows, in one shape [`expected_session_page`] can build from the API.
const SESSION_PAGE: &str = r#"(() => {
  const text = (sel) => { const e = document.querySelector(sel); return e ? e.textContent : null; };
  return {
    status: document.querySelector('#summary [data-status]')?.dataset.status,
    progress: text('#progress'),
    columns: Object.fromEntries([...document.querySelectorAll('[data-column]')]
      .map((c) => [c.dataset.column, [...c.querySelectorAll('.todo')].map((t) => t.dataset.todo).sort()])),
    agents: Object.fromEntries([...document.querySelectorAll('.agent')].map((a) => [a.dataset.agent, {
      status: a.dataset.status,
      feed: [...a.querySelectorAll('.feed li')].map((li) => [li.className, li.textContent]),
    }])),
    log: [...document.querySelectorAll('#log tr')].map((r) => [Number(r.dataset.seq), r.dataset.event, JSON.parse(r.cells[2].textContent)]),
  };
})()"#;

/// The Session page as it must look: the board from `GET /api/sessions/:id`, the feeds and the
/// log from the recorded events (`GET /api/sessions/:id/events`).
async fn expected_session_page(api: &Api, id: &str) -> Value {
    let session = api.session(id).await;
    let (status, page) = api
        .get(&format!("/api/sessions/{id}/events?limit=1000"))
        .await;
    assert_eq!(status, 200, "{page}");
    let mut events: Vec<Value> = page["events"].as_array().expect("events").clone();
    events.reverse();
    let mut columns = json!({"pending": [], "assigned": [], "completed": [], "failed": []});
    for todo in session["todos"].as_array().expect("todos") {
        let status = todo["status"].as_str().expect("status");
        columns[status]
            .as_array_mut()
            .expect("column")
            .push(todo["id"].clone());
    }
    for column in columns.as_object_mut().expect("columns").values_mut() {
        column
            .as_array_mut()
            .expect("column")
            .sort_by_key(|v| v.as_str().unwrap_or_default().to_owned());
    }
    let mut agents = serde_json::Map::new();
    for agent in session["agents"].as_array().expect("agents") {
        let aid = agent["id"].as_str().expect("id");
        let feed: Vec<Value> = events
            .iter()
            .filter(|e| e["data"]["agentId"] == aid)
            .filter_map(|e| match e["event"].as_str() {
                Some("agent:thinking") => Some(json!(["thinking", e["data"]["action"]])),
                Some("agent:reasoning") => Some(json!(["reasoning", e["data"]["reasoning"]])),
                _ => None,
            })
            .collect();
        agents.insert(aid.into(), json!({"status": agent["status"], "feed": feed}));
    }
    let todos = session["todos"].as_array().expect("todos");
    let done = todos.iter().filter(|t| t["status"] == "completed").count();
    let log: Vec<Value> = events
        .iter()
        .map(|e| json!([e["seq"], e["event"], e["data"]]))
        .collect();
    json!({
        "status": session["status"],
        "progress": format!("{done}/{} TODOs done", todos.len()),
        "columns": columns,
        "agents": agents,
        "log": log,
    })
}

/// Waits until the Session page shows the finished session.
async fn wait_page_finished(browser: &mut Browser, page: &str) {
    browser
        .wait(
            page,
            "['completed','failed','cancelled'].includes(document.querySelector('#summary [data-status]')?.dataset.status)",
        )
        .await;
}

async fn assert_nothing_executed(browser: &mut Browser, page: &str) {
    let flags = browser
        .eval(page, "({xss: window.__xss, errors: window.__errors})")
        .await;
    assert_eq!(
        flags,
        json!({"xss": false, "errors": []}),
        "page-side flags"
    );
    let console = browser.console_errors().await;
    assert!(console.is_empty(), "console errors: {console:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_box_shows_api_errors_and_a_session_runs_to_the_recorded_end() {
    let cluster = Cluster::start(2, &fixture_worker(""), &[]).await;
    let url = &cluster.coordinator.url;
    let mut browser = Browser::start("dashboard-prompt-box");
    browser.open("main", &format!("{url}/")).await;

    browser.fill("main", "#prompt", "   ").await;
    browser.click("main", "#create").await;
    let shown = browser
        .wait("main", "!document.querySelector('#prompt-error').hidden && document.querySelector('#prompt-error').textContent")
        .await;
    assert_eq!(shown, "prompt must not be empty");
    browser.fill("main", "#prompt", "ok").await;
    browser.fill("main", "#agentCount", "0").await;
    browser.click("main", "#create").await;
    let shown = browser
        .wait("main", "!document.querySelector('#agentCount-error').hidden && document.querySelector('#agentCount-error').textContent")
        .await;
    assert_eq!(shown, "agentCount must be between 1 and 8");
    let listed = cluster.api().get("/api/sessions").await.1;
    assert_eq!(
        listed["sessions"],
        json!([]),
        "a refused prompt creates nothing"
    );

    browser.fill("main", "#agentCount", "2").await;
    browser
        .fill("main", "#prompt", "lines:3; sandbox,lines:2; ok; lines:1")
        .await;
    browser.click("main", "#create").await;
    wait_page_finished(&mut browser, "main").await;
    let href = browser.eval("main", "location.pathname").await;
    let id = href
        .as_str()
        .and_then(|p| p.strip_prefix("/sessions/"))
        .expect("the page moved to the session's URL")
        .to_owned();
    let expected = expected_session_page(&cluster.api(), &id).await;
    assert_eq!(expected["status"], "completed");
    let shown = browser.eval("main", SESSION_PAGE).await;
    assert_eq!(shown, expected);

    let frames = browser
        .eval(
            "main",
            "[...document.querySelectorAll('.stream iframe')].map((f) => f.getAttribute('src'))",
        )
        .await;
    assert_eq!(frames, json!(["https://example.invalid/stream"]));

    // A reload of the shared URL shows the same page.
    browser
        .open(
            "main",
            &format!("{url}{}", href.as_str().unwrap_or_default()),
        )
        .await;
    browser
        .wait(
            "main",
            &format!(
                "document.body.dataset.lastSeq === '{}'",
                expected["log"].as_array().map_or(0, Vec::len)
            ),
        )
        .await;
    assert_eq!(browser.eval("main", SESSION_PAGE).await, expected);

    browser.open("main", &format!("{url}/")).await;
    let row = browser
        .wait("main", &format!("document.querySelector('[data-session=\"{id}\"] .progress')?.textContent === '4/4' && document.querySelector('[data-session=\"{id}\"]').textContent"))
        .await;
    assert!(
        row.as_str().unwrap_or_default().contains("completed"),
        "{row}"
    );
    assert_nothing_executed(&mut browser, "main").await;
}
