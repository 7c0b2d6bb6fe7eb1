//! Gates: face terminals and vehicle barriers at community or building entrances.

use serde::{Deserialize, Serialize};
use serde_json::json;

use linli_core::auth::{Action, Grant};
use linli_core::{AppError, AppResult, new_id};

use super::{bad, check_text};
use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err, i64_, opt_str, str_};

pub const GATE_KINDS: [&str; 2] = ["face", "vehicle"];
/// Who may read gates: access staff, device administrators and gate terminals.
pub const GATE_READERS: [Action; 3] = [
    Action::AccessRead,
    Action::DeviceAdmin,
    Action::VisitorVerify,
];

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
}
