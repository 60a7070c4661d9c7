//! The Redis key schema: every key and channel name swarmq uses is built here and nowhere else.
//! `docs/redis-schema.md` describes the same layout for operators.
//!
//! Two hash tags keep multi-key operations on one Cluster slot each:
//! - `{<prefix>}:…` — the global queue keys (ready list, runner registry, claimed lists, indexes),
//!   so `BLMOVE ready → claimed` and the reaper's moves stay in one slot;
//! - `<prefix>:{<sessionId>}:…` — one session's keys, so every session transition does.

use crate::ids::{AgentId, RunnerId, SessionId, TodoId};

#[derive(Debug, thiserror::Error)]
#[error("invalid key prefix {0:?}: 1-64 characters of [A-Za-z0-9._-]")]
pub struct PrefixError(String);

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
    /// The hash tag of each ready-queue shard (`SWARMQ_QUEUE_SHARDS`): one shard is the global
    /// tag `<prefix>` (today's layout); several get tags of their own, spread evenly over the
    /// slot space ([`shard_tags`]).
    shards: Vec<String>,
}

/// Hash tags for `n` queue shards: shard `i`'s tag `<prefix>:q<i>.<k>` takes the first `k`
/// whose slot falls in the `i`-th of `n` equal slot ranges, so on a cluster whose primaries
/// hold equal contiguous ranges (what `redis-cli --cluster create` makes) the shards land on
/// different primaries. The same on every process: derived from the prefix and `n` alone.
fn shard_tags(prefix: &str, n: u16) -> Vec<String> {
    if n <= 1 {
        return vec![prefix.to_owned()];
    }
    (0..n)
        .map(|i| {
            (0u32..)
                .map(|k| format!("{prefix}:q{i}.{k}"))
                .find(|tag| u32::from(slot(tag)) * u32::from(n) / 16384 == u32::from(i))
                .unwrap_or_default()
        })
        .collect()
}

