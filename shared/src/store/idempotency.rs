//! `Idempotency-Key` records: which request a key was first sent with and, once known, the
//! answer it got. One JSON string per key, claimed with `SET NX GET` (atomic: of two
//! concurrent first uses exactly one claims it, the other reads the claim) and expiring a fixed
//! time after the first use.

use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::{Result, Store, StoreError};
use crate::ids::SessionId;

/// A key's record. `request` identifies the request (route and canonical body); `session` is
/// the session a creation is for (chosen before any work, so every retry names the same one);
/// `answer` is the response once the first request has one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdempotencyRecord {
    pub request: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<StoredAnswer>,
}

/// A response, replayed as it was: status and JSON body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: serde_json::Value,
}

/// What claiming a key found.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// The key was free: this request is the first and does the work.
    First,
    /// The key was used before (or is being used now): its record.
    Used(IdempotencyRecord),
}

impl Store {
    /// Claims `key` for `record` unless it is already used; the record expires after `ttl`.
    pub async fn claim_idempotency_key(
        &self,
        key: &str,
        record: &IdempotencyRecord,
        ttl: Duration,
    ) -> Result<Claim> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let previous: Option<String> = redis::cmd("SET")
            .arg(self.keys.idempotency(key))
            .arg(json)
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut self.conn())
            .await?;
        match previous {
            None => Ok(Claim::First),
            Some(text) => decode(&text).map(Claim::Used),
        }
    }

    /// The record of `key`, if it is in use.
    pub async fn idempotency_record(&self, key: &str) -> Result<Option<IdempotencyRecord>> {
        let text: Option<String> = self.conn().get(self.keys.idempotency(key)).await?;
        text.as_deref().map(decode).transpose()
    }

    /// Stores the answer of `key`'s request, keeping the key's expiry (nothing if it expired).
    pub async fn answer_idempotency_key(
        &self,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<()> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let _: Option<String> = redis::cmd("SET")
            .arg(self.keys.idempotency(key))
            .arg(json)
            .arg("XX")
            .arg("KEEPTTL")
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Forgets `key` (its first request failed before doing anything: a retry starts afresh).
    pub async fn release_idempotency_key(&self, key: &str) -> Result<()> {
        let _: i64 = self.conn().del(self.keys.idempotency(key)).await?;
        Ok(())
    }
}

fn decode(text: &str) -> Result<IdempotencyRecord> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("idempotency record: {e}")))
}
