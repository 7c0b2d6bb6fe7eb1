//! Notifications (消息): every user's in-app inbox. Modules call [`Store::notify`] inside the
//! transaction that made the change, so a notice exists exactly when the change does, and publish
//! an `inbox` [`crate::bus::BusEvent`] after commit so open pages update live.
//!
//! Text is stored as a Fluent message id plus arguments and rendered in the reader's language
//! when shown, so a notice written for a Chinese reader reads in English after a language switch.

use serde::Serialize;
use serde_json::Value;
use sqlx::{Any, Transaction};

use linli_core::AppResult;
use linli_core::auth::Principal;

use crate::Store;
use crate::db::{Sql, db_err, i64_, opt_i64, opt_str, str_};

pub mod follows;
pub mod outbox;
pub mod schema;
pub mod webhooks;

/// What to tell people.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    /// Dotted kind, e.g. `report.dispatched`, `alarm.sos`; subscribers (webhooks, e-mail)
    /// filter on it.
    pub kind: &'a str,
    /// Fluent message id of the text, e.g. `notice-report-dispatched`.
    pub key: &'a str,
    /// Arguments of the message (a JSON object of strings and numbers).
    pub args: Value,
    /// What it is about, e.g. `report` and its id.
    pub entity: &'a str,
    pub entity_id: &'a str,
    /// Where (place path), for scope-filtered subscribers.
    pub path: Option<&'a str>,
    /// Link to open, relative to the site root (e.g. `/staff/reports/0193…`).
    pub link: Option<&'a str>,
}

/// Render a notice's text in a language.
pub fn render(lang: linli_core::i18n::Lang, key: &str, args: &Value) -> String {
    linli_core::i18n::t_json(lang, key, args)
}

/// One inbox entry as the reader sees it (text not yet rendered).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InboxItem {
    pub id: String,
    pub kind: String,
    pub key: String,
    pub args: Value,
    pub entity: String,
    pub entity_id: String,
    pub link: Option<String>,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

