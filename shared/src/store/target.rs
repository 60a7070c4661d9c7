//! Where the Redis primary is: one fixed URL, or whatever a set of Sentinels names now.
//!
//! Every connection the store opens (the multiplexed command connection, each claimer's blocking
//! connection, each pub/sub connection) asks [`Target::primary`] on (re)connect, so after a
//! failover each one lands on the new primary by itself. A Sentinel answer is not trusted
//! blindly: the node it names must say `ROLE` = `master` on the very connection we then use, so
//! a stale primary (frozen, failed over, resumed) is never written to through a fresh connection.

use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, TlsMode};
use tokio::sync::Mutex;

use super::{Result, StoreError};

/// How long finding the primary (asking Sentinels, then opening and checking a connection) may
/// take before it counts as failed: no primary known means 503, never a hang.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where Redis is, as the settings say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    /// One address (`REDIS_URL`), trusted to be the primary.
    Single(String),
    /// The primary named `master` by the Sentinels at `sentinels`.
    Sentinel(SentinelTarget),
    /// A Redis Cluster found through its seed nodes (`REDIS_CLUSTER_NODES`).
    Cluster(ClusterTarget),
}

/// A Redis Cluster: the nodes asked for the slot map (any live one will do; the client learns
/// the others from it). AUTH and TLS come from the URLs (`rediss://` for TLS), or the password
/// from `REDIS_PASSWORD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterTarget {
    /// The seed URLs, as given.
    pub seeds: Vec<String>,
    /// Overrides the URLs' password when set.
    pub password: Option<String>,
}

/// TLS on a connection: `rediss://` (the server's certificate verified against the system CA
/// store), `rediss://…#insecure` (not verified: self-signed test setups), or plain `redis://`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    Off,
    Verified,
    Unverified,
}

impl Tls {
    /// From an address's scheme and fragment.
    fn of(address: &str) -> Self {
        if !address.starts_with("rediss://") {
            Self::Off
        } else if address.ends_with("#insecure") {
            Self::Unverified
        } else {
            Self::Verified
        }
    }

