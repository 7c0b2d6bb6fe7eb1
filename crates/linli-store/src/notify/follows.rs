//! Follows (关注) and a user's delivery channels (e-mail address, on/off, muted kinds).
//!
//! Who may follow what: a user may follow an entity they were told about (a notice about it in
//! their inbox), a report they may see (the reports' own visibility: unit staff see what reaches
//! their unit, residents their own and public ones), or an entity whose place lies inside their
//! grant for the capability that reads it ([`FOLLOWABLE`]). Modules call [`Store::follow_in`]
//! from their own transaction to subscribe someone (a resident following the report they filed).

use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};

use linli_core::auth::{Action, Principal};
use linli_core::{AppError, AppResult};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{db_err, i64_, opt_str, str_};

/// Entities that can be followed by anyone whose grant for the capability that reads them covers
/// their place: entity name, table (with `id` and `path` columns), and that capability. A module
/// adds its line here when the grant's area is the whole of its reading rule (reports are not:
/// see `may_follow`).
pub const FOLLOWABLE: &[(&str, &str, Action)] = &[
    ("place", "places", Action::PlaceRead),
    ("household", "households", Action::HouseholdRead),
];

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Follow {
    pub entity: String,
    pub entity_id: String,
    pub created_at: i64,
}

/// How a user wants to be told besides the inbox.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Channels {
    /// E-mail address for notices (empty: none).
    #[serde(default)]
    pub email: Option<String>,
    /// Send notices by e-mail too.
    #[serde(default)]
    pub email_enabled: bool,
    /// Kinds (`report.dispatched`) or kind prefixes (`report.*`) never sent by e-mail.
    #[serde(default)]
    pub muted: Vec<String>,
}

/// Whether a dotted kind matches a pattern list entry: exact, `*`, or `prefix.*`.
pub fn kind_matches(pattern: &str, kind: &str) -> bool {
    let p = pattern.trim();
    if p == "*" || p == kind {
        return true;
    }
    match p.strip_suffix(".*") {
        Some(prefix) => kind.starts_with(prefix) && kind[prefix.len()..].starts_with('.'),
        None => false,
    }
}

/// Validate an e-mail address: the rules of lettre's `Address` (which the SMTP channel of the
/// delivery worker parses it with), without lettre in the store: a local part and a domain
/// (ASCII, or internationalized and convertible to ASCII, or an address literal).
pub fn valid_email(s: &str) -> bool {
    use email_address::EmailAddress;
    fn domain_ok(d: &str) -> bool {
        let ip = d
            .strip_prefix('[')
            .and_then(|ip| ip.strip_suffix(']'))
            .unwrap_or(d);
        EmailAddress::is_valid_domain(d) || ip.parse::<std::net::IpAddr>().is_ok()
    }
    let Some((user, domain)) = s.rsplit_once('@') else {
        return false;
    };
    s.len() <= 254
        && EmailAddress::is_valid_local_part(user)
        && (domain_ok(domain) || idna::domain_to_ascii(domain).is_ok_and(|d| domain_ok(&d)))
}

impl Store {
    /// Follow an entity the caller may see (see the module docs). Idempotent.
    pub async fn follow(&self, p: &Principal, entity: &str, entity_id: &str) -> AppResult<Follow> {
        if !self.may_follow(p, entity, entity_id).await? {
            return Err(AppError::not_found("notify.follow.not_found"));
        }
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let created = self
            .follow_in(&mut tx, &p.user_id(), entity, entity_id)
            .await?;
        if created {
            self.audit(
                &mut tx,
                &Actor::from(p),
                Entry {
                    action: "notify.follow",
                    entity,
                    entity_id,
                    path: None,
                    purpose: None,
                    before: None,
                    after: Some(serde_json::json!({ "user_id": p.user_id() })),
                },
            )
            .await?;
        }
        tx.commit().await.map_err(db_err)?;
        let r = sqlx::query(
            "SELECT entity, entity_id, created_at FROM follows WHERE user_id = $1 AND entity = $2 AND entity_id = $3",
        )
        .bind(p.user_id().to_string())
        .bind(entity.to_string())
        .bind(entity_id.to_string())
        .fetch_one(&self.db.write)
        .await
        .map_err(db_err)?;
        Ok(Follow {
            entity: str_(&r, "entity"),
            entity_id: str_(&r, "entity_id"),
            created_at: i64_(&r, "created_at"),
        })
    }

