//! Live updates for pages, over server-sent events (`GET /events`). Events go through a bounded
//! broadcast channel: a slow browser misses events (and is told to reload) instead of making the
//! server buffer without limit. Each subscriber only receives events about places its grants cover.
//! (Fan-out across several instances through PostgreSQL LISTEN/NOTIFY comes with the modules that
//! need it; today an event reaches the browsers connected to the instance that produced it.)

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast;

use linli_core::auth::Action;

use crate::AppState;
use crate::web::WebUser;

/// Something that changed, and where.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// `correction` (a resident asked for a correction) …
    pub kind: &'static str,
    /// The place path of the record, for scope filtering.
    pub path: String,
    pub id: String,
}

impl LiveEvent {
    /// The capability a subscriber needs (in the event's subtree) to be told.
    fn needs(&self) -> Action {
        match self.kind {
            "correction" => Action::CorrectionReview,
            _ => Action::AuditRead,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Live {
    tx: broadcast::Sender<LiveEvent>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            tx: broadcast::channel(256).0,
        }
    }
}

impl Live {
    pub fn publish(&self, e: LiveEvent) {
        // No subscribers is fine.
        let _ = self.tx.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }
}

/// Tell reviewers' open pages that a correction request arrived.
pub async fn publish_correction(s: &AppState, c: &linli_store::registry::corrections::Correction) {
    if let Ok(Some(path)) = s.store.household_path(&c.household_id).await {
        s.live.publish(LiveEvent {
            kind: "correction",
            path,
            id: c.id.clone(),
        });
    }
}

/// The event stream of the signed-in user.
pub async fn events(
    State(s): State<AppState>,
    user: WebUser,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = s.live.subscribe();
    let principal = user.principal;
    let stream = stream::unfold((rx, principal), |(mut rx, principal)| async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if principal.grant(e.needs()).is_ok_and(|g| g.covers(&e.path)) {
                        let ev = Event::default().event(e.kind).data(e.id.clone());
                        return Some((Ok(ev), (rx, principal)));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Some((
                        Ok(Event::default().event("resync").data("")),
                        (rx, principal),
                    ));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
