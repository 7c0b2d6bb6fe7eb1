//! One alarm on a page (`/staff/alarms/{id}`), the link every alarm notice carries: what, where,
//! since when, its history, and whom it concerns — the household, its address, members and
//! their (masked) phones — with the acknowledge and clear buttons. An SOS is answered from here.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use linli_core::auth::Action;
use linli_store::audit::Actor;
use linli_store::iot::alarms::{AlarmHousehold, AlarmView};

use crate::AppState;
use crate::manifest::Pages;
use crate::web::registry::grant;
use crate::web::{Page, WebResult, WebUser, check_csrf, or_page, render};

pub fn pages() -> Pages {
    Pages::new()
        .get("/staff/alarms/{id}", alarm)
        .post("/staff/alarms/{id}/ack", ack)
        .post("/staff/alarms/{id}/clear", clear)
}

#[derive(Template)]
#[template(path = "iot_alarm.html")]
struct AlarmTpl {
    page: Page,
    view: AlarmView,
    place: String,
    household: Option<AlarmHousehold>,
    can_handle: bool,
}

impl AlarmTpl {
    /// An event's detail in words: a notified tier (`family`, `grid`, or role codes) by its
    /// name; other details (a comment) as written.
    fn detail(&self, kind: &str, detail: &str) -> String {
        if kind != "notified" {
            return detail.to_string();
        }
        detail
            .split(',')
            .map(|x| {
                let x = x.trim();
                let tier = format!("web-alarm-tier-{x}");
                if linli_core::i18n::has(self.page.lang, &tier) {
                    self.page.t(&tier)
                } else {
                    self.page.code("role", x)
                }
            })
            .collect::<Vec<_>>()
            .join("、")
    }
    fn severity(&self) -> String {
        self.page.t(&format!(
            "safety-sev-{}",
            self.view.alarm.severity.as_str().to_ascii_lowercase()
        ))
    }
}

async fn alarm(State(s): State<AppState>, user: WebUser, Path(id): Path<String>) -> WebResult {
    let page = &user.page;
    let g = grant(page, &user.principal, Action::AlarmRead)?;
    let view = or_page(page, s.store.alarm(&g, &id).await)?;
    let place = or_page(page, s.store.address(&view.alarm.path).await)?;
    let household = or_page(page, s.store.alarm_household(&user.principal, &id).await)?;
    let can_handle = user.principal.may(Action::AlarmHandle, &view.alarm.path);
    Ok(render(&AlarmTpl {
        page: user.page,
        view,
        place,
        household,
        can_handle,
    }))
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    _csrf: String,
}

async fn ack(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = grant(&user.page, &user.principal, Action::AlarmHandle)?;
    or_page(
        &user.page,
        s.store
            .ack_alarm(&g, &Actor::from(&user.principal), &id)
            .await,
    )?;
    Ok(Redirect::to(&format!("/staff/alarms/{id}")).into_response())
}

async fn clear(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = grant(&user.page, &user.principal, Action::AlarmHandle)?;
    or_page(
        &user.page,
        s.store
            .clear_alarm(&g, &Actor::from(&user.principal), &id)
            .await,
    )?;
    Ok(Redirect::to(&format!("/staff/alarms/{id}")).into_response())
}