impl Store {
    /// Put a notice into each recipient's inbox, inside the caller's transaction. Duplicate
    /// recipients are told once. Returns the ids of the new inbox rows.
    pub async fn notify(
        &self,
        tx: &mut Transaction<'static, Any>,
        recipients: &[String],
        n: &Notice<'_>,
    ) -> AppResult<Vec<String>> {
        let mut seen: Vec<&String> = Vec::new();
        let mut ids = Vec::new();
        let now = self.now_ms();
        for r in recipients {
            if seen.contains(&r) {
                continue;
            }
            seen.push(r);
            let id = linli_core::new_id();
            sqlx::query(
                "INSERT INTO notifications (id, user_id, kind, msg_key, args, entity, entity_id, path, link, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(id.clone())
            .bind(r.clone())
            .bind(n.kind.to_string())
            .bind(n.key.to_string())
            .bind(n.args.to_string())
            .bind(n.entity.to_string())
            .bind(n.entity_id.to_string())
            .bind(n.path.map(str::to_string))
            .bind(n.link.map(str::to_string))
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
            ids.push(id);
        }
        let unique: Vec<String> = seen.into_iter().cloned().collect();
        self.enqueue_emails(tx, &unique, n).await?;
        self.enqueue_webhooks(tx, n).await?;
        Ok(ids)
    }

    /// [`Store::notify`] for many notices at once (report intake's group commit): the inbox
    /// rows of all of them in multi-row inserts and the webhooks read once, instead of a round
    /// trip per recipient and per notice inside the writer's transaction.
    pub async fn notify_many(
        &self,
        tx: &mut Transaction<'static, Any>,
        items: &[(&[String], Notice<'_>)],
    ) -> AppResult<()> {
        let now = self.now_ms();
        let mut rows = Vec::new();
        let mut unique_per_item = Vec::with_capacity(items.len());
        for (recipients, n) in items {
            let mut unique: Vec<String> = Vec::with_capacity(recipients.len());
            for r in recipients.iter() {
                if !unique.contains(r) {
                    unique.push(r.clone());
                }
            }
            let args = n.args.to_string();
            for r in &unique {
                rows.push(vec![
                    crate::db::Val::from(linli_core::new_id()),
                    r.clone().into(),
                    n.kind.into(),
                    n.key.into(),
                    args.clone().into(),
                    n.entity.into(),
                    n.entity_id.into(),
                    n.path.map(str::to_string).into(),
                    n.link.map(str::to_string).into(),
                    now.into(),
                ]);
            }
            unique_per_item.push(unique);
        }
        crate::db::insert_many(
            tx,
            "notifications",
            &[
                "id",
                "user_id",
                "kind",
                "msg_key",
                "args",
                "entity",
                "entity_id",
                "path",
                "link",
                "created_at",
            ],
            rows,
        )
        .await?;
        for ((_, n), unique) in items.iter().zip(&unique_per_item) {
            self.enqueue_emails(tx, unique, n).await?;
        }
        if items
            .iter()
            .any(|(_, n)| n.path.is_some_and(|p| !p.is_empty()))
        {
            let hooks = self.active_webhooks(tx).await?;
            if !hooks.is_empty() {
                for (_, n) in items {
                    self.enqueue_webhooks_to(tx, n, &hooks).await?;
                }
            }
        }
        Ok(())
    }

    /// Tell everyone who follows `entity`/`entity_id` (inbox, and e-mail where enabled), and the
    /// webhooks whose scope covers the notice, inside the caller's transaction.
    pub async fn notify_followers(
        &self,
        tx: &mut Transaction<'static, Any>,
        entity: &str,
        entity_id: &str,
        n: &Notice<'_>,
    ) -> AppResult<Vec<String>> {
        let followers = self.followers_in(tx, entity, entity_id).await?;
        self.notify(tx, &followers, n).await
    }

    /// Tell `recipients` and the followers of the notice's entity at once (each person once,
    /// webhooks once), inside the caller's transaction.
    pub async fn notify_with_followers(
        &self,
        tx: &mut Transaction<'static, Any>,
        recipients: &[String],
        n: &Notice<'_>,
    ) -> AppResult<Vec<String>> {
        let mut all = recipients.to_vec();
        all.extend(self.followers_in(tx, n.entity, n.entity_id).await?);
        self.notify(tx, &all, n).await
    }

    /// After commit: tell the open pages of these users that their inbox changed.
    pub fn publish_inbox(&self, user_ids: &[String]) {
        if user_ids.is_empty() {
            return;
        }
        let mut users = user_ids.to_vec();
        users.sort();
        users.dedup();
        self.bus.publish(crate::bus::BusEvent {
            kind: "inbox".into(),
            path: String::new(),
            id: String::new(),
            users,
        });
    }

    /// A user's inbox, newest first; `before` is the `created_at` of the last item of the
    /// previous page.
    pub async fn inbox(
        &self,
        p: &Principal,
        unread_only: bool,
        before: Option<i64>,
        limit: i64,
    ) -> AppResult<Vec<InboxItem>> {
        let user_id = p.user_id();
        let mut q = Sql::new(
            "SELECT id, kind, msg_key, args, entity, entity_id, link, created_at, read_at FROM notifications WHERE user_id = ",
        );
        q.bind(user_id);
        if unread_only {
            q.push(" AND read_at IS NULL");
        }
        if let Some(b) = before {
            q.push(" AND created_at < ").bind(b);
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .bind(limit.clamp(1, 200));
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| InboxItem {
                id: str_(r, "id"),
                kind: str_(r, "kind"),
                key: str_(r, "msg_key"),
                args: serde_json::from_str(&str_(r, "args")).unwrap_or(Value::Null),
                entity: str_(r, "entity"),
                entity_id: str_(r, "entity_id"),
                link: opt_str(r, "link"),
                created_at: i64_(r, "created_at"),
                read_at: opt_i64(r, "read_at"),
            })
            .collect())
    }

    /// How many unread notices a user has.
    pub async fn inbox_unread(&self, p: &Principal) -> AppResult<i64> {
        let user_id = p.user_id();
        let r = sqlx::query(
            "SELECT COUNT(*) AS n FROM notifications WHERE user_id = $1 AND read_at IS NULL",
        )
        .bind(user_id.to_string())
        .fetch_one(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(i64_(&r, "n"))
    }

    /// Mark one notice (or, with `None`, all) of the user as read. Someone else's notice is
    /// simply not found: nothing changes.
    pub async fn inbox_mark_read(&self, p: &Principal, id: Option<&str>) -> AppResult<u64> {
        let user_id = p.user_id();
        if let Some(id) = id {
            let exists =
                sqlx::query("SELECT 1 AS x FROM notifications WHERE id = $1 AND user_id = $2")
                    .bind(id.to_string())
                    .bind(user_id.to_string())
                    .fetch_optional(&self.db.read)
                    .await
                    .map_err(db_err)?;
            if exists.is_none() {
                return Err(linli_core::AppError::not_found("notify.not_found"));
            }
        }
        let mut q = Sql::new("UPDATE notifications SET read_at = ");
        q.bind(self.now_ms());
        q.push(" WHERE user_id = ").bind(user_id);
        q.push(" AND read_at IS NULL");
        if let Some(id) = id {
            q.push(" AND id = ").bind(id);
        }
        let r = q.query().execute(&self.db.write).await.map_err(db_err)?;
        if r.rows_affected() > 0 {
            self.publish_inbox(&[user_id.to_string()]);
        }
        Ok(r.rows_affected())
    }
}
