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

fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let i = html
        .find(start)
        .unwrap_or_else(|| panic!("{start} in {html}"))
        + start.len();
    let j = html[i..].find(end).unwrap() + i;
    &html[i..j]
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
    let html = page.text();
    assert!(html.contains("Webhook 推送") && html.contains("href=\"/admin/webhooks\""));
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
        .text();
    assert!(
        en.contains("Register a webhook") && !en.contains("登记 Webhook"),
        "{en}"
    );
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
    assert!(bad.text().contains("webhook-error"));
    assert_eq!(webhook_count(&app).await, 0);

    // Registered: the secret is on this answer, once.
    let mut with_csrf = vec![("_csrf", committee.csrf.as_str())];
    with_csrf.extend_from_slice(&fields);
    let created = post_form(&app, &committee, "/admin/webhooks", &with_csrf).await;
    assert_eq!(created.status, 200, "{}", created.text());
    let html = created.text();
    let secret = between(&html, "<code id=\"webhook-secret\">", "</code>").to_string();
    assert!(secret.len() >= 32, "{secret}");
    let id = between(&html, "<a href=\"/admin/webhooks/", "\"").to_string();
    let list = app.get(&committee, "/admin/webhooks").await.text();
    assert!(list.contains("物业系统") && list.contains("report.*"));
    assert!(!list.contains(&secret), "the secret is shown once");
    let detail_uri = format!("/admin/webhooks/{id}");
    assert!(
        !app.get(&committee, &detail_uri)
            .await
            .text()
            .contains(&secret)
    );

    // Another community's committee: not found, and their list is empty.
    assert_eq!(app.get(&committee3, &detail_uri).await.status, 404);
    assert!(
        !app.get(&committee3, "/admin/webhooks")
            .await
            .text()
            .contains("物业系统")
    );
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
    assert!(
        app.get(&committee, &detail_uri)
            .await
            .text()
            .contains("已暂停")
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
    let html = app.get(&committee, &detail_uri).await.text();
    assert!(html.contains("data-status=\"dead\""), "{html}");
    assert!(html.contains("发送失败（死信）") && html.contains("HTTP 503"));
    let did = between(&html, "<tr data-delivery=\"", "\"").to_string();
    let retry_uri = format!("{detail_uri}/deliveries/{did}/retry");
    assert!(html.contains(&format!("action=\"{retry_uri}\"")));
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
    assert!(again.text().contains("只有已失败"));
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
    assert!(
        !app.get(&committee, "/admin/webhooks")
            .await
            .text()
            .contains("物业系统")
    );
    app.close().await;
}
