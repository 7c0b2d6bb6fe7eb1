//! The webhook console (`/admin/webhooks`) over HTTP, like a browser: forms need the CSRF
//! token; registering shows the secret once (the list and detail pages never again); pause,
//! ping, a dead delivery retried with the button and then delivered to a real local receiver;
//! delete; another community's committee and a resident get nothing of it; zh-CN and English.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use linli_store::notify::outbox::MAX_ATTEMPTS;

use crate::common::{TestApp, post_form};

/// A receiver on 127.0.0.1 answering the scripted statuses in turn (then 200); counts requests.
async fn receiver(script: Vec<u16>) -> (String, Arc<Mutex<usize>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let count = Arc::new(Mutex::new(0usize));
    let seen = count.clone();
    let script = Arc::new(Mutex::new(script.into_iter()));
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let seen = seen.clone();
            let script = script.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(sock);
                let mut line = String::new();
                let mut len = 0usize;
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let t = line.trim_end().to_ascii_lowercase();
                    if t.is_empty() {
                        break;
                    }
                    if let Some(v) = t.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).await.is_err() {
                    return;
                }
                *seen.lock().unwrap() += 1;
                let status = script.lock().unwrap().next().unwrap_or(200);
                let resp = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = r.get_mut().write_all(resp.as_bytes()).await;
                let _ = r.get_mut().shutdown().await;
            });
        }
    });
    (url, count)
}

async fn webhook_count(app: &TestApp) -> i64 {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM webhooks WHERE deleted_at IS NULL")
        .fetch_one(&app.store.db.read)
        .await
        .unwrap();
    sqlx::Row::get::<i64, _>(&row, "n")
}

