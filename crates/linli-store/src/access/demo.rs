//! Demo data for the access module: two gates per demo community (a face terminal and a
//! vehicle barrier at the main entrance) and a day of entries, so the staff page shows
//! something on first start. Deterministic (no randomness beyond the ids).

use sqlx::{Any, Transaction};

use linli_core::{AppResult, new_id};

use crate::Store;
use crate::db::db_err;

use crate::db::{Val, insert_many};

const HOUR_MS: i64 = 3_600_000;

/// Entries per hour of the day (local time) at a face gate of a busy community.
const DAY_SHAPE: [i64; 24] = [
    0, 0, 0, 0, 0, 1, 3, 9, 12, 6, 4, 4, 5, 4, 3, 4, 5, 8, 11, 7, 5, 3, 2, 1,
];

impl Store {
    /// The access module's demo: two gates per community and the last 24 hours of passages,
    /// unless the installation has gates already (idempotent).
    pub async fn seed_access_demo(&self) -> AppResult<()> {
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let any = sqlx::query("SELECT 1 AS x FROM gates LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if any.is_some() {
            return Ok(());
        }
        let communities: Vec<(String, String)> = sqlx::query(
            "SELECT id, path FROM places WHERE kind = 'community' ORDER BY sort_key, path",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| (crate::db::str_(r, "id"), crate::db::str_(r, "path")))
        .collect();
        seed(&mut tx, &communities, self.now_ms(), self.clock.zone()).await?;
        tx.commit().await.map_err(db_err)
    }
}

/// Seed gates and the last 24 hours of records for each community `(id, path)`.
async fn seed(
    tx: &mut Transaction<'static, Any>,
    communities: &[(String, String)],
    now: i64,
    zone: linli_core::tz::Zone,
) -> AppResult<()> {
    use chrono::Timelike;
    let mut gates = Vec::new();
    let mut records = Vec::new();
    let to = (now / HOUR_MS) * HOUR_MS;
    for (ci, (place_id, path)) in communities.iter().enumerate() {
        let face = new_id();
        let barrier = new_id();
        for (id, name, kind) in [
            (&face, "东门人脸识别", "face"),
            (&barrier, "南门车辆道闸", "vehicle"),
        ] {
            gates.push(vec![
                Val::from(id.clone()),
                name.into(),
                place_id.into(),
                path.into(),
                kind.into(),
                Val::NullText,
                1i64.into(),
                1i64.into(),
                now.into(),
            ]);
        }
        for h in 0..24i64 {
            let start = to - (24 - h) * HOUR_MS;
            let cst_hour = zone.local(start).hour() as usize;
            // Smaller communities see fewer people.
            let n = DAY_SHAPE[cst_hour] * (3 - ci as i64 % 3) / 3;
            for k in 0..n {
                let at = start + (k * 997 + h * 131) % HOUR_MS;
                let temp = 360 + (k + h) % 9; // 36.0–36.8 °C
                let dir = if k % 3 == 2 { "out" } else { "in" };
                records.push(record(
                    &face,
                    path,
                    dir,
                    "unknown",
                    None,
                    Some(temp),
                    at,
                    now,
                ));
                if k % 4 == 0 {
                    let plate = format!("沪A{:05}", (ci as i64 * 7919 + h * 101 + k) % 100_000);
                    records.push(record(
                        &barrier,
                        path,
                        dir,
                        "plate",
                        Some(plate),
                        None,
                        at,
                        now,
                    ));
                }
            }
        }
    }
    insert_many(
        tx,
        "gates",
        &[
            "id",
            "name",
            "place_id",
            "path",
            "kind",
            "device_id",
            "active",
            "version",
            "created_at",
        ],
        gates,
    )
    .await?;
    insert_many(
        tx,
        "access_records",
        &[
            "id",
            "gate_id",
            "path",
            "direction",
            "subject",
            "plate",
            "vehicle",
            "temp_x10",
            "fever",
            "at",
            "created_at",
        ],
        records,
    )
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn record(
    gate: &str,
    path: &str,
    dir: &str,
    subject: &str,
    plate: Option<String>,
    temp: Option<i64>,
    at: i64,
    now: i64,
) -> Vec<Val> {
    let vehicle = plate.as_ref().map(|_| "unknown".to_string());
    vec![
        Val::from(new_id()),
        gate.into(),
        path.into(),
        dir.into(),
        subject.into(),
        plate.into(),
        vehicle.into(),
        temp.into(),
        0i64.into(),
        at.into(),
        now.into(),
    ]
}
