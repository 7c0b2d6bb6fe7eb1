//! The resident's 一键呼叫 (SOS) button and 平安打卡 (daily check-in) on the web.

use askama::Template;
use axum::extract::State;
use serde::Deserialize;

use linli_core::{AppError, ErrorKind};

use crate::AppState;
use crate::manifest::Pages;
use crate::web::{Page, WebResult, WebUser, check_csrf, or_page, render};

pub fn pages() -> Pages {
    Pages::new()
        .post("/me/sos", sos)
        .post("/me/checkin", checkin)
}

#[derive(Template)]
#[template(path = "iot_sos_sent.html")]
struct SentTpl {
    page: Page,
    /// The page's heading (and title): the SOS or the check-in.
    title: String,
    message: String,
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    _csrf: String,
}

async fn own_person(s: &AppState, user: &WebUser) -> Result<String, AppError> {
    if user.principal.own_households().is_empty() {
        return Err(AppError::forbidden());
    }
    s.store
        .own_person_id(&user.principal)
        .await?
        .ok_or(AppError::new(ErrorKind::Forbidden, "iot.sos.no_person"))
}

async fn sos(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let person = or_page(&user.page, own_person(&s, &user).await)?;
    let cfg = s.iot.get().map(|i| i.config().safety).unwrap_or_default();
    or_page(
        &user.page,
        s.store.raise_sos(&person, None, "page", &cfg).await,
    )?;
    let message = user.page.t("web-sos-sent");
    Ok(render(&SentTpl {
        title: user.page.t("web-sos-title"),
        page: user.page,
        message,
    }))
}

async fn checkin(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let person = or_page(&user.page, own_person(&s, &user).await)?;
    or_page(&user.page, s.store.checkin(&person).await)?;
    let message = user.page.t("web-checkin-done");
    Ok(render(&SentTpl {
        title: user.page.t("web-checkin"),
        page: user.page,
        message,
    }))
}
