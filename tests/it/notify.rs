//! Notifications: inbox isolation and follows, e-mail through a local SMTP sink, signed webhooks
//! to a local receiver (scope, kinds, retries with backoff on the store's clock, dead letters),
//! live inbox events over SSE, and the PostgreSQL bridge between two instances.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tower::ServiceExt;

use linli_delivery::{DeliveryConfig, SmtpConfig, WebhookChannel, Worker};
use linli_store::notify::Notice;
use linli_store::notify::outbox::MAX_ATTEMPTS;
use linli_store::{DbConfig, Store};

use crate::common::{Session, TestApp};

#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

type Log = Arc<Mutex<Vec<Received>>>;

/// A local HTTP receiver: answers each request with the next scripted status, then 200.
async fn webhook_receiver(script: Vec<u16>) -> (String, Log) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let log: Log = Arc::default();
    let seen = log.clone();
    let script = Arc::new(Mutex::new(script.into_iter()));
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let seen = seen.clone();
            let script = script.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(sock);
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let mut headers = Vec::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let t = line.trim_end();
                    if t.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = t.split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                }
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).await.is_err() {
                    return;
                }
                let status = script.lock().unwrap().next().unwrap_or(200);
                seen.lock().unwrap().push(Received {
                    headers,
                    body: String::from_utf8(body).unwrap(),
                });
                let resp = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = r.get_mut().write_all(resp.as_bytes()).await;
                let _ = r.get_mut().shutdown().await;
            });
        }
    });
    (url, log)
}

/// One message an SMTP client handed over: envelope recipients and the DATA.
#[derive(Debug, Clone)]
struct Mail {
    rcpt: Vec<String>,
    data: String,
}

/// A minimal SMTP server (RFC 5321: greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT).
async fn smtp_sink() -> (u16, Arc<Mutex<Vec<Mail>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
    let store = mails.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(sock);
                r.get_mut()
                    .write_all(b"220 sink.test ESMTP ready\r\n")
                    .await
                    .unwrap();
                let mut rcpt = Vec::new();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_string();
                    let upper = cmd.to_ascii_uppercase();
                    let reply: String = if upper.starts_with("EHLO") {
                        "250-sink.test\r\n250 8BITMIME\r\n".into()
                    } else if upper.starts_with("HELO") {
                        "250 sink.test\r\n".into()
                    } else if upper.starts_with("MAIL FROM:") {
                        rcpt.clear();
                        "250 OK\r\n".into()
                    } else if upper.starts_with("RCPT TO:") {
                        rcpt.push(
                            cmd[8..]
                                .trim()
                                .trim_start_matches('<')
                                .trim_end_matches('>')
                                .to_string(),
                        );
                        "250 OK\r\n".into()
                    } else if upper == "DATA" {
                        r.get_mut().write_all(b"354 go ahead\r\n").await.unwrap();
                        let mut data = String::new();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" {
                                break;
                            }
                            data.push_str(&line);
                        }
                        store.lock().unwrap().push(Mail {
                            rcpt: std::mem::take(&mut rcpt),
                            data,
                        });
                        "250 OK queued\r\n".into()
                    } else if upper == "RSET" || upper == "NOOP" {
                        "250 OK\r\n".into()
                    } else if upper == "QUIT" {
                        let _ = r.get_mut().write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        "502 not implemented\r\n".into()
                    };
                    r.get_mut().write_all(reply.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (port, mails)
}

