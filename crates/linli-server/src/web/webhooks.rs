//! The webhook console (`WebhookAdmin`): list the webhooks of the caller's area, register one
//! (the signing secret is shown on the answer page, once), pause / resume, ping, delete, and the
//! delivery log with a "retry" button for dead deliveries. Same store calls and grants as
//! `api::webhooks`; every form carries the CSRF token.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use linli_core::auth::{Action, Grant};
use linli_core::{AppError, ErrorKind};
use linli_store::audit::Actor;
use linli_store::notify::follows::split_list;
use linli_store::notify::outbox::Delivery;
use linli_store::notify::webhooks::{NewWebhook, Webhook, WebhookPatch};

use crate::AppState;
use crate::manifest::Pages;
use crate::web::{Page, WebResult, WebUser, check_csrf, error_page, or_page, render};

pub fn pages() -> Pages {
    Pages::new()
        .get("/admin/webhooks", list)
        .post("/admin/webhooks", create)
        .get("/admin/webhooks/{id}", detail)
        .post("/admin/webhooks/{id}/active", set_active)
        .post("/admin/webhooks/{id}/ping", ping)
        .post("/admin/webhooks/{id}/delete", delete)
        .post("/admin/webhooks/{id}/deliveries/{delivery_id}/retry", retry)
}

/// How many deliveries the detail page shows.
const LOG: i64 = 50;

fn grant(user: &WebUser) -> Result<Grant, axum::response::Response> {
    or_page(
        &user.page,
        user.principal
            .grant(Action::WebhookAdmin)
            .map_err(AppError::from),
    )
}

#[derive(Debug, Default, Deserialize)]
struct NewForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    place_id: String,
    #[serde(default)]
    kinds: String,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct ListTpl {
    page: Page,
    hooks: Vec<Webhook>,
    /// Places a webhook may be registered for (id, name).
    places: Vec<(String, String)>,
    form: NewForm,
    error: Option<String>,
    /// The webhook just created and its secret (shown this once).
    created: Option<(Webhook, String)>,
}

/// The places of the caller's area a webhook can cover: the top of the area, then communities.
async fn places_for(s: &AppState, g: &Grant) -> Result<Vec<(String, String)>, AppError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for kind in [None, Some("community")] {
        for p in s.store.places(g, None, kind).await? {
            if g.allows(Action::WebhookAdmin, &p.path) && !out.iter().any(|(id, _)| *id == p.id) {
                out.push((p.id, p.name));
            }
        }
    }
    Ok(out)
}

async fn list_page(
    s: &AppState,
    user: WebUser,
    form: NewForm,
    error: Option<String>,
    created: Option<(Webhook, String)>,
) -> WebResult {
    let g = grant(&user)?;
    let hooks = or_page(&user.page, s.store.webhooks(&g).await)?;
    let places = or_page(&user.page, places_for(s, &g).await)?;
    Ok(render(&ListTpl {
        page: user.page,
        hooks,
        places,
        form,
        error,
        created,
    }))
}

async fn list(State(s): State<AppState>, user: WebUser) -> WebResult {
    list_page(&s, user, NewForm::default(), None, None).await
}

async fn create(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<NewForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = grant(&user)?;
    let new = NewWebhook {
        name: f.name.clone(),
        url: f.url.clone(),
        place_id: f.place_id.clone(),
        kinds: split_list(&f.kinds),
    };
    match s
        .store
        .create_webhook(&g, &Actor::from(&user.principal), new)
        .await
    {
        // The secret goes out on this page only (no redirect that could be reloaded or cached).
        Ok(c) => {
            list_page(
                &s,
                user,
                NewForm::default(),
                None,
                Some((c.webhook, c.secret)),
            )
            .await
        }
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::NotFound) => {
            let msg = e.message(user.page.lang);
            let mut r = list_page(&s, user, f, Some(msg), None).await?;
            *r.status_mut() = StatusCode::BAD_REQUEST;
            Ok(r)
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct DetailTpl {
    page: Page,
    hook: Webhook,
    place: String,
    deliveries: Vec<Delivery>,
    flash: Option<String>,
}

async fn detail_page(s: &AppState, user: WebUser, id: &str, flash: Option<String>) -> WebResult {
    let g = grant(&user)?;
    let hook = or_page(&user.page, s.store.webhook(&g, id).await)?;
    let deliveries = or_page(&user.page, s.store.webhook_deliveries(&g, id, LOG).await)?;
    let names = or_page(
        &user.page,
        s.store.place_names(&[hook.place_id.as_str()]).await,
    )?;
    let place = names
        .get(&hook.place_id)
        .map(|n| n.1.clone())
        .unwrap_or_else(|| hook.place_id.clone());
    Ok(render(&DetailTpl {
        page: user.page,
        hook,
        place,
        deliveries,
        flash,
    }))
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

async fn detail(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<DoneQuery>,
) -> WebResult {
    let flash = q.done.map(|_| user.page.t("web-saved"));
    detail_page(&s, user, &id, flash).await
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    active: String,
}

fn back(id: &str) -> axum::response::Response {
    Redirect::to(&format!("/admin/webhooks/{id}?done=1")).into_response()
}

/// A refused step comes back to the detail page as the localized message.
async fn refused(s: &AppState, user: WebUser, id: &str, e: AppError) -> WebResult {
    if !matches!(e.kind, ErrorKind::Conflict | ErrorKind::BadRequest) {
        return Err(error_page(&user.page, e));
    }
    let msg = e.message(user.page.lang);
    let mut r = detail_page(s, user, id, Some(msg)).await?;
    *r.status_mut() = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::CONFLICT);
    Ok(r)
}

async fn set_active(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = grant(&user)?;
    let patch = WebhookPatch {
        active: Some(f.active == "1"),
        ..WebhookPatch::default()
    };
    match s
        .store
        .update_webhook(&g, &Actor::from(&user.principal), &id, patch)
        .await
    {
        Ok(_) => Ok(back(&id)),
        Err(e) => refused(&s, user, &id, e).await,
    }
}

async fn ping(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = grant(&user)?;
    match s
        .store
        .ping_webhook(&g, &Actor::from(&user.principal), &id)
        .await
    {
        Ok(_) => Ok(back(&id)),
        Err(e) => refused(&s, user, &id, e).await,
    }
}

async fn delete(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = grant(&user)?;
    or_page(
        &user.page,
        s.store
            .delete_webhook(&g, &Actor::from(&user.principal), &id)
            .await,
    )?;
    Ok(Redirect::to("/admin/webhooks").into_response())
}

async fn retry(
    State(s): State<AppState>,
    user: WebUser,
    Path((id, delivery_id)): Path<(String, String)>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = grant(&user)?;
    match s
        .store
        .retry_delivery(&g, &Actor::from(&user.principal), &id, &delivery_id)
        .await
    {
        Ok(_) => Ok(back(&id)),
        Err(e) => refused(&s, user, &id, e).await,
    }
}
