//! Access records from gate terminals, the alarms they raise, listing and hourly statistics.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use linli_core::access::valid_temperature_x10;
use linli_core::auth::{Action, Grant};
use linli_core::{AppError, AppResult, new_id};

use super::gates::Gate;
use super::{AccessAlarm, AccessAlarmSink, bad, plate};
use crate::Store;
use crate::audit::{Actor, Entry};
use crate::bus::BusEvent;
use crate::db::{Sql, db_err, i64_, opt_i64, opt_str, str_};

/// Most records in one request.
pub const MAX_BATCH: usize = 500;
/// How far in the past a terminal may date a record (it may have been offline).
const MAX_AGE_MS: i64 = 7 * 86_400_000;
/// Clock skew tolerated for records dated in the future.
const MAX_SKEW_MS: i64 = 5 * 60_000;
const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewAccessRecord {
    pub gate_id: String,
    /// `in` or `out`.
    pub direction: String,
    /// The resident recognized by a face terminal.
    pub person_id: Option<String>,
    /// The plate read by a vehicle barrier.
    pub plate: Option<String>,
    /// Body temperature in tenths of °C (365 = 36.5 °C), from face terminals that measure it.
    pub temperature_x10: Option<i64>,
    /// When it happened (ms since the epoch, UTC).
    pub at: i64,
    /// A reference to the snapshot kept by the terminal or a media store.
    pub photo_ref: Option<String>,
}

/// One record, or a batch `{"records": [...]}` (at most 500).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum RecordsIn {
    Batch { records: Vec<NewAccessRecord> },
    One(NewAccessRecord),
}

