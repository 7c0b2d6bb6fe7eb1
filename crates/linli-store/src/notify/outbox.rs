//! The durable outbox: e-mails and webhook deliveries are queued as rows in the same transaction
//! as the change they announce, and a worker sends them after commit — so a delivery exists
//! exactly when the change does, and survives a crash or restart.
//!
//! The worker ([`Store::outbox_tick`], looped by [`Store::spawn_outbox`]) claims due rows (on
//! PostgreSQL with `FOR UPDATE SKIP LOCKED`, so several instances share the work; on SQLite the
//! single writer serializes claims) by pushing their `next_at` a lease ahead, sends outside the
//! transaction, then records the outcome: delivered, or rescheduled with exponential backoff and
//! jitter (10 s, 1 min, 5 min, 30 min, 2 h, 6 h, 12 h), dead after [`MAX_ATTEMPTS`]. A crash
//! between sending and recording means the row is sent again after the lease: at-least-once,
//! receivers dedupe by `X-Linli-Delivery`.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
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
const LEASE_MS: i64 = 120_000;
/// Rows claimed per tick.
const BATCH: i64 = 32;
/// Time allowed for one webhook request or one SMTP conversation.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach the SMTP server: `tls` is `none` (plain, for a relay on the host or the local
/// network), `starttls` (upgrade on port 587/25) or `tls` (implicit TLS, port 465); TLS uses
/// rustls with the Mozilla root certificates (webpki-roots).
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// none, starttls or tls
    pub tls: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Sender address, e.g. `邻里 <noreply@example.org>`.
    pub from: String,
    /// Name announced in EHLO (default `localhost`).
    pub helo: Option<String>,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("from", &self.from)
            .finish()
    }
}

impl SmtpConfig {
    /// Check the settings once at start, with a message an operator can act on.
    pub fn validate(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("smtp.host is empty".into());
        }
        if !matches!(self.tls.as_str(), "" | "none" | "starttls" | "tls") {
            return Err(format!(
                "smtp.tls = {:?}: use \"none\", \"starttls\" or \"tls\"",
                self.tls
            ));
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(format!("smtp.from {:?} is not a valid address", self.from));
        }
        Ok(())
    }
}

/// Delivery settings of this instance.
#[derive(Debug, Clone, Default)]
pub struct OutboxConfig {
    /// E-mail is queued and sent only when set.
    pub smtp: Option<SmtpConfig>,
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

/// `sha256=<hex>` of HMAC-SHA256(secret, timestamp + "." + body).
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts any key length");
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

enum Outcome {
    Delivered(Option<i64>),
    Failed(Option<i64>, String),
    /// Not attempted (webhook paused, SMTP not configured): look again later.
    Later,
    /// The webhook is gone.
    Cancelled,
}

struct Claimed {
    id: String,
    channel: String,
    webhook_id: Option<String>,
    target: String,
    kind: String,
    payload: String,
    attempts: i64,
}

impl Store {
    /// Set this instance's delivery settings (SMTP, public URL).
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
        if cfg.smtp.is_none() {
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

    /// Send what is due now; returns how many rows were attempted. Safe to run from several
    /// instances at once.
    pub async fn outbox_tick(&self) -> AppResult<usize> {
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let sql = format!(
            "SELECT id, channel, webhook_id, target, kind, payload, attempts FROM outbox
             WHERE status = 'pending' AND next_at <= $1 ORDER BY next_at LIMIT $2{}",
            self.backend().skip_locked()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(BATCH)
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
        if claimed.is_empty() {
            return Ok(0);
        }
        let n = claimed.len();
        let cfg = self.outbox_config();
        let client = http_client();
        let mut set = tokio::task::JoinSet::new();
        for c in claimed {
            let store = self.clone();
            let cfg = cfg.clone();
            let client = client.clone();
            set.spawn(async move {
                let outcome = match c.channel.as_str() {
                    "webhook" => store.send_webhook(&client, &c).await,
                    "email" => send_email(cfg.smtp.as_ref(), &c).await,
                    _ => Outcome::Failed(None, format!("unknown channel {}", c.channel)),
                };
                store.record(&c, outcome).await
            });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Err(e)) => tracing::error!(error = %e, "outbox: recording a delivery failed"),
                Err(e) => tracing::error!(error = %e, "outbox: delivery task failed"),
                Ok(Ok(())) => {}
            }
        }
        Ok(n)
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

    /// Run the delivery worker until the process ends (started by `linli serve`). Finished
    /// deliveries are kept in the log for [`KEEP_MS`].
    pub fn spawn_outbox(&self) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut last_purge = 0_i64;
            loop {
                if store.now_ms() - last_purge > 3_600_000 {
                    last_purge = store.now_ms();
                    if let Err(e) = store.outbox_purge(KEEP_MS).await {
                        tracing::warn!(error = %e, "outbox purge failed");
                    }
                }
                match store.outbox_tick().await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "outbox tick failed"),
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    }

