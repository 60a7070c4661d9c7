//! Accepting and serving HTTP connections, bounded before anything is authenticated:
//!
//! - a global connection cap (`SWARMQ_MAX_CONNECTIONS`, never above what the open-file limit
//!   leaves room for; 127.0.0.1 and ::1 get a few places beyond it, for local health checks) and a per-address cap (`SWARMQ_MAX_CONNECTIONS_PER_IP`, keyed as
//!   [`client_addr::limit_key`]: IPv4 address or IPv6 /64; trusted proxies are exempt). A
//!   connection over a cap gets a one-line 503 and is closed at once. Websockets count until
//!   they close: the permit travels with the socket into the upgrade.
//! - a header-read timeout (`SWARMQ_HEADER_READ_TIMEOUT_SECS`): a request whose headers are not
//!   complete in time — and a keep-alive connection that sends no next request in time — is
//!   closed. (Request bodies have their own idle timeout, a router layer: see `lib.rs`.)
//!
//! It replaces `axum::serve`, which has neither, and serves each connection the way it does (hyper-util's
//! auto builder: with hyper's plain HTTP/1 builder an idle websocket cost ~6 KB more, 127 MB for
//! 10,000 viewers instead of 70 — `scripts/bench.sh --only MEM`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::client_addr::{TrustedProxies, limit_key};
use crate::client_log;

/// File descriptors kept free of connections (Redis, logs, the listener itself, and the
/// loopback reserve below).
const FD_RESERVE: u64 = 64;
/// Connections beyond the global cap that 127.0.0.1 and ::1 may still open: a local health check
/// (a container's HEALTHCHECK, a probe on the host) gets through while the cap is full.
const LOOPBACK_RESERVE: usize = 16;

/// The connection bounds (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub max_connections: usize,
    /// 0 = no per-address cap.
    pub max_per_ip: usize,
    pub header_read_timeout: Duration,
}

/// Counts open connections, globally and per address.
pub struct Gate {
    limits: ConnLimits,
    trusted: TrustedProxies,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it frees its place.
pub struct Permit {
    gate: Arc<Gate>,
    key: Option<IpAddr>,
}

impl Gate {
    pub fn new(limits: ConnLimits, trusted: TrustedProxies) -> Arc<Self> {
        Arc::new(Self {
            limits,
            trusted,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// A place for a connection from `peer`, or why not.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, &'static str> {
        let local = matches!(peer.to_canonical(), IpAddr::V4(v4) if v4 == std::net::Ipv4Addr::LOCALHOST)
            || peer == IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
        let cap = if local {
            self.limits.max_connections + LOOPBACK_RESERVE
        } else {
            self.limits.max_connections
        };
        if self.total.fetch_add(1, Ordering::AcqRel) >= cap {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err("connection limit reached");
        }
        let per_ip = self.limits.max_per_ip;
        let key = (per_ip > 0 && !self.trusted.contains(peer)).then(|| limit_key(peer));
        if let Some(key) = key {
            let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let count = map.entry(key).or_insert(0);
            if *count >= per_ip {
                drop(map);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err("per-address connection limit reached");
            }
            *count += 1;
        }
        Ok(Permit {
            gate: self.clone(),
            key,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut map = self.gate.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(count) = map.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&key);
                }
            }
        }
        self.gate.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A TCP stream that holds its connection's place until it is dropped (also after an upgrade).
struct Guarded {
    stream: TcpStream,
    _permit: Permit,
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accepts connections until `shutdown` fires, then lets open ones finish for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    gate: Arc<Gate>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => match gate.admit(peer.ip()) {
                Ok(permit) => {
                    let io = Guarded {
                        stream,
                        _permit: permit,
                    };
                    let conn = connection(io, peer, router.clone(), gate.limits, shutdown.clone());
                    tokio::spawn(conn);
                }
                Err(why) => refuse(stream, peer, why),
            },
            Err(e) => {
                // Out of file descriptors (or similar): wait instead of spinning.
                metrics::counter!("swarmq_http_accept_errors_total").increment(1);
                client_log::client_error("accept error", &e.to_string());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + grace;
    while gate.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if gate.open() > 0 {
        tracing::warn!(
            open = gate.open(),
            ?grace,
            "connections still open after the shutdown grace period; stopping anyway"
        );
    }
}

/// Serves one connection (HTTP/1.1, upgrades included) until it ends or the server stops.
async fn connection(
    io: Guarded,
    peer: SocketAddr,
    router: Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
) {
    let service = router.map_request(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// Answers a connection over a cap with a 503 (if the socket takes it at once) and closes it.
fn refuse(stream: TcpStream, peer: SocketAddr, why: &'static str) {
    metrics::counter!("swarmq_http_connections_refused_total", "reason" => why).increment(1);
    client_log::client_error(why, &peer.ip().to_string());
    let body = format!("{{\"error\":\"{why}\"}}");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// Raises the soft open-file limit to the hard one; returns the limit now in force (`None` when
/// it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    Some(limit.rlim_cur)
}

/// The connection cap that fits in the open-file limit (raised first): `configured`, or less
/// (with a warning) when the limit leaves no room for that many.
pub fn fit_to_open_file_limit(configured: usize) -> usize {
    let Some(open_files) = raise_open_file_limit() else {
        return configured;
    };
    let room = usize::try_from(open_files.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    if room < configured {
        tracing::warn!(
            configured,
            open_file_limit = open_files,
            effective = room,
            "SWARMQ_MAX_CONNECTIONS lowered to fit the open-file limit (raise `ulimit -n` / LimitNOFILE)"
        );
    }
    configured.min(room.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_address_and_free_on_drop() {
        let limits = ConnLimits {
            max_connections: 3,
            max_per_ip: 2,
            header_read_timeout: Duration::from_secs(1),
        };
        let gate = Gate::new(limits, TrustedProxies::parse("10.0.0.1").unwrap());
        let a: IpAddr = "1.1.1.1".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:1.1.1.1".parse().unwrap();
        let p1 = gate.admit(a).unwrap();
        let _p2 = gate.admit(a_mapped).unwrap();
        assert_eq!(
            gate.admit(a).err(),
            Some("per-address connection limit reached")
        );
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let _p3 = gate
            .admit(proxy)
            .expect("trusted proxies have no per-address cap");
        assert_eq!(gate.admit(proxy).err(), Some("connection limit reached"));
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let health = gate
            .admit(local)
            .expect("a local health check passes a full cap");
        assert_eq!(gate.open(), 4);
        drop((p1, health));
        assert_eq!(gate.open(), 2);
        let _p4 = gate.admit(a).expect("a freed place is reusable");
    }
}
