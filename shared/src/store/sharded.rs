//! Sharded pub/sub on a Redis Cluster: `SSUBSCRIBE` to a session's channels on the node that
//! owns the session's slot, through redis's async cluster connection (RESP3; messages arrive as
//! pushes). The connection routes each subscription by slot and subscribes again — on the new
//! owner — after a disconnection or a failover; a slot that moves makes the old owner send
//! `sunsubscribe`, and [`ShardedSubscriber::repair`] subscribes again. Either way messages
//! published in between are lost, so every such moment comes out as [`Delivery::Gap`]: the
//! caller repairs it from the event streams (`XRANGE` after the last seq it has).

use std::collections::HashSet;

use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::target::Target;
use super::{Result, Store};

/// What a sharded subscription delivers.
#[derive(Debug)]
pub enum Delivery {
    Message {
        channel: String,
        payload: String,
    },
    /// Messages may have been lost (a disconnection, a failover, a slot that moved).
    Gap,
}

/// One RESP3 cluster connection subscribed to sharded channels.
pub struct ShardedSubscriber {
    conn: ClusterConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    /// Channels subscribed and confirmed; a second confirmation means a resubscription.
    confirmed: HashSet<String>,
    wanted: HashSet<String>,
    /// Channels a moved slot unsubscribed us from: [`ShardedSubscriber::repair`] subscribes
    /// them again (not `next`, which must stay cancel-safe inside a `select!`).
    moved: Vec<String>,
}

impl Store {
    /// A sharded subscriber (only on a cluster: `None` otherwise).
    pub async fn sharded_subscriber(&self) -> Result<Option<ShardedSubscriber>> {
        let Target::Cluster(target, _) = self.target.as_ref() else {
            return Ok(None);
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let mut b = redis::cluster::ClusterClientBuilder::new(target.seeds.clone())
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx)
            .connection_timeout(super::target::RESOLVE_TIMEOUT)
            .response_timeout(self.opts.response_timeout);
        if let Some(p) = &target.password {
            b = b.password(p.clone());
        }
        let conn = b.build()?.get_async_connection().await?;
        Ok(Some(ShardedSubscriber {
            conn,
            pushes: rx,
            confirmed: HashSet::new(),
            wanted: HashSet::new(),
            moved: Vec::new(),
        }))
    }
}

impl ShardedSubscriber {
    pub async fn subscribe(&mut self, channel: &str) -> Result<()> {
        self.wanted.insert(channel.to_owned());
        self.conn.ssubscribe(channel).await?;
        Ok(())
    }

    pub async fn unsubscribe(&mut self, channel: &str) -> Result<()> {
        self.wanted.remove(channel);
        self.confirmed.remove(channel);
        self.conn.sunsubscribe(channel).await?;
        Ok(())
    }

    /// After a [`Delivery::Gap`]: subscribes again, on their slots' new owners, the channels a
    /// moved slot took away.
    pub async fn repair(&mut self) -> Result<()> {
        while let Some(channel) = self.moved.pop() {
            if self.wanted.contains(&channel) {
                self.conn.ssubscribe(&channel).await?;
            }
        }
        Ok(())
    }

    /// The next message or gap; `None` when the connection is gone for good. Cancel-safe.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            let push = self.pushes.recv().await?;
            let channel = push.data.first().and_then(text);
            match push.kind {
                PushKind::SMessage => {
                    let payload = push.data.get(1).and_then(text);
                    if let (Some(channel), Some(payload)) = (channel, payload) {
                        return Some(Delivery::Message { channel, payload });
                    }
                }
                PushKind::Disconnection => return Some(Delivery::Gap),
                PushKind::SSubscribe => {
                    if let Some(c) = channel
                        && !self.confirmed.insert(c)
                    {
                        return Some(Delivery::Gap);
                    }
                }
                // The slot moved away from the node we were subscribed on: to subscribe again
                // (`repair`, routed to the slot's new owner); report the gap.
                PushKind::SUnsubscribe => {
                    if let Some(c) = channel.filter(|c| self.wanted.contains(c)) {
                        self.confirmed.remove(&c);
                        self.moved.push(c);
                        return Some(Delivery::Gap);
                    }
                }
                _ => {}
            }
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
