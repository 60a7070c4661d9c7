//! A private Redis Cluster for one test: six `redis-server --cluster-enabled yes` nodes on free
//! loopback ports in temp dirs, joined by `redis-cli --cluster create … --cluster-replicas 1`
//! (three primaries, one replica each), killed when dropped. Faults: SIGKILL the primary that
//! owns a key ([`RedisCluster::kill_primary_of`]; its replica is promoted) and move slots under
//! load ([`RedisCluster::move_slot`], [`RedisCluster::reshard`]).

use std::process::Command;
use std::time::Duration;

use crate::redis::RedisServer;

/// How long a node may be unreachable before the cluster fails it over (ms).
const NODE_TIMEOUT_MS: u64 = 2000;

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug)]
pub struct ClusterNode {
    pub id: String,
    pub port: u16,
    pub primary: bool,
    /// Failed (`fail` flag) or disconnected.
    pub failed: bool,
    /// The slot ranges it serves (primaries), inclusive.
    pub slots: Vec<(u16, u16)>,
}

pub struct RedisCluster {
    /// Every node, in start order; a failover does not reorder them.
    pub nodes: Vec<RedisServer>,
    password: Option<String>,
    /// TLS only: the certificate's directory (one self-signed pair for every node).
    certs: Option<tempfile::TempDir>,
}

impl RedisCluster {
    /// Three primaries and three replicas, every slot covered, every node agreeing.
    pub async fn start() -> Self {
        Self::start_with_password(None).await
    }

