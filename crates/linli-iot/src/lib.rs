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
mod sessions;
pub mod simulate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use linli_core::iot::{Drop, Event, Telemetry, parse_event, parse_telemetry};
use linli_core::{AppError, AppResult, ErrorKind};
use linli_store::Store;
use linli_store::bus::BusEvent;
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
    /// Messages waiting for the writer (bounded; QoS 0 beyond it is shed, QoS 1 waits) …
    pub queue: usize,
    /// … and their payload bytes (the same: a 64 KiB message counts for its size, not as one).
    pub queue_bytes: usize,
    /// Largest accepted MQTT packet / HTTP body, bytes.
    pub max_payload: usize,
    /// Unacknowledged QoS 1 messages per MQTT connection before it stops reading …
    pub max_inflight: usize,
    /// … and their payload bytes.
    pub inflight_bytes: usize,
    /// Topic filters one MQTT connection may hold; further ones get SUBACK 0x80.
    pub max_subscriptions: usize,
    /// Bytes of routed messages waiting to be written to one subscriber (beyond: shed, counted).
    pub out_queue_bytes: usize,
    /// A write to a client that has waited this long (the client does not read) closes the
    /// connection.
    pub write_timeout_ms: u64,
    /// The longest keep-alive granted, seconds: a client asking for 0 (none) or more gets this,
    /// and is disconnected after 1.5 × it without a packet.
    pub max_keep_alive_secs: u16,
    /// Every this many seconds, the device cache is reloaded and live sessions whose token is no
    /// longer current are closed (the backstop when a revocation event from another instance was
    /// missed).
    pub revalidate_secs: u64,
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
            queue_bytes: 64 << 20,
            max_payload: 64 * 1024,
            max_inflight: 1024,
            inflight_bytes: 4 << 20,
            max_subscriptions: 16,
            out_queue_bytes: 1 << 20,
            write_timeout_ms: 30_000,
            max_keep_alive_secs: 1200,
            revalidate_secs: 60,
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
    /// MQTT sessions closed because their device's credentials were revoked.
    pub sessions_revoked: AtomicU64,
    /// Topic filters refused (SUBACK 0x80) because the connection held the maximum.
    pub subscribe_refused: AtomicU64,
    /// MQTT connections closed because the client did not read (a write timed out).
    pub slow_clients: AtomicU64,
    /// Batches that failed every attempt (their messages were refused, not acknowledged).
    pub failed_batches: AtomicU64,
}

/// Whether this instance's consumer makes progress, for `/readyz` and `/metrics`: a writer
/// stuck in one batch, batches that keep failing, or an external broker out of reach all take
/// the instance out of the load balancer's rotation until they pass. Wall-clock times (ms).
#[derive(Debug, Default)]
pub struct Health {
    busy_since: AtomicI64,
    last_failure: AtomicI64,
    broker_down_since: AtomicI64,
    /// External broker: the subscription is not in place yet (messages published now would
    /// find no subscriber in a new group).
    unsubscribed: std::sync::atomic::AtomicBool,
}

