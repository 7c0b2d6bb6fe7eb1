//! Linli persistence. One `Store` over SQLite or PostgreSQL; modules follow the capability map.
//! Every function that lists or reads scoped data takes a [`linli_core::auth::Grant`], and filters
//! by its subtrees in SQL — the scope check cannot be forgotten by a handler.

pub mod access;
pub mod accounts;
pub mod audit;
pub mod bus;
pub mod bus_pg;
pub mod celebrations;
pub mod clock;
pub mod cluster;
pub mod db;
pub mod db_fast;
pub mod demo;
pub mod iot;
pub mod migrations;
pub mod notify;
pub mod ops;
pub mod platform;
pub mod registry;
pub mod reports;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use linli_core::crypto::FieldCipher;

pub use clock::Clock;
pub use db::{Backend, Db, DbConfig};

/// The handle every part of Linli uses to reach its data. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pub db: Db,
    pub cipher: Arc<FieldCipher>,
    /// Place id → (kind, name): places change rarely and are needed to print every address.
    places_cache: Arc<RwLock<HashMap<String, (String, String)>>>,
    /// The label tree: read by every search, changed by administrators only.
    labels_cache: Arc<RwLock<Option<Vec<registry::labels::Label>>>>,
    /// The time for deadlines, escalations and timers. Tests move it forward.
    pub clock: Clock,
    /// Changes, published after commit, for live pages and other listeners.
    pub bus: bus::Bus,
    /// The group-commit writer of report intake (started on first use).
    report_writer: Arc<tokio::sync::OnceCell<reports::writer::WriterHandle>>,
    /// What the notification outbox queues (e-mail on/off, public URL for links).
    outbox_cfg: Arc<RwLock<notify::outbox::OutboxConfig>>,
    /// The modules' catalogue of actions and roles, and their schema.
    platform: Arc<platform::Platform>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("master key: {0}")]
    Key(String),
}

impl Store {
    /// Connect, migrate, and load (or create on first start) the field-encryption master key.
    pub async fn open(
        cfg: &DbConfig,
        data_dir: &Path,
        master_key_hex: Option<&str>,
        platform: Arc<platform::Platform>,
    ) -> Result<Store, OpenError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| OpenError::DataDir(data_dir.display().to_string(), e))?;
        let cipher = load_or_create_key(data_dir, master_key_hex)?;
        let db = Db::connect(cfg).await?;
        let clock = Clock::default();
        db.migrate(&platform.schema, clock.now_ms()).await?;
        check_master_key(&db, &cipher).await?;
        Ok(Store {
            db,
            cipher: Arc::new(cipher),
            places_cache: Arc::default(),
            labels_cache: Arc::default(),
            clock,
            bus: bus::Bus::default(),
            report_writer: Arc::default(),
            outbox_cfg: Arc::default(),
            platform,
        })
    }

    /// The catalogue of actions and built-in roles every module declared.
    pub fn catalog(&self) -> &linli_core::auth::Catalog {
        &self.platform.catalog
    }

    pub fn backend(&self) -> Backend {
        self.db.backend
    }

    /// Now, in milliseconds (UTC), by the store's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// Bus event: the label tree changed; every instance forgets its copy.
pub const CACHE_LABELS: &str = "cache.labels";
/// Bus event: place names changed; every instance forgets its copy.
pub const CACHE_PLACES: &str = "cache.places";
/// Bus event (local only): events from other instances may have been missed (the `LISTEN`
/// connection was lost); every cache is dropped, as after a lagging receiver.
pub const BUS_RESYNC: &str = "bus.resync";

impl Store {
    fn publish_cache_notice(&self, kind: &str) {
        self.bus.publish(bus::BusEvent {
            kind: kind.into(),
            path: String::new(),
            id: String::new(),
            users: Vec::new(),
        });
    }

    /// Keep this instance's caches in step with the other instances': forget labels or place
    /// names when another instance changed them, and everything when notices may have been
    /// missed (fail closed). Started with the PostgreSQL bus bridge.
    pub(crate) fn follow_cache_notices(&self) {
        use tokio::sync::broadcast::error::RecvError;
        let mut rx = self.bus.subscribe();
        let labels = Arc::downgrade(&self.labels_cache);
        let places = Arc::downgrade(&self.places_cache);
        tokio::spawn(async move {
            loop {
                let event = rx.recv().await;
                let (Some(labels), Some(places)) = (labels.upgrade(), places.upgrade()) else {
                    return;
                };
                let (forget_labels, forget_places) = match &event {
                    Ok(e) if e.kind == CACHE_LABELS => (true, false),
                    Ok(e) if e.kind == CACHE_PLACES => (false, true),
                    Ok(e) if e.kind == BUS_RESYNC => (true, true),
                    Ok(_) => (false, false),
                    Err(RecvError::Lagged(_)) => (true, true),
                    Err(RecvError::Closed) => return,
                };
                if forget_labels {
                    *labels.write().expect("labels cache lock") = None;
                }
                if forget_places {
                    places.write().expect("cache lock").clear();
                }
            }
        });
    }
}

/// The default SQLite URL for a data directory.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("linli.db").display())
}

fn load_or_create_key(data_dir: &Path, given: Option<&str>) -> Result<FieldCipher, OpenError> {
    if let Some(hex) = given {
        return FieldCipher::from_hex(hex).map_err(|e| OpenError::Key(e.to_string()));
    }
    let path = data_dir.join("master.key");
    match std::fs::read_to_string(&path) {
        Ok(hex) => FieldCipher::from_hex(&hex)
            .map_err(|e| OpenError::Key(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let hex = FieldCipher::generate_hex();
            write_secret_file(&path, &hex)
                .map_err(|e| OpenError::DataDir(path.display().to_string(), e))?;
            FieldCipher::from_hex(&hex).map_err(|e| OpenError::Key(e.to_string()))
        }
        Err(e) => Err(OpenError::DataDir(path.display().to_string(), e)),
    }
}

/// A fingerprint of the master key (an HMAC under it, not the key): stored on first start so
/// that a different key — a wrong `master_key`, a restore with another instance's key, a second
/// instance on the same PostgreSQL with its own key — is refused at start instead of silently
/// writing rows nobody can decrypt together.
pub(crate) fn key_check(cipher: &FieldCipher) -> String {
    cipher.blind_index("master-key-check", "linli")
}

/// The first instance to start stores its key's fingerprint; every instance (the first
/// included) then compares with what is stored. The insert is conditional (`ON CONFLICT DO
/// NOTHING`), so instances starting together on an empty database never collide on it: the
/// first insert wins, the others compare with it.
async fn check_master_key(db: &Db, cipher: &FieldCipher) -> Result<(), OpenError> {
    use sqlx::Row;
    let expected = key_check(cipher);
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ('master_key_check', $1) ON CONFLICT (key) DO NOTHING",
    )
    .bind(expected.clone())
    .execute(&mut *tx)
    .await?;
    let stored: String = sqlx::query("SELECT value FROM settings WHERE key = 'master_key_check'")
        .fetch_one(&mut *tx)
        .await?
        .get("value");
    tx.commit().await?;
    if stored == expected {
        Ok(())
    } else {
        Err(OpenError::Key(
            "the master key does not match this database (it was created with another key)".into(),
        ))
    }
}

/// Write a new secret file readable by the owner only; never overwrite an existing key.
pub(crate) fn write_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}
