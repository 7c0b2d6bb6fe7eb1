//! The web UI: server-rendered pages (askama), our own CSS and a little JS, embedded in the
//! binary. Two faces: the resident pages (mobile first) and the staff console (side navigation
//! by capability). Every page works with plain links and forms; every form carries the session's
//! CSRF token; create forms carry a one-time token so a double tap does not create twice.
//! Pages call the same store functions with the same grants as the API.

pub mod access;
pub mod account;
pub mod admin;
pub mod catalogue;
pub mod import;
pub mod inbox;
pub mod install;
pub mod me;
pub mod record;
pub mod registry;
pub mod reports;
pub mod roles;
pub mod webhooks;
pub mod workbench;

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use linli_core::auth::Principal;
use linli_core::i18n::{self, Lang};
use linli_core::{AppError, ErrorKind};

use crate::AppState;
use crate::error::{current_lang, current_request_id};
use crate::extract::{Via, authenticate};

pub fn router() -> Router<AppState> {
    kernel_pages().into_router()
}

/// The pages of no module (home, static files, the live event stream), recorded for the
/// authorization matrix.
pub fn kernel_pages() -> crate::manifest::Pages {
    install::pages(crate::manifest::Pages::new())
        .get("/", home)
        .get("/static/linli.css", css)
        .get("/static/linli.js", js)
        .get("/static/report-form.js", report_form_js)
        .get("/events", crate::live::events)
}

async fn css() -> Response {
    static_file(
        include_str!("../../static/linli.css"),
        "text/css; charset=utf-8",
    )
}

async fn js() -> Response {
    static_file(
        include_str!("../../static/linli.js"),
        "text/javascript; charset=utf-8",
    )
}

async fn report_form_js() -> Response {
    static_file(
        include_str!("../../static/report-form.js"),
        "text/javascript; charset=utf-8",
    )
}

fn static_file(body: &'static str, mime: &'static str) -> Response {
    static_bytes(body.as_bytes(), mime, "public, max-age=3600")
}

/// A file built into the binary, with its type and how long browsers may keep it.
pub(crate) fn static_bytes(
    body: &'static [u8],
    mime: &'static str,
    cache: &'static str,
) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

#[derive(Template)]
#[template(path = "welcome.html")]
struct WelcomeTpl {
    page: Page,
    roles: Vec<String>,
}

/// Residents land on their household, staff on the registry; other roles (merchants,
/// volunteers) on a welcome page until their modules exist.
async fn home(user: WebUser) -> Response {
    if user.page.staff {
        Redirect::to("/staff").into_response()
    } else if !user.principal.own_households().is_empty() {
        Redirect::to("/me").into_response()
    } else {
        let roles = user
            .principal
            .roles()
            .iter()
            .map(|r| r.as_str().to_string())
            .collect();
        render(&WelcomeTpl {
            page: user.page,
            roles,
        })
    }
}

/// One entry of the staff side navigation.
#[derive(Debug, Clone)]
pub struct NavItem {
    pub href: &'static str,
    pub label: String,
    pub current: bool,
}

/// What every page's layout needs.
#[derive(Debug, Clone)]
pub struct Page {
    pub lang: Lang,
    pub big: bool,
    pub staff: bool,
    pub user_name: String,
    pub signed_in: bool,
    pub csrf: String,
    pub nav: Vec<NavItem>,
    pub path: String,
    /// Unread inbox notices (the header badge).
    pub unread: i64,
}

impl Page {
    pub fn t(&self, key: &str) -> String {
        i18n::t(self.lang, key)
    }
    pub fn t1(&self, key: &str, name: &'static str, value: &str) -> String {
        i18n::t_args(self.lang, key, &[(name, value.to_string())])
    }
    pub fn lang_tag(&self) -> &'static str {
        self.lang.tag()
    }
    pub fn other_lang(&self) -> &'static str {
        if self.lang == Lang::ZhCn {
            "en"
        } else {
            "zh-CN"
        }
    }
    /// A code such as a tenure or relation, shown in the user's language.
    pub fn code(&self, group: &str, code: &str) -> String {
        let key = format!("web-{group}-{code}");
        if i18n::has(self.lang, &key) {
            i18n::t(self.lang, &key)
        } else {
            code.to_string()
        }
    }
    /// A label name in the user's language.
    pub fn label_name(&self, zh: &str, en: &str) -> String {
        if self.lang == Lang::En && !en.is_empty() {
            en.to_string()
        } else {
            zh.to_string()
        }
    }
    /// Chinese-style date and time of epoch millis, in the configured time zone.
    pub fn datetime(&self, ms: &i64) -> String {
        let t = crate::error::current_zone().local(*ms);
        match self.lang {
            Lang::ZhCn => t.format("%Y年%m月%d日 %H:%M").to_string(),
            Lang::En => t.format("%Y-%m-%d %H:%M").to_string(),
        }
    }
    /// Floor area from hundredths of m².
    pub fn area(&self, x100: &Option<i64>) -> String {
        match x100 {
            Some(a) => format!("{}.{:02} m²", a / 100, a % 100),
            None => "—".into(),
        }
    }
}

