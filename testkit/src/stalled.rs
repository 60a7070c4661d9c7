//! A Socket.IO client that joins a session and then stops reading its socket — a frozen browser
//! tab, a phone that lost radio. Spoken by hand over a raw websocket (with a small receive
//! buffer, so the server's side fills quickly) because the official clients always read.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

pub struct StalledClient {
    ws: WebSocketStream<TcpStream>,
}

/// What a stalled client found once it read again.
#[derive(Debug, Default)]
pub struct Resumed {
    /// `(event, data)` of every session event, in the order received.
    pub events: Vec<(String, Value)>,
    /// The `connection:evicted` notice, if the server sent one.
    pub evicted: Option<Value>,
    /// The server closed the connection (rather than the read timing out).
    pub closed: bool,
}

impl StalledClient {
    /// Connects to the coordinator at `url` (`http://host:port`), joins `session` with `since`,
    /// waits for the join's ack, then reads nothing more until [`StalledClient::resume`].
    pub async fn join(url: &str, session: &str, since: u64) -> Self {
        let host = url.trim_start_matches("http://").trim_end_matches('/');
        let addr = tokio::net::lookup_host(host)
            .await
            .expect("coordinator address")
            .next()
            .expect("an address");
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("connect");
        let endpoint = format!("ws://{host}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::client_async(endpoint, stream)
            .await
            .expect("websocket handshake");
        let mut client = Self { ws };
        client.expect_frame(|f| f.starts_with('0')).await;
        client.send("40").await;
        client.expect_frame(|f| f.starts_with("40")).await;
        let join = serde_json::json!(["session:join", {"sessionId": session, "since": since}]);
        client.send(&format!("420{join}")).await;
        client.expect_frame(|f| f.starts_with("430")).await;
        client
    }

    async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send to the coordinator");
    }

    async fn expect_frame(&mut self, wanted: impl Fn(&str) -> bool) {
        let limit = Duration::from_secs(20);
        loop {
            let frame = tokio::time::timeout(limit, self.ws.next())
                .await
                .expect("an answer from the coordinator")
                .expect("connection open")
                .expect("a frame");
            if let Message::Text(text) = frame
                && wanted(text.as_str())
            {
                return;
            }
        }
    }

    /// Reads everything the server queued until it closes the connection (or `limit` passes
    /// without a frame).
    pub async fn resume(mut self, limit: Duration) -> Resumed {
        let mut out = Resumed::default();
        loop {
            let frame = match tokio::time::timeout(limit, self.ws.next()).await {
                Err(_) => return out,
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                    out.closed = true;
                    return out;
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Message::Text(text) = frame else { continue };
            if text.as_str() == "1" {
                out.closed = true;
                return out;
            }
            let Some(body) = text.as_str().strip_prefix("42") else {
                continue;
            };
            let Ok(Value::Array(mut args)) = serde_json::from_str::<Value>(body) else {
                continue;
            };
            let data = if args.len() > 1 {
                args.swap_remove(1)
            } else {
                Value::Null
            };
            match args.first().and_then(Value::as_str) {
                Some("connection:evicted") => out.evicted = Some(data),
                Some(name) => out.events.push((name.to_owned(), data)),
                None => {}
            }
        }
    }
}
