//! Outbound webhooks: an integration registers a URL for a place subtree and a list of event
//! kinds; every notice about a place inside the subtree whose kind matches is queued for it in
//! the durable outbox (same transaction as the change) and POSTed, signed, by the delivery worker.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use linli_core::auth::{Action, Grant};
use linli_core::i18n::Lang;
use linli_core::{AppError, AppResult};

use super::follows::{kind_matches, split_list};
use super::outbox::Delivery;
use super::{Notice, render};
use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err, i64_, opt_i64, str_};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: String,
    pub name: String,
    pub url: String,
    /// The place whose subtree the webhook hears about.
    pub place_id: String,
    pub path: String,
    /// Event kinds (`report.dispatched`) or prefixes (`report.*`); empty: every kind.
    pub kinds: Vec<String>,
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A new webhook as created: the signing secret is shown this once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookCreated {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// HMAC-SHA256 key for `X-Linli-Signature`; not retrievable later.
    pub secret: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewWebhook {
    pub name: String,
    /// `http://host[:port]/path`.
    pub url: String,
    pub place_id: String,
    #[serde(default)]
    pub kinds: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct WebhookPatch {
    pub name: Option<String>,
    pub url: Option<String>,
    pub kinds: Option<Vec<String>>,
    pub active: Option<bool>,
}

const COLS: &str = "id, name, url, place_id, path, kinds, active, created_at, updated_at";

fn from_row(r: &AnyRow) -> Webhook {
    Webhook {
        id: str_(r, "id"),
        name: str_(r, "name"),
        url: str_(r, "url"),
        place_id: str_(r, "place_id"),
        path: str_(r, "path"),
        kinds: split_list(&str_(r, "kinds")),
        active: i64_(r, "active") == 1,
        created_at: i64_(r, "created_at"),
        updated_at: i64_(r, "updated_at"),
    }
}

/// Webhook URLs: `https://` (or `http://` for receivers on a trusted network) with a host.
pub fn validate_url(url: &str) -> AppResult<String> {
    let url = url.trim();
    let ok = url.len() <= 2000
        && url.parse::<http::Uri>().is_ok_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.host().is_some_and(|h| !h.is_empty())
        });
    if !ok {
        return Err(AppError::bad_request("notify.webhook.url_invalid"));
    }
    let host = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned));
    if host.as_deref().is_some_and(never_a_receiver) {
        return Err(AppError::bad_request("notify.webhook.url_not_allowed"));
    }
    Ok(url.to_string())
}

/// Hosts no webhook receiver lives at, whose answers (status, error) would only tell a webhook
/// admin about the server's own surroundings: link-local addresses (the cloud metadata service
/// at 169.254.169.254, `fe80::/10`), unspecified, broadcast and multicast addresses. Private
/// networks (10/8, 192.168/16, loopback) stay allowed: receivers on a trusted network are
/// supported. A *name* that resolves to such an address is caught when delivering: the
/// delivery worker (`linli-delivery`) resolves through a filtering resolver built on
/// [`never_a_receiver_ip`], which drops these addresses and connects only to what is left (so a
/// DNS answer that changes after the check cannot slip one in either), and checks an address
/// written into the URL with this function again before sending.
pub fn never_a_receiver(host: &str) -> bool {
    use std::net::IpAddr;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("metadata.google.internal") {
        return true;
    }
    match bare.parse::<IpAddr>() {
        Ok(ip) => never_a_receiver_ip(ip),
        Err(_) => false,
    }
}

/// [`never_a_receiver`] for an address.
pub fn never_a_receiver_ip(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        ip => ip,
    };
    match ip {
        IpAddr::V4(v4) => {
            v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()
        }
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80 || v6.is_unspecified() || v6.is_multicast()
        }
    }
}

fn validate_name(name: &str) -> AppResult<String> {
    let n = name.trim();
    if n.is_empty() {
        return Err(AppError::required("name"));
    }
    if n.chars().count() > 100 {
        return Err(AppError::bad_request("notify.webhook.name_too_long"));
    }
    Ok(n.to_string())
}

fn validate_kinds(kinds: &[String]) -> AppResult<String> {
    let mut out: Vec<&str> = Vec::new();
    for k in kinds {
        let k = k.trim();
        if k.is_empty() {
            continue;
        }
        if k.len() > 64
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._*-".contains(c))
        {
            return Err(AppError::bad_request("notify.kind_invalid").arg("kind", k));
        }
        if !out.contains(&k) {
            out.push(k);
        }
    }
    Ok(out.join(","))
}

