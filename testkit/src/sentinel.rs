//! A private Sentinel deployment for one test: a primary, replicas (`--replicaof`) and three
//! `redis-server --sentinel` processes (quorum 2, a node is down after 1 s), all on free loopback
//! ports in temp dirs, killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::redis::{RedisServer, free_port};

/// The master name the Sentinels monitor.
pub const MASTER: &str = "swarmq";

struct SentinelProcess {
    port: u16,
    /// Its own `requirepass`.
    password: Option<String>,
    /// Speaks TLS only.
    tls: bool,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct SentinelTopology {
    /// Every data node, the first one the primary at the start; a failover does not reorder
    /// them (ask [`SentinelTopology::primary_port`]).
    pub nodes: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
    /// The data nodes' password, if any.
    password: Option<String>,
    /// Everything speaks TLS only; the certificate's directory (one self-signed pair for all).
    certs: Option<tempfile::TempDir>,
}

impl SentinelTopology {
    /// A primary, `replicas` replicas and three Sentinels that know them all (each Sentinel has
    /// seen the replicas and the two other Sentinels, so a failover can start at once).
    pub async fn start(replicas: usize) -> Self {
        Self::start_with_auth(replicas, None, None).await
    }

    /// `start`, with AUTH on the data nodes (`password`) and on the Sentinels themselves.
    pub async fn start_with_auth(
        replicas: usize,
        password: Option<&str>,
        sentinel_password: Option<&str>,
    ) -> Self {
        let primary = RedisServer::start_node_with_password(None, password);
        let port = primary.port();
        let mut nodes = vec![primary];
        nodes.extend(
            (0..replicas).map(|_| RedisServer::start_node_with_password(Some(port), password)),
        );
        let auth = (password, sentinel_password);
        let sentinels = (0..3).map(|_| start_sentinel(port, auth, None)).collect();
        Self::known(nodes, sentinels, password, None, replicas).await
    }

    /// `start` with TLS everywhere: clients to data nodes and to Sentinels, replicas to their
    /// primary, Sentinels to the nodes and to each other (no plain port is open), and AUTH on
    /// the data nodes.
    pub async fn start_tls(replicas: usize, password: Option<&str>) -> Self {
        let certs = tempfile::tempdir().expect("temp dir");
        crate::redis::make_certificate(certs.path());
        let primary = RedisServer::start_node_tls(None, password, certs.path());
        let port = primary.port();
        let mut nodes = vec![primary];
        nodes.extend(
            (0..replicas).map(|_| RedisServer::start_node_tls(Some(port), password, certs.path())),
        );
        let sentinels = (0..3)
            .map(|_| start_sentinel(port, (password, None), Some(certs.path())))
            .collect();
        Self::known(nodes, sentinels, password, Some(certs), replicas).await
    }

    async fn known(
        nodes: Vec<RedisServer>,
        sentinels: Vec<SentinelProcess>,
        password: Option<&str>,
        certs: Option<tempfile::TempDir>,
        replicas: usize,
    ) -> Self {
        let topology = Self {
            nodes,
            sentinels,
            password: password.map(str::to_owned),
            certs,
        };
        topology.wait_known(replicas).await;
        topology
    }

    /// `REDIS_URL` for daemons of this deployment: its host is never used with Sentinel, its
    /// scheme says whether the data nodes speak TLS.
    pub fn unused_url(&self) -> &'static str {
        if self.certs.is_some() {
            "rediss://127.0.0.1:1/#insecure"
        } else {
            "redis://127.0.0.1:1"
        }
    }

    /// Makes every data node refuse writes while fewer than `n` replicas are attached and
    /// current (`min-replicas-to-write`, lag 2 s): a frozen primary that comes back after a
    /// failover then refuses writes (`NOREPLICAS`) instead of taking and publishing them until
    /// Sentinel demotes it. The recommended companion of the durability option.
    pub fn guard_writes(&self, n: u32) {
        for node in &self.nodes {
            node.cli(&["CONFIG", "SET", "min-replicas-to-write", &n.to_string()]);
            node.cli(&["CONFIG", "SET", "min-replicas-max-lag", "2"]);
        }
    }

    /// Hands the initial primary over to the caller (to kill or freeze it as a plain
    /// [`RedisServer`]); node lookups then cover the replicas only.
    pub fn take_initial_primary(&mut self) -> RedisServer {
        self.nodes.remove(0)
    }

    /// The target a [`swarmq_shared::Store`] follows this deployment's primary by.
    pub fn target(&self) -> swarmq_shared::store::RedisTarget {
        let sentinel_password = self.sentinels[0].password.as_deref();
        swarmq_shared::store::RedisTarget::parse(
            self.unused_url(),
            &self.sentinels(),
            Some(MASTER),
            sentinel_password,
            self.password.as_deref(),
        )
        .expect("sentinel target")
    }

