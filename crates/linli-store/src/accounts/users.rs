//! User accounts and role bindings (role × place, or role × organisation, or resident × household).

use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};

use linli_core::auth::{Action, Binding, Grant, Principal, PrincipalParts, Role, RoleKind};
use linli_core::{AppError, AppResult, new_id, password, phone};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err, i64_, opt_str, str_};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BindingSpec {
    pub role: Role,
    /// The place whose subtree the role covers (most roles).
    pub place_id: Option<String>,
    /// The organisation (property company: every community it serves; department: its place).
    pub org_id: Option<String>,
    /// The household (residents).
    pub household_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    pub id: String,
    pub login: String,
    pub display_name: String,
    /// A disabled account cannot sign in; its sessions and API tokens were ended when it was
    /// disabled.
    pub disabled: bool,
    pub bindings: Vec<BindingSpec>,
    /// Whether the reader may disable or enable this account (user admin over every one of
    /// its bindings, and not their own): the users page shows the button by it.
    #[serde(skip)]
    pub manageable: bool,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    pub login: String,
    pub display_name: String,
    pub password: String,
    /// Mobile number the user may also sign in with.
    pub phone: Option<String>,
    pub person_id: Option<String>,
    pub bindings: Vec<BindingSpec>,
}

fn validate_login(login: &str) -> AppResult<String> {
    let l = login.trim();
    let ok = (3..=40).contains(&l.len())
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(AppError::bad_request("validation.bad_value").arg("field", "login"));
    }
    Ok(l.to_ascii_lowercase())
}

pub(crate) async fn insert_user(
    tx: &mut Transaction<'static, Any>,
    now: i64,
    login: &str,
    display_name: &str,
    password_hash: &str,
    phone_bidx: Option<String>,
    person_id: Option<String>,
) -> AppResult<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO users (id, login, phone_bidx, display_name, password_hash, person_id, disabled, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
    )
    .bind(id.clone())
    .bind(login.to_string())
    .bind(phone_bidx)
    .bind(display_name.to_string())
    .bind(password_hash.to_string())
    .bind(person_id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| match db_err(e) {
        e if e.code == "conflict" => AppError::conflict("user.login_taken"),
        e => e,
    })?;
    Ok(id)
}