impl Store {
    /// Register a webhook for a place inside the caller's grant (`WebhookAdmin`).
    pub async fn create_webhook(
        &self,
        grant: &Grant,
        actor: &Actor,
        w: NewWebhook,
    ) -> AppResult<WebhookCreated> {
        // `place` resolves the place with any grant's area: the action is checked here.
        grant.scope(Action::WebhookAdmin)?;
        let name = validate_name(&w.name)?;
        let url = validate_url(&w.url)?;
        let kinds = validate_kinds(&w.kinds)?;
        let place = self.place(grant, &w.place_id).await?;
        let secret = linli_core::crypto::random_token(32);
        let id = linli_core::new_id();
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO webhooks (id, name, url, secret_enc, place_id, path, kinds, active, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $9)",
        )
        .bind(id.clone())
        .bind(name)
        .bind(url)
        .bind(self.cipher.encrypt(&secret))
        .bind(place.id.clone())
        .bind(place.path.clone())
        .bind(kinds)
        .bind(actor.id.clone())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let webhook = self.webhook_in(&mut tx, &id).await?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "webhook.create",
                entity: "webhook",
                entity_id: &id,
                path: Some(&webhook.path),
                purpose: None,
                before: None,
                after: serde_json::to_value(&webhook).ok(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(WebhookCreated { webhook, secret })
    }

