//! The inbox page (消息): every signed-in user's notices, mark read, and the e-mail settings.
//! The list refreshes itself when an `inbox` event arrives (see static/linli.js).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use linli_store::notify::follows::{Channels, split_list};
use linli_store::notify::render;

use crate::AppState;
use crate::manifest::Pages;
use crate::web::{Page, WebResult, WebUser, check_csrf, or_page, render as render_page};

pub fn pages() -> Pages {
    Pages::new()
        .get("/inbox", inbox)
        .post("/inbox/read-all", read_all)
        .post("/inbox/settings", settings)
        .post("/inbox/{id}/read", read_one)
}

/// One notice as shown.
pub struct Row {
    pub id: String,
    pub text: String,
    pub at: i64,
    pub unread: bool,
    pub link: Option<String>,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxTpl {
    page: Page,
    rows: Vec<Row>,
    unread_only: bool,
    older: Option<String>,
    channels: Channels,
    /// The families of notices one may keep out of e-mail, in words: (pattern, words, muted).
    families: Vec<(&'static str, String, bool)>,
    /// Patterns set through the API that the page has no words for; kept as they are.
    other_muted: String,
    flash: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
struct InboxQuery {
    unread: Option<String>,
    before: Option<i64>,
    saved: Option<String>,
}

const PAGE: i64 = 30;

async fn page_of(
    s: &AppState,
    user: WebUser,
    q: InboxQuery,
    channels: Option<Channels>,
    error: Option<String>,
) -> WebResult {
    let unread_only = q.unread.as_deref() == Some("1");
    let items = or_page(
        &user.page,
        s.store
            .inbox(&user.principal, unread_only, q.before, PAGE)
            .await,
    )?;
    let older = (items.len() as i64 == PAGE)
        .then(|| items.last().map(|i| i.created_at))
        .flatten()
        .map(|b| {
            format!(
                "/inbox?before={b}{}",
                if unread_only { "&unread=1" } else { "" }
            )
        });
    let lang = user.page.lang;
    let rows = items
        .into_iter()
        .map(|i| Row {
            text: render(lang, &i.key, &i.args),
            id: i.id,
            at: i.created_at,
            unread: i.read_at.is_none(),
            link: i
                .link
                .filter(|l| l.starts_with('/') && !l.starts_with("//")),
        })
        .collect();
    let channels = match channels {
        Some(c) => c,
        None => or_page(&user.page, s.store.channels(&user.principal).await)?,
    };
    let flash = q.saved.map(|_| user.page.t("inbox-saved"));
    let families = MUTABLE
        .iter()
        .map(|(code, key)| {
            (
                *code,
                user.page.t(key),
                channels.muted.iter().any(|m| m == code),
            )
        })
        .collect();
    let other_muted = channels
        .muted
        .iter()
        .filter(|m| !MUTABLE.iter().any(|(code, _)| code == m))
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    Ok(render_page(&InboxTpl {
        families,
        other_muted,
        page: user.page,
        rows,
        unread_only,
        older,
        channels,
        flash,
        error,
    }))
}

async fn inbox(State(s): State<AppState>, user: WebUser, Query(q): Query<InboxQuery>) -> WebResult {
    page_of(&s, user, q, None, None).await
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    _csrf: String,
}

async fn read_one(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    or_page(
        &user.page,
        s.store.inbox_mark_read(&user.principal, Some(&id)).await,
    )?;
    Ok(Redirect::to("/inbox").into_response())
}

async fn read_all(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    or_page(
        &user.page,
        s.store.inbox_mark_read(&user.principal, None).await,
    )?;
    Ok(Redirect::to("/inbox").into_response())
}

/// Families of notices one may keep out of e-mail (they still arrive in the inbox), with the
/// words the settings show. Safety notices (alarms, SOS) are not among them.
const MUTABLE: &[(&str, &str)] = &[
    ("report.*", "inbox-mute-report"),
    ("correction.*", "inbox-mute-correction"),
    ("celebration.*", "inbox-mute-celebration"),
    ("person.*", "inbox-mute-person"),
    ("access.*", "inbox-mute-access"),
];

async fn settings(
    State(s): State<AppState>,
    user: WebUser,
    form: crate::extract::FormPairs,
) -> WebResult {
    let get = |k: &str| form.get(k);
    check_csrf(&user.page, &get("_csrf"))?;
    // The ticked families (only known ones) and the patterns kept from the API.
    let mut muted = split_list(&get("muted"));
    for v in form.all("mute") {
        if MUTABLE.iter().any(|(code, _)| *code == v) && !muted.contains(&v) {
            muted.push(v);
        }
    }
    let wanted = Channels {
        email: Some(get("email").trim().to_string()).filter(|e| !e.is_empty()),
        email_enabled: form.has("email_enabled"),
        muted,
    };
    match s.store.set_channels(&user.principal, wanted.clone()).await {
        Ok(_) => Ok(Redirect::to("/inbox?saved=1").into_response()),
        Err(e) if e.kind == linli_core::ErrorKind::BadRequest => {
            let msg = e.message(user.page.lang);
            page_of(&s, user, InboxQuery::default(), Some(wanted), Some(msg)).await
        }
        Err(e) => Err(crate::web::error_page(&user.page, e)),
    }
}
