//! `linli bench crash`: kill the real server with SIGKILL at random moments while clients write,
//! restart, and check that every write the server acknowledged is there, the audit chain
//! verifies and the database passes its integrity check. CI runs a few rounds
//! (`tests/it/crash.rs`); `--rounds N` runs a long one.
//!
//! Writes driven by every client (each kind checked after every crash):
//! - audited reveals of personal data (the audit entry with the unique purpose must exist);
//! - household edits with optimistic concurrency (the note must be the last acknowledged value,
//!   or the one in flight when the server died — never an older one);
//! - report transitions on reports the client files itself (accept → dispatch → sign → reply →
//!   review_pass → visit): every acknowledged step has its event, and the status is the last
//!   acknowledged one or the one in flight;
//! - spreadsheet imports of two households (four persons): an acknowledged import is all there,
//!   and an import in flight at the kill is all there or not at all — never partly;
//! - QoS 1 telemetry from a device to the embedded MQTT broker: every message the broker
//!   acknowledged (PUBACK) is stored.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::Rng;
use serde_json::{Value, json};
use sqlx::Row;

use linli_store::iot::demo::demo_device_token;

use crate::bench::{HttpClient, client, login, spawn_server, tempdir};
use crate::bench_mqtt::{Qos1Device, stored_seqs};
use crate::config::Config;

/// The report steps a client walks through, with the status each one leads to.
const STEPS: [(&str, &str); 6] = [
    ("accept", "accepted"),
    ("dispatch", "dispatched"),
    ("sign", "in_progress"),
    ("reply", "replied"),
    ("review_pass", "awaiting_visit"),
    ("visit", "closed"),
];

/// A report filed by a client: how many of `STEPS` were acknowledged, and whether the next one
/// was in flight when the server died.
#[derive(Debug)]
struct ReportTrack {
    id: String,
    steps: usize,
    in_flight: bool,
}

/// An import: the ID numbers of its persons; `acked` = the server answered 200.
#[derive(Debug)]
struct ImportTrack {
    ids: Vec<String>,
    acked: bool,
}

/// What one client had acknowledged (and what was in flight) when the server died.
#[derive(Default, Debug)]
struct Acked {
    reveals: Vec<String>,
    /// household id → (last acknowledged note, note in flight)
    notes: Vec<(String, Option<String>, Option<String>)>,
    /// Household edits acknowledged.
    edits: usize,
    reports: Vec<ReportTrack>,
    imports: Vec<ImportTrack>,
    /// (device id, sequence number) of PUBACKed telemetry.
    telemetry: Vec<(String, u64)>,
    /// Answers other than success while the server was up (a bug, reported as a failure).
    unexpected: Vec<String>,
}

impl Acked {
    fn transitions(&self) -> usize {
        self.reports.iter().map(|r| r.steps).sum()
    }
}

/// What the clients work on, read from the running server once per round.
struct Fixtures {
    persons: Vec<String>,
    households: Vec<String>,
    /// The room to file reports at and import into, and its names (社区, 楼栋, 单元, 房号).
    room_id: String,
    room_names: Vec<String>,
    /// Demo devices (water leak and door sensors) to publish telemetry as.
    devices: Vec<String>,
}

/// One client's connection to the server.
#[derive(Clone)]
struct Client {
    http: HttpClient,
    base: String,
    cookie: String,
    csrf: String,
}

impl Client {
    async fn send(
        &self,
        method: &str,
        uri: &str,
        body: String,
        ct: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{uri}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .header("content-type", ct)
            .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))?;
        let resp = self.http.request(req).await?;
        let status = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await?
            .to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
    async fn json(&self, method: &str, uri: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.send(method, uri, body.to_string(), "application/json")
            .await
    }
}

