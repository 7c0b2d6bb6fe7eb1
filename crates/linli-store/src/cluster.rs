//! State that every instance must share, kept in the database rather than in one process:
//! leases of background jobs (a job runs on one instance at a time), login throttling (an
//! attacker gets the same five tries against three instances as against one) and one-time
//! form tokens (a form posted to A, B and C creates one record).
//!
//! Each is a few statements on a small table: logins and form posts are rare next to reads,
//! and a job renews its lease once per round.

use linli_core::AppResult;
use linli_core::crypto::sha256_hex;
use sqlx::Row;

use crate::Store;
use crate::db::{Stmt, Stmt::*, db_err};

/// Platform migration 3: the shared tables.
pub const SHARED_STATE: &[Stmt] = &[
    Both(
        "CREATE TABLE job_leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            until_ms BIGINT NOT NULL)",
    ),
    // Keys are SHA-256 of the typed login or client address: a password typed into the login
    // field is never stored.
    Both(
        "CREATE TABLE login_throttle (
            key_hash TEXT PRIMARY KEY,
            failures BIGINT NOT NULL,
            first_at BIGINT NOT NULL,
            locked_until BIGINT NOT NULL)",
    ),
    Both(
        "CREATE TABLE form_tokens (
            token_hash TEXT PRIMARY KEY,
            at BIGINT NOT NULL,
            location TEXT)",
    ),
    Both("CREATE INDEX form_tokens_at ON form_tokens (at)"),
    // Instances consuming from an external MQTT broker, by their stable name, and when each
    // was last alive: a live instance takes over the broker session of one that stopped.
    Both(
        "CREATE TABLE instances (
            id TEXT PRIMARY KEY,
            heartbeat_ms BIGINT NOT NULL)",
    ),
];

/// How many failures lock a key, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Failures allowed inside `window_ms` before locking.
    pub free_failures: i64,
    pub window_ms: i64,
    /// First lock; doubles with every further failure.
    pub base_lock_ms: i64,
    pub max_lock_ms: i64,
}

/// What a one-time form token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormClaim {
    /// First post of this form: go ahead.
    Fresh,
    /// Posted before (here or on another instance): where its result is, once known.
    Repeat(Option<String>),
}

/// One-time form tokens are kept this long.
const FORM_TOKEN_TTL_MS: i64 = 24 * 3600 * 1000;

