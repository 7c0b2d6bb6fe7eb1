//! The Linli IoT runtime.
//!
//! Messages come in through the embedded MQTT broker ([`broker`]), an external broker
//! ([`external`]) or HTTP (the server calls [`Iot::ingest_http`]). Each is authenticated and
//! parsed at the edge, then queued (bounded) to one batch writer ([`pipeline`]), which every
//! ~20 ms or N messages commits one transaction with the telemetry rows and the alarms the rules
//! decided, and only then acknowledges: a QoS 1 PUBACK, an external-broker ack or an HTTP
//! response means the message is durable. [`Iot::tick`] runs the timers (silent devices,
//! escalations, missed check-ins, retention) by the store's clock.

pub mod broker;
pub mod external;
pub mod pipeline;
pub mod simulate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use linli_core::iot::{Drop, Event, Telemetry, parse_event, parse_telemetry};
use linli_core::{AppError, AppResult, ErrorKind};
use linli_store::Store;
use linli_store::iot::ReportOpener;
use linli_store::iot::devices::{DeviceAuth, token_hash};
use linli_store::iot::sos::SafetyConfig;

/// Settings of the runtime.
#[derive(Debug, Clone)]
pub struct IotConfig {
    /// Commit a batch after this long …
    pub batch_ms: u64,
    /// … or this many messages, whichever comes first.
    pub batch_max: usize,
    /// Messages waiting for the writer (bounded; QoS 0 beyond it is shed, QoS 1 waits).
    pub queue: usize,
    /// Largest accepted MQTT packet / HTTP body, bytes.
    pub max_payload: usize,
    /// Unacknowledged QoS 1 messages per MQTT connection before it stops reading.
    pub max_inflight: usize,
    pub safety: SafetyConfig,
    /// Raw telemetry older than this is folded into hourly averages.
    pub downsample_after_days: i64,
    /// Telemetry older than this is deleted.
    pub retention_days: i64,
    /// A device is shown offline after this long without data.
    pub offline_after_ms: i64,
}

impl Default for IotConfig {
    fn default() -> Self {
        IotConfig {
            batch_ms: 20,
            batch_max: 8192,
            queue: 65_536,
            max_payload: 64 * 1024,
            max_inflight: 1024,
            safety: SafetyConfig::default(),
            downsample_after_days: 7,
            retention_days: 365,
            offline_after_ms: 30 * 60_000,
        }
    }
}

/// Counters (also exported as Prometheus metrics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages accepted at the edge (authenticated and parsed).
    pub accepted: AtomicU64,
    /// Points committed to storage.
    pub stored: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Messages dropped, by [`Drop`] reason (index of `Drop::ALL`).
    pub dropped: [AtomicU64; 7],
    /// Messages routed to subscribers by the broker, and those shed because a subscriber's
    /// queue was full.
    pub routed: AtomicU64,
    pub route_shed: AtomicU64,
}

impl Stats {
    pub fn dropped(&self, d: Drop) -> u64 {
        let i = Drop::ALL.iter().position(|x| *x == d).unwrap_or(0);
        self.dropped[i].load(Ordering::Relaxed)
    }
    pub fn snapshot(&self) -> Value {
        let mut dropped = serde_json::Map::new();
        for d in Drop::ALL {
            dropped.insert(d.as_str().into(), self.dropped(d).into());
        }
        serde_json::json!({
            "accepted": self.accepted.load(Ordering::Relaxed),
            "stored": self.stored.load(Ordering::Relaxed),
            "batches": self.batches.load(Ordering::Relaxed),
            "routed": self.routed.load(Ordering::Relaxed),
            "route_shed": self.route_shed.load(Ordering::Relaxed),
            "dropped": dropped,
        })
    }
}

/// Called once the message is durable (`true`) or could not be stored (`false`).
pub type Ack = Box<dyn FnOnce(bool) + Send>;

/// One authenticated, parsed message.
pub enum Payload {
    Telemetry(Telemetry),
    Event(Event),
}