    fn mode(self) -> Option<TlsMode> {
        match self {
            Self::Off => None,
            Self::Verified => Some(TlsMode::Secure),
            Self::Unverified => Some(TlsMode::Insecure),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelTarget {
    /// `host:port` of each Sentinel.
    pub sentinels: Vec<(String, u16)>,
    /// TLS to the Sentinels (every `REDIS_SENTINELS` entry `rediss://…`).
    pub sentinel_tls: Tls,
    /// The monitored master's name (`sentinel monitor <name> …`).
    pub master: String,
    /// AUTH for the Sentinels (`requirepass` in sentinel.conf).
    pub sentinel_password: Option<String>,
    /// AUTH, database and TLS for the data nodes, from `REDIS_URL` (its host is not used).
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
    pub tls: Tls,
}

impl RedisTarget {
    /// From the settings: Sentinel mode when `sentinels` is non-empty (then `master` is
    /// required); `url` gives the data nodes' credentials, db and scheme; `password`, when set,
    /// overrides the URL's.
    pub fn parse(
        url: &str,
        sentinels: &str,
        master: Option<&str>,
        sentinel_password: Option<&str>,
        password: Option<&str>,
    ) -> std::result::Result<Self, String> {
        let redacted = crate::telemetry::redact_url(url);
        let info = url.into_connection_info().map_err(|e| match e.detail() {
            Some(detail) => format!("invalid REDIS_URL {redacted}: {} ({detail})", e.category()),
            None => format!("invalid REDIS_URL {redacted}: {}", e.category()),
        })?;
        let (sentinels, sentinel_tls) = parse_sentinels(sentinels)?;
        if sentinels.is_empty() {
            // REDIS_PASSWORD is not read here: REDIS_URL carries the password (the Compose file
            // builds it from REDIS_PASSWORD, which its env_file may pass along as well).
            return Ok(Self::Single(url.to_owned()));
        }
        let master = master
            .filter(|m| !m.is_empty())
            .ok_or("REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not")?;
        let redis = info.redis_settings();
        Ok(Self::Sentinel(SentinelTarget {
            sentinels,
            sentinel_tls,
            master: master.to_owned(),
            sentinel_password: sentinel_password
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            username: redis.username().map(str::to_owned),
            password: password
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .or_else(|| redis.password().map(str::to_owned)),
            db: redis.db(),
            tls: Tls::of(url),
        }))
    }

    /// A cluster from `REDIS_CLUSTER_NODES` (comma-separated `redis://` / `rediss://` URLs, or
    /// bare `host:port`s); `password`, when set, overrides the URLs'.
    pub fn cluster(nodes: &str, password: Option<&str>) -> std::result::Result<Self, String> {
        let seeds: Vec<String> = nodes
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.contains("://") {
                    s.to_owned()
                } else {
                    format!("redis://{s}")
                }
            })
            .collect();
        if seeds.is_empty() {
            return Err("REDIS_CLUSTER_NODES names no node".into());
        }
        for seed in &seeds {
            if let Err(e) = seed.as_str().into_connection_info() {
                let redacted = crate::telemetry::redact_url(seed);
                return Err(format!(
                    "invalid REDIS_CLUSTER_NODES entry {redacted}: {}",
                    e.category()
                ));
            }
        }
        Ok(Self::Cluster(ClusterTarget {
            seeds,
            password: password.filter(|p| !p.is_empty()).map(str::to_owned),
        }))
    }

    /// For logs: never a password.
    pub fn describe(&self) -> String {
        match self {
            Self::Cluster(c) => {
                let list: Vec<String> = c
                    .seeds
                    .iter()
                    .map(|s| crate::telemetry::redact_url(s))
                    .collect();
                format!("cluster via {}", list.join(","))
            }
            Self::Single(url) => crate::telemetry::redact_url(url),
            Self::Sentinel(s) => {
                let list: Vec<String> = s
                    .sentinels
                    .iter()
                    .map(|(h, p)| format!("{h}:{p}"))
                    .collect();
                let tls = if s.sentinel_tls == Tls::Off {
                    ""
                } else {
                    " (TLS)"
                };
                format!("sentinel master {} via {}{tls}", s.master, list.join(","))
            }
        }
    }
}

/// `host:port,host:port` (spaces allowed; an optional `redis://` prefix ignored; `rediss://` on
/// every entry for TLS, with `#insecure` for certificates that cannot be verified).
fn parse_sentinels(list: &str) -> std::result::Result<(Vec<(String, u16)>, Tls), String> {
    let mut tls = None;
    let mut sentinels = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let this = Tls::of(entry);
        if tls.is_some_and(|t| t != this) {
            return Err(format!(
                "REDIS_SENTINELS entry {entry:?}: every entry must use the same scheme (rediss:// for TLS)"
            ));
        }
        tls = Some(this);
        let bare = entry.trim_end_matches("#insecure");
        let bare = bare
            .strip_prefix("rediss://")
            .or_else(|| bare.strip_prefix("redis://"))
            .unwrap_or(bare)
            .trim_end_matches('/');
        let (host, port) = bare
            .rsplit_once(':')
            .ok_or_else(|| format!("REDIS_SENTINELS entry {entry:?}: expected host:port"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("REDIS_SENTINELS entry {entry:?}: bad port"))?;
        sentinels.push((host.to_owned(), port));
    }
    Ok((sentinels, tls.unwrap_or(Tls::Off)))
}

/// The connectable form of a [`RedisTarget`]: hands out a client for the current primary.
pub(crate) enum Target {
    Single(redis::Client),
    Sentinel(Mutex<SentinelClient>),
    /// The seeds, and a plain client per seed (classic pub/sub: any node relays every
    /// `PUBLISH`, so the first that answers serves a subscriber).
    Cluster(ClusterTarget, Vec<redis::Client>),
}

impl Target {
    pub(crate) fn open(target: &RedisTarget) -> Result<Self> {
        Ok(match target {
            RedisTarget::Single(url) => Self::Single(redis::Client::open(url.as_str())?),
            RedisTarget::Sentinel(s) => Self::Sentinel(Mutex::new(sentinel_client(s)?)),
            RedisTarget::Cluster(c) => {
                let clients = c
                    .seeds
                    .iter()
                    .map(|seed| {
                        let mut info = seed.as_str().into_connection_info()?;
                        if let Some(p) = &c.password {
                            let redis = info.redis_settings().clone().set_password(p);
                            info = info.set_redis_settings(redis);
                        }
                        redis::Client::open(info)
                    })
                    .collect::<redis::RedisResult<Vec<_>>>()?;
                Self::Cluster(c.clone(), clients)
            }
        })
    }

