//! Several instances on one database (issue #22): background jobs claim their work, login
//! throttling and one-time form tokens are shared, rule state is shared, caches and sign-out
//! reach every instance at once. Each test starts a second instance on the test's database
//! (a second store, as a second process would have); with `LINLI_TEST_DATABASE_URL` they run
//! on PostgreSQL, where it matters most.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Row;

use linli_core::auth::{Action, Grant};
use linli_iot::{Iot, IotConfig};
use linli_store::audit::Actor;
use linli_store::cluster::FormClaim;
use linli_store::iot::demo::demo_device_token;
use linli_store::iot::sos::SafetyConfig;

use crate::common::{PASSWORD, TestApp};

/// A job's lease is held by one instance; the other takes it over only after it ran out.
#[tokio::test]
async fn a_job_runs_on_one_instance_and_moves_when_its_holder_stops() {
    let a = TestApp::empty().await;
    let b = a.second_instance().await;
    assert!(a.store.claim_lease("test-job", 10_000).await.unwrap());
    assert!(!b.store.claim_lease("test-job", 10_000).await.unwrap());
    // The holder renews.
    assert!(a.store.claim_lease("test-job", 10_000).await.unwrap());
    assert!(!b.store.claim_lease("test-job", 10_000).await.unwrap());
    // A stops renewing; ten seconds later (by B's clock) B takes over, and A is out.
    b.store.clock.advance(10_001);
    assert!(b.store.claim_lease("test-job", 10_000).await.unwrap());
    assert!(!a.store.claim_lease("test-job", 10_000).await.unwrap());
    // Given back on shutdown: taken at once.
    b.store.release_lease("test-job").await.unwrap();
    assert!(a.store.claim_lease("test-job", 10_000).await.unwrap());
    b.close_instance().await;
    a.close().await;
}

/// Five wrong passwords spread over two instances lock the account on both (not five each).
#[tokio::test]
async fn login_throttling_counts_on_every_instance_together() {
    let a = TestApp::demo().await;
    let b = a.second_instance().await;
    for i in 0..5 {
        let on = if i % 2 == 0 { &a } else { &b };
        assert_eq!(on.login_with("resident", "wrong").await.status, 401);
    }
    for on in [&a, &b] {
        let r = on.login_with("resident", PASSWORD).await;
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(r.json()["code"], "auth.login_locked");
    }
    // Another account is not affected.
    assert_eq!(b.login_with("committee", PASSWORD).await.status, 200);
    b.close_instance().await;
    a.close().await;
}

/// Attempts arriving together on two instances cannot all pass the check: at most the free
/// failures get through, as on one instance.
#[tokio::test]
async fn concurrent_attempts_on_two_instances_pass_at_most_the_free_failures() {
    let a = TestApp::empty().await;
    let b = a.second_instance().await;
    let policy = linli_server::limiter::ACCOUNT_POLICY;
    let tries = (0..20).map(|i| {
        let store = if i % 2 == 0 {
            a.store.clone()
        } else {
            b.store.clone()
        };
        tokio::spawn(async move { store.throttle_attempt(&policy, "user:x").await.unwrap() })
    });
    let mut passed = 0;
    for t in tries {
        if t.await.unwrap().is_ok() {
            passed += 1;
        }
    }
    assert_eq!(passed, policy.free_failures);
    b.close_instance().await;
    a.close().await;
}

/// A one-time form token posted to A and then to B is a repeat on B, sent to A's result.
#[tokio::test]
async fn a_form_posted_to_two_instances_is_done_once() {
    let a = TestApp::empty().await;
    let b = a.second_instance().await;
    let token = "form-token-1";
    assert_eq!(a.store.form_claim(token).await.unwrap(), FormClaim::Fresh);
    assert_eq!(
        b.store.form_claim(token).await.unwrap(),
        FormClaim::Repeat(None)
    );
    a.store.form_finish(token, "/me/reports/1").await.unwrap();
    assert_eq!(
        b.store.form_claim(token).await.unwrap(),
        FormClaim::Repeat(Some("/me/reports/1".into()))
    );
    // A failed first attempt may be posted again, anywhere.
    assert_eq!(a.store.form_claim("t2").await.unwrap(), FormClaim::Fresh);
    a.store.form_release("t2").await.unwrap();
    assert_eq!(b.store.form_claim("t2").await.unwrap(), FormClaim::Fresh);
    b.close_instance().await;
    a.close().await;
}

