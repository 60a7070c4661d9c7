//! Safe by default and bounded under abuse before authentication: an open API stays on
//! loopback, bad settings are one-line errors, pages from other origins are refused on every
//! route (Socket.IO included), and floods of maximum-size websocket messages and half-open
//! connections leave memory bounded and `/healthz` answering.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use swarmq_testkit::{CoordinatorProcess, InProcCoordinator, Process, RedisServer, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const LIMIT: Duration = Duration::from_secs(60);

fn spawn(redis: &RedisServer, extra: &[(&str, &str)]) -> Process {
    let mut envs = vec![
        ("REDIS_URL".to_owned(), redis.url()),
        ("PORT".to_owned(), "0".to_owned()),
    ];
    envs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Process::spawn("swarmq-coordinator", &envs)
}

/// The one error line a coordinator that refused to start printed.
async fn start_error(redis: &RedisServer, extra: &[(&str, &str)]) -> String {
    let mut process = spawn(redis, extra);
    let status = process.wait_exit(LIMIT).await.expect("exits");
    assert_eq!(status.code(), Some(1), "an error exit, not a panic");
    let lines: Vec<String> = process
        .logs()
        .into_iter()
        .filter(|l| l.starts_with("swarmq-coordinator:"))
        .collect();
    assert_eq!(lines.len(), 1, "{:?}", process.logs());
    lines[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_api_listens_on_loopback_only_and_bad_settings_are_one_line_errors() {
    let redis = RedisServer::start();
    let open = spawn(&redis, &[]);
    let ready = open.wait_log("coordinator ready", LIMIT).await;
    assert!(
        ready["addr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{ready}"
    );
    open.wait_log("no SWARMQ_API_TOKEN", LIMIT).await;

    let secured = spawn(&redis, &[("SWARMQ_API_TOKEN", "t0ken")]);
    let ready = secured.wait_log("coordinator ready", LIMIT).await;
    assert!(
        ready["addr"].as_str().unwrap().starts_with("0.0.0.0:"),
        "{ready}"
    );

    let refused = start_error(&redis, &[("HOST", "0.0.0.0")]).await;
    assert!(refused.contains("without SWARMQ_API_TOKEN"), "{refused}");
    let insecure = spawn(
        &redis,
        &[("HOST", "0.0.0.0"), ("SWARMQ_ALLOW_INSECURE", "1")],
    );
    insecure.wait_log("INSECURE", LIMIT).await;

    let cors = start_error(&redis, &[("SWARMQ_CORS_ORIGINS", "*,https://a.example")]).await;
    assert!(cors.contains("cannot be combined"), "{cors}");
    let cors = start_error(&redis, &[("SWARMQ_CORS_ORIGINS", "a.example")]).await;
    assert!(cors.contains("is not an origin"), "{cors}");
    let xff = start_error(&redis, &[("SWARMQ_TRUST_FORWARDED_FOR", "true")]).await;
    assert!(xff.contains("SWARMQ_TRUSTED_PROXIES"), "{xff}");
}

async fn status(request: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap) {
    let response = request.send().await.expect("request");
    (response.status().as_u16(), response.headers().clone())
}

/// The status of a websocket handshake to the Socket.IO endpoint with `origin`.
async fn websocket_status(url: &str, origin: &str) -> u16 {
    let host = url.trim_start_matches("http://");
    let endpoint = format!("ws://{host}/socket.io/?EIO=4&transport=websocket");
    let mut request = endpoint.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("websocket handshake: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_from_other_origins_are_refused_on_every_route() {
    let redis = RedisServer::start();
    let origins = ["--cors-origins", "https://app.example"];
    let coordinator = InProcCoordinator::offline(&redis.url(), &origins).await;
    let url = &coordinator.url;
    let own = url.clone();
    let client = reqwest::Client::new();
    let polling = format!("{url}/socket.io/?EIO=4&transport=polling");
    let create = || {
        client
            .post(format!("{url}/api/sessions"))
            .json(&serde_json::json!({"prompt": "a", "agentCount": 1}))
    };
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        assert_eq!(status(create().header("origin", origin)).await.0, 403);
        assert_eq!(
            status(client.get(&polling).header("origin", origin))
                .await
                .0,
            403
        );
        assert_eq!(websocket_status(url, origin).await, 403, "{origin}");
    }
    for origin in [own.as_str(), "https://app.example"] {
        assert_eq!(
            status(client.get(&polling).header("origin", origin))
                .await
                .0,
            200
        );
        assert_eq!(websocket_status(url, origin).await, 101, "{origin}");
    }
    let (code, headers) = status(create().header("origin", "https://app.example")).await;
    assert_eq!(code, 201);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(status(create()).await.0, 201, "no Origin: not a browser");

    let preflight = client
        .request(reqwest::Method::OPTIONS, format!("{url}/api/sessions"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        );
    let (_, headers) = status(preflight).await;
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("authorization"), "{allowed}");

    // DNS rebinding: a foreign name pointing at the loopback listener of an open API.
    let rebound = client
        .get(format!("{url}/api/sessions"))
        .header("host", "evil.example:3000");
    assert_eq!(status(rebound).await.0, 403);
}

fn rss_mib(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

async fn connect_from(source: &str, addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.expect("connect")
}

/// A metric's value in the coordinator's /metrics text (0 when absent).
async fn metric(url: &str, needle: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn healthz(url: &str) -> u16 {
    reqwest::get(format!("{url}/healthz"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A websocket to the Socket.IO endpoint from `source`, past the Engine.IO open packet.
async fn websocket_from(
    source: &str,
    addr: std::net::SocketAddr,
) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let stream = connect_from(source, addr).await;
    let endpoint = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(endpoint, stream)
        .await
        .expect("websocket handshake");
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with('0'));
    ws
}

const MAX_MESSAGE: usize = 65_536;
const FLOODERS: usize = 50;
const HALF_OPEN: usize = 1_000;
/// What the debug-build coordinator may hold through the whole attack (it starts at ~15 MiB;
/// before the limits, 8 connections took it past 500 MiB).
const RSS_BOUND_MIB: f64 = 160.0;

/// 50 clients, each sending 20 maximum-size namespace CONNECTs with a wrong token.
async fn flood(addr: std::net::SocketAddr) -> Vec<tokio_tungstenite::WebSocketStream<TcpStream>> {
    let padding = MAX_MESSAGE - r#"40{"token":""}"#.len();
    let connect = format!(r#"40{{"token":"{}"}}"#, "x".repeat(padding));
    assert_eq!(connect.len(), MAX_MESSAGE);
    let mut flooders = Vec::new();
    for _ in 0..FLOODERS {
        let mut ws = websocket_from("127.0.0.3", addr).await;
        for _ in 0..20 {
            ws.send(Message::text(connect.clone()))
                .await
                .expect("a max-size message is taken");
        }
        flooders.push(ws);
    }
    flooders
}

/// A message over the limit closes its connection; so does an oversized polling body.
async fn refuse_oversized(url: &str, flooders: Vec<tokio_tungstenite::WebSocketStream<TcpStream>>) {
    for mut ws in flooders {
        let _ = ws.send(Message::text("4".repeat(MAX_MESSAGE * 16))).await;
        while let Some(Ok(_)) = ws.next().await {}
    }
    let polling = format!("{url}/socket.io/?EIO=4&transport=polling");
    let open = reqwest::get(&polling).await.unwrap().text().await.unwrap();
    let sid = serde_json::from_str::<serde_json::Value>(&open[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let post = reqwest::Client::new()
        .post(format!("{polling}&sid={sid}"))
        .body(vec![b'4'; MAX_MESSAGE * 16])
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_before_authentication_leave_memory_bounded_and_health_answering() {
    // The test itself holds over a thousand sockets.
    swarmq_coordinator::listener::raise_open_file_limit();
    let redis = RedisServer::start();
    let coordinator =
        CoordinatorProcess::start(&redis.url(), &[("SWARMQ_API_TOKEN", "s3cret")]).await;
    let url = coordinator.url.clone();
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let pid = coordinator.process.pid();
    let rss_start = rss_mib(pid);

    let flooders = flood(addr).await;
    // 1,000 half-open requests from one address: headers started, never finished.
    let mut half_open = Vec::new();
    for _ in 0..HALF_OPEN {
        let mut stream = connect_from("127.0.0.2", addr).await;
        let _ = stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await;
        half_open.push(stream);
    }
    let over = (HALF_OPEN - 256) as f64;
    let refused = "swarmq_http_connections_refused_total{reason=\"per-address";
    wait_for(LIMIT, "the per-address cap refuses the rest", || async {
        (metric(&url, refused).await >= over).then_some(())
    })
    .await;
    assert_eq!(healthz(&url).await, 200, "health answers through the flood");
    let rss_peak = rss_mib(pid);

    refuse_oversized(&url, flooders).await;
    assert_eq!(healthz(&url).await, 200);
    eprintln!(
        "coordinator RSS: {rss_start:.1} MiB at start, {rss_peak:.1} MiB with {FLOODERS} flooders \
         ({} MiB sent) and {HALF_OPEN} half-open connections held, {:.1} MiB after",
        FLOODERS * 20 * MAX_MESSAGE / (1 << 20),
        rss_mib(pid)
    );
    assert!(rss_peak < RSS_BOUND_MIB, "RSS {rss_peak:.1} MiB");
    drop(half_open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_stalled_bodies_are_closed() {
    let redis = RedisServer::start();
    let timeouts = [
        ("SWARMQ_HEADER_READ_TIMEOUT_SECS", "1"),
        ("SWARMQ_IDLE_TIMEOUT_SECS", "1"),
    ];
    let coordinator = CoordinatorProcess::start(&redis.url(), &timeouts).await;
    let addr: std::net::SocketAddr = coordinator
        .url
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(
            b"POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"prompt\":",
        )
        .await
        .unwrap();
    for stream in [&mut slow, &mut stalled] {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(LIMIT, stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the coordinator closes the connection");
    }
    assert_eq!(healthz(&coordinator.url).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_names_the_client_only_from_a_trusted_proxy() {
    let redis = RedisServer::start();
    let settings = [
        "--trusted-proxies",
        "127.0.0.1",
        "--create-rate-per-min",
        "1",
    ];
    let coordinator = InProcCoordinator::offline(&redis.url(), &settings).await;
    let client = reqwest::Client::new();
    let create = |lines: &[&str]| {
        let mut request = client
            .post(format!("{}/api/sessions", coordinator.url))
            .json(&serde_json::json!({"prompt": "a", "agentCount": 1}));
        for line in lines {
            request = request.header("x-forwarded-for", *line);
        }
        request.send()
    };
    let code = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(code(create(&["1.1.1.1"]).await.unwrap()), 201);
    // A second header line, a mapped address or a forged earlier hop: still client 1.1.1.1.
    for lines in [
        &["6.6.6.6", "1.1.1.1"][..],
        &["::ffff:1.1.1.1"],
        &["9.9.9.9, 1.1.1.1"],
    ] {
        assert_eq!(code(create(lines).await.unwrap()), 429, "{lines:?}");
    }
    assert_eq!(code(create(&["1.1.1.1, 2.2.2.2"]).await.unwrap()), 201);
    // IPv6 clients count per /64.
    assert_eq!(code(create(&["2001:db8:1:2::1"]).await.unwrap()), 201);
    assert_eq!(code(create(&["2001:db8:1:2::ffff"]).await.unwrap()), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_exist_at_zero_from_the_start() {
    let redis = RedisServer::start();
    let coordinator = CoordinatorProcess::start(&redis.url(), &[]).await;
    let text = reqwest::get(format!("{}/metrics", coordinator.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "swarmq_redis_errors_total 0",
        "swarmq_sessions_finished_total{status=\"failed\"} 0",
        "swarmq_reaped_runners_total 0",
        "swarmq_http_connections_refused_total{reason=\"connection limit reached\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == series),
            "no {series:?} in\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_failed_joins_is_counted_not_logged_line_by_line() {
    let redis = RedisServer::start();
    let coordinator = CoordinatorProcess::start(&redis.url(), &[]).await;
    let addr: std::net::SocketAddr = coordinator
        .url
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let mut ws = websocket_from("127.0.0.1", addr).await;
    ws.send(Message::text("40")).await.unwrap();
    let unknown = "00000000-0000-4000-8000-000000000000";
    for i in 0..1_000 {
        let join = format!(r#"42{i}["session:join",{{"sessionId":"{unknown}"}}]"#);
        ws.send(Message::text(join)).await.unwrap();
    }
    let refused = "swarmq_socket_joins_refused_total";
    wait_for(LIMIT, "every join answered", || async {
        (metric(&coordinator.url, refused).await >= 1_000.0).then_some(())
    })
    .await;
    let lines = coordinator.process.log_messages("client error").len();
    assert!(
        (1..=21).contains(&lines),
        "{lines} log lines for 1,000 refused joins"
    );
}