fn nav_for(p: &Principal, lang: Lang, path: &str) -> Vec<NavItem> {
    use crate::manifest::Face;
    // The residents' menu first, then the staff console's daily work, then its administration;
    // each in the order of the module list.
    let mut items: Vec<(&'static str, &'static str, bool)> = Vec::new();
    for face in [Face::Resident, Face::Staff, Face::Admin] {
        for m in crate::modules::ALL {
            for e in m.nav.iter().filter(|e| e.face == face) {
                items.push((e.href, e.label, (e.visible)(p)));
            }
        }
    }
    let best = items
        .iter()
        .filter(|(h, _, ok)| *ok && path.starts_with(h))
        .map(|(h, _, _)| h.len())
        .max()
        .unwrap_or(0);
    items
        .into_iter()
        .filter(|(_, _, ok)| *ok)
        .map(|(href, key, _)| NavItem {
            href,
            label: i18n::t(lang, key),
            current: href.len() == best && path.starts_with(href),
        })
        .collect()
}

pub fn is_staff(p: &Principal) -> bool {
    p.is_staff()
}

fn big_text(parts: &Parts) -> bool {
    crate::extract::cookie(parts, "linli_big") == Some("1")
}

/// A page's context for visitors who are not signed in.
pub fn anonymous_page(parts: &Parts) -> Page {
    Page {
        lang: current_lang(),
        big: big_text(parts),
        staff: false,
        user_name: String::new(),
        signed_in: false,
        csrf: String::new(),
        nav: Vec::new(),
        path: parts.uri.path().to_string(),
        unread: 0,
    }
}

/// The signed-in user of a page; not signed in → redirect to the login page.
pub struct WebUser {
    pub principal: Principal,
    pub page: Page,
}

impl<S> FromRequestParts<S> for WebUser
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let found = authenticate(parts, &state)
            .await
            .map_err(|e| error_page(&anonymous_page(parts), e.0))?;
        match found {
            Some((principal, Via::Session { csrf, .. })) => {
                let lang = current_lang();
                let path = parts.uri.path().to_string();
                let unread = state.store.inbox_unread(&principal).await.unwrap_or(0);
                let page = Page {
                    lang,
                    big: big_text(parts),
                    staff: is_staff(&principal),
                    user_name: principal.display_name().to_string(),
                    signed_in: true,
                    csrf,
                    nav: nav_for(&principal, lang, &path),
                    path,
                    unread,
                };
                Ok(WebUser { principal, page })
            }
            _ => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let target = format!("/login?next={}", urlencode(next));
                Err(Redirect::to(&target).into_response())
            }
        }
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Check the CSRF token a form sent.
pub fn check_csrf(page: &Page, sent: &str) -> Result<(), Response> {
    if !page.csrf.is_empty() && sent == page.csrf {
        Ok(())
    } else {
        Err(error_page(
            page,
            AppError::forbidden().details(serde_json::json!({"reason": "auth.csrf"})),
        ))
    }
}

/// One-time form tokens: a second post of the same form — to this instance or another — is
/// answered with the first result. The tokens live in the database
/// ([`linli_store::cluster`]).
#[derive(Debug)]
pub struct FormOnce {
    store: linli_store::Store,
}

pub enum Once {
    /// First time: go ahead.
    Fresh,
    /// Seen before: redirect here (or to the fallback if the first is still running/failed).
    Repeat(Option<String>),
}

