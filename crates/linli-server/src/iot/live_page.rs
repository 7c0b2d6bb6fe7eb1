//! The staff live view of community safety (issue #5): the active alarms of the caller's area,
//! most severe first, with acknowledge / clear; the devices with their online state; and the
//! community site plan with each building filled (colour and pattern, plus a text label) by its
//! worst active alarm. The page refreshes its live region when the server announces `alarm.*`
//! events over `/events`.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use linli_core::auth::Action;
use linli_core::iot::Severity;
use linli_store::audit::Actor;
use linli_store::iot::alarms::{Alarm, AlarmQuery};
use linli_store::iot::devices::Device;
use linli_store::registry::places::Place;

use crate::AppState;
use crate::manifest::Pages;
use crate::web::registry::{PlanBuilding, grant, site_plan};
use crate::web::{Page, WebResult, WebUser, check_csrf, or_page, render, urlencode};

pub fn pages() -> Pages {
    Pages::new()
        .get("/staff/safety", live)
        .post("/staff/safety/alarms/{id}/ack", ack)
        .post("/staff/safety/alarms/{id}/clear", clear)
}

/// The severities in order, as the legend lists them.
const LEGEND: [Severity; 5] = [
    Severity::Critical,
    Severity::Major,
    Severity::Minor,
    Severity::Warning,
    Severity::Indeterminate,
];

/// CSS class of a severity (fill colour and hatch pattern).
fn sev_class(s: Severity) -> String {
    format!("sev-{}", s.as_str().to_ascii_lowercase())
}

struct AlarmRow {
    alarm: Alarm,
    place: String,
    sev_class: String,
    sev_label: String,
}

struct BuildingView {
    b: PlanBuilding,
    /// Worst active alarm, if any.
    severity: Option<&'static str>,
    sev_class: String,
    sev_label: String,
    /// Baseline of the second text line (the severity in words).
    ty2: i32,
}

struct DeviceRow {
    d: Device,
    online: bool,
    place: String,
}

struct LegendItem {
    class: String,
    label: String,
}

#[derive(Template)]
#[template(path = "iot_live.html")]
struct LiveTpl {
    page: Page,
    communities: Vec<Place>,
    community: Option<Place>,
    alarms: Vec<AlarmRow>,
    buildings: Vec<BuildingView>,
    devices: Vec<DeviceRow>,
    legend: Vec<LegendItem>,
    can_handle: bool,
    flash: Option<String>,
}

#[derive(Deserialize)]
struct LiveQuery {
    community: Option<String>,
    done: Option<String>,
}

fn sev_label(page: &Page, s: Severity) -> String {
    page.t(&format!("safety-sev-{}", s.as_str().to_ascii_lowercase()))
}

