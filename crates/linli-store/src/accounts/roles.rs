//! Roles as data. The built-in templates come from the modules' catalogue (each module adds its
//! actions to them); custom roles are composed by an administrator from actions they hold
//! themselves, at a place whose subtree the role may then be bound in. Every change is audited;
//! a changed role takes effect at the next resolution of its holders (the resolution is not
//! cached beyond the server's few-second principal cache).

use serde::{Deserialize, Serialize};
use serde_json::json;

use linli_core::auth::{Action, CUSTOM_PREFIX, Principal, Role, RoleDef, RoleKind};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err};

/// One action as the roles page shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActionView {
    pub name: Action,
    /// The module that declared it.
    pub module: String,
    /// Reveal, export, payments, votes administration …: named as such where roles are composed.
    pub sensitive: bool,
}

/// A role: a built-in template, or a custom role of an area.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RoleView {
    pub code: Role,
    pub kind: RoleKind,
    pub builtin: bool,
    /// Custom roles: id, name, the place whose subtree it may be bound in, version.
    pub id: Option<String>,
    pub name: Option<String>,
    pub place_id: Option<String>,
    pub based_on: Option<String>,
    pub version: Option<i64>,
    pub actions: Vec<Action>,
}

/// Everything an administrator composes roles from.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RolesOverview {
    pub actions: Vec<ActionView>,
    pub builtin: Vec<RoleView>,
    /// Custom roles defined inside the caller's area.
    pub custom: Vec<RoleView>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewRole {
    pub name: String,
    /// `area`, `unit` or `member` (residents have the built-in resident role).
    pub kind: RoleKind,
    /// Where the role is defined: it can be bound inside this place's subtree only.
    pub place_id: String,
    /// Action names (GET /api/v1/roles lists them).
    pub actions: Vec<String>,
    /// The template it started from (informative).
    pub based_on: Option<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct RolePatch {
    /// The version the caller read; a mismatch is a 409.
    pub version: i64,
    pub name: Option<String>,
    pub actions: Option<Vec<String>>,
}

/// A custom role row.
#[derive(Debug, Clone)]
pub(crate) struct CustomRole {
    pub id: String,
    pub code: String,
    pub name: String,
    pub kind: RoleKind,
    pub place_id: String,
    pub path: String,
    pub actions: Vec<Action>,
    pub based_on: Option<String>,
    pub version: i64,
}

impl CustomRole {
    fn def(&self) -> RoleDef {
        RoleDef {
            role: Role::from_code(&self.code),
            kind: self.kind,
            actions: self.actions.clone().into(),
        }
    }
    fn view(&self) -> RoleView {
        RoleView {
            code: Role::from_code(&self.code),
            kind: self.kind,
            builtin: false,
            id: Some(self.id.clone()),
            name: Some(self.name.clone()),
            place_id: Some(self.place_id.clone()),
            based_on: self.based_on.clone(),
            version: Some(self.version),
            actions: self.actions.clone(),
        }
    }
}

const COLS: &str = "id, code, name, kind, place_id, path, actions, based_on, version";

fn bad(field: &str) -> AppError {
    AppError::bad_request("validation.bad_value").arg("field", field.to_string())
}

impl Store {
    /// A role by code: a built-in template with every module's actions, or a custom role.
    pub async fn role_def(&self, code: &str) -> AppResult<Option<RoleDef>> {
        if let Some(d) = self.catalog().role(code) {
            return Ok(Some(d.clone()));
        }
        if !code.starts_with(CUSTOM_PREFIX) {
            return Ok(None);
        }
        Ok(self.custom_role_by("code", code).await?.map(|r| r.def()))
    }

    /// Where a custom role may be bound (its place's path); `None` for built-in roles.
    pub(crate) async fn custom_role_path(&self, code: &str) -> AppResult<Option<String>> {
        if !code.starts_with(CUSTOM_PREFIX) {
            return Ok(None);
        }
        Ok(self.custom_role_by("code", code).await?.map(|r| r.path))
    }

    async fn custom_role_by(&self, column: &str, value: &str) -> AppResult<Option<CustomRole>> {
        let q = Sql::new(&format!("SELECT {COLS} FROM roles WHERE {column} = $1")).arg(value);
        let Some(r) = self.db.fetch_optional_fast(&q).await? else {
            return Ok(None);
        };
        let names: Vec<String> =
            serde_json::from_str(r.opt_str_ref("actions").unwrap_or("[]")).unwrap_or_default();
        Ok(Some(CustomRole {
            id: r.str("id"),
            code: r.str("code"),
            name: r.str("name"),
            kind: RoleKind::parse(r.opt_str_ref("kind").unwrap_or_default())
                .unwrap_or(RoleKind::Member),
            place_id: r.str("place_id"),
            path: r.str("path"),
            // An action whose module is gone is dropped, never widened into something else.
            actions: names
                .iter()
                .filter_map(|n| self.catalog().action(n))
                .collect(),
            based_on: r.opt_str("based_on"),
            version: r.i64("version"),
        }))
    }

    /// The actions, the built-in roles, and the custom roles of the caller's area (role or user
    /// administrators).
    pub async fn roles_overview(&self, p: &Principal) -> AppResult<RolesOverview> {
        let g = p
            .grant(Action::RoleAdmin)
            .or_else(|_| p.grant(Action::UserAdmin))?;
        let scope = g.scope_in(&[Action::RoleAdmin, Action::UserAdmin])?;
        let cat = self.catalog();
        let actions = cat
            .actions()
            .iter()
            .map(|a| ActionView {
                name: a.action,
                module: cat.module_of(a.action).unwrap_or_default().to_string(),
                sensitive: a.sensitive,
            })
            .collect();
        let builtin = cat
            .roles()
            .iter()
            .map(|r| RoleView {
                code: r.role.clone(),
                kind: r.kind,
                builtin: true,
                id: None,
                name: None,
                place_id: None,
                based_on: None,
                version: None,
                actions: r.actions.to_vec(),
            })
            .collect();
        let mut q = Sql::new("SELECT code FROM roles WHERE ");
        q.scope("path", scope.prefixes()).push(" ORDER BY name");
        let mut custom = Vec::new();
        for r in self.db.fetch_all_fast(&q).await? {
            if let Some(c) = self.custom_role_by("code", &r.str("code")).await? {
                custom.push(c.view());
            }
        }
        Ok(RolesOverview {
            actions,
            builtin,
            custom,
        })
    }

    /// One custom role of the caller's area.
    pub async fn role(&self, p: &Principal, id: &str) -> AppResult<RoleView> {
        Ok(self.custom_role_for(p, id).await?.view())
    }

    async fn custom_role_for(&self, p: &Principal, id: &str) -> AppResult<CustomRole> {
        let g = p
            .grant(Action::RoleAdmin)
            .or_else(|_| p.grant(Action::UserAdmin))?;
        let scope = g.scope_in(&[Action::RoleAdmin, Action::UserAdmin])?;
        match self.custom_role_by("id", id).await? {
            Some(r) if scope.covers(&r.path) => Ok(r),
            _ => Err(AppError::not_found("role.not_found")),
        }
    }

    /// Check and resolve action names: each must be declared, and held by `p` over `path` —
    /// an administrator never composes more than they hold.
    fn composable(&self, p: &Principal, path: &str, names: &[String]) -> AppResult<Vec<Action>> {
        if names.is_empty() {
            return Err(AppError::required("actions"));
        }
        let mut out: Vec<Action> = Vec::new();
        for n in names {
            let a = self
                .catalog()
                .action(n)
                .ok_or_else(|| bad("actions").arg("value", n.clone()))?;
            if !p.may(a, path) {
                return Err(AppError::forbidden()
                    .details(json!({ "reason": "role.beyond_own", "action": a })));
            }
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Compose a custom role at a place inside the caller's role-administration area.
    pub async fn create_role(&self, p: &Principal, new: NewRole) -> AppResult<RoleView> {
        let admin = p.grant(Action::RoleAdmin)?;
        let name = new.name.trim();
        if name.is_empty() {
            return Err(AppError::required("name"));
        }
        if name.chars().count() > 40 {
            return Err(AppError::bad_request("validation.too_long").arg("field", "name"));
        }
        if new.kind == RoleKind::Household {
            return Err(bad("kind"));
        }
        let place = self
            .place_unscoped(&new.place_id)
            .await?
            .filter(|pl| admin.allows(Action::RoleAdmin, &pl.path))
            .ok_or(AppError::not_found("registry.place.not_found"))?;
        let actions = self.composable(p, &place.path, &new.actions)?;
        let based_on = match new.based_on.as_deref().filter(|b| !b.is_empty()) {
            Some(b) if self.catalog().role(b).is_some() => Some(b.to_string()),
            Some(_) => return Err(bad("based_on")),
            None => None,
        };
        let id = new_id();
        let code = format!("{CUSTOM_PREFIX}{}", id.replace('-', ""));
        let names: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO roles (id, code, name, kind, place_id, path, actions, based_on, version, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $10)",
        )
        .bind(id.clone())
        .bind(code.clone())
        .bind(name.to_string())
        .bind(new.kind.as_str())
        .bind(place.id.clone())
        .bind(place.path.clone())
        .bind(serde_json::to_string(&names).unwrap_or_default())
        .bind(based_on.clone())
        .bind(p.user_id().to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.audit(
            &mut tx,
            &Actor::from(p),
            Entry {
                action: "role.create",
                entity: "role",
                entity_id: &id,
                path: Some(&place.path),
                purpose: None,
                before: None,
                after: Some(json!({ "name": name, "kind": new.kind, "actions": names, "place_id": place.id })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.role(p, &id).await
    }

    /// Rename a custom role or change its actions (guarded by its version). Its holders get the
    /// new actions at their next request after the principal cache (a few seconds).
    pub async fn update_role(
        &self,
        p: &Principal,
        id: &str,
        patch: RolePatch,
    ) -> AppResult<RoleView> {
        p.grant(Action::RoleAdmin)?;
        let before = self.custom_role_for(p, id).await?;
        if !p.may(Action::RoleAdmin, &before.path) {
            return Err(AppError::not_found("role.not_found"));
        }
        let name = match patch.name.as_deref().map(str::trim) {
            Some("") => return Err(AppError::required("name")),
            Some(n) if n.chars().count() > 40 => {
                return Err(AppError::bad_request("validation.too_long").arg("field", "name"));
            }
            Some(n) => n.to_string(),
            None => before.name.clone(),
        };
        let actions = match &patch.actions {
            Some(names) => self.composable(p, &before.path, names)?,
            None => before.actions.clone(),
        };
        let names: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let done = sqlx::query(
            "UPDATE roles SET name = $1, actions = $2, version = version + 1, updated_at = $3 WHERE id = $4 AND version = $5",
        )
        .bind(name.clone())
        .bind(serde_json::to_string(&names).unwrap_or_default())
        .bind(self.now_ms())
        .bind(id.to_string())
        .bind(patch.version)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() != 1 {
            return Err(AppError::conflict("version_conflict"));
        }
        let before_names: Vec<&str> = before.actions.iter().map(|a| a.as_str()).collect();
        self.audit(
            &mut tx,
            &Actor::from(p),
            Entry {
                action: "role.update",
                entity: "role",
                entity_id: id,
                path: Some(&before.path),
                purpose: None,
                before: Some(json!({ "name": before.name, "actions": before_names })),
                after: Some(json!({ "name": name, "actions": names })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.role(p, id).await
    }

    /// Delete a custom role nobody holds (unbind its holders first: a deletion must not take
    /// anyone's work away silently).
    pub async fn delete_role(&self, p: &Principal, id: &str) -> AppResult<()> {
        p.grant(Action::RoleAdmin)?;
        let role = self.custom_role_for(p, id).await?;
        if !p.may(Action::RoleAdmin, &role.path) {
            return Err(AppError::not_found("role.not_found"));
        }
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let held = sqlx::query("SELECT 1 AS x FROM role_bindings WHERE role = $1 LIMIT 1")
            .bind(role.code.clone())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if held.is_some() {
            return Err(AppError::conflict("role.in_use"));
        }
        sqlx::query("DELETE FROM roles WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        self.audit(
            &mut tx,
            &Actor::from(p),
            Entry {
                action: "role.delete",
                entity: "role",
                entity_id: id,
                path: Some(&role.path),
                purpose: None,
                before: Some(json!({ "name": role.name, "code": role.code })),
                after: None,
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)
    }
}
