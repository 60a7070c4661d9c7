//! Which web pages may talk to the coordinator (`SWARMQ_CORS_ORIGINS`).
//!
//! A browser sends `Origin` with every cross-origin request and with every websocket upgrade,
//! and CORS alone only stops a page from *reading* answers: a cross-origin `POST`, a long-polling
//! handshake or a websocket upgrade would still reach the handlers. So every request that
//! carries an `Origin` must come from the coordinator's own origin (same `Host`) or from a
//! listed one, or it is refused with 403 before any route runs — the API, Socket.IO (polling and
//! websocket) and the dashboard alike. Requests without `Origin` come from non-browser clients
//! (curl, the CLI, python-socketio) and pass; they are what the API token is for.
//!
//! Without `SWARMQ_API_TOKEN` the coordinator listens on loopback, and then also refuses a `Host`
//! that is not a loopback name: a DNS-rebinding page (evil.example resolving to 127.0.0.1) is
//! "same-origin" to the browser but names a foreign host.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The origin policy of this coordinator.
#[derive(Clone, Debug)]
pub struct OriginPolicy {
    /// `None`: any origin (`*`); otherwise the listed origins, lowercase, besides our own.
    allowed: Option<Vec<String>>,
    /// Refuse `Host`s that are not loopback names (no token, loopback listener).
    loopback_host_only: bool,
}

impl OriginPolicy {
    /// Parses `SWARMQ_CORS_ORIGINS`: unset or empty = same-origin only, `*` = any, else a
    /// comma-separated list of `scheme://host[:port]`.
    pub fn parse(setting: Option<&str>, loopback_host_only: bool) -> Result<Self, String> {
        let items: Vec<&str> = setting
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let allowed = if items == ["*"] {
            None
        } else if items.contains(&"*") {
            return Err(
                "SWARMQ_CORS_ORIGINS: * (any origin) cannot be combined with other origins".into(),
            );
        } else {
            Some(items.iter().map(|o| origin(o)).collect::<Result<_, _>>()?)
        };
        Ok(Self {
            allowed,
            loopback_host_only,
        })
    }

    /// The CORS answer: nothing for cross-origin pages unless listed; `Authorization` and
    /// `Content-Type` allowed explicitly (a `*` allow-headers does not cover `Authorization`).
    pub fn cors(&self) -> CorsLayer {
        let layer = CorsLayer::new()
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(600));
        match &self.allowed {
            None => layer.allow_origin(AllowOrigin::any()),
            Some(list) => layer.allow_origin(
                list.iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok())
                    .collect::<Vec<_>>(),
            ),
        }
    }

    /// `Err(why)` when the request comes from a page that may not use this coordinator.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        if self.loopback_host_only
            && let Some(host) = &host
            && !is_loopback_host(host)
        {
            return Err(format!(
                "Host {host:?} is not a loopback name; without SWARMQ_API_TOKEN only local use is allowed"
            ));
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
        let same = host.as_deref().is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority == host)
        });
        let listed = self
            .allowed
            .as_ref()
            .is_none_or(|list| list.contains(&origin));
        if same || listed {
            Ok(())
        } else {
            Err(format!(
                "origin {origin:?} is not allowed: add it to SWARMQ_CORS_ORIGINS"
            ))
        }
    }
}

/// Validates and normalises one listed origin.
fn origin(item: &str) -> Result<String, String> {
    let lower = item.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    let valid = rest.is_some_and(|authority| {
        !authority.is_empty()
            && !authority.contains(['/', '?', '#', '@', ' '])
            && HeaderValue::from_str(&lower).is_ok()
    });
    if valid {
        Ok(lower)
    } else {
        Err(format!(
            "SWARMQ_CORS_ORIGINS: {item:?} is not an origin (scheme://host[:port], e.g. https://app.example.com)"
        ))
    }
}

fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The middleware: refuses requests [`OriginPolicy::check`] refuses, with 403.
pub async fn guard(
    State(policy): State<Arc<OriginPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    match policy.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(why) => {
            metrics::counter!("swarmq_http_origin_refused_total").increment(1);
            crate::client_log::client_error("origin refused", &why);
            (
                StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({ "error": why })),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h
    }

    #[test]
    fn same_origin_and_listed_origins_pass() {
        let p =
            OriginPolicy::parse(Some(" https://App.example.com ,http://b:8080"), false).unwrap();
        assert!(
            p.check(&headers("c:3000", None)).is_ok(),
            "no Origin: not a browser"
        );
        assert!(p.check(&headers("c:3000", Some("http://c:3000"))).is_ok());
        assert!(
            p.check(&headers("c:3000", Some("https://app.example.com")))
                .is_ok()
        );
        assert!(p.check(&headers("c:3000", Some("http://b:8080"))).is_ok());
        let refused = p.check(&headers("c:3000", Some("https://evil.example")));
        assert!(refused.unwrap_err().contains("evil.example"));
        assert!(p.check(&headers("c:3000", Some("null"))).is_err());
        let default = OriginPolicy::parse(None, false).unwrap();
        assert!(
            default
                .check(&headers("c:3000", Some("http://d:3000")))
                .is_err()
        );
        let any = OriginPolicy::parse(Some("*"), false).unwrap();
        assert!(any.check(&headers("c:3000", Some("http://d:3000"))).is_ok());
    }

    #[test]
    fn bad_settings_are_one_line_errors() {
        for bad in [
            "*,https://a.example",
            "a.example",
            "https://a.example/path",
            "ftp://x",
        ] {
            let e = OriginPolicy::parse(Some(bad), false).unwrap_err();
            assert!(
                e.starts_with("SWARMQ_CORS_ORIGINS") && !e.contains('\n'),
                "{e}"
            );
        }
    }

    #[test]
    fn without_a_token_foreign_hosts_are_refused() {
        let p = OriginPolicy::parse(None, true).unwrap();
        for ok in [
            "127.0.0.1:3000",
            "localhost:3000",
            "[::1]:3000",
            "localhost",
            "127.0.0.2",
        ] {
            assert!(p.check(&headers(ok, None)).is_ok(), "{ok}");
        }
        for bad in ["evil.example:3000", "10.0.0.1:3000", "evil.example"] {
            assert!(p.check(&headers(bad, None)).is_err(), "{bad}");
        }
    }
}
