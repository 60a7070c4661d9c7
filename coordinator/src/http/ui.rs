//! The web dashboard: `GET /`, `/sessions/:id` and `/cluster` answer the same page
//! (`coordinator/ui/index.html`, never cached) and the browser routes by path; its scripts and
//! style are embedded in the binary and served under `/ui/<content hash>/…`, cached for a year
//! (a new build has a new hash). The data comes from the API and Socket.IO like any client's,
//! with the same token: these routes carry no data, so they need none.
//!
//! Every response here carries a Content-Security-Policy that allows only this origin's
//! scripts (no inline script or style), frames only of http(s) pages (the agents' `streamUrl`)
//! and no plugins.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; frame-src http: https:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct Asset {
    path: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal => $mime:expr,)+) => {
        &[$(Asset {
            path: $path,
            mime: $mime,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $path)),
        },)+]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of `coordinator/ui/` but `index.html`.
const ASSETS: &[Asset] = assets! {
    "app.js" => JS,
    "api.js" => JS,
    "dom.js" => JS,
    "live.js" => JS,
    "sessions.js" => JS,
    "session.js" => JS,
    "cluster.js" => JS,
    "style.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "vendor/socket.io.esm.min.js" => JS,
};

const INDEX: &str = include_str!("../../ui/index.html");

struct Ui {
    hash: String,
    index: String,
}

static UI: LazyLock<Ui> = LazyLock::new(|| {
    let hash = content_hash();
    let index = INDEX.replace("{{ASSETS}}", &format!("/ui/{hash}"));
    Ui { hash, index }
});

/// FNV-1a over every asset's path and bytes: the same build always has the same hash, so
/// every coordinator behind a load balancer serves the same URLs.
fn content_hash() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for asset in ASSETS {
        for byte in asset
            .path
            .bytes()
            .chain([0])
            .chain(asset.body.iter().copied())
        {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/sessions", get(page))
        .route("/sessions/{id}", get(page))
        .route("/cluster", get(page))
        .route("/ui/{hash}/{*path}", get(asset))
}

fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The dashboard's page (every browser route serves it; the page routes by path).
pub(super) async fn page() -> Response {
    secured(
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            UI.index.as_str(),
        )
            .into_response(),
    )
}

/// An asset of this build. A page of another build (during a rolling upgrade) gets this build's
/// file, not cached, rather than a broken page.
async fn asset(Path((hash, path)): Path<(String, String)>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return secured((StatusCode::NOT_FOUND, "no such file").into_response());
    };
    let cache = if hash == UI.hash {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    secured(
        (
            [
                (header::CONTENT_TYPE, asset.mime),
                (header::CACHE_CONTROL, cache),
            ],
            asset.body,
        )
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_this_builds_assets() {
        assert!(UI.index.contains(&format!("/ui/{}/app.js", UI.hash)));
        assert!(!UI.index.contains("{{"));
        assert_eq!(UI.hash, content_hash());
    }
}
