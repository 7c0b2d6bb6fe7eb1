//! Households (一户一表): one record per household in a room, with its members, history,
//! labels and correction requests in one view.

use serde::{Deserialize, Serialize};

use linli_core::auth::{Action, Grant, Principal};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err, i64_, opt_str, str_};
use crate::registry::corrections::Correction;
use crate::registry::persons::{NewPerson, PersonSummary, validate_date};

pub const TENURES: [&str; 3] = ["owner", "tenant", "other"];

#[derive(Debug, Clone)]
pub(crate) struct HouseholdRow {
    pub id: String,
    pub room_id: String,
    pub path: String,
    pub tenure: String,
    pub head_person_id: Option<String>,
    pub moved_in: Option<String>,
    pub note: String,
    pub version: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HouseholdSummary {
    pub id: String,
    pub room_id: String,
    pub address: String,
    pub tenure: String,
    pub head_name: Option<String>,
    pub members: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HouseholdPage {
    pub total: i64,
    pub items: Vec<HouseholdSummary>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Member {
    pub person: PersonSummary,
    pub relation: String,
    pub start_date: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FormerMember {
    pub person_id: String,
    pub name: String,
    pub relation: String,
    pub start_date: String,
    pub end_date: String,
    pub end_reason: Option<String>,
}

/// Everything the platform knows about one household, as the caller may see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HouseholdView {
    pub id: String,
    /// The household's place path (pages decide what the viewer may do here).
    #[serde(skip)]
    pub path: String,
    pub room_id: String,
    pub address: String,
    pub tenure: String,
    pub moved_in: Option<String>,
    pub note: String,
    pub version: i64,
    pub head_person_id: Option<String>,
    pub room_area_x100: Option<i64>,
    pub members: Vec<Member>,
    pub former_members: Vec<FormerMember>,
    pub corrections: Vec<Correction>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewHousehold {
    pub room_id: String,
    /// owner, tenant, other
    pub tenure: String,
    pub moved_in: Option<String>,
    pub note: Option<String>,
    /// The household head, created with the household.
    pub head: NewPerson,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct HouseholdPatch {
    pub version: i64,
    pub tenure: Option<String>,
    pub moved_in: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HouseholdQuery {
    /// A place (community, grid, building, unit, room).
    pub place_id: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

pub(crate) fn validate_tenure(t: &str) -> AppResult<&'static str> {
    TENURES
        .iter()
        .find(|x| **x == t)
        .copied()
        .ok_or(AppError::bad_request("validation.bad_value").arg("field", "tenure"))
}

fn snapshot(h: &HouseholdRow) -> serde_json::Value {
    serde_json::json!({ "room_id": h.room_id, "tenure": h.tenure, "moved_in": h.moved_in, "note": h.note, "head_person_id": h.head_person_id })
}

impl Store {
    /// The place path of a household (for routing events to those who cover it).
    pub(crate) async fn household_path(&self, id: &str) -> AppResult<Option<String>> {
        Ok(self.household_row_unscoped(id).await?.map(|h| h.path))
    }

    pub(crate) async fn household_row_unscoped(&self, id: &str) -> AppResult<Option<HouseholdRow>> {
        let row = sqlx::query("SELECT id, room_id, path, tenure, head_person_id, moved_in, note, version FROM households WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| HouseholdRow {
            id: str_(&r, "id"),
            room_id: str_(&r, "room_id"),
            path: str_(&r, "path"),
            tenure: str_(&r, "tenure"),
            head_person_id: opt_str(&r, "head_person_id"),
            moved_in: opt_str(&r, "moved_in"),
            note: str_(&r, "note"),
            version: i64_(&r, "version"),
        }))
    }

    /// The homes of the caller's own households (residents): (household id, place path).
    pub async fn own_homes(&self, p: &Principal) -> AppResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        for h in p.own_households() {
            if let Some(row) = self.household_row_unscoped(&h).await? {
                out.push((row.id, row.path));
            }
        }
        Ok(out)
    }

    /// A household inside the grant: read, written, or given a new member.
    pub(crate) async fn household_row(&self, grant: &Grant, id: &str) -> AppResult<HouseholdRow> {
        let scope = grant.scope_in(&[
            Action::HouseholdRead,
            Action::HouseholdWrite,
            Action::PersonWrite,
        ])?;
        match self.household_row_unscoped(id).await? {
            Some(h) if scope.covers(&h.path) => Ok(h),
            _ => Err(AppError::not_found("registry.household.not_found")),
        }
    }

    pub async fn households(&self, grant: &Grant, f: &HouseholdQuery) -> AppResult<HouseholdPage> {
        let scope = grant.scope(Action::HouseholdRead)?;
        let mut w = Sql::new(" WHERE ");
        w.scope("h.path", scope.prefixes());
        if let Some(pid) = f.place_id.as_deref().filter(|s| !s.is_empty()) {
            let place = self
                .place_unscoped(pid)
                .await?
                .ok_or(AppError::not_found("registry.place.not_found"))?;
            w.push(" AND ").scope("h.path", &[place.path]);
        }
        let count = Sql {
            text: format!("SELECT COUNT(*) AS n FROM households h{}", w.text),
            vals: w.vals.clone(),
        };
        let total = i64_(
            &count
                .query()
                .fetch_one(&self.db.read)
                .await
                .map_err(db_err)?,
            "n",
        );
        let mut q = Sql {
            text: format!(
                "SELECT h.id, h.room_id, h.path, h.tenure, p.name AS head_name,
                 (SELECT COUNT(*) FROM residences r WHERE r.household_id = h.id AND r.end_date IS NULL) AS members
                 FROM households h LEFT JOIN persons p ON p.id = h.head_person_id{}",
                w.text
            ),
            vals: w.vals,
        };
        q.push(" ORDER BY h.path LIMIT ")
            .bind(f.limit.unwrap_or(50).clamp(1, 500));
        q.push(" OFFSET ").bind(f.offset.unwrap_or(0).max(0));
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            items.push(HouseholdSummary {
                id: str_(r, "id"),
                room_id: str_(r, "room_id"),
                address: self.address(&str_(r, "path")).await?,
                tenure: str_(r, "tenure"),
                head_name: opt_str(r, "head_name"),
                members: i64_(r, "members"),
            });
        }
        Ok(HouseholdPage { total, items })
    }

    /// The 一户一表 view. `grant` is HouseholdRead for staff; residents come through
    /// [`Store::own_household`], which checks the binding instead.
    pub async fn household(
        &self,
        grant: &Grant,
        sensitive: Option<&Grant>,
        id: &str,
    ) -> AppResult<HouseholdView> {
        grant.scope(Action::HouseholdRead)?;
        let h = self.household_row(grant, id).await?;
        self.household_view(h, sensitive).await
    }

    pub(crate) async fn household_view(
        &self,
        h: HouseholdRow,
        sensitive: Option<&Grant>,
    ) -> AppResult<HouseholdView> {
        let q = Sql::new(&format!(
            "SELECT p.id, p.name, p.gender, p.birth_year, p.id_masked, p.phone_masked, p.version,
                    r.relation, r.start_date, r.end_date, r.end_reason, h.id AS household_id, h.path AS hpath{}
             FROM residences r JOIN persons p ON p.id = r.person_id JOIN households h ON h.id = r.household_id
             WHERE r.household_id = $1
             ORDER BY CASE r.relation WHEN 'head' THEN 0 ELSE 1 END, r.start_date, p.name",
            self.label_ids_column()
        ))
        .arg(h.id.as_str());
        let rows = self.db.fetch_all_fast(&q).await?;
        let (current, former): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .partition(|r| r.opt_str_ref("end_date").is_none());
        let stays: Vec<(String, String)> = current
            .iter()
            .map(|r| (r.str("relation"), r.str("start_date")))
            .collect();
        let summaries = self.summaries(current, sensitive).await?;
        let members = summaries
            .into_iter()
            .zip(stays)
            .map(|(person, (relation, start_date))| Member {
                relation,
                start_date,
                person,
            })
            .collect();
        let former_members = former
            .iter()
            .map(|r| FormerMember {
                person_id: r.str("id"),
                name: r.str("name"),
                relation: r.str("relation"),
                start_date: r.str("start_date"),
                end_date: r.str("end_date"),
                end_reason: r.opt_str("end_reason"),
            })
            .collect();
        let room = self.place_unscoped(&h.room_id).await?;
        Ok(HouseholdView {
            address: self.address(&h.path).await?,
            path: h.path.clone(),
            corrections: self.corrections_of_household(&h.id).await?,
            room_area_x100: room.and_then(|r| r.area_x100),
            id: h.id,
            room_id: h.room_id,
            tenure: h.tenure,
            moved_in: h.moved_in,
            note: h.note,
            version: h.version,
            head_person_id: h.head_person_id,
            members,
            former_members,
        })
    }

    /// Create a household in a room with its head.
    pub async fn create_household(
        &self,
        grant: &Grant,
        sensitive: Option<&Grant>,
        actor: &Actor,
        new: NewHousehold,
    ) -> AppResult<HouseholdView> {
        grant.scope(Action::HouseholdWrite)?;
        let room = self.place(grant, &new.room_id).await?;
        if room.kind != "room" {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "room_id"));
        }
        let tenure = validate_tenure(&new.tenure)?;
        let moved_in = new
            .moved_in
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|d| validate_date(d, "moved_in"))
            .transpose()?;
        // Validate the head before anything is written.
        crate::registry::persons::seal(
            &self.cipher,
            &new.head.name,
            &new.head.id_number,
            new.head.phone.as_deref(),
        )?;
        let id = new_id();
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO households (id, room_id, path, tenure, moved_in, note, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)",
        )
        .bind(id.clone())
        .bind(room.id.clone())
        .bind(room.path.clone())
        .bind(tenure)
        .bind(moved_in.clone())
        .bind(new.note.clone().unwrap_or_default())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "household.create",
                entity: "household",
                entity_id: &id,
                path: Some(&room.path),
                purpose: None,
                before: None,
                after: Some(serde_json::json!({ "room_id": room.id, "tenure": tenure, "moved_in": moved_in })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        let mut head = new.head;
        head.relation = "head".into();
        if head.start_date.is_none() {
            head.start_date = moved_in;
        }
        // The head is added with the caller's own grant: only records of their area can be
        // reused (`Store::add_person`); an ID registered elsewhere gets a record of its own.
        if let Err(e) = self.add_member(grant, sensitive, actor, &id, head).await {
            // The head could not be added (e.g. the ID is a current member of a household in the
            // caller's area): undo the empty household.
            let mut tx = self.db.begin_write().await.map_err(db_err)?;
            sqlx::query("DELETE FROM households WHERE id = $1 AND head_person_id IS NULL AND NOT EXISTS (SELECT 1 FROM residences WHERE household_id = $1)")
                .bind(id.clone())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            self.audit(
                &mut tx,
                actor,
                Entry {
                    action: "household.create_undone",
                    entity: "household",
                    entity_id: &id,
                    path: Some(&room.path),
                    purpose: None,
                    before: None,
                    after: None,
                },
            )
            .await?;
            tx.commit().await.map_err(db_err)?;
            return Err(e);
        }
        self.household(&Grant::system(Action::HouseholdRead), sensitive, &id)
            .await
    }

    pub async fn update_household(
        &self,
        grant: &Grant,
        sensitive: Option<&Grant>,
        actor: &Actor,
        id: &str,
        patch: HouseholdPatch,
    ) -> AppResult<HouseholdView> {
        grant.scope(Action::HouseholdWrite)?;
        let before = self.household_row(grant, id).await?;
        if before.version != patch.version {
            return Err(AppError::conflict("conflict"));
        }
        let mut after = before.clone();
        if let Some(t) = &patch.tenure {
            after.tenure = validate_tenure(t)?.to_string();
        }
        if let Some(m) = &patch.moved_in {
            after.moved_in = if m.is_empty() {
                None
            } else {
                Some(validate_date(m, "moved_in")?)
            };
        }
        if let Some(n) = &patch.note {
            if n.chars().count() > 2000 {
                return Err(AppError::bad_request("validation.too_long").arg("field", "note"));
            }
            after.note = n.clone();
        }
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let res = sqlx::query(
            "UPDATE households SET tenure = $1, moved_in = $2, note = $3, version = version + 1, updated_at = $4 WHERE id = $5 AND version = $6",
        )
        .bind(after.tenure.clone())
        .bind(after.moved_in.clone())
        .bind(after.note.clone())
        .bind(self.now_ms())
        .bind(id.to_string())
        .bind(patch.version)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if res.rows_affected() != 1 {
            return Err(AppError::conflict("conflict"));
        }
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "household.update",
                entity: "household",
                entity_id: id,
                path: Some(&before.path),
                purpose: None,
                before: Some(snapshot(&before)),
                after: Some(snapshot(&after)),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.household(&Grant::system(Action::HouseholdRead), sensitive, id)
            .await
    }

    /// Population counts inside a grant: households, persons (dashboards and tests).
    pub async fn registry_counts(&self, grant: &Grant) -> AppResult<(i64, i64)> {
        let scope = grant.scope(Action::HouseholdRead)?;
        let mut q = Sql::new("SELECT COUNT(*) AS n FROM households h WHERE ");
        q.scope("h.path", scope.prefixes());
        let hh = i64_(
            &q.query().fetch_one(&self.db.read).await.map_err(db_err)?,
            "n",
        );
        let mut q = Sql::new(
            "SELECT COUNT(*) AS n FROM residences r JOIN households h ON h.id = r.household_id WHERE r.end_date IS NULL AND ",
        );
        q.scope("h.path", scope.prefixes());
        let persons = i64_(
            &q.query().fetch_one(&self.db.read).await.map_err(db_err)?,
            "n",
        );
        Ok((hh, persons))
    }
}
