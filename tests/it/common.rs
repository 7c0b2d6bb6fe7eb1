//! Test harness: a fresh store (SQLite temp dir, or a new PostgreSQL database) with the demo
//! district, and the real router driven in-process.

use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use linli_store::{DbConfig, Store};

pub const PASSWORD: &str = "linli-demo";

pub struct TestApp {
    pub store: Store,
    pub router: Router,
    pub dir: PathBuf,
    pg: Option<(String, String)>,
    pg_url: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
    pub user: Value,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.bytes)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).to_string()
    }
    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(
            self.status.is_success(),
            "expected success, got {}: {}",
            self.status,
            self.text()
        );
        if self.bytes.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        if self.bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
        }
    }
}

fn unique() -> String {
    linli_core::new_id().replace('-', "")[12..].to_string()
}

impl TestApp {
    /// A fresh app with the demo district seeded.
    pub async fn demo() -> TestApp {
        let app = Self::empty().await;
        linli_server::modules::seed_demo(&app.store, PASSWORD)
            .await
            .expect("demo seeds");
        app
    }

    /// A fresh app with an empty database (labels only).
    pub async fn empty() -> TestApp {
        let dir = std::env::temp_dir().join(format!("linli-it-{}", unique()));
        std::fs::create_dir_all(&dir).unwrap();
        let (url, pg) = match std::env::var("LINLI_TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => {
                let name = format!("linli_it_{}", unique());
                sqlx::any::install_default_drivers();
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url)
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::Executor::execute(
                    &mut conn,
                    sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
                )
                .await
                .expect("create database");
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_string())
                    .unwrap_or(admin_url.clone());
                (format!("{base}/{name}"), Some((admin_url, name)))
            }
            _ => (linli_store::sqlite_url(&dir), None),
        };
        let pg_url = pg.as_ref().map(|_| url.clone());
        let cfg = DbConfig {
            url,
            max_connections: 4,
            sqlite_synchronous: "NORMAL".into(),
        };
        let store = Store::open(&cfg, &dir, None, linli_server::modules::platform())
            .await
            .expect("store opens");
        store.ensure_default_labels().await.unwrap();
        let state = linli_server::AppState::new(
            store.clone(),
            linli_server::ServerConfig {
                secure_cookies: false,
                data_dir: dir.clone(),
                trusted_proxies: Vec::new(),
            },
        );
        TestApp {
            router: linli_server::app(state),
            store,
            dir,
            pg,
            pg_url,
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// Another instance on the same database, as a second process would be: its own store
    /// (pools, caches, bus and instance id), its own server state. On PostgreSQL both buses
    /// are bridged through `LISTEN/NOTIFY`. Close it with [`TestApp::close_instance`].
    pub async fn second_instance(&self) -> TestApp {
        let url = self
            .pg_url
            .clone()
            .unwrap_or_else(|| linli_store::sqlite_url(&self.dir));
        let store = Store::open(
            &DbConfig {
                url,
                max_connections: 4,
                sqlite_synchronous: "NORMAL".into(),
            },
            &self.dir,
            None,
            linli_server::modules::platform(),
        )
        .await
        .expect("second store opens");
        if self.is_postgres() {
            self.store.start_pg_bus().await.unwrap();
            store.start_pg_bus().await.unwrap();
        }
        let state = linli_server::AppState::new(
            store.clone(),
            linli_server::ServerConfig {
                secure_cookies: false,
                data_dir: self.dir.clone(),
                trusted_proxies: Vec::new(),
            },
        );
        TestApp {
            router: linli_server::app(state),
            store,
            dir: self.dir.clone(),
            pg: None,
            pg_url: self.pg_url.clone(),
        }
    }

    /// Close an instance made by [`TestApp::second_instance`] (the database stays).
    pub async fn close_instance(self) {
        self.store.db.read.close().await;
        self.store.db.write.close().await;
    }

    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        session: Option<&Session>,
        body: Option<(&str, Vec<u8>)>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(s) = session {
            b = b
                .header(header::COOKIE, &s.cookie)
                .header("x-csrf-token", &s.csrf);
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let body = match body {
            Some((ct, bytes)) => {
                b = b.header(header::CONTENT_TYPE, ct);
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let resp = self
            .router
            .clone()
            .oneshot(b.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Resp {
            status,
            headers,
            bytes,
        }
    }

    pub async fn get(&self, s: &Session, uri: &str) -> Resp {
        self.call("GET", uri, Some(s), None, &[]).await
    }

    pub async fn post(&self, s: &Session, uri: &str, json: Value) -> Resp {
        self.call(
            "POST",
            uri,
            Some(s),
            Some(("application/json", json.to_string().into_bytes())),
            &[],
        )
        .await
    }

    pub async fn patch(&self, s: &Session, uri: &str, json: Value) -> Resp {
        self.call(
            "PATCH",
            uri,
            Some(s),
            Some(("application/json", json.to_string().into_bytes())),
            &[],
        )
        .await
    }

    pub async fn login_with(&self, login: &str, password: &str) -> Resp {
        let body = serde_json::json!({ "login": login, "password": password })
            .to_string()
            .into_bytes();
        self.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(("application/json", body)),
            &[],
        )
        .await
    }

    /// The resolved principal of a user (to call store functions as that user).
    pub async fn principal_of(&self, user_id: &str) -> linli_core::auth::Principal {
        self.store
            .principal(user_id)
            .await
            .unwrap()
            .expect("an active user")
    }

    pub async fn login(&self, login: &str) -> Session {
        self.login_as(login, PASSWORD).await
    }

    /// Sign in with a password of the test's own (an account the test created).
    pub async fn login_as(&self, login: &str, password: &str) -> Session {
        let resp = self.login_with(login, password).await;
        assert_eq!(
            resp.status,
            StatusCode::OK,
            "login {login}: {}",
            resp.text()
        );
        let cookie = resp
            .headers
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let v = resp.json();
        Session {
            cookie,
            csrf: v["csrf_token"].as_str().unwrap().to_string(),
            user: v["user"].clone(),
        }
    }

    /// Places of a kind, as the city admin sees them, by name.
    pub async fn place_id(&self, kind: &str, name: &str) -> String {
        use linli_core::auth::{Action, Grant};
        self.store
            .places(&Grant::system(Action::PlaceRead), None, Some(kind))
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no {kind} named {name}"))
            .id
    }

    /// The path of a place.
    pub async fn place_path(&self, id: &str) -> String {
        use linli_core::auth::{Action, Grant};
        self.store
            .place(&Grant::system(Action::PlaceRead), id)
            .await
            .unwrap()
            .path
    }

    /// A room (id, path) in the named community.
    pub async fn a_room_in(&self, community: &str) -> (String, String) {
        use linli_core::auth::{Action, Grant};
        let cpath = self
            .place_path(&self.place_id("community", community).await)
            .await;
        let rooms = self
            .store
            .places(&Grant::system(Action::PlaceRead), None, Some("room"))
            .await
            .unwrap();
        let r = rooms
            .into_iter()
            .find(|r| r.path.starts_with(&cpath) && r.room_use.as_deref() == Some("residential"))
            .unwrap();
        (r.id, r.path)
    }

    pub async fn close(self) {
        self.store.db.read.close().await;
        self.store.db.write.close().await;
        if let Some((admin_url, name)) = &self.pg {
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(admin_url)
                .await
                .unwrap();
            let _ = sqlx::Executor::execute(
                &mut conn,
                sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
            )
            .await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The demo's resident: the first household of 幸福里社区 whose head has a phone.
pub fn demo_resident() -> (String, String, String) {
    let data = linli_core::demo::generate(linli_store::demo::DEMO_SEED);
    let h = data
        .households
        .iter()
        .find(|h| h.room_key.starts_with("c1/") && h.persons[0].phone.is_some())
        .unwrap();
    (
        h.persons[0].name.clone(),
        h.persons[0].id_number.clone(),
        h.persons[0].phone.clone().unwrap(),
    )
}

/// A valid ID number not used by the demo.
pub fn fresh_id(n: u16) -> String {
    let d = chrono::NaiveDate::from_ymd_opt(1985, 3, 1 + u32::from(n % 28)).unwrap();
    linli_core::idcard::compose("110101", d, 100 + n)
}

impl TestApp {
    /// A place of a kind and name inside a subtree.
    pub async fn place_id_in(&self, kind: &str, name: &str, prefix: &str) -> String {
        use linli_core::auth::{Action, Grant};
        self.store
            .places(&Grant::system(Action::PlaceRead), None, Some(kind))
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.name == name && p.path.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {kind} named {name} under {prefix}"))
            .id
    }
}

impl TestApp {
    /// The database URL when running on PostgreSQL.
    pub fn database_url(&self) -> Option<String> {
        self.pg_url.clone()
    }
}

impl TestApp {
    /// A residential room of a community as (building, unit, room) names, as a spreadsheet names it.
    pub async fn room_names(&self, community: &str) -> (String, String, String) {
        use linli_core::auth::{Action, Grant};
        let (room_id, _) = self.a_room_in(community).await;
        let g = Grant::system(Action::PlaceRead);
        let room = self.store.place(&g, &room_id).await.unwrap();
        let unit = self
            .store
            .place(&g, room.parent_id.as_deref().unwrap())
            .await
            .unwrap();
        let building = self
            .store
            .place(&g, unit.parent_id.as_deref().unwrap())
            .await
            .unwrap();
        (building.name, unit.name, room.name)
    }
}

/// A form body (`application/x-www-form-urlencoded`) as a browser sends it.
pub fn form(fields: &[(&str, &str)]) -> Vec<u8> {
    fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                k,
                linli_server::web::urlencode(v).replace('/', "%2F")
            )
        })
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// A form post with the session cookie only, as a page sends it: the CSRF token travels in the
/// form or not at all.
pub async fn post_form(app: &TestApp, s: &Session, uri: &str, fields: &[(&str, &str)]) -> Resp {
    app.call(
        "POST",
        uri,
        None,
        Some(("application/x-www-form-urlencoded", form(fields))),
        &[("cookie", s.cookie.as_str())],
    )
    .await
}

impl TestApp {
    /// A new resident account `login` in another household of the same community as
    /// `own_household`.
    pub async fn neighbour_of(&self, own_household: &str, login: &str) -> Session {
        let path: String = sqlx::Row::get(
            &sqlx::query("SELECT path FROM households WHERE id = $1")
                .bind(own_household.to_string())
                .fetch_one(&self.store.db.read)
                .await
                .unwrap(),
            0,
        );
        let community: String = path
            .split('/')
            .filter(|s| !s.is_empty())
            .take(4)
            .map(|s| format!("/{s}"))
            .collect::<String>()
            + "/";
        let rows = sqlx::query("SELECT id, path FROM households ORDER BY id")
            .fetch_all(&self.store.db.read)
            .await
            .unwrap();
        let other = rows
            .iter()
            .map(|r| {
                (
                    sqlx::Row::get::<String, _>(r, 0),
                    sqlx::Row::get::<String, _>(r, 1),
                )
            })
            .find(|(id, p)| id != own_household && p.starts_with(&community))
            .unwrap()
            .0;
        let admin = self.login("admin").await;
        self.post(
            &admin,
            "/api/v1/users",
            serde_json::json!({
                "login": login,
                "display_name": "邻居",
                "password": PASSWORD,
                "bindings": [{ "role": "resident", "household_id": other }],
            }),
        )
        .await
        .expect(201);
        self.login(login).await
    }

    /// The household of a demo resident account (by login) and the room it lives in.
    pub async fn home_of(&self, login: &str) -> (String, String) {
        let text = |row: sqlx::any::AnyRow| sqlx::Row::get::<String, _>(&row, 0);
        let hh = text(
            sqlx::query(
                "SELECT rb.household_id FROM role_bindings rb JOIN users u ON u.id = rb.user_id WHERE u.login = $1 AND rb.household_id IS NOT NULL",
            )
            .bind(login.to_string())
            .fetch_one(&self.store.db.read)
            .await
            .unwrap(),
        );
        let room = text(
            sqlx::query("SELECT room_id FROM households WHERE id = $1")
                .bind(hh.clone())
                .fetch_one(&self.store.db.read)
                .await
                .unwrap(),
        );
        (hh, room)
    }
}

// ---- HTML pages, parsed ----

/// A page parsed as a browser parses it (html5ever, through `scraper`) and queried with CSS
/// selectors: page tests assert structure and placement ("the vehicle form is inside `<main>`"),
/// not substrings of the markup. Selector helpers panic with the selector and the page's `<main>`
/// when what they need is missing.
pub struct Doc {
    pub html: scraper::Html,
}

pub use scraper::ElementRef;

/// A CSS selector (panics on a typo in the test).
pub fn selector(css: &str) -> scraper::Selector {
    scraper::Selector::parse(css).unwrap_or_else(|e| panic!("bad selector {css:?}: {e:?}"))
}

/// Elements whose text flows with their neighbours' (no word break around them).
const INLINE: &[&str] = &[
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "i", "kbd", "label",
    "mark", "q", "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var",
];

/// The text a reader sees in an element: no `<script>`, `<style>`, `<template>` or `hidden`
/// elements; block boundaries count as spaces; runs of whitespace collapsed.
pub fn visible_text(el: ElementRef<'_>) -> String {
    fn walk(el: ElementRef<'_>, out: &mut String) {
        for child in el.children() {
            if let Some(t) = child.value().as_text() {
                out.push_str(t);
            } else if let Some(e) = ElementRef::wrap(child) {
                let name = e.value().name();
                if matches!(name, "script" | "style" | "template") || e.attr("hidden").is_some() {
                    continue;
                }
                let block = !INLINE.contains(&name);
                if block {
                    out.push(' ');
                }
                walk(e, out);
                if block {
                    out.push(' ');
                }
            }
        }
    }
    let mut out = String::new();
    walk(el, &mut out);
    squash(&out)
}

/// Whitespace runs collapsed to one space, trimmed.
pub fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Resp {
    /// The body parsed as an HTML page.
    pub fn doc(&self) -> Doc {
        Doc::parse(&self.text())
    }
}

impl Doc {
    pub fn parse(source: &str) -> Doc {
        Doc {
            html: scraper::Html::parse_document(source),
        }
    }

    /// What the parser had to repair (unclosed or misnested elements, stray end tags …).
    pub fn parse_errors(&self) -> Vec<String> {
        self.html.errors.iter().map(|e| e.to_string()).collect()
    }

    /// Every element matching `css`, in document order.
    pub fn select(&self, css: &str) -> Vec<ElementRef<'_>> {
        self.html.select(&selector(css)).collect()
    }

    pub fn has(&self, css: &str) -> bool {
        self.html.select(&selector(css)).next().is_some()
    }

    pub fn count(&self, css: &str) -> usize {
        self.html.select(&selector(css)).count()
    }

    /// The first element matching `css`.
    #[track_caller]
    pub fn first(&self, css: &str) -> ElementRef<'_> {
        self.html
            .select(&selector(css))
            .next()
            .unwrap_or_else(|| panic!("nothing matches {css:?} in {}", self.main_html()))
    }

    /// The one element matching `css` (panics on none or several).
    #[track_caller]
    pub fn one(&self, css: &str) -> ElementRef<'_> {
        let all = self.select(css);
        assert_eq!(
            all.len(),
            1,
            "{css:?} should match once, matches {} in {}",
            all.len(),
            self.main_html()
        );
        all[0]
    }

    /// The visible text of the first element matching `css`.
    #[track_caller]
    pub fn text(&self, css: &str) -> String {
        visible_text(self.first(css))
    }

    /// The visible text of every element matching `css`.
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.select(css).into_iter().map(visible_text).collect()
    }

    /// The visible text of the element with this id.
    #[track_caller]
    pub fn text_by_id(&self, id: &str) -> String {
        self.text(&format!("[id='{id}']"))
    }

    /// An attribute of the first element matching `css` (panics when absent).
    #[track_caller]
    pub fn attr(&self, css: &str, name: &str) -> String {
        self.first(css)
            .attr(name)
            .unwrap_or_else(|| panic!("{css:?} has no attribute {name}"))
            .to_string()
    }

    /// An attribute of every element matching `css` that has it.
    pub fn attrs(&self, css: &str, name: &str) -> Vec<String> {
        self.select(css)
            .into_iter()
            .filter_map(|e| e.attr(name).map(str::to_string))
            .collect()
    }

    /// Whether `el` has an ancestor matching `container`.
    pub fn within(el: ElementRef<'_>, container: &str) -> bool {
        let c = selector(container);
        el.ancestors()
            .filter_map(ElementRef::wrap)
            .any(|a| c.matches(&a))
    }

    /// At least one element matches `css`, and every one of them is inside an element matching
    /// `container`.
    pub fn inside(&self, css: &str, container: &str) -> bool {
        let all = self.select(css);
        !all.is_empty() && all.into_iter().all(|e| Self::within(e, container))
    }

    #[track_caller]
    pub fn assert_inside(&self, css: &str, container: &str) {
        assert!(
            self.has(css),
            "nothing matches {css:?} in {}",
            self.main_html()
        );
        assert!(
            self.inside(css, container),
            "{css:?} is not (all) inside {container:?}"
        );
    }

    /// The visible text of the whole body.
    pub fn body_text(&self) -> String {
        self.text("body")
    }

    /// The document's title, as the browser shows it in the tab and the history.
    pub fn title(&self) -> String {
        self.select("head > title")
            .first()
            .map(|t| squash(&t.text().collect::<String>()))
            .unwrap_or_default()
    }

    /// What is wrong with `<head>`: it must hold only what belongs there, and the title must be
    /// plain text — no form, input or link (a template block put in the wrong place ends up in
    /// `<title>` as text, or pushes the parser out of `<head>`).
    pub fn head_problems(&self) -> Vec<String> {
        let mut bad = Vec::new();
        let title = self.title();
        if title.contains('<') || title.contains('>') {
            bad.push(format!("markup inside <title>: {title:?}"));
        }
        if self.count("head > title") != 1 {
            bad.push(format!("{} <title> in <head>", self.count("head > title")));
        }
        for e in self.select("head > *") {
            let name = e.value().name();
            if !matches!(
                name,
                "meta" | "title" | "link" | "script" | "style" | "base" | "noscript"
            ) {
                bad.push(format!("<{name}> inside <head>"));
            }
        }
        if self.has("head form, head input, head a, head button, title *") {
            bad.push("form, input or link inside <head>".into());
        }
        bad
    }

    #[track_caller]
    pub fn assert_head_clean(&self) {
        let bad = self.head_problems();
        assert!(bad.is_empty(), "{}", bad.join("; "));
    }

    /// The value of a hidden input named `name` inside the first element matching `form`.
    #[track_caller]
    pub fn hidden(&self, form: &str, name: &str) -> String {
        self.attr(
            &format!("{form} input[type=hidden][name='{name}']"),
            "value",
        )
    }

    /// The error shown beside the field with id `field`: the field is `aria-invalid` and its
    /// `aria-describedby` names the element holding the message (the `.field-error` one when it
    /// names a hint too).
    pub fn field_error(&self, field: &str) -> Option<String> {
        let f = self.select(&format!("[id='{field}']")).into_iter().next()?;
        if f.attr("aria-invalid") != Some("true") {
            return None;
        }
        // `aria-describedby` may name a hint and the error: the error is the `.field-error`.
        let named: Vec<ElementRef<'_>> = f
            .attr("aria-describedby")?
            .split_whitespace()
            .filter_map(|id| self.select(&format!("[id='{id}']")).into_iter().next())
            .collect();
        let msg = named
            .iter()
            .find(|e| e.value().classes().any(|c| c == "field-error"))
            .or(named.first())?;
        Some(visible_text(*msg))
    }

    /// What a browser submits from the first form matching `form`: its named inputs (checked
    /// boxes only), selected options and textareas, in order, with `set` replacing or adding
    /// values (what the user types).
    #[track_caller]
    pub fn form_values(&self, form: &str, set: &[(&str, &str)]) -> Vec<(String, String)> {
        let f = self.first(form);
        let mut out: Vec<(String, String)> = Vec::new();
        for e in f.select(&selector("input[name], select[name], textarea[name]")) {
            let name = e.attr("name").unwrap_or_default().to_string();
            let v = match e.value().name() {
                "input" => {
                    let kind = e.attr("type").unwrap_or("text");
                    if matches!(kind, "checkbox" | "radio") && e.attr("checked").is_none() {
                        continue;
                    }
                    if matches!(kind, "submit" | "button" | "image" | "reset" | "file") {
                        continue;
                    }
                    e.attr("value")
                        .unwrap_or(if kind == "checkbox" { "on" } else { "" })
                        .to_string()
                }
                "select" => {
                    let options: Vec<_> = e.select(&selector("option")).collect();
                    options
                        .iter()
                        .find(|o| o.attr("selected").is_some())
                        .or(options.first())
                        .map(|o| {
                            o.attr("value")
                                .map(str::to_string)
                                .unwrap_or_else(|| visible_text(*o))
                        })
                        .unwrap_or_default()
                }
                _ => e.text().collect(),
            };
            out.push((name, v));
        }
        for (k, v) in set {
            match out.iter_mut().find(|(n, _)| n == k) {
                Some(slot) => slot.1 = v.to_string(),
                None => out.push((k.to_string(), v.to_string())),
            }
        }
        out
    }

    /// `<main>` as markup, for failure messages.
    pub fn main_html(&self) -> String {
        self.select("main")
            .first()
            .map(|m| m.html())
            .unwrap_or_else(|| self.html.html())
    }
}

/// Submit the first form matching `form` on `doc` as the browser would (POST to its action,
/// URL-encoded, the session cookie only: the CSRF token travels in the form's own fields), with
/// `set` typed into it.
#[track_caller]
pub fn submit<'a>(
    app: &'a TestApp,
    s: &'a Session,
    doc: &Doc,
    form: &str,
    set: &[(&str, &str)],
) -> impl std::future::Future<Output = Resp> + 'a {
    let f = doc.first(form);
    assert_eq!(
        f.attr("method").map(str::to_ascii_lowercase).as_deref(),
        Some("post"),
        "{form} posts"
    );
    assert!(
        f.attr("enctype")
            .is_none_or(|e| e == "application/x-www-form-urlencoded"),
        "{form} is not a URL-encoded form"
    );
    let action = f.attr("action").expect("form action").to_string();
    let values = doc.form_values(form, set);
    async move {
        let fields: Vec<(&str, &str)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        post_form(app, s, &action, &fields).await
    }
}