impl FormOnce {
    pub fn new(store: linli_store::Store) -> FormOnce {
        FormOnce { store }
    }
    pub fn new_token() -> String {
        linli_core::crypto::random_token(16)
    }
    /// A database error lets the post go ahead (a possible duplicate rather than a lost form).
    pub async fn claim(&self, token: &str) -> Once {
        use linli_store::cluster::FormClaim;
        match self.store.form_claim(token).await {
            Ok(FormClaim::Fresh) => Once::Fresh,
            Ok(FormClaim::Repeat(at)) => Once::Repeat(at),
            Err(e) => {
                tracing::warn!(error = %e, "one-time form token unavailable");
                Once::Fresh
            }
        }
    }
    pub async fn finish(&self, token: &str, location: &str) {
        if let Err(e) = self.store.form_finish(token, location).await {
            tracing::warn!(error = %e, "recording a form's result");
        }
    }
    /// A failed attempt may be retried with the same token.
    pub async fn release(&self, token: &str) {
        if let Err(e) = self.store.form_release(token).await {
            tracing::warn!(error = %e, "releasing a form token");
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTpl<'a> {
    page: &'a Page,
    title: String,
    message: String,
    request_id: String,
    status: u16,
}

/// An error as a page in the site's style (403/404/500 …), with the request id.
pub fn error_page(page: &Page, e: AppError) -> Response {
    let request_id = current_request_id();
    let e = if e.kind == ErrorKind::Internal {
        tracing::error!(request_id = %request_id, code = e.code, "internal error on a page");
        AppError::internal().arg("request_id", request_id.clone())
    } else {
        e
    };
    let status = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = e
        .details
        .as_ref()
        .and_then(|d| d.get("reason"))
        .and_then(|r| r.as_str())
        .map(|r| i18n::t(page.lang, r));
    let tpl = ErrorTpl {
        page,
        title: page.t(&format!("web-error-title-{}", status.as_u16())),
        message: reason.unwrap_or_else(|| e.message(page.lang)),
        request_id,
        status: status.as_u16(),
    };
    (status, render(&tpl)).into_response()
}

/// Render a template, or a plain 500 if the template itself fails (logged).
pub fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, request_id = %current_request_id(), "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// Page result: a page or an error page.
pub type WebResult = Result<Response, Response>;

/// Turn a store error into an error page.
pub fn or_page<T>(page: &Page, r: Result<T, AppError>) -> Result<T, Response> {
    r.map_err(|e| error_page(page, e))
}

/// A field error shown beside its input.
#[derive(Debug, Clone, Default)]
pub struct FieldErrors(pub HashMap<String, String>);

impl FieldErrors {
    pub fn get(&self, field: &str) -> Option<&String> {
        self.0.get(field)
    }
    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Place a store validation error next to the field it concerns.
    pub fn from_app(page: &Page, e: &AppError, default_field: &str) -> FieldErrors {
        let field = e
            .args
            .iter()
            .find(|(k, _)| *k == "field")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| match e.code {
                c if c.starts_with("validation.id_card") => "id_number".to_string(),
                "validation.phone.invalid" => "phone".to_string(),
                "validation.purpose_required" => "purpose".to_string(),
                "auth.old_password_wrong" => "old_password".to_string(),
                "auth.password_too_short" => "new_password".to_string(),
                _ => default_field.to_string(),
            });
        let mut m = HashMap::new();
        m.insert(field, e.message(page.lang));
        FieldErrors(m)
    }
}

/// Shared pieces of the HTML rendering fuzz targets (`reports::fuzz`, `registry::fuzz`): user
/// text rendered through the real templates must never add markup.
#[cfg(test)]
pub(crate) mod fuzz_support {
    use proptest::prelude::*;

    use super::{NavItem, Page};
    use linli_core::i18n::Lang;

    pub fn cases() -> ProptestConfig {
        ProptestConfig {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
            ..ProptestConfig::default()
        }
    }

    /// A signed-in staff page layout; `user_name` is user text too (shown in the header).
    pub fn page(lang: Lang, user_name: &str) -> Page {
        Page {
            lang,
            big: false,
            staff: true,
            user_name: user_name.to_string(),
            signed_in: true,
            csrf: "csrf-token".into(),
            nav: vec![NavItem {
                href: "/registry",
                label: "登记".into(),
                current: true,
            }],
            path: "/registry".into(),
            unread: 1,
        }
    }

    /// Hostile text: markup, attribute and element breakouts, entities, template syntax,
    /// control and wide characters, mixed with arbitrary text. Never empty.
    pub fn user_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("<script>alert(1)</script>".to_string()),
            Just("\"><img src=x onerror=alert(1)>".to_string()),
            Just("' onmouseover='alert(1)".to_string()),
            Just("\" autofocus onfocus=\"alert(1)".to_string()),
            Just("</textarea><script>x</script>".to_string()),
            Just("</title><svg onload=alert(1)>".to_string()),
            Just("<!--".to_string()),
            Just("]]>".to_string()),
            Just("javascript:alert(1)".to_string()),
            Just("&lt;script&gt;".to_string()),
            Just("&#x3C;".to_string()),
            Just("{{ page.csrf }}".to_string()),
            Just("{% raw %}".to_string()),
            Just("\u{0}\u{1b}\u{202e}".to_string()),
            Just("楼道灯不亮".to_string()),
            "[\\PC<>\"'&=/`]{1,12}",
        ];
        proptest::collection::vec(piece, 1..5).prop_map(|p| p.concat())
    }

    /// The characters that make markup. Escaped user text contributes none of them, so a
    /// page rendered with hostile text must have exactly as many as with harmless text.
    pub fn markup(html: &str) -> [usize; 4] {
        ['<', '>', '"', '\''].map(|c| html.matches(c).count())
    }
}