impl Store {
    /// Claim (or renew) the lease of job `name` for `ttl_ms`: true when this instance holds
    /// it now. A lease held by another live instance is left alone; an expired one is taken
    /// over, so a job moves to another instance when its holder dies.
    pub async fn claim_lease(&self, name: &str, ttl_ms: i64) -> AppResult<bool> {
        let me = self.bus.instance().to_string();
        let now = self.now_ms();
        let renewed = sqlx::query(
            "UPDATE job_leases SET holder = $1, until_ms = $2 WHERE name = $3 AND (holder = $1 OR until_ms <= $4)",
        )
        .bind(me.clone())
        .bind(now + ttl_ms)
        .bind(name.to_string())
        .bind(now)
        .execute(&self.db.write)
        .await
        .map_err(db_err)?
        .rows_affected();
        if renewed == 1 {
            return Ok(true);
        }
        let inserted = sqlx::query(
            "INSERT INTO job_leases (name, holder, until_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.to_string())
        .bind(me)
        .bind(now + ttl_ms)
        .execute(&self.db.write)
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Give a lease back (shutting down), so another instance takes the job at once.
    pub async fn release_lease(&self, name: &str) -> AppResult<()> {
        sqlx::query("DELETE FROM job_leases WHERE name = $1 AND holder = $2")
            .bind(name.to_string())
            .bind(self.bus.instance().to_string())
            .execute(&self.db.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// This instance (by its stable name) is alive now.
    pub async fn heartbeat(&self, instance: &str) -> AppResult<()> {
        sqlx::query(
            "INSERT INTO instances (id, heartbeat_ms) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms",
        )
        .bind(instance.to_string())
        .bind(self.now_ms())
        .execute(&self.db.write)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Instances other than `me` not heard from for `silent_ms`.
    pub async fn silent_instances(&self, me: &str, silent_ms: i64) -> AppResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id FROM instances WHERE id <> $1 AND heartbeat_ms < $2 ORDER BY id",
        )
        .bind(me.to_string())
        .bind(self.now_ms() - silent_ms)
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// Whether `instance` was heard from within `silent_ms`.
    pub async fn instance_alive(&self, instance: &str, silent_ms: i64) -> AppResult<bool> {
        let row = sqlx::query("SELECT heartbeat_ms FROM instances WHERE id = $1")
            .bind(instance.to_string())
            .fetch_optional(&self.db.read)
            .await
            .map_err(db_err)?;
        Ok(row.is_some_and(|r| r.get::<i64, _>(0) >= self.now_ms() - silent_ms))
    }

    /// `Err(seconds)` while `key` is locked (nothing counted then). Otherwise the attempt is
    /// counted at once as a failure — until [`Store::throttle_refund`] or
    /// [`Store::throttle_success`] takes it back — in the same transaction as the check, under
    /// the row's lock: attempts arriving together on several instances cannot all pass; at most
    /// `free_failures` get through.
    pub async fn throttle_attempt(
        &self,
        policy: &ThrottlePolicy,
        key: &str,
    ) -> AppResult<Result<(), u64>> {
        let hash = sha256_hex(key.as_bytes());
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO login_throttle (key_hash, failures, first_at, locked_until) VALUES ($1, 0, $2, 0) ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(hash.clone())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let sql = format!(
            "SELECT failures, first_at, locked_until FROM login_throttle WHERE key_hash = $1{}",
            self.backend().for_update()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash.clone())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        let (mut failures, mut first, mut locked): (i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2));
        if locked > now {
            tx.rollback().await.map_err(db_err)?;
            return Ok(Err((((locked - now) + 999) / 1000).max(1) as u64));
        }
        if now - first > policy.window_ms {
            (failures, first, locked) = (0, now, 0);
        }
        failures += 1;
        if failures >= policy.free_failures {
            let extra = (failures - policy.free_failures).min(16);
            locked = now + (policy.base_lock_ms << extra).min(policy.max_lock_ms);
        }
        sqlx::query(
            "UPDATE login_throttle SET failures = $1, first_at = $2, locked_until = $3 WHERE key_hash = $4",
        )
        .bind(failures)
        .bind(first)
        .bind(locked)
        .bind(hash)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Ok(()))
    }

    /// The attempt counted by [`Store::throttle_attempt`] did not fail (a right password, or
    /// refused for another reason before a password was tried): take it back. A lock that only
    /// this attempt's count had set is lifted.
    pub async fn throttle_refund(&self, policy: &ThrottlePolicy, key: &str) -> AppResult<()> {
        sqlx::query(
            "UPDATE login_throttle SET failures = failures - 1,
                locked_until = CASE WHEN failures - 1 < $1 THEN 0 ELSE locked_until END
             WHERE key_hash = $2 AND failures > 0",
        )
        .bind(policy.free_failures)
        .bind(sha256_hex(key.as_bytes()))
        .execute(&self.db.write)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// The account signed in: forget its failures.
    pub async fn throttle_success(&self, key: &str) -> AppResult<()> {
        sqlx::query("DELETE FROM login_throttle WHERE key_hash = $1")
            .bind(sha256_hex(key.as_bytes()))
            .execute(&self.db.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Claim a one-time form token: the first post of a form goes ahead; any later post of
    /// it, to this or another instance, is a repeat.
    pub async fn form_claim(&self, token: &str) -> AppResult<FormClaim> {
        if token.is_empty() {
            return Ok(FormClaim::Fresh);
        }
        let hash = sha256_hex(token.as_bytes());
        let inserted = sqlx::query(
            "INSERT INTO form_tokens (token_hash, at, location) VALUES ($1, $2, NULL) ON CONFLICT (token_hash) DO NOTHING",
        )
        .bind(hash.clone())
        .bind(self.now_ms())
        .execute(&self.db.write)
        .await
        .map_err(db_err)?
        .rows_affected();
        if inserted == 1 {
            return Ok(FormClaim::Fresh);
        }
        let location: Option<String> =
            sqlx::query("SELECT location FROM form_tokens WHERE token_hash = $1")
                .bind(hash)
                .fetch_optional(&self.db.write)
                .await
                .map_err(db_err)?
                .and_then(|r| r.get(0));
        Ok(FormClaim::Repeat(location))
    }

    /// The form's work is done: repeats are sent to `location`.
    pub async fn form_finish(&self, token: &str, location: &str) -> AppResult<()> {
        sqlx::query("UPDATE form_tokens SET location = $1 WHERE token_hash = $2")
            .bind(location.to_string())
            .bind(sha256_hex(token.as_bytes()))
            .execute(&self.db.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// The form's work failed (nothing was written): the same token may be posted again.
    pub async fn form_release(&self, token: &str) -> AppResult<()> {
        sqlx::query("DELETE FROM form_tokens WHERE token_hash = $1")
            .bind(sha256_hex(token.as_bytes()))
            .execute(&self.db.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Housekeeping: forget form tokens older than a day and throttling entries whose window
    /// and lock are over. Returns the rows removed.
    pub async fn purge_shared_state(&self, window_ms: i64) -> AppResult<u64> {
        let now = self.now_ms();
        let forms = sqlx::query("DELETE FROM form_tokens WHERE at < $1")
            .bind(now - FORM_TOKEN_TTL_MS)
            .execute(&self.db.write)
            .await
            .map_err(db_err)?
            .rows_affected();
        let throttle =
            sqlx::query("DELETE FROM login_throttle WHERE first_at < $1 AND locked_until < $2")
                .bind(now - window_ms)
                .bind(now)
                .execute(&self.db.write)
                .await
                .map_err(db_err)?
                .rows_affected();
        Ok(forms + throttle)
    }
}
