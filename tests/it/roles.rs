//! Roles as data: the catalogue of actions and templates, custom roles composed by an
//! administrator (never beyond what they hold), bound to accounts, changed and revoked at once.

use serde_json::json;

use crate::common::{TestApp, post_form};

async fn audit_count(app: &TestApp, action: &str) -> i64 {
    let row = sqlx::query("SELECT COUNT(*) FROM audit_log WHERE action = $1")
        .bind(action.to_string())
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    sqlx::Row::get::<i64, _>(&row, 0)
}

#[tokio::test]
async fn administrators_compose_roles_from_what_they_hold() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let c1 = app.place_id("community", "幸福里社区").await;
    let c3 = app.place_id("community", "新村社区").await;

    // The catalogue: every module's actions, sensitive ones named, and the templates.
    let o = app.get(&committee, "/api/v1/roles").await.ok();
    let actions = o["actions"].as_array().unwrap();
    assert!(actions.iter().any(|a| a["name"] == "person_reveal"
        && a["sensitive"] == true
        && a["module"] == "registry"));
    let committee_role = o["builtin"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == "committee_staff")
        .unwrap();
    assert!(
        committee_role["actions"]
            .as_array()
            .unwrap()
            .contains(&json!("report_dispatch")),
        "the reports module gives the committee its report actions"
    );
    assert!(
        o["builtin"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "property_cashier")
    );

    // Beyond what the committee holds (the catalogue is the district's to edit): refused, and
    // nothing written.
    let before = audit_count(&app, "role.create").await;
    let r = app
        .post(
            &committee,
            "/api/v1/roles",
            json!({"name": "前台", "kind": "area", "place_id": c1, "actions": ["household_read", "routing_admin"]}),
        )
        .await
        .expect(403);
    assert_eq!(r["details"]["reason"], "role.beyond_own");
    // Another community's place: not found. An unknown action: a clear 400.
    app.post(
        &committee,
        "/api/v1/roles",
        json!({"name": "前台", "kind": "area", "place_id": c3, "actions": ["household_read"]}),
    )
    .await
    .expect(404);
    let r = app
        .post(
            &committee,
            "/api/v1/roles",
            json!({"name": "前台", "kind": "area", "place_id": c1, "actions": ["no_such_action"]}),
        )
        .await
        .expect(400);
    assert_eq!(r["code"], "validation.bad_value");
    assert!(r["message"].as_str().unwrap().contains("actions"), "{r}");
    assert_eq!(audit_count(&app, "role.create").await, before);

    // A front desk that sees households and persons but cannot reveal ID numbers.
    let role = app
        .post(
            &committee,
            "/api/v1/roles",
            json!({"name": "前台", "kind": "area", "place_id": c1, "actions": ["household_read", "person_read", "place_read"]}),
        )
        .await
        .expect(201);
    let code = role["code"].as_str().unwrap().to_string();
    let id = role["id"].as_str().unwrap().to_string();
    assert!(code.starts_with("custom_"));
    assert_eq!(audit_count(&app, "role.create").await, before + 1);

    app.post(
        &committee,
        "/api/v1/users",
        json!({"login": "frontdesk", "display_name": "前台小王", "password": "front-desk-1",
               "bindings": [{"role": code, "place_id": c1}]}),
    )
    .await
    .expect(201);
    let desk = app.login_as("frontdesk", "front-desk-1").await;
    let persons = app.get(&desk, "/api/v1/persons?limit=1").await.ok();
    let pid = persons["items"][0]["id"].as_str().unwrap().to_string();
    app.post(
        &desk,
        &format!("/api/v1/persons/{pid}/reveal"),
        json!({"purpose": "核对", "fields": ["id_number"]}),
    )
    .await
    .expect(403);

    // Taking persons away takes effect at once (no stale cached principal).
    let version = role["version"].as_i64().unwrap();
    app.patch(
        &committee,
        &format!("/api/v1/roles/{id}"),
        json!({"version": version, "actions": ["household_read", "place_read"]}),
    )
    .await
    .ok();
    app.get(&desk, "/api/v1/persons?limit=1").await.expect(403);
    // A stale version is a conflict.
    app.patch(
        &committee,
        &format!("/api/v1/roles/{id}"),
        json!({"version": version, "name": "旧"}),
    )
    .await
    .expect(409);
    assert_eq!(audit_count(&app, "role.update").await, 1);

    // Held roles are not deleted under their holders' feet.
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/roles/{id}"),
            Some(&committee),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status.as_u16(), 409, "{}", r.text());

    // Another community's staff and residents cannot see or change it.
    let committee3 = app.login("committee3").await;
    app.get(&committee3, &format!("/api/v1/roles/{id}"))
        .await
        .expect(404);
    let resident = app.login("resident").await;
    app.get(&resident, "/api/v1/roles").await.expect(403);
    app.close().await;
}

#[tokio::test]
async fn the_roles_page_composes_a_role() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let c1 = app.place_id("community", "幸福里社区").await;
    let page = app.get(&committee, "/admin/roles").await;
    assert_eq!(page.status.as_u16(), 200);
    let doc = page.doc();
    let form = "main form#role-new[action='/admin/roles']";
    let reveal = doc
        .select(&format!("{form} label.check"))
        .into_iter()
        .find(|l| crate::common::visible_text(*l).contains("查看完整身份证号和手机号"))
        .expect("the reveal action is offered in the form");
    assert!(
        reveal
            .select(&crate::common::selector(
                "input[type=checkbox][name=actions]"
            ))
            .any(|i| i.attr("value") == Some("person_reveal")),
        "{}",
        reveal.html()
    );
    // Beyond own rights: the form comes back with the reason in words, nothing created.
    let r = post_form(
        &app,
        &committee,
        "/admin/roles",
        &[
            ("_csrf", &committee.csrf),
            ("name", "收费前台"),
            ("kind", "area"),
            ("place_id", &c1),
            ("actions", "household_read"),
            ("actions", "routing_admin"),
        ],
    )
    .await;
    assert_eq!(r.status.as_u16(), 400);
    let doc = r.doc();
    assert!(
        doc.text("main form#role-new #role-error[role=alert]")
            .contains("不能授予您自己没有的权限"),
        "{}",
        doc.main_html()
    );
    let r = post_form(
        &app,
        &committee,
        "/admin/roles",
        &[
            ("_csrf", &committee.csrf),
            ("name", "收费前台"),
            ("kind", "area"),
            ("place_id", &c1),
            ("actions", "household_read"),
            ("actions", "place_read"),
        ],
    )
    .await;
    assert_eq!(r.status.as_u16(), 303, "{}", r.text());
    let list = app.get(&committee, "/admin/roles").await.doc();
    assert!(
        list.texts("main h2#custom-roles + .table-wrap tbody tr td:first-child")
            .contains(&"收费前台".to_string()),
        "{}",
        list.main_html()
    );
    // The users page offers it.
    let users = app.get(&committee, "/admin/users").await.doc();
    assert!(
        users
            .texts("main form select[name=role] option")
            .contains(&"收费前台".to_string()),
        "{}",
        users.main_html()
    );
    let resident = app.login("resident").await;
    assert_eq!(
        app.get(&resident, "/admin/roles").await.status.as_u16(),
        403
    );
    app.close().await;
}
