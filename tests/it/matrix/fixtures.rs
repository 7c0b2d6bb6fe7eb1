//! The matrix's world: one demo app with a running IoT runtime, a session or token for every
//! kind of caller, and community A's objects (fixtures), made through the API as A's staff or
//! residents and named as the probes name them.
//!
//! Fixtures (`{name}` in a probe):
//! - places (shared, never changed): `community`, `community_b`, `grid` (the grid of the
//!   resident's home), `building`, `unit` (the home's), `home` (the resident's household),
//!   `home_room`, `home_person`, `org` (A's committee), `property_org`, `user_grid` (the grid
//!   worker's account), `matrix_login` (an account for sign-in probes), `year` (a calendar year);
//! - objects (shared for the refused callers; made anew for each allowed write): `room` (an
//!   empty flat), `household` with `person` (its head) and `member`, `report`,
//!   `report_dispatched`, `report_visit`, `report_quoted`, `report_public`, `photo` (of
//!   `report`), `device` with `device_token`, `alarm` (raised by `device`), `gate`,
//!   `blacklist`, `vehicle`, `pass` with `pass_token`, `webhook`, `delivery` (a dead one of
//!   `webhook`), `correction`, `rule_key`, `token` (the committee's), `notice` (the resident's),
//!   `followed` (a report the committee follows), `upload` (the committee's import upload),
//!   `open311_token`.
//!
//! Generated values: `new_code`, `new_name`, `new_id_number`, `new_phone`, `new_plate`, `now`,
//! `in_1h`, `in_1d`; body templates `{csv}` (an import sheet for `room`) and `{png}`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Row;

use linli_server::manifest::Caller;

use crate::common::{PASSWORD, Resp, Session, TestApp, demo_resident, form};

pub type Map = BTreeMap<String, String>;

/// A fixture, or why it could not be made (reported as a failure of the probe that needed it:
/// a refused caller's write that went through may have removed a shared fixture).
pub type Made<T> = Result<T, String>;

/// The fixtures made at the start (the rest of the names come with them).
const SHARED: &[&str] = &[
    "room",
    "household",
    "report",
    "report_dispatched",
    "report_visit",
    "report_quoted",
    "report_public",
    "photo",
    "device",
    "alarm",
    "gate",
    "blacklist",
    "vehicle",
    "pass",
    "webhook",
    "delivery",
    "correction",
    "role",
    "celebration",
    "person_link",
    "user",
    "rule_key",
    "token",
    "notice",
    "followed",
    "upload",
    "open311_token",
    "year",
];

/// Which fixture a name belongs to (several names come from one making).
fn maker(name: &str) -> &str {
    match name {
        "person" | "member" => "household",
        "device_token" => "device",
        "pass_token" => "pass",
        "room_name" => "room",
        "report_visit_version" => "report_visit",
        "report_quoted_amount" | "report_quoted_at" => "report_quoted",
        other => other,
    }
}

pub const MARKER: &str = "矩阵";

pub struct World {
    pub app: TestApp,
    /// Login names of the callers who sign in.
    logins: HashMap<Caller, String>,
    sessions: HashMap<Caller, Session>,
    /// Bearer tokens of token callers (`TokenNoAction` is per probe, see `no_action_token`).
    tokens: HashMap<Caller, String>,
    no_action_tokens: HashMap<Vec<String>, String>,
    all_actions: Vec<String>,
    statics: Map,
    pub shared: Map,
    /// What must not appear in a refused caller's answer.
    pub secrets: Vec<String>,
    counter: u32,
    /// Something changed since the last snapshot (a fixture, a sign-in, an allowed write).
    pub dirty: bool,
    names: HashMap<String, String>,
    tables: Vec<String>,
}

fn text(row: &sqlx::any::AnyRow, i: usize) -> String {
    row.get::<String, _>(i)
}