/// The escalation job running on two instances at the same moment tells each tier once.
#[tokio::test]
async fn sos_escalation_on_two_instances_tells_each_person_once() {
    let a = TestApp::demo().await;
    a.store.seed_iot_demo().await.unwrap();
    let b = a.second_instance().await;
    let resident = a.login("resident").await;
    let person = a
        .store
        .own_person_id(&a.principal_of(resident.user["id"].as_str().unwrap()).await)
        .await
        .unwrap()
        .unwrap();
    let cfg = SafetyConfig::default();
    let sos = a.store.raise_sos(&person, None, "app", &cfg).await.unwrap();
    // Past every tier and a repeat, on both clocks; both run the job at once, three times.
    for _ in 0..3 {
        a.store.clock.advance(cfg.sos_repeat_ms + 1);
        b.store.clock.advance(cfg.sos_repeat_ms + 1);
        let now = a.store.now_ms();
        let (ra, rb) = tokio::join!(a.store.escalate_due(now), b.store.escalate_due(now));
        ra.unwrap();
        rb.unwrap();
    }
    let rows = sqlx::query(
        "SELECT user_id, step FROM alarm_events WHERE alarm_id = $1 AND kind = 'notified'",
    )
    .bind(sos.alarm_id.clone())
    .fetch_all(&a.store.db.read)
    .await
    .unwrap();
    let mut seen = std::collections::HashSet::new();
    for r in &rows {
        let key = (r.get::<String, _>(0), r.get::<i64, _>(1));
        assert!(seen.insert(key.clone()), "told twice: {key:?}");
    }
    let steps: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.get::<i64, _>(1)).collect();
    assert_eq!(
        steps.len(),
        4,
        "tier 0 and three escalations, each once: {steps:?}"
    );
    b.close_instance().await;
    a.close().await;
}