pub async fn crash(
    cfg: &Config,
    dir: Option<&Path>,
    rounds: usize,
    clients: usize,
    min_ms: u64,
    max_ms: u64,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    // A fresh data directory unless one is given (on PostgreSQL, the database given with
    // --database-url should be a new one; its master key is the one in the data directory).
    let own_dir = dir.is_none();
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => tempdir("crash")?,
    };
    let mut rng = rand::rng();
    let started = Instant::now();
    let mut totals: HashMap<&str, u64> = HashMap::new();
    let mut kills = Vec::new();
    let mut seq: u64 = 0;
    // Numbers unique over the whole run: ID numbers of imported persons, telemetry sequence.
    let id_numbers = Arc::new(AtomicU64::new(0));
    let telemetry_seq = Arc::new(AtomicU64::new(1));
    let mut lost = Vec::new();
    for round in 0..rounds {
        let mut server = spawn_server(&exe, &dir, cfg.database_url.as_deref()).await?;
        let base = format!("http://127.0.0.1:{}", server.port);
        let http = client();
        let (cookie, csrf) = login(&http, &base, "committee").await?;
        let api = Client {
            http,
            base,
            cookie,
            csrf,
        };
        let fx = Arc::new(fixtures(&api).await?);

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        let mut devices = Vec::new();
        for c in 0..clients {
            let (api, fx2, stop, ids) =
                (api.clone(), fx.clone(), stop_rx.clone(), id_numbers.clone());
            let first = seq + (c as u64) * 1_000_000;
            tasks.push(tokio::spawn(async move {
                drive(&api, &fx2, c, round, first, &ids, stop).await
            }));
            let device = fx.devices[c % fx.devices.len()].clone();
            let (stop, next) = (stop_rx.clone(), telemetry_seq.clone());
            let mqtt = server.mqtt;
            devices.push(tokio::spawn(async move {
                telemetry(mqtt, &device, &next, stop).await
            }));
        }
        seq += (clients as u64) * 1_000_000;
        let wait = rng.random_range(min_ms..=max_ms.max(min_ms));
        tokio::time::sleep(Duration::from_millis(wait)).await;
        // SIGKILL: no shutdown, no flush — the process is gone mid-write.
        server.child.start_kill()?;
        server.child.wait().await?;
        let _ = stop_tx.send(true);
        let mut acked = Vec::new();
        for t in tasks {
            acked.push(t.await?);
        }
        for d in devices {
            let mut a = Acked::default();
            a.telemetry = d.await?;
            acked.push(a);
        }
        if let Some(u) = acked.iter().flat_map(|a| &a.unexpected).next() {
            bail!("round {round}: unexpected answer while the server was up: {u}");
        }
        let (audit_entries, problems, partial_checked) = verify(cfg, &dir, &acked).await?;
        for (k, n) in [
            (
                "reveals",
                acked.iter().map(|a| a.reveals.len()).sum::<usize>(),
            ),
            ("household_edits", acked.iter().map(|a| a.edits).sum()),
            (
                "reports_created",
                acked.iter().map(|a| a.reports.len()).sum(),
            ),
            (
                "report_transitions",
                acked.iter().map(Acked::transitions).sum(),
            ),
            (
                "imports",
                acked
                    .iter()
                    .flat_map(|a| &a.imports)
                    .filter(|i| i.acked)
                    .count(),
            ),
            (
                "import_rows",
                acked
                    .iter()
                    .flat_map(|a| &a.imports)
                    .filter(|i| i.acked)
                    .map(|i| i.ids.len())
                    .sum(),
            ),
            ("imports_in_flight_all_or_nothing", partial_checked),
            (
                "telemetry_qos1",
                acked.iter().map(|a| a.telemetry.len()).sum(),
            ),
        ] {
            *totals.entry(k).or_default() += n as u64;
        }
        kills.push(json!({"round": round, "killed_after_ms": wait, "audit_entries": audit_entries, "problems": problems.len()}));
        if !problems.is_empty() {
            lost = problems;
            break;
        }
    }
    println!(
        "{}",
        json!({
            "bench": "crash",
            "rounds": kills.len(),
            "clients": clients,
            "acknowledged_writes_checked": totals,
            "lost": lost.len(),
            "lost_examples": lost.iter().take(10).collect::<Vec<_>>(),
            "audit_chain": "intact after every kill",
            "integrity_check": if cfg.database_url.is_some() {
                "not applicable (PostgreSQL)"
            } else {
                "ok after every kill"
            },
            "seconds": started.elapsed().as_secs_f64(),
            "kills": kills,
        })
    );
    if own_dir {
        std::fs::remove_dir_all(&dir).ok();
    }
    if !lost.is_empty() {
        bail!("{} acknowledged writes lost or imports partial", lost.len());
    }
    Ok(())
}

