//! Live updates for pages, over server-sent events (`GET /events`). Events come from the store's
//! bounded bus (`linli_store::bus`): a slow browser misses events (and is told to resync) instead
//! of making the server buffer without limit. Each subscriber only receives events about places
//! its grants cover, or events addressed to it.
//! On PostgreSQL, `linli_store::bus_pg` bridges the buses of several instances with
//! LISTEN/NOTIFY, so an event reaches browsers connected to any instance.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast;

use linli_core::auth::Action;

use crate::AppState;
use crate::web::WebUser;

use linli_store::bus::BusEvent;

/// The capability a subscriber needs (in the event's subtree) to be told about an event of this
/// kind. Kinds are dotted: the module comes first.
pub fn needs(kind: &str) -> Action {
    match kind.split('.').next().unwrap_or("") {
        "correction" => Action::CorrectionReview,
        "report" => Action::ReportRead,
        "alarm" | "device" => Action::AlarmRead,
        "access" => Action::AccessRead,
        _ => Action::AuditRead,
    }
}

/// Whether the holder of `principal` is told about `e`: events addressed to users reach those
/// users only; others reach whoever holds the kind's capability over the event's place.
pub fn visible_to(e: &BusEvent, principal: &linli_core::auth::Principal) -> bool {
    if !e.users.is_empty() {
        return e.users.iter().any(|u| *u == principal.user_id);
    }
    principal
        .grant(needs(&e.kind))
        .is_ok_and(|g| g.covers(&e.path))
}

/// Tell reviewers' open pages that a correction request arrived.
pub async fn publish_correction(s: &AppState, c: &linli_store::registry::corrections::Correction) {
    if let Ok(Some(path)) = s.store.household_path(&c.household_id).await {
        s.store.bus.publish(BusEvent {
            kind: "correction".into(),
            path,
            id: c.id.clone(),
            users: Vec::new(),
        });
    }
}

/// Whether the session a stream was opened with is still signed in. Sign-out, a password change
/// and expiry end a session; its open stream then ends instead of telling a signed-out browser
/// more (the cache keeps this to one lookup per session every few seconds).
async fn still_signed_in(s: &AppState, session: &str) -> bool {
    use crate::auth_cache::session_key;
    if s.auth_cache.get(&session_key(session)).is_some() {
        return true;
    }
    match s.store.session(session).await {
        Ok(Some((p, csrf))) => {
            s.auth_cache.put(&session_key(session), &p, Some(csrf));
            true
        }
        _ => false,
    }
}

/// The event stream of the signed-in user.
pub async fn events(
    State(s): State<AppState>,
    user: WebUser,
    parts: axum::http::request::Parts,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = s.store.bus.subscribe();
    let principal = user.principal;
    let session = crate::extract::cookie(&parts, crate::extract::SESSION_COOKIE)
        .unwrap_or_default()
        .to_string();
    let state = (rx, principal, s, session);
    let stream = stream::unfold(state, |(mut rx, principal, s, session)| async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if visible_to(&e, &principal) {
                        if !still_signed_in(&s, &session).await {
                            return None;
                        }
                        let ev = Event::default().event(e.kind.clone()).data(e.id.clone());
                        return Some((Ok(ev), (rx, principal, s, session)));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Some((
                        Ok(Event::default().event("resync").data("")),
                        (rx, principal, s, session),
                    ));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
