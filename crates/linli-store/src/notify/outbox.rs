//! The durable outbox: e-mails and webhook deliveries are queued as rows in the same transaction
//! as the change they announce, and the delivery worker (`linli-delivery`, outside the store)
//! sends them after commit — so a delivery exists exactly when the change does, and survives a
//! crash or restart.
//!
//! The store owns the rows, not the network: the worker claims due rows with
//! [`Store::outbox_claim`] (on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so several instances
//! share the work; on SQLite the single writer serializes claims) which pushes their `next_at` a
//! lease ahead, sends outside any transaction through the row's channel, then records the
//! [`Outcome`] with [`Store::outbox_record`]: delivered, or rescheduled with exponential backoff
//! and jitter (10 s, 1 min, 5 min, 30 min, 2 h, 6 h, 12 h), dead after [`MAX_ATTEMPTS`]. A crash
//! between sending and recording means the row is sent again after the lease: at-least-once,
//! receivers dedupe by `X-Linli-Delivery`.

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use linli_core::i18n::Lang;
use linli_core::{AppError, AppResult};

use super::follows::{kind_matches, split_list};
use super::{Notice, render};
use crate::Store;
use crate::db::{Sql, db_err, i64_, opt_i64, opt_str, str_};

/// Retry delays after the 1st, 2nd, … failed attempt (seconds); the last one repeats.
pub const BACKOFF_S: [i64; 7] = [10, 60, 300, 1_800, 7_200, 21_600, 43_200];
/// After this many failed attempts a delivery is dead (kept in the log).
pub const MAX_ATTEMPTS: i64 = 8;
/// How long finished deliveries stay in the delivery log (30 days).
pub const KEEP_MS: i64 = 30 * 86_400_000;
/// How long a claimed row is reserved for the worker that claimed it.
pub const LEASE_MS: i64 = 120_000;
/// How long a row that was not attempted ([`Outcome::Later`]) waits.
const LATER_MS: i64 = 60_000;

/// What this instance queues besides webhooks (set at start from the configuration).
#[derive(Debug, Clone, Default)]
pub struct OutboxConfig {
    /// Queue e-mails (an SMTP server is configured for the delivery worker).
    pub email: bool,
    /// Site address for links in e-mails, e.g. `https://linli.example.org` (empty: relative).
    pub public_url: String,
}

/// One queued message and how its delivery went.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    /// webhook or email
    pub channel: String,
    pub webhook_id: Option<String>,
    pub kind: String,
    /// pending, delivered, dead, cancelled
    pub status: String,
    pub attempts: i64,
    pub next_at: i64,
    /// HTTP status of the last attempt (webhooks).
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

pub(crate) fn delivery_from_row(r: &AnyRow) -> Delivery {
    Delivery {
        id: str_(r, "id"),
        channel: str_(r, "channel"),
        webhook_id: opt_str(r, "webhook_id"),
        kind: str_(r, "kind"),
        status: str_(r, "status"),
        attempts: i64_(r, "attempts"),
        next_at: i64_(r, "next_at"),
        last_status: opt_i64(r, "last_status"),
        last_error: opt_str(r, "last_error"),
        created_at: i64_(r, "created_at"),
        delivered_at: opt_i64(r, "delivered_at"),
    }
}

/// The delay before the next attempt after `failed` failed attempts, with up to 10 % jitter so
/// deliveries that failed together do not retry together.
pub fn backoff_ms(failed: i64) -> i64 {
    let i = (failed.max(1) - 1).min(BACKOFF_S.len() as i64 - 1) as usize;
    let base = BACKOFF_S[i] * 1000;
    base + rand::random_range(0..=base / 10)
}

/// How one attempt went, as a channel of the delivery worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the receiver (webhooks: the HTTP status).
    Delivered(Option<i64>),
    /// Refused or unreachable (HTTP status if there was an answer, and the error): retried
    /// with backoff, dead after [`MAX_ATTEMPTS`].
    Failed(Option<i64>, String),
    /// Not attempted (webhook paused, no transport for the channel on this instance): look
    /// again later; the attempt is not counted.
    Later,
    /// The target is gone (webhook deleted).
    Cancelled,
}