    /// `REDIS_SENTINELS`'s value.
    pub fn sentinels(&self) -> String {
        let list: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| match s.tls {
                true => format!("rediss://127.0.0.1:{}/#insecure", s.port),
                false => format!("127.0.0.1:{}", s.port),
            })
            .collect();
        list.join(",")
    }

    /// The settings that point a daemon at this deployment.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("REDIS_SENTINELS".into(), self.sentinels()),
            ("REDIS_SENTINEL_MASTER".into(), MASTER.into()),
        ];
        if let Some(p) = &self.password {
            env.push(("REDIS_PASSWORD".into(), p.clone()));
        }
        if let Some(p) = &self.sentinels[0].password {
            env.push(("REDIS_SENTINEL_PASSWORD".into(), p.clone()));
        }
        env
    }

    /// The primary's port as the first Sentinel that answers tells it.
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let out = sentinel_cli(s, &["SENTINEL", "get-master-addr-by-name", MASTER])?;
            out.lines().nth(1)?.trim().parse().ok()
        })
    }

    /// The data node on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port() == port)
            .expect("a node of this topology")
    }

    pub fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .expect("a node of this topology")
    }

    /// A plain URL of the node on `port` (for audits read straight from it).
    pub fn url_of(&self, port: u16) -> String {
        self.node(port).url()
    }

    /// Failovers so far: the most `+switch-master` lines any one Sentinel logged (a failover
    /// that timed out and was retried promotes a second node: two).
    pub fn switches(&self) -> usize {
        self.sentinels
            .iter()
            .map(|s| {
                std::fs::read_to_string(s.dir.path().join("sentinel.log"))
                    .map(|log| log.matches("+switch-master").count())
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    }

    /// Waits until the Sentinels name a primary other than `old` that says `ROLE master`.
    pub async fn wait_failover(&self, old: u16, limit: Duration) -> u16 {
        crate::wait_for(limit, "a Sentinel failover", || async move {
            let port = self.primary_port().filter(|p| *p != old)?;
            let role = self.node(port).cli(&["ROLE"])?;
            role.starts_with("master").then_some(port)
        })
        .await
    }

    /// Waits until every replica is in sync and every Sentinel knows the primary, `replicas`
    /// replicas and two other Sentinels.
    async fn wait_known(&self, replicas: usize) {
        crate::wait_for(Duration::from_secs(30), "replicas in sync", || async {
            self.nodes[1..]
                .iter()
                .all(|n| {
                    n.cli(&["INFO", "replication"])
                        .is_some_and(|i| i.contains("master_link_status:up"))
                })
                .then_some(())
        })
        .await;
        crate::wait_for(Duration::from_secs(30), "Sentinels to discover", || async {
            self.sentinels
                .iter()
                .all(|s| {
                    let count = |what: &str| {
                        sentinel_cli(s, &["SENTINEL", what, MASTER])
                            .map(|o| o.lines().filter(|l| *l == "name").count())
                            .unwrap_or(0)
                    };
                    count("replicas") >= replicas && count("sentinels") >= 2
                })
                .then_some(())
        })
        .await
    }
}

fn start_sentinel(
    primary: u16,
    (password, sentinel_password): (Option<&str>, Option<&str>),
    certs: Option<&std::path::Path>,
) -> SentinelProcess {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut conf = match certs {
        Some(certs) => format!(
            "port 0\ntls-port {port}\ntls-cert-file {c}/cert.pem\ntls-key-file {c}/key.pem\n\
             tls-ca-cert-file {c}/cert.pem\ntls-auth-clients no\ntls-replication yes\n",
            c = certs.display()
        ),
        None => format!("port {port}\n"),
    };
    conf.push_str(&format!(
        "bind 127.0.0.1\ndir {dir}\nlogfile sentinel.log\n\
         sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
         sentinel down-after-milliseconds {MASTER} 1000\n\
         sentinel failover-timeout {MASTER} 3000\n\
         sentinel parallel-syncs {MASTER} 2\n",
        dir = dir.path().display()
    ));
    if let Some(p) = password {
        conf.push_str(&format!("sentinel auth-pass {MASTER} {p}\n"));
    }
    if let Some(p) = sentinel_password {
        // The Sentinels authenticate to each other with it too.
        conf.push_str(&format!("requirepass {p}\nsentinel sentinel-pass {p}\n"));
    }
    let path = dir.path().join("sentinel.conf");
    std::fs::write(&path, conf).expect("sentinel.conf");
    let child = Command::new("redis-server")
        .arg(&path)
        .arg("--sentinel")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server --sentinel");
    let sentinel = SentinelProcess {
        port,
        password: sentinel_password.map(str::to_owned),
        tls: certs.is_some(),
        child,
        dir,
    };
    for _ in 0..500 {
        if sentinel_cli(&sentinel, &["PING"]).is_some_and(|r| r.trim() == "PONG") {
            return sentinel;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("sentinel on port {port} did not come up");
}

fn sentinel_cli(s: &SentinelProcess, args: &[&str]) -> Option<String> {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-p", &s.port.to_string()]);
    if s.tls {
        cmd.args(["--tls", "--insecure"]);
    }
    if let Some(p) = &s.password {
        cmd.args(["--no-auth-warning", "-a", p]);
    }
    let out = cmd.args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
}
