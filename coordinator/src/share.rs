//! Who a request is: the admin (the one `SWARMQ_API_TOKEN`) or the holder of a share token —
//! a read-only token for one session that allows exactly `GET /api/sessions/<id>` and joining
//! that session's Socket.IO room (whose replay from `since: 0` is its whole recorded history),
//! nothing else.
//!
//! A share token is `swq1.<sessionId>.<expiresAt>.<signature>`: the session, the expiry (Unix
//! seconds) and an HMAC-SHA256 of both under the share key, so any coordinator checks it with
//! no Redis lookup. The key is `SWARMQ_SHARE_KEY`, else derived from `SWARMQ_API_TOKEN`;
//! `SWARMQ_SHARE_KEY_PREVIOUS` is also accepted (never used to mint) while a new key rolls out.
//! A token cannot be revoked alone: rotating the key revokes every token it signed.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use swarmq_shared::SessionId;

use crate::token::Token;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "swq1";
/// What a share token allows, for its refusals.
pub const SCOPE: &str =
    "a share token allows only GET /api/sessions/<its session> and joining that session's room";
/// Default and longest lifetime of a share token.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
pub const MAX_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// What a presented credential grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Admin,
    /// Read one session (its snapshot and its room).
    Share(SessionId),
}

/// The admin token and the share keys: checks credentials and mints share tokens.
pub struct Auth {
    admin: Option<Token>,
    current: Option<Vec<u8>>,
    previous: Option<Vec<u8>>,
}

impl Auth {
    pub fn new(admin: Option<Token>, share_key: Option<&str>, previous: Option<&str>) -> Self {
        let derived = admin.as_ref().map(|t| derive_key(t.secret()));
        let key = |k: Option<&str>| k.filter(|k| !k.is_empty()).map(|k| k.as_bytes().to_vec());
        Self {
            current: key(share_key).or(derived),
            previous: key(previous),
            admin,
        }
    }

    /// True when requests must present a credential (`SWARMQ_API_TOKEN` is set).
    pub fn required(&self) -> bool {
        self.admin.is_some()
    }

    /// What `presented` grants; an error to answer when it grants nothing.
    pub fn check(&self, presented: Option<&str>, now_secs: u64) -> Result<Access, &'static str> {
        let Some(admin) = &self.admin else {
            return Ok(Access::Admin);
        };
        match presented {
            None => Err("missing token"),
            Some(p) if admin.matches(p) => Ok(Access::Admin),
            Some(p) if p.starts_with(PREFIX) => self.verify(p, now_secs).map(Access::Share),
            Some(_) => Err("invalid token"),
        }
    }

    /// A share token for `session` valid `ttl`; `None` without a share key.
    pub fn mint(&self, session: SessionId, ttl: Duration, now_secs: u64) -> Option<(String, u64)> {
        let key = self.current.as_ref()?;
        let expires = now_secs + ttl.as_secs();
        let claims = format!("{PREFIX}.{session}.{expires}");
        let signature = URL_SAFE_NO_PAD.encode(sign(key, &claims).finalize().into_bytes());
        Some((format!("{claims}.{signature}"), expires))
    }

    fn verify(&self, token: &str, now_secs: u64) -> Result<SessionId, &'static str> {
        let (claims, signature) = token.rsplit_once('.').ok_or("malformed share token")?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| "malformed share token")?;
        let genuine = [&self.current, &self.previous]
            .into_iter()
            .flatten()
            .any(|key| sign(key, claims).verify_slice(&signature).is_ok());
        if !genuine {
            return Err("invalid share token: altered, or signed with a share key since rotated");
        }
        let mut parts = claims.split('.').skip(1);
        let session = parts.next().and_then(|s| SessionId::parse(s).ok());
        let expires = parts.next().and_then(|e| e.parse::<u64>().ok());
        match (session, expires) {
            (Some(_), Some(expires)) if expires <= now_secs => Err("share token expired"),
            (Some(session), Some(_)) => Ok(session),
            _ => Err("malformed share token"),
        }
    }
}

fn derive_key(api_token: &str) -> Vec<u8> {
    sign(api_token.as_bytes(), "swarmq share-token key v1")
        .finalize()
        .into_bytes()
        .to_vec()
}

fn sign(key: &[u8], claims: &str) -> HmacSha256 {
    // HMAC takes a key of any length.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(claims.as_bytes());
    mac
}

pub fn now_secs() -> u64 {
    swarmq_shared::now_ms() / 1000
}

/// Middleware on `/api/*` when a token is required: the admin token passes everywhere, a share
/// token only on `GET /api/sessions/<its session>` (`403` elsewhere),
/// anything else is `401`.
pub async fn authorize(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let presented = swarmq_shared::token::presented(&request);
    let refusal = match auth.check(presented, now_secs()) {
        Ok(Access::Admin) => return next.run(request).await,
        Ok(Access::Share(session)) => {
            let own = format!("/api/sessions/{session}");
            if request.method() == Method::GET && request.uri().path() == own {
                return next.run(request).await;
            }
            return (
                StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({ "error": SCOPE })),
            )
                .into_response();
        }
        Err("missing token") => "missing bearer token: send Authorization: Bearer <token>",
        Err("invalid token") => "invalid bearer token",
        Err(why) => why,
    };
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({ "error": refusal })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(key: Option<&str>, previous: Option<&str>) -> Auth {
        Auth::new(Some(Token::new("admin")), key, previous)
    }

    #[test]
    fn a_share_token_grants_its_session_until_it_expires() {
        let a = auth(None, None);
        let id = SessionId::new();
        let (token, expires) = a.mint(id, Duration::from_secs(60), 1_000).unwrap();
        assert_eq!(expires, 1_060);
        assert_eq!(a.check(Some(&token), 1_059), Ok(Access::Share(id)));
        assert_eq!(a.check(Some(&token), 1_060), Err("share token expired"));
        assert_eq!(a.check(Some("admin"), 0), Ok(Access::Admin));
        assert_eq!(a.check(None, 0), Err("missing token"));
        // Another session, a later expiry or a cut signature: refused.
        let other = token.replace(&id.to_string(), &SessionId::new().to_string());
        let later = token.replace(".1060.", ".9999.");
        for forged in [
            other,
            later,
            token[..token.len() - 2].to_owned(),
            "swq1".into(),
        ] {
            assert!(a.check(Some(&forged), 1_000).is_err(), "{forged}");
        }
    }

    #[test]
    fn rotating_the_key_revokes_and_previous_keeps_tokens_during_a_rollout() {
        let id = SessionId::new();
        let (old, _) = auth(Some("k1"), None).mint(id, DEFAULT_TTL, 0).unwrap();
        assert!(auth(Some("k2"), None).check(Some(&old), 1).is_err());
        assert_eq!(
            auth(Some("k2"), Some("k1")).check(Some(&old), 1),
            Ok(Access::Share(id))
        );
        // Derived from the API token when no share key is set: a new API token revokes.
        let (derived, _) = auth(None, None).mint(id, DEFAULT_TTL, 0).unwrap();
        let rotated = Auth::new(Some(Token::new("admin-2")), None, None);
        assert!(rotated.check(Some(&derived), 1).is_err());
    }

    #[test]
    fn without_an_api_token_everything_is_admin_and_nothing_is_minted_without_a_key() {
        let open = Auth::new(None, None, None);
        assert!(!open.required());
        assert_eq!(open.check(None, 0), Ok(Access::Admin));
        assert!(open.mint(SessionId::new(), DEFAULT_TTL, 0).is_none());
    }
}
