//! Sign-in, sessions, CSRF, throttling, password change, accounts and role bindings.

use serde_json::json;

use crate::common::{PASSWORD, TestApp};

#[tokio::test]
async fn login_sessions_csrf_and_logout() {
    let app = TestApp::demo().await;
    let r = app.login_with("committee", "wrong-password").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "auth.login_failed");
    let r = app.login_with("nobody", "wrong-password").await;
    assert_eq!(
        r.json()["code"],
        "auth.login_failed",
        "unknown and wrong look the same"
    );

    let s = app.login("committee").await;
    let cookie = app
        .login_with("committee", PASSWORD)
        .await
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let s2 = app.login("committee").await;
    assert_ne!(s.cookie, s2.cookie, "each sign-in gets a new session id");
    let me = app.get(&s, "/api/v1/auth/me").await.ok();
    assert_eq!(me["login"], "committee");
    assert!(
        me["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "person_reveal")
    );

    // A cookie-authenticated write without the CSRF token is refused.
    let hid = app.get(&s, "/api/v1/households?limit=1").await.ok()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .call(
            "PATCH",
            &format!("/api/v1/households/{hid}"),
            None,
            Some((
                "application/json",
                json!({"version": 1, "note": "x"}).to_string().into_bytes(),
            )),
            &[("cookie", &s.cookie)],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["details"]["reason"], "auth.csrf");

    // Logout ends the session.
    app.call("POST", "/api/v1/auth/logout", Some(&s), None, &[])
        .await
        .expect(204);
    app.get(&s, "/api/v1/auth/me").await.expect(401);
    app.get(&s2, "/api/v1/auth/me").await.ok();
    app.close().await;
}

#[tokio::test]
async fn repeated_failures_lock_the_account_with_back_off() {
    let app = TestApp::demo().await;
    for _ in 0..5 {
        assert_eq!(app.login_with("grid", "guess").await.status, 401);
    }
    let r = app.login_with("grid", PASSWORD).await;
    assert_eq!(r.status, 429, "locked even with the right password");
    let v = r.json();
    assert_eq!(v["code"], "auth.login_locked");
    assert!(v["message"].as_str().unwrap().contains("秒"));
    // Other accounts are unaffected.
    app.login("committee").await;
    app.close().await;
}

/// Issue #13 (round 2), finding 9: 40 wrong passwords sent at once let 7 through to the
/// password check instead of 5 — each request checked the lock before the earlier ones had
/// counted their failure. The check and the count are one step now.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_bad_passwords_pass_the_throttle_at_most_five_times() {
    let app = TestApp::demo().await;
    let body = json!({ "login": "grid", "password": "guess" })
        .to_string()
        .into_bytes();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let router = app.router.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let req = axum::http::Request::builder()
                .method("POST")
                .uri("/api/v1/auth/login")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            router.oneshot(req).await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let tried = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (tried, refused),
        (5, 35),
        "only five passwords are tried: {statuses:?}"
    );
    // Locked now, even with the right password.
    assert_eq!(app.login_with("grid", PASSWORD).await.status, 429);
    app.close().await;
}

#[tokio::test]
async fn password_change_and_user_admin_within_scope() {
    let app = TestApp::demo().await;
    let s = app.login("volunteer").await;
    let r = app
        .post(
            &s,
            "/api/v1/auth/password",
            json!({"old_password": "nope", "new_password": "a-new-password"}),
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "auth.old_password_wrong");
    let r = app
        .post(
            &s,
            "/api/v1/auth/password",
            json!({"old_password": PASSWORD, "new_password": "short"}),
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "auth.password_too_short");
    app.post(
        &s,
        "/api/v1/auth/password",
        json!({"old_password": PASSWORD, "new_password": "a-new-password"}),
    )
    .await
    .expect(204);
    app.get(&s, "/api/v1/auth/me").await.expect(401);
    assert_eq!(
        app.login_with("volunteer", "a-new-password").await.status,
        200
    );

    let committee = app.login("committee").await;
    let c1 = app.get(&committee, "/api/v1/places").await.ok()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let grid = app
        .get(
            &committee,
            &format!("/api/v1/places?parent_id={c1}&kind=grid"),
        )
        .await
        .ok()[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let u = app
        .post(&committee, "/api/v1/users", json!({"login": "grid2", "display_name": "第二网格员", "password": "grid2-password", "phone": "13566667777",
                                                 "bindings": [{"role": "grid_worker", "place_id": grid}]}))
        .await
        .expect(201);
    assert_eq!(u["login"], "grid2");
    // Sign in by mobile number; scope is the grid.
    let r = app.login_with("13566667777", "grid2-password").await;
    assert_eq!(r.status, 200);
    let r = app.post(&committee, "/api/v1/users", json!({"login": "grid2", "display_name": "x", "password": "grid2-password", "bindings": [{"role": "grid_worker", "place_id": grid}]})).await;
    assert_eq!(r.expect(409)["code"], "user.login_taken");
    // No one grants more than they hold.
    let r = app.post(&committee, "/api/v1/users", json!({"login": "boss", "display_name": "x", "password": "boss-password", "bindings": [{"role": "city_admin", "place_id": c1}]})).await;
    assert_eq!(r.status, 403);
    let r = app.post(&committee, "/api/v1/users", json!({"login": "Bad Login!", "display_name": "x", "password": "boss-password", "bindings": [{"role": "volunteer", "place_id": c1}]})).await;
    assert_eq!(r.expect(400)["code"], "validation.bad_value");
    let users = app.get(&committee, "/api/v1/users").await.ok();
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["login"] == "grid2")
    );
    app.close().await;
}

