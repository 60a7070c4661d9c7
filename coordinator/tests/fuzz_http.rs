//! Hostile HTTP input, generated: random and malformed bodies, content types, methods, paths,
//! ids and huge payloads. Every answer is a 4xx/2xx JSON body — never a 500, never a hang — and
//! the coordinator keeps serving.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use swarmq_testkit::{InProcCoordinator, RedisServer};

fn bodies() -> Vec<Vec<u8>> {
    vec![
        br#"{"prompt":"a","agentCount":1}"#.to_vec(),
        br#"{"prompt":null,"agentCount":null}"#.to_vec(),
        br#"{"prompt":["a"],"agentCount":{"n":1}}"#.to_vec(),
        br#"{"prompt":"a","agentCount":1e400}"#.to_vec(),
        br#"{"prompt":"a","agentCount":18446744073709551616}"#.to_vec(),
        br#"{"prompt":"\ud800","agentCount":1}"#.to_vec(),
        b"\xff\xfe\x00".to_vec(),
        b"null".to_vec(),
        b"{\"prompt\":\"a\",\"prompt\":\"b\",\"agentCount\":1}".to_vec(),
        vec![b'{'; 10_000],
        vec![b'['; 100_000],
        format!("{{\"prompt\":\"{}\",\"agentCount\":2}}", "z".repeat(9_999)).into_bytes(),
    ]
}

const CONTENT_TYPES: [&str; 6] = [
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "",
    "APPLICATION/JSON",
    "multipart/form-data",
];

fn paths() -> Vec<String> {
    vec![
        "/api/sessions".to_owned(),
        "/api/sessions/".to_owned(),
        "/api/sessions/00000000-0000-0000-0000-000000000000".to_owned(),
        "/api/sessions/%00".to_owned(),
        format!("/api/sessions/{}", "a".repeat(5000)),
        "/api/sessions/x/cancel".to_owned(),
        "/api/sessions?limit=-1&cursor=%7B".to_owned(),
        "/api/sessions?cursor=1-not-a-uuid".to_owned(),
        "/api/runners".to_owned(),
        "/api/stats".to_owned(),
        "/socket.io/?EIO=9&transport=nope".to_owned(),
    ]
}

/// Request number `i`: half of them aim at session creation, the rest anywhere with any
/// method; a third get their body corrupted, some a garbage bearer token.
struct Hostile {
    path: String,
    method: &'static str,
    body: Vec<u8>,
    content_type: &'static str,
    garbage_token: bool,
}

impl Hostile {
    fn new(i: usize, rng: &mut impl Rng, bodies: &[Vec<u8>], paths: &[String]) -> Self {
        let (path, method) = if i.is_multiple_of(2) {
            (paths[0].clone(), "POST")
        } else {
            let path = paths[rng.random_range(0..paths.len())].clone();
            (
                path,
                ["GET", "POST", "PUT", "DELETE", "PATCH"][rng.random_range(0..5)],
            )
        };
        let mut body = bodies[rng.random_range(0..bodies.len())].clone();
        if i.is_multiple_of(3) {
            for _ in 0..rng.random_range(1..6) {
                if body.is_empty() {
                    break;
                }
                let at = rng.random_range(0..body.len());
                body[at] = rng.random();
            }
        }
        let content_type = CONTENT_TYPES[rng.random_range(0..CONTENT_TYPES.len())];
        let garbage_token = i.is_multiple_of(11);
        Self {
            path,
            method,
            body,
            content_type,
            garbage_token,
        }
    }

    /// Sends it. A server may answer a rejected request before reading its body and close the
    /// connection, and the client can see that as a reset while still writing: that is the
    /// transport, not an answer. Such a request is sent once more on a fresh connection.
    async fn send(&self, client: &reqwest::Client, base: &str) -> reqwest::Response {
        let url = format!("{base}{}", self.path);
        let mut request = client
            .request(self.method.parse().unwrap(), url)
            .body(self.body.clone());
        if !self.content_type.is_empty() {
            request = request.header("content-type", self.content_type);
        }
        if self.garbage_token {
            request = request.header("authorization", "Bearer ~~garbage~~ \t");
        }
        let retry = request.try_clone();
        match request.send().await {
            Ok(r) => r,
            Err(first) => retry
                .expect("cloneable request")
                .send()
                .await
                .unwrap_or_else(|e| panic!("the coordinator does not answer: {first} / {e}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_never_get_a_500() {
    let redis = RedisServer::start();
    let coordinator =
        InProcCoordinator::offline(&redis.url(), &["--create-rate-per-min", "0"]).await;
    let base = coordinator.url.clone();
    // No pooled connections: a connection the server closed after an early answer is not reused.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let (bodies, paths) = (bodies(), paths());
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..400 {
        let hostile = Hostile::new(i, &mut rng, &bodies, &paths);
        let Hostile { path, method, .. } = &hostile;
        let (ct, len) = (hostile.content_type, hostile.body.len());
        let response = hostile.send(&client, &base).await;
        let status = response.status().as_u16();
        *statuses.entry(status).or_insert(0) += 1;
        assert!(
            status < 500,
            "{method} {path} with {len} bytes ({ct}) → {status}"
        );
        if !path.starts_with("/socket.io") && status >= 400 {
            let text = response.text().await.unwrap();
            let json: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{method} {path} → {status} non-JSON: {text:.200}"));
            assert!(json["error"].is_string(), "{json}");
        }
    }
    still_serving(&client, &base).await;
    eprintln!("status counts: {statuses:?}");
}

/// After all that: a 2 MB body is refused (413) without trouble, and the coordinator answers.
async fn still_serving(client: &reqwest::Client, base: &str) {
    let huge = client
        .post(format!("{base}/api/sessions"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status().as_u16(), 413);
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}