pub struct Job {
    pub device: Arc<DeviceAuth>,
    pub payload: Payload,
    pub ack: Option<Ack>,
}

pub(crate) enum Cmd {
    Msg(Job),
    Tick(oneshot::Sender<()>),
    ReloadRules(oneshot::Sender<()>),
}

struct Inner {
    store: Store,
    cfg: IotConfig,
    tx: mpsc::Sender<Cmd>,
    devices: RwLock<HashMap<String, Arc<DeviceAuth>>>,
    by_token: RwLock<HashMap<String, Arc<DeviceAuth>>>,
    stats: Stats,
    reports: RwLock<Option<Arc<dyn ReportOpener>>>,
}

/// Handle to the running IoT runtime. Cheap to clone.
#[derive(Clone)]
pub struct Iot {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Iot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iot").finish_non_exhaustive()
    }
}

impl Iot {
    /// Load devices, rules and alarm state from storage and start the batch writer and the
    /// one-second timer.
    pub async fn start(store: Store, cfg: IotConfig) -> AppResult<Iot> {
        store.ensure_default_rules().await?;
        let (tx, rx) = mpsc::channel(cfg.queue.max(16));
        let iot = Iot {
            inner: Arc::new(Inner {
                store: store.clone(),
                cfg,
                tx,
                devices: RwLock::default(),
                by_token: RwLock::default(),
                stats: Stats::default(),
                reports: RwLock::new(None),
            }),
        };
        iot.reload_devices().await?;
        let writer = pipeline::Writer::load(iot.clone()).await?;
        tokio::spawn(writer.run(rx));
        let weak = Arc::downgrade(&iot.inner);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let (done, _wait) = oneshot::channel();
                // A full queue means the writer is busy; the next second tries again.
                let _ = inner.tx.try_send(Cmd::Tick(done));
            }
        });
        Ok(iot)
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn config(&self) -> &IotConfig {
        &self.inner.cfg
    }
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Plug in the reports module: rules with `open_report` then open repair reports.
    pub fn set_report_opener(&self, opener: Arc<dyn ReportOpener>) {
        *self
            .inner
            .reports
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(opener);
    }
    pub(crate) fn report_opener(&self) -> Option<Arc<dyn ReportOpener>> {
        self.inner
            .reports
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reload the device registry (after devices were added or tokens reset elsewhere).
    pub async fn reload_devices(&self) -> AppResult<()> {
        let all = self.inner.store.device_auth_all().await?;
        let mut by_id = HashMap::new();
        let mut by_token = HashMap::new();
        for d in all {
            let d = Arc::new(d);
            by_token.insert(d.token_hash.clone(), d.clone());
            by_id.insert(d.id.clone(), d);
        }
        *self
            .inner
            .devices
            .write()
            .unwrap_or_else(|e| e.into_inner()) = by_id;
        *self
            .inner
            .by_token
            .write()
            .unwrap_or_else(|e| e.into_inner()) = by_token;
        Ok(())
    }

    /// Re-read the rules (after one was added through the API).
    pub async fn reload_rules(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.tx.send(Cmd::ReloadRules(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Run the timers now (the background task does this every second): silent devices,
    /// escalations, missed check-ins, retention. Tests advance `store.clock` and call this.
    pub async fn tick(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.tx.send(Cmd::Tick(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    pub(crate) fn count_drop(&self, d: Drop) {
        let i = Drop::ALL.iter().position(|x| *x == d).unwrap_or(0);
        self.inner.stats.dropped[i].fetch_add(1, Ordering::Relaxed);
        metrics::counter!("linli_iot_dropped_total", "reason" => d.as_str()).increment(1);
    }

    /// A device by id (registry in memory, then storage for devices added since the start).
    pub async fn device(&self, id: &str) -> Option<Arc<DeviceAuth>> {
        if let Some(d) = self
            .inner
            .devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return Some(d.clone());
        }
        let d = Arc::new(self.inner.store.device_auth(id).await.ok().flatten()?);
        self.remember(&d);
        Some(d)
    }

    fn remember(&self, d: &Arc<DeviceAuth>) {
        self.inner
            .devices
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(d.id.clone(), d.clone());
        self.inner
            .by_token
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(d.token_hash.clone(), d.clone());
    }

    /// Check a device's credentials (MQTT CONNECT: username = id, password = token).
    pub async fn authenticate(&self, id: &str, token: &str) -> Result<Arc<DeviceAuth>, Drop> {
        let d = self.device(id).await.ok_or(Drop::UnknownDevice)?;
        if d.token_hash == token_hash(token) {
            return Ok(d);
        }
        // The token may have been reset since the registry was loaded.
        match self.inner.store.device_auth(id).await.ok().flatten() {
            Some(fresh) if fresh.token_hash == token_hash(token) => {
                let fresh = Arc::new(fresh);
                self.remember(&fresh);
                Ok(fresh)
            }
            _ => Err(Drop::BadToken),
        }
    }

    async fn device_by_token(&self, token: &str) -> Option<Arc<DeviceAuth>> {
        let h = token_hash(token);
        if let Some(d) = self
            .inner
            .by_token
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&h)
        {
            return Some(d.clone());
        }
        let d = Arc::new(
            self.inner
                .store
                .device_by_token(token)
                .await
                .ok()
                .flatten()?,
        );
        self.remember(&d);
        Some(d)
    }

    /// Parse a payload for a topic kind (`telemetry` or `event`).
    pub fn parse(&self, kind: &str, bytes: &[u8]) -> Result<Payload, Drop> {
        if bytes.len() > self.inner.cfg.max_payload {
            return Err(Drop::TooLarge);
        }
        match kind {
            "telemetry" => parse_telemetry(bytes).map(Payload::Telemetry),
            "event" => parse_event(bytes).map(Payload::Event),
            _ => Err(Drop::WrongTopic),
        }
    }

    /// Queue a message, waiting while the queue is full (QoS 1, HTTP).
    pub async fn submit(&self, job: Job) -> Result<(), Drop> {
        self.inner.stats.accepted.fetch_add(1, Ordering::Relaxed);
        self.inner
            .tx
            .send(Cmd::Msg(job))
            .await
            .map_err(|_| Drop::Overload)
    }

    /// Queue a message unless the queue is full (QoS 0: shed under overload, counted).
    pub fn try_submit(&self, job: Job) -> Result<(), Drop> {
        match self.inner.tx.try_send(Cmd::Msg(job)) {
            Ok(()) => {
                self.inner.stats.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(_) => {
                self.count_drop(Drop::Overload);
                Err(Drop::Overload)
            }
        }
    }

    /// HTTP ingest: authenticate the device token, parse, queue, and answer once committed.
    pub async fn ingest_http(&self, token: Option<&str>, kind: &str, body: &[u8]) -> AppResult<()> {
        let fail = |d: Drop| {
            let kind = match d {
                Drop::BadToken | Drop::UnknownDevice => ErrorKind::Unauthorized,
                Drop::TooLarge => ErrorKind::PayloadTooLarge,
                Drop::Overload => ErrorKind::TooManyRequests,
                _ => ErrorKind::BadRequest,
            };
            AppError::new(kind, d.code())
        };
        let Some(device) = (match token {
            Some(t) if !t.is_empty() => self.device_by_token(t).await,
            _ => None,
        }) else {
            self.count_drop(Drop::BadToken);
            return Err(fail(Drop::BadToken));
        };
        let payload = match self.parse(kind, body) {
            Ok(p) => p,
            Err(d) => {
                self.count_drop(d);
                return Err(fail(d));
            }
        };
        let (done, wait) = oneshot::channel();
        let job = Job {
            device,
            payload,
            ack: Some(Box::new(move |ok| {
                let _ = done.send(ok);
            })),
        };
        self.submit(job).await.map_err(fail)?;
        match tokio::time::timeout(Duration::from_secs(30), wait).await {
            Ok(Ok(true)) => Ok(()),
            _ => Err(AppError::internal()),
        }
    }
}