    /// A cluster client whose every request may take `response_timeout` (`None`: no limit, for
    /// blocking commands that time out on their own).
    pub(crate) fn cluster_client(
        &self,
        response_timeout: Option<Duration>,
    ) -> Result<Option<redis::cluster::ClusterClient>> {
        let Self::Cluster(c, _) = self else {
            return Ok(None);
        };
        let mut b = redis::cluster::ClusterClientBuilder::new(c.seeds.clone())
            .connection_timeout(RESOLVE_TIMEOUT)
            .retries(6)
            .min_retry_wait(100)
            .max_retry_wait(1000);
        if let Some(t) = response_timeout {
            b = b.response_timeout(t);
        }
        if let Some(p) = &c.password {
            b = b.password(p.clone());
        }
        Ok(Some(b.build()?))
    }

    pub(crate) fn is_sentinel(&self) -> bool {
        matches!(self, Self::Sentinel(_))
    }

    /// A client for the primary as of now (for a Sentinel target: asked of the Sentinels).
    pub(crate) async fn primary(&self) -> Result<redis::Client> {
        match self {
            Self::Single(client) => Ok(client.clone()),
            Self::Cluster(..) => Err(no_primary("a cluster has no single primary")),
            Self::Sentinel(sentinel) => {
                let lookup = async { sentinel.lock().await.async_get_client().await };
                // Whatever the Sentinels say short of a primary (none valid, one that refuses,
                // no quorum yet) means "no primary known now": unavailable, a 503.
                match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                    Ok(Ok(client)) => Ok(client),
                    Ok(Err(e)) => Err(no_primary(&e.to_string())),
                    Err(_) => Err(no_primary("the Sentinels did not answer in time")),
                }
            }
        }
    }

    /// A multiplexed connection to the primary, checked with `ROLE` when the primary came from
    /// Sentinel (a node that answers `slave` was demoted since the Sentinels answered).
    /// Also answers the primary's address.
    pub(crate) async fn connect(
        &self,
        config: &AsyncConnectionConfig,
    ) -> Result<(redis::aio::MultiplexedConnection, String)> {
        let attempt = async {
            let client = self.primary().await?;
            let mut conn = client
                .get_multiplexed_async_connection_with_config(config)
                .await?;
            if self.is_sentinel() {
                check_role(&mut conn).await?;
            }
            Ok((conn, client.get_connection_info().addr().to_string()))
        };
        match tokio::time::timeout(RESOLVE_TIMEOUT * 2, attempt).await {
            Ok(conn) => conn,
            Err(_) => Err(no_primary("connecting to the primary timed out")),
        }
    }

    /// A pub/sub connection to the primary (bounded like [`Target::connect`]).
    pub(crate) async fn pubsub(&self) -> Result<redis::aio::PubSub> {
        if let Self::Cluster(_, clients) = self {
            return cluster_pubsub(clients).await;
        }
        let attempt = async { Ok(self.primary().await?.get_async_pubsub().await?) };
        match tokio::time::timeout(RESOLVE_TIMEOUT * 2, attempt).await {
            Ok(pubsub) => pubsub,
            Err(_) => Err(no_primary("connecting to the primary timed out")),
        }
    }
}