/// A batch running longer than this, a failure more recent than this, or a broker unreachable
/// for longer than this makes the consumer unhealthy.
const UNHEALTHY_AFTER_MS: i64 = 30_000;

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Health {
    pub(crate) fn busy(&self) {
        self.busy_since.store(wall_ms(), Ordering::Relaxed);
    }
    pub(crate) fn committed(&self) {
        self.busy_since.store(0, Ordering::Relaxed);
    }
    pub(crate) fn failed(&self) {
        self.busy_since.store(0, Ordering::Relaxed);
        self.last_failure.store(wall_ms(), Ordering::Relaxed);
    }
    pub(crate) fn awaiting_subscription(&self) {
        self.unsubscribed.store(true, Ordering::Relaxed);
    }
    pub(crate) fn subscribed(&self) {
        self.unsubscribed.store(false, Ordering::Relaxed);
    }
    pub(crate) fn broker_up(&self) {
        self.broker_down_since.store(0, Ordering::Relaxed);
    }
    pub(crate) fn broker_down(&self) {
        let _ = self.broker_down_since.compare_exchange(
            0,
            wall_ms(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// What is wrong, as a stable code, or None when the consumer is healthy.
    pub fn problem(&self) -> Option<&'static str> {
        let now = wall_ms();
        let since = |a: &AtomicI64| {
            let t = a.load(Ordering::Relaxed);
            (t > 0).then(|| now - t)
        };
        if since(&self.busy_since).is_some_and(|ms| ms > UNHEALTHY_AFTER_MS) {
            return Some("iot_writer_stuck");
        }
        if since(&self.last_failure).is_some_and(|ms| ms < UNHEALTHY_AFTER_MS) {
            return Some("iot_batches_failing");
        }
        if since(&self.broker_down_since).is_some_and(|ms| ms > UNHEALTHY_AFTER_MS) {
            return Some("mqtt_broker_unreachable");
        }
        if self.unsubscribed.load(Ordering::Relaxed) {
            return Some("mqtt_not_subscribed");
        }
        None
    }
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
            "sessions_revoked": self.sessions_revoked.load(Ordering::Relaxed),
            "subscribe_refused": self.subscribe_refused.load(Ordering::Relaxed),
            "slow_clients": self.slow_clients.load(Ordering::Relaxed),
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
    /// Size of the message as received, charged against the queue's byte budget.
    pub bytes: usize,
}

pub(crate) enum Cmd {
    /// A message and its share of the queue's byte budget (returned when its batch is done).
    Msg(Job, OwnedSemaphorePermit),
    Tick(oneshot::Sender<()>),
    ReloadRules(oneshot::Sender<()>),
}

struct Inner {
    store: Store,
    cfg: IotConfig,
    tx: mpsc::Sender<Cmd>,
    /// The byte budget of the queue (`queue_bytes`).
    queue_bytes: Arc<Semaphore>,
    devices: RwLock<HashMap<String, Arc<DeviceAuth>>>,
    by_token: RwLock<HashMap<String, Arc<DeviceAuth>>>,
    /// Bumped by every revocation, so an authentication that read the store before it does not
    /// put the old credentials back into the caches (see `remember`).
    revocations: AtomicU64,
    /// Live MQTT sessions of the embedded broker, by device.
    sessions: sessions::Sessions,
    stats: Stats,
    pub(crate) health: Health,
    reports: RwLock<Option<Arc<dyn ReportOpener>>>,
    /// Set once when the process shuts down: the broker consumers drain and disconnect.
    shutdown: tokio::sync::watch::Sender<bool>,
    /// The broker consumers' tasks, awaited at shutdown.
    consumers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
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
        let queue_bytes = Arc::new(Semaphore::new(
            cfg.queue_bytes
                .clamp(cfg.max_payload.max(1), Semaphore::MAX_PERMITS),
        ));
        // Listen before loading, so no revocation falls between the load and the listening.
        let bus = store.bus.subscribe();
        let iot = Iot {
            inner: Arc::new(Inner {
                store: store.clone(),
                cfg,
                tx,
                queue_bytes,
                devices: RwLock::default(),
                by_token: RwLock::default(),
                revocations: AtomicU64::new(0),
                sessions: sessions::Sessions::default(),
                stats: Stats::default(),
                health: Health::default(),
                reports: RwLock::new(None),
                shutdown: tokio::sync::watch::channel(false).0,
                consumers: std::sync::Mutex::default(),
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
        tokio::spawn(revocations(Arc::downgrade(&iot.inner), bus));
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
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    pub(crate) fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    pub(crate) fn register_consumer(&self, task: tokio::task::JoinHandle<()>) {
        let mut v = self
            .inner
            .consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        v.retain(|t| !t.is_finished());
        v.push(task);
    }

    /// Shutting down: every external-broker consumer stops taking messages, waits for the
    /// acknowledgements of what it took (stored by then) to go out, and disconnects keeping
    /// its session (at most ten seconds in all).
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let tasks = std::mem::take(
            &mut *self
                .inner
                .consumers
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            for t in tasks {
                let _ = t.await;
            }
        })
        .await;
    }
    /// Messages waiting for the batch writer.
    pub fn queued(&self) -> usize {
        self.inner.tx.max_capacity() - self.inner.tx.capacity()
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
        // A revocation handled while the list was read may be newer than the list: read again.
        for _ in 0..3 {
            let epoch = self.revocation_epoch();
            let all = self.inner.store.device_auth_all().await?;
            let mut by_id = HashMap::new();
            let mut by_token = HashMap::new();
            for d in all {
                let d = Arc::new(d);
                by_token.insert(d.token_hash.clone(), d.clone());
                by_id.insert(d.id.clone(), d);
            }
            let mut devices = self
                .inner
                .devices
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if self.revocation_epoch() != epoch {
                continue;
            }
            *devices = by_id;
            *self
                .inner
                .by_token
                .write()
                .unwrap_or_else(|e| e.into_inner()) = by_token;
            return Ok(());
        }
        Ok(())
    }

    /// A device's credentials changed (token reset, disabled, deleted): read it again, replace
    /// it in the caches (the old token stops working for HTTP ingest at once) and close its
    /// live MQTT sessions that authenticated otherwise. Returns the sessions closed. Called on
    /// every instance through the bus event `device.revoked`
    /// ([`linli_store::iot::devices::REVOKED`]); the instance that made the change also calls it
    /// directly, so its own sessions are gone when the API answers.
    pub async fn revoke_device(&self, id: &str) -> AppResult<usize> {
        self.inner.revocations.fetch_add(1, Ordering::SeqCst);
        // When storage cannot be read, fail closed: forget the device and end its sessions
        // (it authenticates again once storage answers).
        let read = self.inner.store.device_auth(id).await;
        let fresh = read.as_ref().ok().cloned().flatten().map(Arc::new);
        {
            let mut devices = self
                .inner
                .devices
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let mut by_token = self
                .inner
                .by_token
                .write()
                .unwrap_or_else(|e| e.into_inner());
            by_token.retain(|_, d| d.id != id);
            devices.remove(id);
            if let Some(d) = &fresh {
                devices.insert(d.id.clone(), d.clone());
                by_token.insert(d.token_hash.clone(), d.clone());
            }
        }
        let closed = self.close_stale(id, fresh.as_deref());
        read.map(|_| closed)
    }

    /// The backstop of revocation: reload every device and close the live sessions whose
    /// credentials are no longer current (run every `revalidate_secs`, and when revocation
    /// events may have been missed). Returns the sessions closed.
    pub async fn revalidate(&self) -> AppResult<usize> {
        self.reload_devices().await?;
        let mut closed = 0;
        for (id, hashes) in self.inner.sessions.snapshot() {
            let current = self
                .inner
                .devices
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .map(|d| d.token_hash.clone());
            // A session that does not match the list: read that device again before closing
            // (the list may predate a device added or a token issued since).
            if hashes.iter().any(|h| Some(h) != current.as_ref()) {
                closed += self.revoke_device(&id).await?;
            }
        }
        Ok(closed)
    }

    fn close_stale(&self, id: &str, current: Option<&DeviceAuth>) -> usize {
        let n = self
            .inner
            .sessions
            .close_stale(id, current.map(|d| d.token_hash.as_str()));
        if n > 0 {
            self.inner
                .stats
                .sessions_revoked
                .fetch_add(n as u64, Ordering::Relaxed);
            metrics::counter!("linli_mqtt_sessions_revoked_total").increment(n as u64);
            tracing::info!(
                device = id,
                sessions = n,
                "device credentials revoked; sessions closed"
            );
        }
        n
    }

    pub(crate) fn sessions(&self) -> &sessions::Sessions {
        &self.inner.sessions
    }

    /// Live MQTT sessions of the embedded broker on this instance.
    pub fn live_sessions(&self) -> usize {
        self.inner.sessions.len()
    }

    pub(crate) fn revocation_epoch(&self) -> u64 {
        self.inner.revocations.load(Ordering::SeqCst)
    }

    /// Whether credentials checked at `epoch` are still current: when a revocation was handled
    /// since, the store is asked again.
    pub(crate) async fn still_valid(&self, d: &DeviceAuth, epoch: u64) -> bool {
        if self.revocation_epoch() == epoch {
            return true;
        }
        matches!(
            self.inner.store.device_auth(&d.id).await,
            Ok(Some(fresh)) if fresh.token_hash == d.token_hash
        )
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
        let epoch = self.revocation_epoch();
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
        self.remember(&d, epoch);
        Some(d)
    }

    /// Cache a device read from storage, unless a revocation was handled since the read began
    /// (`epoch`): the read may predate it, and must not bring an old token back.
    fn remember(&self, d: &Arc<DeviceAuth>, epoch: u64) {
        let mut devices = self
            .inner
            .devices
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if self.revocation_epoch() != epoch {
            return;
        }
        let mut by_token = self
            .inner
            .by_token
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(old) = devices.insert(d.id.clone(), d.clone())
            && old.token_hash != d.token_hash
        {
            by_token.remove(&old.token_hash);
        }
        by_token.insert(d.token_hash.clone(), d.clone());
    }

    /// Check a device's credentials (MQTT CONNECT: username = id, password = token).
    pub async fn authenticate(&self, id: &str, token: &str) -> Result<Arc<DeviceAuth>, Drop> {
        let epoch = self.revocation_epoch();
        let d = self.device(id).await.ok_or(Drop::UnknownDevice)?;
        if d.token_hash == token_hash(token) {
            return Ok(d);
        }
        // The token may have been reset since the registry was loaded.
        match self.inner.store.device_auth(id).await.ok().flatten() {
            Some(fresh) if fresh.token_hash == token_hash(token) => {
                let fresh = Arc::new(fresh);
                self.remember(&fresh, epoch);
                Ok(fresh)
            }
            _ => Err(Drop::BadToken),
        }
    }

    async fn device_by_token(&self, token: &str) -> Option<Arc<DeviceAuth>> {
        let epoch = self.revocation_epoch();
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
        self.remember(&d, epoch);
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

    /// A message's share of the queue's byte budget.
    fn charge(&self, job: &Job) -> u32 {
        let most = self
            .inner
            .cfg
            .queue_bytes
            .max(self.inner.cfg.max_payload)
            .max(1);
        u32::try_from(job.bytes.clamp(1, most)).unwrap_or(u32::MAX)
    }

    /// Queue a message, waiting while the queue is full (QoS 1, HTTP).
    pub async fn submit(&self, job: Job) -> Result<(), Drop> {
        let budget = self
            .inner
            .queue_bytes
            .clone()
            .acquire_many_owned(self.charge(&job))
            .await
            .map_err(|_| Drop::Overload)?;
        self.inner.stats.accepted.fetch_add(1, Ordering::Relaxed);
        self.inner
            .tx
            .send(Cmd::Msg(job, budget))
            .await
            .map_err(|_| Drop::Overload)
    }

    /// Queue a message unless the queue is full (QoS 0: shed under overload, counted).
    pub fn try_submit(&self, job: Job) -> Result<(), Drop> {
        let sent = match self
            .inner
            .queue_bytes
            .clone()
            .try_acquire_many_owned(self.charge(&job))
        {
            Ok(budget) => self.inner.tx.try_send(Cmd::Msg(job, budget)).is_ok(),
            Err(_) => false,
        };
        if sent {
            self.inner.stats.accepted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        } else {
            self.count_drop(Drop::Overload);
            Err(Drop::Overload)
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
            bytes: body.len(),
        };
        self.submit(job).await.map_err(fail)?;
        match tokio::time::timeout(Duration::from_secs(30), wait).await {
            Ok(Ok(true)) => Ok(()),
            _ => Err(AppError::internal()),
        }
    }
}

/// Follow the bus: `device.revoked` (from this instance or, through PostgreSQL `LISTEN/NOTIFY`,
/// from another) revokes the device here; `iot.rules_changed` reloads the alarm rules; after missed events (a lagging receiver) everything
/// is revalidated. Every `revalidate_secs` everything is revalidated anyway, the backstop for a
/// notification lost between instances. Ends with the runtime.
async fn revocations(
    weak: std::sync::Weak<Inner>,
    mut bus: tokio::sync::broadcast::Receiver<BusEvent>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let period = match weak.upgrade() {
        Some(inner) => Duration::from_secs(inner.cfg.revalidate_secs.max(1)),
        None => return,
    };
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let event = tokio::select! {
            e = bus.recv() => e,
            _ = every.tick() => Err(RecvError::Lagged(0)),
        };
        let Some(inner) = weak.upgrade() else { break };
        let iot = Iot { inner };
        match event {
            Ok(e) if e.kind == linli_store::iot::devices::REVOKED => {
                if let Err(err) = iot.revoke_device(&e.id).await {
                    tracing::warn!(device = %e.id, error = %err, "revoking a device; revalidating all");
                    let _ = iot.revalidate().await;
                }
            }
            Ok(e) if e.kind == linli_store::iot::rules::RULES_CHANGED => iot.reload_rules().await,
            Ok(e) if e.kind == linli_store::BUS_RESYNC => {
                iot.reload_rules().await;
                if let Err(err) = iot.revalidate().await {
                    tracing::warn!(error = %err, "revalidating device sessions");
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {
                iot.reload_rules().await;
                if let Err(err) = iot.revalidate().await {
                    tracing::warn!(error = %err, "revalidating device sessions");
                }
            }
            Err(RecvError::Closed) => break,
        }
    }
}
