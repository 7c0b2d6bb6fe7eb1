//! `linli bench soak --minutes N`: a mixed load held for N minutes against the real server —
//! API searches and reads, HTML pages with a session (registry, person search, report queue,
//! the live safety view), audited writes, HTTP telemetry ingest, and QoS 1 MQTT publishers on
//! the embedded broker — with the server's memory sampled all along. Then the load stops and the
//! probe latency is measured again. Reported: throughput and latency per kind of request, RSS
//! over time (first minute vs last minute), recovery ratio (probe p99 in the first and the
//! second 10 s after the load vs before it), and the acknowledged writes (reveals, HTTP-ingested and PUBACKed telemetry) that are
//! missing from the database — which must be none.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};
use sqlx::Row;

use linli_store::iot::demo::demo_device_token;

use crate::bench::{
    HttpClient, client, login, percentile, request, request_with, rss_kib, spawn_server, tempdir,
};
use crate::bench_mqtt::{Qos1Device, SEQ_KEY, stored_seqs};
use crate::config::Config;

/// Probe latency: one client, one request every 50 ms, for `secs` seconds.
async fn probe(base: &str, cookie: &str, secs: u64) -> anyhow::Result<Value> {
    let http = client();
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        let t = Instant::now();
        let (s, _, _) = request(
            &http,
            "GET",
            &format!("{base}/api/v1/persons?name=王&limit=20"),
            Some(cookie),
            None,
        )
        .await?;
        if s != 200 {
            bail!("probe: {s}");
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lat.sort_by(f64::total_cmp);
    Ok(
        json!({"requests": lat.len(), "p50_ms": percentile(&lat, 0.50), "p99_ms": percentile(&lat, 0.99)}),
    )
}

/// Ids of a list answer (`items` of a page, or a plain array).
async fn ids(http: &HttpClient, uri: &str, cookie: &str) -> anyhow::Result<Vec<Value>> {
    let (status, _, body) = request(http, "GET", uri, Some(cookie), None).await?;
    if status != 200 {
        bail!("GET {uri}: {status}");
    }
    let v: Value = serde_json::from_slice(&body)?;
    let list = if v.is_array() { &v } else { &v["items"] };
    Ok(list.as_array().cloned().unwrap_or_default())
}

fn id_list(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|h| h["id"].as_str().map(str::to_string))
        .collect()
}

/// What the load needs to address: households, persons and devices of the committee's area.
struct Targets {
    households: Vec<String>,
    persons: Vec<String>,
    devices: Vec<String>,
}

/// What the HTTP clients acknowledged and measured.
#[derive(Default)]
struct ClientResult {
    reveals: Vec<String>,
    /// (device, sequence) of telemetry the HTTP ingest answered 202 for.
    ingested: Vec<(String, u64)>,
    latency: HashMap<&'static str, Vec<f64>>,
}