    /// Make `user_id` follow an entity inside the caller's transaction (modules use it, e.g.
    /// the reporter follows their report). Returns false when already following.
    pub async fn follow_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        user_id: &str,
        entity: &str,
        entity_id: &str,
    ) -> AppResult<bool> {
        if entity.is_empty() || entity.len() > 64 || entity_id.is_empty() || entity_id.len() > 64 {
            return Err(AppError::bad_request("notify.follow.invalid"));
        }
        let r = sqlx::query(
            "INSERT INTO follows (user_id, entity, entity_id, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, entity, entity_id) DO NOTHING",
        )
        .bind(user_id.to_string())
        .bind(entity.to_string())
        .bind(entity_id.to_string())
        .bind(self.now_ms())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
        Ok(r.rows_affected() > 0)
    }

    /// Stop following; not following is not found.
    pub async fn unfollow(&self, p: &Principal, entity: &str, entity_id: &str) -> AppResult<()> {
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let r = sqlx::query(
            "DELETE FROM follows WHERE user_id = $1 AND entity = $2 AND entity_id = $3",
        )
        .bind(p.user_id().to_string())
        .bind(entity.to_string())
        .bind(entity_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if r.rows_affected() == 0 {
            return Err(AppError::not_found("notify.follow.not_found"));
        }
        self.audit(
            &mut tx,
            &Actor::from(p),
            Entry {
                action: "notify.unfollow",
                entity,
                entity_id,
                path: None,
                purpose: None,
                before: Some(serde_json::json!({ "user_id": p.user_id() })),
                after: None,
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    /// What a user follows, newest first.
    pub async fn follows(&self, p: &Principal) -> AppResult<Vec<Follow>> {
        let user_id = p.user_id();
        let rows = sqlx::query(
            "SELECT entity, entity_id, created_at FROM follows WHERE user_id = $1 ORDER BY created_at DESC LIMIT 500",
        )
        .bind(user_id.to_string())
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| Follow {
                entity: str_(r, "entity"),
                entity_id: str_(r, "entity_id"),
                created_at: i64_(r, "created_at"),
            })
            .collect())
    }

    /// The followers of an entity, read inside the caller's transaction.
    pub async fn followers_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        entity: &str,
        entity_id: &str,
    ) -> AppResult<Vec<String>> {
        let rows = sqlx::query("SELECT user_id FROM follows WHERE entity = $1 AND entity_id = $2")
            .bind(entity.to_string())
            .bind(entity_id.to_string())
            .fetch_all(&mut **tx)
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(|r| str_(r, "user_id")).collect())
    }

    async fn may_follow(&self, p: &Principal, entity: &str, entity_id: &str) -> AppResult<bool> {
        let told = sqlx::query(
            "SELECT 1 AS x FROM notifications WHERE user_id = $1 AND entity = $2 AND entity_id = $3 LIMIT 1",
        )
        .bind(p.user_id().to_string())
        .bind(entity.to_string())
        .bind(entity_id.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?;
        if told.is_some() {
            return Ok(true);
        }
        // A report's readers are not its area's: unit staff see only what reaches their unit
        // (the area of a `report_read` grant would let a property company follow a complaint
        // about itself), and residents see their own.
        if entity == "report" {
            let viewer = self.report_viewer(p).await?;
            return self.report_visible_id(&viewer, entity_id).await;
        }
        let Some((_, table, action)) = FOLLOWABLE.iter().find(|(e, _, _)| *e == entity) else {
            return Ok(false);
        };
        let Ok(grant) = p.grant(*action) else {
            return Ok(false);
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT path FROM {table} WHERE id = $1"
        )))
        .bind(entity_id.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(row.is_some_and(|r| grant.allows(*action, &str_(&r, "path"))))
    }

    /// A user's channels (defaults when never set).
    pub async fn channels(&self, p: &Principal) -> AppResult<Channels> {
        let user_id = p.user_id();
        let r =
            sqlx::query("SELECT email, email_enabled, muted FROM user_channels WHERE user_id = $1")
                .bind(user_id.to_string())
                .fetch_optional(&self.db.read)
                .await
                .map_err(db_err)?;
        Ok(r.map(|r| Channels {
            email: opt_str(&r, "email"),
            email_enabled: i64_(&r, "email_enabled") == 1,
            muted: split_list(&str_(&r, "muted")),
        })
        .unwrap_or_default())
    }

    /// Set a user's channels. An enabled e-mail channel needs a valid address.
    pub async fn set_channels(&self, p: &Principal, c: Channels) -> AppResult<Channels> {
        let email = c
            .email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string);
        if let Some(e) = &email
            && !valid_email(e)
        {
            return Err(AppError::bad_request("notify.email_invalid"));
        }
        if c.email_enabled && email.is_none() {
            return Err(AppError::bad_request("notify.email_required"));
        }
        let mut muted: Vec<String> = Vec::new();
        for m in &c.muted {
            let m = m.trim();
            if m.is_empty() {
                continue;
            }
            if m.len() > 64
                || !m
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "._*-".contains(ch))
            {
                return Err(AppError::bad_request("notify.kind_invalid").arg("kind", m));
            }
            if !muted.iter().any(|x| x == m) {
                muted.push(m.to_string());
            }
        }
        let before = self.channels(p).await?;
        let after = Channels {
            email,
            email_enabled: c.email_enabled,
            muted,
        };
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO user_channels (user_id, email, email_enabled, muted, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, email_enabled = excluded.email_enabled,
             muted = excluded.muted, updated_at = excluded.updated_at",
        )
        .bind(p.user_id().to_string())
        .bind(after.email.clone())
        .bind(i64::from(after.email_enabled))
        .bind(after.muted.join(","))
        .bind(self.now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.audit(
            &mut tx,
            &Actor::from(p),
            Entry {
                action: "notify.channels.update",
                entity: "user",
                entity_id: &p.user_id(),
                path: None,
                purpose: None,
                before: serde_json::to_value(&before).ok(),
                after: serde_json::to_value(&after).ok(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(after)
    }
}

/// A comma-separated list, without empty entries.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_patterns() {
        assert!(kind_matches("report.*", "report.dispatched"));
        assert!(kind_matches("report.dispatched", "report.dispatched"));
        assert!(kind_matches("*", "alarm.sos"));
        assert!(!kind_matches("report.*", "reports.x"));
        assert!(!kind_matches("report.*", "report"));
        assert!(!kind_matches("alarm.sos", "alarm.fire"));
    }

    #[test]
    fn emails() {
        assert!(valid_email("wang@example.org"));
        assert!(!valid_email("not an address"));
        assert!(!valid_email("a@"));
    }
}