/// A due row claimed by a worker: it is reserved for [`LEASE_MS`].
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    /// The transport: `webhook`, `email` (later `sms`, `wechat` …).
    pub channel: String,
    pub webhook_id: Option<String>,
    /// Channel-specific address (webhook URL at queue time, e-mail address).
    pub target: String,
    pub kind: String,
    /// JSON text, rendered when queued.
    pub payload: String,
    /// Failed attempts so far.
    pub attempts: i64,
}

impl Store {
    /// Set what this instance queues besides webhooks (e-mail when the delivery worker has an
    /// SMTP server) and the public URL for links in e-mails.
    pub fn configure_outbox(&self, cfg: OutboxConfig) {
        *self.outbox_cfg.write().unwrap_or_else(|e| e.into_inner()) = cfg;
    }

    fn outbox_config(&self) -> OutboxConfig {
        self.outbox_cfg
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Queue one delivery inside the caller's transaction; returns its id.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn enqueue_delivery(
        &self,
        tx: &mut Transaction<'static, Any>,
        channel: &str,
        webhook_id: Option<&str>,
        user_id: Option<&str>,
        target: &str,
        kind: &str,
        payload: &Value,
    ) -> AppResult<String> {
        let id = linli_core::new_id();
        let now = self.now_ms();
        sqlx::query(
            "INSERT INTO outbox (id, channel, webhook_id, user_id, target, kind, payload, status, attempts, next_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8)",
        )
        .bind(id.clone())
        .bind(channel.to_string())
        .bind(webhook_id.map(str::to_string))
        .bind(user_id.map(str::to_string))
        .bind(target.to_string())
        .bind(kind.to_string())
        .bind(payload.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
        Ok(id)
    }

    /// Queue an e-mail for each recipient who enabled e-mail and did not mute the kind (only
    /// when SMTP is configured on this instance).
    pub(crate) async fn enqueue_emails(
        &self,
        tx: &mut Transaction<'static, Any>,
        recipients: &[String],
        n: &Notice<'_>,
    ) -> AppResult<usize> {
        if recipients.is_empty() {
            return Ok(0);
        }
        let cfg = self.outbox_config();
        if !cfg.email {
            return Ok(0);
        }
        let mut rows = Vec::new();
        // Bounded statements: a notice to thousands of followers stays under the parameter limits.
        for chunk in recipients.chunks(500) {
            let mut q = Sql::new(
                "SELECT user_id, email, muted FROM user_channels WHERE email_enabled = 1 AND email IS NOT NULL AND user_id IN (",
            );
            for (i, r) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.bind(r);
            }
            q.push(")");
            rows.extend(q.query().fetch_all(&mut **tx).await.map_err(db_err)?);
        }
        let mut count = 0;
        for r in &rows {
            if split_list(&str_(r, "muted"))
                .iter()
                .any(|m| kind_matches(m, n.kind))
            {
                continue;
            }
            let zh = render(Lang::ZhCn, n.key, &n.args);
            let en = render(Lang::En, n.key, &n.args);
            let link = n
                .link
                .map(|l| format!("\n\n{}{}", cfg.public_url.trim_end_matches('/'), l))
                .unwrap_or_default();
            let payload = json!({
                "subject": render(Lang::ZhCn, "notify-email-subject", &json!({ "text": zh })),
                "body": format!("{zh}{link}\n\n--\n{en}\n\n{}", render(Lang::ZhCn, "notify-email-footer", &Value::Null)),
            });
            self.enqueue_delivery(
                tx,
                "email",
                None,
                Some(&str_(r, "user_id")),
                &str_(r, "email"),
                n.kind,
                &payload,
            )
            .await?;
            count += 1;
        }
        Ok(count)
    }

    /// One delivery by id.
    pub async fn delivery(&self, id: &str) -> AppResult<Delivery> {
        sqlx::query(
            "SELECT id, channel, webhook_id, kind, status, attempts, next_at, last_status, last_error, created_at, delivered_at
             FROM outbox WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.db.write)
        .await
        .map_err(db_err)?
        .map(|r| delivery_from_row(&r))
        .ok_or(AppError::not_found("notify.delivery.not_found"))
    }