pub async fn soak(
    cfg: &Config,
    minutes: f64,
    clients: usize,
    iot_devices: usize,
    iot_rate: f64,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let dir = tempdir("soak")?;
    let mut server = spawn_server(&exe, &dir, cfg.database_url.as_deref()).await?;
    let pid = server.child.id().unwrap_or(0);
    let base = format!("http://127.0.0.1:{}", server.port);
    let http = client();
    let (cookie, csrf) = login(&http, &base, "committee").await?;
    let devices: Vec<String> = ids(
        &http,
        &format!("{base}/api/v1/iot/devices?limit=1000"),
        &cookie,
    )
    .await?
    .iter()
    .filter(|d| matches!(d["kind"].as_str(), Some("water_leak" | "door")))
    .filter_map(|d| d["id"].as_str().map(str::to_string))
    .collect();
    let targets = Arc::new(Targets {
        households: id_list(
            &ids(
                &http,
                &format!("{base}/api/v1/households?limit=50"),
                &cookie,
            )
            .await?,
        ),
        persons: id_list(&ids(&http, &format!("{base}/api/v1/persons?limit=50"), &cookie).await?),
        devices,
    });
    if targets.households.is_empty() || targets.persons.is_empty() || targets.devices.is_empty() {
        bail!("the demo lacks households, persons or devices in the committee's area");
    }

    let before = probe(&base, &cookie, 10).await?;
    let rss_start = rss_kib(pid).unwrap_or(0);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    // Telemetry sequence numbers, unique over the run (HTTP and MQTT share them).
    let seq = Arc::new(AtomicU64::new(1));
    let deadline = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base, cookie, csrf) = (http.clone(), base.clone(), cookie.clone(), csrf.clone());
        let (targets, stop, done, errors, seq) = (
            targets.clone(),
            stop.clone(),
            done.clone(),
            errors.clone(),
            seq.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut out = ClientResult::default();
            let mut i: usize = c;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                i += clients;
                let t = Instant::now();
                let (kind, ok) =
                    one_request(&http, &base, &cookie, &csrf, &targets, c, i, &seq, &mut out).await;
                if ok {
                    done.fetch_add(1, Ordering::Relaxed);
                    out.latency
                        .entry(kind)
                        .or_default()
                        .push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            out
        }));
    }
    // QoS 1 publishers on the embedded broker, paced to `iot_rate` messages a second in all.
    let mut publishers = Vec::new();
    let n_dev = iot_devices.clamp(1, targets.devices.len());
    for d in targets.devices.iter().rev().take(n_dev) {
        let (device, seq, mqtt) = (d.clone(), seq.clone(), server.mqtt);
        let rate = iot_rate / n_dev as f64;
        publishers.push(tokio::spawn(async move {
            publish_paced(mqtt, device, rate, deadline, &seq).await
        }));
    }
    // Sample memory every 5 s while the load runs.
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let start = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(
            Duration::from_secs(5)
                .min(deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1)),
        )
        .await;
        samples.push((start.elapsed().as_secs_f64(), rss_kib(pid).unwrap_or(0)));
    }
    stop.store(true, Ordering::Relaxed);
    let mut reveals = Vec::new();
    let mut telemetry: HashMap<String, Vec<u64>> = HashMap::new();
    let mut latency: HashMap<&'static str, Vec<f64>> = HashMap::new();
    for t in tasks {
        let r = t.await?;
        reveals.extend(r.reveals);
        for (d, s) in r.ingested {
            telemetry.entry(d).or_default().push(s);
        }
        for (k, v) in r.latency {
            latency.entry(k).or_default().extend(v);
        }
    }
    let mut mqtt_acked = 0u64;
    let mut mqtt_unacked = 0u64;
    for p in publishers {
        let (device, acked, unacked) = p.await??;
        mqtt_acked += acked.len() as u64;
        mqtt_unacked += unacked;
        telemetry.entry(device).or_default().extend(acked);
    }
    let ingested_http: usize =
        telemetry.values().map(Vec::len).sum::<usize>() - mqtt_acked as usize;
    let load_secs = start.elapsed().as_secs_f64();
    let mut all: Vec<f64> = latency.values().flatten().copied().collect();
    all.sort_by(f64::total_cmp);
    // Right after the load, and once more after it: how fast the latency comes back.
    let after = probe(&base, &cookie, 10).await?;
    let settled = probe(&base, &cookie, 10).await?;
    let rss_end = rss_kib(pid).unwrap_or(0);

    // Every acknowledged write is in the database (opened next to the running server).
    let mut c = cfg.clone();
    c.data_dir = dir.clone();
    let store = crate::open_store(&c).await?;
    let lost_reveals = missing_reveals(&store, &reveals).await?;
    let mut lost_telemetry = 0u64;
    for (device, seqs) in &telemetry {
        let stored = stored_seqs(&store, device).await?;
        lost_telemetry += seqs.iter().filter(|s| !stored.contains(s)).count() as u64;
    }
    store.db.read.close().await;
    store.db.write.close().await;
    server.child.start_kill().ok();
    let _ = server.child.wait().await;
    std::fs::remove_dir_all(&dir).ok();

    let mib = |k: u64| (k as f64 / 1024.0 * 10.0).round() / 10.0;
    let first_min: Vec<u64> = samples
        .iter()
        .filter(|s| s.0 <= 60.0)
        .map(|s| s.1)
        .collect();
    let last_min: Vec<u64> = samples
        .iter()
        .filter(|s| s.0 >= load_secs - 60.0)
        .map(|s| s.1)
        .collect();
    let max = |v: &[u64]| v.iter().copied().max().unwrap_or(0);
    let ratio = |v: &Value| {
        let r = v["p99_ms"].as_f64().unwrap_or(0.0)
            / before["p99_ms"].as_f64().unwrap_or(1.0).max(0.001);
        (r * 100.0).round() / 100.0
    };
    let by_kind: serde_json::Map<String, Value> = latency
        .iter_mut()
        .map(|(k, v)| {
            v.sort_by(f64::total_cmp);
            (
                k.to_string(),
                json!({"requests": v.len(), "p50_ms": percentile(v, 0.50), "p99_ms": percentile(v, 0.99)}),
            )
        })
        .collect();
    let lost = lost_reveals + lost_telemetry;
    println!(
        "{}",
        json!({
            "bench": "soak",
            "database": if cfg.database_url.is_some() { "postgres" } else { "sqlite" },
            "minutes": minutes,
            "clients": clients,
            "requests_ok": done.load(Ordering::Relaxed),
            "requests_failed": errors.load(Ordering::Relaxed),
            "per_second": (done.load(Ordering::Relaxed) as f64 / load_secs).round(),
            "load_p50_ms": percentile(&all, 0.50),
            "load_p99_ms": percentile(&all, 0.99),
            "load_by_kind": by_kind,
            "mqtt_qos1": {"devices": n_dev, "target_msgs_per_s": iot_rate, "acked": mqtt_acked,
                          "acked_per_s": (mqtt_acked as f64 / load_secs).round(), "unacked_at_stop": mqtt_unacked},
            "probe_before": before,
            "probe_after_0_10s": after,
            "probe_after_10_20s": settled,
            "recovery_ratio_p99_after_vs_before": [ratio(&after), ratio(&settled)],
            "rss_mib": {"start": mib(rss_start), "max_first_minute": mib(max(&first_min)), "max_last_minute": mib(max(&last_min)), "end": mib(rss_end),
                        "samples": samples.iter().map(|s| json!([s.0.round(), mib(s.1)])).collect::<Vec<_>>()},
            "acknowledged_writes": {"reveals": reveals.len(), "telemetry_http": ingested_http, "telemetry_mqtt": mqtt_acked},
            "lost": {"reveals": lost_reveals, "telemetry": lost_telemetry},
        })
    );
    if lost > 0 {
        bail!("{lost} acknowledged writes are missing");
    }
    Ok(())
}

