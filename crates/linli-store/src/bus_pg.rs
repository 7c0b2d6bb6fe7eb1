//! Cross-instance fan-out of the event bus on PostgreSQL: every event published here is also
//! sent with `pg_notify('linli_bus', json)`, and a listener re-publishes the events of other
//! instances on the local bus (our own come back too and are recognized by the instance id).
//! On SQLite there is one instance and this is not started.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::mpsc;

use crate::bus::BusEvent;
use crate::{Backend, Store};

/// The PostgreSQL channel name.
pub const CHANNEL: &str = "linli_bus";
/// PostgreSQL refuses payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7_900;

#[derive(Serialize, Deserialize)]
struct Wire {
    from: String,
    #[serde(flatten)]
    event: BusEvent,
}

impl Store {
    /// Start the bridge (PostgreSQL only; returns false on SQLite). Call once per process.
    pub async fn start_pg_bus(&self) -> Result<bool, sqlx::Error> {
        if self.backend() != Backend::Postgres {
            return Ok(false);
        }
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&self.db.url)
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        let (tx, mut rx) = mpsc::channel::<BusEvent>(1024);
        if !self.bus.set_forward(tx) {
            return Ok(true);
        }
        self.follow_cache_notices();
        let me = self.bus.instance().to_string();
        let from = me.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let payload = match serde_json::to_string(&Wire {
                    from: from.clone(),
                    event,
                }) {
                    Ok(p) => p,
                    Err(_) => continue,
                };
                if payload.len() > MAX_PAYLOAD {
                    tracing::warn!(
                        bytes = payload.len(),
                        "bus event too large for NOTIFY; not forwarded"
                    );
                    continue;
                }
                if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(payload)
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(error = %e, "bus NOTIFY failed");
                }
            }
        });
        let bus = self.bus.clone();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => match serde_json::from_str::<Wire>(n.payload()) {
                        Ok(w) if w.from != me => bus.publish_local(w.event),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "bad bus payload"),
                    },
                    Err(e) => {
                        // The listener reconnects on the next recv; events in between are
                        // missed: caches are dropped (fail closed), pages resync on their next
                        // event.
                        tracing::warn!(error = %e, "bus LISTEN connection lost");
                        bus.publish_local(BusEvent {
                            kind: crate::BUS_RESYNC.into(),
                            path: String::new(),
                            id: String::new(),
                            users: Vec::new(),
                        });
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(true)
    }
}
