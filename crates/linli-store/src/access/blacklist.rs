//! The plate blacklist: plates that raise an alarm at the barriers of an area.

use serde::{Deserialize, Serialize};
use serde_json::json;

use linli_core::auth::{Action, Grant};
use linli_core::{AppError, AppResult, new_id};

use super::{check_text, plate};
use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err, i64_, str_};

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

impl Store {
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
}
