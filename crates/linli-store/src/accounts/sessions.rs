//! Browser sessions: an opaque random cookie value, stored only as its SHA-256, with a CSRF
//! token bound to the session. A new session (new id) is created at every login.

use linli_core::AppResult;
use linli_core::auth::Principal;
use linli_core::crypto::{random_token, sha256_hex};

use crate::Store;
use crate::db::{Sql, db_err};

/// Sessions last 7 days.
pub const SESSION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

pub struct NewSession {
    pub token: String,
    pub csrf: String,
}

impl Store {
    pub async fn create_session(&self, user_id: &str) -> AppResult<NewSession> {
        let token = random_token(32);
        let csrf = random_token(24);
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        // Housekeeping: expired sessions go.
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("INSERT INTO sessions (token_hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(sha256_hex(token.as_bytes()))
            .bind(user_id.to_string())
            .bind(csrf.clone())
            .bind(now)
            .bind(now + SESSION_TTL_MS)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(NewSession { token, csrf })
    }

    /// The principal and CSRF token of a live session.
    pub async fn session(&self, token: &str) -> AppResult<Option<(Principal, String)>> {
        let q = Sql::new(
            "SELECT user_id, csrf FROM sessions WHERE token_hash = $1 AND expires_at > $2",
        )
        .arg(sha256_hex(token.as_bytes()))
        .arg(self.now_ms());
        let Some(mut row) = self.db.fetch_optional_fast(&q).await? else {
            return Ok(None);
        };
        let csrf = row.take_str("csrf").unwrap_or_default();
        Ok(self
            .principal(&row.str("user_id"))
            .await?
            .map(|p| (p, csrf)))
    }

    /// Sign out: the session ends here, and every instance forgets what it cached about the
    /// account at once (bus event `account.revoked`), so the cookie stops working everywhere.
    pub async fn delete_session(&self, token: &str) -> AppResult<()> {
        let user: Option<String> =
            sqlx::query("DELETE FROM sessions WHERE token_hash = $1 RETURNING user_id")
                .bind(sha256_hex(token.as_bytes()))
                .fetch_optional(&self.db.write)
                .await
                .map_err(db_err)?
                .map(|r| sqlx::Row::get(&r, 0));
        if let Some(user) = user {
            self.publish_account_revoked(&user);
        }
        Ok(())
    }
}
