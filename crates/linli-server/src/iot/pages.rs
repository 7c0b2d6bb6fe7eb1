//! The resident's 一键呼叫 (SOS) button and 平安打卡 (daily check-in) on the web.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use linli_core::{AppError, ErrorKind};
use linli_store::iot::sos::{SosStatus, ToldGroup};

use crate::AppState;
use crate::manifest::Pages;
use crate::web::{Page, WebResult, WebUser, check_csrf, or_page, render};

pub fn pages() -> Pages {
    Pages::new()
        .get("/me/sos", sos_status)
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
    // Post/redirect/get: the status page can be reloaded (and is, while nobody has confirmed)
    // without raising the SOS again.
    Ok(Redirect::to("/me/sos").into_response())
}

#[derive(Template)]
#[template(path = "iot_sos_status.html")]
struct StatusTpl {
    page: Page,
    sos: Option<SosStatus>,
    /// When it was pressed and when it ended (cleared), in words.
    started: String,
    ended: String,
}

impl StatusTpl {
    /// "网格员：王芳、李明" — the group in words, then the names.
    fn told_line(&self, g: &ToldGroup) -> String {
        let group = self.page.t(&format!("web-sos-group-{}", g.group));
        let sep = self.page.t("web-sos-name-separator");
        linli_core::i18n::t_args(
            self.page.lang,
            "web-sos-told",
            &[("group", group), ("names", g.names.join(sep.as_str()))],
        )
    }
}

/// The resident's own SOS: who was told and whether somebody is coming; it reloads itself
/// every ten seconds until somebody confirms.
async fn sos_status(State(s): State<AppState>, user: WebUser) -> WebResult {
    if user.principal.own_households().is_empty() {
        return Err(crate::web::error_page(&user.page, AppError::forbidden()));
    }
    let sos = or_page(&user.page, s.store.own_sos_status(&user.principal).await)?;
    let (started, ended) = match &sos {
        Some(x) => (
            user.page.datetime(&x.started_at),
            user.page.datetime(&x.cleared_at.unwrap_or(x.started_at)),
        ),
        None => (String::new(), String::new()),
    };
    Ok(render(&StatusTpl {
        page: user.page,
        sos,
        started,
        ended,
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