    async fn record(&self, c: &Claimed, outcome: Outcome) -> AppResult<()> {
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
                .bind(now + 60_000)
                .bind(c.id.clone()),
            Outcome::Cancelled => {
                sqlx::query("UPDATE outbox SET status = 'cancelled' WHERE id = $1").bind(c.id.clone())
            }
        };
        q.execute(&self.db.write).await.map_err(db_err)?;
        Ok(())
    }

    async fn send_webhook(&self, client: &HttpClient, c: &Claimed) -> Outcome {
        let Some(wid) = &c.webhook_id else {
            return Outcome::Cancelled;
        };
        let row =
            sqlx::query("SELECT url, secret_enc, active, deleted_at FROM webhooks WHERE id = $1")
                .bind(wid.clone())
                .fetch_optional(&self.db.read)
                .await;
        let w = match row {
            Ok(Some(w)) => w,
            Ok(None) => return Outcome::Cancelled,
            Err(e) => return Outcome::Failed(None, format!("database: {e}")),
        };
        if opt_i64(&w, "deleted_at").is_some() {
            return Outcome::Cancelled;
        }
        if i64_(&w, "active") != 1 {
            return Outcome::Later;
        }
        let Ok(secret) = self.cipher.decrypt(&str_(&w, "secret_enc")) else {
            return Outcome::Failed(None, "secret cannot be decrypted".into());
        };
        let url = str_(&w, "url");
        // An address written into the URL is not resolved (so not filtered) by the client: check
        // it here too (a webhook stored before the creation check existed).
        if url
            .parse::<hyper::Uri>()
            .ok()
            .and_then(|u| u.host().map(super::webhooks::never_a_receiver))
            .unwrap_or(false)
        {
            return Outcome::Failed(None, "address not allowed for webhooks".into());
        }
        let ts = (linli_core::now_ms() / 1000).to_string();
        let sig = signature(&secret, &ts, c.payload.as_bytes());
        let req = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri(&url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "Linli-Webhook/1")
            .header("x-linli-event", c.kind.as_str())
            .header("x-linli-delivery", c.id.as_str())
            .header("x-linli-timestamp", ts.as_str())
            .header("x-linli-signature", sig.as_str())
            .body(Full::new(Bytes::from(c.payload.clone())));
        let req = match req {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(None, format!("request: {e}")),
        };
        match tokio::time::timeout(SEND_TIMEOUT, client.request(req)).await {
            Err(_) => Outcome::Failed(None, "timeout".into()),
            Ok(Err(e)) => Outcome::Failed(None, format!("{e}")),
            Ok(Ok(resp)) => {
                let status = i64::from(resp.status().as_u16());
                if resp.status().is_success() {
                    Outcome::Delivered(Some(status))
                } else {
                    Outcome::Failed(Some(status), format!("HTTP {status}"))
                }
            }
        }
    }
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<
        hyper_util::client::legacy::connect::HttpConnector<ReceiverResolver>,
    >,
    Full<Bytes>,
>;

/// The system resolver, minus the addresses no webhook receiver lives at
/// ([`super::webhooks::never_a_receiver_ip`]: link-local and the cloud metadata service,
/// multicast …). The connection is made to what this returns, so a name that resolves there —
/// at creation or only later (DNS rebinding) — fails the delivery instead of reaching it.
#[derive(Clone)]
pub(crate) struct ReceiverResolver(hyper_util::client::legacy::connect::dns::GaiResolver);

impl Default for ReceiverResolver {
    fn default() -> Self {
        ReceiverResolver(hyper_util::client::legacy::connect::dns::GaiResolver::new())
    }
}

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for ReceiverResolver {
    type Response = std::vec::IntoIter<std::net::SocketAddr>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let lookup = self.0.call(name);
        Box::pin(async move {
            let all: Vec<std::net::SocketAddr> = lookup.await?.collect();
            let allowed = allowed_receivers(&all);
            if allowed.is_empty() && !all.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the host resolves only to addresses no webhook may reach (link-local, metadata, multicast)",
                ));
            }
            Ok(allowed.into_iter())
        })
    }
}

