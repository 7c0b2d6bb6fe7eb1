//! Demo devices: per building a smoke detector, a water-leak sensor and a door sensor; per
//! community two manhole covers and a gate face terminal; an SOS button in the home of each
//! 独居老人 (up to 40), with the volunteer account as their first care contact. Demo device
//! tokens are derived from the device id (`demo_device_token`) so `linli simulate` can connect;
//! like the demo password, they are for demonstrations only.

use linli_core::crypto::sha256_hex;
use linli_core::{AppResult, new_id};

use crate::Store;
use crate::db::{Val, db_err, insert_many, opt_str, str_};
use crate::iot::devices::token_hash;

/// The token of a demo device.
pub fn demo_device_token(device_id: &str) -> String {
    format!(
        "demo_{}",
        &sha256_hex(format!("linli-demo-device:{device_id}").as_bytes())[..32]
    )
}

impl Store {
    /// Register the demo devices and default rules unless done already; returns the number of
    /// devices added.
    pub async fn seed_iot_demo(&self) -> AppResult<usize> {
        self.ensure_default_rules().await?;
        let done = sqlx::query("SELECT value FROM settings WHERE key = 'iot_demo_seeded'")
            .fetch_optional(&self.db.read)
            .await
            .map_err(db_err)?;
        if done.is_some() {
            return Ok(0);
        }
        let now = self.now_ms();
        let mut rows: Vec<Vec<Val>> = Vec::new();
        let mut add = |kind: &str,
                       name: String,
                       place_id: String,
                       path: String,
                       person: Option<String>,
                       xy: Option<(i64, i64)>| {
            let id = new_id();
            rows.push(vec![
                Val::from(id.clone()),
                kind.into(),
                name.into(),
                place_id.into(),
                path.into(),
                person.into(),
                token_hash(&demo_device_token(&id)).into(),
                xy.map(|p| p.0).into(),
                xy.map(|p| p.1).into(),
                now.into(),
            ]);
        };
        let buildings = sqlx::query(
            "SELECT id, name, path, plan FROM places WHERE kind = 'building' ORDER BY path",
        )
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        for b in &buildings {
            let plan: Option<[i64; 4]> =
                opt_str(b, "plan").and_then(|s| serde_json::from_str(&s).ok());
            let centre = plan.map(|p| (p[0] + p[2] / 2, p[1] + p[3] / 2));
            let name = str_(b, "name");
            for (kind, label) in [("smoke", "烟感"), ("water_leak", "水浸"), ("door", "门磁")]
            {
                add(
                    kind,
                    format!("{name} {label}"),
                    str_(b, "id"),
                    str_(b, "path"),
                    None,
                    centre,
                );
            }
        }
        let communities =
            sqlx::query("SELECT id, name, path FROM places WHERE kind = 'community' ORDER BY path")
                .fetch_all(&self.db.read)
                .await
                .map_err(db_err)?;
        for c in &communities {
            let name = str_(c, "name");
            for (i, xy) in [(1, (80, 650)), (2, (920, 60))] {
                add(
                    "manhole",
                    format!("{name} 井盖{i}"),
                    str_(c, "id"),
                    str_(c, "path"),
                    None,
                    Some(xy),
                );
            }
            add(
                "gate_face",
                format!("{name} 南门人脸门禁"),
                str_(c, "id"),
                str_(c, "path"),
                None,
                Some((500, 690)),
            );
        }
        let elderly = sqlx::query(
            "SELECT p.id AS person_id, h.room_id, h.path FROM persons p
             JOIN person_labels pl ON pl.person_id = p.id
             JOIN labels l ON l.id = pl.label_id AND l.code = 'elderly_alone'
             JOIN residences r ON r.person_id = p.id AND r.end_date IS NULL
             JOIN households h ON h.id = r.household_id
             ORDER BY h.path LIMIT 40",
        )
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        let volunteer = sqlx::query("SELECT id FROM users WHERE login = 'volunteer'")
            .fetch_optional(&self.db.read)
            .await
            .map_err(db_err)?
            .map(|r| str_(&r, "id"));
        for e in &elderly {
            add(
                "sos_button",
                "一键呼叫".to_string(),
                str_(e, "room_id"),
                str_(e, "path"),
                Some(str_(e, "person_id")),
                None,
            );
        }
        let n = rows.len();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        if !crate::demo::claim_setting(&mut tx, "iot_demo_seeded", &now.to_string()).await? {
            tx.rollback().await.map_err(db_err)?;
            return Ok(0);
        }
        insert_many(
            &mut tx,
            "devices",
            &[
                "id",
                "kind",
                "name",
                "place_id",
                "path",
                "person_id",
                "token_hash",
                "plan_x",
                "plan_y",
                "created_at",
            ],
            rows,
        )
        .await?;
        if let Some(v) = volunteer {
            for e in &elderly {
                sqlx::query(
                    "INSERT INTO care_contacts (id, person_id, contact_user_id, relation, ord, created_at) VALUES ($1, $2, $3, $4, 0, $5)",
                )
                .bind(new_id())
                .bind(str_(e, "person_id"))
                .bind(v.clone())
                .bind("邻居志愿者".to_string())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
        }
        self.audit(
            &mut tx,
            &crate::audit::Actor::system("demo"),
            crate::audit::Entry {
                action: "demo.seed_iot",
                entity: "demo",
                entity_id: "devices",
                path: None,
                purpose: None,
                before: None,
                after: Some(serde_json::json!({ "devices": n })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(n)
    }
}
