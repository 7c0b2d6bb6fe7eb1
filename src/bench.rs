//! `linli bench …`: the project's own benchmarks. Each prints one JSON object per line with the
//! measured figures and a baseline measured in the same run on the same machine, and the ratio.
//! Loads go to 127.0.0.1 only and are bounded in count and time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use linli_core::auth::{Action, Grant};
use linli_store::Store;
use linli_store::audit::Actor;
use linli_store::db::{Val, insert_many};
use linli_store::registry::persons::PersonQuery;

use crate::config::Config;

#[derive(Subcommand)]
pub enum BenchWhat {
    /// Person search over HTTP with concurrent clients on the demo data (p50/p95/p99), against
    /// the same searches called on the store directly.
    Search {
        #[arg(long, default_value_t = 50)]
        clients: usize,
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        #[arg(long, default_value_t = 60)]
        max_seconds: u64,
    },
    /// `serve --demo` from start to ready (first start seeds, second reuses the data) and idle RSS.
    Startup {
        #[arg(long, default_value_t = 5)]
        idle_seconds: u64,
    },
    /// Kill the server (SIGKILL) at random moments under writes, restart, check that every
    /// acknowledged write is present, the audit chain verifies and the database is intact.
    Crash {
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Kill between these many milliseconds after the server is ready.
        #[arg(long, default_value_t = 100)]
        min_ms: u64,
        #[arg(long, default_value_t = 1500)]
        max_ms: u64,
        /// Data directory to run in (default: a fresh temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Mixed API, HTML page and IoT (HTTP ingest and MQTT QoS 1) load for N minutes: memory
    /// sampled, latency during and after the load, acknowledged writes checked.
    Soak {
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Devices publishing QoS 1 telemetry to the embedded broker.
        #[arg(long, default_value_t = 4)]
        iot_devices: usize,
        /// MQTT messages a second offered in all (paced).
        #[arg(long, default_value_t = 1000.0)]
        iot_rate: f64,
    },
    /// Import N households from a generated CSV, against raw inserts of the same rows.
    Import {
        #[arg(long, default_value_t = 100_000)]
        households: usize,
    },
    /// Report creation and reads over HTTP (SQLite, synchronous=FULL), against raw commits of
    /// the same rows (see `bench_reports.rs`).
    Reports {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10_000)]
        creates: usize,
        #[arg(long, default_value_t = 50_000)]
        reads: usize,
        #[arg(long, default_value_t = 30)]
        max_seconds: u64,
    },
    /// MQTT ingest end to end (publish → rules → durable storage → PUBACK) against the
    /// broker-only rate, publish → alarm on SSE under load, and an optional 10× overload.
    Iot {
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value_t = 0)]
        overload_minutes: u64,
    },
}

pub async fn run(cfg: &Config, what: BenchWhat) -> anyhow::Result<()> {
    match what {
        BenchWhat::Search {
            clients,
            requests,
            max_seconds,
        } => search(cfg, clients, requests, Duration::from_secs(max_seconds)).await,
        BenchWhat::Startup { idle_seconds } => startup(idle_seconds).await,
        BenchWhat::Import { households } => import(households).await,
        BenchWhat::Soak {
            minutes,
            clients,
            iot_devices,
            iot_rate,
        } => crate::bench_soak::soak(cfg, minutes, clients, iot_devices, iot_rate).await,
        BenchWhat::Crash {
            rounds,
            clients,
            min_ms,
            max_ms,
            dir,
        } => crate::bench_crash::crash(cfg, dir.as_deref(), rounds, clients, min_ms, max_ms).await,
        BenchWhat::Reports {
            clients,
            creates,
            reads,
            max_seconds,
        } => {
            crate::bench_reports::run(
                cfg,
                clients,
                creates,
                reads,
                Duration::from_secs(max_seconds),
            )
            .await
        }
        BenchWhat::Iot {
            seconds,
            connections,
            overload_minutes,
        } => crate::bench_iot::run(cfg, seconds, connections, overload_minutes).await,
    }
}

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub(crate) fn client() -> HttpClient {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(c)
}

pub(crate) async fn request(
    c: &HttpClient,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    body: Option<String>,
) -> anyhow::Result<(u16, hyper::HeaderMap, Bytes)> {
    let mut b = hyper::Request::builder().method(method).uri(uri);
    if let Some(ck) = cookie {
        b = b.header("cookie", ck);
    }
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let resp = c.request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, headers, bytes))
}