impl World {
    pub async fn new() -> World {
        let mut app = TestApp::demo().await;
        let iot = linli_iot::Iot::start(
            app.store.clone(),
            linli_iot::IotConfig {
                batch_ms: 5,
                ..linli_iot::IotConfig::default()
            },
        )
        .await
        .unwrap();
        let state = linli_server::AppState::new(
            app.store.clone(),
            linli_server::ServerConfig {
                secure_cookies: false,
                data_dir: app.dir.clone(),
                trusted_proxies: Vec::new(),
            },
        );
        state.iot.set(iot).unwrap_or_else(|_| panic!("iot set"));
        app.router = linli_server::app(state);

        let all_actions: Vec<String> = linli_server::modules::platform()
            .catalog
            .actions()
            .iter()
            .map(|a| a.action.as_str().to_string())
            .collect();
        let mut w = World {
            app,
            logins: HashMap::new(),
            sessions: HashMap::new(),
            tokens: HashMap::new(),
            no_action_tokens: HashMap::new(),
            all_actions,
            statics: Map::new(),
            shared: Map::new(),
            secrets: Vec::new(),
            counter: 0,
            dirty: true,
            names: HashMap::new(),
            tables: Vec::new(),
        };
        w.tables = w.table_names().await;
        w.count_writes().await;
        for (c, login) in [
            (Caller::Staff, "committee"),
            (Caller::Grid, "grid"),
            (Caller::Resident, "resident"),
            (Caller::StaffB, "committee3"),
            (Caller::Property, "property"),
            (Caller::Merchant, "merchant"),
            (Caller::Volunteer, "volunteer"),
            (Caller::Admin, "admin"),
            (Caller::Repair, "repair1"),
        ] {
            w.logins.insert(c, login.to_string());
            let s = w.app.login(login).await;
            w.sessions.insert(c, s);
        }
        w.places().await;
        w.accounts().await;
        // The working-day calendar is seeded on its first read (`/readyz` reads it): seed it
        // now, so that a probe's read does not count as a change.
        w.app.call("GET", "/readyz", None, None, &[]).await;
        // Every shared fixture exists before the first probe, so that lists are probed with
        // all of A's objects in them, whatever the order of the probes.
        let mut m = std::mem::take(&mut w.shared);
        for name in SHARED {
            w.value(&mut m, name, true)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        w.shared = m;
        w
    }

    fn next(&mut self) -> u32 {
        self.counter += 1;
        self.counter
    }

    pub fn session(&self, c: Caller) -> Option<&Session> {
        self.sessions.get(&c)
    }

    fn s(&self, c: Caller) -> Session {
        self.sessions[&c].clone()
    }

    fn secret(&mut self, v: &str) {
        if !v.is_empty() && !self.secrets.iter().any(|s| s == v) {
            self.secrets.push(v.to_string());
        }
    }

    /// A caller's session ended (a sign-out, a password change): sign in again.
    pub async fn relogin_if_needed(&mut self, c: Caller) {
        let Some(s) = self.sessions.get(&c) else {
            return;
        };
        let r = self.app.get(s, "/api/v1/auth/me").await;
        if r.status.as_u16() == 401 {
            let s = self.app.login(&self.logins[&c]).await;
            self.sessions.insert(c, s);
            self.dirty = true;
        }
    }

    /// The bearer token of a token caller for a probe that needs `actions`.
    pub async fn token(
        &mut self,
        c: Caller,
        actions: &[linli_core::auth::Action],
    ) -> Option<String> {
        match c {
            Caller::TokenNoAction => {
                let keep: Vec<String> = self
                    .all_actions
                    .iter()
                    .filter(|a| !actions.iter().any(|x| x.as_str() == a.as_str()))
                    .cloned()
                    .collect();
                if let Some(t) = self.no_action_tokens.get(&keep) {
                    return Some(t.clone());
                }
                let community = self.statics["community"].clone();
                let t = self.make_token(&keep, &community).await;
                self.no_action_tokens.insert(keep, t.clone());
                Some(t)
            }
            Caller::Device => {
                let mut m = std::mem::take(&mut self.shared);
                let t = self.value(&mut m, "device_token", true).await;
                self.shared = m;
                t.ok()
            }
            _ => self.tokens.get(&c).cloned(),
        }
    }

    async fn make_token(&mut self, actions: &[String], place: &str) -> String {
        let admin = self.s(Caller::Admin);
        let n = self.next();
        let v = self
            .app
            .post(
                &admin,
                "/api/v1/auth/tokens",
                json!({ "name": format!("matrix {n}"), "actions": actions, "place_id": place, "expires_in_days": 1 }),
            )
            .await
            .expect(201);
        self.dirty = true;
        v["token"].as_str().unwrap().to_string()
    }

    async fn sql_one(&self, sql: &str, bind: &str) -> String {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .bind(bind.to_string())
            .fetch_one(&self.app.store.db.read)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        text(&row, 0)
    }

    /// The places and accounts of the demo the fixtures hang on.
    async fn places(&mut self) {
        let (home, home_room) = self.app.home_of("resident").await;
        let community = self.app.place_id("community", "幸福里社区").await;
        let community_b = self.app.place_id("community", "新村社区").await;
        let g = linli_core::auth::Grant::system(linli_core::auth::Action::PlaceRead);
        let room = self.app.store.place(&g, &home_room).await.unwrap();
        let unit = room.parent_id.clone().unwrap();
        let unit_place = self.app.store.place(&g, &unit).await.unwrap();
        let building = unit_place.parent_id.clone().unwrap();
        let building_place = self.app.store.place(&g, &building).await.unwrap();
        let grid = building_place.parent_id.clone().unwrap();
        let grid_place = self.app.store.place(&g, &grid).await.unwrap();
        assert_eq!(grid_place.kind, "grid", "a building hangs under a grid");
        let grid_login_place = self
            .sql_one(
                "SELECT rb.place_id FROM role_bindings rb JOIN users u ON u.id = rb.user_id WHERE u.login = $1",
                "grid",
            )
            .await;
        assert_eq!(
            grid_login_place, grid,
            "the demo grid worker works the resident's grid"
        );
        let home_person = self
            .sql_one("SELECT person_id FROM users WHERE login = $1", "resident")
            .await;
        let org = self
            .sql_one(
                "SELECT id FROM orgs WHERE name = $1",
                "幸福里社区居民委员会",
            )
            .await;
        let property_org = self
            .sql_one(
                "SELECT id FROM orgs WHERE name = $1",
                "江城物业服务有限公司",
            )
            .await;
        let user_grid = self
            .sql_one("SELECT id FROM users WHERE login = $1", "grid")
            .await;
        for (k, v) in [
            ("community", community),
            ("community_b", community_b),
            ("grid", grid),
            ("building", building),
            ("unit", unit),
            ("home", home.clone()),
            ("home_room", home_room.clone()),
            ("home_person", home_person.clone()),
            ("org", org.clone()),
            ("property_org", property_org),
            ("user_grid", user_grid),
        ] {
            self.statics.insert(k.into(), v);
        }
        self.names.insert("community".into(), "幸福里社区".into());
        self.names
            .insert("building".into(), building_place.name.clone());
        self.names.insert("unit".into(), unit_place.name.clone());
        for s in [home, home_room, home_person, org] {
            self.secret(&s);
        }
        let (_, id_number, phone) = demo_resident();
        self.secret(&id_number);
        self.secret(&phone);
    }

    /// The callers the demo lacks: a grid worker of another grid, residents of another
    /// household of A and of a household of B, the tokens.
    async fn accounts(&mut self) {
        let staff = self.s(Caller::Staff);
        let staff_b = self.s(Caller::StaffB);
        let community = self.statics["community"].clone();
        let grid = self.statics["grid"].clone();
        let grid2 = {
            let g = linli_core::auth::Grant::system(linli_core::auth::Action::PlaceRead);
            self.app
                .store
                .places(&g, Some(&community), Some("grid"))
                .await
                .unwrap()
                .into_iter()
                .find(|p| p.id != grid)
                .expect("a second grid in A")
                .id
        };
        let mut m = std::mem::take(&mut self.shared);
        let household = self.value(&mut m, "household", true).await.unwrap();
        let person = self.value(&mut m, "person", true).await.unwrap();
        self.shared = m;
        // A household of B, chosen by its path (not through a list the matrix probes).
        let b_path = self.app.place_path(&self.statics["community_b"]).await;
        let household_b = self
            .sql_one(
                "SELECT id FROM households WHERE path LIKE $1 ORDER BY id LIMIT 1",
                &format!("{b_path}%"),
            )
            .await;
        let hb: Value = self
            .app
            .get(&staff_b, &format!("/api/v1/households/{household_b}"))
            .await
            .ok();
        let person_b = hb["members"][0]["person"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let new_user = |login: &str, name: &str, person: Option<&str>, binding: Value| {
            json!({
                "login": login,
                "display_name": name,
                "password": PASSWORD,
                "person_id": person,
                "bindings": [binding],
            })
        };
        for (caller, by, body) in [
            (
                Caller::OtherGrid,
                &staff,
                new_user(
                    "matrix_grid2",
                    "网格员乙",
                    None,
                    json!({ "role": "grid_worker", "place_id": grid2 }),
                ),
            ),
            (
                Caller::OtherResident,
                &staff,
                new_user(
                    "matrix_neighbour",
                    "居民乙",
                    Some(&person),
                    json!({ "role": "resident", "household_id": household }),
                ),
            ),
            (
                Caller::ResidentB,
                &staff_b,
                new_user(
                    "matrix_resident_b",
                    "居民丙",
                    Some(&person_b),
                    json!({ "role": "resident", "household_id": household_b }),
                ),
            ),
        ] {
            let login = body["login"].as_str().unwrap().to_string();
            self.app.post(by, "/api/v1/users", body).await.expect(201);
            self.logins.insert(caller, login.clone());
            let s = self.app.login(&login).await;
            self.sessions.insert(caller, s);
        }
        // An account the sign-in probes sign in with (never one of the callers).
        let writes = self.writes().await;
        self.app
            .post(
                &staff,
                "/api/v1/users",
                new_user(
                    "matrix_login",
                    "登录测试",
                    None,
                    json!({ "role": "volunteer", "place_id": grid }),
                ),
            )
            .await
            .expect(201);
        if let Some(before) = writes {
            let after = self.writes().await.unwrap();
            assert!(after > before, "the write counter counts writes");
        }
        self.statics
            .insert("matrix_login".into(), "matrix_login".into());
        let everything = self.all_actions.clone();
        let community_b = self.statics["community_b"].clone();
        let tb = self.make_token(&everything, &community_b).await;
        self.tokens.insert(Caller::TokenB, tb);
        let ta = self.make_token(&everything, &community).await;
        self.tokens.insert(Caller::TokenA, ta);
    }

    /// The value of a placeholder for a probe run: a fixture (`shared` decides whether a
    /// missing one is made into the shared set with its secrets), or a generated value.
    pub async fn value(&mut self, map: &mut Map, name: &str, shared: bool) -> Made<String> {
        if let Some(v) = self.statics.get(name) {
            return Ok(v.clone());
        }
        if let Some(v) = self.generated(name) {
            return Ok(v);
        }
        if let Some(v) = map.get(name) {
            return Ok(v.clone());
        }
        Box::pin(self.make(map, maker(name), shared)).await?;
        Ok(map
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("fixture {name} was not made")))
    }

    fn generated(&mut self, name: &str) -> Option<String> {
        let now = self.app.store.now_ms();
        Some(match name {
            "new_code" => {
                let n = self.next();
                format!("matrix{n}")
            }
            "new_name" => {
                let n = self.next();
                format!("{MARKER}{n}号")
            }
            "new_id_number" => {
                let n = self.next();
                let d = chrono::NaiveDate::from_ymd_opt(1950, 1, 1).unwrap()
                    + chrono::Duration::days(i64::from(n) * 7 % 20_000);
                linli_core::idcard::compose("110102", d, 500 + (n % 400) as u16)
            }
            "new_phone" => {
                let n = self.next();
                format!("139{:08}", 55_000_000 + n)
            }
            "new_plate" => {
                let n = self.next();
                format!("鄂Z{:05}", 10_000 + n)
            }
            "now" => now.to_string(),
            "in_1h" => (now + 3_600_000).to_string(),
            "in_1d" => (now + 86_400_000).to_string(),
            _ => return None,
        })
    }

    fn check(r: Resp, what: &str) -> Made<Value> {
        if !(r.status.is_success() || r.status.is_redirection()) {
            return Err(format!(
                "making fixture {what}: {} {}",
                r.status,
                r.text().chars().take(300).collect::<String>()
            ));
        }
        Ok(if r.bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&r.bytes).unwrap_or(Value::Null)
        })
    }

    async fn post(&mut self, c: Caller, uri: &str, body: Value, what: &str) -> Made<Value> {
        let s = self.s(c);
        let r = self.app.post(&s, uri, body).await;
        Self::check(r, what)
    }

    async fn act(&mut self, c: Caller, report: &str, body: Value) -> Made<Value> {
        self.post(
            c,
            &format!("/api/v1/reports/{report}/actions"),
            body.clone(),
            &format!("report action {body}"),
        )
        .await
    }

    async fn file_report(&mut self, category: &str, public: bool, marked: bool) -> Made<String> {
        let n = self.next();
        let home_room = self.statics["home_room"].clone();
        let (title, description) = if marked {
            (
                format!("{MARKER}报事{n}"),
                format!("{MARKER}{n}：楼道灯不亮"),
            )
        } else {
            (format!("健身器材{n}"), format!("小区健身器材损坏{n}"))
        };
        let v = self
            .post(
                Caller::Resident,
                "/api/v1/reports",
                json!({ "category": category, "title": title, "description": description, "place_id": home_room, "public": public }),
                "report",
            )
            .await?;
        Ok(v["report"]["id"].as_str().unwrap().to_string())
    }

    /// Make a fixture (and the names that come with it) into `map`.
    async fn make(&mut self, map: &mut Map, name: &str, shared: bool) -> Made<()> {
        self.dirty = true;
        let mut secrets: Vec<String> = Vec::new();
        let n = self.next();
        match name {
            "room" => {
                let unit = self.statics["unit"].clone();
                let room_name = format!("{MARKER}{n}室");
                let v = self
                    .post(
                        Caller::Staff,
                        "/api/v1/places",
                        json!({ "parent_id": unit, "kind": "room", "name": room_name, "room_use": "residential" }),
                        "room",
                    )
                    .await?;
                let id = v["id"].as_str().unwrap().to_string();
                secrets.push(id.clone());
                map.insert("room".into(), id);
                map.insert("room_name".into(), room_name);
            }
            "household" => {
                let unit = self.statics["unit"].clone();
                let room = self
                    .post(
                        Caller::Staff,
                        "/api/v1/places",
                        json!({ "parent_id": unit, "kind": "room", "name": format!("{MARKER}{n}号房"), "room_use": "residential" }),
                        "household room",
                    )
                    .await?["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let (name1, id1, phone1) = (
                    self.generated("new_name").unwrap(),
                    self.generated("new_id_number").unwrap(),
                    self.generated("new_phone").unwrap(),
                );
                let v = self
                    .post(
                        Caller::Staff,
                        "/api/v1/households",
                        json!({ "room_id": room, "tenure": "owner", "note": format!("{MARKER}户{n}"),
                                "head": { "name": name1, "id_number": id1, "phone": phone1, "relation": "head" } }),
                        "household",
                    )
                    .await?;
                let hh = v["id"].as_str().unwrap().to_string();
                let head = v["members"][0]["person"]["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let (name2, id2, phone2) = (
                    self.generated("new_name").unwrap(),
                    self.generated("new_id_number").unwrap(),
                    self.generated("new_phone").unwrap(),
                );
                let m = self
                    .post(
                        Caller::Staff,
                        &format!("/api/v1/households/{hh}/members"),
                        json!({ "name": name2, "id_number": id2, "phone": phone2, "relation": "child" }),
                        "member",
                    )
                    .await?;
                let member = m["id"].as_str().unwrap().to_string();
                secrets.extend([
                    room,
                    hh.clone(),
                    head.clone(),
                    member.clone(),
                    id1,
                    id2,
                    phone1,
                    phone2,
                ]);
                map.insert("household".into(), hh);
                map.insert("person".into(), head);
                map.insert("member".into(), member);
            }
            "report" | "report_dispatched" | "report_visit" => {
                let id = self.file_report("repair_common", false, true).await?;
                if name != "report" {
                    self.act(Caller::Staff, &id, json!({ "action": "accept" }))
                        .await?;
                    self.act(Caller::Staff, &id, json!({ "action": "dispatch" }))
                        .await?;
                }
                if name == "report_visit" {
                    self.act(Caller::Property, &id, json!({ "action": "sign" }))
                        .await?;
                    self.act(
                        Caller::Property,
                        &id,
                        json!({ "action": "reply", "outcome": "solved", "public_note": "矩阵已修好" }),
                    )
                    .await?;
                    let r = self
                        .act(Caller::Staff, &id, json!({ "action": "review_pass" }))
                        .await?;
                    // The rating form carries the version the page showed.
                    map.insert(
                        "report_visit_version".into(),
                        r["version"].as_i64().unwrap_or_default().to_string(),
                    );
                }
                secrets.push(id.clone());
                map.insert(name.into(), id);
            }
            "report_quoted" => {
                let id = self.file_report("repair_plumbing", false, true).await?;
                self.act(Caller::Staff, &id, json!({ "action": "accept" }))
                    .await?;
                self.act(Caller::Staff, &id, json!({ "action": "dispatch" }))
                    .await?;
                self.act(Caller::Repair, &id, json!({ "action": "grab" }))
                    .await?;
                self.act(Caller::Repair, &id, json!({ "action": "sign" }))
                    .await?;
                let r = self
                    .act(
                        Caller::Repair,
                        &id,
                        json!({ "action": "quote", "amount_fen": 8000, "public_note": "矩阵报价" }),
                    )
                    .await?;
                // The quote answer binds to the quote the page showed.
                map.insert(
                    "report_quoted_amount".into(),
                    r["quote_fen"].as_i64().unwrap_or_default().to_string(),
                );
                map.insert(
                    "report_quoted_at".into(),
                    r["quoted_at"].as_i64().unwrap_or_default().to_string(),
                );
                secrets.push(id.clone());
                map.insert(name.into(), id);
            }
            "report_public" => {
                // Shown to the community's residents and on Open311: not a secret of A.
                let id = self.file_report("public_facility", true, false).await?;
                self.act(
                    Caller::Staff,
                    &id,
                    json!({ "action": "moderate", "public": true }),
                )
                .await?;
                map.insert(name.into(), id);
            }
            "photo" => {
                let report = Box::pin(self.value(map, "report", shared)).await?;
                let s = self.s(Caller::Resident);
                let r = self
                    .app
                    .call(
                        "POST",
                        &format!("/api/v1/reports/{report}/photos"),
                        Some(&s),
                        Some(("image/png", png())),
                        &[],
                    )
                    .await;
                let v = Self::check(r, "photo")?;
                let id = v["id"].as_str().unwrap().to_string();
                secrets.push(id.clone());
                map.insert(name.into(), id);
            }
            "device" => {
                let building = self.statics["building"].clone();
                let v = self
                    .post(
                        Caller::Property,
                        "/api/v1/iot/devices",
                        json!({ "kind": "smoke", "name": format!("{MARKER}烟感{n}"), "place_id": building }),
                        "device",
                    )
                    .await?;
                let id = v["device"]["id"].as_str().unwrap().to_string();
                let token = v["token"].as_str().unwrap().to_string();
                secrets.extend([id.clone(), token.clone()]);
                map.insert("device".into(), id);
                map.insert("device_token".into(), token);
            }
            "alarm" => {
                let device = Box::pin(self.value(map, "device", shared)).await?;
                let token = map["device_token"].clone();
                let auth = format!("Bearer {token}");
                let r = self
                    .app
                    .call(
                        "POST",
                        "/api/v1/iot/telemetry",
                        None,
                        Some(("application/json", br#"{"values":{"smoke":1}}"#.to_vec())),
                        &[("authorization", &auth)],
                    )
                    .await;
                Self::check(r, "smoke reading")?;
                let mut found = None;
                for _ in 0..200 {
                    let row = sqlx::query("SELECT id FROM alarms WHERE device_id = $1")
                        .bind(device.clone())
                        .fetch_optional(&self.app.store.db.read)
                        .await
                        .unwrap();
                    if let Some(row) = row {
                        found = Some(text(&row, 0));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let id = found.ok_or("the smoke reading raised no alarm")?;
                secrets.push(id.clone());
                map.insert(name.into(), id);
            }
            "gate" => {
                let community = self.statics["community"].clone();
                let v = self
                    .post(
                        Caller::Property,
                        "/api/v1/access/gates",
                        json!({ "name": format!("{MARKER}门{n}"), "place_id": community, "kind": "face" }),
                        "gate",
                    )
                    .await?;
                let id = v["id"].as_str().unwrap().to_string();
                // A passage with a fever at it: a record, an hourly count and an alert of A.
                let now = self.app.store.now_ms();
                self.post(
                    Caller::Property,
                    "/api/v1/access/records",
                    json!({ "gate_id": id, "direction": "in", "temperature_x10": 386, "at": now }),
                    "access record",
                )
                .await?;
                secrets.push(id.clone());
                map.insert(name.into(), id);
            }
            "blacklist" => {
                let community = self.statics["community"].clone();
                let plate = self.generated("new_plate").unwrap();
                let v = self
                    .post(
                        Caller::Property,
                        "/api/v1/access/blacklist",
                        json!({ "plate": plate, "place_id": community, "reason": format!("{MARKER}冲卡{n}") }),
                        "blacklist",
                    )
                    .await?;
                let id = v["id"].as_str().unwrap().to_string();
                secrets.extend([id.clone(), plate]);
                map.insert(name.into(), id);
            }
            "vehicle" => {
                let plate = self.generated("new_plate").unwrap();
                let v = self
                    .post(
                        Caller::Resident,
                        "/api/v1/access/vehicles",
                        json!({ "plate": plate }),
                        "vehicle",
                    )
                    .await?;
                let id = v["id"].as_str().unwrap().to_string();
                secrets.extend([id.clone(), plate]);
                map.insert(name.into(), id);
            }
            "pass" => {
                let phone = self.generated("new_phone").unwrap();
                let until = self.generated("in_1d").unwrap();
                let v = self
                    .post(
                        Caller::Resident,
                        "/api/v1/access/passes",
                        json!({ "visitor_name": format!("{MARKER}访客{n}"), "phone": phone, "valid_until": until.parse::<i64>().unwrap() }),
                        "pass",
                    )
                    .await?;
                let id = v["id"].as_str().unwrap().to_string();
                let token = v["token"].as_str().unwrap().to_string();
                secrets.extend([id.clone(), token.clone(), phone]);
                map.insert("pass".into(), id);
                map.insert("pass_token".into(), token);
            }
            "webhook" => {
                let community = self.statics["community"].clone();
                let v = self
                    .post(
                        Caller::Staff,
                        "/api/v1/webhooks",
                        json!({ "name": format!("{MARKER}钩子{n}"), "url": format!("https://hooks.example.com/matrix{n}"), "place_id": community }),
                        "webhook",
                    )
                    .await?;
                let id = v["id"].as_str().unwrap().to_string();
                secrets.extend([id.clone(), format!("https://hooks.example.com/matrix{n}")]);
                map.insert(name.into(), id);
            }
            "delivery" => {
                let webhook = Box::pin(self.value(map, "webhook", shared)).await?;
                let v = self
                    .post(
                        Caller::Staff,
                        &format!("/api/v1/webhooks/{webhook}/ping"),
                        json!({}),
                        "ping",
                    )
                    .await?;
                let id = v["id"].as_str().unwrap().to_string();
                // The delivery worker gave up on it (no network in tests).
                sqlx::query("UPDATE outbox SET status = 'dead' WHERE id = $1")
                    .bind(id.clone())
                    .execute(&self.app.store.db.write)
                    .await
                    .unwrap();
                secrets.push(id.clone());
                map.insert(name.into(), id);
            }
            "person_link" => {
                // B's committee registers a person of A with the same name and ID number: A is
                // asked to confirm (the link request is A's to decide).
                // No marker in the name: B's own record of the person carries it, legitimately.
                let (person_name, id_number, phone) = (
                    format!("链接{n}号"),
                    self.generated("new_id_number").unwrap(),
                    self.generated("new_phone").unwrap(),
                );
                let unit = self.statics["unit"].clone();
                let room = self
                    .post(
                        Caller::Staff,
                        "/api/v1/places",
                        json!({ "parent_id": unit, "kind": "room", "name": format!("{MARKER}{n}链室"), "room_use": "residential" }),
                        "room",
                    )
                    .await?;
                let room = room["id"].as_str().unwrap().to_string();
                let a = self
                    .post(
                        Caller::Staff,
                        "/api/v1/households",
                        json!({ "room_id": room, "tenure": "owner",
                                "head": { "name": person_name, "id_number": id_number, "phone": phone, "relation": "head" } }),
                        "household for a link",
                    )
                    .await?;
                let hh_b = self
                    .sql_one(
                        "SELECT household_id FROM role_bindings rb JOIN users u ON u.id = rb.user_id WHERE u.login = $1",
                        "matrix_resident_b",
                    )
                    .await;
                self.post(
                    Caller::StaffB,
                    &format!("/api/v1/households/{hh_b}/members"),
                    json!({ "name": person_name, "id_number": id_number, "relation": "other" }),
                    "member in B",
                )
                .await?;
                let s = self.s(Caller::Staff);
                let links = Self::check(
                    self.app.get(&s, "/api/v1/person-links").await,
                    "person links",
                )?;
                let id = links
                    .as_array()
                    .and_then(|l| l.first())
                    .and_then(|l| l["id"].as_str())
                    .ok_or("no link request reached A")?
                    .to_string();
                secrets.extend([
                    room,
                    a["id"].as_str().unwrap_or_default().to_string(),
                    id_number,
                    phone,
                    id.clone(),
                ]);
                map.insert(name.into(), id);
            }
            "user" => {
                // An account of A the committee may stop and start again.
                let grid = self.statics["grid"].clone();
                let login = format!("matrixuser{n}");
                let v = self
                    .post(
                        Caller::Staff,
                        "/api/v1/users",
                        json!({ "login": login, "display_name": format!("{MARKER}用户{n}"), "password": "linli-demo",
                                "bindings": [{ "role": "volunteer", "place_id": grid }] }),
                        "user",
                    )
                    .await?;
                let id = v["id"].as_str().unwrap().to_string();
                secrets.push(id.clone());
                map.insert(name.into(), id);
            }
            "role" => {
                // A custom role of A, unbound (so the allowed caller may delete it).
                let community = self.statics["community"].clone();
                let v = self
                    .post(
                        Caller::Staff,
                        "/api/v1/roles",
                        json!({ "name": format!("{MARKER}角色{n}"), "kind": "area", "place_id": community, "actions": ["place_read"] }),
                        "custom role",
                    )
                    .await?;
                let id = v["id"].as_str().unwrap().to_string();
                secrets.push(id.clone());
                map.insert(name.into(), id);
            }
            "celebration" => {
                let v = self
                    .post(
                        Caller::Resident,
                        "/api/v1/celebrations",
                        json!({ "kind": "birth", "title": format!("{MARKER}喜事{n}") }),
                        "celebration",
                    )
                    .await?;
                let id = v["id"].as_str().unwrap().to_string();
                secrets.push(id.clone());
                map.insert(name.into(), id);
            }
            "correction" => {
                let v = self
                    .post(
                        Caller::Resident,
                        "/api/v1/me/corrections",
                        json!({ "field": "note", "new_value": format!("{MARKER}更正{n}"), "reason": format!("{MARKER}{n}") }),
                        "correction",
                    )
                    .await?;
                let id = v["id"].as_str().unwrap().to_string();
                secrets.push(id.clone());
                map.insert(name.into(), id);
            }
            "rule_key" => {
                let community = self.statics["community"].clone();
                let property_org = self.statics["property_org"].clone();
                let v = self
                    .post(
                        Caller::Admin,
                        "/api/v1/routing-rules",
                        json!({ "category": "repair_door", "area_id": community, "unit_id": property_org,
                                "deadline_unit": "hours", "sign_by": 2, "first_contact_by": 4, "resolve_by": 24,
                                "notice_zh": format!("{MARKER}通知{n}"), "notice_en": "matrix" }),
                        "routing rule",
                    )
                    .await?;
                let key = v["rule_key"].as_str().unwrap().to_string();
                secrets.push(key.clone());
                map.insert(name.into(), key);
            }
            "token" => {
                let grid = self.statics["grid"].clone();
                let v = self
                    .post(
                        Caller::Staff,
                        "/api/v1/auth/tokens",
                        json!({ "name": format!("{MARKER}令牌{n}"), "actions": ["person_read"], "place_id": grid, "expires_in_days": 1 }),
                        "token",
                    )
                    .await?;
                let id = v["info"]["id"].as_str().unwrap().to_string();
                secrets.extend([id.clone(), v["token"].as_str().unwrap().to_string()]);
                map.insert(name.into(), id);
            }
            "notice" => {
                let report = self.file_report("repair_common", false, true).await?;
                self.act(Caller::Staff, &report, json!({ "action": "accept" }))
                    .await?;
                let user = self
                    .sql_one("SELECT id FROM users WHERE login = $1", "resident")
                    .await;
                let items = self
                    .app
                    .store
                    .inbox(&self.app.principal_of(&user).await, true, None, 50)
                    .await
                    .unwrap();
                let notice = items
                    .iter()
                    .find(|i| i.entity_id == report)
                    .ok_or("the reporter was not told of the acceptance")?;
                secrets.extend([report, notice.id.clone()]);
                map.insert(name.into(), notice.id.clone());
            }
            "followed" => {
                let report = Box::pin(self.value(map, "report", shared)).await?;
                self.post(
                    Caller::Staff,
                    "/api/v1/follows",
                    json!({ "entity": "report", "entity_id": report }),
                    "follow",
                )
                .await?;
                map.insert(name.into(), report);
            }
            "upload" => {
                let csv = Box::pin(self.csv(map, shared)).await?;
                let s = self.s(Caller::Staff);
                let (ct, body) = multipart(&[("_csrf", s.csrf.as_bytes()), ("file", &csv)]);
                let r = self
                    .app
                    .call(
                        "POST",
                        "/registry/import",
                        None,
                        Some((&ct, body)),
                        &[("cookie", s.cookie.as_str())],
                    )
                    .await;
                let html = r.text();
                if r.status.as_u16() != 200 {
                    return Err(format!("making fixture upload: {} {html}", r.status));
                }
                let id = html
                    .split("name=\"upload\" value=\"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .ok_or("the import preview names no upload")?
                    .to_string();
                secrets.push(id.clone());
                map.insert(name.into(), id);
            }
            "open311_token" => {
                let key = self.tokens[&Caller::TokenA].clone();
                let home_room = self.statics["home_room"].clone();
                let body = form(&[
                    ("api_key", &key),
                    ("service_code", "repair_common"),
                    ("address_id", &home_room),
                    ("description", &format!("{MARKER}{n}：路灯不亮")),
                ]);
                let r = self
                    .app
                    .call(
                        "POST",
                        "/open311/v2/requests.json",
                        None,
                        Some(("application/x-www-form-urlencoded", body)),
                        &[],
                    )
                    .await;
                let v = Self::check(r, "Open311 request")?;
                let token = v[0]["token"]
                    .as_str()
                    .or(v[0]["service_request_id"].as_str())
                    .unwrap()
                    .to_string();
                map.insert(name.into(), token);
            }
            "year" => {
                // A year of the working-day calendar (seeded by the first deadline).
                let cal: Value = self
                    .app
                    .get(&self.s(Caller::Staff), "/api/v1/work-calendar")
                    .await
                    .ok();
                let year = match cal["years"].as_array().and_then(|y| y.first()) {
                    Some(y) => y.to_string(),
                    None => {
                        self.post(
                            Caller::Admin,
                            "/api/v1/work-calendar",
                            json!({ "year": 2030, "source": "矩阵", "holidays": [], "workdays": [] }),
                            "calendar year",
                        )
                        .await?;
                        "2030".to_string()
                    }
                };
                map.insert(name.into(), year);
            }
            other => panic!("no fixture named {other}"),
        }
        if shared {
            for s in secrets {
                self.secret(&s);
            }
        }
        Ok(())
    }

    /// An import sheet with one household in the `room` fixture of `map`.
    pub async fn csv(&mut self, map: &mut Map, shared: bool) -> Made<Vec<u8>> {
        Box::pin(self.value(map, "room", shared)).await?;
        let room_name = map["room_name"].clone();
        let n = self.next();
        let name = self.generated("new_name").unwrap();
        let id = self.generated("new_id_number").unwrap();
        Ok(format!(
            "户号,社区,楼栋,单元,房号,居住类型,姓名,与户主关系,身份证号\nM{n},{},{},{},{room_name},业主,{name},户主,{id}\n",
            self.names["community"], self.names["building"], self.names["unit"]
        )
        .into_bytes())
    }

    async fn table_names(&self) -> Vec<String> {
        let list = if self.app.is_postgres() {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
        } else {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        };
        sqlx::query(list)
            .fetch_all(&self.app.store.db.read)
            .await
            .unwrap()
            .iter()
            .map(|r| text(r, 0))
            .collect()
    }

    /// PostgreSQL: a sequence every write statement on any table advances (a statement trigger
    /// per table), so that a request that wrote nothing is told apart without counting rows.
    /// Counting every table takes ~20 ms on PostgreSQL, against ~1 ms on SQLite.
    async fn count_writes(&self) {
        if !self.app.is_postgres() {
            return;
        }
        let db = &self.app.store.db.write;
        let exec = |sql: String| async move {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(db)
                .await
                .unwrap_or_else(|e| panic!("write counter: {e}"));
        };
        exec("CREATE SEQUENCE matrix_writes".into()).await;
        exec(
            "CREATE FUNCTION matrix_bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM nextval('matrix_writes'); RETURN NULL; END $$"
                .into(),
        )
        .await;
        for t in &self.tables {
            exec(format!(
                "CREATE TRIGGER matrix_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON \"{t}\" FOR EACH STATEMENT EXECUTE FUNCTION matrix_bump()"
            ))
            .await;
        }
    }

    /// The write counter (PostgreSQL), or none (SQLite: count the rows).
    pub async fn writes(&self) -> Option<i64> {
        if !self.app.is_postgres() {
            return None;
        }
        let row = sqlx::query(
            "SELECT CAST(last_value AS BIGINT) + CASE WHEN is_called THEN 1 ELSE 0 END FROM matrix_writes",
        )
        .fetch_one(&self.app.store.db.read)
        .await
        .unwrap();
        Some(row.get::<i64, _>(0))
    }

    /// The number of rows of every table (the audit log among them).
    pub async fn snapshot(&self) -> Vec<(String, i64)> {
        let sql = self
            .tables
            .iter()
            .map(|t| format!("SELECT CAST('{t}' AS TEXT), COUNT(*) FROM \"{t}\""))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let mut counts: Vec<(String, i64)> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.app.store.db.read)
            .await
            .unwrap()
            .iter()
            .map(|r| (text(r, 0), r.get::<i64, _>(1)))
            .collect();
        counts.sort();
        counts
    }
}

/// A 1×1 PNG.
pub fn png() -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(ty: &[u8], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(ty);
        c.extend_from_slice(data);
        let mut crc_in = ty.to_vec();
        crc_in.extend_from_slice(data);
        c.extend_from_slice(&crc32(&crc_in).to_be_bytes());
        c
    }
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]));
    v.extend(chunk(b"IDAT", &[0x78, 0x9C, 0x63, 0, 0, 0, 1, 0, 1]));
    v.extend(chunk(b"IEND", &[]));
    v
}

const BOUNDARY: &str = "----linli-matrix-boundary";

/// A multipart form; fields named `file` or `photo` are files.
pub fn multipart(fields: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match *name {
            "file" => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"matrix.csv\"\r\nContent-Type: text/csv\r\n\r\n").as_bytes(),
            ),
            "photo" | "photos" => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"matrix.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes(),
            ),
            _ => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}
