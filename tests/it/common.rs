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
    /// The household of a demo resident account (by login) and the room it lives in.
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
