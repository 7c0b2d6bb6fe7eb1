//! The celebrations' pages: residents see their community's celebrations, share one and
//! congratulate (`/me/celebrations`); staff who moderate see them all and hide one
//! (`/staff/celebrations`).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use linli_core::AppError;
use linli_core::celebrations::KINDS;
use linli_store::celebrations::{Celebration, NewCelebration};

use crate::AppState;
use crate::manifest::Pages;
use crate::web::{FieldErrors, Page, WebResult, WebUser, check_csrf, error_page, or_page, render};

pub fn pages() -> Pages {
    Pages::new()
        .get("/me/celebrations", mine)
        .post("/me/celebrations", share)
        .post("/me/celebrations/{id}/congratulate", congratulate)
        .get("/staff/celebrations", staff)
        .post("/staff/celebrations/{id}/hide", hide)
}

#[derive(Template)]
#[template(path = "celebrations/list.html")]
struct ListTpl {
    page: Page,
    items: Vec<Celebration>,
    /// Residents share and congratulate; staff hide.
    resident: bool,
    kinds: Vec<(&'static str, String)>,
    form: ShareForm,
    errors: FieldErrors,
    flash: Option<String>,
}

#[derive(Deserialize, Default)]
struct ShareForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    _csrf: String,
}

#[derive(Deserialize)]
struct Flash {
    done: Option<String>,
}

fn kinds(page: &Page) -> Vec<(&'static str, String)> {
    KINDS
        .iter()
        .map(|k| (*k, page.t(&format!("celebration-kind-{k}"))))
        .collect()
}

async fn list_page(
    s: &AppState,
    user: WebUser,
    resident: bool,
    form: ShareForm,
    errors: FieldErrors,
    flash: Option<String>,
) -> WebResult {
    let items = or_page(&user.page, s.store.celebrations(&user.principal).await)?;
    let status = if errors.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::BAD_REQUEST
    };
    let tpl = ListTpl {
        kinds: kinds(&user.page),
        page: user.page,
        items,
        resident,
        form,
        errors,
        flash,
    };
    Ok((status, render(&tpl)).into_response())
}

async fn mine(State(s): State<AppState>, user: WebUser, Query(f): Query<Flash>) -> WebResult {
    let flash = f.done.map(|d| {
        user.page.t(if d == "shared" {
            "celebration-shared"
        } else {
            "celebration-congratulated"
        })
    });
    let form = ShareForm {
        kind: "birth".into(),
        ..ShareForm::default()
    };
    list_page(&s, user, true, form, FieldErrors::default(), flash).await
}

async fn share(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<ShareForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let new = NewCelebration {
        kind: f.kind.clone(),
        title: f.title.clone(),
        message: f.message.clone(),
    };
    match s.store.share_celebration(&user.principal, new).await {
        Ok(_) => Ok(Redirect::to("/me/celebrations?done=shared").into_response()),
        Err(e) if e.kind.status() == 400 => {
            let errors = FieldErrors::from_app(&user.page, &e, "title");
            list_page(&s, user, true, f, errors, None).await
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}

async fn congratulate(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    or_page(&user.page, s.store.congratulate(&user.principal, &id).await)?;
    Ok(Redirect::to("/me/celebrations?done=congratulated").into_response())
}

async fn staff(State(s): State<AppState>, user: WebUser) -> WebResult {
    if !user
        .principal
        .can(linli_core::celebrations::CELEBRATION_MODERATE)
    {
        return Err(error_page(&user.page, AppError::forbidden()));
    }
    list_page(
        &s,
        user,
        false,
        ShareForm::default(),
        FieldErrors::default(),
        None,
    )
    .await
}

async fn hide(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    or_page(
        &user.page,
        s.store.hide_celebration(&user.principal, &id).await,
    )?;
    Ok(Redirect::to("/staff/celebrations").into_response())
}
