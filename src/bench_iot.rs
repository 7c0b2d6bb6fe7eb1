//! `linli bench iot`: MQTT ingest end to end on this machine, everything on 127.0.0.1.
//!
//! 1. Broker-only baseline: QoS 1 publishes on a routed-only topic → a no-op subscriber.
//! 2. Sustained ingest: QoS 1 telemetry with 3 values from many device connections → parse →
//!    rules → batch commit → PUBACK. Rate = PUBACKs per second; afterwards the stored points
//!    are counted against the PUBACKs (none may be missing).
//! 3. Latency: under a paced background load, a probe smoke detector alternates smoke 1/0;
//!    time from its publish to the `alarm.raised` event on a real SSE connection (`/events`).
//! 4. Overload (`--overload-minutes N`): 10× the sustained rate offered (QoS 1 unthrottled plus
//!    paced QoS 0); reports peak RSS, what was shed (QoS 0 only) and that every acknowledged
//!    QoS 1 message is stored.
//!
//! The load generator is a small raw MQTT client (pre-encoded packets, windowed acks) so the
//! client side costs little; it runs in the same process, so the figures include it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, Publish, Subscribe};
use rumqttc::mqttbytes::{Error as MqttError, QoS};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use linli_iot::{Iot, IotConfig};
use linli_store::Store;
use linli_store::iot::demo::demo_device_token;

use crate::config::Config;

#[derive(Default)]
struct Load {
    sent: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
}

pub(crate) async fn raw_connect(
    addr: SocketAddr,
    user: &str,
    pass: &str,
) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut c = Connect::new(format!("bench-{}", &linli_core::new_id()[24..]));
    c.keep_alive = 120;
    c.set_login(user, pass);
    let mut buf = BytesMut::new();
    Packet::Connect(c)
        .write(&mut buf, usize::MAX)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    s.write_all(&buf).await?;
    let mut rb = BytesMut::with_capacity(64);
    loop {
        match Packet::read(&mut rb, 1 << 20) {
            Ok(Packet::ConnAck(a)) if a.code == ConnectReturnCode::Success => return Ok(s),
            Ok(p) => bail!("refused: {p:?}"),
            Err(MqttError::InsufficientBytes(_)) => {
                if s.read_buf(&mut rb).await? == 0 {
                    bail!("closed before CONNACK");
                }
            }
            Err(e) => bail!("{e}"),
        }
    }
}

