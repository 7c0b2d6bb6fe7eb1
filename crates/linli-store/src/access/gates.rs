//! Gates, the plate blacklist, residents' vehicles and the fever threshold.

use serde::{Deserialize, Serialize};
use serde_json::json;

use linli_core::access::{DEFAULT_FEVER_X10, parse_plate, valid_temperature_x10};
use linli_core::auth::{Action, Grant, Principal};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err, i64_, opt_str, str_};
use crate::registry::households::HouseholdRow;

pub const GATE_KINDS: [&str; 2] = ["face", "vehicle"];
/// Who may read gates: access staff, device administrators and gate terminals.
pub const GATE_READERS: [Action; 3] = [
    Action::AccessRead,
    Action::DeviceAdmin,
    Action::VisitorVerify,
];
const FEVER_KEY: &str = "access.fever_x10";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Gate {
    pub id: String,
    pub name: String,
    pub place_id: String,
    /// The community or building entrance, as an address.
    pub place: String,
    #[serde(skip)]
    pub path: String,
    /// `face` (pedestrian face terminal) or `vehicle` (vehicle barrier).
    pub kind: String,
    /// The IoT device registry id of the terminal, if registered.
    pub device_id: Option<String>,
    pub active: bool,
    pub version: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewGate {
    pub name: String,
    /// A community or building.
    pub place_id: String,
    /// `face` or `vehicle`.
    pub kind: String,
    pub device_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct GatePatch {
    pub version: i64,
    pub name: Option<String>,
    /// Empty string removes the link.
    pub device_id: Option<String>,
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GateQuery {
    /// Only gates under this place.
    pub place_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BlacklistEntry {
    pub id: String,
    pub plate: String,
    pub place_id: String,
    pub reason: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewBlacklistEntry {
    pub plate: String,
    /// Where the entry applies (gates under this place).
    pub place_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Vehicle {
    pub id: String,
    pub household_id: String,
    pub plate: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewVehicle {
    /// The household; residents may leave it out (their own).
    pub household_id: Option<String>,
    pub plate: String,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VehicleQuery {
    /// The household (residents: their own by default).
    pub household_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccessSettings {
    /// Readings at or above this (tenths of °C) raise a fever alarm. Default 373 (37.3 °C).
    pub fever_threshold_x10: i64,
}

pub(crate) fn bad(field: &str) -> AppError {
    AppError::bad_request("validation.bad_value").arg("field", field)
}

pub(crate) fn check_text(field: &str, v: &str, max: usize) -> AppResult<String> {
    let t = v.trim();
    if t.is_empty() {
        return Err(AppError::required(field));
    }
    if t.chars().count() > max {
        return Err(AppError::bad_request("validation.too_long").arg("field", field));
    }
    Ok(t.to_string())
}

pub(crate) fn plate(v: &str) -> AppResult<String> {
    parse_plate(v).ok_or(AppError::bad_request("access.plate.invalid"))
}

fn gate_from_row(r: &sqlx::any::AnyRow) -> Gate {
    Gate {
        id: str_(r, "id"),
        name: str_(r, "name"),
        place_id: str_(r, "place_id"),
        place: String::new(),
        path: str_(r, "path"),
        kind: str_(r, "kind"),
        device_id: opt_str(r, "device_id"),
        active: i64_(r, "active") != 0,
        version: i64_(r, "version"),
        created_at: i64_(r, "created_at"),
    }
}

const GATE_COLS: &str = "id, name, place_id, path, kind, device_id, active, version, created_at";

fn gate_json(g: &Gate) -> serde_json::Value {
    json!({ "name": g.name, "place_id": g.place_id, "kind": g.kind, "device_id": g.device_id, "active": g.active })
}

impl Store {
    pub(crate) async fn gate_unscoped(&self, id: &str) -> AppResult<Option<Gate>> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GATE_COLS} FROM gates WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(r.as_ref().map(gate_from_row))
    }

    /// One gate inside the grant (any access capability); not found outside it.
    pub async fn gate(&self, grant: &Grant, id: &str) -> AppResult<Gate> {
        let scope = grant.scope_in(&GATE_READERS)?;
        match self.gate_unscoped(id).await? {
            Some(mut g) if scope.covers(&g.path) => {
                g.place = self.address(&g.path).await?;
                Ok(g)
            }
            _ => Err(AppError::not_found("access.gate.not_found")),
        }
    }

    /// Gates in the grant's area (AccessRead, DeviceAdmin or VisitorVerify).
    pub async fn gates(&self, grant: &Grant, q: &GateQuery) -> AppResult<Vec<Gate>> {
        let scope = grant.scope_in(&GATE_READERS)?;
        let mut s = Sql::new(&format!("SELECT {GATE_COLS} FROM gates WHERE "));
        s.scope("path", scope.prefixes());
        if let Some(pid) = q.place_id.as_deref().filter(|x| !x.is_empty()) {
            let p = self
                .place_unscoped(pid)
                .await?
                .ok_or(AppError::not_found("registry.place.not_found"))?;
            s.push(" AND ").scope("path", &[p.path]);
        }
        s.push(" ORDER BY path, name");
        let rows = s.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut g = gate_from_row(r);
            g.place = self.address(&g.path).await?;
            out.push(g);
        }
        Ok(out)
    }

    /// Install a gate at a community or building (DeviceAdmin over the place).
    pub async fn create_gate(&self, grant: &Grant, actor: &Actor, new: NewGate) -> AppResult<Gate> {
        let scope = grant.scope(Action::DeviceAdmin)?;
        let name = check_text("name", &new.name, 60)?;
        if !GATE_KINDS.contains(&new.kind.as_str()) {
            return Err(bad("kind"));
        }
        let device_id = match new.device_id.as_deref().map(str::trim) {
            Some("") | None => None,
            Some(d) => Some(check_text("device_id", d, 64)?),
        };
        let place = match self.place_unscoped(&new.place_id).await? {
            Some(p) if scope.covers(&p.path) => p,
            _ => return Err(AppError::not_found("registry.place.not_found")),
        };
        if !matches!(place.kind.as_str(), "community" | "building") {
            return Err(AppError::bad_request("access.gate.bad_place"));
        }
        let g = Gate {
            id: new_id(),
            name,
            place_id: place.id.clone(),
            place: String::new(),
            path: place.path.clone(),
            kind: new.kind,
            device_id,
            active: true,
            version: 1,
            created_at: self.now_ms(),
        };
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO gates (id, name, place_id, path, kind, device_id, active, version, created_at) VALUES ($1, $2, $3, $4, $5, $6, 1, 1, $7)",
        )
        .bind(g.id.clone())
        .bind(g.name.clone())
        .bind(g.place_id.clone())
        .bind(g.path.clone())
        .bind(g.kind.clone())
        .bind(g.device_id.clone())
        .bind(g.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "access.gate.create",
                entity: "gate",
                entity_id: &g.id,
                path: Some(&g.path),
                purpose: None,
                before: None,
                after: Some(gate_json(&g)),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.gate(grant, &g.id).await
    }

    /// Rename, link a device, or switch a gate off/on (send the version you read).
    pub async fn update_gate(
        &self,
        grant: &Grant,
        actor: &Actor,
        id: &str,
        patch: GatePatch,
    ) -> AppResult<Gate> {
        grant.scope(Action::DeviceAdmin)?;
        let before = self.gate(grant, id).await?;
        let mut after = before.clone();
        if let Some(n) = &patch.name {
            after.name = check_text("name", n, 60)?;
        }
        if let Some(d) = &patch.device_id {
            after.device_id = match d.trim() {
                "" => None,
                d => Some(check_text("device_id", d, 64)?),
            };
        }
        if let Some(a) = patch.active {
            after.active = a;
        }
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let r = sqlx::query(
            "UPDATE gates SET name = $1, device_id = $2, active = $3, version = version + 1 WHERE id = $4 AND version = $5",
        )
        .bind(after.name.clone())
        .bind(after.device_id.clone())
        .bind(i64::from(after.active))
        .bind(id.to_string())
        .bind(patch.version)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if r.rows_affected() != 1 {
            return Err(AppError::conflict("conflict"));
        }
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "access.gate.update",
                entity: "gate",
                entity_id: id,
                path: Some(&before.path),
                purpose: None,
                before: Some(gate_json(&before)),
                after: Some(gate_json(&after)),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.gate(grant, id).await
    }

    // ---- blacklist ----

    /// Blacklisted plates applying in the grant's area (AccessRead or DeviceAdmin).
    pub async fn blacklist(&self, grant: &Grant) -> AppResult<Vec<BlacklistEntry>> {
        let scope = grant.scope_in(&[Action::AccessRead, Action::DeviceAdmin])?;
        let mut s =
            Sql::new("SELECT id, plate, place_id, reason, created_at FROM plate_blacklist WHERE ");
        s.scope("path", scope.prefixes());
        s.push(" ORDER BY plate");
        let rows = s.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| BlacklistEntry {
                id: str_(r, "id"),
                plate: str_(r, "plate"),
                place_id: str_(r, "place_id"),
                reason: str_(r, "reason"),
                created_at: i64_(r, "created_at"),
            })
            .collect())
    }

    pub async fn add_blacklist(
        &self,
        grant: &Grant,
        actor: &Actor,
        new: NewBlacklistEntry,
    ) -> AppResult<BlacklistEntry> {
        let scope = grant.scope(Action::DeviceAdmin)?;
        let plate = plate(&new.plate)?;
        let reason = check_text("reason", &new.reason, 200)?;
        let place = match self.place_unscoped(&new.place_id).await? {
            Some(p) if scope.covers(&p.path) => p,
            _ => return Err(AppError::not_found("registry.place.not_found")),
        };
        let e = BlacklistEntry {
            id: new_id(),
            plate,
            place_id: place.id,
            reason,
            created_at: self.now_ms(),
        };
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO plate_blacklist (id, plate, place_id, path, reason, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.id.clone())
        .bind(e.plate.clone())
        .bind(e.place_id.clone())
        .bind(place.path.clone())
        .bind(e.reason.clone())
        .bind(actor.id.clone())
        .bind(e.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|err| match db_err(err) {
            c if c.code == "conflict" => AppError::conflict("access.blacklist.duplicate"),
            other => other,
        })?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "access.blacklist.add",
                entity: "plate_blacklist",
                entity_id: &e.id,
                path: Some(&place.path),
                purpose: None,
                before: None,
                after: Some(json!({ "plate": e.plate, "reason": e.reason })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(e)
    }

    pub async fn remove_blacklist(&self, grant: &Grant, actor: &Actor, id: &str) -> AppResult<()> {
        let scope = grant.scope(Action::DeviceAdmin)?;
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let row = sqlx::query("SELECT plate, path, reason FROM plate_blacklist WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(row) = row.filter(|r| scope.covers(&str_(r, "path"))) else {
            return Err(AppError::not_found("access.blacklist.not_found"));
        };
        sqlx::query("DELETE FROM plate_blacklist WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let path = str_(&row, "path");
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "access.blacklist.remove",
                entity: "plate_blacklist",
                entity_id: id,
                path: Some(&path),
                purpose: None,
                before: Some(
                    json!({ "plate": str_(&row, "plate"), "reason": str_(&row, "reason") }),
                ),
                after: None,
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    // ---- vehicles ----

    /// A household the caller may act on: their own, or one inside the grant for `action`.
    pub(crate) async fn household_for(
        &self,
        p: &Principal,
        household_id: Option<&str>,
        action: Action,
    ) -> AppResult<HouseholdRow> {
        let own = p.own_households();
        let id = match household_id.filter(|s| !s.is_empty()) {
            Some(id) => id.to_string(),
            None => own.first().cloned().ok_or(AppError::new(
                linli_core::ErrorKind::Forbidden,
                "registry.not_a_resident",
            ))?,
        };
        let not_found = || AppError::not_found("registry.household.not_found");
        let h = self
            .household_row_unscoped(&id)
            .await?
            .ok_or_else(not_found)?;
        if own.contains(&h.id) || p.may(action, &h.path) {
            Ok(h)
        } else {
            Err(not_found())
        }
    }

    /// A household's registered vehicles (own household, or HouseholdRead over it).
    pub async fn vehicles(
        &self,
        p: &Principal,
        household_id: Option<&str>,
    ) -> AppResult<Vec<Vehicle>> {
        let h = self
            .household_for(p, household_id, Action::HouseholdRead)
            .await?;
        let rows = sqlx::query(
            "SELECT id, household_id, plate, created_at FROM vehicles WHERE household_id = $1 ORDER BY plate",
        )
        .bind(h.id)
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| Vehicle {
                id: str_(r, "id"),
                household_id: str_(r, "household_id"),
                plate: str_(r, "plate"),
                created_at: i64_(r, "created_at"),
            })
            .collect())
    }

    /// Register a household's vehicle, so barriers let it in as a resident's.
    pub async fn add_vehicle(
        &self,
        p: &Principal,
        actor: &Actor,
        new: NewVehicle,
    ) -> AppResult<Vehicle> {
        let h = self
            .household_for(p, new.household_id.as_deref(), Action::HouseholdWrite)
            .await?;
        let v = Vehicle {
            id: new_id(),
            household_id: h.id.clone(),
            plate: plate(&new.plate)?,
            created_at: self.now_ms(),
        };
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO vehicles (id, household_id, path, plate, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(v.id.clone())
        .bind(v.household_id.clone())
        .bind(h.path.clone())
        .bind(v.plate.clone())
        .bind(v.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|err| match db_err(err) {
            c if c.code == "conflict" => AppError::conflict("access.vehicle.plate_taken"),
            other => other,
        })?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "access.vehicle.add",
                entity: "vehicle",
                entity_id: &v.id,
                path: Some(&h.path),
                purpose: None,
                before: None,
                after: Some(json!({ "household_id": v.household_id, "plate": v.plate })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(v)
    }

    pub async fn remove_vehicle(&self, p: &Principal, actor: &Actor, id: &str) -> AppResult<()> {
        let row = sqlx::query("SELECT household_id, plate FROM vehicles WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await
            .map_err(db_err)?
            .ok_or(AppError::not_found("access.vehicle.not_found"))?;
        let h = self
            .household_for(p, Some(&str_(&row, "household_id")), Action::HouseholdWrite)
            .await
            .map_err(|_| AppError::not_found("access.vehicle.not_found"))?;
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let r = sqlx::query("DELETE FROM vehicles WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if r.rows_affected() != 1 {
            return Err(AppError::not_found("access.vehicle.not_found"));
        }
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "access.vehicle.remove",
                entity: "vehicle",
                entity_id: id,
                path: Some(&h.path),
                purpose: None,
                before: Some(json!({ "household_id": h.id, "plate": str_(&row, "plate") })),
                after: None,
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    // ---- settings ----

    pub async fn access_settings(&self) -> AppResult<AccessSettings> {
        let r = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(FEVER_KEY)
            .fetch_optional(&self.db.read)
            .await
            .map_err(db_err)?;
        let fever = r
            .and_then(|r| str_(&r, "value").parse::<i64>().ok())
            .unwrap_or(DEFAULT_FEVER_X10);
        Ok(AccessSettings {
            fever_threshold_x10: fever,
        })
    }

    /// Change the fever threshold: a platform-wide setting, so only DeviceAdmin over the whole
    /// tree may change it.
    pub async fn set_access_settings(
        &self,
        grant: &Grant,
        actor: &Actor,
        new: AccessSettings,
    ) -> AppResult<AccessSettings> {
        // The top of the tree: the root or a city (`/city/`).
        let scope = grant.scope(Action::DeviceAdmin)?;
        let whole_tree = scope.prefixes().iter().any(|x| x.matches('/').count() <= 2);
        if !whole_tree {
            return Err(AppError::forbidden());
        }
        if !valid_temperature_x10(new.fever_threshold_x10) || new.fever_threshold_x10 < 350 {
            return Err(bad("fever_threshold_x10"));
        }
        let before = self.access_settings().await?;
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(FEVER_KEY)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2)")
            .bind(FEVER_KEY)
            .bind(new.fever_threshold_x10.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "access.settings.update",
                entity: "settings",
                entity_id: FEVER_KEY,
                path: None,
                purpose: None,
                before: Some(json!(before)),
                after: Some(json!(new)),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(new)
    }
}
