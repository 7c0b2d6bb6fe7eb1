//! The in-process event bus: something changed, and where. Modules publish **after** their
//! transaction commits; the server's SSE streams (and, later, other instances through PostgreSQL
//! `LISTEN/NOTIFY`) subscribe. The channel is bounded: a slow subscriber misses events and is told
//! to resync, it never makes the publisher buffer without limit.

use std::sync::{Arc, OnceLock};

use tokio::sync::{broadcast, mpsc};

/// One change. Subscribers filter by `path` (the place subtree the caller may see, for the
/// capability the kind needs) or by `users` (events addressed to particular users, such as a new
/// inbox notification).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BusEvent {
    /// Dotted kind, e.g. `correction`, `report.dispatched`, `alarm.raised`, `inbox`.
    pub kind: String,
    /// The place path of the record, for scope filtering (empty when addressed to users only).
    pub path: String,
    /// The record's id.
    pub id: String,
    /// When non-empty, only these users are told (whatever their scope).
    pub users: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Bus {
    tx: broadcast::Sender<BusEvent>,
    /// This process, so events coming back from other instances can be told from our own.
    instance: Arc<str>,
    /// Where events also go to reach other instances (PostgreSQL `NOTIFY`, see `bus_pg`).
    forward: Arc<OnceLock<mpsc::Sender<BusEvent>>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            tx: broadcast::channel(1024).0,
            instance: linli_core::new_id().into(),
            forward: Arc::default(),
        }
    }
}

impl Bus {
    /// Publish after commit. Having no subscriber is fine. With a cross-instance bridge, the
    /// event is also queued (bounded; dropped with a warning when full) for other instances.
    pub fn publish(&self, e: BusEvent) {
        if let Some(f) = self.forward.get()
            && f.try_send(e.clone()).is_err()
        {
            tracing::warn!(kind = %e.kind, "bus bridge queue full; event not forwarded");
        }
        let _ = self.tx.send(e);
    }

    /// Publish an event that came from another instance (not forwarded again).
    pub fn publish_local(&self, e: BusEvent) {
        let _ = self.tx.send(e);
    }

    /// This process's instance id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Send every published event to `f` as well (once; later calls are ignored).
    pub fn set_forward(&self, f: mpsc::Sender<BusEvent>) -> bool {
        self.forward.set(f).is_ok()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }
}