/// An account as the committee of 幸福里社区 makes it, signed in, with an API token.
async fn staff_with_token(
    app: &TestApp,
    committee: &crate::common::Session,
    login: &str,
) -> (String, crate::common::Session, String) {
    let c1 = app.place_id("community", "幸福里社区").await;
    let u = app
        .post(
            committee,
            "/api/v1/users",
            json!({"login": login, "display_name": "即将离职", "password": "leaver-password",
                   "bindings": [{"role": "committee_staff", "place_id": c1}]}),
        )
        .await
        .expect(201);
    let s = app.login_as(login, "leaver-password").await;
    let token = app
        .post(
            &s,
            "/api/v1/auth/tokens",
            json!({"name": "台账同步", "actions": ["person_read"], "place_id": c1}),
        )
        .await
        .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    (u["id"].as_str().unwrap().to_string(), s, token)
}

/// The audit entries of an account for one action (account entries without a place are read
/// by whole-tree auditors only).
async fn audit_of(app: &TestApp, user_id: &str, action: &str) -> serde_json::Value {
    use linli_core::auth::{Action, Grant};
    let f = linli_store::audit::AuditFilter {
        entity: Some("user".into()),
        entity_id: Some(user_id.into()),
        actor: None,
        action: Some(action.into()),
        limit: None,
        before_seq: None,
    };
    serde_json::to_value(
        app.store
            .audit_list(&Grant::system(Action::AuditRead), &f)
            .await
            .unwrap(),
    )
    .unwrap()
}

async fn with_token(app: &TestApp, token: &str, uri: &str) -> u16 {
    let auth = format!("Bearer {token}");
    app.call("GET", uri, None, None, &[("authorization", auth.as_str())])
        .await
        .status
        .as_u16()
}

/// Issue #13 (round 2), finding 8: an API token outlived the password change of its account.
/// A changed password now revokes every token of the account too, in the same transaction.
#[tokio::test]
async fn a_password_change_revokes_the_accounts_api_tokens() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let (uid, s, token) = staff_with_token(&app, &committee, "pwchange").await;
    assert_eq!(
        with_token(&app, &token, "/api/v1/persons?limit=1").await,
        200
    );
    app.post(
        &s,
        "/api/v1/auth/password",
        json!({"old_password": "leaver-password", "new_password": "another-password"}),
    )
    .await
    .expect(204);
    assert_eq!(
        with_token(&app, &token, "/api/v1/persons?limit=1").await,
        401,
        "the token made under the old password stops at once"
    );
    let s = app.login_as("pwchange", "another-password").await;
    let tokens = app.get(&s, "/api/v1/auth/tokens").await.ok();
    assert_eq!(tokens[0]["revoked"], true, "{tokens}");
    let log = audit_of(&app, &uid, "user.password_change").await;
    assert_eq!(log[0]["after"]["tokens_revoked"], 1, "{log}");
    app.close().await;
}