    /// `start`, with AUTH on every node (`requirepass` and `masterauth`).
    pub async fn start_with_password(password: Option<&str>) -> Self {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| RedisServer::start_cluster_node(password, NODE_TIMEOUT_MS))
            .collect();
        let cluster = Self {
            nodes,
            password: password.map(str::to_owned),
            certs: None,
        };
        cluster.create();
        cluster.wait_ok(Duration::from_secs(60)).await;
        cluster
    }

    /// `start_with_password` with TLS everywhere: clients, the cluster bus, replication; no
    /// plain port open.
    pub async fn start_tls(password: Option<&str>) -> Self {
        let certs = tempfile::tempdir().expect("temp dir");
        crate::redis::make_certificate(certs.path());
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| RedisServer::start_cluster_node_tls(password, NODE_TIMEOUT_MS, certs.path()))
            .collect();
        let cluster = Self {
            nodes,
            password: password.map(str::to_owned),
            certs: Some(certs),
        };
        cluster.create();
        cluster.wait_ok(Duration::from_secs(60)).await;
        cluster
    }

    /// redis-cli with this cluster's password and TLS settings.
    fn redis_cli(&self) -> Command {
        let mut cmd = Command::new("redis-cli");
        if self.certs.is_some() {
            cmd.args(["--tls", "--insecure"]);
        }
        cmd
    }

    fn create(&self) {
        let mut cmd = self.redis_cli();
        if let Some(p) = &self.password {
            cmd.args(["--no-auth-warning", "-a", p]);
        }
        cmd.args(["--cluster", "create"]);
        for n in &self.nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port()));
        }
        let out = cmd
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// `REDIS_CLUSTER_NODES`'s value: every node's URL (with the password), comma-separated.
    pub fn seeds(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(RedisServer::url).collect();
        urls.join(",")
    }

    /// The target a [`swarmq_shared::Store`] uses for this cluster.
    pub fn target(&self) -> swarmq_shared::store::RedisTarget {
        swarmq_shared::store::RedisTarget::cluster(&self.seeds(), None).expect("cluster target")
    }

    /// The settings that point a daemon at this cluster.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("REDIS_CLUSTER_NODES".into(), self.seeds())]
    }

    /// Extra `--flag value` arguments for an in-process coordinator.
    pub fn args(&self) -> Vec<String> {
        vec!["--redis-cluster-nodes".into(), self.seeds()]
    }

    /// Runs redis-cli against the node on `port` (`None` when it is down).
    pub fn cli(&self, port: u16, args: &[&str]) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .and_then(|n| n.cli(args))
    }

    /// Runs redis-cli against any node that answers.
    fn any_cli(&self, args: &[&str]) -> Option<String> {
        self.nodes.iter().find_map(|n| n.cli(args))
    }

    /// The cluster as a live node sees it.
    pub fn topology(&self) -> Vec<ClusterNode> {
        let text = self.any_cli(&["CLUSTER", "NODES"]).unwrap_or_default();
        text.lines().filter_map(parse_node_line).collect()
    }

    /// The live primaries serving slots. (Right after `--cluster create` a node's view may
    /// still show a replica as a slot-less master until gossip catches up: not counted.)
    pub fn primaries(&self) -> Vec<ClusterNode> {
        self.topology()
            .into_iter()
            .filter(|n| n.primary && !n.failed && !n.slots.is_empty())
            .collect()
    }

    /// The hash slot of `key`, as the cluster computes it.
    pub fn slot_of(&self, key: &str) -> u16 {
        let out = self
            .any_cli(&["CLUSTER", "KEYSLOT", key])
            .expect("CLUSTER KEYSLOT");
        out.trim().parse().expect("a slot number")
    }

    /// The live primary serving `slot`.
    pub fn owner_of_slot(&self, slot: u16) -> ClusterNode {
        self.primaries()
            .into_iter()
            .find(|n| n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .unwrap_or_else(|| panic!("no live primary serves slot {slot}"))
    }

    /// SIGKILLs the primary that owns `key`'s slot and waits until its replica took over and
    /// the cluster is `ok` again. Answers the killed node's port.
    pub async fn kill_primary_of(&mut self, key: &str) -> u16 {
        let slot = self.slot_of(key);
        let old = self.owner_of_slot(slot).port;
        self.kill(old);
        let limit = Duration::from_millis(NODE_TIMEOUT_MS * 15);
        crate::wait_for(limit, "a replica promoted", || async {
            let owner = self
                .primaries()
                .into_iter()
                .find(|n| n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))?;
            (owner.port != old).then_some(())
        })
        .await;
        self.wait_ok(limit).await;
        old
    }

    /// SIGKILLs the node on `port`.
    pub fn kill(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port() == port) {
            n.kill();
        }
    }

    /// Starts the killed node on `port` again (same port, same `nodes.conf`): it rejoins the
    /// cluster, as a replica of whoever took its slots over, and waits until it is in sync.
    pub async fn restart(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port() == port) {
            n.start_again();
        }
        let limit = Duration::from_millis(NODE_TIMEOUT_MS * 15);
        crate::wait_for(limit, "the restarted node to sync as a replica", || async {
            let info = self.cli(port, &["INFO", "replication"])?;
            (info.contains("role:slave") && info.contains("master_link_status:up")).then_some(())
        })
        .await;
        self.wait_ok(limit).await;
    }

    /// Moves one slot, keys included, to the primary on `to` (the manual `MIGRATING` /
    /// `IMPORTING` / `MIGRATE` / `SETSLOT NODE` procedure `redis-cli --cluster reshard` runs), so
    /// clients see `ASK` while it moves and `MOVED` after.
    pub fn move_slot(&self, slot: u16, to: u16) {
        let src = self.owner_of_slot(slot);
        if src.port == to {
            return;
        }
        let dst = self.primaries().into_iter().find(|n| n.port == to);
        let dst = dst.unwrap_or_else(|| panic!("no live primary on {to}"));
        let s = slot.to_string();
        self.must(dst.port, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &src.id]);
        self.must(src.port, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &dst.id]);
        loop {
            let keys = self.must(src.port, &["CLUSTER", "GETKEYSINSLOT", &s, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = dst.port.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000"];
            if let Some(p) = &self.password {
                args.extend(["AUTH", p]);
            }
            args.push("KEYS");
            args.extend(keys);
            self.must(src.port, &args);
        }
        for n in self.primaries() {
            self.must(n.port, &["CLUSTER", "SETSLOT", &s, "NODE", &dst.id]);
        }
    }

    /// `redis-cli --cluster reshard`: moves `count` slots from the primary on `from` to the one
    /// on `to`, keys included.
    pub fn reshard(&self, from: u16, to: u16, count: u32) {
        let id = |port: u16| {
            let n = self.primaries().into_iter().find(|n| n.port == port);
            n.unwrap_or_else(|| panic!("no live primary on {port}")).id
        };
        let mut cmd = self.redis_cli();
        if let Some(p) = &self.password {
            cmd.args(["--no-auth-warning", "-a", p]);
        }
        let out = cmd
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &id(from), "--cluster-to", &id(to)])
            .args(["--cluster-slots", &count.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster reshard");
        assert!(
            out.status.success(),
            "reshard failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    fn must(&self, port: u16, args: &[&str]) -> String {
        let out = self.cli(port, args);
        let out = out.unwrap_or_else(|| panic!("node {port} is down: {args:?}"));
        assert!(!out.starts_with("ERR"), "{args:?} on {port}: {out}");
        out
    }

    /// Waits until every live node says `cluster_state:ok` and sees every slot served.
    pub async fn wait_ok(&self, limit: Duration) {
        crate::wait_for(limit, "the cluster to be ok", || async {
            let live: Vec<String> = self
                .nodes
                .iter()
                .filter_map(|n| n.cli(&["CLUSTER", "INFO"]))
                .collect();
            let ok = !live.is_empty()
                && live.iter().all(|i| {
                    i.contains("cluster_state:ok") && i.contains("cluster_slots_ok:16384")
                });
            ok.then_some(())
        })
        .await
    }
}

/// `<id> <ip:port@bus> <flags> <primary> <ping> <pong> <epoch> <link> <slot>…`
fn parse_node_line(line: &str) -> Option<ClusterNode> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let addr = fields.get(1)?;
    let port = addr.split('@').next()?.rsplit_once(':')?.1.parse().ok()?;
    let flags = fields.get(2)?;
    let link = fields.get(7).copied().unwrap_or("");
    let slots = fields
        .iter()
        .skip(8)
        .filter(|s| !s.starts_with('['))
        .filter_map(|s| match s.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => s.parse().ok().map(|n| (n, n)),
        })
        .collect();
    Some(ClusterNode {
        id: fields[0].to_owned(),
        port,
        primary: flags.contains("master"),
        failed: flags.contains("fail") || link == "disconnected",
        slots,
    })
}