    /// Claim up to `limit` due rows for delivery: each is reserved for [`LEASE_MS`] (its
    /// `next_at` moves ahead), so no other worker takes it meanwhile. Safe to run from several
    /// instances at once: on PostgreSQL the rows are read `FOR UPDATE SKIP LOCKED`.
    pub async fn outbox_claim(&self, limit: i64) -> AppResult<Vec<Claimed>> {
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let sql = format!(
            "SELECT id, channel, webhook_id, target, kind, payload, attempts FROM outbox
             WHERE status = 'pending' AND next_at <= $1 ORDER BY next_at LIMIT $2{}",
            self.backend().skip_locked()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        let claimed: Vec<Claimed> = rows
            .iter()
            .map(|r| Claimed {
                id: str_(r, "id"),
                channel: str_(r, "channel"),
                webhook_id: opt_str(r, "webhook_id"),
                target: str_(r, "target"),
                kind: str_(r, "kind"),
                payload: str_(r, "payload"),
                attempts: i64_(r, "attempts"),
            })
            .collect();
        for c in &claimed {
            sqlx::query("UPDATE outbox SET next_at = $1 WHERE id = $2")
                .bind(now + LEASE_MS)
                .bind(c.id.clone())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(claimed)
    }

    /// Forget finished deliveries (delivered, dead, cancelled) created more than `keep_ms` ago;
    /// returns how many. Pending ones are never removed.
    pub async fn outbox_purge(&self, keep_ms: i64) -> AppResult<u64> {
        let r = sqlx::query(
            "DELETE FROM outbox WHERE status IN ('delivered', 'dead', 'cancelled') AND created_at < $1",
        )
        .bind(self.now_ms() - keep_ms)
        .execute(&self.db.write)
        .await
        .map_err(db_err)?;
        Ok(r.rows_affected())
    }

    /// Record how the attempt on a claimed row went: delivered, retried after
    /// [`backoff_ms`], dead after [`MAX_ATTEMPTS`], not attempted (again in a minute) or
    /// cancelled.
    pub async fn outbox_record(&self, c: &Claimed, outcome: Outcome) -> AppResult<()> {
        let now = self.now_ms();
        let attempts = c.attempts + 1;
        let q = match outcome {
            Outcome::Delivered(status) => sqlx::query(
                "UPDATE outbox SET status = 'delivered', attempts = $1, last_status = $2, last_error = NULL, delivered_at = $3, next_at = $3 WHERE id = $4",
            )
            .bind(attempts)
            .bind(status)
            .bind(now)
            .bind(c.id.clone()),
            Outcome::Failed(status, error) => {
                let (state, next) = if attempts >= MAX_ATTEMPTS {
                    ("dead", now)
                } else {
                    ("pending", now + backoff_ms(attempts))
                };
                tracing::info!(delivery = %c.id, attempts, status = ?status, error = %error, state, "outbox delivery failed");
                let error: String = error.chars().take(500).collect();
                sqlx::query(
                    "UPDATE outbox SET status = $1, attempts = $2, last_status = $3, last_error = $4, next_at = $5 WHERE id = $6",
                )
                .bind(state)
                .bind(attempts)
                .bind(status)
                .bind(error)
                .bind(next)
                .bind(c.id.clone())
            }
            Outcome::Later => sqlx::query("UPDATE outbox SET next_at = $1 WHERE id = $2")
                .bind(now + LATER_MS)
                .bind(c.id.clone()),
            Outcome::Cancelled => {
                sqlx::query("UPDATE outbox SET status = 'cancelled' WHERE id = $1").bind(c.id.clone())
            }
        };
        q.execute(&self.db.write).await.map_err(db_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for (failed, base) in [
            (1, 10_000),
            (2, 60_000),
            (3, 300_000),
            (7, 43_200_000),
            (20, 43_200_000),
        ] {
            let d = backoff_ms(failed);
            assert!(d >= base && d <= base + base / 10, "{failed}: {d}");
        }
    }
}
