//! The delivery worker: the one place where Linli talks to the outside world about what happened
//! inside it. The store keeps the durable outbox (rows queued in the transaction of the change,
//! claimed, outcomes recorded — `linli_store::notify::outbox`); this crate owns the network:
//! one [`Channel`] per transport, looked up by the row's `channel` column.
//!
//! ```text
//!  store (transaction of the change) ──INSERT outbox row──▶ outbox table
//!  Worker::tick ── store.outbox_claim ──▶ rows (leased; SKIP LOCKED on PostgreSQL)
//!               ── channel.send(row) ──▶ network (webhook: HTTP POST, email: SMTP, …)
//!               ── store.outbox_record(row, outcome) ──▶ delivered / retry / dead
//! ```
//!
//! A new outside call (SMS, WeChat template messages, payment notifications) is a new
//! [`Channel`] registered with [`Worker::with`], and a new `channel` value its module queues
//! with the store; claims, leases, retries with backoff, dead letters, the delivery log and the
//! retry of dead letters come with the outbox and need nothing new.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use linli_core::AppResult;
use linli_store::Store;
use linli_store::notify::outbox::{Claimed, KEEP_MS, OutboxConfig, Outcome};

pub mod smtp;
pub mod webhook;

pub use smtp::{SmtpChannel, SmtpConfig};
pub use webhook::WebhookChannel;

/// Rows claimed per round.
pub const BATCH: i64 = 32;
/// Time allowed for one webhook request or one SMTP conversation.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The future a channel returns for one row.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// One transport of the worker. `send` makes one attempt for one claimed row and says how it
/// went; it never panics on bad input and never records anything itself (the worker records
/// the [`Outcome`] in the store). Timeouts are the channel's business (at most a minute: the
/// row's lease is two).
pub trait Channel: Send + Sync + 'static {
    /// The `outbox.channel` value this transport sends (`webhook`, `email`, …).
    fn name(&self) -> &'static str;
    /// One attempt for one row.
    fn send<'a>(&'a self, store: &'a Store, row: &'a Claimed) -> SendFuture<'a>;
}

/// What the configuration enables.
#[derive(Debug, Clone, Default)]
pub struct DeliveryConfig {
    /// E-mail is queued and sent only when set.
    pub smtp: Option<SmtpConfig>,
    /// Site address for links in e-mails, e.g. `https://linli.example.org` (empty: relative).
    pub public_url: String,
}

/// Claims due outbox rows, sends each through its channel, records the outcome. Several
/// workers (in one process or in several instances) may run against one database: each row is
/// claimed by one of them at a time.
#[derive(Clone)]
pub struct Worker {
    store: Store,
    channels: HashMap<&'static str, Arc<dyn Channel>>,
}

impl Worker {
    /// A worker without channels (add them with [`Worker::with`]).
    pub fn new(store: Store) -> Worker {
        Worker {
            store,
            channels: HashMap::new(),
        }
    }

    /// The worker `linli serve` runs: webhooks always, e-mail when SMTP is configured; and the
    /// store told what to queue (e-mails only when they can be sent, links with `public_url`).
    pub fn configured(store: &Store, cfg: &DeliveryConfig) -> Worker {
        store.configure_outbox(OutboxConfig {
            email: cfg.smtp.is_some(),
            public_url: cfg.public_url.clone(),
        });
        let mut w = Worker::new(store.clone()).with(WebhookChannel::new());
        if let Some(smtp) = &cfg.smtp {
            w = w.with(SmtpChannel::new(smtp.clone()));
        }
        w
    }

    /// Add (or replace) the transport for one channel.
    pub fn with(mut self, channel: impl Channel) -> Worker {
        self.channels.insert(channel.name(), Arc::new(channel));
        self
    }

    /// The channels this worker sends, sorted.
    pub fn channels(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.channels.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// One round: claim what is due (up to [`BATCH`] rows), send them concurrently, record
    /// each outcome; returns how many rows were claimed. A row whose channel this worker does
    /// not run is put back for a minute ([`Outcome::Later`]; another instance, or this one
    /// after a configuration change, may send it).
    pub async fn tick(&self) -> AppResult<usize> {
        let claimed = self.store.outbox_claim(BATCH).await?;
        let n = claimed.len();
        let mut set = tokio::task::JoinSet::new();
        for row in claimed {
            let store = self.store.clone();
            let channel = self.channels.get(row.channel.as_str()).cloned();
            set.spawn(async move {
                let outcome = match channel {
                    Some(ch) => ch.send(&store, &row).await,
                    None => Outcome::Later,
                };
                store.outbox_record(&row, outcome).await
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

    /// Run until the process ends (started by `linli serve`): a round every 2 seconds, at once
    /// again while there is work; finished deliveries leave the log after [`KEEP_MS`].
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut last_purge = 0_i64;
            loop {
                let now = self.store.now_ms();
                if now - last_purge > 3_600_000 {
                    last_purge = now;
                    if let Err(e) = self.store.outbox_purge(KEEP_MS).await {
                        tracing::warn!(error = %e, "outbox purge failed");
                    }
                }
                match self.tick().await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "outbox tick failed"),
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    }
}