/// Tell `users` (and matching webhooks) about a change, as a module does: in its transaction,
/// then the live event after commit.
async fn tell(app: &TestApp, users: &[String], kind: &str, entity_id: &str, path: Option<&str>) {
    let mut tx = app.store.db.begin_write().await.unwrap();
    app.store
        .notify(
            &mut tx,
            users,
            &Notice {
                kind,
                key: "notice-entity-updated",
                args: json!({ "title": "3栋漏水", "state": "已派单" }),
                entity: "report",
                entity_id,
                path,
                link: Some("/staff/reports/1"),
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    app.store.publish_inbox(users);
}

/// The delivery worker as `linli serve` runs it without SMTP: webhooks only.
fn worker(app: &TestApp) -> Worker {
    Worker::new(app.store.clone()).with(WebhookChannel::new())
}

/// One round of that worker; how many rows it claimed.
async fn tick(app: &TestApp) -> usize {
    worker(app).tick().await.unwrap()
}

async fn drain(app: &TestApp) {
    drain_with(&worker(app)).await
}

async fn drain_with(w: &Worker) {
    while w.tick().await.unwrap() > 0 {}
}

fn uid(s: &Session) -> String {
    s.user["id"].as_str().unwrap().to_string()
}

async fn put(
    app: &TestApp,
    s: &Session,
    uri: &str,
    body: Value,
    lang: &str,
) -> crate::common::Resp {
    app.call(
        "PUT",
        uri,
        Some(s),
        Some(("application/json", body.to_string().into_bytes())),
        &[("accept-language", lang)],
    )
    .await
}

fn hmac_hex(secret: &str, msg: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(msg.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

#[tokio::test]
async fn webhooks_are_signed_and_hear_only_their_area_and_kinds() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let committee3 = app.login("committee3").await;
    let c1 = app.place_id("community", "幸福里社区").await;
    let c3 = app.place_id("community", "新村社区").await;
    let (url_a, got_a) = webhook_receiver(vec![]).await;
    let (url_b, got_b) = webhook_receiver(vec![]).await;

    // Bad input: clear errors, nothing created.
    let e = app
        .post(
            &committee,
            "/api/v1/webhooks",
            json!({"name": "A", "url": "ftp://x/", "place_id": c1}),
        )
        .await
        .expect(400);
    assert_eq!(e["code"], "notify.webhook.url_invalid");
    let e = app
        .post(
            &committee,
            "/api/v1/webhooks",
            json!({"name": "A", "url": url_a, "place_id": c1, "kinds": ["bad kind"]}),
        )
        .await
        .expect(400);
    assert_eq!(e["code"], "notify.kind_invalid");
    app.post(
        &committee,
        "/api/v1/webhooks",
        json!({"name": "A", "url": url_a, "place_id": c3}),
    )
    .await
    .expect(404);
    assert_eq!(
        app.get(&committee, "/api/v1/webhooks").await.ok(),
        json!([])
    );
    let resident = app.login("resident").await;
    app.get(&resident, "/api/v1/webhooks").await.expect(403);

    let a = app
        .post(
            &committee,
            "/api/v1/webhooks",
            json!({"name": "A", "url": url_a, "place_id": c1, "kinds": ["report.*"]}),
        )
        .await
        .expect(201);
    let secret = a["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32);
    let b = app
        .post(
            &committee3,
            "/api/v1/webhooks",
            json!({"name": "B", "url": url_b, "place_id": c3}),
        )
        .await
        .expect(201);
    let list = app.get(&committee, "/api/v1/webhooks").await.ok();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], a["id"]);
    assert!(list[0].get("secret").is_none(), "the secret is shown once");
    app.get(
        &committee,
        &format!("/api/v1/webhooks/{}", b["id"].as_str().unwrap()),
    )
    .await
    .expect(404);

    let (_, room_a) = app.a_room_in("幸福里社区").await;
    let (_, room_b) = app.a_room_in("新村社区").await;
    tell(&app, &[], "report.dispatched", "r-a", Some(&room_a)).await;
    tell(&app, &[], "alarm.sos", "d-a", Some(&room_a)).await;
    tell(&app, &[], "report.dispatched", "r-b", Some(&room_b)).await;
    drain(&app).await;

    let got = got_a.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        1,
        "A hears its area's report, not the alarm nor B's report"
    );
    let r = &got[0];
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["kind"], "report.dispatched");
    assert_eq!(body["entity"], "report");
    assert_eq!(body["entity_id"], "r-a");
    assert_eq!(body["path"], room_a.as_str());
    assert_eq!(body["link"], "/staff/reports/1");
    assert!(body["text_zh"].as_str().unwrap().contains("3栋漏水"));
    assert!(body["text_en"].as_str().unwrap().starts_with("News about"));
    assert_eq!(r.header("x-linli-event"), "report.dispatched");
    assert!(!r.header("x-linli-delivery").is_empty());
    let ts = r.header("x-linli-timestamp");
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((ts.parse::<i64>().unwrap() - now_s).abs() < 60);
    assert_eq!(
        r.header("x-linli-signature"),
        format!("sha256={}", hmac_hex(&secret, &format!("{ts}.{}", r.body)))
    );
    assert_ne!(
        r.header("x-linli-signature"),
        format!("sha256={}", hmac_hex("wrong", &format!("{ts}.{}", r.body)))
    );
    let got = got_b.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&got[0].body).unwrap()["entity_id"],
        "r-b"
    );

    let a_id = a["id"].as_str().unwrap();
    let log = app
        .get(&committee, &format!("/api/v1/webhooks/{a_id}/deliveries"))
        .await
        .ok();
    assert_eq!(log.as_array().unwrap().len(), 1);
    assert_eq!(log[0]["status"], "delivered");
    assert_eq!(log[0]["attempts"], 1);
    assert_eq!(log[0]["last_status"], 200);
    app.get(&committee3, &format!("/api/v1/webhooks/{a_id}/deliveries"))
        .await
        .expect(404);

    // Paused: nothing is sent; deleted: pending deliveries are cancelled.
    let w = app
        .patch(
            &committee,
            &format!("/api/v1/webhooks/{a_id}"),
            json!({"active": false}),
        )
        .await
        .ok();
    assert_eq!(w["active"], false);
    tell(&app, &[], "report.closed", "r-a", Some(&room_a)).await;
    drain(&app).await;
    assert_eq!(got_a.lock().unwrap().len(), 1);
    app.call(
        "DELETE",
        &format!("/api/v1/webhooks/{a_id}"),
        Some(&committee),
        None,
        &[],
    )
    .await
    .expect(204);
    app.store.clock.advance(3_600_000);
    drain(&app).await;
    assert_eq!(got_a.lock().unwrap().len(), 1);
    app.get(&committee, &format!("/api/v1/webhooks/{a_id}"))
        .await
        .expect(404);
    let audit = app
        .get(&committee, "/api/v1/audit?entity=webhook")
        .await
        .ok();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for act in ["webhook.create", "webhook.update", "webhook.delete"] {
        assert!(actions.contains(&act), "{actions:?}");
    }
    app.close().await;
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_backoff_then_dead() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let c1 = app.place_id("community", "幸福里社区").await;
    let (url, got) = webhook_receiver(vec![500, 500]).await;
    let w = app
        .post(
            &committee,
            "/api/v1/webhooks",
            json!({"name": "retry", "url": url, "place_id": c1}),
        )
        .await
        .expect(201);
    let id = w["id"].as_str().unwrap().to_string();
    let d = app
        .post(
            &committee,
            &format!("/api/v1/webhooks/{id}/ping"),
            json!({}),
        )
        .await
        .expect(202);
    let did = d["id"].as_str().unwrap().to_string();
    assert_eq!(d["status"], "pending");

    assert_eq!(tick(&app).await, 1);
    assert_eq!(got.lock().unwrap().len(), 1);
    let d = app.store.delivery(&did).await.unwrap();
    assert_eq!(
        (d.status.as_str(), d.attempts, d.last_status),
        ("pending", 1, Some(500))
    );
    assert_eq!(tick(&app).await, 0, "not due before the backoff");
    app.store.clock.advance(9_000);
    assert_eq!(tick(&app).await, 0);
    app.store.clock.advance(2_500); // 11.5 s: past 10 s + 10 % jitter
    assert_eq!(tick(&app).await, 1);
    assert_eq!(app.store.delivery(&did).await.unwrap().attempts, 2);
    app.store.clock.advance(59_000);
    assert_eq!(tick(&app).await, 0, "second delay is a minute");
    app.store.clock.advance(8_000);
    assert_eq!(tick(&app).await, 1);
    let d = app.store.delivery(&did).await.unwrap();
    assert_eq!(
        (d.status.as_str(), d.attempts, d.last_status),
        ("delivered", 3, Some(200))
    );
    app.store.clock.advance(10 * 86_400_000);
    assert_eq!(tick(&app).await, 0);
    // Sessions live on the same clock: ten days later the committee signs in again.
    let committee = app.login("committee").await;
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "delivered once after two failures");
    assert!(got.iter().all(|r| r.header("x-linli-delivery") == did));
    assert!(got.iter().all(|r| r.header("x-linli-event") == "ping"));

    // A receiver that keeps failing: dead after the last attempt, visible in the log.
    let (url2, got2) = webhook_receiver(vec![503; 50]).await;
    app.patch(
        &committee,
        &format!("/api/v1/webhooks/{id}"),
        json!({"url": url2}),
    )
    .await
    .ok();
    let d2 = app
        .post(
            &committee,
            &format!("/api/v1/webhooks/{id}/ping"),
            json!({}),
        )
        .await
        .expect(202);
    let d2 = d2["id"].as_str().unwrap().to_string();
    for _ in 0..MAX_ATTEMPTS {
        assert_eq!(tick(&app).await, 1);
        app.store.clock.advance(14 * 3_600_000);
    }
    assert_eq!(tick(&app).await, 0);
    assert_eq!(got2.lock().unwrap().len() as i64, MAX_ATTEMPTS);
    let log = app
        .get(&committee, &format!("/api/v1/webhooks/{id}/deliveries"))
        .await
        .ok();
    let dead = log
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == d2.as_str())
        .unwrap();
    assert_eq!(dead["status"], "dead");
    assert_eq!(dead["attempts"], MAX_ATTEMPTS);
    assert_eq!(dead["last_error"], "HTTP 503");

    // Finished deliveries leave the log after the retention period; nothing pending is lost.
    let pending = app
        .post(
            &committee,
            &format!("/api/v1/webhooks/{id}/ping"),
            json!({}),
        )
        .await
        .expect(202);
    assert_eq!(
        app.store
            .outbox_purge(linli_store::notify::outbox::KEEP_MS)
            .await
            .unwrap(),
        0
    );
    app.store
        .clock
        .advance(linli_store::notify::outbox::KEEP_MS + 86_400_000);
    assert_eq!(
        app.store
            .outbox_purge(linli_store::notify::outbox::KEEP_MS)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        app.store
            .delivery(pending["id"].as_str().unwrap())
            .await
            .unwrap()
            .status,
        "pending"
    );
    app.close().await;
}

