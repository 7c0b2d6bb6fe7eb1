//! `linli bench reports`: report intake and reads against a real server on 127.0.0.1 with
//! SQLite (synchronous=FULL), or PostgreSQL with `--database-url`, and the demo district, with concurrent clients; and, in the same
//! run, the raw rate at which the same rows (report + its event + an audit row) commit to the
//! same database with the same durability, one transaction per report, in a minimal loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use linli_core::auth::{Action, Grant};

use crate::bench::{LoadFuture, bench_store, client, request, run_load, tempdir};

pub async fn run(
    cfg: &crate::config::Config,
    clients: usize,
    creates: usize,
    reads: usize,
    max: Duration,
) -> anyhow::Result<()> {
    let dir = tempdir("reports")?;
    // `--database-url postgres://…` measures PostgreSQL (an empty database of its own);
    // otherwise SQLite in a fresh directory.
    let store = match cfg.database_url.as_deref() {
        Some(url) => {
            let pg = crate::config::Config {
                data_dir: dir.clone(),
                database_url: Some(url.to_string()),
                ..crate::config::Config::default()
            };
            crate::open_store(&pg).await?
        }
        None => bench_store(&dir).await?,
    };
    let password = "bench-password";
    linli_server::modules::seed_demo(&store, password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rooms: Vec<String> = store
        .places(&Grant::system(Action::PlaceRead), None, Some("room"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into_iter()
        .filter(|p| p.room_use.as_deref() == Some("residential"))
        .map(|p| p.id)
        .collect();
    let c1 = store
        .places(&Grant::system(Action::PlaceRead), None, Some("community"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into_iter()
        .find(|p| p.name == "幸福里社区")
        .context("demo community")?;
    let rooms: Arc<Vec<String>> = Arc::new(
        store
            .places(&Grant::system(Action::PlaceRead), None, Some("room"))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .into_iter()
            .filter(|p| p.path.starts_with(&c1.path) && rooms.contains(&p.id))
            .map(|p| p.id)
            .collect(),
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = linli_server::AppState::new(
        store.clone(),
        linli_server::ServerConfig {
            secure_cookies: false,
            data_dir: dir.clone(),
            trusted_proxies: Vec::new(),
        },
    );
    tokio::spawn(linli_server::serve(listener, state));
    let http = client();
    let (status, headers, body) = request(
        &http,
        "POST",
        &format!("http://{addr}/api/v1/auth/login"),
        None,
        Some(json!({ "login": "committee", "password": password }).to_string()),
    )
    .await?;
    if status != 200 {
        bail!("login failed with {status}");
    }
    let cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no cookie")?
        .to_string();
    let csrf = serde_json::from_slice::<serde_json::Value>(&body)?["csrf_token"]
        .as_str()
        .context("no csrf token")?
        .to_string();
    let cookie = Arc::new(cookie);
    let csrf = Arc::new(csrf);

    // Creation: staff intake by phone (代客) in the community, one report per request.
    let created = run_load(clients, creates, max, {
        let (http, cookie, csrf, rooms) =
            (http.clone(), cookie.clone(), csrf.clone(), rooms.clone());
        move |i| -> LoadFuture {
            let (http, cookie, csrf, rooms) =
                (http.clone(), cookie.clone(), csrf.clone(), rooms.clone());
            Box::pin(async move {
                let body = json!({
                    "category": if i % 2 == 0 { "environment" } else { "repair_common" },
                    "description": format!("基准测试报事 {i}：楼道垃圾堆放"),
                    "place_id": rooms[i % rooms.len()],
                    "channel": "phone",
                })
                .to_string();
                let (status, _, _) = crate::bench::request_with(
                    &http,
                    "POST",
                    &format!("http://{addr}/api/v1/reports"),
                    &[("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())],
                    Some(body),
                )
                .await?;
                if status != 201 {
                    bail!("create: status {status}");
                }
                Ok(())
            })
        }
    })
    .await?;
    let n_reports = {
        let r = sqlx::query("SELECT COUNT(*) FROM reports")
            .fetch_one(&store.db.read)
            .await?;
        sqlx::Row::get::<i64, _>(&r, 0)
    };

    // What PostgreSQL's autovacuum does within a minute of such a burst in a deployment (this
    // development machine runs it off): statistics of the tables that just grew; without, the
    // planner keeps the plans of an empty `reports` table. SQLite: nothing (db.rs).
    store
        .db
        .refresh_statistics(&["reports", "report_events"])
        .await?;

    // Reads: a filtered list page and one report with its events, alternating.
    let ids: Vec<String> = sqlx::query("SELECT id FROM reports ORDER BY id LIMIT 2000")
        .fetch_all(&store.db.read)
        .await?
        .iter()
        .map(|r| sqlx::Row::get::<String, _>(r, 0))
        .collect();
    let mut uris = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        uris.push(format!("http://{addr}/api/v1/reports/{id}"));
        let cat = if i % 2 == 0 {
            "environment"
        } else {
            "repair_common"
        };
        uris.push(format!(
            "http://{addr}/api/v1/reports?status=submitted&category={cat}&place_id={}&limit=20",
            c1.id
        ));
    }
    let uris = Arc::new(uris);
    // The same minimal HTTP/1.1 client as the search benchmark: the load generator shares the two
    // cores with the server, so it should take as little of them as it can.
    let raw = crate::bench::RawClient::new(addr);
    let read = run_load(
        clients,
        reads,
        max,
        crate::bench::get_all_ok(raw, Arc::new(cookie.to_string()), uris, 1),
    )
    .await?;

    // Baseline: the same rows (report, event, audit-sized row), one transaction each, same
    // database file and durability, sequentially in a minimal loop.
    {
        let mut tx = store.db.begin_write().await?;
        for ddl in [
            "DROP TABLE IF EXISTS bench_reports",
            "DROP TABLE IF EXISTS bench_events",
            "DROP TABLE IF EXISTS bench_audit",
            "CREATE TABLE bench_reports (id TEXT PRIMARY KEY, kind TEXT, category TEXT, title TEXT, description TEXT, place_id TEXT, path TEXT, community_path TEXT, channel TEXT, anonymous BIGINT, created_by TEXT, status TEXT, public_requested BIGINT, created_at BIGINT, updated_at BIGINT)",
            "CREATE TABLE bench_events (id TEXT PRIMARY KEY, report_id TEXT, action TEXT, to_status TEXT, actor_id TEXT, actor TEXT, at BIGINT, data TEXT)",
            "CREATE TABLE bench_audit (seq BIGINT PRIMARY KEY, at BIGINT, actor TEXT, action TEXT, entity_id TEXT, path TEXT, after_json TEXT, prev_hash TEXT, hash TEXT)",
        ] {
            sqlx::query(ddl).execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    let raw_n = created["requests"]
        .as_u64()
        .unwrap_or(1000)
        .clamp(500, 5000) as usize;
    let t = Instant::now();
    for i in 0..raw_n {
        let id = linli_core::new_id();
        let now = linli_core::now_ms();
        let mut tx = store.db.begin_write().await?;
        sqlx::query("INSERT INTO bench_reports VALUES ($1, 'public_affair', 'environment', $2, $3, $4, $5, $6, 'phone', 0, 'bench', 'submitted', 0, $7, $7)")
            .bind(id.clone())
            .bind(format!("基准测试报事 {i}"))
            .bind(format!("基准测试报事 {i}：楼道垃圾堆放"))
            .bind(rooms[i % rooms.len()].clone())
            .bind(c1.path.clone())
            .bind(c1.path.clone())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO bench_events VALUES ($1, $2, 'submit', 'submitted', 'bench', 'bench', $3, '{}')")
            .bind(linli_core::new_id())
            .bind(id.clone())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO bench_audit VALUES ($1, $2, 'bench', 'report.create', $3, $4, '{}', $5, $6)")
            .bind(i as i64)
            .bind(now)
            .bind(id)
            .bind(c1.path.clone())
            .bind("0".repeat(64))
            .bind("1".repeat(64))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    let raw_rate = raw_n as f64 / t.elapsed().as_secs_f64();
    let create_rate = created["per_second"].as_f64().unwrap_or(0.0);
    println!(
        "{}",
        json!({
            "bench": "reports", "backend": format!("{:?}", store.backend()),
            "sqlite_synchronous": if cfg.database_url.is_some() { "-" } else { "FULL" },
            "clients": clients, "reports_in_db": n_reports,
            "http_create": created, "http_read_list_and_get": read,
            "raw_commit_per_report": { "reports": raw_n, "per_second": raw_rate.round() },
            "ratio_create_vs_raw": ((create_rate / raw_rate.max(0.001)) * 100.0).round() / 100.0,
            "targets": "create >= 2000/s, reads >= 10000/s, p99 < 50 ms",
        })
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