/// Persons to reveal, households to edit (one per client), the room to file reports at and
/// import into, and the devices to publish as.
async fn fixtures(api: &Client) -> anyhow::Result<Fixtures> {
    let get = |uri: String| async move {
        let (status, body) = api
            .send("GET", &uri, String::new(), "application/json")
            .await?;
        if status != 200 {
            bail!("GET {uri}: {status}");
        }
        Ok::<Value, anyhow::Error>(body)
    };
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let persons = ids(&get("/api/v1/persons?limit=50".into()).await?["items"]);
    let households = ids(&get("/api/v1/households?limit=16".into()).await?["items"]);
    if persons.is_empty() || households.is_empty() {
        bail!("the demo has no persons or households in the committee's area");
    }
    // The import names places (社区, 楼栋, 单元, 房号): walk up from a household's room.
    let first = get(format!("/api/v1/households/{}", households[0])).await?;
    let room_id = first["room_id"].as_str().context("room_id")?.to_string();
    let room = get(format!("/api/v1/places/{room_id}")).await?;
    let unit = get(format!(
        "/api/v1/places/{}",
        room["parent_id"].as_str().context("unit")?
    ))
    .await?;
    let building = get(format!(
        "/api/v1/places/{}",
        unit["parent_id"].as_str().context("building")?
    ))
    .await?;
    let mut up = building["parent_id"].as_str().context("grid")?.to_string();
    let community = loop {
        let p = get(format!("/api/v1/places/{up}")).await?;
        if p["kind"] == "community" {
            break p["name"].as_str().unwrap_or("").to_string();
        }
        up = p["parent_id"].as_str().context("community")?.to_string();
    };
    let name = |v: &Value| v["name"].as_str().unwrap_or("").to_string();
    let room_names = vec![community, name(&building), name(&unit), name(&room)];
    let devices: Vec<String> = get("/api/v1/iot/devices?limit=1000".into())
        .await?
        .as_array()
        .context("devices")?
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("water_leak" | "door")))
        .filter_map(|d| d["id"].as_str().map(str::to_string))
        .collect();
    if devices.is_empty() {
        bail!("the demo has no water-leak or door sensors in the committee's area");
    }
    Ok(Fixtures {
        persons,
        households,
        room_id,
        room_names,
        devices,
    })
}