impl RecordsIn {
    pub fn into_vec(self) -> Vec<NewAccessRecord> {
        match self {
            RecordsIn::Batch { records } => records,
            RecordsIn::One(r) => vec![r],
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccessRecord {
    pub id: String,
    pub gate_id: String,
    pub direction: String,
    /// `person` (recognized resident), `plate`, `visitor` (pass verified) or `unknown`.
    pub subject: String,
    pub person_id: Option<String>,
    pub plate: Option<String>,
    /// For plates: `resident` (registered vehicle), `visitor` (a valid pass names it) or
    /// `unknown`.
    pub vehicle: Option<String>,
    pub temperature_x10: Option<i64>,
    pub fever: bool,
    pub photo_ref: Option<String>,
    pub pass_id: Option<String>,
    pub at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IngestResult {
    pub stored: usize,
    pub records: Vec<AccessRecord>,
    /// Alarms raised by this batch: `fever` or `blacklist`.
    pub alarms: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordQuery {
    pub gate_id: Option<String>,
    /// Only records at gates under this place.
    pub place_id: Option<String>,
    pub plate: Option<String>,
    /// Only fever readings.
    pub fever: Option<bool>,
    /// From (ms, inclusive).
    pub from: Option<i64>,
    /// To (ms, exclusive).
    pub to: Option<i64>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Only gates under this place.
    pub place_id: Option<String>,
    /// From (ms); default 24 hours before `to`.
    pub from: Option<i64>,
    /// To (ms); default now. At most 31 days after `from`.
    pub to: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GateHour {
    pub gate_id: String,
    pub gate_name: String,
    /// Start of the hour (ms, UTC; hours are whole in China Standard Time too).
    pub hour_start: i64,
    /// Entries (direction `in`) in that hour.
    pub entries: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccessAlert {
    pub id: String,
    /// `fever` or `blacklist`.
    pub kind: String,
    pub severity: String,
    pub details: Value,
    pub created_at: i64,
}

/// A record checked and ready to store.
struct Checked {
    rec: AccessRecord,
    path: String,
    blacklisted: Option<String>,
}

fn record_from_row(r: &sqlx::any::AnyRow) -> AccessRecord {
    AccessRecord {
        id: str_(r, "id"),
        gate_id: str_(r, "gate_id"),
        direction: str_(r, "direction"),
        subject: str_(r, "subject"),
        person_id: opt_str(r, "person_id"),
        plate: opt_str(r, "plate"),
        vehicle: opt_str(r, "vehicle"),
        temperature_x10: opt_i64(r, "temp_x10"),
        fever: i64_(r, "fever") != 0,
        photo_ref: opt_str(r, "photo_ref"),
        pass_id: opt_str(r, "pass_id"),
        at: i64_(r, "at"),
    }
}

impl Store {
    /// Store records sent by gate terminals (VisitorVerify over each gate's place). The batch is
    /// checked first and stored all-or-nothing in one transaction; a bad record is named by its
    /// index. Fever readings and blacklisted plates raise alarms through `sink`.
    pub async fn ingest_access_records(
        &self,
        grant: &Grant,
        actor: &Actor,
        sink: &dyn AccessAlarmSink,
        input: Vec<NewAccessRecord>,
    ) -> AppResult<IngestResult> {
        let scope = grant.scope(Action::VisitorVerify)?;
        if input.is_empty() {
            return Err(AppError::required("records"));
        }
        if input.len() > MAX_BATCH {
            return Err(AppError::bad_request("access.records.too_many")
                .arg("limit", MAX_BATCH.to_string()));
        }
        let now = self.now_ms();
        let threshold = self.access_settings().await?.fever_threshold_x10;
        let mut gates: HashMap<String, Gate> = HashMap::new();
        let mut checked = Vec::with_capacity(input.len());
        for (i, r) in input.into_iter().enumerate() {
            let at_index = |e: AppError| e.details(json!({ "index": i }));
            let gate = match gates.get(&r.gate_id) {
                Some(g) => g.clone(),
                None => {
                    let g = match self.gate_unscoped(&r.gate_id).await? {
                        Some(g) if g.active && scope.covers(&g.path) => g,
                        _ => return Err(at_index(AppError::not_found("access.gate.not_found"))),
                    };
                    gates.insert(g.id.clone(), g.clone());
                    g
                }
            };
            if !matches!(r.direction.as_str(), "in" | "out") {
                return Err(at_index(bad("direction")));
            }
            let plate = match r.plate.as_deref().filter(|p| !p.trim().is_empty()) {
                Some(p) => Some(plate(p).map_err(at_index)?),
                None => None,
            };
            if gate.kind == "vehicle" && plate.is_none() {
                return Err(at_index(AppError::required("plate")));
            }
            if let Some(t) = r.temperature_x10
                && !valid_temperature_x10(t)
            {
                return Err(at_index(AppError::bad_request(
                    "access.temperature.invalid",
                )));
            }
            if r.at < now - MAX_AGE_MS || r.at > now + MAX_SKEW_MS {
                return Err(at_index(bad("at")));
            }
            let photo_ref = match r.photo_ref.as_deref().map(str::trim) {
                Some("") | None => None,
                Some(p) if p.len() > 200 => {
                    return Err(at_index(
                        AppError::bad_request("validation.too_long").arg("field", "photo_ref"),
                    ));
                }
                Some(p) => Some(p.to_string()),
            };
            // A record names only a person who lives in the gate's area and the terminal's
            // (issue #13 round 2, finding 7); anyone else is refused like an unknown id.
            let person_id = match r.person_id.as_deref().filter(|p| !p.is_empty()) {
                Some(pid) => {
                    if !self.person_of_area(pid, &gate.path, &scope).await? {
                        return Err(at_index(bad("person_id")));
                    }
                    Some(pid.to_string())
                }
                None => None,
            };
            let (vehicle, blacklisted) = match &plate {
                Some(p) => (
                    Some(self.classify_plate(p, &gate.path, r.at).await?),
                    self.blacklisted(p, &gate.path).await?,
                ),
                None => (None, None),
            };
            let subject = if person_id.is_some() {
                "person"
            } else if plate.is_some() {
                "plate"
            } else {
                "unknown"
            };
            let fever = r.temperature_x10.is_some_and(|t| t >= threshold);
            checked.push(Checked {
                rec: AccessRecord {
                    id: new_id(),
                    gate_id: gate.id.clone(),
                    direction: r.direction,
                    subject: subject.into(),
                    person_id,
                    plate,
                    vehicle,
                    temperature_x10: r.temperature_x10,
                    fever,
                    photo_ref,
                    pass_id: None,
                    at: r.at,
                },
                path: gate.path.clone(),
                blacklisted,
            });
        }

        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let mut events: Vec<BusEvent> = Vec::new();
        let mut alarms = Vec::new();
        for c in &checked {
            insert_record(&mut tx, &c.rec, &c.path, now).await?;
            let mut raise = Vec::new();
            if c.rec.fever {
                raise.push(AccessAlarm {
                    kind: "fever",
                    severity: "major",
                    path: c.path.clone(),
                    details: json!({
                        "gate_id": c.rec.gate_id,
                        "gate": gates[&c.rec.gate_id].name,
                        "record_id": c.rec.id,
                        "temperature_x10": c.rec.temperature_x10,
                        "threshold_x10": threshold,
                        "person_id": c.rec.person_id,
                    }),
                });
            }
            if let Some(reason) = &c.blacklisted {
                raise.push(AccessAlarm {
                    kind: "blacklist",
                    severity: "critical",
                    path: c.path.clone(),
                    details: json!({
                        "gate_id": c.rec.gate_id,
                        "gate": gates[&c.rec.gate_id].name,
                        "record_id": c.rec.id,
                        "plate": c.rec.plate,
                        "reason": reason,
                    }),
                });
            }
            for a in &raise {
                events.extend(sink.raise(self, &mut tx, a).await?);
                alarms.push(a.kind.to_string());
            }
        }
        let first = &checked[0];
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "access.records.ingest",
                entity: "access_record",
                entity_id: &first.rec.id,
                path: Some(&first.path),
                purpose: None,
                before: None,
                after: Some(json!({ "count": checked.len(), "alarms": alarms.len() })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        let mut paths: Vec<&String> = checked.iter().map(|c| &c.path).collect();
        paths.sort();
        paths.dedup();
        for p in paths {
            self.bus.publish(BusEvent {
                kind: "access.record".into(),
                path: p.clone(),
                id: first.rec.id.clone(),
                users: Vec::new(),
            });
        }
        for e in events {
            self.bus.publish(e);
        }
        Ok(IngestResult {
            stored: checked.len(),
            records: checked.into_iter().map(|c| c.rec).collect(),
            alarms,
        })
    }

    /// `resident` when a household of the gate's community registered the plate, `visitor`
    /// when a pass valid at `at` in that community names it, `unknown` otherwise.
    async fn classify_plate(&self, plate: &str, gate_path: &str, at: i64) -> AppResult<String> {
        let community = self
            .community_of(gate_path)
            .await?
            .unwrap_or_else(|| gate_path.to_string());
        let mut q = Sql::new("SELECT COUNT(*) AS n FROM vehicles WHERE plate = ");
        q.bind(plate)
            .push(" AND ")
            .scope("path", std::slice::from_ref(&community));
        let n = i64_(
            &q.query().fetch_one(&self.db.read).await.map_err(db_err)?,
            "n",
        );
        if n > 0 {
            return Ok("resident".into());
        }
        let r = sqlx::query(
            "SELECT COUNT(*) AS n FROM visitor_passes WHERE plate = $1 AND community_path = $2 AND revoked_at IS NULL AND valid_from <= $3 AND valid_until >= $4",
        )
        .bind(plate.to_string())
        .bind(community)
        .bind(at)
        .bind(at)
        .fetch_one(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(if i64_(&r, "n") > 0 {
            "visitor"
        } else {
            "unknown"
        }
        .into())
    }

    /// The reason a plate is blacklisted at a gate (an entry at the gate's place or above).
    async fn blacklisted(&self, plate: &str, gate_path: &str) -> AppResult<Option<String>> {
        let r = sqlx::query(
            "SELECT reason FROM plate_blacklist WHERE plate = $1 AND substr($2, 1, length(path)) = path ORDER BY created_at LIMIT 1",
        )
        .bind(plate.to_string())
        .bind(gate_path.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(r.map(|r| str_(&r, "reason")))
    }

    /// Records at gates in the grant's area (AccessRead), newest first.
    pub async fn access_records(
        &self,
        grant: &Grant,
        q: &RecordQuery,
    ) -> AppResult<Vec<AccessRecord>> {
        let scope = grant.scope(Action::AccessRead)?;
        let mut s = Sql::new(
            "SELECT id, gate_id, direction, subject, person_id, plate, vehicle, temp_x10, fever, photo_ref, pass_id, at FROM access_records WHERE ",
        );
        s.scope("path", scope.prefixes());
        if let Some(pid) = q.place_id.as_deref().filter(|x| !x.is_empty()) {
            let p = self
                .place_unscoped(pid)
                .await?
                .ok_or(AppError::not_found("registry.place.not_found"))?;
            s.push(" AND ").scope("path", &[p.path]);
        }
        if let Some(g) = q.gate_id.as_deref().filter(|x| !x.is_empty()) {
            s.push(" AND gate_id = ").bind(g);
        }
        if let Some(p) = q.plate.as_deref().filter(|x| !x.trim().is_empty()) {
            s.push(" AND plate = ").bind(plate(p)?);
        }
        if q.fever == Some(true) {
            s.push(" AND fever = 1");
        }
        if let Some(f) = q.from {
            s.push(" AND at >= ").bind(f);
        }
        if let Some(t) = q.to {
            s.push(" AND at < ").bind(t);
        }
        s.push(" ORDER BY at DESC, id DESC LIMIT ")
            .bind(q.limit.unwrap_or(100).clamp(1, 1000));
        let rows = s.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows.iter().map(record_from_row).collect())
    }

    /// Entries per gate per hour in the grant's area (AccessRead).
    pub async fn access_hourly(&self, grant: &Grant, q: &StatsQuery) -> AppResult<Vec<GateHour>> {
        let scope = grant.scope(Action::AccessRead)?;
        let to = q.to.unwrap_or_else(|| self.now_ms());
        let from = q.from.unwrap_or(to.saturating_sub(24 * HOUR_MS));
        if from >= to || to.saturating_sub(from) > 31 * 24 * HOUR_MS {
            return Err(bad("from"));
        }
        let mut s = Sql::new(
            "SELECT r.gate_id, g.name, (r.at / 3600000) AS hour, COUNT(*) AS n FROM access_records r JOIN gates g ON g.id = r.gate_id WHERE r.direction = 'in' AND ",
        );
        s.scope("r.path", scope.prefixes());
        if let Some(pid) = q.place_id.as_deref().filter(|x| !x.is_empty()) {
            let p = self
                .place_unscoped(pid)
                .await?
                .ok_or(AppError::not_found("registry.place.not_found"))?;
            s.push(" AND ").scope("r.path", &[p.path]);
        }
        s.push(" AND r.at >= ").bind(from);
        s.push(" AND r.at < ").bind(to);
        s.push(" GROUP BY r.gate_id, g.name, (r.at / 3600000) ORDER BY g.name, r.gate_id, hour");
        let rows = s.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| GateHour {
                gate_id: str_(r, "gate_id"),
                gate_name: str_(r, "name"),
                hour_start: i64_(r, "hour") * HOUR_MS,
                entries: i64_(r, "n"),
            })
            .collect())
    }

    /// Access alarms (fever, blacklist) in the grant's area, newest first (AccessRead).
    pub async fn access_alerts(&self, grant: &Grant, limit: i64) -> AppResult<Vec<AccessAlert>> {
        let scope = grant.scope(Action::AccessRead)?;
        let mut s =
            Sql::new("SELECT id, kind, severity, details, created_at FROM access_alerts WHERE ");
        s.scope("path", scope.prefixes());
        s.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .bind(limit.clamp(1, 500));
        let rows = s.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| AccessAlert {
                id: str_(r, "id"),
                kind: str_(r, "kind"),
                severity: str_(r, "severity"),
                details: serde_json::from_str(&str_(r, "details")).unwrap_or(Value::Null),
                created_at: i64_(r, "created_at"),
            })
            .collect())
    }
}

pub(crate) async fn insert_record(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    r: &AccessRecord,
    path: &str,
    now: i64,
) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO access_records (id, gate_id, path, direction, subject, person_id, plate, vehicle, temp_x10, fever, photo_ref, pass_id, at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(r.id.clone())
    .bind(r.gate_id.clone())
    .bind(path.to_string())
    .bind(r.direction.clone())
    .bind(r.subject.clone())
    .bind(r.person_id.clone())
    .bind(r.plate.clone())
    .bind(r.vehicle.clone())
    .bind(r.temperature_x10)
    .bind(i64::from(r.fever))
    .bind(r.photo_ref.clone())
    .bind(r.pass_id.clone())
    .bind(r.at)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}
