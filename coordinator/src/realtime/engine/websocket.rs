//! Engine.IO over a websocket: the HTTP upgrade, the probe of a polling session's upgrade, and
//! the one task that serves the connection — it writes what the session queued, reads the
//! client's packets and keeps the heartbeat. A write that makes no progress for the ping
//! interval plus timeout (a frozen client) ends the connection, so nothing waits on it forever.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::session::Outgoing;
use super::{Engine, Reason, Session, refuse};

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Bytes read from the socket at a time: clients only send small joins and pongs, and the buffer
/// lives as long as the connection.
const READ_BUFFER: usize = 1024;
/// Bytes gathered before a write to the socket; also about what an idle connection keeps
/// allocated after a burst.
const WRITE_BUFFER: usize = 16 * 1024;

/// Answers the upgrade request and serves the websocket: a new session, or the upgrade of the
/// polling session `sid`.
pub(super) fn serve(engine: Arc<Engine>, mut request: Request, sid: Option<&str>) -> Response {
    let Some(accept) = accept_key(request.headers()) else {
        return refuse(3, "Bad request");
    };
    let upgrading = match sid {
        None => None,
        Some(sid) => match engine.find(sid) {
            Some(session) if !session.is_websocket() => Some(session),
            Some(_) => return refuse(3, "Bad request"),
            None => return refuse(1, "Session ID unknown"),
        },
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    // Nothing of the request is kept: its headers would pin hyper's read buffer.
    drop(request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(WRITE_BUFFER)
            .max_message_size(Some(engine.config.max_payload))
            .max_frame_size(Some(engine.config.max_payload));
        let ws = Socket::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
        match upgrading {
            Some(session) => upgrade(engine, session, ws).await,
            None => fresh(engine, ws).await,
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

/// `Sec-WebSocket-Accept` for a valid websocket upgrade request.
fn accept_key(headers: &HeaderMap) -> Option<String> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let version = headers.get(header::SEC_WEBSOCKET_VERSION)?;
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    (has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade") && version == "13")
        .then(|| derive_accept_key(key.as_bytes()))
}

/// A session that starts on the websocket: the open packet, then the session.
async fn fresh(engine: Arc<Engine>, mut ws: Socket) {
    let session = engine.open(true);
    let open = Utf8Bytes::from(engine.open_packet(&session, false));
    let reason = match timeout(engine.config.write_timeout(), ws.send(Message::Text(open))).await {
        Ok(Ok(())) => pump(&engine, &session, &mut ws).await,
        _ => Reason::ClientGone,
    };
    engine.end(&session, reason);
}

/// The upgrade of a polling session: `2probe` → `3probe`, then `5`; from then on the websocket
/// carries the session (a poll still waiting is answered with a noop).
async fn upgrade(engine: Arc<Engine>, session: Arc<Session>, mut ws: Socket) {
    let probe = async {
        expect(&mut ws, "2probe").await?;
        ws.send(Message::text("3probe")).await.ok()?;
        expect(&mut ws, "5").await
    };
    // A failed probe leaves the session on polling, as the client expects.
    if timeout(engine.config.ping_timeout, probe)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        return;
    }
    session.set_websocket();
    let reason = pump(&engine, &session, &mut ws).await;
    engine.end(&session, reason);
}

async fn expect(ws: &mut Socket, text: &str) -> Option<()> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) if t.as_str() == text => return Some(()),
            Ok(Message::Text(_) | Message::Binary(_) | Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Serves the session until it ends: writes what is queued, reads packets, pings.
async fn pump(engine: &Engine, session: &Arc<Session>, ws: &mut Socket) -> Reason {
    let config = engine.config;
    let mut next_ping = Instant::now() + config.ping_interval;
    let mut pong_due: Option<Instant> = None;
    loop {
        match session.take(usize::MAX) {
            Outgoing::Frames(frames) => {
                if write(ws, frames, config.write_timeout()).await.is_err() {
                    return Reason::Timeout;
                }
                continue;
            }
            Outgoing::Close(reason) => {
                let close = async {
                    ws.send(Message::text("1")).await.ok();
                    ws.close(None).await.ok();
                };
                let _ = timeout(config.write_timeout(), close).await;
                return reason;
            }
            Outgoing::Idle => {}
        }
        let deadline = pong_due.map_or(next_ping, |due| due.min(next_ping));
        tokio::select! {
            _ = session.woken() => {}
            message = ws.next() => {
                if let Err(reason) = receive(engine, session, message) {
                    return reason;
                }
                if !session.awaiting_pong() {
                    pong_due = None;
                }
            }
            _ = sleep_until(deadline) => {
                if pong_due.is_some_and(|due| due <= Instant::now()) {
                    return Reason::Timeout;
                }
                session.ping();
                next_ping = Instant::now() + config.ping_interval;
                pong_due = Some(Instant::now() + config.ping_timeout);
            }
        }
    }
}

type Received = Option<Result<Message, tokio_tungstenite::tungstenite::Error>>;

fn receive(engine: &Engine, session: &Arc<Session>, message: Received) -> Result<(), Reason> {
    match message {
        Some(Ok(Message::Text(packet))) => engine.on_packet(session, packet.as_str()),
        // Swarmq's clients send no binary; a websocket ping/pong is answered by tungstenite.
        Some(Ok(Message::Binary(_))) => Err(Reason::ProtocolError),
        Some(Ok(Message::Close(_))) | None => Err(Reason::ClientGone),
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(match e {
            tokio_tungstenite::tungstenite::Error::Capacity(_) => Reason::ProtocolError,
            _ => Reason::ClientGone,
        }),
    }
}

/// Writes a batch of packets; `Err` when the client accepted nothing for `patience`.
async fn write(
    ws: &mut Socket,
    frames: std::collections::VecDeque<super::Frame>,
    patience: std::time::Duration,
) -> Result<(), ()> {
    for frame in frames {
        match timeout(patience, ws.feed(Message::Text(frame))).await {
            Ok(Ok(())) => {}
            _ => return Err(()),
        }
    }
    match timeout(patience, ws.flush()).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