/// Two delivery workers on two instances (two stores on one database) drain the outbox at the
/// same time: every row is claimed by one of them and sent once. On PostgreSQL the claims run
/// `FOR UPDATE SKIP LOCKED`; on SQLite the two writers take turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_send_each_row_exactly_once() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let c1 = app.place_id("community", "幸福里社区").await;
    let (url, got) = webhook_receiver(vec![]).await;
    app.post(
        &committee,
        "/api/v1/webhooks",
        json!({"name": "twice?", "url": url, "place_id": c1}),
    )
    .await
    .expect(201);
    let (_, room) = app.a_room_in("幸福里社区").await;
    const N: usize = 100; // three batches and a bit
    for i in 0..N {
        tell(
            &app,
            &[],
            "report.dispatched",
            &format!("r-{i}"),
            Some(&room),
        )
        .await;
    }
    let other = Store::open(
        &DbConfig {
            url: app
                .database_url()
                .unwrap_or_else(|| linli_store::sqlite_url(&app.dir)),
            max_connections: 2,
            sqlite_synchronous: "NORMAL".into(),
        },
        &app.dir,
        None,
        linli_server::modules::platform(),
    )
    .await
    .unwrap();
    let run = |w: Worker| {
        tokio::spawn(async move {
            let mut claimed = 0;
            loop {
                let n = w.tick().await.unwrap();
                if n == 0 {
                    return claimed;
                }
                claimed += n;
            }
        })
    };
    let a = run(worker(&app));
    let b = run(Worker::new(other.clone()).with(WebhookChannel::new()));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    // A worker that found nothing due may stop while the other still holds leased rows: drain.
    let rest = tick(&app).await;
    assert_eq!(rest, 0);
    eprintln!("two workers claimed {a} + {b} rows");
    assert_eq!(a + b, N, "claims: {a} + {b}");
    let got = got.lock().unwrap().clone();
    let mut ids: Vec<&str> = got.iter().map(|r| r.header("x-linli-delivery")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((got.len(), ids.len()), (N, N), "each delivery sent once");
    let mut entities: Vec<String> = got
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["entity_id"].to_string())
        .collect();
    entities.sort_unstable();
    entities.dedup();
    assert_eq!(entities.len(), N);
    for id in ids {
        let d = app.store.delivery(id).await.unwrap();
        assert_eq!((d.status.as_str(), d.attempts), ("delivered", 1), "{d:?}");
    }
    other.db.read.close().await;
    other.db.write.close().await;
    app.close().await;
}

