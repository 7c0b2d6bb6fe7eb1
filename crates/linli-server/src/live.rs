//! Live updates for pages, over server-sent events (`GET /events`). Events come from the store's
//! bounded bus (`linli_store::bus`): a slow browser misses events (and is told to resync) instead
//! of making the server buffer without limit. Each subscriber only receives events about places
//! its grants cover, or events addressed to it; residents also hear `report.*` events of the
//! reports they may see (their own, their household's, published ones of their community), and a
//! unit's staff those of the reports their unit handles or was summoned to.
//! On PostgreSQL, `linli_store::bus_pg` bridges the buses of several instances with
//! LISTEN/NOTIFY, so an event reaches browsers connected to any instance.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast;

use std::sync::Arc;

use linli_core::auth::{Action, Principal, RoleKind};

use crate::AppState;
use crate::manifest::{Audience, BoxFuture, LiveKind};
use crate::web::WebUser;

use linli_store::bus::BusEvent;

/// The modules' declaration for an event kind (kinds are dotted: the module's prefix first).
fn kind_of(kind: &str) -> Option<&'static LiveKind> {
    let prefix = kind.split('.').next().unwrap_or("");
    crate::modules::ALL
        .iter()
        .flat_map(|m| m.live.iter())
        .find(|k| k.prefix == prefix)
}

/// The capability a subscriber needs (in the event's subtree) to be told about an event of this
/// kind; kinds no module declares need the audit right (administrators).
pub fn needs(kind: &str) -> Action {
    kind_of(kind).map_or(Action::AuditRead, |k| k.action)
}

/// Whether the holder of `principal` is told about `e`: events addressed to users reach those
/// users only; others reach whoever holds the kind's capability over the event's place.
pub fn visible_to(e: &BusEvent, principal: &linli_core::auth::Principal) -> bool {
    if !e.users.is_empty() {
        return e.users.iter().any(|u| *u == principal.user_id());
    }
    let action = needs(&e.kind);
    // A unit's staff (property company, department) are not told every event of such a kind
    // in their area: the module's audience decides per event.
    let grant = if kind_of(&e.kind).is_some_and(|k| k.area_roles_only) {
        principal.grant_where(action, |b| b.kind() != RoleKind::Unit)
    } else {
        principal.grant(action)
    };
    grant.is_ok_and(|g| g.allows(action, &e.path))
}

/// What a resident or a unit's staff may hear about reports: their viewer (own and household
/// reports, moderated public reports of their communities; the reports their unit handles or
/// was summoned to), checked in the store for each `report.*` event of one of their communities
/// or their unit's area that their area grants do not already cover. The reports module's
/// audience ([`crate::manifest::LiveKind::audience`]).
struct ReportView {
    store: linli_store::Store,
    viewer: linli_store::reports::Viewer,
}

impl Audience for ReportView {
    fn hears<'a>(&'a self, e: &'a BusEvent) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            // Cheap first: only events inside the resident's own communities, or the unit's
            // area, can be theirs.
            if !e.kind.starts_with("report.")
                || !e.users.is_empty()
                || !(self
                    .viewer
                    .communities
                    .iter()
                    .any(|c| e.path.starts_with(c.as_str()))
                    || self.viewer.works_in(&e.path))
            {
                return false;
            }
            self.store
                .report_visible_id(&self.viewer, &e.id)
                .await
                .unwrap_or(false)
        })
    }
}

/// The reports module's live audience for one subscriber: residents and unit staff only.
pub fn report_audience<'a>(
    s: &'a AppState,
    principal: &'a Principal,
) -> BoxFuture<'a, Option<Arc<dyn Audience>>> {
    Box::pin(async move {
        if principal.own_households().is_empty() && principal.units(Action::ReportRead).is_empty() {
            return None;
        }
        let viewer = s.store.report_viewer(principal).await.ok()?;
        Some(Arc::new(ReportView {
            store: s.store.clone(),
            viewer,
        }) as Arc<dyn Audience>)
    })
}

/// The SSE frames of one delivered event: the event under its own kind, and for reports also a
/// generic `report` frame, so a page follows every report change with one listener.
fn frames(e: &BusEvent) -> Vec<Result<Event, Infallible>> {
    let mut out = vec![Ok(Event::default()
        .event(e.kind.clone())
        .data(e.id.clone()))];
    if e.kind.starts_with("report.") {
        out.push(Ok(Event::default().event("report").data(e.id.clone())));
    }
    out
}

/// Whether the session a stream was opened with is still signed in. Sign-out, a password change
/// and expiry end a session; its open stream then ends instead of telling a signed-out browser
/// more (the cache keeps this to one lookup per session every few seconds).
async fn still_signed_in(s: &AppState, session: &str) -> bool {
    matches!(
        crate::extract::session_principal(s, session).await,
        Ok(Some(_))
    )
}

/// The event stream of the signed-in user.
pub async fn events(
    State(s): State<AppState>,
    user: WebUser,
    parts: axum::http::request::Parts,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = s.store.bus.subscribe();
    let principal = user.principal;
    // The modules' own audiences for this subscriber (residents hearing about their reports).
    let mut audiences: Vec<Arc<dyn Audience>> = Vec::new();
    for k in crate::modules::ALL.iter().flat_map(|m| m.live.iter()) {
        if let Some(factory) = k.audience
            && let Some(a) = factory(&s, &principal).await
        {
            audiences.push(a);
        }
    }
    let resident = audiences;
    let session = crate::extract::cookie(&parts, crate::extract::SESSION_COOKIE)
        .unwrap_or_default()
        .to_string();
    // Ended when the server shuts down, so a graceful stop does not wait for open pages (the
    // browser reconnects, to another instance behind a load balancer).
    let stop = s.shutdown.subscribe();
    let state = (rx, principal, resident, s, session, stop);
    let stream = stream::unfold(
        state,
        |(mut rx, principal, resident, s, session, mut stop)| async move {
            loop {
                let received = tokio::select! {
                    r = rx.recv() => r,
                    _ = stop.wait_for(|down| *down) => return None,
                };
                match received {
                    Ok(e) => {
                        let mut told = visible_to(&e, &principal);
                        for a in &resident {
                            if told {
                                break;
                            }
                            told = a.hears(&e).await;
                        }
                        if told {
                            if !still_signed_in(&s, &session).await {
                                return None;
                            }
                            return Some((
                                stream::iter(frames(&e)),
                                (rx, principal, resident, s, session, stop),
                            ));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let resync = vec![Ok(Event::default().event("resync").data(""))];
                        return Some((
                            stream::iter(resync),
                            (rx, principal, resident, s, session, stop),
                        ));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    )
    .flatten();
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
