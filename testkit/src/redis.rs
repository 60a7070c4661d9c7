//! A private redis-server per test: free port, own temp dir, AOF with fsync on every write so a
//! restart loses nothing, killed when dropped. Benchmarks use the shipped deployment's setting
//! instead (AOF, fsync once a second: `start_everysec`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    password: Option<String>,
    tls: bool,
    /// `appendfsync`: "always" (tests) or "everysec" (benchmarks, as deploy/docker-compose.yml).
    fsync: &'static str,
    /// Further `--flag value` arguments (`--replicaof`).
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with_fsync("always")
    }

    /// A server persisting as the shipped Compose file does (AOF, `appendfsync everysec`): what
    /// the benchmarks measure against. A clean restart loses nothing; a crash can lose about
    /// the last second of writes.
    pub fn start_everysec() -> Self {
        Self::start_with_fsync("everysec")
    }

    fn start_with_fsync(fsync: &'static str) -> Self {
        Self::start_with_args(fsync, &[], None)
    }

    /// A node of a replicated deployment: `replica_of` a primary's port, or a primary. Any node
    /// may be promoted, so each syncs replicas at once (no 5 s diskless-sync delay).
    pub fn start_node(replica_of: Option<u16>) -> Self {
        Self::start_node_with_password(replica_of, None)
    }

    /// `start_node` requiring `password` (and using it to authenticate to its primary).
    pub fn start_node_with_password(replica_of: Option<u16>, password: Option<&str>) -> Self {
        let mut args = vec!["--repl-diskless-sync-delay".to_owned(), "0".to_owned()];
        if let Some(port) = replica_of {
            args.extend(["--replicaof".into(), "127.0.0.1".into(), port.to_string()]);
        }
        if let Some(p) = password {
            args.extend(["--masterauth".into(), p.to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start_with_args("always", &args, password)
    }

    /// A node of a Redis Cluster (`--cluster-enabled yes`), on a port whose cluster-bus port
    /// (+10000) is free too; `node_timeout_ms` is how long it may be unreachable before its
    /// replica takes over. Joined into a cluster by [`crate::RedisCluster`].
    pub fn start_cluster_node(password: Option<&str>, node_timeout_ms: u64) -> Self {
        let args = cluster_args(password, node_timeout_ms);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start_on(cluster_port(), "always", &args, password)
    }

    /// `start_cluster_node` speaking only TLS, to clients and on the cluster bus and
    /// replication links (`--tls-cluster`, `--tls-replication`), with the deployment's one
    /// certificate (its own CA) from `certs`.
    pub fn start_cluster_node_tls(
        password: Option<&str>,
        node_timeout_ms: u64,
        certs: &std::path::Path,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for file in ["cert.pem", "key.pem"] {
            std::fs::copy(certs.join(file), dir.path().join(file)).expect("copy certificate");
        }
        let mut extra = cluster_args(password, node_timeout_ms);
        for arg in ["--tls-cluster", "yes", "--tls-replication", "yes"] {
            extra.push(arg.to_owned());
        }
        extra.extend(["--tls-ca-cert-file".to_owned(), "cert.pem".to_owned()]);
        let mut server = Self {
            port: cluster_port(),
            dir,
            child: None,
            password: password.map(str::to_owned),
            tls: true,
            fsync: "always",
            extra,
        };
        server.launch();
        server
    }

    fn start_with_args(fsync: &'static str, extra: &[&str], password: Option<&str>) -> Self {
        Self::start_on(free_port(), fsync, extra, password)
    }

    fn start_on(port: u16, fsync: &'static str, extra: &[&str], password: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self {
            port,
            dir,
            child: None,
            password: password.map(str::to_owned),
            tls: false,
            fsync,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        server.launch();
        server
    }

    /// A server that requires `password` (AUTH) and, with `tls`, only speaks TLS (a
    /// self-signed certificate made with openssl; clients use `rediss://…/#insecure`).
    pub fn start_secure(password: &str, tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        if tls {
            make_certificate(dir.path());
        }
        let mut server = Self {
            port: free_port(),
            dir,
            child: None,
            password: Some(password.to_owned()),
            tls,
            fsync: "always",
            extra: Vec::new(),
        };
        server.launch();
        server
    }

    /// A node of a replicated deployment that only speaks TLS, to clients and to its primary
    /// (`--tls-replication`), with the certificate and key in `certs` (one pair shared by the
    /// whole deployment, which is also its own CA).
    pub fn start_node_tls(
        replica_of: Option<u16>,
        password: Option<&str>,
        certs: &std::path::Path,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for file in ["cert.pem", "key.pem"] {
            std::fs::copy(certs.join(file), dir.path().join(file)).expect("copy certificate");
        }
        let mut extra = vec![
            "--repl-diskless-sync-delay",
            "0",
            "--tls-replication",
            "yes",
        ];
        extra.extend(["--tls-ca-cert-file", "cert.pem"]);
        let port_text = replica_of.map(|p| p.to_string());
        if let Some(port) = &port_text {
            extra.extend(["--replicaof", "127.0.0.1", port]);
        }
        if let Some(p) = password {
            extra.extend(["--masterauth", p]);
        }
        let mut server = Self {
            port: free_port(),
            dir,
            child: None,
            password: password.map(str::to_owned),
            tls: true,
            fsync: "always",
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        server.launch();
        server
    }

    pub fn url(&self) -> String {
        let auth = self
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        if self.tls {
            format!("rediss://{auth}127.0.0.1:{}/#insecure", self.port)
        } else {
            format!("redis://{auth}127.0.0.1:{}", self.port)
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    fn launch(&mut self) {
        let mut cmd = Command::new("redis-server");
        if self.tls {
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args([
                    "--tls-cert-file",
                    "cert.pem",
                    "--tls-key-file",
                    "key.pem",
                    "--tls-auth-clients",
                    "no",
                ]);
        } else {
            cmd.args(["--port", &self.port.to_string()]);
        }
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .current_dir(self.dir.path())
            .args(["--bind", "127.0.0.1"])
            .args(["--dir", &self.dir.path().to_string_lossy()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
            ])
            .args(["--logfile", "redis.log"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); install it: apt-get install redis-server")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).is_some_and(|r| r.trim() == "PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not come up", self.port);
    }

    /// Runs redis-cli against this server; `None` when it cannot connect.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if self.tls {
            cmd.args(["--tls", "--insecure"]);
        }
        if let Some(p) = &self.password {
            cmd.args(["--no-auth-warning", "-a", p]);
        }
        let out = cmd.args(args).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }

    /// SIGKILLs the server (nothing flushed beyond what AOF already has).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the running server.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status();
        }
    }

    /// Starts it again on the same port and directory (AOF reloads the data).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.launch();
    }

    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The arguments of a cluster node (see [`RedisServer::start_cluster_node`]).
fn cluster_args(password: Option<&str>, node_timeout_ms: u64) -> Vec<String> {
    let timeout = node_timeout_ms.to_string();
    let mut args = vec![
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        &timeout,
        // Any replica may be promoted, however long it was cut off.
        "--cluster-replica-validity-factor",
        "0",
        "--repl-diskless-sync-delay",
        "0",
    ];
    if let Some(p) = password {
        args.extend(["--masterauth", p]);
    }
    args.into_iter().map(str::to_owned).collect()
}

/// A self-signed certificate for 127.0.0.1 (`cert.pem`, `key.pem`) in `dir`, made with openssl.
pub fn make_certificate(dir: &std::path::Path) {
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl (apt-get install openssl)");
    assert!(status.success(), "openssl could not make a certificate");
}

/// A free port below 55536 whose cluster-bus port (+10000) is free too.
fn cluster_port() -> u16 {
    for _ in 0..1000 {
        let port = free_port();
        if port < 55_536 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair for a cluster node");
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