/// A request with arbitrary headers (e.g. cookie and CSRF token for writes).
pub(crate) async fn request_with(
    c: &HttpClient,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> anyhow::Result<(u16, hyper::HeaderMap, Bytes)> {
    let mut b = hyper::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let resp = c.request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, headers, bytes))
}

pub(crate) type LoadFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>;

/// A lean HTTP/1.1 keep-alive client for the load loops. The load generator shares the two cores
/// with the server, so what it spends per request is taken from the server: this one writes a
/// prepared request and reads the response by its Content-Length, nothing more (no pool task,
/// no header map, no body stream). One connection per request in flight, reused.
#[derive(Clone)]
pub(crate) struct RawClient {
    addr: std::net::SocketAddr,
    idle: Arc<std::sync::Mutex<Vec<RawConn>>>,
}

struct RawConn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub(crate) fn new(addr: std::net::SocketAddr) -> RawClient {
        RawClient {
            addr,
            idle: Arc::default(),
        }
    }

    /// The bytes of `GET uri` (an absolute `http://host/…` URI) with the cookie.
    fn prepare(&self, uri: &str, cookie: &str) -> Vec<u8> {
        let path = uri
            .strip_prefix("http://")
            .and_then(|r| r.find('/').map(|i| &r[i..]))
            .unwrap_or(uri);
        format!(
            "GET {path} HTTP/1.1\r\nhost: {}\r\ncookie: {cookie}\r\n\r\n",
            self.addr
        )
        .into_bytes()
    }

    /// Send a prepared request; the response status.
    async fn send(&self, req: &[u8]) -> anyhow::Result<u16> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let pooled = self.idle.lock().expect("idle connections").pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let stream = tokio::net::TcpStream::connect(self.addr).await?;
                stream.set_nodelay(true)?;
                RawConn {
                    stream,
                    buf: Vec::with_capacity(16 * 1024),
                }
            }
        };
        conn.stream.write_all(req).await?;
        conn.buf.clear();
        let (status, total) = loop {
            if let Some(end) = conn.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&conn.buf[..end])?;
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .context("bad status line")?;
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .context("response without content-length")?;
                break (status, end + 4 + len);
            }
            let mut chunk = [0u8; 8192];
            let n = conn.stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed");
            }
            conn.buf.extend_from_slice(&chunk[..n]);
        };
        while conn.buf.len() < total {
            let mut chunk = [0u8; 16384];
            let n = conn.stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed");
            }
            conn.buf.extend_from_slice(&chunk[..n]);
        }
        self.idle.lock().expect("idle connections").push(conn);
        Ok(status)
    }
}

/// A load step: GET `uris[i * stride]` with the session cookie and insist on 200.
pub(crate) fn get_all_ok(
    raw: RawClient,
    cookie: Arc<String>,
    uris: Arc<Vec<String>>,
    stride: usize,
) -> impl Fn(usize) -> LoadFuture + Clone + Send + 'static {
    let reqs: Arc<Vec<Vec<u8>>> = Arc::new(uris.iter().map(|u| raw.prepare(u, &cookie)).collect());
    move |i| {
        let (raw, reqs) = (raw.clone(), reqs.clone());
        Box::pin(async move {
            let status = raw.send(&reqs[i * stride % reqs.len()]).await?;
            if status != 200 {
                bail!("status {status}");
            }
            Ok(())
        })
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// CPU time used by this process so far (all threads: server, database, load generator), in ms.
/// On a shared machine the wall-clock rate depends on what else runs; CPU per request does not.
fn process_cpu_ms() -> f64 {
    cpu_ms_of("/proc/self/stat")
}

/// User + system CPU time in a `/proc/…/stat` file, in milliseconds.
fn cpu_ms_of(stat_file: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(stat_file) else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime, in clock ticks (100 per second on Linux).
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) * 10.0
}

