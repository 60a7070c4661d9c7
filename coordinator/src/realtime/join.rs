//! A join, start to finish: a place in the room (catching up), the session snapshot, the ack,
//! the replay of every event after `since`, the live events the room parked meanwhile, then
//! live. It runs in its own task, so a join never delays the room however long its replay.
//!
//! Joins are cheap for the room and for Redis when many viewers arrive at once: the room keeps
//! its recent events encoded (its ring, filled from the stream when it starts) and the last
//! session snapshot it saw read, so a storm of joins costs one snapshot read, not one each.

use std::sync::Arc;
use std::time::Duration;

use swarmq_shared::backoff::Backoff;
use swarmq_shared::{SessionId, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::engine::{Frame, SendError};
use super::member::{Conn, Lag, Member};
use super::protocol;
use super::relay::Relay;
use super::room::{Plan, RoomCmd, Snapshot};

/// How often a catching-up member retries a full queue.
const FULL_RETRY: Duration = Duration::from_millis(10);
/// A join gives up when the session cannot be read in this time (Redis unreachable).
const READ_DEADLINE: Duration = Duration::from_secs(10);
/// Events read from the stream per call when a join replays more than the room remembers.
const REPLAY_BATCH: usize = 1000;

/// Why a member stopped receiving.
#[derive(Debug)]
enum Stop {
    /// The connection closed or was evicted meanwhile: nothing more to do.
    Gone,
    /// The client did not read for the whole patience period.
    Stalled,
}

/// Serves a join; a refused one answers `{ok: false, error}` and leaves the room.
pub(super) async fn join(
    relay: Relay,
    member: Arc<Member>,
    session: SessionId,
    since: Option<u64>,
    ack: Option<u64>,
    room: mpsc::UnboundedSender<RoomCmd>,
) {
    let patience = relay.inner().limits.stall;
    let (body, replay) = match prepare(&relay, &member, session, since, &room).await {
        Ok(prepared) => prepared,
        Err(error) => {
            tracing::debug!(socket = %member.sid(), %session, error, "join refused");
            metrics::counter!("swarmq_socket_joins_refused_total").increment(1);
            crate::client_log::client_error("join refused", &error);
            member.answer(ack, &refusal(&error));
            relay.leave(member.sid(), session);
            return;
        }
    };
    let mut sent = Ok(());
    if let Some(id) = ack {
        sent = send_waiting(&member, protocol::ack_json(id, &body), patience).await;
    }
    if sent.is_ok() {
        sent = catch_up(&member, replay, patience).await;
    }
    if let Err(Stop::Stalled) = sent {
        relay.evict(member.conn(), Lag::ReplayStalled);
    }
}

/// Takes the member's place in the room and gathers what it is owed: the ack body and the
/// events to replay after it.
async fn prepare(
    relay: &Relay,
    member: &Arc<Member>,
    session: SessionId,
    since: Option<u64>,
    room: &mpsc::UnboundedSender<RoomCmd>,
) -> Result<(String, Vec<Frame>), String> {
    let room_closed = || "the room closed, try again".to_owned();
    let (reply, plan) = oneshot::channel();
    let join = RoomCmd::Join {
        member: member.clone(),
        since,
        reply,
    };
    room.send(join).map_err(|_| room_closed())?;
    let plan: Plan = plan.await.map_err(|_| room_closed())?;
    let deadline = Instant::now() + READ_DEADLINE;
    let snapshot = match plan.snapshot {
        Some(snapshot) => snapshot,
        None => {
            let snapshot = read_snapshot(relay, session, deadline).await?;
            let _ = room.send(RoomCmd::Snapshot(snapshot.clone()));
            snapshot
        }
    };
    let (replay, truncated) = match since {
        Some(since) if since < plan.upto => match plan.recent {
            Some(frames) => (frames, false),
            None => read_replay(relay, session, since, plan.upto, deadline).await?,
        },
        _ => (Vec::new(), false),
    };
    Ok((ack_body(&snapshot, replay.len(), truncated), replay))
}

/// The ack of a refused join.
pub(super) fn refusal(error: &str) -> serde_json::Value {
    serde_json::json!({ "ok": false, "error": error })
}

/// `{ok, session, lastSeq, replayed, truncated}`: the snapshot (already JSON) and `lastSeq`, the
/// last event it reflects; `replayed`, the events that follow the ack (those with
/// `seq > since`); `truncated`, true when events after `since` were already trimmed from the
/// stream (the snapshot is then the only record of them).
fn ack_body(snapshot: &Snapshot, replayed: usize, truncated: bool) -> String {
    format!(
        r#"{{"ok":true,"session":{},"lastSeq":{},"replayed":{replayed},"truncated":{truncated}}}"#,
        snapshot.json, snapshot.last_seq
    )
}

async fn read_snapshot(
    relay: &Relay,
    session: SessionId,
    deadline: Instant,
) -> Result<Snapshot, String> {
    let store = &relay.inner().store;
    match patiently(deadline, || store.snapshot(session)).await {
        Ok(Some(s)) => Ok(Snapshot {
            last_seq: s.last_seq,
            json: serde_json::to_string(&s).map_err(|e| e.to_string())?.into(),
        }),
        Ok(None) => Err(format!("session {session} not found")),
        Err(e) => {
            tracing::warn!(session_id = %session, error = %e, "join: snapshot failed");
            Err("storage unavailable, try again".into())
        }
    }
}

/// Events `(since, upto]` from the session's stream, encoded; and whether the stream had already
/// trimmed some of them.
async fn read_replay(
    relay: &Relay,
    session: SessionId,
    since: u64,
    upto: u64,
    deadline: Instant,
) -> Result<(Vec<Frame>, bool), String> {
    let store = &relay.inner().store;
    let mut frames = Vec::new();
    let mut cursor = since;
    let mut truncated = false;
    while cursor < upto {
        let batch = patiently(deadline, || {
            store.events_after(session, cursor, REPLAY_BATCH)
        })
        .await
        .map_err(|_| "storage unavailable, try again".to_owned())?;
        let Some(first) = batch.first() else { break };
        truncated |= cursor == since && first.seq > since + 1;
        let before = cursor;
        for event in batch.into_iter().take_while(|e| e.seq <= upto) {
            cursor = event.seq;
            frames.push(protocol::event(&event.event, &event.data));
        }
        if cursor == before {
            break;
        }
    }
    Ok((frames, truncated))
}

/// Runs a Redis read, retrying while Redis is unreachable (a restart, a failover) until
/// `deadline`: a join rides out a short outage instead of failing.
async fn patiently<T, F, Fut>(deadline: Instant, mut read: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Backoff::redis_reconnect();
    loop {
        match read().await {
            Err(e) if e.is_unavailable() => {
                let delay = backoff.next_delay();
                if Instant::now() + delay >= deadline {
                    return Err(e);
                }
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

/// Sends the replay, then whatever live events the room parked meanwhile, until none is left;
/// then the member is live.
async fn catch_up(member: &Member, replay: Vec<Frame>, patience: Duration) -> Result<(), Stop> {
    for frame in replay {
        send_waiting(member, frame, patience).await?;
    }
    loop {
        let parked = {
            let mut outbox = member.outbox();
            if outbox.backlog.is_empty() {
                outbox.live = true;
                return Ok(());
            }
            std::mem::take(&mut outbox.backlog)
        };
        for frame in parked {
            send_waiting(member, frame, patience).await?;
        }
    }
}

/// Sends one frame to a catching-up member, waiting while its queue is full — for at most
/// `patience` without progress.
async fn send_waiting(member: &Member, frame: Frame, patience: Duration) -> Result<(), Stop> {
    let deadline = Instant::now() + patience;
    let mut frame = frame;
    loop {
        if Conn::of(member.conn()).is_evicted() {
            return Err(Stop::Gone);
        }
        match member.conn().emit(frame) {
            Ok(()) => return Ok(()),
            Err(SendError::Closed(_)) => return Err(Stop::Gone),
            Err(SendError::Full(back)) => {
                if Instant::now() >= deadline {
                    return Err(Stop::Stalled);
                }
                frame = back;
                tokio::time::sleep(FULL_RETRY).await;
            }
        }
    }
}
