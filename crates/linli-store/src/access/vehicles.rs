//! Residents' vehicles: registered plates that barriers let in as a resident's.

use serde::{Deserialize, Serialize};
use serde_json::json;

use linli_core::auth::{Action, Principal};
use linli_core::{AppError, AppResult, new_id};

use super::plate;
use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{db_err, i64_, str_};
use crate::registry::households::HouseholdRow;

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

impl Store {
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
}