/// "Two points in a row": one point reaches instance A, the next instance B (as a broker's
/// shared subscription splits a device's messages). The count is shared, so the alarm rises.
#[tokio::test]
async fn points_in_a_row_count_across_instances() {
    let a = TestApp::demo().await;
    a.store.seed_iot_demo().await.unwrap();
    let b = a.second_instance().await;
    let config = IotConfig {
        batch_ms: 5,
        ..IotConfig::default()
    };
    let iot_a = Iot::start(a.store.clone(), config.clone()).await.unwrap();
    let iot_b = Iot::start(b.store.clone(), config).await.unwrap();
    let admin = a.login("admin").await;
    let device: String =
        sqlx::query("SELECT id FROM devices WHERE kind = 'smoke' ORDER BY id LIMIT 1")
            .fetch_one(&a.store.db.read)
            .await
            .unwrap()
            .get(0);
    a.post(
        &admin,
        "/api/v1/iot/rules",
        json!({
            "device_kind": "smoke",
            "device_id": device,
            "spec": {"alarm_type": "smoke_twice", "severity": "MAJOR",
                     "trigger": {"type": "threshold", "condition": {"key": "smoke", "op": "gt", "value": 0.5}, "count": 2}}
        }),
    )
    .await
    .expect(201);
    // B hears of the new rule through the bus (on SQLite: reloads like after a missed notice).
    if !a.is_postgres() {
        iot_b.reload_rules().await;
    }
    let token = demo_device_token(&device);
    let active = || async {
        sqlx::query(
            "SELECT COUNT(*) FROM alarms WHERE originator = $1 AND alarm_type = 'smoke_twice' AND active = 1",
        )
        .bind(device.clone())
        .fetch_one(&a.store.db.read)
        .await
        .unwrap()
        .get::<i64, _>(0)
    };
    let started = Instant::now();
    loop {
        // Until B has the rule (the notice is asynchronous), its points do not count it.
        let rules = b.store.rules_all().await.unwrap();
        if rules.iter().any(|r| r.spec.alarm_type == "smoke_twice") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    iot_b.reload_rules().await;
    iot_a
        .ingest_http(Some(&token), "telemetry", br#"{"values":{"smoke":0.9}}"#)
        .await
        .unwrap();
    assert_eq!(active().await, 0, "one point is not two in a row");
    iot_b
        .ingest_http(Some(&token), "telemetry", br#"{"values":{"smoke":0.9}}"#)
        .await
        .unwrap();
    assert_eq!(
        active().await,
        1,
        "the second point, on the other instance, raises it"
    );
    // And a clearing point on A clears what B raised.
    iot_a
        .ingest_http(Some(&token), "telemetry", br#"{"values":{"smoke":0.0}}"#)
        .await
        .unwrap();
    assert_eq!(active().await, 0);
    b.close_instance().await;
    a.close().await;
}

/// A label created on A is known on B at once, a renamed place has its new name on B, and a
/// session signed out on A stops working on B (PostgreSQL: the instances are separate
/// processes; SQLite runs one instance).
#[tokio::test]
async fn caches_and_sign_out_follow_changes_made_on_another_instance() {
    let a = TestApp::demo().await;
    if !a.is_postgres() {
        a.close().await;
        return;
    }
    let b = a.second_instance().await;
    // B caches the labels and place names first.
    assert!(
        !b.store
            .labels()
            .await
            .unwrap()
            .iter()
            .any(|l| l.code == "cluster_test")
    );
    let (room, _) = a.a_room_in("幸福里社区").await;
    let before = b.store.place_names(&[room.as_str()]).await.unwrap();
    a.store
        .create_label(
            &Grant::system(Action::LabelWrite),
            &Actor::system("test"),
            linli_store::registry::labels::NewLabel {
                parent_code: None,
                code: "cluster_test".into(),
                name_zh: "集群测试".into(),
                name_en: "Cluster test".into(),
                sensitive: false,
            },
        )
        .await
        .unwrap();
    a.store
        .update_place(
            &Grant::system(Action::PlaceWrite),
            &Actor::system("test"),
            &room,
            linli_store::registry::places::PlacePatch {
                name: Some("改名室".into()),
                code: None,
                area_x100: None,
                room_use: None,
                plan: None,
            },
        )
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let knows_label = b
            .store
            .labels()
            .await
            .unwrap()
            .iter()
            .any(|l| l.code == "cluster_test");
        let names = b.store.place_names(&[room.as_str()]).await.unwrap();
        if knows_label && names != before {
            assert_eq!(names[&room].1, "改名室");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "B still has the old label tree or place name"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Signed in on A, seen on B (cached there); signed out on A: refused on B at once.
    let s = a.login("resident").await;
    let me_on_b = || b.call("GET", "/api/v1/auth/me", Some(&s), None, &[]);
    assert_eq!(me_on_b().await.status, 200);
    a.call(
        "POST",
        "/api/v1/auth/logout",
        Some(&s),
        Some(("application/json", b"{}".to_vec())),
        &[],
    )
    .await;
    let started = Instant::now();
    let mut status = me_on_b().await.status;
    while status != 401 && started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        status = me_on_b().await.status;
    }
    assert_eq!(status, 401);
    assert!(
        started.elapsed() < linli_server::auth_cache::TTL,
        "refused on notice, not when the cache expired"
    );
    b.close_instance().await;
    a.close().await;
}

/// The outside probe of issue #22, short: two `linli serve` processes on one PostgreSQL
/// database consume from Mosquitto through the shared subscription; one is killed (SIGKILL)
/// while a device publisher sends QoS 1 telemetry, and does not come back. The broker kept the
/// dead instance's share in its persistent session; the other instance takes the session over
/// and every message the broker accepted is stored. (PostgreSQL and Mosquitto only: several
/// instances need a shared database.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_through_the_broker_survives_a_killed_instance() {
    broker_probe(Stop::Kill).await;
}

/// A rolling restart: SIGTERM, then the same instance starts again. Its consumer stops taking
/// messages, lets the acknowledgements of what it stored go out, and disconnects keeping its
/// session; nothing is lost and nothing is stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_through_the_broker_is_stored_once_across_a_restart() {
    broker_probe(Stop::Restart).await;
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Stop {
    Kill,
    Freeze,
    Restart,
}

/// The same with an instance that freezes (SIGSTOP: its connections stay open, it answers
/// nothing) for 20 seconds and is then killed: the other takes its session over while it is
/// frozen (the broker hands a session to the newest connection of its client id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_through_the_broker_survives_a_frozen_then_killed_instance() {
    broker_probe(Stop::Freeze).await;
}

async fn broker_probe(how: Stop) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let app = TestApp::demo().await;
    let mosquitto = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let (true, Some(mosquitto)) = (app.is_postgres(), mosquitto) else {
        app.close().await;
        return;
    };
    // A broker of its own: other tests' groups on a shared broker each get a copy of every
    // message, and would fill its queues. Sized as deploy/mosquitto/mosquitto.conf is.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = app.dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 100\n"
        ),
    )
    .unwrap();
    let mut broker = Command::new(mosquitto)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto starts");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "mosquitto listens"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let broker_url = format!("mqtt://127.0.0.1:{port}");
    app.store.seed_iot_demo().await.unwrap();
    let url = app.database_url().unwrap();
    let key = std::fs::read_to_string(app.dir.join("master.key")).unwrap();
    let group = format!("k{}", &linli_core::new_id()[24..]);
    let spawn = |name: &str| {
        let dir = app.dir.join(name);
        let mut child = Command::new(env!("CARGO_BIN_EXE_linli"))
            .args(["--database-url", &url])
            .arg("--data-dir")
            .arg(&dir)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--mqtt-url",
                &broker_url,
            ])
            .env("LINLI_MASTER_KEY", key.trim())
            .env("LINLI_MQTT_GROUP", &group)
            .env("LINLI_INSTANCE_ID", format!("{group}-{name}"))
            .env("LINLI_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("linli starts");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("is ready at http://").nth(1) {
                    let _ = tx.send(rest.split('/').next().unwrap_or("").to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("instance started");
        (child, addr)
    };
    // Ready means subscribed at the broker too (a message published to a new group before
    // any subscription would find nobody).
    let ready = |addr: String| async move {
        let started = Instant::now();
        loop {
            let ok = tokio::task::spawn_blocking({
                let addr = addr.clone();
                move || {
                    use std::io::{Read, Write};
                    let mut s = std::net::TcpStream::connect(&addr).ok()?;
                    write!(s, "GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
                    let mut body = String::new();
                    s.read_to_string(&mut body).ok()?;
                    Some(body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200"))
                }
            })
            .await
            .unwrap();
            if ok == Some(true) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{addr} never ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (mut a, a_addr) = spawn("a");
    let (mut b, b_addr) = spawn("b");
    ready(a_addr).await;
    ready(b_addr).await;
    let devices: Vec<String> =
        sqlx::query("SELECT id FROM devices WHERE kind = 'smoke' ORDER BY id LIMIT 10")
            .fetch_all(&app.store.db.read)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    let mut o = MqttOptions::new(format!("pub-{group}"), "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(o, 64);
    const N: i64 = 1_500;
    const KILL_AT: i64 = 500;
    // Recent points (older ones would meet the retention job).
    let base = app.store.now_ms() - 60_000;
    let publisher = tokio::spawn(async move {
        for i in 0..N {
            let dev = &devices[i as usize % devices.len()];
            let body = json!({"ts": base + i, "values": {"smoke": 0.0}}).to_string();
            client
                .publish(
                    format!("linli/{dev}/telemetry"),
                    QoS::AtLeastOnce,
                    false,
                    body,
                )
                .await
                .unwrap();
        }
        client
    });
    let mut acked = 0;
    let mut killed = false;
    let mut restarted = None;
    while acked < N {
        match tokio::time::timeout(Duration::from_secs(20), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                acked += 1;
                if acked == KILL_AT {
                    if how == Stop::Restart {
                        let pid = a.id().to_string();
                        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
                        let _ = a.wait();
                        let (again, addr) = spawn("a");
                        a = again;
                        restarted = Some(addr);
                    } else if how == Stop::Freeze {
                        let pid = a.id().to_string();
                        Command::new("kill").args(["-STOP", &pid]).status().unwrap();
                        let pid = a.id();
                        // Killed later, after the other instance took its session over.
                        std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_secs(20));
                            let _ = Command::new("kill")
                                .args(["-KILL", &pid.to_string()])
                                .stderr(Stdio::null())
                                .status();
                        });
                    } else {
                        a.kill().unwrap();
                    }
                    killed = true;
                }
            }
            Ok(Ok(_)) => {}
            other => panic!("publisher: {other:?}"),
        }
    }
    assert!(killed);
    let _client = publisher.await.unwrap();
    // Every message the broker accepted is stored: A's share waits in its session until B
    // takes it over (15 s of silence, then a heartbeat round).
    let stored = || async {
        let rows = sqlx::query("SELECT points FROM telemetry WHERE t_min >= $1 AND t_max < $2")
            .bind(base)
            .bind(base + N)
            .fetch_all(&app.store.db.read)
            .await
            .unwrap();
        let mut all = Vec::new();
        for r in rows {
            let pts: Vec<(i64, serde_json::Value)> =
                serde_json::from_str(&r.get::<String, _>(0)).unwrap();
            all.extend(pts.into_iter().map(|p| p.0));
        }
        all
    };
    let started = Instant::now();
    let mut seen;
    loop {
        seen = stored().await;
        let distinct: std::collections::BTreeSet<i64> = seen.iter().copied().collect();
        if distinct.len() as i64 == N || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let distinct: std::collections::BTreeSet<i64> = seen.iter().copied().collect();
    if how == Stop::Restart {
        assert!(restarted.is_some());
        assert_eq!(
            seen.len(),
            distinct.len(),
            "a graceful restart stores nothing twice"
        );
    }
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
    let _ = broker.kill();
    let _ = broker.wait();
    assert_eq!(
        distinct.len() as i64,
        N,
        "lost {} of {N} acknowledged messages (took {:?})",
        N - distinct.len() as i64,
        started.elapsed()
    );
    eprintln!(
        "{} instance: {N} of {N} stored after {:?}; {} delivered twice (at least once)",
        format!("{how:?}"),
        started.elapsed(),
        seen.len() - distinct.len()
    );
    app.close().await;
}