async fn live(State(s): State<AppState>, user: WebUser, Query(q): Query<LiveQuery>) -> WebResult {
    let page = &user.page;
    let g = grant(page, &user.principal, Action::AlarmRead)?;
    // The communities of the caller's area (for the switcher and the default).
    let communities: Vec<Place> = or_page(page, s.store.places(&g, None, Some("community")).await)?
        .into_iter()
        .filter(|c| g.allows(Action::AlarmRead, &c.path))
        .collect();
    let community = match q.community.as_deref().filter(|c| !c.is_empty()) {
        Some(id) => Some(or_page(page, s.store.place(&g, id).await)?),
        None => communities.first().cloned(),
    };
    let alarms = or_page(
        page,
        s.store
            .alarms(
                &g,
                &AlarmQuery {
                    place_id: community.as_ref().map(|c| c.id.clone()),
                    active: Some(true),
                    limit: Some(500),
                },
            )
            .await,
    )?;
    // Severity first (CRITICAL first), then the newest.
    let mut alarms = alarms;
    alarms.sort_by(|a, b| {
        a.severity
            .rank()
            .cmp(&b.severity.rank())
            .then(b.updated_at.cmp(&a.updated_at))
    });
    let ids: Vec<&str> = alarms.iter().map(|a| a.place_id.as_str()).collect();
    let names = or_page(page, s.store.place_names(&ids).await)?;
    let plan = match &community {
        Some(c) => or_page(page, site_plan(&s.store, &g, c).await)?,
        None => Vec::new(),
    };
    let buildings = plan
        .into_iter()
        .map(|b| {
            let worst = alarms
                .iter()
                .filter(|a| a.path.starts_with(&b.path))
                .map(|a| a.severity)
                .min_by_key(|s| s.rank());
            BuildingView {
                severity: worst.map(|s| s.as_str()),
                sev_class: worst.map(sev_class).unwrap_or_else(|| "sev-none".into()),
                sev_label: worst
                    .map(|s| sev_label(page, s))
                    .unwrap_or_else(|| page.t("safety-no-alarm")),
                ty2: b.ty + 24,
                b,
            }
        })
        .collect();
    let alarms = alarms
        .into_iter()
        .map(|a| AlarmRow {
            place: names
                .get(&a.place_id)
                .map(|(_, n)| n.clone())
                .unwrap_or_default(),
            sev_class: sev_class(a.severity),
            sev_label: sev_label(page, a.severity),
            alarm: a,
        })
        .collect();
    let devices = match (&community, user.principal.grant(Action::DeviceRead)) {
        (Some(c), Ok(dg)) => {
            let list = or_page(page, s.store.devices(&dg, Some(&c.path), None, 1000).await)?;
            let threshold = s
                .iot
                .get()
                .map(|i| i.config().offline_after_ms)
                .unwrap_or(30 * 60_000);
            let now = s.store.now_ms();
            let dids: Vec<&str> = list.iter().map(|d| d.place_id.as_str()).collect();
            let dnames = or_page(page, s.store.place_names(&dids).await)?;
            let mut rows: Vec<DeviceRow> = list
                .into_iter()
                .map(|d| DeviceRow {
                    online: d.last_seen.is_some_and(|t| now - t <= threshold),
                    place: dnames
                        .get(&d.place_id)
                        .map(|(_, n)| n.clone())
                        .unwrap_or_default(),
                    d,
                })
                .collect();
            // Offline devices first: they need attention.
            rows.sort_by_key(|r| r.online);
            rows
        }
        _ => Vec::new(),
    };
    let legend = LEGEND
        .iter()
        .map(|s| LegendItem {
            class: sev_class(*s),
            label: sev_label(page, *s),
        })
        .chain(std::iter::once(LegendItem {
            class: "sev-none".into(),
            label: page.t("safety-no-alarm"),
        }))
        .collect();
    let flash = q.done.map(|d| {
        page.t(if d == "cleared" {
            "safety-cleared"
        } else {
            "safety-acked"
        })
    });
    let can_handle = user.principal.can(Action::AlarmHandle);
    Ok(render(&LiveTpl {
        page: user.page,
        communities,
        community,
        alarms,
        buildings,
        devices,
        legend,
        can_handle,
        flash,
    }))
}

#[derive(Deserialize)]
struct HandleForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    community: String,
}

fn back(community: &str, done: &str) -> String {
    if community.is_empty() {
        format!("/staff/safety?done={done}")
    } else {
        format!(
            "/staff/safety?community={}&done={done}",
            urlencode(community)
        )
    }
}

async fn ack(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<HandleForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = grant(&user.page, &user.principal, Action::AlarmHandle)?;
    or_page(
        &user.page,
        s.store
            .ack_alarm(&g, &Actor::from(&user.principal), &id)
            .await,
    )?;
    Ok(Redirect::to(&back(&f.community, "acked")).into_response())
}

async fn clear(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<HandleForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = grant(&user.page, &user.principal, Action::AlarmHandle)?;
    or_page(
        &user.page,
        s.store
            .clear_alarm(&g, &Actor::from(&user.principal), &id)
            .await,
    )?;
    Ok(Redirect::to(&back(&f.community, "cleared")).into_response())
}