#[tokio::test]
async fn email_reaches_the_smtp_sink_for_users_who_enabled_it() {
    let app = TestApp::demo().await;
    let (port, mails) = smtp_sink().await;
    let mailer = Worker::configured(
        &app.store,
        &DeliveryConfig {
            smtp: Some(SmtpConfig {
                host: "127.0.0.1".into(),
                port,
                tls: "none".into(),
                user: None,
                password: None,
                from: "邻里 <noreply@linli.test>".into(),
                helo: None,
            }),
            public_url: "http://linli.test".into(),
        },
    );
    assert_eq!(mailer.channels(), ["email", "webhook"]);
    let resident = app.login("resident").await;
    let grid = app.login("grid").await;
    let street = app.login("street").await;

    // Bad input: a localized error, nothing changed.
    let e = put(
        &app,
        &resident,
        "/api/v1/me/channels",
        json!({"email": "not-an-address", "email_enabled": true}),
        "en",
    )
    .await
    .expect(400);
    assert_eq!(e["code"], "notify.email_invalid");
    assert_eq!(e["message"], "The e-mail address is not valid.");
    let e = put(
        &app,
        &resident,
        "/api/v1/me/channels",
        json!({"email_enabled": true}),
        "zh-CN",
    )
    .await
    .expect(400);
    assert_eq!(e["message"], "开启邮件通知需要填写邮箱地址。");
    let c = app.get(&resident, "/api/v1/me/channels").await.ok();
    assert_eq!(c["email_enabled"], false);
    assert_eq!(c["email"], Value::Null);

    put(
        &app,
        &resident,
        "/api/v1/me/channels",
        json!({"email": "wang@linli.test", "email_enabled": true}),
        "zh-CN",
    )
    .await
    .ok();
    put(
        &app,
        &grid,
        "/api/v1/me/channels",
        json!({"email": "grid@linli.test", "email_enabled": true, "muted": ["report.*"]}),
        "zh-CN",
    )
    .await
    .ok();
    put(
        &app,
        &street,
        "/api/v1/me/channels",
        json!({"email": "street@linli.test", "email_enabled": false}),
        "zh-CN",
    )
    .await
    .ok();
    let c = app.get(&grid, "/api/v1/me/channels").await.ok();
    assert_eq!(c["muted"], json!(["report.*"]));

    let (_, room) = app.a_room_in("幸福里社区").await;
    tell(
        &app,
        &[uid(&resident), uid(&grid), uid(&street)],
        "report.dispatched",
        "r-1",
        Some(&room),
    )
    .await;
    drain_with(&mailer).await;
    let got = mails.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        1,
        "only the resident asked for e-mail about reports: {got:?}"
    );
    assert_eq!(got[0].rcpt, vec!["wang@linli.test".to_string()]);
    assert!(
        got[0].data.contains("To: wang@linli.test"),
        "{}",
        got[0].data
    );
    assert!(got[0].data.contains("From: "));
    assert!(got[0].data.contains("Subject: "));

    // The grid worker still hears about other kinds; everyone still has the inbox entry.
    tell(&app, &[uid(&grid)], "alarm.sos", "d-1", Some(&room)).await;
    drain_with(&mailer).await;
    let got = mails.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].rcpt, vec!["grid@linli.test".to_string()]);
    let inbox = app.get(&street, "/api/v1/inbox").await.ok();
    assert_eq!(inbox["items"].as_array().unwrap().len(), 1);

    // Without SMTP configured nothing is queued.
    let plain = Worker::configured(&app.store, &DeliveryConfig::default());
    assert_eq!(plain.channels(), ["webhook"]);
    tell(&app, &[uid(&resident)], "report.closed", "r-1", Some(&room)).await;
    assert_eq!(plain.tick().await.unwrap(), 0);
    assert_eq!(mails.lock().unwrap().len(), 2);
    app.close().await;
}