fn summary(mut lat_ms: Vec<f64>, wall: Duration, cpu_ms: f64) -> serde_json::Value {
    lat_ms.sort_by(|a, b| a.total_cmp(b));
    json!({
        "requests": lat_ms.len(),
        "cpu_ms_per_request": (cpu_ms / lat_ms.len().max(1) as f64 * 1000.0).round() / 1000.0,
        // How much CPU this process got: below 2 on two cores means other work took the rest.
        "cores_used": (cpu_ms / wall.as_secs_f64().max(1e-9) / 10.0).round() / 100.0,
        "per_second": (lat_ms.len() as f64 / wall.as_secs_f64()).round(),
        "p50_ms": (percentile(&lat_ms, 0.50) * 1000.0).round() / 1000.0,
        "p95_ms": (percentile(&lat_ms, 0.95) * 1000.0).round() / 1000.0,
        "p99_ms": (percentile(&lat_ms, 0.99) * 1000.0).round() / 1000.0,
    })
}

/// The mix of searches a community worker makes.
fn search_mix(store_places: &[String]) -> Vec<PersonQuery> {
    let data = linli_core::demo::generate(linli_store::demo::DEMO_SEED);
    let persons: Vec<&linli_core::demo::DemoPerson> = data
        .households
        .iter()
        .flat_map(|h| h.persons.iter())
        .collect();
    let mut mix = Vec::new();
    for (i, p) in persons.iter().step_by(97).take(60).enumerate() {
        let q = match i % 5 {
            0 => PersonQuery {
                name: Some(p.name.chars().take(2).collect()),
                ..Default::default()
            },
            1 => PersonQuery {
                id_number: Some(p.id_number.clone()),
                ..Default::default()
            },
            2 => PersonQuery {
                phone: p.phone.clone(),
                name: p.phone.is_none().then(|| p.name.clone()),
                ..Default::default()
            },
            3 => PersonQuery {
                label: Some("elderly_alone".into()),
                limit: Some(20),
                ..Default::default()
            },
            _ => PersonQuery {
                place_id: store_places.get(i % store_places.len().max(1)).cloned(),
                limit: Some(20),
                ..Default::default()
            },
        };
        mix.push(q);
    }
    mix
}

fn to_query_string(q: &PersonQuery) -> String {
    let mut parts = Vec::new();
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    if let Some(v) = &q.name {
        parts.push(format!("name={}", enc(v)));
    }
    if let Some(v) = &q.id_number {
        parts.push(format!("id_number={}", enc(v)));
    }
    if let Some(v) = &q.phone {
        parts.push(format!("phone={}", enc(v)));
    }
    if let Some(v) = &q.label {
        parts.push(format!("label={}", enc(v)));
    }
    if let Some(v) = &q.place_id {
        parts.push(format!("place_id={}", enc(v)));
    }
    if let Some(v) = q.limit {
        parts.push(format!("limit={v}"));
    }
    parts.join("&")
}