/// Classic pub/sub on a cluster: the first seed that answers (every node relays every
/// `PUBLISH`); a node that goes away ends the stream and the caller's loop asks again.
async fn cluster_pubsub(clients: &[redis::Client]) -> Result<redis::aio::PubSub> {
    let mut last = None;
    for client in clients {
        match tokio::time::timeout(RESOLVE_TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => return Ok(pubsub),
            Ok(Err(e)) => last = Some(e.to_string()),
            Err(_) => last = Some("timed out".into()),
        }
    }
    Err(no_primary(&format!(
        "no cluster node answered: {}",
        last.unwrap_or_default()
    )))
}

/// Fails unless the node says it is a primary.
async fn check_role(conn: &mut redis::aio::MultiplexedConnection) -> Result<()> {
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(conn).await?;
    match role.first() {
        Some(redis::Value::BulkString(r)) if r.as_slice() == b"master" => Ok(()),
        other => Err(no_primary(&format!(
            "the node the Sentinels named is not a primary (ROLE {other:?})"
        ))),
    }
}

/// The error of "no primary known right now": unavailable (503, retried), like a refused
/// connection.
pub(crate) fn no_primary(why: &str) -> StoreError {
    StoreError::Redis(no_primary_error(why.to_owned()))
}

/// [`no_primary`] as the error of a command.
pub(crate) fn no_primary_error(why: String) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown),
        "no Redis primary",
        why,
    ))
}

fn sentinel_client(s: &SentinelTarget) -> Result<SentinelClient> {
    let addrs = s.sentinels.iter().map(|(host, port)| match s.sentinel_tls {
        Tls::Off => ConnectionAddr::Tcp(host.clone(), *port),
        tls => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: tls == Tls::Unverified,
            tls_params: None,
        },
    });
    let mut b = SentinelClientBuilder::new(addrs, &s.master, SentinelServerType::Master)?
        .set_client_to_redis_db(s.db);
    if let Some(p) = &s.sentinel_password {
        b = b.set_client_to_sentinel_password(p);
    }
    if let Some(u) = &s.username {
        b = b.set_client_to_redis_username(u);
    }
    if let Some(p) = &s.password {
        b = b.set_client_to_redis_password(p);
    }
    if let Some(mode) = s.tls.mode() {
        b = b.set_client_to_redis_tls_mode(mode);
    }
    Ok(b.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_settings_parse() {
        let t = RedisTarget::parse(
            "redis://:pw@ignored:1/2",
            "10.0.0.1:26379, redis://h2:26380",
            Some("mymaster"),
            Some("spw"),
            None,
        )
        .unwrap();
        let RedisTarget::Sentinel(s) = t else {
            panic!("not sentinel")
        };
        assert_eq!(
            s.sentinels,
            vec![("10.0.0.1".into(), 26379), ("h2".into(), 26380)]
        );
        assert_eq!((s.password.as_deref(), s.db), (Some("pw"), 2));
        assert_eq!(s.sentinel_password.as_deref(), Some("spw"));
        assert_eq!((s.sentinel_tls, s.tls), (Tls::Off, Tls::Off));
        let t = RedisTarget::parse(
            "rediss://ignored:1/#insecure",
            "rediss://a:26379/#insecure,rediss://b:26380#insecure",
            Some("m"),
            None,
            None,
        )
        .unwrap();
        let RedisTarget::Sentinel(s) = t else {
            panic!("not sentinel")
        };
        assert_eq!(s.sentinels, vec![("a".into(), 26379), ("b".into(), 26380)]);
        assert_eq!((s.sentinel_tls, s.tls), (Tls::Unverified, Tls::Unverified));
        let mixed = RedisTarget::parse("redis://h:1", "rediss://a:1,b:2", Some("m"), None, None);
        assert!(mixed.unwrap_err().contains("same scheme"));
        assert!(RedisTarget::parse("redis://h:1", "h:1", None, None, None).is_err());
        assert!(RedisTarget::parse("redis://h:1", "h", Some("m"), None, None).is_err());
        assert_eq!(
            RedisTarget::parse("redis://h:1", "", None, None, None).unwrap(),
            RedisTarget::Single("redis://h:1".into())
        );
    }
}