#[tokio::test]
async fn webhook_console_registers_pauses_retries_dead_letters_and_deletes() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let committee3 = app.login("committee3").await;
    let resident = app.login("resident").await;
    let c1 = app.place_id("community", "幸福里社区").await;
    let (url, hits) = receiver(vec![503; MAX_ATTEMPTS as usize]).await;

    // The page is listed in the side navigation and speaks both languages.
    let page = app.get(&committee, "/admin/webhooks").await;
    assert_eq!(page.status, 200);
    let doc = page.doc();
    assert_eq!(doc.text("main h1"), "Webhook 推送");
    doc.one("nav.side a[href='/admin/webhooks'][aria-current=page]");
    let en_cookie = format!("{}; linli_lang=en", committee.cookie);
    let en = app
        .call(
            "GET",
            "/admin/webhooks",
            None,
            None,
            &[("cookie", en_cookie.as_str())],
        )
        .await
        .doc();
    assert_eq!(
        en.text("main form[action='/admin/webhooks'] h2"),
        "Register a webhook"
    );
    assert!(!en.body_text().contains("登记 Webhook"));
    // Residents have no such right.
    assert_eq!(app.get(&resident, "/admin/webhooks").await.status, 403);

    // Without the CSRF token nothing is created; bad input is the localized message.
    let fields = [
        ("name", "物业系统"),
        ("url", url.as_str()),
        ("place_id", c1.as_str()),
        ("kinds", "report.*, ping"),
    ];
    let no_csrf = post_form(&app, &committee, "/admin/webhooks", &fields).await;
    assert_eq!(no_csrf.status, 403);
    assert_eq!(webhook_count(&app).await, 0);
    let bad = post_form(
        &app,
        &committee,
        "/admin/webhooks",
        &[
            ("_csrf", committee.csrf.as_str()),
            ("name", "x"),
            ("url", "ftp://nope"),
            ("place_id", c1.as_str()),
        ],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(!bad.doc().text("main #webhook-error[role=alert]").is_empty());
    assert_eq!(webhook_count(&app).await, 0);

    // Registered: the secret is on this answer, once.
    let mut with_csrf = vec![("_csrf", committee.csrf.as_str())];
    with_csrf.extend_from_slice(&fields);
    let created = post_form(&app, &committee, "/admin/webhooks", &with_csrf).await;
    assert_eq!(created.status, 200, "{}", created.text());
    let doc = created.doc();
    doc.assert_inside("code#webhook-secret", "main #webhook-created[role=status]");
    let secret = doc.text_by_id("webhook-secret");
    assert!(secret.len() >= 32, "{secret}");
    let id = doc
        .attr("main #webhook-created a[href^='/admin/webhooks/']", "href")
        .trim_start_matches("/admin/webhooks/")
        .to_string();
    let list = app.get(&committee, "/admin/webhooks").await;
    let row = format!("main table tr[data-webhook='{id}']");
    let cells = list.doc().texts(&format!("{row} td"));
    assert_eq!(cells[0], "物业系统", "{cells:?}");
    assert_eq!(list.doc().text(&format!("{row} td code")), url, "{cells:?}");
    assert!(cells[2].contains("report.*"), "{cells:?}");
    assert!(!list.text().contains(&secret), "the secret is shown once");
    let detail_uri = format!("/admin/webhooks/{id}");
    assert!(
        !app.get(&committee, &detail_uri)
            .await
            .text()
            .contains(&secret),
        "nor on the webhook's page"
    );

    // Another community's committee: not found, and their list is empty.
    assert_eq!(app.get(&committee3, &detail_uri).await.status, 404);
    let theirs_list = app.get(&committee3, "/admin/webhooks").await.doc();
    assert!(!theirs_list.has("main table tr[data-webhook]"));
    assert!(!theirs_list.body_text().contains("物业系统"));
    let theirs = post_form(
        &app,
        &committee3,
        &format!("{detail_uri}/delete"),
        &[("_csrf", committee3.csrf.as_str())],
    )
    .await;
    assert_eq!(theirs.status, 404);

    // Pause and resume.
    let r = post_form(
        &app,
        &committee,
        &format!("{detail_uri}/active"),
        &[("_csrf", committee.csrf.as_str()), ("active", "0")],
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        app.get(&committee, &detail_uri)
            .await
            .doc()
            .text_by_id("webhook-state"),
        "已暂停"
    );
    post_form(
        &app,
        &committee,
        &format!("{detail_uri}/active"),
        &[("_csrf", committee.csrf.as_str()), ("active", "1")],
    )
    .await;

    // A ping the receiver keeps refusing becomes a dead letter, with a retry button.
    let r = post_form(
        &app,
        &committee,
        &format!("{detail_uri}/ping"),
        &[("_csrf", committee.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status, 303);
    for _ in 0..MAX_ATTEMPTS {
        assert_eq!(
            linli_delivery::Worker::new(app.store.clone())
                .with(linli_delivery::WebhookChannel::new())
                .tick()
                .await
                .unwrap(),
            1
        );
        app.store.clock.advance(14 * 3_600_000);
    }
    assert_eq!(*hits.lock().unwrap(), MAX_ATTEMPTS as usize);
    let doc = app.get(&committee, &detail_uri).await.doc();
    let dead = "main table tr[data-status=dead]";
    let cells = doc.texts(&format!("{dead} td"));
    assert_eq!(cells[1], "发送失败（死信）", "{}", doc.main_html());
    assert!(cells[3].contains("HTTP 503"), "{cells:?}");
    let did = doc.attr(dead, "data-delivery");
    let retry_uri = format!("{detail_uri}/deliveries/{did}/retry");
    doc.one(&format!(
        "{dead} form[method=post][action='{retry_uri}'] button[type=submit]"
    ));
    // The button needs the CSRF token; with it the delivery is sent again, and succeeds.
    let no = post_form(&app, &committee, &retry_uri, &[]).await;
    assert_eq!(no.status, 403);
    let r = post_form(
        &app,
        &committee,
        &retry_uri,
        &[("_csrf", committee.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        linli_delivery::Worker::new(app.store.clone())
            .with(linli_delivery::WebhookChannel::new())
            .tick()
            .await
            .unwrap(),
        1
    );
    assert_eq!(*hits.lock().unwrap(), MAX_ATTEMPTS as usize + 1);
    let d = app.store.delivery(&did).await.unwrap();
    assert_eq!(d.status, "delivered");
    // A delivered one cannot be "retried": the localized 409 on the page.
    let again = post_form(
        &app,
        &committee,
        &retry_uri,
        &[("_csrf", committee.csrf.as_str())],
    )
    .await;
    assert_eq!(again.status, 409);
    let doc = again.doc();
    assert!(
        doc.texts("main [role=alert], main [role=status]")
            .iter()
            .any(|t| t.contains("只有已失败")),
        "{}",
        doc.main_html()
    );
    // The same through the API, scoped.
    app.post(
        &committee3,
        &format!("/api/v1/webhooks/{id}/deliveries/{did}/retry"),
        serde_json::json!({}),
    )
    .await
    .expect(404);

    // Delete: gone from the list.
    let r = post_form(
        &app,
        &committee,
        &format!("{detail_uri}/delete"),
        &[("_csrf", committee.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(webhook_count(&app).await, 0);
    let doc = app.get(&committee, "/admin/webhooks").await.doc();
    assert!(!doc.has("main table tr[data-webhook]"));
    assert!(!doc.body_text().contains("物业系统"));
    app.close().await;
}
