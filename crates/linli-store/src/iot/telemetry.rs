//! Telemetry storage. The ingest runtime commits one row per (device, batch) holding that
//! batch's points as compact JSON (`[[ts,{"k":v,…}],…]`) with `t_min`/`t_max`, indexed by
//! (device_id, t_max): tens of thousands of points a second become a few hundred rows a second.
//! History queries decode the rows of one device and time range. Old raw rows are downsampled
//! to hourly averages and, later, deleted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Any, Transaction};

use linli_core::auth::Grant;
use linli_core::{AppResult, new_id};

use crate::Store;
use crate::db::{Sql, Val, db_err, i64_, insert_many, str_};

/// The points of one device in one batch, values already serialized as JSON objects.
#[derive(Debug, Clone)]
pub struct DeviceBatch {
    pub device_id: String,
    /// (ts, values JSON object)
    pub points: Vec<(i64, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TelemetryPoint {
    pub ts: i64,
    pub values: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
pub struct HistoryQuery {
    /// From (ms, inclusive); default: one day before `to`.
    pub from: Option<i64>,
    /// To (ms, inclusive); default: now.
    pub to: Option<i64>,
    /// At most this many points (default 1000, at most 10000), oldest first.
    pub limit: Option<i64>,
}

/// Insert the batch rows and move each device's latest values, inside the caller's transaction.
pub async fn write_batches(
    tx: &mut Transaction<'static, Any>,
    batches: &[DeviceBatch],
    now: i64,
) -> AppResult<()> {
    let mut rows = Vec::with_capacity(batches.len());
    let mut latest = Vec::with_capacity(batches.len());
    for b in batches {
        if b.points.is_empty() {
            continue;
        }
        let mut t_min = i64::MAX;
        let mut t_max = i64::MIN;
        let mut last = &b.points[0];
        let mut s = String::with_capacity(b.points.len() * 48);
        s.push('[');
        for (i, p) in b.points.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push('[');
            s.push_str(&p.0.to_string());
            s.push(',');
            s.push_str(&p.1);
            s.push(']');
            t_min = t_min.min(p.0);
            if p.0 >= t_max {
                t_max = p.0;
                last = p;
            }
        }
        s.push(']');
        rows.push(vec![
            Val::from(new_id()),
            Val::from(b.device_id.clone()),
            Val::Int(t_min),
            Val::Int(t_max),
            Val::Int(b.points.len() as i64),
            Val::Text(s),
        ]);
        latest.push((b.device_id.clone(), last.0, last.1.clone()));
    }
    insert_many(
        tx,
        "telemetry",
        &["id", "device_id", "t_min", "t_max", "n", "points"],
        rows,
    )
    .await?;
    for chunk in latest.chunks(200) {
        let mut q = Sql::new("INSERT INTO device_latest (device_id, ts, vals, seen_at) VALUES ");
        for (i, (id, ts, vals)) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            q.bind(id).push(", ").bind(*ts).push(", ").bind(vals);
            q.push(", ").bind(now).push(")");
        }
        q.push(
            " ON CONFLICT (device_id) DO UPDATE SET ts = excluded.ts, vals = excluded.vals, seen_at = excluded.seen_at WHERE device_latest.ts <= excluded.ts",
        );
        q.query().execute(&mut **tx).await.map_err(db_err)?;
    }
    Ok(())
}

impl Store {
    /// A device's points in a time range (the device must lie inside the grant).
    pub async fn telemetry(
        &self,
        grant: &Grant,
        device_id: &str,
        q: &HistoryQuery,
    ) -> AppResult<Vec<TelemetryPoint>> {
        self.device(grant, device_id).await?;
        let to = q.to.unwrap_or_else(|| self.now_ms());
        let from = q.from.unwrap_or(to - 86_400_000);
        let limit = q.limit.unwrap_or(1000).clamp(1, 10_000) as usize;
        let rows = sqlx::query(
            "SELECT points FROM telemetry WHERE device_id = $1 AND t_max >= $2 AND t_min <= $3 ORDER BY t_min",
        )
        .bind(device_id.to_string())
        .bind(from)
        .bind(to)
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        let mut out = Vec::new();
        for r in &rows {
            let pts: Vec<(i64, BTreeMap<String, Value>)> =
                serde_json::from_str(&str_(r, "points")).unwrap_or_default();
            out.extend(
                pts.into_iter()
                    .filter(|(ts, _)| *ts >= from && *ts <= to)
                    .map(|(ts, values)| TelemetryPoint { ts, values }),
            );
        }
        out.sort_by_key(|p| p.ts);
        out.truncate(limit);
        Ok(out)
    }

