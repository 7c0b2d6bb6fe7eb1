//! The in-process event bus: something changed, and where. Modules publish **after** their
//! transaction commits; the server's SSE streams (and, later, other instances through PostgreSQL
//! `LISTEN/NOTIFY`) subscribe. The channel is bounded: a slow subscriber misses events and is told
//! to resync, it never makes the publisher buffer without limit.

use tokio::sync::broadcast;

/// One change. Subscribers filter by `path` (the place subtree the caller may see, for the
/// capability the kind needs) or by `users` (events addressed to particular users, such as a new
/// inbox notification).
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl Bus {
    /// Publish after commit. Having no subscriber is fine.
    pub fn publish(&self, e: BusEvent) {
        let _ = self.tx.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }
}