/// One request of the mix, chosen by the request number: (kind, answered as expected).
#[allow(clippy::too_many_arguments)]
async fn one_request(
    http: &HttpClient,
    base: &str,
    cookie: &str,
    csrf: &str,
    t: &Targets,
    c: usize,
    i: usize,
    seq: &AtomicU64,
    out: &mut ClientResult,
) -> (&'static str, bool) {
    let hh = &t.households[i % t.households.len()];
    let get = |kind: &'static str, uri: String| async move {
        let ok = matches!(
            request(http, "GET", &uri, Some(cookie), None).await,
            Ok((200, _, _))
        );
        (kind, ok)
    };
    match i % 20 {
        // API: person searches and household reads (50 %).
        0..=6 => {
            let name = ["王", "李", "张", "刘", "陈"][i % 5];
            get("api", format!("{base}/api/v1/persons?name={name}&limit=20")).await
        }
        7..=9 => get("api", format!("{base}/api/v1/households/{hh}")).await,
        // UI: HTML pages with the session (25 %).
        10 | 11 => get("page", format!("{base}/registry/households/{hh}")).await,
        12 => get("page", format!("{base}/registry/persons?name=赵")).await,
        13 => get("page", format!("{base}/staff/reports")).await,
        14 => get("page", format!("{base}/staff/safety")).await,
        // Audited writes: reveals whose purpose is checked afterwards (15 %).
        15..=17 => {
            let purpose = format!("soak-{c}-{i}");
            let pid = &t.persons[i % t.persons.len()];
            let r = request_with(
                http,
                "POST",
                &format!("{base}/api/v1/persons/{pid}/reveal"),
                &[("cookie", cookie), ("x-csrf-token", csrf)],
                Some(json!({"purpose": purpose, "fields": ["phone"]}).to_string()),
            )
            .await;
            let ok = matches!(r, Ok((200, _, _)));
            if ok {
                out.reveals.push(purpose);
            }
            ("write", ok)
        }
        // IoT: HTTP ingest with the device token, answered after commit (10 %).
        _ => {
            let device = &t.devices[i % t.devices.len()];
            let n = seq.fetch_add(1, Ordering::Relaxed);
            let token = demo_device_token(device);
            let r = request_with(
                http,
                "POST",
                &format!("{base}/api/v1/iot/telemetry"),
                &[("x-device-token", token.as_str())],
                Some(json!({"values": {"temperature": 21.5, SEQ_KEY: n}}).to_string()),
            )
            .await;
            let ok = matches!(r, Ok((202, _, _)));
            if ok {
                out.ingested.push((device.clone(), n));
            }
            ("iot_http", ok)
        }
    }
}

/// A device publishing QoS 1 telemetry in windows of 16, paced to `rate` messages a second,
/// until `deadline`. Returns (device, acknowledged sequence numbers, messages left unacked).
async fn publish_paced(
    mqtt: std::net::SocketAddr,
    device: String,
    rate: f64,
    deadline: Instant,
    seq: &AtomicU64,
) -> anyhow::Result<(String, Vec<u64>, u64)> {
    let mut dev = Qos1Device::connect(mqtt, &device, &demo_device_token(&device)).await?;
    let mut acked = Vec::new();
    let mut unacked = 0;
    let start = Instant::now();
    let mut sent = 0u64;
    while Instant::now() < deadline {
        let allowed = (rate * start.elapsed().as_secs_f64()) as u64;
        if allowed < sent + 16 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let first = seq.fetch_add(16, Ordering::Relaxed);
        let seqs: Vec<u64> = (first..first + 16).collect();
        let got = dev.publish(&seqs, Duration::from_secs(10)).await;
        unacked += (seqs.len() - got.len()) as u64;
        acked.extend(got);
        sent += 16;
    }
    Ok((device, acked, unacked))
}

/// How many acknowledged reveals have no audit entry with their purpose.
async fn missing_reveals(store: &linli_store::Store, purposes: &[String]) -> anyhow::Result<u64> {
    let mut missing = 0u64;
    for chunk in purposes.chunks(200) {
        let mut q =
            linli_store::db::Sql::new("SELECT COUNT(*) AS n FROM audit_log WHERE purpose IN (");
        for (k, p) in chunk.iter().enumerate() {
            if k > 0 {
                q.push(", ");
            }
            q.bind(p);
        }
        q.push(")");
        let n: i64 = q.query().fetch_one(&store.db.read).await?.get("n");
        missing += chunk.len() as u64 - n as u64;
    }
    Ok(missing)
}