pub(crate) async fn insert_binding(
    tx: &mut Transaction<'static, Any>,
    now: i64,
    user_id: &str,
    b: &BindingSpec,
) -> AppResult<()> {
    sqlx::query("INSERT INTO role_bindings (id, user_id, role, place_id, org_id, household_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(new_id())
        .bind(user_id.to_string())
        .bind(b.role.as_str())
        .bind(b.place_id.clone())
        .bind(b.org_id.clone())
        .bind(b.household_id.clone())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Bus event kind: an account's sessions or tokens were ended (disabled, password changed, a
/// token revoked); every instance drops the account from its caches.
pub const ACCOUNT_REVOKED: &str = "account.revoked";

/// Revoke every live API token of a user; how many.
pub(crate) async fn revoke_tokens_of(
    tx: &mut Transaction<'static, Any>,
    user_id: &str,
    now: i64,
) -> AppResult<u64> {
    Ok(sqlx::query(
        "UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(user_id.to_string())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?
    .rows_affected())
}

/// What a login resolves to.
pub struct Credentials {
    pub user_id: String,
    pub password_hash: String,
    pub disabled: bool,
}

impl Store {
    /// Find an account by login name or by mobile number.
    pub async fn credentials(&self, login: &str) -> AppResult<Option<Credentials>> {
        let login = login.trim();
        let row = match phone::parse_mobile(login) {
            Some(m) => sqlx::query(
                "SELECT id, password_hash, disabled FROM users WHERE phone_bidx = $1 OR login = $2",
            )
            .bind(self.cipher.blind_index("phone", &m))
            .bind(login.to_ascii_lowercase())
            .fetch_optional(&self.db.read)
            .await,
            None => {
                sqlx::query("SELECT id, password_hash, disabled FROM users WHERE login = $1")
                    .bind(login.to_ascii_lowercase())
                    .fetch_optional(&self.db.read)
                    .await
            }
        }
        .map_err(db_err)?;
        Ok(row.map(|r| Credentials {
            user_id: str_(&r, "id"),
            password_hash: str_(&r, "password_hash"),
            disabled: i64_(&r, "disabled") != 0,
        }))
    }

    /// Load a user with their effective bindings (paths resolved).
    pub async fn principal(&self, user_id: &str) -> AppResult<Option<Principal>> {
        let q = Sql::new("SELECT id, login, display_name, disabled FROM users WHERE id = $1")
            .arg(user_id);
        let Some(u) = self.db.fetch_optional_fast(&q).await? else {
            return Ok(None);
        };
        if u.flag("disabled") {
            return Ok(None);
        }
        let q = Sql::new(
            "SELECT role, place_id, org_id, household_id FROM role_bindings WHERE user_id = $1",
        )
        .arg(user_id);
        let rows = self.db.fetch_all_fast(&q).await?;
        let mut bindings = Vec::new();
        for r in &rows {
            // A binding to a role nobody declares any more (a removed module, a deleted custom
            // role) carries nothing.
            let Some(def) = self
                .role_def(r.opt_str_ref("role").unwrap_or_default())
                .await?
            else {
                continue;
            };
            let mut prefixes = Vec::new();
            let mut node_id = String::new();
            if let Some(pid) = r.opt_str_ref("place_id")
                && let Some(p) = self.place_unscoped(pid).await?
            {
                prefixes.push(p.path);
                node_id = p.id;
            }
            if let Some(oid) = r.opt_str("org_id") {
                let q = Sql::new("SELECT kind, path FROM orgs WHERE id = $1").arg(&oid);
                if let Some(org) = self.db.fetch_optional_fast(&q).await? {
                    if org.opt_str_ref("kind") == Some("property_company") {
                        for pid in self.org_serves(&oid).await? {
                            if let Some(p) = self.place_unscoped(&pid).await? {
                                prefixes.push(p.path);
                            }
                        }
                    } else {
                        prefixes.push(org.str("path"));
                    }
                    node_id = oid;
                }
            }
            bindings.push(Binding::new(
                &def,
                node_id,
                prefixes,
                r.opt_str("household_id"),
            ));
        }
        Ok(Some(Principal::assemble(PrincipalParts {
            user_id: u.str("id"),
            login: u.str("login"),
            display_name: u.str("display_name"),
            bindings,
            token: None,
        })))
    }

    /// The person record linked to the caller's account, if any.
    pub async fn own_person_id(&self, p: &Principal) -> AppResult<Option<String>> {
        let r = sqlx::query("SELECT person_id FROM users WHERE id = $1")
            .bind(p.user_id().to_string())
            .fetch_optional(&self.db.read)
            .await
            .map_err(db_err)?;
        Ok(r.and_then(|r| opt_str(&r, "person_id")))
    }

    /// Check that `creator` could itself do everything `spec` would allow, where it would allow it.
    async fn check_binding_allowed(
        &self,
        creator: &Principal,
        spec: &BindingSpec,
    ) -> AppResult<()> {
        let def = self
            .role_def(spec.role.as_str())
            .await?
            .ok_or_else(|| AppError::bad_request("validation.bad_value").arg("field", "role"))?;
        let household = def.kind == RoleKind::Household;
        let shape_ok = match (&spec.place_id, &spec.org_id, &spec.household_id) {
            (Some(_), None, None) | (None, Some(_), None) => !household,
            (None, None, Some(_)) => household,
            _ => false,
        };
        if !shape_ok {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "bindings"));
        }
        let paths = self.binding_paths(spec).await?;
        // A custom role is bound inside the area it was defined for.
        if let Some(role_path) = self.custom_role_path(spec.role.as_str()).await?
            && !paths.iter().all(|p| p.starts_with(role_path.as_str()))
        {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "bindings"));
        }
        creator.grant(Action::UserAdmin)?;
        for path in &paths {
            if !creator.may(Action::UserAdmin, path) {
                return Err(AppError::forbidden());
            }
            for a in def.actions.iter() {
                if !creator.may(*a, path) {
                    return Err(AppError::forbidden());
                }
            }
        }
        Ok(())
    }

    /// The place paths a binding covers: its place's; an organisation's (a property company:
    /// every community it serves); a household's.
    async fn binding_paths(&self, spec: &BindingSpec) -> AppResult<Vec<String>> {
        Ok(match (&spec.place_id, &spec.org_id, &spec.household_id) {
            (Some(pid), _, _) => vec![
                self.place_unscoped(pid)
                    .await?
                    .ok_or(AppError::not_found("registry.place.not_found"))?
                    .path,
            ],
            (None, Some(oid), _) => {
                let org = self.org(&Grant::system(Action::OrgRead), oid).await?;
                if org.kind == "property_company" {
                    let mut v = Vec::new();
                    for s in org.serves {
                        v.extend(self.place_unscoped(&s).await?.map(|p| p.path));
                    }
                    v
                } else {
                    vec![
                        self.place_unscoped(&org.place_id)
                            .await?
                            .ok_or(AppError::not_found("registry.org.not_found"))?
                            .path,
                    ]
                }
            }
            (None, None, Some(hid)) => vec![
                self.household_row_unscoped(hid)
                    .await?
                    .ok_or(AppError::not_found("registry.household.not_found"))?
                    .path,
            ],
            _ => Vec::new(),
        })
    }

    /// Whether `admin` holds user admin over every place an account's bindings cover (an
    /// account without bindings: only administrators of the whole tree).
    async fn administers_all(&self, admin: &Grant, bindings: &[BindingSpec]) -> AppResult<bool> {
        let scope = admin.scope(Action::UserAdmin)?;
        if bindings.is_empty() {
            return Ok(scope.is_everywhere());
        }
        for b in bindings {
            let paths = match self.binding_paths(b).await {
                Ok(p) => p,
                Err(e) if e.kind == linli_core::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            };
            if paths.is_empty() || !paths.iter().all(|p| scope.covers(p)) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Disable (`disabled = true`) or enable an account, for a user administrator over every
    /// one of its bindings (an account bound elsewhere too is not theirs alone to stop: 403;
    /// one they cannot see at all: 404). Disabling is one audited transaction that also ends
    /// every session and revokes every API token of the account, so nothing it held keeps
    /// working; the server then drops the account from its caches (on every instance, through
    /// the bus event `account.revoked`). Enabling lets the person sign in again — their old
    /// sessions and tokens stay ended. Nobody disables their own account.
    pub async fn set_user_disabled(
        &self,
        admin: &Principal,
        user_id: &str,
        disabled: bool,
    ) -> AppResult<UserInfo> {
        let grant = admin.grant(Action::UserAdmin)?;
        if admin.token().is_some() {
            // Integrations do not stop people's accounts.
            return Err(AppError::forbidden());
        }
        let Some(info) = self
            .users(admin)
            .await?
            .into_iter()
            .find(|u| u.id == user_id)
        else {
            return Err(AppError::not_found("user.not_found"));
        };
        if user_id == admin.user_id() {
            return Err(AppError::bad_request("user.cannot_disable_self"));
        }
        if !self.administers_all(&grant, &info.bindings).await? {
            return Err(AppError::forbidden());
        }
        // Recorded where the account works, so the administrators of that area read it.
        let path = match info.bindings.first() {
            Some(b) => self.binding_paths(b).await?.into_iter().next(),
            None => None,
        };
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let changed =
            sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2 AND disabled <> $1")
                .bind(i64::from(disabled))
                .bind(user_id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
        if changed == 0 {
            // Already in that state: nothing to do, nothing to record.
            tx.rollback().await.map_err(db_err)?;
            return Ok(UserInfo { disabled, ..info });
        }
        let (mut sessions, mut tokens) = (0, 0);
        if disabled {
            sessions = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user_id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            tokens = revoke_tokens_of(&mut tx, user_id, now).await?;
        }
        self.audit(
            &mut tx,
            &Actor::from(admin),
            Entry {
                action: if disabled {
                    "user.disable"
                } else {
                    "user.enable"
                },
                entity: "user",
                entity_id: user_id,
                path: path.as_deref(),
                purpose: None,
                before: Some(serde_json::json!({ "disabled": !disabled })),
                after: Some(serde_json::json!({
                    "disabled": disabled, "sessions_ended": sessions, "tokens_revoked": tokens,
                })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.publish_account_revoked(user_id);
        Ok(UserInfo { disabled, ..info })
    }

    /// Tell every instance to forget what it cached about an account (sessions, tokens).
    pub(crate) fn publish_account_revoked(&self, user_id: &str) {
        self.bus.publish(crate::bus::BusEvent {
            kind: ACCOUNT_REVOKED.into(),
            path: String::new(),
            id: user_id.to_string(),
            users: Vec::new(),
        });
    }

    pub async fn create_user(&self, creator: &Principal, new: NewUser) -> AppResult<UserInfo> {
        creator.grant(Action::UserAdmin)?;
        let login = validate_login(&new.login)?;
        if new.display_name.trim().is_empty() {
            return Err(AppError::required("display_name"));
        }
        if new.password.chars().count() < password::MIN_LEN {
            return Err(AppError::bad_request("auth.password_too_short")
                .arg("min", password::MIN_LEN.to_string()));
        }
        if new.bindings.is_empty() {
            return Err(AppError::required("bindings"));
        }
        let phone_bidx = match new.phone.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Some(
                self.cipher
                    .blind_index("phone", &crate::registry::persons::validate_phone(p)?),
            ),
            None => None,
        };
        for b in &new.bindings {
            self.check_binding_allowed(creator, b).await?;
        }
        // An account names only a person who lives in the creator's area (issue #13 round 2,
        // finding 7): not found otherwise, as for an unknown id.
        if let Some(pid) = new.person_id.as_deref() {
            let ok = match self.current_home_path(pid).await? {
                Some(home) => creator.may(Action::UserAdmin, &home),
                None => false,
            };
            if !ok {
                return Err(AppError::not_found("registry.person.not_found"));
            }
        }
        let hash = password::hash(&new.password);
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let id = insert_user(
            &mut tx,
            self.now_ms(),
            &login,
            new.display_name.trim(),
            &hash,
            phone_bidx,
            new.person_id.clone(),
        )
        .await?;
        for b in &new.bindings {
            insert_binding(&mut tx, self.now_ms(), &id, b).await?;
        }
        self.audit(
            &mut tx,
            &Actor::from(creator),
            Entry {
                action: "user.create",
                entity: "user",
                entity_id: &id,
                path: None,
                purpose: None,
                before: None,
                after: Some(serde_json::json!({ "login": login, "display_name": new.display_name.trim(), "bindings": new.bindings })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(UserInfo {
            id,
            login,
            display_name: new.display_name.trim().to_string(),
            disabled: false,
            bindings: new.bindings,
            manageable: true,
        })
    }

    /// Accounts with at least one binding inside the caller's user-admin area.
    pub async fn users(&self, creator: &Principal) -> AppResult<Vec<UserInfo>> {
        let admin = creator.grant(Action::UserAdmin)?;
        let rows = sqlx::query(
            "SELECT u.id, u.login, u.display_name, u.disabled, b.role, b.place_id, b.org_id, b.household_id
             FROM users u JOIN role_bindings b ON b.user_id = u.id ORDER BY u.login",
        )
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        let mut out: Vec<UserInfo> = Vec::new();
        let mut visible = std::collections::HashSet::new();
        for r in &rows {
            let spec = BindingSpec {
                role: Role::from_code(&str_(r, "role")),
                place_id: opt_str(r, "place_id"),
                org_id: opt_str(r, "org_id"),
                household_id: opt_str(r, "household_id"),
            };
            let path = match (&spec.place_id, &spec.org_id, &spec.household_id) {
                (Some(p), _, _) => self.place_unscoped(p).await?.map(|p| p.path),
                (_, Some(o), _) => match self.org(&Grant::system(Action::OrgRead), o).await.ok() {
                    Some(org) => self.place_unscoped(&org.place_id).await?.map(|p| p.path),
                    None => None,
                },
                (_, _, Some(h)) => self.household_row_unscoped(h).await?.map(|h| h.path),
                _ => None,
            };
            let id = str_(r, "id");
            if path
                .as_deref()
                .is_some_and(|p| admin.allows(Action::UserAdmin, p))
            {
                visible.insert(id.clone());
            }
            match out.last_mut() {
                Some(u) if u.id == id => u.bindings.push(spec),
                _ => out.push(UserInfo {
                    id,
                    login: str_(r, "login"),
                    display_name: str_(r, "display_name"),
                    disabled: i64_(r, "disabled") != 0,
                    bindings: vec![spec],
                    manageable: false,
                }),
            }
        }
        out.retain(|u| visible.contains(&u.id));
        for u in &mut out {
            u.manageable = u.id != creator.user_id()
                && !creator.via_token()
                && self.administers_all(&admin, &u.bindings).await?;
        }
        Ok(out)
    }

    pub async fn change_password(&self, p: &Principal, old: &str, new: &str) -> AppResult<()> {
        let row = sqlx::query("SELECT password_hash FROM users WHERE id = $1")
            .bind(p.user_id().to_string())
            .fetch_one(&self.db.read)
            .await
            .map_err(db_err)?;
        if !password::verify(old, &str_(&row, "password_hash")) {
            return Err(AppError::bad_request("auth.old_password_wrong"));
        }
        if new.chars().count() < password::MIN_LEN {
            return Err(AppError::bad_request("auth.password_too_short")
                .arg("min", password::MIN_LEN.to_string()));
        }
        let hash = password::hash(new);
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(p.user_id().to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // Every session ends and every API token is revoked: a changed password should lock
        // out whoever knew the old one, including whatever they made with it.
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(p.user_id().to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let tokens = revoke_tokens_of(&mut tx, p.user_id(), self.now_ms()).await?;
        self.audit(
            &mut tx,
            &Actor::from(p),
            Entry {
                action: "user.password_change",
                entity: "user",
                entity_id: &p.user_id(),
                path: None,
                purpose: None,
                before: None,
                after: Some(serde_json::json!({ "tokens_revoked": tokens })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.publish_account_revoked(p.user_id());
        Ok(())
    }
}

impl Store {
    /// First start without the demo: create the city (if the tree is empty) and its administrator.
    pub async fn bootstrap_admin(
        &self,
        login: &str,
        pass: &str,
        city: &str,
        city_code: &str,
    ) -> AppResult<String> {
        let login = validate_login(login)?;
        if pass.chars().count() < password::MIN_LEN {
            return Err(AppError::bad_request("auth.password_too_short")
                .arg("min", password::MIN_LEN.to_string()));
        }
        if !linli_core::division::is_valid_code(city_code) {
            return Err(AppError::bad_request("validation.division_code"));
        }
        let hash = password::hash(pass);
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let root = sqlx::query(
            "SELECT id FROM places WHERE parent_id IS NULL ORDER BY created_at LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let root_id = match root {
            Some(r) => str_(&r, "id"),
            None => {
                crate::registry::places::insert_place(
                    &mut tx,
                    self.now_ms(),
                    None,
                    "city",
                    city,
                    Some(city_code),
                    None,
                    None,
                    None,
                    0,
                )
                .await?
                .id
            }
        };
        let uid = insert_user(&mut tx, self.now_ms(), &login, "管理员", &hash, None, None).await?;
        insert_binding(
            &mut tx,
            self.now_ms(),
            &uid,
            &BindingSpec {
                role: Role::CityAdmin,
                place_id: Some(root_id.clone()),
                org_id: None,
                household_id: None,
            },
        )
        .await?;
        self.audit(
            &mut tx,
            &Actor::system("cli-admin"),
            Entry {
                action: "user.create",
                entity: "user",
                entity_id: &uid,
                path: None,
                purpose: None,
                before: None,
                after: Some(serde_json::json!({ "login": login, "role": "city_admin", "place_id": root_id })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.forget_place_names();
        Ok(login)
    }
}
