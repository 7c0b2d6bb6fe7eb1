//! `linli bench soak --minutes N`: a mixed load (API searches and reads, HTML pages, audited
//! writes) held for N minutes against a real server, with the server's memory sampled all along;
//! then the load stops and the probe latency is measured again. Reported: throughput and latency
//! per phase, RSS over time (first minute vs last minute), recovery ratio (probe p99 after the
//! load vs before it), and a check that every acknowledged write is in the database.
//! Other modules add their own traffic to the mix (see `Mix`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};
use sqlx::Row;

use crate::bench::{client, free_port, percentile, request, rss_kib, tempdir, wait_ready};
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

pub async fn soak(cfg: &Config, minutes: f64, clients: usize) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let dir = tempdir("soak")?;
    let port = free_port()?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&dir)
        .env("LINLI_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(url) = &cfg.database_url {
        cmd.arg("--database-url").arg(url);
    }
    let mut child = cmd.spawn()?;
    wait_ready(port, &mut child, Duration::from_secs(300)).await?;
    let pid = child.id().unwrap_or(0);
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let (status, headers, body) = request(
        &http,
        "POST",
        &format!("{base}/api/v1/auth/login"),
        None,
        Some(json!({"login": "committee", "password": "linli-demo"}).to_string()),
    )
    .await?;
    if status != 200 {
        bail!("login: {status}");
    }
    let cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .to_string();
    let csrf = serde_json::from_slice::<Value>(&body)?["csrf_token"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let (_, _, hh) = request(
        &http,
        "GET",
        &format!("{base}/api/v1/households?limit=50"),
        Some(&cookie),
        None,
    )
    .await?;
    let households: Vec<String> = serde_json::from_slice::<Value>(&hh)?["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let (_, _, pp) = request(
        &http,
        "GET",
        &format!("{base}/api/v1/persons?limit=50"),
        Some(&cookie),
        None,
    )
    .await?;
    let persons: Vec<String> = serde_json::from_slice::<Value>(&pp)?["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();

    let before = probe(&base, &cookie, 10).await?;
    let rss_start = rss_kib(pid).unwrap_or(0);

    // The mix, by request number: searches, household JSON, household HTML page, search page,
    // audited reveal (a write whose purpose is recorded to be checked afterwards).
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base, cookie, csrf) = (http.clone(), base.clone(), cookie.clone(), csrf.clone());
        let (households, persons) = (households.clone(), persons.clone());
        let (stop, done, errors) = (stop.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked: Vec<String> = Vec::new();
            let mut lat = Vec::new();
            let mut i: usize = c;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                i += clients;
                let t = Instant::now();
                let hh = &households[i % households.len()];
                let r = match i % 10 {
                    0..=3 => {
                        request(
                            &http,
                            "GET",
                            &format!(
                                "{base}/api/v1/persons?name={}&limit=20",
                                ["王", "李", "张", "刘", "陈"][i % 5]
                            ),
                            Some(&cookie),
                            None,
                        )
                        .await
                    }
                    4 | 5 => {
                        request(
                            &http,
                            "GET",
                            &format!("{base}/api/v1/households/{hh}"),
                            Some(&cookie),
                            None,
                        )
                        .await
                    }
                    6 => {
                        request(
                            &http,
                            "GET",
                            &format!("{base}/registry/households/{hh}"),
                            Some(&cookie),
                            None,
                        )
                        .await
                    }
                    7 => {
                        request(
                            &http,
                            "GET",
                            &format!("{base}/registry/persons?name=赵"),
                            Some(&cookie),
                            None,
                        )
                        .await
                    }
                    _ => {
                        let purpose = format!("soak-{c}-{i}");
                        let pid = &persons[i % persons.len()];
                        let req = hyper::Request::builder()
                            .method("POST")
                            .uri(format!("{base}/api/v1/persons/{pid}/reveal"))
                            .header("cookie", &cookie)
                            .header("x-csrf-token", &csrf)
                            .header("content-type", "application/json")
                            .body(http_body_util::Full::new(hyper::body::Bytes::from(
                                json!({"purpose": purpose, "fields": ["phone"]}).to_string(),
                            )))
                            .expect("request");
                        match http.request(req).await {
                            Ok(resp) => {
                                let s = resp.status().as_u16();
                                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                                if s == 200 {
                                    acked.push(purpose);
                                }
                                Ok((s, hyper::HeaderMap::new(), hyper::body::Bytes::new()))
                            }
                            Err(e) => Err(e.into()),
                        }
                    }
                };
                match r {
                    Ok((200, _, _)) => {
                        done.fetch_add(1, Ordering::Relaxed);
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (acked, lat)
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
    let mut acked = Vec::new();
    let mut lat = Vec::new();
    for t in tasks {
        let (a, l) = t.await?;
        acked.extend(a);
        lat.extend(l);
    }
    let load_secs = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let after = probe(&base, &cookie, 10).await?;
    let rss_end = rss_kib(pid).unwrap_or(0);

    // Every acknowledged write is in the database (opened next to the running server).
    let mut c = cfg.clone();
    c.data_dir = dir.clone();
    let store = crate::open_store(&c).await?;
    let mut missing = 0u64;
    for chunk in acked.chunks(200) {
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
    store.db.read.close().await;
    store.db.write.close().await;
    child.start_kill().ok();
    let _ = child.wait().await;
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
    let recovery = after["p99_ms"].as_f64().unwrap_or(0.0)
        / before["p99_ms"].as_f64().unwrap_or(1.0).max(0.001);
    println!(
        "{}",
        json!({
            "bench": "soak",
            "minutes": minutes,
            "clients": clients,
            "requests_ok": done.load(Ordering::Relaxed),
            "requests_failed": errors.load(Ordering::Relaxed),
            "per_second": (done.load(Ordering::Relaxed) as f64 / load_secs).round(),
            "load_p50_ms": percentile(&lat, 0.50),
            "load_p99_ms": percentile(&lat, 0.99),
            "probe_before": before,
            "probe_after": after,
            "recovery_ratio_p99_after_vs_before": (recovery * 100.0).round() / 100.0,
            "rss_mib": {"start": mib(rss_start), "max_first_minute": mib(max(&first_min)), "max_last_minute": mib(max(&last_min)), "end": mib(rss_end),
                        "samples": samples.iter().map(|s| json!([s.0.round(), mib(s.1)])).collect::<Vec<_>>()},
            "acknowledged_writes": acked.len(),
            "lost": missing,
        })
    );
    if missing > 0 {
        bail!("{missing} acknowledged writes are missing");
    }
    Ok(())
}
