//! Share tokens against a coordinator process with an API token: a token minted for one
//! session reads exactly that session (`GET /api/sessions/<id>` and its `/events`) and joins
//! exactly its room
//! (the official socket.io-client); every other route and room is refused. A token signed with
//! the previous key is accepted while `SWARMQ_SHARE_KEY_PREVIOUS` names it, refused once the
//! key is gone. `swarmq share` prints the dashboard link carrying it.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use swarmq_testkit::procs::swarmq_cli;
use swarmq_testkit::{CoordinatorProcess, RedisServer, Watcher};

const ADMIN: &str = "admin-token";

async fn coordinator(redis: &RedisServer, keys: &[(&str, &str)]) -> CoordinatorProcess {
    let mut env = vec![("SWARMQ_API_TOKEN", ADMIN), ("SWARMQ_PLANNER", "local")];
    env.extend_from_slice(keys);
    CoordinatorProcess::start(&redis.url(), &env).await
}

async fn call(c: &CoordinatorProcess, method: Method, path: &str, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", c.url))
        .bearer_auth(token)
        .json(&json!({ "prompt": "p", "agentCount": 1 }))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn create(c: &CoordinatorProcess) -> String {
    let (status, body) = call(c, Method::POST, "/api/sessions", ADMIN).await;
    assert_eq!(status, 201, "{body}");
    body["sessionId"].as_str().unwrap().to_owned()
}

async fn share(c: &CoordinatorProcess, id: &str) -> String {
    let (status, body) = call(c, Method::POST, &format!("/api/sessions/{id}/share"), ADMIN).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["path"],
        format!("/sessions/{id}#share={}", body["token"].as_str().unwrap())
    );
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_share_token_reads_its_session_and_nothing_else() {
    let redis = RedisServer::start();
    let c = coordinator(&redis, &[]).await;
    let (id, other) = (create(&c).await, create(&c).await);
    let token = share(&c, &id).await;
    let (status, session) = call(&c, Method::GET, &format!("/api/sessions/{id}"), &token).await;
    assert_eq!((status, session["id"].as_str()), (200, Some(id.as_str())));
    let (status, _) = call(
        &c,
        Method::GET,
        &format!("/api/sessions/{id}/events"),
        &token,
    )
    .await;
    assert_eq!(status, 200);
    let refused = [
        (Method::GET, format!("/api/sessions/{other}/events")),
        (Method::GET, format!("/api/sessions/{other}")),
        (Method::GET, "/api/sessions".to_owned()),
        (Method::POST, "/api/sessions".to_owned()),
        (Method::POST, format!("/api/sessions/{id}/cancel")),
        (Method::POST, format!("/api/sessions/{id}/share")),
        (Method::POST, format!("/api/sessions/{other}/cancel")),
        (Method::GET, "/api/runners".to_owned()),
        (Method::GET, "/api/stats".to_owned()),
    ];
    for (method, path) in refused {
        let (status, body) = call(&c, method.clone(), &path, &token).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("share token"),
            "{body}"
        );
    }
    // Nothing was cancelled or created by the attempts.
    let (_, page) = call(&c, Method::GET, "/api/sessions", ADMIN).await;
    let statuses: Vec<&Value> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["status"])
        .collect();
    assert_eq!(statuses.len(), 2);
    assert!(!statuses.contains(&&json!("cancelled")), "{statuses:?}");
    // A tampered token is not a share token at all.
    let forged = token.replace(&id, &other);
    assert_eq!(
        call(&c, Method::GET, &format!("/api/sessions/{other}"), &forged)
            .await
            .0,
        401
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_share_token_joins_its_room_only() {
    let redis = RedisServer::start();
    let c = coordinator(&redis, &[]).await;
    let (id, other) = (create(&c).await, create(&c).await);
    let token = share(&c, &id).await;
    let limit = Duration::from_secs(20);
    let own = Watcher::node(&c.url, &id, &["--token", &token]);
    let ack = own.wait_line("ack", limit).await;
    assert_eq!(ack["ack"]["ok"], true, "{ack}");
    let theirs = Watcher::node(&c.url, &other, &["--token", &token]);
    let ack = theirs.wait_line("ack", limit).await;
    assert_eq!(ack["ack"]["ok"], false, "{ack}");
    assert!(
        ack["ack"]["error"]
            .as_str()
            .unwrap()
            .contains("share token"),
        "{ack}"
    );
    let forged = Watcher::node(&c.url, &id, &["--token", &token.replace(&id, &other)]);
    let refused = forged.wait_line("connect_error", limit).await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("invalid share token"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_the_share_key_keeps_old_links_only_while_the_previous_key_is_set() {
    let redis = RedisServer::start();
    let old = coordinator(&redis, &[("SWARMQ_SHARE_KEY", "key-1")]).await;
    let id = create(&old).await;
    let token = share(&old, &id).await;
    let path = format!("/api/sessions/{id}");
    let rolling = coordinator(
        &redis,
        &[
            ("SWARMQ_SHARE_KEY", "key-2"),
            ("SWARMQ_SHARE_KEY_PREVIOUS", "key-1"),
        ],
    )
    .await;
    assert_eq!(call(&rolling, Method::GET, &path, &token).await.0, 200);
    let rotated = coordinator(&redis, &[("SWARMQ_SHARE_KEY", "key-2")]).await;
    assert_eq!(call(&rotated, Method::GET, &path, &token).await.0, 401);
    assert_eq!(
        call(&rotated, Method::GET, &path, &share(&rotated, &id).await)
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn swarmq_share_prints_a_dashboard_link_whose_token_reads_the_session() {
    let redis = RedisServer::start();
    let c = coordinator(&redis, &[]).await;
    let id = create(&c).await;
    let url = c.url.clone();
    let args = [
        "--token",
        ADMIN,
        "share",
        &id,
        "--dashboard",
        "https://dash.example/",
    ];
    let out = swarmq_cli(&url, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let prefix = format!("https://dash.example/sessions/{id}#share=");
    let token = link
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{link}"));
    assert_eq!(
        call(&c, Method::GET, &format!("/api/sessions/{id}"), token)
            .await
            .0,
        200
    );
    // Without --dashboard the coordinator's URL is the base.
    let out = swarmq_cli(&url, &["--token", ADMIN, "share", &id]);
    let link = String::from_utf8(out.stdout).unwrap();
    assert!(
        link.starts_with(&format!("{url}/sessions/{id}#share=swq1.")),
        "{link}"
    );
}
