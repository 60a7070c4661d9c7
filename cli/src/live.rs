//! A minimal Socket.IO v5 client over a websocket (Engine.IO v4), enough to watch a session:
//! connect to the default namespace, `session:join` with `{sessionId, since}` and an ack, answer
//! pings, and hand every event to the caller. After a disconnect it reconnects and re-joins with
//! the last `seq` seen, so the caller gets every event exactly once.
//!
//! Engine.IO packets are text frames starting with a type digit: `0` open, `2` ping, `3` pong,
//! `4` message. Socket.IO packets ride inside `4`: `0` connect, `2` event, `3` ack.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use swarmq_shared::EventEnvelope;
use tokio_tungstenite::tungstenite::Message;

/// The coordinator refused the join (unknown session, …): reconnecting would not help.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot watch the session: {}", self.0)
    }
}

impl std::error::Error for Refused {}

pub enum Update {
    /// The join ack: `{ok, session, lastSeq, replayed, truncated}`.
    Joined(Value),
    /// An event, decoded into `shared`'s types.
    Event(EventEnvelope),
    /// An event this CLI does not know (a newer coordinator's), or whose payload does not
    /// decode: shown as it came.
    Unknown {
        name: String,
        data: Value,
    },
    Reconnecting(String),
}

/// Watches `session` from `since`, calling `on_update` for every update until it returns false.
pub async fn watch(
    base: &str,
    token: Option<&str>,
    session: &str,
    mut since: u64,
    mut on_update: impl FnMut(Update) -> bool,
) -> anyhow::Result<()> {
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        base.replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1)
    );
    let mut failures = 0u32;
    loop {
        match session_stream(&ws_url, token, session, &mut since, &mut on_update).await {
            Ok(()) => return Ok(()),
            Err(e) if e.downcast_ref::<Refused>().is_some() => return Err(e),
            Err(e) => {
                failures += 1;
                if failures > 30 {
                    return Err(e.context("giving up after 30 reconnection attempts"));
                }
                if !on_update(Update::Reconnecting(format!("{e:#}"))) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// One connection. `Ok` when the caller is done; `Err` when the connection failed (retry).
async fn session_stream(
    ws_url: &str,
    token: Option<&str>,
    session: &str,
    since: &mut u64,
    on_update: &mut impl FnMut(Update) -> bool,
) -> anyhow::Result<()> {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .with_context(|| format!("cannot open a websocket to {ws_url}"))?;
    let mut joined = false;
    let mut acked = false;
    let ack_deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let frame = if acked {
            ws.next().await
        } else {
            match tokio::time::timeout_at(ack_deadline, ws.next()).await {
                Ok(frame) => frame,
                Err(_) => bail!("the coordinator did not answer the join"),
            }
        };
        let Some(frame) = frame else { break };
        let text = match frame.context("websocket error")? {
            Message::Text(t) => t.to_string(),
            Message::Close(_) => bail!("the coordinator closed the connection"),
            _ => continue,
        };
        let (kind, rest) = text.split_at(text.len().min(1));
        match kind {
            "0" => {
                let connect = match token {
                    Some(t) => format!("40{}", json!({ "token": t })),
                    None => "40".to_owned(),
                };
                ws.send(Message::text(connect)).await?
            }
            "2" => ws.send(Message::text("3")).await?,
            "4" => {
                let (packet, payload) = rest.split_at(rest.len().min(1));
                match packet {
                    "0" if !joined => {
                        let join =
                            json!(["session:join", { "sessionId": session, "since": *since }]);
                        ws.send(Message::text(format!("421{join}"))).await?;
                        joined = true;
                    }
                    "3" => {
                        // Ack `3<id>[body]`.
                        let body = payload.trim_start_matches(|c: char| c.is_ascii_digit());
                        let ack: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                        let ack = ack.get(0).cloned().unwrap_or(Value::Null);
                        if ack["ok"] != true {
                            let error = ack["error"].as_str().unwrap_or("join refused").to_owned();
                            return Err(Refused(error).into());
                        }
                        acked = true;
                        if !on_update(Update::Joined(ack)) {
                            return Ok(());
                        }
                    }
                    "2" => {
                        let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(payload) else {
                            continue;
                        };
                        let name = parts
                            .first()
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned();
                        let data = parts.get(1).cloned().unwrap_or(Value::Null);
                        if let Some(seq) = data["seq"].as_u64() {
                            *since = (*since).max(seq);
                        }
                        let update = match EventEnvelope::from_parts(&name, data.clone()) {
                            Ok(envelope) => Update::Event(envelope),
                            Err(_) => Update::Unknown { name, data },
                        };
                        if !on_update(update) {
                            return Ok(());
                        }
                    }
                    "4" => {
                        let message: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
                        let why = message["message"].as_str().unwrap_or(payload).to_owned();
                        return Err(Refused(format!("connection refused: {why}")).into());
                    }
                    _ => {}
                }
            }
            "1" => bail!("the coordinator closed the connection"),
            _ => {}
        }
    }
    bail!("connection lost")
}