    /// How many points are stored (all devices, or one).
    pub async fn telemetry_count(&self, device_id: Option<&str>) -> AppResult<i64> {
        let mut q = Sql::new("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM telemetry");
        if let Some(d) = device_id {
            q.push(" WHERE device_id = ").bind(d);
        }
        let r = q.query().fetch_one(&self.db.read).await.map_err(db_err)?;
        Ok(i64_(&r, "n"))
    }

    /// Retention: replace raw rows older than `downsample_before` with hourly averages of their
    /// numeric values (one row per device and hour), and delete rows older than
    /// `delete_before`. Works through at most `max_rows` raw rows a call; returns
    /// (raw rows folded, rows deleted).
    pub async fn telemetry_retention(
        &self,
        downsample_before: i64,
        delete_before: i64,
        max_rows: i64,
    ) -> AppResult<(u64, u64)> {
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        // One instance folds at a time; the next reads what the first left.
        self.db
            .lock_xact(&mut tx, "iot.telemetry_retention")
            .await
            .map_err(db_err)?;
        let deleted = sqlx::query("DELETE FROM telemetry WHERE t_max < $1")
            .bind(delete_before)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        let rows = sqlx::query(
            "SELECT id, device_id, points FROM telemetry WHERE hourly = 0 AND t_max < $1 ORDER BY device_id, t_max LIMIT $2",
        )
        .bind(downsample_before)
        .bind(max_rows)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        // (device, hour) -> key -> (sum, count)
        let mut acc: BTreeMap<(String, i64), BTreeMap<String, (f64, u64)>> = BTreeMap::new();
        for r in &rows {
            let pts: Vec<(i64, BTreeMap<String, Value>)> =
                serde_json::from_str(&str_(r, "points")).unwrap_or_default();
            for (ts, vals) in pts {
                let slot = acc
                    .entry((str_(r, "device_id"), ts - ts.rem_euclid(3_600_000)))
                    .or_default();
                for (k, v) in vals {
                    if let Some(x) = linli_core::iot::number(&v) {
                        let e = slot.entry(k).or_insert((0.0, 0));
                        e.0 += x;
                        e.1 += 1;
                    }
                }
            }
        }
        for r in &rows {
            sqlx::query("DELETE FROM telemetry WHERE id = $1")
                .bind(str_(r, "id"))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        let mut out = Vec::new();
        for ((device, hour), keys) in acc {
            let mut avg = serde_json::Map::new();
            let mut n = 0;
            for (k, (sum, count)) in keys {
                avg.insert(k, serde_json::json!(sum / count as f64));
                n = n.max(count);
            }
            let pts = serde_json::json!([[hour, avg]]).to_string();
            out.push(vec![
                Val::from(new_id()),
                Val::from(device),
                Val::Int(hour),
                Val::Int(hour),
                Val::Int(n as i64),
                Val::Text(pts),
                Val::Int(1),
            ]);
        }
        insert_many(
            &mut tx,
            "telemetry",
            &["id", "device_id", "t_min", "t_max", "n", "points", "hourly"],
            out,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok((rows.len() as u64, deleted))
    }
}