/// One client: reveal, edit its household, move its report one step, and now and then import
/// two households — until told to stop or the server stops answering. Returns what was
/// acknowledged.
async fn drive(
    api: &Client,
    fx: &Fixtures,
    client: usize,
    round: usize,
    first: u64,
    id_numbers: &AtomicU64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Acked {
    let mut acked = Acked::default();
    let household = &fx.households[client % fx.households.len()];
    let mut last_note: Option<String> = None;
    let mut n = first;
    while !*stop.borrow() {
        n += 1;
        // 1. An audited reveal.
        let purpose = format!("crash-{round}-{client}-{n}");
        let person = &fx.persons[(n as usize) % fx.persons.len()];
        match api
            .json(
                "POST",
                &format!("/api/v1/persons/{person}/reveal"),
                json!({"purpose": purpose, "fields": ["id_number"]}),
            )
            .await
        {
            Ok((200, _)) => acked.reveals.push(purpose),
            Ok((status, body)) => {
                acked.unexpected.push(format!("reveal: {status} {body}"));
                break;
            }
            Err(_) => break,
        }
        // 2. A household edit (read the version, write the note).
        let Ok((200, body)) = api
            .json(
                "GET",
                &format!("/api/v1/households/{household}"),
                Value::Null,
            )
            .await
        else {
            break;
        };
        let version = body["version"].as_i64().unwrap_or(0);
        let note = format!("crash-note-{round}-{client}-{n}");
        match api
            .json(
                "PATCH",
                &format!("/api/v1/households/{household}"),
                json!({"note": note, "version": version}),
            )
            .await
        {
            Ok((200, _)) => {
                last_note = Some(note);
                acked.edits += 1;
            }
            Ok((409, _)) => {}
            Ok((status, body)) => {
                acked
                    .unexpected
                    .push(format!("household edit: {status} {body}"));
                break;
            }
            Err(_) => {
                acked
                    .notes
                    .push((household.clone(), last_note.clone(), Some(note)));
                last_note = None;
                break;
            }
        }
        // 3. The client's report: file one, or move it one step.
        if !report_step(api, fx, &mut acked, round, client, n).await {
            break;
        }
        // 4. Import two households (every eighth round trip: imports are heavier).
        if n % 8 == 0 && !import(api, fx, &mut acked, id_numbers, n).await {
            break;
        }
    }
    if last_note.is_some() {
        acked.notes.push((household.clone(), last_note, None));
    }
    acked
}

/// File a report or move the client's open one a step. False when the client must stop.
async fn report_step(
    api: &Client,
    fx: &Fixtures,
    acked: &mut Acked,
    round: usize,
    client: usize,
    n: u64,
) -> bool {
    let open = acked.reports.last().filter(|r| r.steps < STEPS.len());
    let Some(report) = open else {
        let body = json!({
            "category": "environment",
            "description": format!("崩溃测试 {round}-{client}-{n}：楼道杂物堆放"),
            "place_id": fx.room_id,
            "channel": "phone",
        });
        return match api.json("POST", "/api/v1/reports", body).await {
            Ok((201, v)) => match v["report"]["id"].as_str() {
                Some(id) => {
                    acked.reports.push(ReportTrack {
                        id: id.to_string(),
                        steps: 0,
                        in_flight: false,
                    });
                    true
                }
                None => {
                    acked
                        .unexpected
                        .push(format!("report created without id: {v}"));
                    false
                }
            },
            Ok((status, body)) => {
                acked.unexpected.push(format!("report: {status} {body}"));
                false
            }
            Err(_) => false,
        };
    };
    let (id, step) = (report.id.clone(), report.steps);
    let (action, _) = STEPS[step];
    let body = match action {
        "accept" => json!({"action": action, "public_note": "已受理"}),
        "reply" => json!({"action": action, "outcome": "solved", "public_note": "已清理"}),
        "visit" => json!({"action": action, "rating": 5, "solved": true}),
        _ => json!({"action": action}),
    };
    let r = api
        .json("POST", &format!("/api/v1/reports/{id}/actions"), body)
        .await;
    let report = acked.reports.last_mut().expect("the open report");
    match r {
        Ok((200, _)) => {
            report.steps += 1;
            true
        }
        Ok((status, body)) => {
            acked
                .unexpected
                .push(format!("report {action}: {status} {body}"));
            false
        }
        Err(_) => {
            report.in_flight = true;
            false
        }
    }
}

/// Import two households of two persons each. False when the client must stop.
async fn import(
    api: &Client,
    fx: &Fixtures,
    acked: &mut Acked,
    id_numbers: &AtomicU64,
    n: u64,
) -> bool {
    let ids: Vec<String> = (0..4)
        .map(|_| fresh_id(id_numbers.fetch_add(1, Ordering::Relaxed)))
        .collect();
    let [c, b, u, r] = [
        &fx.room_names[0],
        &fx.room_names[1],
        &fx.room_names[2],
        &fx.room_names[3],
    ];
    let mut csv = String::from("户号,社区,楼栋,单元,房号,居住类型,姓名,与户主关系,身份证号\n");
    for (k, id) in ids.iter().enumerate() {
        let (household, relation) = (k / 2, if k % 2 == 0 { "户主" } else { "配偶" });
        csv.push_str(&format!(
            "C{n}-{household},{c},{b},{u},{r},租户,崩溃{k},{relation},{id}\n"
        ));
    }
    match api
        .send(
            "POST",
            "/api/v1/registry/import/households",
            csv,
            "text/csv",
        )
        .await
    {
        Ok((200, v)) => {
            if v["persons_created"].as_u64() != Some(ids.len() as u64) {
                // The harness's own bug (a bad fixture), not a lost write: stop loudly.
                acked.unexpected.push(format!(
                    "import did not create its {} persons: {v}",
                    ids.len()
                ));
                return false;
            }
            acked.imports.push(ImportTrack { ids, acked: true });
            true
        }
        Ok((status, body)) => {
            acked.unexpected.push(format!("import: {status} {body}"));
            false
        }
        Err(_) => {
            acked.imports.push(ImportTrack { ids, acked: false });
            false
        }
    }
}

/// A device publishing QoS 1 telemetry in windows of 16 until told to stop or the connection
/// ends. Returns the (device, sequence) pairs the broker acknowledged.
async fn telemetry(
    mqtt: std::net::SocketAddr,
    device: &str,
    next: &AtomicU64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<(String, u64)> {
    let mut acked = Vec::new();
    let Ok(mut dev) = Qos1Device::connect(mqtt, device, &demo_device_token(device)).await else {
        return acked;
    };
    while !*stop.borrow() {
        let first = next.fetch_add(16, Ordering::Relaxed);
        let seqs: Vec<u64> = (first..first + 16).collect();
        let got = dev.publish(&seqs, Duration::from_secs(10)).await;
        let complete = got.len() == seqs.len();
        acked.extend(got.into_iter().map(|s| (device.to_string(), s)));
        if !complete {
            break;
        }
    }
    acked
}

/// A valid ID number that the demo does not use (birth dates in 1960–1969, area 110105),
/// distinct for every `k` below 3,646,350.
fn fresh_id(k: u64) -> String {
    let day = chrono::NaiveDate::from_ymd_opt(1960, 1, 1).unwrap()
        + chrono::Duration::days((k % 3650) as i64);
    linli_core::idcard::compose("110105", day, (k / 3650 % 999) as u16 + 1)
}

/// Open the database directly and check every acknowledged write. Returns the audit length,
/// the writes found missing (or imports found partial), and how many in-flight imports were
/// checked to be all-or-nothing.
async fn verify(
    cfg: &Config,
    dir: &Path,
    acked: &[Acked],
) -> anyhow::Result<(i64, Vec<String>, usize)> {
    let mut c = cfg.clone();
    c.data_dir = dir.to_path_buf();
    let store = crate::open_store(&c).await?;
    let mut problems = Vec::new();
    let mut in_flight_imports = 0;
    let count = |sql: &'static str, bind: String| {
        let store = &store;
        async move {
            let n: i64 = sqlx::query(sql)
                .bind(bind)
                .fetch_one(&store.db.read)
                .await?
                .get("n");
            Ok::<i64, anyhow::Error>(n)
        }
    };
    for a in acked {
        for purpose in &a.reveals {
            let n = count(
                "SELECT COUNT(*) AS n FROM audit_log WHERE purpose = $1",
                purpose.clone(),
            )
            .await?;
            if n != 1 {
                problems.push(format!("reveal '{purpose}' has {n} audit entries"));
            }
        }
        for (hh, last, in_flight) in &a.notes {
            let Some(last) = last else { continue };
            let note: String = sqlx::query("SELECT note FROM households WHERE id = $1")
                .bind(hh.clone())
                .fetch_one(&store.db.read)
                .await?
                .get("note");
            if &note != last && Some(&note) != in_flight.as_ref() {
                problems.push(format!(
                    "household {hh} note is '{note}', acknowledged '{last}'"
                ));
            }
        }
        for r in &a.reports {
            verify_report(&store, r, &mut problems).await?;
        }
        for i in &a.imports {
            let mut found = 0;
            for id in &i.ids {
                let bidx = store.cipher.blind_index("id", id);
                found +=
                    count("SELECT COUNT(*) AS n FROM persons WHERE id_bidx = $1", bidx).await?;
            }
            let all = i.ids.len() as i64;
            if i.acked && found != all {
                problems.push(format!(
                    "acknowledged import has {found} of its {all} persons"
                ));
            } else if !i.acked {
                in_flight_imports += 1;
                if found != 0 && found != all {
                    problems.push(format!(
                        "PARTIAL import: {found} of {all} persons of an import in flight"
                    ));
                }
            }
        }
        let mut by_device: HashMap<&str, Vec<u64>> = HashMap::new();
        for (d, s) in &a.telemetry {
            by_device.entry(d).or_default().push(*s);
        }
        for (device, seqs) in by_device {
            let stored: HashSet<u64> = stored_seqs(&store, device).await?;
            let missing = seqs.iter().filter(|s| !stored.contains(s)).count();
            if missing > 0 {
                problems.push(format!(
                    "{missing} of {} PUBACKed telemetry messages of device {device} not stored",
                    seqs.len()
                ));
            }
        }
    }
    let v = store
        .audit_verify()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(seq) = v.first_broken {
        bail!("audit chain broken at {seq}: {:?}", v.reason);
    }
    if store.backend() == linli_store::Backend::Sqlite {
        let ok: String = sqlx::query("PRAGMA integrity_check")
            .fetch_one(&store.db.read)
            .await?
            .get(0);
        if ok != "ok" {
            bail!("integrity check: {ok}");
        }
    }
    store.db.read.close().await;
    store.db.write.close().await;
    Ok((v.entries, problems, in_flight_imports))
}

/// A filed report exists, every acknowledged step has its event, and its status is the last
/// acknowledged one (or the one in flight at the kill).
async fn verify_report(
    store: &linli_store::Store,
    r: &ReportTrack,
    problems: &mut Vec<String>,
) -> anyhow::Result<()> {
    let Some(row) = sqlx::query("SELECT status FROM reports WHERE id = $1")
        .bind(r.id.clone())
        .fetch_optional(&store.db.read)
        .await?
    else {
        problems.push(format!("acknowledged report {} is missing", r.id));
        return Ok(());
    };
    let status: String = row.get("status");
    let actions: HashSet<String> =
        sqlx::query("SELECT action FROM report_events WHERE report_id = $1")
            .bind(r.id.clone())
            .fetch_all(&store.db.read)
            .await?
            .iter()
            .map(|e| e.get::<String, _>("action"))
            .collect();
    for (action, _) in &STEPS[..r.steps] {
        if !actions.contains(*action) {
            problems.push(format!(
                "report {}: acknowledged '{action}' has no event",
                r.id
            ));
        }
    }
    let acked_status = if r.steps == 0 {
        "submitted"
    } else {
        STEPS[r.steps - 1].1
    };
    let in_flight_status = (r.in_flight && r.steps < STEPS.len()).then(|| STEPS[r.steps].1);
    if status != acked_status && Some(status.as_str()) != in_flight_status {
        problems.push(format!(
            "report {}: status '{status}', acknowledged '{acked_status}'",
            r.id
        ));
    }
    Ok(())
}
