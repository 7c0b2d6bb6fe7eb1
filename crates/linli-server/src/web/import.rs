//! The Excel import wizard: upload → preview (bad rows listed and highlighted) → commit → report.
//! The uploaded file is kept outside any web root under a generated name, bound to the user who
//! uploaded it, and deleted after the commit (or after an hour).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use askama::Template;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;

use linli_core::auth::Action;
use linli_core::{AppError, ErrorKind};
use linli_store::audit::Actor;
use linli_store::registry::import::ImportReport;

use crate::AppState;
use crate::api::import_export::IMPORT_LIMIT;
use crate::api::sensitive;
use crate::extract::field_text;
use crate::manifest::Pages;
use crate::web::{Page, WebResult, WebUser, check_csrf, error_page, render};

pub fn pages() -> Pages {
    Pages::new()
        .get("/registry/import", upload_form)
        .post_limited("/registry/import", upload, IMPORT_LIMIT)
        .post("/registry/import/commit", commit)
}

#[derive(Template)]
#[template(path = "import.html")]
struct ImportTpl {
    page: Page,
    step: u8,
    error: Option<String>,
    report: Option<ImportReport>,
    upload: String,
}

fn upload_dir(s: &AppState) -> PathBuf {
    s.config.data_dir.join("uploads")
}

fn upload_path(s: &AppState, user_id: &str, token: &str) -> Option<PathBuf> {
    // Generated names only: nothing from the client reaches the file system unchecked.
    let ok = !token.is_empty()
        && token.len() <= 64
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| upload_dir(s).join(format!("{user_id}-{token}.upload")))
}

fn forget_old_uploads(s: &AppState) {
    if let Ok(dir) = std::fs::read_dir(upload_dir(s)) {
        for e in dir.flatten() {
            let old = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| {
                SystemTime::now().duration_since(t).unwrap_or_default() > Duration::from_secs(3600)
            });
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

async fn upload_form(user: WebUser) -> WebResult {
    user.principal
        .grant(Action::RegistryImport)
        .map_err(|_| error_page(&user.page, AppError::forbidden()))?;
    Ok(render(&ImportTpl {
        page: user.page,
        step: 1,
        error: None,
        report: None,
        upload: String::new(),
    }))
}

async fn upload(State(s): State<AppState>, user: WebUser, mut mp: Multipart) -> WebResult {
    let page = &user.page;
    let g = user
        .principal
        .grant(Action::RegistryImport)
        .map_err(|_| error_page(page, AppError::forbidden()))?;
    let mut csrf = String::new();
    let mut file: Option<axum::body::Bytes> = None;
    let too_big = || {
        AppError::new(ErrorKind::PayloadTooLarge, "payload_too_large")
            .arg("limit", format!("{} MB", IMPORT_LIMIT / 1_048_576))
    };
    loop {
        let mut field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(error_page(page, too_big()));
            }
            Err(e) => {
                return Err(error_page(
                    page,
                    AppError::bad_request("bad_request").arg("detail", e.body_text()),
                ));
            }
        };
        match field.name() {
            // A token is 43 characters: a longer field is no token (and is not kept).
            Some("_csrf") => {
                csrf = field_text(&mut field, 256)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            }
            // The route's body limit bounds the file; it is kept once, not copied.
            Some("file") => match field.bytes().await {
                Ok(b) => file = Some(b),
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    return Err(error_page(page, too_big()));
                }
                Err(e) => {
                    return Err(error_page(
                        page,
                        AppError::bad_request("bad_request").arg("detail", e.body_text()),
                    ));
                }
            },
            _ => {}
        }
    }
    check_csrf(page, &csrf)?;
    let again = |page: Page, msg: String| {
        (
            StatusCode::BAD_REQUEST,
            render(&ImportTpl {
                page,
                step: 1,
                error: Some(msg),
                report: None,
                upload: String::new(),
            }),
        )
            .into_response()
    };
    let Some(bytes) = file.filter(|b| !b.is_empty()) else {
        return Ok(again(
            user.page.clone(),
            AppError::bad_request("import.empty").message(page.lang),
        ));
    };
    let sens = sensitive(&user.principal);
    let report = match s
        .store
        .import_households(
            &g,
            sens.as_ref(),
            &Actor::from(&user.principal),
            &bytes,
            true,
            page.lang,
        )
        .await
    {
        Ok(r) => r,
        Err(e) if e.kind == ErrorKind::BadRequest => {
            return Ok(again(user.page.clone(), e.message(page.lang)));
        }
        Err(e) => return Err(error_page(page, e)),
    };
    forget_old_uploads(&s);
    let token = linli_core::crypto::random_token(18);
    let path = upload_path(&s, &user.principal.user_id(), &token)
        .ok_or_else(|| error_page(page, AppError::internal()))?;
    let write = std::fs::create_dir_all(upload_dir(&s)).and_then(|_| std::fs::write(&path, &bytes));
    if let Err(e) = write {
        tracing::error!(error = %e, "cannot store the upload");
        return Err(error_page(page, AppError::internal()));
    }
    Ok(render(&ImportTpl {
        page: user.page,
        step: 2,
        error: None,
        report: Some(report),
        upload: token,
    }))
}

#[derive(Deserialize)]
struct CommitForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    upload: String,
}

async fn commit(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<CommitForm>,
) -> WebResult {
    let page = &user.page;
    check_csrf(page, &f._csrf)?;
    let g = user
        .principal
        .grant(Action::RegistryImport)
        .map_err(|_| error_page(page, AppError::forbidden()))?;
    let path = upload_path(&s, &user.principal.user_id(), &f.upload)
        .ok_or_else(|| error_page(page, AppError::not_found("not_found")))?;
    // Taking the file away first makes a second submit of the same form a no-op.
    let taken = path.with_extension("committing");
    if std::fs::rename(&path, &taken).is_err() {
        return Err(error_page(
            page,
            AppError::not_found("not_found")
                .details(serde_json::json!({"reason": "web-import-gone"})),
        ));
    }
    let bytes = std::fs::read(&taken).map_err(|_| error_page(page, AppError::internal()))?;
    let sens = sensitive(&user.principal);
    let result = s
        .store
        .import_households(
            &g,
            sens.as_ref(),
            &Actor::from(&user.principal),
            &bytes,
            false,
            page.lang,
        )
        .await;
    let _ = std::fs::remove_file(&taken);
    match result {
        Ok(report) => Ok(render(&ImportTpl {
            page: user.page,
            step: 3,
            error: None,
            report: Some(report),
            upload: String::new(),
        })),
        Err(e) => Err(error_page(page, e)),
    }
}