impl Keys {
    pub fn new(prefix: &str) -> Result<Self, PrefixError> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(Self {
                prefix: prefix.to_owned(),
                shards: shard_tags(prefix, 1),
            })
        } else {
            Err(PrefixError(prefix.to_owned()))
        }
    }

    /// These keys with the ready queue split into `n` shards (`SWARMQ_QUEUE_SHARDS`; 1 is
    /// today's single list). Every process of a deployment must use the same `n`.
    pub fn sharded(mut self, n: u16) -> Self {
        self.shards = shard_tags(&self.prefix, n.max(1));
        self
    }

    /// How many ready-queue shards there are.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard a session's agent jobs go to: from its id, so every process agrees.
    pub fn shard_of(&self, session: SessionId) -> usize {
        usize::from(slot(&session.to_string())) % self.shards.len()
    }

    /// The shard of a ready-list entry `<sessionId>/<agentId>` (shard 0 for a malformed one,
    /// so it can still be removed from where a one-shard deployment put it).
    pub fn shard_of_job(&self, job: &str) -> usize {
        crate::ids::AgentJob::parse(job)
            .map(|j| self.shard_of(j.session_id))
            .unwrap_or(0)
    }

    fn in_shard(&self, shard: usize, name: &str) -> String {
        format!("{{{}}}:{name}", self.shards[shard % self.shards.len()])
    }

    /// LIST of one shard's agent jobs waiting for a runner (LPUSH to enqueue, BLMOVE from
    /// the right). With one shard: [`Keys::ready_list`].
    pub fn ready_shard(&self, shard: usize) -> String {
        self.in_shard(shard, "ready")
    }

    /// LIST of the agent jobs one runner holds from one shard (that shard's BLMOVE
    /// destination, so claim, requeue and reap stay in the shard's slot).
    pub fn claimed_shard(&self, runner: &RunnerId, shard: usize) -> String {
        self.in_shard(shard, &format!("runner:{runner}:claimed"))
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn global(&self, name: &str) -> String {
        format!("{{{}}}:{name}", self.prefix)
    }

    /// LIST of `AgentJob`s waiting for a runner (LPUSH to enqueue, BLMOVE from the right):
    /// shard 0 of the ready queue (the only one unless `SWARMQ_QUEUE_SHARDS` > 1).
    pub fn ready_list(&self) -> String {
        self.ready_shard(0)
    }

    /// ZSET runner id → lease expiry (ms, Redis clock). A member past its score is dead.
    pub fn runners_zset(&self) -> String {
        self.global("runners")
    }

    /// HASH describing one runner (host, slots, busy, startedAt) for `GET /api/runners`.
    pub fn runner_info_hash(&self, runner: &RunnerId) -> String {
        self.global(&format!("runner:{runner}:info"))
    }

    /// LIST of the agent jobs one runner holds (the BLMOVE destination) from shard 0.
    pub fn runner_claimed_list(&self, runner: &RunnerId) -> String {
        self.claimed_shard(runner, 0)
    }

    /// ZSET session id → createdAt (ms): the sessions index, read newest first.
    pub fn sessions_index(&self) -> String {
        self.global("sessions")
    }

    /// ZSET session id → deadline (ms) of sessions still `decomposing`.
    pub fn decomposing_zset(&self) -> String {
        self.global("decomposing")
    }

    /// HASH of one minute of cluster statistics (`minute` = Unix seconds / 60): fields
    /// `done:<sec>` (TODOs completed in that second) and `ready:<sec>` (ready-queue depth
    /// sampled in that second). Expires on its own (`store::stats`).
    pub fn stats_minute(&self, minute: u64) -> String {
        self.global(&format!("stats:{minute}"))
    }

    /// STRING marker: this session's agent jobs were put on the ready queue (`enqueue_jobs.lua`
    /// pushes them once, whoever calls it). In its queue shard's slot; expires after a day.
    pub fn enqueued_marker(&self, session: SessionId) -> String {
        self.in_shard(self.shard_of(session), &format!("enqueued:{session}"))
    }

    /// Pub/sub channel for runner control messages (`cancel <sessionId>`).
    pub fn control_channel(&self) -> String {
        self.global("control")
    }

    /// STRING (JSON) of one `Idempotency-Key`: the request it was first sent with and, once
    /// known, the answer (`store::idempotency`). Expires `SWARMQ_IDEMPOTENCY_TTL_SECS` after the
    /// first use. Untagged, so keys spread over a Cluster; the key's text is checked to hold
    /// no braces.
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}:idem:{key}", self.prefix)
    }

    /// STRING counter of the sessions one client created in the current minute
    /// (`SWARMQ_CREATE_RATE_PER_MIN`), expiring with the minute. `client` is `token` or an
    /// address (an IPv6 /64), never braces.
    pub fn create_rate(&self, client: &str) -> String {
        format!("{}:rate:create:{client}", self.prefix)
    }

    pub fn session(&self, id: SessionId) -> SessionKeys {
        SessionKeys {
            base: format!("{}:{{{id}}}:", self.prefix),
        }
    }

    /// The session a `<prefix>:{<id>}:live` channel belongs to.
    pub fn session_of_channel(&self, channel: &str) -> Option<SessionId> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(":{")?;
        let id = rest.strip_suffix("}:live")?;
        SessionId::parse(id).ok()
    }

    /// The session a `<prefix>:{<id>}:control` channel belongs to.
    pub fn session_of_control_channel(&self, channel: &str) -> Option<SessionId> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(":{")?;
        let id = rest.strip_suffix("}:control")?;
        SessionId::parse(id).ok()
    }
}

/// The keys of one session, all under the hash tag `{<sessionId>}`.
#[derive(Clone, Debug)]
pub struct SessionKeys {
    base: String,
}

impl SessionKeys {
    /// HASH: id, prompt, agentCount, status, createdAt, error, finishedAt, seq.
    pub fn session_hash(&self) -> String {
        format!("{}session", self.base)
    }

    /// LIST of todo ids in creation order.
    pub fn todo_ids_list(&self) -> String {
        format!("{}todos", self.base)
    }

    /// LIST of agent ids in creation order.
    pub fn agent_ids_list(&self) -> String {
        format!("{}agents", self.base)
    }

    /// LIST of todo ids waiting for an agent (LPOP takes the next; retries are pushed back left).
    pub fn pending_list(&self) -> String {
        format!("{}pending", self.base)
    }

    /// STREAM of recorded events, entry id `<seq>-0`, capped with MAXLEN ~.
    pub fn events_stream(&self) -> String {
        format!("{}events", self.base)
    }

    /// STRING written (with a 60 s expiry) by a coordinator's relay after each read of this
    /// session and before a `WAIT` that makes sure what it read is held by enough replicas
    /// (`Store::with_replicated_reads`): `WAIT` only counts a connection's own writes. In the
    /// session's slot, so that on a Cluster it goes to the node the read went to.
    pub fn fence(&self) -> String {
        format!("{}fence", self.base)
    }

    /// Pub/sub channel carrying each event as it is recorded.
    pub fn live_channel(&self) -> String {
        format!("{}live", self.base)
    }