    async fn webhook_in(&self, tx: &mut Transaction<'static, Any>, id: &str) -> AppResult<Webhook> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM webhooks WHERE id = $1 AND deleted_at IS NULL"
        )))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?
        .ok_or(AppError::not_found("notify.webhook.not_found"))?;
        Ok(from_row(&r))
    }

    /// Webhooks registered inside the caller's area.
    pub async fn webhooks(&self, grant: &Grant) -> AppResult<Vec<Webhook>> {
        let mut q = Sql::new(&format!(
            "SELECT {COLS} FROM webhooks WHERE deleted_at IS NULL AND "
        ));
        q.scope("path", grant.scope(Action::WebhookAdmin)?.prefixes());
        q.push(" ORDER BY created_at DESC LIMIT 500");
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// One webhook; outside the caller's area it is not found.
    pub async fn webhook(&self, grant: &Grant, id: &str) -> AppResult<Webhook> {
        let scope = grant.scope(Action::WebhookAdmin)?;
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM webhooks WHERE id = $1 AND deleted_at IS NULL"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?
        .map(|r| from_row(&r))
        .filter(|w| scope.covers(&w.path))
        .ok_or(AppError::not_found("notify.webhook.not_found"))?;
        Ok(r)
    }

    /// Change name, URL, kinds or pause/resume.
    pub async fn update_webhook(
        &self,
        grant: &Grant,
        actor: &Actor,
        id: &str,
        p: WebhookPatch,
    ) -> AppResult<Webhook> {
        let before = self.webhook(grant, id).await?;
        let name = match &p.name {
            Some(n) => validate_name(n)?,
            None => before.name.clone(),
        };
        let url = match &p.url {
            Some(u) => validate_url(u)?,
            None => before.url.clone(),
        };
        let kinds = match &p.kinds {
            Some(k) => validate_kinds(k)?,
            None => before.kinds.join(","),
        };
        let active = p.active.unwrap_or(before.active);
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "UPDATE webhooks SET name = $1, url = $2, kinds = $3, active = $4, updated_at = $5 WHERE id = $6 AND deleted_at IS NULL",
        )
        .bind(name)
        .bind(url)
        .bind(kinds)
        .bind(i64::from(active))
        .bind(self.now_ms())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let after = self.webhook_in(&mut tx, id).await?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "webhook.update",
                entity: "webhook",
                entity_id: id,
                path: Some(&after.path),
                purpose: None,
                before: serde_json::to_value(&before).ok(),
                after: serde_json::to_value(&after).ok(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(after)
    }

    /// Remove a webhook; its pending deliveries are cancelled (the log stays).
    pub async fn delete_webhook(&self, grant: &Grant, actor: &Actor, id: &str) -> AppResult<()> {
        let before = self.webhook(grant, id).await?;
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "UPDATE webhooks SET active = 0, deleted_at = $1, updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "UPDATE outbox SET status = 'cancelled' WHERE webhook_id = $1 AND status = 'pending'",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "webhook.delete",
                entity: "webhook",
                entity_id: id,
                path: Some(&before.path),
                purpose: None,
                before: serde_json::to_value(&before).ok(),
                after: None,
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    /// Queue a `ping` delivery to one webhook (to check the receiver and its signature code).
    pub async fn ping_webhook(
        &self,
        grant: &Grant,
        actor: &Actor,
        id: &str,
    ) -> AppResult<Delivery> {
        let w = self.webhook(grant, id).await?;
        let event_id = linli_core::new_id();
        let now = self.now_ms();
        let body = json!({
            "id": event_id,
            "kind": "ping",
            "entity": "webhook",
            "entity_id": w.id,
            "path": w.path,
            "at": now,
            "text_zh": render(Lang::ZhCn, "notice-webhook-ping", &json!({ "name": w.name })),
            "text_en": render(Lang::En, "notice-webhook-ping", &json!({ "name": w.name })),
            "link": Value::Null,
        });
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let delivery_id = self
            .enqueue_delivery(&mut tx, "webhook", Some(&w.id), None, &w.url, "ping", &body)
            .await?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "webhook.ping",
                entity: "webhook",
                entity_id: id,
                path: Some(&w.path),
                purpose: None,
                before: None,
                after: Some(json!({ "delivery_id": delivery_id })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.delivery(&delivery_id).await
    }

    /// The delivery log of one webhook, newest first.
    pub async fn webhook_deliveries(
        &self,
        grant: &Grant,
        id: &str,
        limit: i64,
    ) -> AppResult<Vec<Delivery>> {
        self.webhook(grant, id).await?;
        let rows = sqlx::query(
            "SELECT id, channel, webhook_id, kind, status, attempts, next_at, last_status, last_error, created_at, delivered_at
             FROM outbox WHERE webhook_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(id.to_string())
        .bind(limit.clamp(1, 500))
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(super::outbox::delivery_from_row).collect())
    }

    /// Send a dead delivery again (the receiver is fixed): it becomes pending, due now, with a
    /// fresh retry schedule; the same delivery id (receivers dedupe on it). Only dead
    /// deliveries of a webhook in the grant's area: others answer 404 / 409. Audited.
    pub async fn retry_delivery(
        &self,
        grant: &Grant,
        actor: &Actor,
        webhook_id: &str,
        delivery_id: &str,
    ) -> AppResult<Delivery> {
        let w = self.webhook(grant, webhook_id).await?;
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let row = sqlx::query("SELECT status FROM outbox WHERE id = $1 AND webhook_id = $2")
            .bind(delivery_id.to_string())
            .bind(webhook_id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or_else(|| AppError::not_found("notify.delivery.not_found"))?;
        if str_(&row, "status") != "dead" {
            return Err(AppError::conflict("notify.delivery.not_dead"));
        }
        sqlx::query(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_at = $1 WHERE id = $2 AND status = 'dead'",
        )
        .bind(now)
        .bind(delivery_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "webhook.retry",
                entity: "webhook",
                entity_id: webhook_id,
                path: Some(&w.path),
                purpose: None,
                before: Some(json!({ "delivery_id": delivery_id, "status": "dead" })),
                after: Some(json!({ "delivery_id": delivery_id, "status": "pending" })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.delivery(delivery_id).await
    }

    /// Where a claimed webhook delivery goes now, for the delivery worker: the webhook's
    /// current URL and its signing secret (decrypted), or why nothing is sent.
    pub async fn webhook_target(&self, webhook_id: &str) -> AppResult<WebhookTarget> {
        let row =
            sqlx::query("SELECT url, secret_enc, active, deleted_at FROM webhooks WHERE id = $1")
                .bind(webhook_id.to_string())
                .fetch_optional(&self.db.read)
                .await
                .map_err(db_err)?;
        let Some(w) = row else {
            return Ok(WebhookTarget::Gone);
        };
        if opt_i64(&w, "deleted_at").is_some() {
            return Ok(WebhookTarget::Gone);
        }
        if i64_(&w, "active") != 1 {
            return Ok(WebhookTarget::Paused);
        }
        Ok(match self.cipher.decrypt(&str_(&w, "secret_enc")) {
            Ok(secret) => WebhookTarget::Ready {
                url: str_(&w, "url"),
                secret,
            },
            Err(_) => WebhookTarget::SecretUnreadable,
        })
    }

    /// Queue one delivery per active webhook whose subtree covers the notice's place and whose
    /// kinds match (inside the notifying transaction).
    pub(crate) async fn enqueue_webhooks(
        &self,
        tx: &mut Transaction<'static, Any>,
        n: &Notice<'_>,
    ) -> AppResult<usize> {
        let Some(path) = n.path.filter(|p| !p.is_empty()) else {
            return Ok(0);
        };
        let rows = sqlx::query(
            "SELECT id, url, kinds, path FROM webhooks
             WHERE active = 1 AND deleted_at IS NULL AND substr($1, 1, length(path)) = path",
        )
        .bind(path.to_string())
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?;
        let hooks: Vec<HookTarget> = rows.iter().map(HookTarget::from_row).collect();
        self.enqueue_webhooks_to(tx, n, &hooks).await
    }

    /// Every active webhook: read once for a batch of notices (there are a handful).
    pub(crate) async fn active_webhooks(
        &self,
        tx: &mut Transaction<'static, Any>,
    ) -> AppResult<Vec<HookTarget>> {
        let rows = sqlx::query(
            "SELECT id, url, kinds, path FROM webhooks WHERE active = 1 AND deleted_at IS NULL",
        )
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(HookTarget::from_row).collect())
    }

    /// Queue the notice for those of `hooks` that cover its place and want its kind.
    pub(crate) async fn enqueue_webhooks_to(
        &self,
        tx: &mut Transaction<'static, Any>,
        n: &Notice<'_>,
        hooks: &[HookTarget],
    ) -> AppResult<usize> {
        let Some(path) = n.path.filter(|p| !p.is_empty()) else {
            return Ok(0);
        };
        let targets: Vec<&HookTarget> = hooks.iter().filter(|h| h.wants(path, n.kind)).collect();
        if targets.is_empty() {
            return Ok(0);
        }
        let body = json!({
            "id": linli_core::new_id(),
            "kind": n.kind,
            "entity": n.entity,
            "entity_id": n.entity_id,
            "path": path,
            "at": self.now_ms(),
            "text_zh": render(Lang::ZhCn, n.key, &n.args),
            "text_en": render(Lang::En, n.key, &n.args),
            "link": n.link,
        });
        for h in &targets {
            self.enqueue_delivery(tx, "webhook", Some(&h.id), None, &h.url, n.kind, &body)
                .await?;
        }
        Ok(targets.len())
    }
}

/// A webhook as the delivery worker sees it when sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookTarget {
    /// Deleted (or never existed): the delivery is cancelled.
    Gone,
    /// Paused: the delivery waits.
    Paused,
    /// The signing secret cannot be decrypted (another master key).
    SecretUnreadable,
    Ready {
        url: String,
        secret: String,
    },
}

/// An active webhook as the notifier needs it.
#[derive(Debug, Clone)]
pub(crate) struct HookTarget {
    id: String,
    url: String,
    kinds: Vec<String>,
    path: String,
}

impl HookTarget {
    fn from_row(r: &AnyRow) -> HookTarget {
        HookTarget {
            id: str_(r, "id"),
            url: str_(r, "url"),
            kinds: split_list(&str_(r, "kinds")),
            path: str_(r, "path"),
        }
    }

    /// Whether a notice of `kind` at `path` goes to this webhook: its subtree covers the place
    /// and it lists the kind (or no kinds, meaning all).
    fn wants(&self, path: &str, kind: &str) -> bool {
        path.starts_with(self.path.as_str())
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| kind_matches(k, kind)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_gets_the_notices_of_its_subtree_and_kinds() {
        let hook = |path: &str, kinds: &str| HookTarget {
            id: "w".into(),
            url: "http://127.0.0.1/".into(),
            kinds: split_list(kinds),
            path: path.into(),
        };
        let all = hook("/c/d/", "");
        assert!(all.wants("/c/d/s/x/", "report.submitted"));
        assert!(all.wants("/c/d/", "alarm.raised"));
        assert!(
            !all.wants("/c/e/s/", "report.submitted"),
            "another district"
        );
        assert!(!all.wants("/c/", "report.submitted"), "above its subtree");
        let reports = hook("/c/", "report.*, alarm.sos");
        assert!(reports.wants("/c/d/", "report.dispatched"));
        assert!(reports.wants("/c/d/", "alarm.sos"));
        assert!(!reports.wants("/c/d/", "alarm.raised"));
    }

    #[test]
    fn webhook_urls() {
        assert!(validate_url("https://hooks.example.org/linli").is_ok());
        assert!(validate_url(" http://10.0.0.5:8080/in ").is_ok());
        assert!(validate_url("ftp://example.org/").is_err());
        assert!(validate_url("example.org/hook").is_err());
        assert!(validate_url("http:///nohost").is_err());
        for metadata in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://0.0.0.0:8080/",
            "http://metadata.google.internal/computeMetadata/v1/",
        ] {
            assert_eq!(
                validate_url(metadata).unwrap_err().code,
                "notify.webhook.url_not_allowed",
                "{metadata}"
            );
        }
        assert!(validate_url("http://127.0.0.1:9000/in").is_ok());
        assert!(
            validate_kinds(&["report.*".into(), " alarm.sos ".into()])
                .is_ok_and(|k| k == "report.*,alarm.sos")
        );
        assert!(validate_kinds(&["report dispatched".into()]).is_err());
    }
}
