//! The device registry. Devices authenticate with their id and a random token; only its
//! SHA-256 is stored (tokens are high-entropy, so a fast hash is enough).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use linli_core::auth::{Action, Grant};
use linli_core::crypto::{random_token, sha256_hex};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::bus::BusEvent;
use crate::db::{Sql, db_err, i64_, opt_i64, opt_str, str_};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Device {
    pub id: String,
    /// smoke, door, manhole, water_leak, sos_button, gate_face, vehicle_camera, thermometer, …
    pub kind: String,
    pub name: String,
    pub place_id: String,
    pub path: String,
    /// The person an SOS button belongs to.
    pub person_id: Option<String>,
    /// A point on the community plan (1000×700 units), if placed.
    pub plan_x: Option<i64>,
    pub plan_y: Option<i64>,
    /// Last message time (ms), if any.
    pub last_seen: Option<i64>,
    /// Latest values as last stored.
    pub latest: Option<Value>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewDevice {
    pub kind: String,
    pub name: String,
    /// Room, unit, building, grid or community.
    pub place_id: String,
    #[serde(default)]
    pub person_id: Option<String>,
    #[serde(default)]
    pub plan_x: Option<i64>,
    #[serde(default)]
    pub plan_y: Option<i64>,
}

/// A registered device with its token, shown once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceCreated {
    pub device: Device,
    /// MQTT password / HTTP bearer token of the device. Not retrievable later.
    pub token: String,
}

/// What the ingest runtime needs to know about a device.
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    pub id: String,
    pub kind: String,
    pub place_id: String,
    pub path: String,
    pub person_id: Option<String>,
    pub token_hash: String,
}

/// Bus event kind published after a device's credentials changed (token reset; later also
/// disabled or deleted): every instance's IoT runtime drops its cached credentials and closes
/// the device's live sessions that authenticated with old ones.
pub const REVOKED: &str = "device.revoked";

pub fn token_hash(token: &str) -> String {
    sha256_hex(format!("linli-device:{token}").as_bytes())
}

const COLS: &str = "d.id, d.kind, d.name, d.place_id, d.path, d.person_id, d.plan_x, d.plan_y, d.created_at, l.seen_at, l.vals";

fn from_row(r: &sqlx::any::AnyRow) -> Device {
    Device {
        id: str_(r, "id"),
        kind: str_(r, "kind"),
        name: str_(r, "name"),
        place_id: str_(r, "place_id"),
        path: str_(r, "path"),
        person_id: opt_str(r, "person_id"),
        plan_x: opt_i64(r, "plan_x"),
        plan_y: opt_i64(r, "plan_y"),
        last_seen: opt_i64(r, "seen_at"),
        latest: opt_str(r, "vals").and_then(|s| serde_json::from_str(&s).ok()),
        created_at: i64_(r, "created_at"),
    }
}

fn auth_from_row(r: &sqlx::any::AnyRow) -> DeviceAuth {
    DeviceAuth {
        id: str_(r, "id"),
        kind: str_(r, "kind"),
        place_id: str_(r, "place_id"),
        path: str_(r, "path"),
        person_id: opt_str(r, "person_id"),
        token_hash: str_(r, "token_hash"),
    }
}

