//! API tokens for integrations: shown once, stored as SHA-256, limited to a subset of the
//! creator's actions inside one subtree, with an expiry. The token acts with the creator's
//! bindings narrowed by those limits, so it can never do more than its creator.

use serde::{Deserialize, Serialize};

use linli_core::auth::{Action, Principal, TokenLimit};
use linli_core::crypto::{random_token, sha256_hex};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err, i64_, opt_i64, str_};

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    pub name: String,
    /// Action names (GET /api/v1/roles lists them).
    pub actions: Vec<String>,
    /// The subtree the token is limited to.
    pub place_id: String,
    /// Days until expiry (1–366, default 90).
    pub expires_in_days: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub actions: Vec<Action>,
    pub place_id: String,
    pub expires_at: i64,
    pub created_at: i64,
    pub revoked: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// The secret: shown only in this response.
    pub token: String,
    pub info: TokenInfo,
}

impl Store {
    pub async fn create_token(
        &self,
        creator: &Principal,
        new: NewToken,
    ) -> AppResult<CreatedToken> {
        creator.grant(Action::TokenCreate)?;
        if creator.token().is_some() {
            // Tokens do not mint tokens.
            return Err(AppError::forbidden());
        }
        if new.name.trim().is_empty() {
            return Err(AppError::required("name"));
        }
        if new.actions.is_empty() {
            return Err(AppError::required("actions"));
        }
        let days = new.expires_in_days.unwrap_or(90);
        if !(1..=366).contains(&days) {
            return Err(
                AppError::bad_request("validation.bad_value").arg("field", "expires_in_days")
            );
        }
        let place = self
            .place_unscoped(&new.place_id)
            .await?
            .ok_or(AppError::not_found("registry.place.not_found"))?;
        let mut actions: Vec<Action> = Vec::new();
        for n in &new.actions {
            let a = self.catalog().action(n).ok_or_else(|| {
                AppError::bad_request("validation.bad_value")
                    .arg("field", "actions")
                    .arg("value", n.clone())
            })?;
            if !actions.contains(&a) {
                actions.push(a);
            }
        }
        for a in &actions {
            if !creator.may(*a, &place.path) {
                return Err(AppError::forbidden()
                    .details(serde_json::json!({ "reason": "auth.token_scope", "action": a })));
            }
        }
        let secret = format!("llt_{}", random_token(32));
        let info = TokenInfo {
            id: new_id(),
            name: new.name.trim().to_string(),
            actions,
            place_id: place.id.clone(),
            expires_at: self.now_ms() + days * 24 * 3600 * 1000,
            created_at: self.now_ms(),
            revoked: false,
        };
        let actions: Vec<&str> = info.actions.iter().map(|a| a.as_str()).collect();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, user_id, name, actions, place_id, path, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(info.id.clone())
        .bind(sha256_hex(secret.as_bytes()))
        .bind(creator.user_id().to_string())
        .bind(info.name.clone())
        .bind(serde_json::to_string(&actions).unwrap_or_default())
        .bind(place.id.clone())
        .bind(place.path.clone())
        .bind(info.expires_at)
        .bind(info.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.audit(
            &mut tx,
            &Actor::from(creator),
            Entry {
                action: "token.create",
                entity: "token",
                entity_id: &info.id,
                path: Some(&place.path),
                purpose: None,
                before: None,
                after: Some(serde_json::json!({ "name": info.name, "actions": actions, "place_id": place.id, "expires_at": info.expires_at })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(CreatedToken {
            token: secret,
            info,
        })
    }

    /// Resolve a bearer token into a principal narrowed by the token's limits.
    pub async fn token_principal(&self, secret: &str) -> AppResult<Option<Principal>> {
        let q = Sql::new("SELECT user_id, actions, path FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2")
            .arg(sha256_hex(secret.as_bytes()))
            .arg(self.now_ms());
        let Some(row) = self.db.fetch_optional_fast(&q).await? else {
            return Ok(None);
        };
        let Some(p) = self.principal(&row.str("user_id")).await? else {
            return Ok(None);
        };
        let names: Vec<String> =
            serde_json::from_str(row.opt_str_ref("actions").unwrap_or("[]")).unwrap_or_default();
        Ok(Some(
            p.limited_by(TokenLimit {
                actions: names
                    .iter()
                    .filter_map(|n| self.catalog().action(n))
                    .collect(),
                prefix: row.str("path"),
            }),
        ))
    }

    pub async fn tokens(&self, p: &Principal) -> AppResult<Vec<TokenInfo>> {
        let rows = sqlx::query("SELECT id, name, actions, place_id, expires_at, created_at, revoked_at FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC")
            .bind(p.user_id().to_string())
            .fetch_all(&self.db.read)
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| TokenInfo {
                id: str_(r, "id"),
                name: str_(r, "name"),
                actions: serde_json::from_str::<Vec<String>>(&str_(r, "actions"))
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|n| self.catalog().action(n))
                    .collect(),
                place_id: str_(r, "place_id"),
                expires_at: i64_(r, "expires_at"),
                created_at: i64_(r, "created_at"),
                revoked: opt_i64(r, "revoked_at").is_some(),
            })
            .collect())
    }

    pub async fn revoke_token(&self, p: &Principal, id: &str) -> AppResult<()> {
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let res = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
            .bind(self.now_ms())
            .bind(id.to_string())
            .bind(p.user_id().to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if res.rows_affected() != 1 {
            return Err(AppError::not_found("not_found"));
        }
        self.audit(
            &mut tx,
            &Actor::from(p),
            Entry {
                action: "token.revoke",
                entity: "token",
                entity_id: id,
                path: None,
                purpose: None,
                before: None,
                after: None,
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.publish_account_revoked(p.user_id());
        Ok(())
    }
}
