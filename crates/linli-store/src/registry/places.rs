//! The place tree: city → district → street → community → grid → building → unit → room.
//! Buildings hang under a grid (or directly under a community without grids), so a grid worker's
//! area is one subtree like everybody else's.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use linli_core::auth::{Action, Grant};
use linli_core::{AppError, AppResult, division, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err, i64_, opt_i64, opt_str, str_};

pub const KINDS: [&str; 8] = [
    "city",
    "district",
    "street",
    "community",
    "grid",
    "building",
    "unit",
    "room",
];
pub const ROOM_USES: [&str; 3] = ["residential", "shop", "public"];

/// Columns of a `places` row, for bulk inserts (demo seeding, benchmark fixtures).
pub const PLACE_COLUMNS: [&str; 11] = [
    "id",
    "parent_id",
    "kind",
    "name",
    "code",
    "path",
    "area_x100",
    "room_use",
    "plan",
    "sort_key",
    "created_at",
];

/// Which kinds may sit directly under a kind.
pub fn allowed_children(kind: &str) -> &'static [&'static str] {
    match kind {
        "city" => &["district"],
        "district" => &["street"],
        "street" => &["community"],
        "community" => &["grid", "building"],
        "grid" => &["building"],
        "building" => &["unit"],
        "unit" => &["room"],
        _ => &[],
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Place {
    pub id: String,
    pub parent_id: Option<String>,
    /// city, district, street, community, grid, building, unit, room
    pub kind: String,
    pub name: String,
    /// 12-digit statistical division code, where one exists.
    pub code: Option<String>,
    pub path: String,
    /// Floor area in hundredths of m² (rooms).
    pub area_x100: Option<i64>,
    /// residential, shop, public (rooms).
    pub room_use: Option<String>,
    /// Footprint `[x, y, w, h]` on the community site plan (buildings), 1000×700 units.
    pub plan: Option<[i32; 4]>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewPlace {
    pub parent_id: String,
    pub kind: String,
    pub name: String,
    pub code: Option<String>,
    pub area_x100: Option<i64>,
    pub room_use: Option<String>,
    pub plan: Option<[i32; 4]>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct PlacePatch {
    pub name: Option<String>,
    pub code: Option<String>,
    pub area_x100: Option<i64>,
    pub room_use: Option<String>,
    pub plan: Option<[i32; 4]>,
}

const COLS: &str = "id, parent_id, kind, name, code, path, area_x100, room_use, plan";

fn from_row(r: &AnyRow) -> Place {
    Place {
        id: str_(r, "id"),
        parent_id: opt_str(r, "parent_id"),
        kind: str_(r, "kind"),
        name: str_(r, "name"),
        code: opt_str(r, "code"),
        path: str_(r, "path"),
        area_x100: opt_i64(r, "area_x100"),
        room_use: opt_str(r, "room_use"),
        plan: opt_str(r, "plan").and_then(|s| serde_json::from_str(&s).ok()),
    }
}

fn validate_fields(
    name: &str,
    code: Option<&str>,
    room_use: Option<&str>,
    area: Option<i64>,
) -> AppResult<()> {
    if name.trim().is_empty() {
        return Err(AppError::required("name"));
    }
    if name.chars().count() > 100 {
        return Err(AppError::bad_request("validation.too_long").arg("field", "name"));
    }
    if let Some(c) = code
        && !division::is_valid_code(c)
    {
        return Err(AppError::bad_request("validation.division_code"));
    }
    if let Some(u) = room_use
        && !ROOM_USES.contains(&u)
    {
        return Err(AppError::bad_request("validation.bad_value").arg("field", "room_use"));
    }
    if let Some(a) = area
        && !(0..=10_000_000).contains(&a)
    {
        return Err(AppError::bad_request("validation.bad_value").arg("field", "area_x100"));
    }
    Ok(())
}

impl Store {
    /// A place by id, if it lies inside the grant (otherwise not found: existence does not leak).
    pub async fn place(&self, grant: &Grant, id: &str) -> AppResult<Place> {
        let p = self
            .place_unscoped(id)
            .await?
            .ok_or(AppError::not_found("registry.place.not_found"))?;
        // Any capability over a place lets its holder name it (a device administrator picks the
        // building of a new device); the data of each capability is scoped by its own action.
        if !grant.place_scope().covers(&p.path) {
            return Err(AppError::not_found("registry.place.not_found"));
        }
        Ok(p)
    }

    pub(crate) async fn place_unscoped(&self, id: &str) -> AppResult<Option<Place>> {
        let q = Sql::new(&format!("SELECT {COLS} FROM places WHERE id = $1")).arg(id);
        Ok(self.db.fetch_optional_fast(&q).await?.map(|r| Place {
            id: r.str("id"),
            parent_id: r.opt_str("parent_id"),
            kind: r.str("kind"),
            name: r.str("name"),
            code: r.opt_str("code"),
            path: r.str("path"),
            area_x100: r.opt_i64("area_x100"),
            room_use: r.opt_str("room_use"),
            plan: r
                .opt_str_ref("plan")
                .and_then(|s| serde_json::from_str(s).ok()),
        }))
    }

    /// The buildings under a community (path prefix) that have a footprint on its site plan,
    /// for the resident's report form. Not scoped: the caller passes a community it may show
    /// (the resident's own); only names and footprints are used.
    pub async fn plan_buildings(&self, community_path: &str) -> AppResult<Vec<Place>> {
        let mut q = Sql::new(&format!(
            "SELECT {COLS} FROM places WHERE kind = 'building' AND plan IS NOT NULL AND "
        ));
        q.scope("path", &[community_path.to_string()]);
        q.push(" ORDER BY sort_key, name LIMIT 500");
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows
            .iter()
            .map(from_row)
            .filter(|p| p.plan.is_some())
            .collect())
    }

    /// The top of the caller's area (no parent given) or the children of a place in it.
    pub async fn places(
        &self,
        grant: &Grant,
        parent_id: Option<&str>,
        kind: Option<&str>,
    ) -> AppResult<Vec<Place>> {
        // Like `place`: any capability lets its holder name the places of its area.
        let scope = grant.place_scope();
        let mut q = Sql::new(&format!("SELECT {COLS} FROM places WHERE "));
        match parent_id {
            Some(pid) => {
                let parent = self.place(grant, pid).await?;
                q.push("parent_id = ").bind(parent.id);
            }
            None if kind.is_some() => {
                q.scope("path", scope.prefixes());
            }
            None => {
                q.push("path IN (");
                for (i, p) in scope.prefixes().iter().enumerate() {
                    if i > 0 {
                        q.push(", ");
                    }
                    q.bind(p.clone());
                }
                q.push(")");
                if scope.is_everywhere() {
                    q = Sql::new(&format!(
                        "SELECT {COLS} FROM places WHERE parent_id IS NULL"
                    ));
                }
            }
        }
        if let Some(k) = kind {
            q.push(" AND kind = ").bind(k);
        }
        q.push(" ORDER BY sort_key, name LIMIT 5000");
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Create a place under a parent inside the caller's area.
    pub async fn create_place(
        &self,
        grant: &Grant,
        actor: &Actor,
        new: NewPlace,
    ) -> AppResult<Place> {
        grant.scope(Action::PlaceWrite)?;
        let parent = self.place(grant, &new.parent_id).await?;
        if !allowed_children(&parent.kind).contains(&new.kind.as_str()) {
            return Err(AppError::bad_request("registry.place.bad_parent")
                .arg("kind", new.kind.clone())
                .arg("parent", parent.kind.clone()));
        }
        validate_fields(
            &new.name,
            new.code.as_deref(),
            new.room_use.as_deref(),
            new.area_x100,
        )?;
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let place = insert_place(
            &mut tx,
            self.now_ms(),
            Some(&parent),
            &new.kind,
            new.name.trim(),
            new.code.as_deref(),
            new.area_x100,
            new.room_use.as_deref(),
            new.plan,
            0,
        )
        .await?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "place.create",
                entity: "place",
                entity_id: &place.id,
                path: Some(&place.path),
                purpose: None,
                before: None,
                after: Some(serde_json::to_value(&place).unwrap_or_default()),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.forget_place_names();
        Ok(place)
    }

    pub async fn update_place(
        &self,
        grant: &Grant,
        actor: &Actor,
        id: &str,
        patch: PlacePatch,
    ) -> AppResult<Place> {
        grant.scope(Action::PlaceWrite)?;
        let before = self.place(grant, id).await?;
        let mut after = before.clone();
        if let Some(n) = patch.name {
            after.name = n.trim().to_string();
        }
        if patch.code.is_some() {
            after.code = patch.code.filter(|c| !c.is_empty());
        }
        if patch.area_x100.is_some() {
            after.area_x100 = patch.area_x100;
        }
        if patch.room_use.is_some() {
            after.room_use = patch.room_use;
        }
        if patch.plan.is_some() {
            after.plan = patch.plan;
        }
        validate_fields(
            &after.name,
            after.code.as_deref(),
            after.room_use.as_deref(),
            after.area_x100,
        )?;
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query("UPDATE places SET name = $1, code = $2, area_x100 = $3, room_use = $4, plan = $5 WHERE id = $6")
            .bind(after.name.clone())
            .bind(after.code.clone())
            .bind(after.area_x100)
            .bind(after.room_use.clone())
            .bind(after.plan.map(|p| serde_json::to_string(&p).unwrap_or_default()))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "place.update",
                entity: "place",
                entity_id: id,
                path: Some(&after.path),
                purpose: None,
                before: Some(serde_json::to_value(&before).unwrap_or_default()),
                after: Some(serde_json::to_value(&after).unwrap_or_default()),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.forget_place_names();
        Ok(after)
    }

    /// "幸福里社区 / 第一网格 / 3栋 / 2单元 / 502" for a path, from the community down.
    pub async fn address(&self, path: &str) -> AppResult<String> {
        // Usually every place is in the cache: build the text under one read lock.
        {
            let cache = self.places_cache.read().expect("cache lock");
            let mut out = String::new();
            let mut complete = true;
            for id in path.split('/').filter(|s| !s.is_empty()) {
                match cache.get(id) {
                    Some((kind, name)) => {
                        if matches!(kind.as_str(), "community" | "building" | "unit" | "room") {
                            if !out.is_empty() {
                                out.push_str(" / ");
                            }
                            out.push_str(name);
                        }
                    }
                    None => {
                        complete = false;
                        break;
                    }
                }
            }
            if complete {
                return Ok(out);
            }
        }
        let ids: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let names = self.place_names(&ids).await?;
        let parts: Vec<String> = ids
            .iter()
            .filter_map(|id| names.get(*id))
            .filter(|(kind, _)| matches!(kind.as_str(), "community" | "building" | "unit" | "room"))
            .map(|(_, n)| n.clone())
            .collect();
        Ok(parts.join(" / "))
    }

    /// Kind and name of each id, from the in-memory cache (reloaded on a miss).
    pub async fn place_names(
        &self,
        ids: &[&str],
    ) -> AppResult<std::collections::HashMap<String, (String, String)>> {
        let lookup = |cache: &std::collections::HashMap<String, (String, String)>| {
            let mut out = std::collections::HashMap::new();
            for id in ids {
                match cache.get(*id) {
                    Some(v) => {
                        out.insert(id.to_string(), v.clone());
                    }
                    None => return None,
                }
            }
            Some(out)
        };
        if let Some(out) = lookup(&self.places_cache.read().expect("cache lock")) {
            return Ok(out);
        }
        let rows = sqlx::query("SELECT id, kind, name FROM places")
            .fetch_all(&self.db.read)
            .await
            .map_err(db_err)?;
        let fresh: std::collections::HashMap<String, (String, String)> = rows
            .iter()
            .map(|r| (str_(r, "id"), (str_(r, "kind"), str_(r, "name"))))
            .collect();
        let out = ids
            .iter()
            .filter_map(|id| fresh.get(*id).map(|v| (id.to_string(), v.clone())))
            .collect();
        *self.places_cache.write().expect("cache lock") = fresh;
        Ok(out)
    }

    /// A place was added or renamed: forget the names here, and tell the other instances to
    /// (bus event [`crate::CACHE_PLACES`]).
    pub(crate) fn forget_place_names(&self) {
        self.places_cache.write().expect("cache lock").clear();
        self.publish_cache_notice(crate::CACHE_PLACES);
    }

    /// Count of places by kind inside the grant (dashboards, tests).
    pub async fn place_counts(&self, grant: &Grant) -> AppResult<Vec<(String, i64)>> {
        let scope = grant.scope(Action::PlaceRead)?;
        let mut q = Sql::new("SELECT kind, COUNT(*) AS n FROM places WHERE ");
        q.scope("path", scope.prefixes()).push(" GROUP BY kind");
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| (str_(r, "kind"), i64_(r, "n")))
            .collect())
    }
}

/// Insert a place row (shared by the API, the importer of place trees and the demo seeder).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_place(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    now: i64,
    parent: Option<&Place>,
    kind: &str,
    name: &str,
    code: Option<&str>,
    area_x100: Option<i64>,
    room_use: Option<&str>,
    plan: Option<[i32; 4]>,
    sort_key: i64,
) -> AppResult<Place> {
    let id = new_id();
    let path = format!("{}{id}/", parent.map(|p| p.path.as_str()).unwrap_or("/"));
    sqlx::query(
        "INSERT INTO places (id, parent_id, kind, name, code, path, area_x100, room_use, plan, sort_key, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id.clone())
    .bind(parent.map(|p| p.id.clone()))
    .bind(kind.to_string())
    .bind(name.to_string())
    .bind(code.map(str::to_string))
    .bind(path.clone())
    .bind(area_x100)
    .bind(room_use.map(str::to_string))
    .bind(plan.map(|p| serde_json::to_string(&p).unwrap_or_default()))
    .bind(sort_key)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(Place {
        id,
        parent_id: parent.map(|p| p.id.clone()),
        kind: kind.to_string(),
        name: name.to_string(),
        code: code.map(str::to_string),
        path,
        area_x100,
        room_use: room_use.map(str::to_string),
        plan,
    })
}

/// The ids of the places on a materialized path (`/a/b/c/` → a, b, c), root first.
pub fn path_ids(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The community prefix of a path (city / district / street / community), if it is that deep.
pub fn community_prefix(path: &str) -> Option<String> {
    let ids = path_ids(path);
    (ids.len() >= 4).then(|| format!("/{}/", ids[..4].join("/")))
}