    /// Pub/sub channel of this session's runner control messages (`cancel <sessionId>`) on a
    /// Cluster: sharded (`SPUBLISH`), so it reaches the runners holding the session's agents
    /// (they `SSUBSCRIBE` to it) and no other node.
    pub fn control_channel(&self) -> String {
        format!("{}control", self.base)
    }

    /// STRING tombstone: the watchdog gave up on this id before its session was written, so
    /// none may be written later (`init_session.lua` refuses). Expires after a day.
    pub fn gone_marker(&self) -> String {
        format!("{}gone", self.base)
    }

    /// Prefix of the per-TODO hashes; Lua appends the todo id.
    pub fn todo_prefix(&self) -> String {
        format!("{}todo:", self.base)
    }

    /// Prefix of the per-agent hashes; Lua appends the agent id.
    pub fn agent_prefix(&self) -> String {
        format!("{}agent:", self.base)
    }

    /// HASH of one TODO: id, description, status, assignedTo, result, error, attempts.
    pub fn todo_hash(&self, id: TodoId) -> String {
        format!("{}{id}", self.todo_prefix())
    }

    /// HASH of one agent: id, sessionId, status, currentTaskId, sandboxId, streamUrl, runner,
    /// token (the fencing counter), ebatch (last applied event batch).
    pub fn agent_hash(&self, id: AgentId) -> String {
        format!("{}{id}", self.agent_prefix())
    }
}

/// The Redis Cluster hash slot of `key` (CRC16-XMODEM of its hash tag, or of the whole key when
/// it has none, mod 16384), as the Cluster specification defines it: what a test checks to
/// prove that every script touches one slot.
pub fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|&b| b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16_xmodem(hashed) % 16384
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_cluster_specification() {
        // Values from `CLUSTER KEYSLOT` on redis-server 7.0.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("bar"), 5061);
        assert_eq!(slot("123456789"), 0x31C3); // CRC16-XMODEM check value
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        assert_ne!(slot("foo{}{bar}"), slot("bar"));
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
    }

    #[test]
    fn session_keys_share_one_hash_tag() {
        let keys = Keys::new("swarmq").unwrap();
        let id = SessionId::new();
        let s = keys.session(id);
        let tag = format!("{{{id}}}");
        for key in [
            s.session_hash(),
            s.todo_ids_list(),
            s.agent_ids_list(),
            s.pending_list(),
            s.events_stream(),
            s.gone_marker(),
            s.todo_hash(TodoId::new()),
            s.agent_hash(AgentId::new()),
        ] {
            assert!(key.starts_with("swarmq:"), "{key}");
            assert_eq!(key.matches('{').count(), 1, "{key}");
            assert!(key.contains(&tag), "{key}");
        }
        assert_eq!(keys.session_of_channel(&s.live_channel()), Some(id));
        assert_eq!(keys.session_of_channel("other:{x}:live"), None);
    }

    #[test]
    fn global_keys_share_the_prefix_tag() {
        let keys = Keys::new("q1").unwrap();
        let r = RunnerId::generate("host");
        for key in [
            keys.ready_list(),
            keys.runner_claimed_list(&r),
            keys.runners_zset(),
        ] {
            assert!(key.starts_with("{q1}:"), "{key}");
        }
    }

    #[test]
    fn queue_shards_spread_over_the_slot_space_and_one_shard_is_todays_layout() {
        let one = Keys::new("swarmq").unwrap();
        let r = RunnerId::generate("h");
        assert_eq!(one.ready_shard(0), "{swarmq}:ready");
        assert_eq!(
            one.claimed_shard(&r, 0),
            format!("{{swarmq}}:runner:{r}:claimed")
        );
        let three = Keys::new("swarmq").unwrap().sharded(3);
        for i in 0..3 {
            let s = usize::from(slot(&three.ready_shard(i)));
            assert_eq!(s * 3 / 16384, i, "{}", three.ready_shard(i));
            assert_eq!(
                slot(&three.ready_shard(i)),
                slot(&three.claimed_shard(&r, i))
            );
        }
        let id = SessionId::new();
        let shard = three.shard_of(id);
        assert_eq!(
            slot(&three.enqueued_marker(id)),
            slot(&three.ready_shard(shard))
        );
    }

    #[test]
    fn prefixes_that_would_break_hash_tags_are_refused() {
        assert!(Keys::new("").is_err());
        assert!(Keys::new("a{b}").is_err());
        assert!(Keys::new("has space").is_err());
    }
}