impl Store {
    /// Register a device at a place inside the grant (`DeviceAdmin`); returns its token once.
    pub async fn create_device(
        &self,
        grant: &Grant,
        actor: &Actor,
        new: NewDevice,
    ) -> AppResult<DeviceCreated> {
        // `place` resolves the place with any grant's area: the action is checked here.
        grant.scope(Action::DeviceAdmin)?;
        if !linli_core::iot::valid_kind(&new.kind) {
            return Err(AppError::bad_request("iot.device.bad_kind").arg("kind", new.kind));
        }
        let name = new.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(AppError::required("name"));
        }
        let place = self.place(grant, &new.place_id).await?;
        // A device names only a person who lives in its area (and the caller's): an SOS button
        // cannot be registered for someone of another community (issue #13 round 2, finding 7).
        if let Some(pid) = new.person_id.as_deref().filter(|p| !p.is_empty())
            && !self
                .person_of_area(pid, &place.path, &grant.scope(Action::DeviceAdmin)?)
                .await?
        {
            return Err(AppError::not_found("registry.person.not_found"));
        }
        let id = new_id();
        let token = format!("dev_{}", random_token(24));
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO devices (id, kind, name, place_id, path, person_id, token_hash, plan_x, plan_y, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id.clone())
        .bind(new.kind.clone())
        .bind(name.clone())
        .bind(place.id.clone())
        .bind(place.path.clone())
        .bind(new.person_id.clone().filter(|p| !p.is_empty()))
        .bind(token_hash(&token))
        .bind(new.plan_x)
        .bind(new.plan_y)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "device.create",
                entity: "device",
                entity_id: &id,
                path: Some(&place.path),
                purpose: None,
                before: None,
                after: Some(
                    serde_json::json!({"kind": new.kind, "name": name, "place_id": place.id}),
                ),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        let device = self.device(grant, &id).await?;
        Ok(DeviceCreated { device, token })
    }

    /// Issue a new token for a device (the old one stops working).
    pub async fn reset_device_token(
        &self,
        grant: &Grant,
        actor: &Actor,
        id: &str,
    ) -> AppResult<String> {
        let d = self.device(grant, id).await?;
        let token = format!("dev_{}", random_token(24));
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query("UPDATE devices SET token_hash = $1 WHERE id = $2")
            .bind(token_hash(&token))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "device.token",
                entity: "device",
                entity_id: id,
                path: Some(&d.path),
                purpose: None,
                before: None,
                after: None,
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.bus.publish(BusEvent {
            kind: REVOKED.into(),
            path: d.path,
            id: id.to_string(),
            users: Vec::new(),
        });
        Ok(token)
    }

    /// Devices in the grant (optionally under a place, of a kind), with their latest values.
    pub async fn devices(
        &self,
        grant: &Grant,
        under: Option<&str>,
        kind: Option<&str>,
        limit: i64,
    ) -> AppResult<Vec<Device>> {
        let scope = grant.scope_in(&[Action::DeviceRead, Action::DeviceAdmin])?;
        let prefixes = match under {
            Some(path) => scope.narrowed_to(path),
            None => scope.prefixes().to_vec(),
        };
        let mut q = Sql::new(&format!(
            "SELECT {COLS} FROM devices d LEFT JOIN device_latest l ON l.device_id = d.id WHERE d.disabled = 0 AND "
        ));
        q.scope("d.path", &prefixes);
        if let Some(k) = kind {
            q.push(" AND d.kind = ").bind(k);
        }
        q.push(" ORDER BY d.path, d.name LIMIT ")
            .bind(limit.clamp(1, 5000));
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// One device inside the grant (otherwise not found).
    pub async fn device(&self, grant: &Grant, id: &str) -> AppResult<Device> {
        let scope = grant.scope_in(&[Action::DeviceRead, Action::DeviceAdmin])?;
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM devices d LEFT JOIN device_latest l ON l.device_id = d.id WHERE d.id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?;
        match r.as_ref().map(from_row) {
            Some(d) if scope.covers(&d.path) => Ok(d),
            _ => Err(AppError::not_found("iot.device.not_found")),
        }
    }

    /// Every enabled device, for the ingest runtime's in-memory registry.
    pub async fn device_auth_all(&self) -> AppResult<Vec<DeviceAuth>> {
        let rows = sqlx::query(
            "SELECT id, kind, place_id, path, person_id, token_hash FROM devices WHERE disabled = 0",
        )
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(auth_from_row).collect())
    }

    /// One device by id (enabled only), for authentication.
    pub async fn device_auth(&self, id: &str) -> AppResult<Option<DeviceAuth>> {
        let r = sqlx::query(
            "SELECT id, kind, place_id, path, person_id, token_hash FROM devices WHERE id = $1 AND disabled = 0",
        )
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(r.as_ref().map(auth_from_row))
    }

    /// A device by its token, for HTTP ingest.
    pub async fn device_by_token(&self, token: &str) -> AppResult<Option<DeviceAuth>> {
        let r = sqlx::query(
            "SELECT id, kind, place_id, path, person_id, token_hash FROM devices WHERE token_hash = $1 AND disabled = 0",
        )
        .bind(token_hash(token))
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(r.as_ref().map(auth_from_row))
    }
}
