//! The limit on session creation (`SWARMQ_CREATE_RATE_PER_MIN`): per client — the API token
//! when one is set (every holder of the one admin token counts together), else the client
//! address (an IPv6 /64, see `client_addr`) — counted in Redis, so N coordinators behind a load
//! balancer enforce one limit, not N.

use std::net::IpAddr;

use swarmq_shared::Store;

use crate::client_addr;
use crate::error::ApiError;

#[derive(Clone)]
pub struct RateLimiter {
    per_minute: u32,
    by_token: bool,
}

impl RateLimiter {
    /// `per_minute` 0 is off; `by_token`: an API token is required, so it names the client.
    pub fn new(per_minute: u32, by_token: bool) -> Self {
        Self {
            per_minute,
            by_token,
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// `Ok` when the client at `ip` may create a session now, else a 429 naming the limit.
    pub async fn check(&self, store: &Store, ip: IpAddr) -> Result<(), ApiError> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let (client, by) = if self.by_token {
            ("token".to_owned(), "API token")
        } else {
            (client_addr::limit_key(ip).to_string(), "client address")
        };
        match store.take_creation(&client, self.per_minute).await? {
            None => Ok(()),
            Some(wait) => Err(ApiError::TooManyRequests {
                retry_after_secs: wait.as_secs().max(1),
                limit: self.per_minute,
                by,
            }),
        }
    }
}
