//! Access settings: the fever threshold.

use serde::{Deserialize, Serialize};
use serde_json::json;

use linli_core::access::{DEFAULT_FEVER_X10, valid_temperature_x10};
use linli_core::auth::{Action, Grant};
use linli_core::{AppError, AppResult};

use super::bad;
use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{db_err, str_};

const FEVER_KEY: &str = "access.fever_x10";

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccessSettings {
    /// Readings at or above this (tenths of °C) raise a fever alarm. Default 373 (37.3 °C).
    pub fever_threshold_x10: i64,
}

impl Store {
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
