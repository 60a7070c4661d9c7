//! The web dashboard in a real browser (Debian's headless Chromium driven by npm
//! `playwright-core`, `tests/clients/dashboard.mjs`), against real Redis, real runner processes
//! and fixture workers. Each test waits for conditions in the page, never for time; on a
//! failure every page is saved under `target/test-output/<test>/`. Every test's name starts
//! with `dashboard_`, so `scripts/test.sh -- dashboard_` runs just these.

use std::time::Duration;

use serde_json::{Value, json};
use swarmq_testkit::redis::free_port;
use swarmq_testkit::{
    Api, Browser, Cluster, CoordinatorProcess, InProcCoordinator, RedisServer, RunnerProcess,
    fixture_worker,
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

/// Waits until the page has applied every event of `expected` (its log's length: seqs start at 1).
async fn wait_all_applied(browser: &mut Browser, page: &str, expected: &Value) {
    let last = expected["log"].as_array().map_or(0, Vec::len);
    browser
        .wait(page, &format!("document.body.dataset.lastSeq === '{last}'"))
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

/// The API's 400s appear beside the field they name, and nothing is created.
async fn bad_prompts_show_the_api_error_beside_their_field(browser: &mut Browser, api: &Api) {
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
    let listed = api.get("/api/sessions").await.1;
    assert_eq!(
        listed["sessions"],
        json!([]),
        "a refused prompt creates nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_the_prompt_box_shows_api_errors_and_a_session_runs_to_the_recorded_end() {
    let cluster = Cluster::start(2, &fixture_worker(""), &[]).await;
    let url = &cluster.coordinator.url;
    let mut browser = Browser::start("dashboard-prompt-box");
    browser.open("main", &format!("{url}/")).await;

    bad_prompts_show_the_api_error_beside_their_field(&mut browser, &cluster.api()).await;

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
    wait_all_applied(&mut browser, "main", &expected).await;
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

/// A fresh browser (for the test `name`) showing the session's page on the cluster's coordinator.
async fn session_page(cluster: &Cluster, id: &str, name: &str) -> Browser {
    let mut browser = Browser::start(name);
    browser
        .open(
            "main",
            &format!("{}/sessions/{id}", cluster.coordinator.url),
        )
        .await;
    browser
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_cancel_ends_a_running_session() {
    let cluster = Cluster::start(1, &fixture_worker(""), &[]).await;
    let id = cluster.api().create_ok("hang; hang", 2).await;
    let mut browser = session_page(&cluster, &id, "dashboard-cancel").await;
    browser
        .wait(
            "main",
            "document.querySelectorAll('[data-column=assigned] .todo').length === 2",
        )
        .await;
    browser.click("main", "#cancel").await;
    wait_page_finished(&mut browser, "main").await;
    let session = cluster.wait_finished(&id).await;
    assert_eq!(session["status"], "cancelled");
    let expected = expected_session_page(&cluster.api(), &id).await;
    wait_all_applied(&mut browser, "main", &expected).await;
    assert_eq!(browser.eval("main", SESSION_PAGE).await, expected);
    let hidden = browser
        .eval("main", "document.querySelector('#cancel').hidden")
        .await;
    assert_eq!(hidden, true, "no Cancel button on a finished session");
    assert_nothing_executed(&mut browser, "main").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_a_coordinator_restart_mid_session_leaves_the_page_with_exactly_the_recorded_events()
 {
    let redis = RedisServer::start();
    let port = free_port().to_string();
    let settings = [("PORT", port.as_str()), ("SWARMQ_PLANNER", "local")];
    let mut coordinator = CoordinatorProcess::start(&redis.url(), &settings).await;
    let _runner = RunnerProcess::start(&redis.url(), &fixture_worker(""), &[]).await;
    let api = coordinator.api();
    let todos = ["lines:5,sleep:0.4"; 8].join("; ");
    let id = api.create_ok(&todos, 2).await;
    let mut browser = Browser::start("dashboard-restart");
    browser
        .open("main", &format!("{}/sessions/{id}", coordinator.url))
        .await;
    browser
        .wait("main", "Number(document.body.dataset.lastSeq) >= 12")
        .await;
    coordinator.process.kill();
    browser
        .wait("main", "!document.querySelector('#banner').hidden")
        .await;
    coordinator = CoordinatorProcess::start(&redis.url(), &settings).await;
    wait_page_finished(&mut browser, "main").await;
    let session = coordinator.api().wait_finished(&id, LIMIT).await;
    assert_eq!(session["status"], "completed");
    let expected = expected_session_page(&coordinator.api(), &id).await;
    wait_all_applied(&mut browser, "main", &expected).await;
    // Every seq from 1 to the last, each once, with its recorded payload.
    assert_eq!(browser.eval("main", SESSION_PAGE).await, expected);
    browser
        .wait("main", "document.querySelector('#banner').hidden")
        .await;
    assert_nothing_executed(&mut browser, "main").await;
}

/// What a Cluster page shows, but the seconds since each runner's beat.
const CLUSTER_PAGE: &str = r#"(() => ({
  totals: [...document.querySelectorAll('[data-stat]')].map((s) => [s.dataset.stat, s.querySelector('.value').textContent]),
  runners: [...document.querySelectorAll('#runner-rows tr')].map((r) => [...r.cells].slice(0, 5).map((c) => c.textContent)),
  chart: document.querySelector('#chart figcaption')?.textContent,
}))()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_two_coordinators_serve_identical_session_and_cluster_pages() {
    let cluster = Cluster::start(2, &fixture_worker(""), &[]).await;
    let second = InProcCoordinator::offline(&cluster.redis.url(), &["--max-agents", "8"]).await;
    let id = cluster
        .api()
        .create_ok("lines:2; sandbox; lines:4; ok", 3)
        .await;
    cluster.wait_finished(&id).await;
    let mut browser = Browser::start("dashboard-two-coordinators");
    let lines = expected_session_page(&cluster.api(), &id).await["log"]
        .as_array()
        .map_or(0, Vec::len);
    for (page, base) in [("a", &cluster.coordinator.url), ("b", &second.url)] {
        browser.open(page, &format!("{base}/sessions/{id}")).await;
        browser
            .wait(
                page,
                &format!("document.body.dataset.lastSeq === '{lines}'"),
            )
            .await;
    }
    let a = browser.eval("a", SESSION_PAGE).await;
    assert_eq!(a, browser.eval("b", SESSION_PAGE).await);
    assert_eq!(a, expected_session_page(&second.api(), &id).await);

    for (page, base) in [("a", &cluster.coordinator.url), ("b", &second.url)] {
        browser.open(page, &format!("{base}/cluster")).await;
        browser
            .wait(page, "document.querySelectorAll('#runner-rows tr').length === 2 && !!document.querySelector('#chart figcaption')")
            .await;
    }
    // Both refresh every 2 s from the same Redis: wait until two reads agree (a runner's busy
    // count or the chart's window may move between them) and the chart counts all 4 TODOs.
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let a = browser.eval("a", CLUSTER_PAGE).await;
        let b = browser.eval("b", CLUSTER_PAGE).await;
        // The chart counts whole seconds: the last completion shows once its second is over.
        let counted = a["chart"]
            .as_str()
            .unwrap_or_default()
            .contains("4 in 5 min");
        if a == b && counted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the Cluster pages differ:\n{a}\n{b}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_nothing_executed(&mut browser, "a").await;
    assert_nothing_executed(&mut browser, "b").await;
}

/// The token is in sessionStorage and nowhere else: not in the URL, a cookie, localStorage or
/// the page.
async fn assert_token_kept_only_in_session_storage(browser: &mut Browser, token: &str) {
    let where_ = browser
        .eval("main", "({url: location.href, stored: sessionStorage.getItem('swarmq.apiToken'), local: localStorage.length, cookies: document.cookie})")
        .await;
    assert_eq!(where_["stored"], token, "kept in sessionStorage");
    assert_eq!(where_["local"], 0);
    assert_eq!(where_["cookies"], "");
    assert!(!where_["url"].as_str().unwrap_or_default().contains(token));
    assert!(
        !browser
            .eval("main", "document.documentElement.outerHTML")
            .await
            .as_str()
            .unwrap_or_default()
            .contains(token),
        "the token is not in the page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_with_a_token_the_ui_asks_for_it_and_the_api_refuses_data_without_it() {
    let token = "dashboard-test-token-4f1c";
    let cluster = Cluster::start_with(1, &fixture_worker(""), &[], &["--api-token", token]).await;
    let url = &cluster.coordinator.url;
    for path in [
        "/",
        "/cluster",
        "/sessions/00000000-0000-4000-8000-000000000000",
    ] {
        let response = reqwest::get(format!("{url}{path}"))
            .await
            .expect("GET page");
        assert_eq!(response.status(), 200, "{path}: the page itself is static");
    }
    for path in [
        "/api/sessions",
        "/api/stats",
        "/api/runners",
        "/api/stats/series",
    ] {
        assert_eq!(
            cluster.api().get(path).await.0,
            401,
            "{path} without the token"
        );
    }
    let mut browser = Browser::start("dashboard-token");
    browser.open("main", &format!("{url}/cluster")).await;
    browser
        .wait("main", "!!document.querySelector('#login')")
        .await;
    browser.fill("main", "#token", "wrong").await;
    browser.click("main", "#login button").await;
    let error = browser
        .wait(
            "main",
            "document.querySelector('#login-error')?.textContent",
        )
        .await;
    assert_eq!(error, "invalid bearer token");

    browser.fill("main", "#token", token).await;
    browser.click("main", "#login button").await;
    browser
        .wait(
            "main",
            "document.querySelectorAll('#runner-rows tr').length === 1",
        )
        .await;
    browser.click("main", "nav a[data-page=sessions]").await;
    browser.fill("main", "#prompt", "lines:2; ok").await;
    browser.click("main", "#create").await;
    wait_page_finished(&mut browser, "main").await;
    assert_token_kept_only_in_session_storage(&mut browser, token).await;
    assert_nothing_executed(&mut browser, "main").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_worker_markup_and_a_javascript_stream_url_execute_nothing() {
    let cluster = Cluster::start(1, &fixture_worker(""), &[]).await;
    // One agent: the sandbox's https URL first, then the xss TODO's javascript: URL replaces it.
    let id = cluster.api().create_ok("sandbox; xss", 1).await;
    let mut browser = session_page(&cluster, &id, "dashboard-xss").await;
    wait_page_finished(&mut browser, "main").await;
    let expected = expected_session_page(&cluster.api(), &id).await;
    wait_all_applied(&mut browser, "main", &expected).await;
    assert_eq!(browser.eval("main", SESSION_PAGE).await, expected);
    let shown = browser
        .eval("main", r#"({
            imgs: document.querySelectorAll('main img').length,
            scripts: document.querySelectorAll('main script, main b').length,
            frames: document.querySelectorAll('iframe').length,
            links: [...document.querySelectorAll('main a')].map((a) => a.getAttribute('href')).filter((h) => !h.startsWith('/')),
            feed: [...document.querySelectorAll('.feed li')].map((li) => li.textContent),
            stream: document.querySelector('.unsafe-url')?.textContent,
        })"#)
        .await;
    assert_eq!(shown["imgs"], 0);
    assert_eq!(shown["scripts"], 0);
    assert_eq!(shown["frames"], 0, "a javascript: URL is never embedded");
    assert_eq!(shown["links"], json!([]), "nor linked");
    let feed: Vec<&str> = shown["feed"]
        .as_array()
        .expect("feed")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        feed.contains(&r#"<img src=x onerror="window.__xss=true">"#),
        "{feed:?}"
    );
    assert!(
        feed.contains(&"<script>window.__xss=true</script><b>bold?</b>"),
        "{feed:?}"
    );
    assert_eq!(
        shown["stream"],
        "stream (not embedded): javascript:window.__xss=true"
    );
    assert_nothing_executed(&mut browser, "main").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_pages_carry_a_strict_csp_and_assets_are_cached_by_content_hash() {
    let cluster = Cluster::start(0, &fixture_worker(""), &[]).await;
    let url = &cluster.coordinator.url;
    let page = reqwest::get(format!("{url}/sessions/anything"))
        .await
        .expect("GET");
    assert_eq!(page.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let csp = header(&page, "content-security-policy");
    for directive in ["script-src 'self'", "object-src 'none'", "base-uri 'none'"] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let html = page.text().await.expect("body");
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style"
    );
    let app = html
        .split('"')
        .find(|s| s.starts_with("/ui/") && s.ends_with("/app.js"))
        .expect("the page names app.js")
        .to_owned();
    let asset = reqwest::get(format!("{url}{app}"))
        .await
        .expect("GET asset");
    assert_eq!(asset.status(), 200);
    assert_eq!(
        header(&asset, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert!(header(&asset, "content-type").starts_with("text/javascript"));
    let vendor = app.replace("app.js", "vendor/socket.io.esm.min.js");
    let body = reqwest::get(format!("{url}{vendor}"))
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(
        body.starts_with("// npm package socket.io-client "),
        "vendored files name their package"
    );
    let missing = reqwest::get(format!("{url}/ui/x/nope.js"))
        .await
        .expect("GET");
    assert_eq!(missing.status(), 404);
    let (status, _) = cluster.api().get("/api/no-such-route").await;
    assert_eq!(status, 404, "the API's routes are unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_a_long_session_keeps_the_page_bounded_and_loads_older_events_on_demand() {
    let cluster = Cluster::start(1, &fixture_worker(""), &[]).await;
    // 1,500 lines, paced under the runner's 1,000 lines/s per worker (beyond it lines are dropped).
    let id = cluster
        .api()
        .create_ok("flood:500,sleep:1; flood:500,sleep:1; flood:500", 1)
        .await;
    let session = cluster.wait_finished(&id).await;
    let last = session["lastSeq"].as_u64().expect("lastSeq");
    assert!(last > 1300, "{last}");
    let mut browser = session_page(&cluster, &id, "dashboard-long-session").await;
    browser
        .wait(
            "main",
            &format!("document.body.dataset.lastSeq === '{last}'"),
        )
        .await;
    let rows = "[...document.querySelectorAll('#log tr')].map((r) => Number(r.dataset.seq))";
    let shown: Vec<u64> = serde_json::from_value(browser.eval("main", rows).await).expect("seqs");
    assert_eq!(
        shown,
        (last - 199..=last).collect::<Vec<_>>(),
        "the newest 200 events"
    );
    let feed = browser
        .eval("main", "document.querySelectorAll('.feed li').length")
        .await;
    assert_eq!(feed, 200, "a feed keeps its last 200 lines");

    browser.click("main", "#load-older").await;
    let older = last - 399;
    browser
        .wait(
            "main",
            &format!("document.querySelector('#log tr')?.dataset.seq === '{older}'"),
        )
        .await;
    let shown: Vec<u64> = serde_json::from_value(browser.eval("main", rows).await).expect("seqs");
    assert_eq!(shown, (older..=last).collect::<Vec<_>>());
    assert_nothing_executed(&mut browser, "main").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_sessions_page_lists_newest_first_and_pages_with_the_cursor() {
    let cluster = Cluster::start(0, &fixture_worker(""), &[]).await;
    let mut ids = Vec::new();
    for i in 0..23 {
        ids.push(cluster.api().create_ok(&format!("prompt {i}"), 1).await);
    }
    let mut browser = Browser::start("dashboard-sessions-pages");
    browser
        .open("main", &format!("{}/", cluster.coordinator.url))
        .await;
    let rows = "[...document.querySelectorAll('#session-rows tr')].map((r) => r.dataset.session)";
    browser
        .wait(
            "main",
            "document.querySelectorAll('#session-rows tr').length === 20",
        )
        .await;
    let first: Vec<String> = serde_json::from_value(browser.eval("main", rows).await).expect("ids");
    browser.click("main", "#older").await;
    browser
        .wait("main", "location.search.startsWith('?cursor=') && document.querySelectorAll('#session-rows tr').length === 3")
        .await;
    let second: Vec<String> =
        serde_json::from_value(browser.eval("main", rows).await).expect("ids");
    let (_, api_first) = cluster.api().get("/api/sessions?limit=20").await;
    let expected: Vec<&str> = api_first["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(
        first, expected,
        "the page lists what the API lists, newest first"
    );
    let mut all: Vec<String> = first.into_iter().chain(second).collect();
    all.sort();
    ids.sort();
    assert_eq!(all, ids, "two pages show every session once");
    assert_nothing_executed(&mut browser, "main").await;
}

/// A share link (`swarmq share`'s `/sessions/<id>#share=<token>`) shows its session live to a
/// browser that has no admin token; the page keeps the token in `sessionStorage` only and takes
/// it out of the address bar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_a_share_link_shows_its_session_without_the_admin_token() {
    let admin = "dashboard-share-admin-token";
    let cluster = Cluster::start_with(1, &fixture_worker(""), &[], &["--api-token", admin]).await;
    let url = &cluster.coordinator.url;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{url}/api/sessions"))
        .bearer_auth(admin)
        .json(&json!({ "prompt": "lines:2; ok", "agentCount": 1 }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["sessionId"].as_str().expect("session id");
    let shared: Value = http
        .post(format!("{url}/api/sessions/{id}/share"))
        .bearer_auth(admin)
        .send()
        .await
        .expect("share")
        .json()
        .await
        .expect("json");
    let mut browser = Browser::start("dashboard-share-link");
    let link = format!("{url}{}", shared["path"].as_str().expect("path"));
    browser.open("main", &link).await;
    wait_page_finished(&mut browser, "main").await;
    let token = shared["token"].as_str().expect("token");
    assert_token_kept_only_in_session_storage(&mut browser, token).await;
    let hash = browser.eval("main", "location.hash").await;
    assert_eq!(hash, "", "the fragment is gone from the address bar");
    assert_nothing_executed(&mut browser, "main").await;
}