/// The addresses a webhook may be delivered to, of those a name resolved to.
fn allowed_receivers(addrs: &[std::net::SocketAddr]) -> Vec<std::net::SocketAddr> {
    addrs
        .iter()
        .filter(|a| !super::webhooks::never_a_receiver_ip(a.ip()))
        .copied()
        .collect()
}

/// A client per tick: connections are not kept across ticks (nor across runtimes in tests).
/// `http://` and `https://` (rustls, Mozilla roots from webpki-roots).
fn http_client() -> HttpClient {
    let mut conn = hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(
        ReceiverResolver::default(),
    );
    conn.set_connect_timeout(Some(Duration::from_secs(5)));
    conn.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(conn);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https)
}

async fn send_email(smtp: Option<&SmtpConfig>, c: &Claimed) -> Outcome {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::extension::ClientId;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let Some(cfg) = smtp else {
        return Outcome::Later;
    };
    let payload: Value = serde_json::from_str(&c.payload).unwrap_or(Value::Null);
    let subject = payload["subject"].as_str().unwrap_or_default().to_string();
    let body = payload["body"].as_str().unwrap_or_default().to_string();
    let (Ok(from), Ok(to)) = (
        cfg.from.parse::<lettre::message::Mailbox>(),
        c.target.parse::<lettre::message::Mailbox>(),
    ) else {
        return Outcome::Failed(None, "invalid sender or recipient address".into());
    };
    let msg = match Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
    {
        Ok(m) => m,
        Err(e) => return Outcome::Failed(None, format!("message: {e}")),
    };
    let builder = match cfg.tls.as_str() {
        "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host),
        "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host),
        _ => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            cfg.host.clone(),
        )),
    };
    let b = match builder {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(None, format!("smtp: {e}")),
    };
    let mut b = b
        .port(cfg.port)
        .timeout(Some(SEND_TIMEOUT))
        .hello_name(ClientId::Domain(
            cfg.helo.clone().unwrap_or_else(|| "localhost".into()),
        ));
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        b = b.credentials(Credentials::new(u.clone(), p.clone()));
    }
    let transport: AsyncSmtpTransport<Tokio1Executor> = b.build();
    match tokio::time::timeout(SEND_TIMEOUT * 2, transport.send(msg)).await {
        Err(_) => Outcome::Failed(None, "timeout".into()),
        Ok(Err(e)) => Outcome::Failed(None, format!("smtp: {e}")),
        Ok(Ok(_)) => Outcome::Delivered(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivery_resolver_drops_addresses_no_receiver_lives_at() {
        let a = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        let resolved = [
            a("169.254.169.254:80"),
            a("10.1.2.3:80"),
            a("[fe80::1]:80"),
            a("[::ffff:169.254.169.254]:80"),
            a("127.0.0.1:8080"),
            a("224.0.0.1:80"),
        ];
        assert_eq!(
            allowed_receivers(&resolved),
            vec![a("10.1.2.3:80"), a("127.0.0.1:8080")]
        );
        assert!(allowed_receivers(&[a("169.254.169.254:80")]).is_empty());
    }

    /// Names go through the real system resolver; one that resolves to allowed addresses
    /// (loopback: receivers on the same machine are supported) passes.
    #[tokio::test]
    async fn the_resolver_passes_allowed_names_through() {
        use tower_service::Service;
        let mut r = ReceiverResolver::default();
        let name: hyper_util::client::legacy::connect::dns::Name = "localhost".parse().unwrap();
        std::future::poll_fn(|cx| r.poll_ready(cx)).await.unwrap();
        let addrs: Vec<_> = r.call(name).await.unwrap().collect();
        assert!(
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()),
            "{addrs:?}"
        );
    }

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

    #[test]
    fn smtp_settings_are_checked() {
        let ok = SmtpConfig {
            host: "smtp.example.org".into(),
            port: 587,
            tls: "starttls".into(),
            from: "邻里 <noreply@example.org>".into(),
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        assert!(
            SmtpConfig {
                tls: "ssl3".into(),
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            SmtpConfig {
                from: "nobody".into(),
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            SmtpConfig {
                host: " ".into(),
                ..ok
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Reference value computed independently:
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature("secret", "1700000000", br#"{"a":1}"#),
            "sha256=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