/// Issue #13 (round 2), finding 8: accounts could not be disabled. A user administrator over
/// every binding of an account disables it: sign-in, every session and every API token stop at
/// once (the principal cache included), audited; enabling lets the person sign in again while
/// the old sessions and tokens stay ended.
#[tokio::test]
async fn a_leaver_is_disabled_at_once_with_every_session_and_token() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let (uid, leaver, token) = staff_with_token(&app, &committee, "leaver").await;
    // Both ways in work, and are now in the principal cache.
    app.get(&leaver, "/api/v1/auth/me").await.expect(200);
    assert_eq!(
        with_token(&app, &token, "/api/v1/persons?limit=1").await,
        200
    );

    // Another community's committee does not see the account; nobody disables themselves.
    let committee3 = app.login("committee3").await;
    let r = app
        .post(
            &committee3,
            &format!("/api/v1/users/{uid}/disable"),
            json!({}),
        )
        .await
        .expect(404);
    assert_eq!(r["code"], "user.not_found");
    let me = committee.user["id"].as_str().unwrap().to_string();
    let r = app
        .post(
            &committee,
            &format!("/api/v1/users/{me}/disable"),
            json!({}),
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "user.cannot_disable_self");
    app.get(&leaver, "/api/v1/auth/me").await.expect(200);

    let u = app
        .post(
            &committee,
            &format!("/api/v1/users/{uid}/disable"),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(u["disabled"], true);
    app.get(&leaver, "/api/v1/auth/me").await.expect(401);
    assert_eq!(
        with_token(&app, &token, "/api/v1/persons?limit=1").await,
        401
    );
    assert_eq!(
        app.login_with("leaver", "leaver-password").await.status,
        401,
        "cannot sign in"
    );
    let log = app
        .get(
            &committee,
            &format!("/api/v1/audit?entity=user&entity_id={uid}&action=user.disable"),
        )
        .await
        .ok();
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");
    assert_eq!(log[0]["actor"], "committee");
    assert_eq!(log[0]["after"]["tokens_revoked"], 1);
    assert_eq!(log[0]["after"]["sessions_ended"], 1);
    // Disabling twice changes nothing and records nothing more.
    app.post(
        &committee,
        &format!("/api/v1/users/{uid}/disable"),
        json!({}),
    )
    .await
    .ok();
    let users = app.get(&committee, "/api/v1/users").await.ok();
    let row = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == uid.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["disabled"], true);

    // Enabled again: a new sign-in works; the old token does not come back.
    let u = app
        .post(
            &committee,
            &format!("/api/v1/users/{uid}/enable"),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(u["disabled"], false);
    app.login_as("leaver", "leaver-password").await;
    assert_eq!(
        with_token(&app, &token, "/api/v1/persons?limit=1").await,
        401
    );

    // An account bound in another community too is not one community's to stop.
    let admin = app.login("admin").await;
    let c1 = app.place_id("community", "幸福里社区").await;
    let c3 = app.place_id("community", "新村社区").await;
    let both = app
        .post(
            &admin,
            "/api/v1/users",
            json!({"login": "twoplaces", "display_name": "两社区志愿者", "password": "two-places-pw",
                   "bindings": [{"role": "volunteer", "place_id": c1}, {"role": "volunteer", "place_id": c3}]}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.post(
        &committee,
        &format!("/api/v1/users/{both}/disable"),
        json!({}),
    )
    .await
    .expect(403);
    app.login_as("twoplaces", "two-places-pw").await;
    app.post(&admin, &format!("/api/v1/users/{both}/disable"), json!({}))
        .await
        .ok();
    app.close().await;
}

/// The users page offers the disable and enable buttons where the administrator may use them.
#[tokio::test]
async fn the_users_page_disables_and_enables_an_account() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let (uid, leaver, _) = staff_with_token(&app, &committee, "leaver2").await;
    let page = app.get(&committee, "/admin/users").await;
    assert_eq!(page.status.as_u16(), 200);
    let html = page.text();
    let disable = format!("action=\"/admin/users/{uid}/disable\"");
    assert!(html.contains(&disable), "a disable button for the account");
    let me = committee.user["id"].as_str().unwrap();
    assert!(
        !html.contains(&format!("action=\"/admin/users/{me}/disable\"")),
        "no button to disable oneself"
    );
    let r = crate::common::post_form(
        &app,
        &committee,
        &format!("/admin/users/{uid}/disable"),
        &[("_csrf", committee.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status.as_u16(), 303, "{}", r.text());
    app.get(&leaver, "/api/v1/auth/me").await.expect(401);
    let html = app
        .get(&committee, "/admin/users?done=disabled")
        .await
        .text();
    assert!(html.contains("账号已停用"), "the flash says so");
    assert!(html.contains(&format!("action=\"/admin/users/{uid}/enable\"")));
    // Without the form's CSRF token nothing happens.
    let r = crate::common::post_form(&app, &committee, &format!("/admin/users/{uid}/enable"), &[])
        .await;
    assert_eq!(r.status.as_u16(), 403);
    let r = crate::common::post_form(
        &app,
        &committee,
        &format!("/admin/users/{uid}/enable"),
        &[("_csrf", committee.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status.as_u16(), 303);
    app.login_as("leaver2", "leaver-password").await;
    app.close().await;
}

/// Disabling an account on one instance clears the principal cache of the others at once (the
/// bus event `account.revoked`; through PostgreSQL `LISTEN/NOTIFY` between processes), not
/// after the cache's five seconds.
#[tokio::test]
async fn a_disabled_account_is_forgotten_by_every_instance() {
    let app = TestApp::demo().await;
    let other_store = match app.database_url() {
        Some(url) => {
            let other = linli_store::Store::open(
                &linli_store::DbConfig {
                    url,
                    max_connections: 2,
                    sqlite_synchronous: "NORMAL".into(),
                },
                &app.dir,
                None,
                linli_server::modules::platform(),
            )
            .await
            .unwrap();
            assert!(app.store.start_pg_bus().await.unwrap());
            assert!(other.start_pg_bus().await.unwrap());
            other
        }
        // SQLite: one process; a second server state on the same store (and bus).
        None => app.store.clone(),
    };
    let b = linli_server::app(linli_server::AppState::new(
        other_store,
        linli_server::ServerConfig {
            secure_cookies: false,
            data_dir: app.dir.clone(),
            trusted_proxies: Vec::new(),
        },
    ));
    let committee = app.login("committee").await;
    let (uid, leaver, _) = staff_with_token(&app, &committee, "leaver3").await;
    let me_on_b = || {
        let b = b.clone();
        let cookie = leaver.cookie.clone();
        async move {
            use tower::ServiceExt;
            let req = axum::http::Request::builder()
                .uri("/api/v1/auth/me")
                .header("cookie", cookie)
                .body(axum::body::Body::empty())
                .unwrap();
            b.oneshot(req).await.unwrap().status().as_u16()
        }
    };
    assert_eq!(
        me_on_b().await,
        200,
        "instance B has the session cached now"
    );
    app.post(
        &committee,
        &format!("/api/v1/users/{uid}/disable"),
        json!({}),
    )
    .await
    .ok();
    let started = std::time::Instant::now();
    let mut status = me_on_b().await;
    while status != 401 && started.elapsed() < std::time::Duration::from_secs(3) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        status = me_on_b().await;
    }
    assert_eq!(status, 401);
    assert!(
        started.elapsed() < linli_server::auth_cache::TTL,
        "forgotten on notice, not by expiry: {:?}",
        started.elapsed()
    );
    app.close().await;
}

/// An account is linked only to a person living in its creator's area (issue #13 round 2,
/// finding 7, the same class): a committee cannot tie an account to another community's
/// resident.
#[tokio::test]
async fn an_account_names_only_a_person_of_its_creators_area() {
    let app = TestApp::demo().await;
    let committee3 = app.login("committee3").await;
    let c3 = app.place_id("community", "新村社区").await;
    let c1_path = app
        .place_path(&app.place_id("community", "幸福里社区").await)
        .await;
    let rows = sqlx::query(
        "SELECT r.person_id, h.path FROM residences r JOIN households h ON h.id = r.household_id WHERE r.end_date IS NULL ORDER BY r.person_id",
    )
    .fetch_all(&app.store.db.read)
    .await
    .unwrap();
    let elsewhere: String = rows
        .iter()
        .find(|r| sqlx::Row::get::<String, _>(*r, 1).starts_with(&c1_path))
        .map(|r| sqlx::Row::get(r, 0))
        .unwrap();
    let r = app
        .post(
            &committee3,
            "/api/v1/users",
            json!({"login": "linked", "display_name": "x", "password": "linked-password",
                   "person_id": elsewhere, "bindings": [{"role": "volunteer", "place_id": c3}]}),
        )
        .await
        .expect(404);
    assert_eq!(r["code"], "registry.person.not_found");
    app.close().await;
}