/// Publish until `until` (QoS 1 with at most `window` unacknowledged, or QoS 0), optionally
/// paced to `rate` messages a second.
#[allow(clippy::too_many_arguments)]
async fn publisher(
    addr: SocketAddr,
    user: String,
    token: String,
    topic: String,
    qos1: bool,
    window: usize,
    until: Instant,
    rate: Option<f64>,
    load: Arc<Load>,
) -> anyhow::Result<()> {
    let s = raw_connect(addr, &user, &token).await?;
    let (mut rd, mut wr) = s.into_split();
    let sem = Arc::new(Semaphore::new(window));
    let reader = {
        let sem = sem.clone();
        let load = load.clone();
        tokio::spawn(async move {
            let mut b = BytesMut::with_capacity(64 * 1024);
            loop {
                match Packet::read(&mut b, 1 << 20) {
                    Ok(Packet::PubAck(_)) => {
                        load.acked.fetch_add(1, Ordering::Relaxed);
                        sem.add_permits(1);
                    }
                    Ok(_) => {}
                    Err(MqttError::InsufficientBytes(_)) => {
                        if rd.read_buf(&mut b).await.unwrap_or(0) == 0 {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        })
    };
    let mut pkid: u16 = 0;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let start = Instant::now();
    let mut n_sent = 0u64;
    let mut seq = 0u64;
    while Instant::now() < until {
        let mut k: u64 = 64;
        if let Some(r) = rate {
            let allowed = (r * start.elapsed().as_secs_f64()) as u64;
            if allowed <= n_sent {
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            k = (allowed - n_sent).min(64);
        }
        if qos1 {
            match tokio::time::timeout_at(until.into(), sem.acquire_many(k as u32)).await {
                Ok(Ok(p)) => p.forget(),
                _ => break,
            }
        }
        buf.clear();
        for _ in 0..k {
            seq += 1;
            let payload = format!(
                r#"{{"ts":{},"values":{{"temperature":{}.5,"humidity":{},"battery":{}}}}}"#,
                linli_core::now_ms(),
                18 + seq % 8,
                30 + seq % 40,
                60 + seq % 40
            );
            let mut p = Publish::new(
                topic.as_str(),
                if qos1 {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                },
                payload,
            );
            if qos1 {
                pkid = pkid % 65_535 + 1;
                p.pkid = pkid;
            }
            Packet::Publish(p)
                .write(&mut buf, usize::MAX)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        if wr.write_all(&buf).await.is_err() {
            break;
        }
        n_sent += k;
        load.sent.fetch_add(k, Ordering::Relaxed);
    }
    if qos1 {
        // Wait (bounded) for the outstanding acknowledgements.
        let _ =
            tokio::time::timeout(Duration::from_secs(15), sem.acquire_many(window as u32)).await;
    }
    let _ = wr.shutdown().await;
    reader.abort();
    Ok(())
}

async fn subscriber(
    addr: SocketAddr,
    user: &str,
    token: &str,
    filter: &str,
    load: Arc<Load>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut s = raw_connect(addr, user, token).await?;
    let mut buf = BytesMut::new();
    let mut sub = Subscribe::new(filter, QoS::AtMostOnce);
    sub.pkid = 1;
    Packet::Subscribe(sub)
        .write(&mut buf, usize::MAX)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    s.write_all(&buf).await?;
    Ok(tokio::spawn(async move {
        let mut b = BytesMut::with_capacity(256 * 1024);
        loop {
            match Packet::read(&mut b, 1 << 20) {
                Ok(Packet::Publish(_)) => {
                    load.received.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(MqttError::InsufficientBytes(_)) => {
                    if s.read_buf(&mut b).await.unwrap_or(0) == 0 {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }))
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Sign in over HTTP and open `/events`; returns a reader of SSE lines.
async fn sse(
    http: SocketAddr,
    login: &str,
    password: &str,
) -> anyhow::Result<tokio::io::BufReader<TcpStream>> {
    let body = json!({"login": login, "password": password}).to_string();
    let mut s = TcpStream::connect(http).await?;
    s.write_all(
        format!(
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    let cookie = resp
        .lines()
        .find_map(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("set-cookie:")
                .then(|| l[11..].trim().to_string())
        })
        .and_then(|c| c.split(';').next().map(str::to_string))
        .context("no session cookie")?;
    // Keep the original case of the token.
    let start = resp.to_ascii_lowercase().find(&cookie).context("cookie")?;
    let cookie = resp[start..start + cookie.len()].to_string();
    let mut s = TcpStream::connect(http).await?;
    s.write_all(
        format!("GET /events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\nCookie: {cookie}\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    Ok(tokio::io::BufReader::new(s))
}

pub async fn run(
    cfg: &Config,
    seconds: u64,
    connections: usize,
    overload_minutes: u64,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("linli-bench-iot-{}", linli_core::new_id()));
    std::fs::create_dir_all(&dir)?;
    let bench_cfg = Config {
        data_dir: dir.clone(),
        database_url: cfg.database_url.clone(),
        ..Config::default()
    };
    let store: Store = crate::open_store(&bench_cfg).await?;
    eprintln!("seeding the demo district and devices …");
    linli_server::modules::seed_demo(&store, "linli-demo")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store
        .seed_iot_demo()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let iot = Iot::start(store.clone(), IotConfig::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let broker = linli_iot::broker::start(iot.clone(), "127.0.0.1:0").await?;
    let addr = broker.addr;
    let state = linli_server::AppState::new(
        store.clone(),
        linli_server::ServerConfig {
            secure_cookies: false,
            data_dir: dir.clone(),
            trusted_proxies: Vec::new(),
        },
    );
    let _ = state.iot.set(iot.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = listener.local_addr()?;
    tokio::spawn(linli_server::serve(listener, state));

    let devices = store
        .device_auth_all()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let probe = devices
        .iter()
        .find(|d| d.kind == "smoke")
        .context("a smoke detector")?
        .clone();
    let load_devices: Vec<_> = devices
        .iter()
        .filter(|d| matches!(d.kind.as_str(), "water_leak" | "door" | "gate_face"))
        .cloned()
        .collect();
    let conns = connections.clamp(1, load_devices.len());
    let dur = Duration::from_secs(seconds.max(2));

    // 1. Broker-only baseline.
    let base = Arc::new(Load::default());
    let d0 = &load_devices[0];
    let sub = subscriber(
        addr,
        &d0.id,
        &demo_device_token(&d0.id),
        &format!("linli/{}/raw", d0.id),
        base.clone(),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let until = Instant::now() + dur;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        tasks.push(tokio::spawn(publisher(
            addr,
            d0.id.clone(),
            demo_device_token(&d0.id),
            format!("linli/{}/raw", d0.id),
            true,
            1000,
            until,
            None,
            base.clone(),
        )));
    }
    for t in tasks {
        t.await??;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    sub.abort();
    let baseline_rate = base.received.load(Ordering::Relaxed) as f64 / dur.as_secs_f64();
    let shed = iot.stats().route_shed.load(Ordering::Relaxed);

    // 2. Sustained end-to-end ingest.
    let e2e = Arc::new(Load::default());
    let stored_before = store
        .telemetry_count(None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let t0 = Instant::now();
    let until = t0 + dur;
    let mut tasks = Vec::new();
    for d in load_devices.iter().take(conns) {
        tasks.push(tokio::spawn(publisher(
            addr,
            d.id.clone(),
            demo_device_token(&d.id),
            format!("linli/{}/telemetry", d.id),
            true,
            4000,
            until,
            None,
            e2e.clone(),
        )));
    }
    let mut peak = rss_mib();
    for t in tasks {
        t.await??;
    }
    let acked_in_time = e2e.acked.load(Ordering::Relaxed);
    let e2e_rate = acked_in_time as f64 / t0.elapsed().as_secs_f64();
    let stored = store
        .telemetry_count(None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        - stored_before;
    peak = peak.max(rss_mib());
    println!(
        "{}",
        json!({
            "bench": "iot_ingest",
            "database": format!("{:?}", store.backend()),
            "connections": conns,
            "values_per_message": 3,
            "seconds": dur.as_secs(),
            "e2e_msgs_per_s": e2e_rate.round(),
            "sent": e2e.sent.load(Ordering::Relaxed),
            "acked": e2e.acked.load(Ordering::Relaxed),
            "stored_points": stored,
            "acked_not_stored": (e2e.acked.load(Ordering::Relaxed) as i64 - stored).max(0),
            "batches": iot.stats().batches.load(Ordering::Relaxed),
            "baseline_broker_only_msgs_per_s": baseline_rate.round(),
            "baseline_route_shed": shed,
            "ratio_e2e_to_broker_only": (e2e_rate / baseline_rate * 1000.0).round() / 1000.0,
            "target_msgs_per_s": 50000,
            "rss_mib": peak.round(),
        })
    );

    // 3. publish → alarm on SSE under a paced 5,000 msg/s background.
    let mut events = sse(http, "admin", "linli-demo").await?;
    let bg = Arc::new(Load::default());
    let bg_secs = dur.max(Duration::from_secs(5));
    let until = Instant::now() + bg_secs;
    let mut tasks = Vec::new();
    let bg_conns = conns.min(4);
    for d in load_devices.iter().take(bg_conns) {
        tasks.push(tokio::spawn(publisher(
            addr,
            d.id.clone(),
            demo_device_token(&d.id),
            format!("linli/{}/telemetry", d.id),
            true,
            2000,
            until,
            Some(5000.0 / bg_conns as f64),
            bg.clone(),
        )));
    }
    let probe_conn = raw_connect(addr, &probe.id, &demo_device_token(&probe.id)).await?;
    let (mut prd, mut pwr) = probe_conn.into_split();
    tokio::spawn(async move {
        let mut b = [0u8; 4096];
        while prd.read(&mut b).await.unwrap_or(0) > 0 {}
    });
    let mut lat = Vec::new();
    let mut line = String::new();
    let mut pkid = 0u16;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while Instant::now() + Duration::from_millis(500) < until {
        for smoke in [1, 0] {
            pkid = pkid % 65_535 + 1;
            let mut p = Publish::new(
                format!("linli/{}/telemetry", probe.id),
                QoS::AtLeastOnce,
                format!(r#"{{"values":{{"smoke":{smoke}}}}}"#),
            );
            p.pkid = pkid;
            let mut buf = BytesMut::new();
            Packet::Publish(p)
                .write(&mut buf, usize::MAX)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let t = Instant::now();
            pwr.write_all(&buf).await?;
            let want = if smoke == 1 {
                "event: alarm.raised"
            } else {
                "event: alarm.cleared"
            };
            let got = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    line.clear();
                    if events.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return false;
                    }
                    if line.trim_end() == want {
                        return true;
                    }
                }
            })
            .await;
            if smoke == 1 && matches!(got, Ok(true)) {
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in tasks {
        t.await??;
    }
    let bg_rate = bg.acked.load(Ordering::Relaxed) as f64 / bg_secs.as_secs_f64();
    let mut l2 = lat.clone();
    println!(
        "{}",
        json!({
            "bench": "iot_alarm_latency",
            "background_msgs_per_s": bg_rate.round(),
            "probes": lat.len(),
            "publish_to_sse_ms_p50": (pct(&mut l2, 0.5) * 10.0).round() / 10.0,
            "publish_to_sse_ms_p99": (pct(&mut l2, 0.99) * 10.0).round() / 10.0,
            "publish_to_sse_ms_max": (pct(&mut l2, 1.0) * 10.0).round() / 10.0,
            "target_p99_ms": 200,
        })
    );

    // 4. Overload.
    if overload_minutes > 0 {
        let ov = Arc::new(Load::default());
        let q0 = Arc::new(Load::default());
        let stored_before = store
            .telemetry_count(None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let accepted_before = iot.stats().accepted.load(Ordering::Relaxed);
        let shed_before = iot.stats().dropped(linli_core::iot::Drop::Overload);
        let offered = (e2e_rate * 10.0).max(10_000.0);
        let ov_dur = Duration::from_secs(overload_minutes * 60);
        let until = Instant::now() + ov_dur;
        let mut tasks = Vec::new();
        for d in load_devices.iter().take(conns) {
            tasks.push(tokio::spawn(publisher(
                addr,
                d.id.clone(),
                demo_device_token(&d.id),
                format!("linli/{}/telemetry", d.id),
                true,
                4000,
                until,
                None,
                ov.clone(),
            )));
        }
        for d in load_devices.iter().skip(conns).take(conns) {
            tasks.push(tokio::spawn(publisher(
                addr,
                d.id.clone(),
                demo_device_token(&d.id),
                format!("linli/{}/telemetry", d.id),
                false,
                0,
                until,
                Some(offered / conns as f64),
                q0.clone(),
            )));
        }
        let mut peak = rss_mib();
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(1)).await;
            peak = peak.max(rss_mib());
        }
        for t in tasks {
            t.await??;
        }
        // Let the queue drain, then count.
        tokio::time::sleep(Duration::from_secs(3)).await;
        iot.tick().await;
        let stored = store
            .telemetry_count(None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            - stored_before;
        let accepted = iot.stats().accepted.load(Ordering::Relaxed) - accepted_before;
        let acked = ov.acked.load(Ordering::Relaxed);
        println!(
            "{}",
            json!({
                "bench": "iot_overload",
                "minutes": overload_minutes,
                "offered_qos0_msgs_per_s": offered.round(),
                "qos0_sent": q0.sent.load(Ordering::Relaxed),
                "qos0_shed_overload": iot.stats().dropped(linli_core::iot::Drop::Overload) - shed_before,
                "qos1_sent": ov.sent.load(Ordering::Relaxed),
                "qos1_acked": acked,
                "accepted": accepted,
                "stored_points": stored,
                "acked_qos1_lost": (acked as i64 - stored).max(0),
                "accepted_not_stored": (accepted as i64 - stored).max(0),
                "peak_rss_mib": peak.round(),
                "target_peak_rss_mib": 500,
            })
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
