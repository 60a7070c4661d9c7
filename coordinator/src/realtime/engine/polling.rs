//! Engine.IO over HTTP long-polling: the handshake, `GET`s that wait for what the session queued
//! (one at a time), `POST`s that carry the client's packets, and the heartbeat that polling
//! sessions need a task for (a websocket session's own task keeps its heartbeat).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::session::Outgoing;
use super::{Engine, Frame, Reason, Session, refuse};

/// Separates packets in a polling payload.
const SEPARATOR: char = '\u{1e}';
/// Packets per poll answer at most: python-engineio's client refuses a payload of more
/// (`Payload.max_decode_packets`); the rest goes with the next poll.
const MAX_PACKETS_PER_POLL: usize = 16;

/// A new polling session: its open packet (offering the websocket upgrade).
pub(super) fn handshake(engine: &Arc<Engine>) -> Response {
    let session = engine.open(false);
    tokio::spawn(heartbeat(engine.clone(), session.clone()));
    text(engine.open_packet(&session, true))
}

pub(super) async fn serve(
    engine: Arc<Engine>,
    session: Arc<Session>,
    request: Request,
) -> Response {
    match *request.method() {
        Method::GET => poll(&engine, &session).await,
        Method::POST => post(&engine, &session, request.into_body()).await,
        _ => refuse(3, "Bad request"),
    }
}

/// Ends the poll when its request goes away (answered, or dropped by a client that left).
struct Poll<'a>(&'a Session);

impl Drop for Poll<'_> {
    fn drop(&mut self) {
        self.0.end_poll();
    }
}

/// Waits for what the session queued and answers with all of it.
async fn poll(engine: &Engine, session: &Arc<Session>) -> Response {
    if session.is_websocket() {
        return refuse(3, "Bad request");
    }
    if !session.begin_poll() {
        // Two polls at once: the protocol says the session is broken.
        session.close(Reason::ProtocolError);
        engine.end(session, Reason::ProtocolError);
        return refuse(3, "Bad request");
    }
    let _poll = Poll(session);
    loop {
        if session.is_websocket() {
            return text("6".to_owned());
        }
        match session.take(MAX_PACKETS_PER_POLL) {
            Outgoing::Frames(frames) => return text(join(frames)),
            Outgoing::Close(reason) => {
                engine.end(session, reason);
                return text("1".to_owned());
            }
            Outgoing::Idle => session.woken().await,
        }
    }
}

fn join(frames: std::collections::VecDeque<Frame>) -> String {
    let len = frames.iter().map(|f| f.len() + 1).sum();
    let mut body = String::with_capacity(len);
    for frame in frames {
        if !body.is_empty() {
            body.push(SEPARATOR);
        }
        body.push_str(frame.as_str());
    }
    body
}

/// The client's packets.
async fn post(engine: &Engine, session: &Arc<Session>, body: Body) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, engine.config.max_payload).await else {
        session.close(Reason::ProtocolError);
        return (StatusCode::PAYLOAD_TOO_LARGE, "payload too large").into_response();
    };
    let Ok(payload) = std::str::from_utf8(&bytes) else {
        session.close(Reason::ProtocolError);
        return refuse(3, "Bad request");
    };
    for packet in payload.split(SEPARATOR) {
        if let Err(reason) = engine.on_packet(session, packet) {
            session.close(reason);
            break;
        }
    }
    ([(header::CONTENT_TYPE, "text/html")], "ok").into_response()
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], body).into_response()
}

/// Pings a polling session and ends it when the client stops answering (or stops polling after
/// the session was closed). Stops once the session moved to a websocket.
async fn heartbeat(engine: Arc<Engine>, session: Arc<Session>) {
    let config = engine.config;
    loop {
        tokio::time::sleep(config.ping_interval).await;
        if session.is_websocket() {
            return;
        }
        if session.is_closing() {
            engine.end(&session, Reason::ServerClose);
            return;
        }
        session.ping();
        tokio::time::sleep(config.ping_timeout).await;
        if session.is_websocket() {
            return;
        }
        if session.awaiting_pong() || session.is_closing() {
            engine.end(&session, Reason::Timeout);
            return;
        }
    }
}