async fn demo_store(cfg: &Config) -> anyhow::Result<Store> {
    let store = crate::open_store(cfg).await?;
    linli_server::modules::seed_demo(&store, &cfg.demo_password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(store)
}

async fn search(
    cfg: &Config,
    clients: usize,
    requests: usize,
    max: Duration,
) -> anyhow::Result<()> {
    let store = demo_store(cfg).await?;
    let buildings: Vec<String> = store
        .places(&Grant::system(Action::PlaceRead), None, Some("building"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into_iter()
        .map(|p| p.id)
        .collect();
    let mix = Arc::new(search_mix(&buildings));
    let households: Vec<String> = store
        .households(&Grant::system(Action::HouseholdRead), &Default::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .items
        .into_iter()
        .map(|h| h.id)
        .collect();

    // Baseline: the same searches on the store directly (no HTTP, no auth), same concurrency.
    let grant = Arc::new(Grant::system(Action::PersonRead));
    let base = run_load(clients, requests, max, {
        let store = store.clone();
        let mix = mix.clone();
        move |i| {
            let store = store.clone();
            let mix = mix.clone();
            let grant = grant.clone();
            async move {
                store
                    .search_persons(&grant, None, &mix[i % mix.len()])
                    .await
                    .map(|_| ())
                    .map_err(|e| anyhow::anyhow!("{e}"))
            }
        }
    })
    .await?;

    // The real server on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = linli_server::AppState::new(
        store.clone(),
        linli_server::ServerConfig {
            secure_cookies: false,
            data_dir: cfg.data_dir.clone(),
            trusted_proxies: Vec::new(),
        },
    );
    tokio::spawn(linli_server::serve(listener, state));
    let http = client();
    let body = json!({ "login": "admin", "password": cfg.demo_password }).to_string();
    let (status, headers, _) = request(
        &http,
        "POST",
        &format!("http://{addr}/api/v1/auth/login"),
        None,
        Some(body),
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
    let cookie = Arc::new(cookie);
    let raw = RawClient::new(addr);
    let uris: Arc<Vec<String>> = Arc::new(
        mix.iter()
            .map(|q| format!("http://{addr}/api/v1/persons?{}", to_query_string(q)))
            .collect(),
    );
    let http_res = run_load(
        clients,
        requests,
        max,
        get_all_ok(raw.clone(), cookie.clone(), uris.clone(), 1),
    )
    .await?;
    let paced = run_paced(
        clients,
        40,
        Duration::from_millis(50),
        get_all_ok(raw.clone(), cookie.clone(), uris.clone(), 1),
    )
    .await?;
    // One client, each kind of search alone: the service time of each.
    let kinds = [
        "name prefix",
        "exact ID",
        "exact phone",
        "label",
        "building",
    ];
    let mut per_kind = serde_json::Map::new();
    for (k, kind) in kinds.iter().enumerate() {
        let t = Instant::now();
        let mut n = 0;
        for (_, uri) in uris.iter().enumerate().filter(|(i, _)| i % 5 == k) {
            let req = raw.prepare(uri, &cookie);
            for _ in 0..10 {
                if raw.send(&req).await? != 200 {
                    bail!("{uri}: not 200");
                }
                n += 1;
            }
        }
        per_kind.insert(
            kind.to_string(),
            json!((t.elapsed().as_secs_f64() * 1000.0 / n as f64 * 1000.0).round() / 1000.0),
        );
    }
    let store_cpu = store_cpu_by_kind(store.clone(), mix.clone(), &kinds);
    let hh_uris: Arc<Vec<String>> = Arc::new(
        households
            .iter()
            .map(|h| format!("http://{addr}/api/v1/households/{h}"))
            .collect(),
    );
    let hh_res = run_load(
        clients,
        requests / 2,
        max,
        get_all_ok(raw.clone(), cookie.clone(), hh_uris.clone(), 7),
    )
    .await?;
    // The HTML pages staff use most, at a desk-like pace (50 clients × 10 pages/s).
    let page_uris: Arc<Vec<String>> = Arc::new(
        households
            .iter()
            .take(60)
            .enumerate()
            .map(|(i, h)| {
                if i % 2 == 0 {
                    format!("http://{addr}/registry/households/{h}")
                } else {
                    format!(
                        "http://{addr}/registry/persons?{}",
                        to_query_string(&mix[i % mix.len()])
                    )
                }
            })
            .collect(),
    );
    let pages = run_paced(
        clients,
        20,
        Duration::from_millis(100),
        get_all_ok(raw.clone(), cookie.clone(), page_uris.clone(), 1),
    )
    .await?;
    let ratio = http_res["per_second"].as_f64().unwrap_or(0.0)
        / base["per_second"].as_f64().unwrap_or(1.0).max(0.001);
    println!(
        "{}",
        json!({
            "bench": "search", "backend": format!("{:?}", store.backend()), "clients": clients,
            "http_person_search_saturated": http_res, "http_person_search_paced_20rps_per_client": paced,
            "single_client_mean_ms_by_kind": per_kind, "store_cpu_ms_per_search_by_kind": store_cpu, "html_household_and_search_pages_paced_10rps_per_client": pages, "http_household_page_saturated": hh_res,
            "baseline_store_search_saturated": base, "throughput_ratio_http_vs_store": (ratio * 100.0).round() / 100.0,
            "target": "person search p99 < 10 ms at 50 clients",
        })
    );
    Ok(())
}

/// CPU time of each kind of search called on the store, measured on one thread of its own (a
/// current-thread runtime), so other load on the machine does not count: the cost of the code.
fn store_cpu_by_kind(
    store: Store,
    mix: Arc<Vec<PersonQuery>>,
    kinds: &[&str],
) -> serde_json::Value {
    let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let grant = Grant::system(Action::PersonRead);
            let mut out = serde_json::Map::new();
            for (k, kind) in kinds.iter().enumerate() {
                let queries: Vec<&PersonQuery> = mix
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % kinds.len() == k)
                    .map(|(_, q)| q)
                    .collect();
                let rounds = 1_500;
                let cpu = thread_cpu_ms();
                for i in 0..rounds {
                    let _ = store
                        .search_persons(&grant, None, queries[i % queries.len()])
                        .await;
                }
                let ms = (thread_cpu_ms() - cpu) / rounds as f64;
                out.insert(kind.clone(), json!((ms * 1000.0).round() / 1000.0));
            }
            serde_json::Value::Object(out)
        })
    })
    .join()
    .unwrap_or(serde_json::Value::Null)
}