#[tokio::test]
async fn the_inbox_is_private_and_follows_reach_followers() {
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let committee3 = app.login("committee3").await;
    let c1 = app.place_id("community", "幸福里社区").await;

    let f = app
        .post(
            &committee,
            "/api/v1/follows",
            json!({"entity": "place", "entity_id": c1}),
        )
        .await
        .expect(201);
    assert_eq!(f["entity_id"], c1.as_str());
    app.post(
        &committee,
        "/api/v1/follows",
        json!({"entity": "place", "entity_id": c1}),
    )
    .await
    .expect(201);
    let e = app
        .post(
            &committee3,
            "/api/v1/follows",
            json!({"entity": "place", "entity_id": c1}),
        )
        .await
        .expect(404);
    assert_eq!(e["code"], "notify.follow.not_found");
    app.post(
        &committee,
        "/api/v1/follows",
        json!({"entity": "spaceship", "entity_id": "x"}),
    )
    .await
    .expect(404);
    assert_eq!(
        app.get(&committee, "/api/v1/follows")
            .await
            .ok()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let notice = |id: &'static str| Notice {
        kind: "place.updated",
        key: "notice-entity-updated",
        args: json!({ "title": "幸福里社区", "state": id }),
        entity: "place",
        entity_id: "",
        path: None,
        link: None,
    };
    let mut tx = app.store.db.begin_write().await.unwrap();
    let mut n = notice("一");
    n.entity_id = &c1;
    let ids = app
        .store
        .notify_followers(&mut tx, "place", &c1, &n)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(ids.len(), 1);
    // Explicit recipients plus followers: each person once.
    let mut tx = app.store.db.begin_write().await.unwrap();
    let mut n = notice("零");
    n.entity_id = &c1;
    let both = app
        .store
        .notify_with_followers(&mut tx, &[uid(&committee3), uid(&committee)], &n)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        both.len(),
        2,
        "the follower who is also a recipient is told once"
    );

    let mine = app.get(&committee, "/api/v1/inbox").await.ok();
    assert_eq!(mine["unread"], 1);
    let item = &mine["items"][0];
    assert_eq!(item["text"], "“幸福里社区”有新进展：一");
    let en = app
        .call(
            "GET",
            "/api/v1/inbox?unread=true",
            Some(&committee),
            None,
            &[("accept-language", "en")],
        )
        .await
        .ok();
    assert_eq!(en["items"][0]["text"], "News about \"幸福里社区\": 一");
    let nid = item["id"].as_str().unwrap().to_string();

    // Someone else's inbox is empty, and their notice cannot be marked.
    let theirs = app.get(&committee3, "/api/v1/inbox").await.ok();
    assert_eq!(theirs["items"], json!([]));
    let e = app
        .post(&committee3, &format!("/api/v1/inbox/{nid}/read"), json!({}))
        .await
        .expect(404);
    assert_eq!(e["code"], "notify.not_found");
    app.post(&committee3, "/api/v1/inbox/read-all", json!({}))
        .await
        .ok();
    assert_eq!(
        app.get(&committee, "/api/v1/inbox/unread-count").await.ok()["count"],
        1
    );

    let u = app
        .post(&committee, &format!("/api/v1/inbox/{nid}/read"), json!({}))
        .await
        .ok();
    assert_eq!(u["updated"], 1);
    assert_eq!(
        app.get(&committee, "/api/v1/inbox/unread-count").await.ok()["count"],
        0
    );
    assert_eq!(
        app.get(&committee, "/api/v1/inbox?unread=true").await.ok()["items"],
        json!([])
    );

    // After unfollowing, changes no longer arrive.
    app.call(
        "DELETE",
        &format!("/api/v1/follows?entity=place&entity_id={c1}"),
        Some(&committee),
        None,
        &[],
    )
    .await
    .expect(204);
    app.call(
        "DELETE",
        &format!("/api/v1/follows?entity=place&entity_id={c1}"),
        Some(&committee),
        None,
        &[],
    )
    .await
    .expect(404);
    let mut tx = app.store.db.begin_write().await.unwrap();
    let mut n = notice("二");
    n.entity_id = &c1;
    assert!(
        app.store
            .notify_followers(&mut tx, "place", &c1, &n)
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit().await.unwrap();
    assert_eq!(
        app.get(&committee, "/api/v1/inbox").await.ok()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Paging.
    let me = vec![uid(&committee)];
    for i in 0..3 {
        tell(&app, &me, "report.dispatched", &format!("p{i}"), None).await;
    }
    let p1 = app.get(&committee, "/api/v1/inbox?limit=2").await.ok();
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    assert_eq!(p1["unread"], 3);
    let before = p1["next_before"].as_i64().unwrap();
    let p2 = app
        .get(
            &committee,
            &format!("/api/v1/inbox?limit=2&before={before}"),
        )
        .await
        .ok();
    assert!(!p2["items"].as_array().unwrap().is_empty());
    assert_eq!(
        app.post(&committee, "/api/v1/inbox/read-all", json!({}))
            .await
            .ok()["updated"],
        3
    );
    app.close().await;
}

async fn event_stream(app: &TestApp, s: &Session) -> Body {
    let req = Request::builder()
        .uri("/events")
        .header(header::COOKIE, &s.cookie)
        .body(Body::empty())
        .unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body()
}

async fn next_event(body: &mut Body, wait: Duration) -> Option<String> {
    match tokio::time::timeout(wait, body.frame()).await {
        Ok(Some(Ok(f))) => f
            .into_data()
            .ok()
            .map(|b| String::from_utf8_lossy(&b).to_string()),
        _ => None,
    }
}

#[tokio::test]
async fn live_inbox_events_reach_only_the_addressed_user() {
    let app = TestApp::demo().await;
    let x = app.login("committee").await;
    let y = app.login("committee3").await;
    let mut bx = event_stream(&app, &x).await;
    let mut by = event_stream(&app, &y).await;
    tell(&app, &[uid(&x)], "report.dispatched", "r-live", None).await;
    let ev = next_event(&mut bx, Duration::from_secs(5))
        .await
        .expect("x is told");
    assert!(ev.contains("event: inbox"), "{ev}");
    assert_eq!(next_event(&mut by, Duration::from_millis(500)).await, None);
    tell(&app, &[uid(&y)], "report.dispatched", "r-live2", None).await;
    let ev = next_event(&mut by, Duration::from_secs(5))
        .await
        .expect("y is told");
    assert!(ev.contains("event: inbox"));
    assert_eq!(next_event(&mut bx, Duration::from_millis(300)).await, None);
    app.close().await;
}

#[tokio::test]
async fn bus_events_reach_other_instances_through_postgres() {
    let app = TestApp::empty().await;
    let Some(url) = app.database_url() else {
        assert!(
            !app.store.start_pg_bus().await.unwrap(),
            "SQLite has one instance"
        );
        app.close().await;
        return;
    };
    let other = Store::open(
        &DbConfig {
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
    let mut here = app.store.bus.subscribe();
    let mut there = other.bus.subscribe();
    app.store
        .publish_inbox(&["u1".to_string(), "u2".to_string()]);
    let e = tokio::time::timeout(Duration::from_secs(10), there.recv())
        .await
        .expect("the other instance hears it")
        .unwrap();
    assert_eq!(e.kind, "inbox");
    assert_eq!(e.users, vec!["u1".to_string(), "u2".to_string()]);
    let e = here.recv().await.unwrap();
    assert_eq!(e.kind, "inbox");
    // Our own event comes back through NOTIFY and is not published twice.
    other.publish_inbox(&["u3".to_string()]);
    let e = tokio::time::timeout(Duration::from_secs(10), here.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.users, vec!["u3".to_string()]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(here.try_recv().is_err(), "no duplicates");
    assert_eq!(there.recv().await.unwrap().users, vec!["u3".to_string()]);
    assert!(there.try_recv().is_err(), "no echo of its own event");
    other.db.read.close().await;
    other.db.write.close().await;
    app.close().await;
}

async fn post_form(
    app: &TestApp,
    s: &Session,
    uri: &str,
    fields: &[(&str, &str)],
) -> crate::common::Resp {
    let body = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                linli_server::web::urlencode(v).replace('/', "%2F")
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    app.call(
        "POST",
        uri,
        None,
        Some(("application/x-www-form-urlencoded", body.into_bytes())),
        &[("cookie", &s.cookie)],
    )
    .await
}

#[tokio::test]
async fn the_inbox_page_shows_notices_marks_them_read_and_saves_settings() {
    let app = TestApp::demo().await;
    let resident = app.login("resident").await;
    let other = app.login("grid").await;
    tell(&app, &[uid(&resident)], "report.dispatched", "r-web", None).await;
    let me = vec![uid(&resident)];
    tell(&app, &me, "report.closed", "r-web", None).await;

    let html = app
        .call("GET", "/inbox", None, None, &[("cookie", &resident.cookie)])
        .await;
    assert_eq!(html.status, 200);
    let text = html.text();
    assert!(text.contains("“3栋漏水”有新进展：已派单"), "{text}");
    assert!(text.contains("id=\"inbox-badge\""));
    assert!(text.contains(">2</span>"), "badge shows two unread");
    assert!(text.contains("data-live=\"inbox\""));
    let en = app
        .call(
            "GET",
            "/inbox",
            None,
            None,
            &[("cookie", &resident.cookie), ("accept-language", "en")],
        )
        .await
        .text();
    assert!(en.contains("News about &#34;3栋漏水&#34;: 已派单"), "{en}");

    let items = app.get(&resident, "/api/v1/inbox").await.ok();
    let nid = items["items"][0]["id"].as_str().unwrap().to_string();
    // Without the CSRF token nothing changes; another user's form is not found.
    let r = post_form(
        &app,
        &resident,
        &format!("/inbox/{nid}/read"),
        &[("_csrf", "wrong")],
    )
    .await;
    assert_eq!(r.status, 403);
    let r = post_form(
        &app,
        &other,
        &format!("/inbox/{nid}/read"),
        &[("_csrf", &other.csrf)],
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        app.get(&resident, "/api/v1/inbox/unread-count").await.ok()["count"],
        2
    );
    let r = post_form(
        &app,
        &resident,
        &format!("/inbox/{nid}/read"),
        &[("_csrf", &resident.csrf)],
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        app.get(&resident, "/api/v1/inbox/unread-count").await.ok()["count"],
        1
    );
    let r = post_form(
        &app,
        &resident,
        "/inbox/read-all",
        &[("_csrf", &resident.csrf)],
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        app.get(&resident, "/api/v1/inbox/unread-count").await.ok()["count"],
        0
    );

    // Settings: a bad address is shown on the page and nothing is saved.
    let r = post_form(
        &app,
        &resident,
        "/inbox/settings",
        &[
            ("_csrf", &resident.csrf),
            ("email", "nope"),
            ("email_enabled", "1"),
            ("muted", ""),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("邮箱地址格式不正确"));
    assert_eq!(
        app.get(&resident, "/api/v1/me/channels").await.ok()["email_enabled"],
        false
    );
    let r = post_form(
        &app,
        &resident,
        "/inbox/settings",
        &[
            ("_csrf", &resident.csrf),
            ("email", "wang@linli.test"),
            ("email_enabled", "1"),
            // Ticked families (in words on the page), and a pattern set through the API that
            // the page keeps as it is; an unknown family is ignored.
            ("mute", "report.*"),
            ("mute", "celebration.*"),
            ("mute", "made.up.*"),
            ("muted", "report.closed"),
        ],
    )
    .await;
    assert_eq!(r.status, 303);
    let c = app.get(&resident, "/api/v1/me/channels").await.ok();
    assert_eq!(c["email"], "wang@linli.test");
    assert_eq!(c["email_enabled"], true);
    assert_eq!(
        c["muted"],
        json!(["report.closed", "report.*", "celebration.*"])
    );
    let page = app.get(&resident, "/inbox").await.doc();
    let ticked: Vec<String> = page
        .select("#muted input[name=mute][checked]")
        .iter()
        .filter_map(|e| e.attr("value").map(str::to_string))
        .collect();
    assert_eq!(ticked, vec!["report.*", "celebration.*"]);
    assert!(page.text("#muted").contains("报事的进展"));
    app.close().await;
}

#[tokio::test]
async fn tls_is_used_for_https_webhooks_and_smtp_tls() {
    // Against plain servers a TLS client cannot succeed: the attempt fails cleanly, is logged
    // and rescheduled (and proves the TLS path is taken).
    let app = TestApp::demo().await;
    let committee = app.login("committee").await;
    let c1 = app.place_id("community", "幸福里社区").await;
    let (url, got) = webhook_receiver(vec![]).await;
    let https = url.replace("http://", "https://");
    let w = app
        .post(
            &committee,
            "/api/v1/webhooks",
            json!({"name": "tls", "url": https, "place_id": c1}),
        )
        .await
        .expect(201);
    let id = w["id"].as_str().unwrap();
    let d = app
        .post(
            &committee,
            &format!("/api/v1/webhooks/{id}/ping"),
            json!({}),
        )
        .await
        .expect(202);
    assert_eq!(tick(&app).await, 1);
    let d = app.store.delivery(d["id"].as_str().unwrap()).await.unwrap();
    assert_eq!((d.status.as_str(), d.attempts), ("pending", 1));
    assert!(d.last_error.is_some() && d.last_status.is_none(), "{d:?}");
    assert!(
        got.lock().unwrap().is_empty(),
        "no plain-text request reached the receiver"
    );

    let (port, mails) = smtp_sink().await;
    for tls in ["tls", "starttls"] {
        let mailer = Worker::configured(
            &app.store,
            &DeliveryConfig {
                smtp: Some(SmtpConfig {
                    host: "127.0.0.1".into(),
                    port,
                    tls: tls.into(),
                    user: None,
                    password: None,
                    from: "noreply@linli.test".into(),
                    helo: None,
                }),
                public_url: String::new(),
            },
        );
        let resident = app.login("resident").await;
        put(
            &app,
            &resident,
            "/api/v1/me/channels",
            json!({"email": "wang@linli.test", "email_enabled": true}),
            "zh-CN",
        )
        .await
        .ok();
        tell(&app, &[uid(&resident)], "report.dispatched", "r-tls", None).await;
        app.store.clock.advance(3_600_000);
        assert!(mailer.tick().await.unwrap() >= 1);
    }
    assert!(
        mails.lock().unwrap().is_empty(),
        "nothing is sent in the clear when TLS is asked for"
    );
    app.close().await;
}
