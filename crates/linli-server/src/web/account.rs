//! Sign-in and sign-out pages, password change, and the language / big-text preferences.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use linli_core::{ErrorKind, password};

use crate::AppState;
use crate::extract::{SESSION_COOKIE, client_ip, cookie};
use crate::manifest::Pages;
use crate::web::{
    FieldErrors, Page, WebResult, WebUser, anonymous_page, check_csrf, error_page, render,
};

pub fn pages() -> Pages {
    Pages::new()
        .get("/login", login_form)
        .post("/login", login_submit)
        .post("/logout", logout)
        .get("/password", password_form)
        .post("/password", password_submit)
        .post("/prefs", prefs)
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginTpl {
    page: Page,
    next: String,
    login: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only local paths may be redirect targets (no open redirect). Browsers drop tabs and newlines
/// from a URL (`/<TAB>/evil.example` becomes `//evil.example`), so no control character or
/// whitespace is allowed anywhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

async fn login_form(parts: Parts, Query(q): Query<NextQuery>) -> Response {
    let page = anonymous_page(&parts);
    render(&LoginTpl {
        page,
        next: safe_next(q.next.as_deref()),
        login: String::new(),
        error: None,
    })
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

async fn login_submit(
    State(s): State<AppState>,
    parts: Parts,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    let page = anonymous_page(&parts);
    let next = safe_next(f.next.as_deref());
    let again = |msg: String| {
        render(&LoginTpl {
            page: page.clone(),
            next: next.clone(),
            login: f.login.clone(),
            error: Some(msg),
        })
    };
    let ip = client_ip(&parts, &s.config.trusted_proxies);
    // Check and count in one step (see `Limiter::attempt`); taken back when no password failed.
    if let Err(secs) = s.ip_limiter.attempt(&ip).await {
        return again(page.t1("rate_limited", "seconds", &secs.to_string()));
    }
    let creds = match s.store.credentials(&f.login).await {
        Ok(c) => c,
        Err(e) => {
            s.ip_limiter.refund(&ip).await;
            return error_page(&page, e);
        }
    };
    let key = crate::limiter::account_key(&f.login, creds.as_ref().map(|c| c.user_id.as_str()));
    if let Err(secs) = s.account_limiter.attempt(&key).await {
        s.ip_limiter.refund(&ip).await;
        return again(page.t1("auth-login_locked", "seconds", &secs.to_string()));
    }
    let ok = match &creds {
        Some(c) => password::verify(&f.password, &c.password_hash) && !c.disabled,
        None => {
            password::verify(&f.password, &s.dummy_hash);
            false
        }
    };
    let Some(creds) = creds.filter(|_| ok) else {
        // Both attempts stay counted as failures.
        return again(page.t("auth-login_failed"));
    };
    s.account_limiter.success(&key).await;
    s.ip_limiter.refund(&ip).await;
    if let Some(old) = cookie(&parts, SESSION_COOKIE) {
        let _ = s.store.delete_session(old).await;
        s.auth_cache.remove(&crate::auth_cache::session_key(old));
    }
    let session = match s.store.create_session(&creds.user_id).await {
        Ok(x) => x,
        Err(e) => return error_page(&page, e),
    };
    let mut resp = Redirect::to(&next).into_response();
    let secure = if s.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let c = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        session.token,
        linli_store::accounts::sessions::SESSION_TTL_MS / 1000
    );
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&c).expect("ascii cookie"),
    );
    resp
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    _csrf: String,
}

async fn logout(
    State(s): State<AppState>,
    user: WebUser,
    parts: Parts,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    if let Some(token) = cookie(&parts, SESSION_COOKIE) {
        let _ = s.store.delete_session(token).await;
        s.auth_cache.remove(&crate::auth_cache::session_key(token));
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("linli_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    Ok(resp)
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordTpl {
    page: Page,
    errors: FieldErrors,
}

async fn password_form(user: WebUser) -> Response {
    render(&PasswordTpl {
        page: user.page,
        errors: FieldErrors::default(),
    })
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    old_password: String,
    #[serde(default)]
    new_password: String,
}

async fn password_submit(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<PasswordForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    match s
        .store
        .change_password(&user.principal, &f.old_password, &f.new_password)
        .await
    {
        Ok(()) => {
            s.auth_cache.remove_user(&user.principal.user_id());
            Ok(Redirect::to("/login").into_response())
        }
        Err(e) if e.kind == ErrorKind::BadRequest => {
            let errors = FieldErrors::from_app(&user.page, &e, "new_password");
            Ok((
                axum::http::StatusCode::BAD_REQUEST,
                render(&PasswordTpl {
                    page: user.page,
                    errors,
                }),
            )
                .into_response())
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}

#[derive(Deserialize)]
struct PrefsForm {
    lang: Option<String>,
    big: Option<String>,
    back: Option<String>,
}

/// Remember the language and big-text choice in cookies (a year), then go back.
async fn prefs(axum::Form(f): axum::Form<PrefsForm>) -> Response {
    let mut resp = Redirect::to(&safe_next(f.back.as_deref())).into_response();
    let year = 365 * 24 * 3600;
    if let Some(lang) = f.lang.as_deref().and_then(linli_core::i18n::Lang::from_tag) {
        let c = format!(
            "linli_lang={}; Path=/; SameSite=Lax; Max-Age={year}",
            lang.tag()
        );
        resp.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_str(&c).expect("ascii"),
        );
    }
    if let Some(big) = f.big.as_deref() {
        let c = format!(
            "linli_big={}; Path=/; SameSite=Lax; Max-Age={year}",
            if big == "1" { "1" } else { "0" }
        );
        resp.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_str(&c).expect("ascii"),
        );
    }
    resp
}