/// CPU time of the calling thread (user + system), in milliseconds (10 ms resolution).
fn thread_cpu_ms() -> f64 {
    cpu_ms_of("/proc/thread-self/stat")
}

/// Run `requests` calls of `f(i)` from `clients` concurrent tasks, bounded by `max` wall time.
pub(crate) async fn run_load<F, Fut>(
    clients: usize,
    requests: usize,
    max: Duration,
    f: F,
) -> anyhow::Result<serde_json::Value>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu = process_cpu_ms();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let next = next.clone();
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests || start.elapsed() > max {
                    break;
                }
                let t = Instant::now();
                f(i).await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(summary(all, start.elapsed(), process_cpu_ms() - cpu))
}

/// Like `run_load`, but each client waits `interval` between its requests (an open-ish load of
/// `clients / interval` requests per second), which is how 50 staff at their desks search.
async fn run_paced<F, Fut>(
    clients: usize,
    per_client: usize,
    interval: Duration,
    f: F,
) -> anyhow::Result<serde_json::Value>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let cpu = process_cpu_ms();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            // Spread the clients' start times over one interval.
            tokio::time::sleep(interval.mul_f64(c as f64 / clients as f64)).await;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut lat = Vec::new();
            for n in 0..per_client {
                tick.tick().await;
                let t = Instant::now();
                f(c * per_client + n).await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(summary(all, start.elapsed(), process_cpu_ms() - cpu))
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) async fn wait_ready(
    port: u16,
    child: &mut tokio::process::Child,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let http = client();
    let start = Instant::now();
    loop {
        if let Ok((200, _, _)) = request(
            &http,
            "GET",
            &format!("http://127.0.0.1:{port}/readyz"),
            None,
            None,
        )
        .await
        {
            return Ok(start.elapsed());
        }
        if let Some(status) = child.try_wait()? {
            bail!("server exited early: {status}");
        }
        if start.elapsed() > limit {
            bail!("server not ready after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

async fn startup(idle_seconds: u64) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let dir = tempdir("startup")?;
    // Baseline: the same binary starting and exiting (process start floor on this machine).
    let t = Instant::now();
    let st = tokio::process::Command::new(&exe)
        .arg("--version")
        .output()
        .await?;
    if !st.status.success() {
        bail!("--version failed");
    }
    let baseline = t.elapsed();
    let mut results = Vec::new();
    for round in ["first start (seeds the demo)", "existing data dir"] {
        let port = free_port()?;
        let mut child = tokio::process::Command::new(&exe)
            .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&dir)
            .env("LINLI_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let ready = wait_ready(port, &mut child, Duration::from_secs(300)).await?;
        let mut rss = None;
        if round == "existing data dir" {
            tokio::time::sleep(Duration::from_secs(idle_seconds)).await;
            rss = child.id().and_then(rss_kib);
        }
        child.kill().await.ok();
        results.push(json!({ "round": round, "ready_ms": ready.as_millis(), "idle_rss_mib": rss.map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0) }));
    }
    let existing = results[1]["ready_ms"].as_f64().unwrap_or(0.0);
    println!(
        "{}",
        json!({
            "bench": "startup", "runs": results,
            "baseline_process_start_ms": baseline.as_secs_f64() * 1000.0,
            "ratio_ready_vs_process_start": (existing / (baseline.as_secs_f64() * 1000.0).max(0.001) * 10.0).round() / 10.0,
            "target": "idle RSS with demo < 80 MB",
        })
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

pub(crate) fn tempdir(what: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("linli-bench-{what}-{}", linli_core::new_id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub(crate) async fn bench_store(dir: &Path) -> anyhow::Result<Store> {
    let cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    crate::open_store(&cfg).await
}

/// A community with enough rooms, and a CSV of `n` households living in them.
async fn import_fixture(store: &Store, n: usize) -> anyhow::Result<Vec<u8>> {
    let admin = "bench-admin";
    store
        .bootstrap_admin(admin, "bench-password", "基准市", "420100000000")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let root = store
        .places(&Grant::system(Action::PlaceRead), None, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .remove(0);
    let units_per_building = 4;
    let rooms_per_unit = 250;
    let buildings = n.div_ceil(units_per_building * rooms_per_unit);
    let mut rows = Vec::new();
    let path_of = |parent: &str, id: &str| format!("{parent}{id}/");
    let place = |parent: (&str, &str), kind: &str, name: &str, rows: &mut Vec<Vec<Val>>| {
        let id = linli_core::new_id();
        let path = path_of(parent.1, &id);
        rows.push(vec![
            Val::from(id.clone()),
            Val::from(parent.0),
            Val::from(kind),
            Val::from(name),
            Val::NullText,
            Val::from(path.clone()),
            Val::NullInt,
            Val::NullText,
            Val::NullText,
            Val::Int(rows.len() as i64),
            Val::Int(linli_core::now_ms()),
        ]);
        (id, path)
    };
    let district = place((&root.id, &root.path), "district", "基准区", &mut rows);
    let street = place((&district.0, &district.1), "street", "基准街道", &mut rows);
    let community = place((&street.0, &street.1), "community", "基准社区", &mut rows);
    let grid = place((&community.0, &community.1), "grid", "第一网格", &mut rows);
    let mut csv = String::from(
        "户号,社区,楼栋,单元,房号,居住类型,姓名,与户主关系,身份证号,手机号,标签,入住日期\n",
    );
    let mut made = 0usize;
    let mut seq: u64 = 0;
    let names = [
        "王建国",
        "李秀英",
        "张伟",
        "刘洋",
        "陈静",
        "杨帆",
        "黄磊",
        "赵敏",
    ];
    'outer: for b in 1..=buildings {
        let building = place((&grid.0, &grid.1), "building", &format!("{b}栋"), &mut rows);
        for u in 1..=units_per_building {
            let unit = place(
                (&building.0, &building.1),
                "unit",
                &format!("{u}单元"),
                &mut rows,
            );
            for r in 1..=rooms_per_unit {
                if made == n {
                    break 'outer;
                }
                let room = format!("{}{:02}", r / 10 + 1, r % 10 + 1);
                place((&unit.0, &unit.1), "room", &room, &mut rows);
                let members = 1 + made % 4;
                for m in 0..members {
                    seq += 1;
                    let birth = chrono::NaiveDate::from_ymd_opt(
                        1940 + (seq % 60) as i32,
                        1 + (seq % 12) as u32,
                        1 + (seq % 28) as u32,
                    )
                    .unwrap();
                    let region = format!("{:06}", 110000 + (seq / 1000) % 800000);
                    let id = linli_core::idcard::compose(&region, birth, (seq % 1000) as u16);
                    let relation = if m == 0 {
                        "户主"
                    } else {
                        ["配偶", "子女", "父母"][m % 3]
                    };
                    let phone = if m < 2 {
                        format!("13{:09}", seq % 1_000_000_000)
                    } else {
                        String::new()
                    };
                    csv.push_str(&format!(
                        "H{made},基准社区,{b}栋,{u}单元,{room},业主,{},{relation},{id},{phone},,2015-06-01\n",
                        names[(seq % names.len() as u64) as usize]
                    ));
                }
                made += 1;
            }
        }
    }
    let mut tx = store.db.begin_write().await?;
    insert_many(
        &mut tx,
        "places",
        &linli_store::registry::places::PLACE_COLUMNS,
        rows,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    tx.commit().await?;
    Ok(csv.into_bytes())
}

async fn run_import(
    store: &Store,
    csv: &[u8],
) -> anyhow::Result<linli_store::registry::import::ImportReport> {
    let grant = Grant::system(Action::RegistryImport);
    let sens = Grant::system(Action::SensitiveLabelRead);
    store
        .import_households(
            &grant,
            Some(&sens),
            &Actor::system("bench"),
            csv,
            false,
            linli_core::i18n::Lang::ZhCn,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

async fn import(n: usize) -> anyhow::Result<()> {
    let dir = tempdir("import")?;
    let store = bench_store(&dir).await?;
    let csv = import_fixture(&store, n).await?;
    let persons = csv.iter().filter(|b| **b == b'\n').count() - 1;
    let t = Instant::now();
    let report = run_import(&store, &csv).await?;
    let import_time = t.elapsed();
    let t = Instant::now();
    let again = run_import(&store, &csv).await?;
    let reimport_time = t.elapsed();

    // Baseline: the same number of rows committed raw (no parsing, validation or encryption)
    // into a twin table on the same disk, same durability, one transaction.
    let mut tx = store.db.begin_write().await?;
    sqlx::query("CREATE TABLE bench_raw (id TEXT PRIMARY KEY, a TEXT, b TEXT, c TEXT, d BIGINT)")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let raw_rows: Vec<Vec<Val>> = (0..(persons * 2 + n))
        .map(|i| {
            vec![
                Val::from(linli_core::new_id()),
                Val::from(format!("name-{i}")),
                Val::from("x".repeat(60)),
                Val::from("y".repeat(32)),
                Val::Int(i as i64),
            ]
        })
        .collect();
    let t = Instant::now();
    let mut tx = store.db.begin_write().await?;
    insert_many(&mut tx, "bench_raw", &["id", "a", "b", "c", "d"], raw_rows)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tx.commit().await?;
    let raw_time = t.elapsed();
    println!(
        "{}",
        json!({
            "bench": "import", "households": n, "persons": persons,
            "created_households": report.households_created, "created_persons": report.persons_created, "rejected_rows": report.rows_rejected,
            "import_seconds": (import_time.as_secs_f64() * 100.0).round() / 100.0,
            "reimport_seconds": (reimport_time.as_secs_f64() * 100.0).round() / 100.0,
            "reimport_created": again.households_created + again.persons_created,
            "baseline_raw_insert_seconds": (raw_time.as_secs_f64() * 100.0).round() / 100.0,
            "baseline_rows": persons * 2 + n,
            "ratio_import_vs_raw": (import_time.as_secs_f64() / raw_time.as_secs_f64().max(0.001) * 10.0).round() / 10.0,
            "target": "100,000 households < 30 s",
        })
    );
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// A `linli serve --demo` child process started by a benchmark, with its HTTP port and the
/// address its embedded MQTT broker announced on stdout.
pub(crate) struct Server {
    pub child: tokio::process::Child,
    pub port: u16,
    pub mqtt: std::net::SocketAddr,
}

/// Start the real server on free loopback ports (HTTP and the embedded MQTT broker — never the
/// default 1884 or 1883, which another broker may hold) and wait until it is ready.
pub(crate) async fn spawn_server(
    exe: &Path,
    dir: &Path,
    database_url: Option<&str>,
) -> anyhow::Result<Server> {
    use tokio::io::AsyncBufReadExt;
    let port = free_port()?;
    let mqtt_port = free_port()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--mqtt-listen", &format!("127.0.0.1:{mqtt_port}")])
        .arg("--data-dir")
        .arg(dir)
        .env("LINLI_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(url) = database_url {
        cmd.arg("--database-url").arg(url);
    }
    let mut child = cmd.spawn()?;
    // The broker may move to a neighbouring port when ours was taken in the meantime: take the
    // address the server prints, and keep draining its output so it never blocks on a pipe.
    let stdout = child.stdout.take().context("server stdout")?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.split("embedded MQTT broker at mqtt://").nth(1)
                && let (Some(tx), Ok(a)) = (tx.take(), addr.trim().parse())
            {
                let _ = tx.send(a);
            }
        }
    });
    wait_ready(port, &mut child, Duration::from_secs(300)).await?;
    let mqtt = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .context("the server did not announce its MQTT broker")?
        .context("the server did not announce its MQTT broker")?;
    Ok(Server { child, port, mqtt })
}

/// Sign in over the API: (session cookie, CSRF token).
pub(crate) async fn login(
    http: &HttpClient,
    base: &str,
    login: &str,
) -> anyhow::Result<(String, String)> {
    let (status, headers, body) = request(
        http,
        "POST",
        &format!("{base}/api/v1/auth/login"),
        None,
        Some(json!({"login": login, "password": "linli-demo"}).to_string()),
    )
    .await?;
    if status != 200 {
        bail!("login {login}: {status}");
    }
    let cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?
        .to_string();
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok((cookie, v["csrf_token"].as_str().unwrap_or("").to_string()))
}
