//! Identity linking across communities (issue #13 round 2, finding 2).
//!
//! People move between communities; a community must never take over another community's
//! record of them, nor learn from the registry whether an ID number is known elsewhere.
//!
//! - **Registering.** A community registers a person with name and ID number. Among the records
//!   it may see (its own area) the ID finds the same person — moved out, they move in again if
//!   the name matches; living in a household, the ID is a duplicate. A record of another
//!   community is never reused: the community gets a **record of its own** holding exactly what
//!   it entered, and the answer is the same whether the ID is registered elsewhere or not.
//! - **Asking.** When another community's record of that ID carries **the same name**, that
//!   community is asked (`person_links`, status `pending`; a notice to its staff) whether this is
//!   their resident who moved. A different name asks nobody and says nothing: a mismatch is
//!   refused without saying whether the ID exists anywhere. The requester is not told that a
//!   request was made.
//! - **Confirming.** Staff who may write persons where the earlier record lives confirm or
//!   decline. Confirming links the two records: the new record receives the earlier one's phone
//!   (when it has none) and labels, the earlier record's residence ends if it had not (moved to
//!   the new community), and the requester is told. The earlier community keeps its record and
//!   its history (reports, alarms, gate passages stay with it; the household record cuts
//!   history at the residence boundary anyway). Declining changes nothing else and tells the
//!   requester nothing.
//!
//! Storage: the first record of an ID number keeps its blind index in the unique
//! `persons.id_bidx`; later records hold `local:<id>` there and the blind index in `id_key`.

use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};

use linli_core::auth::{Action, Grant};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err, i64_, opt_str, str_};
use crate::notify::Notice;

/// A record holding an ID number, and where it lives.
#[derive(Debug, Clone)]
pub(crate) struct IdMatch {
    pub id: String,
    pub name: String,
    /// The household path of its current residence, else of its latest one.
    pub home: Option<String>,
    /// Whether it lives in a household now.
    pub current: bool,
}

/// Every record holding the ID number with blind index `bidx`, read inside the caller's
/// transaction.
pub(crate) async fn id_matches(
    tx: &mut Transaction<'static, Any>,
    bidx: &str,
) -> AppResult<Vec<IdMatch>> {
    let rows = sqlx::query(
        "SELECT p.id, p.name,
                (SELECT h.path FROM residences r JOIN households h ON h.id = r.household_id
                  WHERE r.person_id = p.id
                  ORDER BY CASE WHEN r.end_date IS NULL THEN 0 ELSE 1 END, r.start_date DESC LIMIT 1) AS home,
                (SELECT COUNT(*) FROM residences r WHERE r.person_id = p.id AND r.end_date IS NULL) AS current
           FROM persons p WHERE p.id_bidx = $1 OR p.id_key = $1 ORDER BY p.id",
    )
    .bind(bidx.to_string())
    .fetch_all(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| IdMatch {
            id: str_(r, "id"),
            name: str_(r, "name"),
            home: opt_str(r, "home"),
            current: i64_(r, "current") > 0,
        })
        .collect())
}

/// The record that stands for the person now: one living somewhere, else one with a home.
pub(crate) fn best<'a>(matches: impl Iterator<Item = &'a IdMatch>) -> Option<&'a IdMatch> {
    matches
        .filter(|m| m.home.is_some())
        .max_by_key(|m| m.current)
}

/// A link request as the earlier record's community sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PersonLink {
    pub id: String,
    /// Your record of the person.
    pub person_id: String,
    pub name: String,
    pub id_number_masked: String,
    /// Whether your record still lives in one of your households (confirming ends that
    /// residence: the person moved).
    pub lives_here: bool,
    /// The community that registered the person and asks.
    pub to_community: String,
    /// The day the person moved in there (`YYYY-MM-DD`).
    pub to_start_date: Option<String>,
    /// `pending`, `confirmed` or `declined`.
    pub status: String,
    pub requested_at: i64,
    pub decided_at: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct LinkDecision {
    /// A note (optional when confirming; the reason when declining).
    #[serde(default)]
    pub note: Option<String>,
}

impl Store {
    /// Ask the community of `from` to confirm that `to` (just registered in the household at
    /// `to_path`) is the same person. Audited where the earlier record lives, so the request
    /// shows in that community's log, not in the requester's.
    pub(crate) async fn request_link(
        &self,
        tx: &mut Transaction<'static, Any>,
        actor: &Actor,
        from: &IdMatch,
        to_person_id: &str,
        name: &str,
        to_path: &str,
    ) -> AppResult<()> {
        let Some(from_path) = from.home.as_deref() else {
            return Ok(());
        };
        let id = new_id();
        let now = self.now_ms();
        sqlx::query(
            "INSERT INTO person_links (id, from_person_id, from_path, to_person_id, to_path, status, requested_by, requested_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(id.clone())
        .bind(from.id.clone())
        .bind(from_path.to_string())
        .bind(to_person_id.to_string())
        .bind(to_path.to_string())
        .bind(actor.id.clone())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
        let community = self.community_name(to_path).await?;
        self.audit(
            tx,
            actor,
            Entry {
                action: "person.link_request",
                entity: "person",
                entity_id: &from.id,
                path: Some(from_path),
                purpose: None,
                before: None,
                after: Some(serde_json::json!({ "link_id": id, "to_community": community })),
            },
        )
        .await?;
        let staff = self
            .person_writers_over(tx, from_path, from_path_community(from_path))
            .await?;
        self.notify(
            tx,
            &staff,
            &Notice {
                kind: "person.link_requested",
                key: "notice-person-link-requested",
                args: serde_json::json!({ "name": name, "community": community }),
                entity: "person",
                entity_id: &from.id,
                path: Some(from_path),
                link: Some("/registry/links"),
            },
        )
        .await?;
        Ok(())
    }

    /// The community's name for a path (the path's own place above community level).
    pub(crate) async fn community_name(&self, path: &str) -> AppResult<String> {
        let area = self.area_of(path).await?;
        let id = area
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        Ok(self
            .place_unscoped(&id)
            .await?
            .map(|p| p.name)
            .unwrap_or_default())
    }

    /// Users whose area roles let them write persons at `path` (built-in or custom roles),
    /// bound at or above `path` but not above `limit`'s level when given (the community's own
    /// staff, not the whole city's administrators).
    async fn person_writers_over(
        &self,
        tx: &mut Transaction<'static, Any>,
        path: &str,
        limit: Option<usize>,
    ) -> AppResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT rb.user_id, rb.role, p.path FROM role_bindings rb
               JOIN places p ON p.id = rb.place_id
               JOIN users u ON u.id = rb.user_id
              WHERE u.disabled = 0 AND p.path = substr($1, 1, length(p.path))
              ORDER BY rb.user_id",
        )
        .bind(path.to_string())
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?;
        let mut out = Vec::new();
        for r in &rows {
            let bound_depth = str_(r, "path").matches('/').count();
            if limit.is_some_and(|l| bound_depth < l) {
                continue;
            }
            if let Some(def) = self.role_def(&str_(r, "role")).await?
                && def.actions.contains(&Action::PersonWrite)
            {
                out.push(str_(r, "user_id"));
            }
        }
        out.dedup();
        Ok(out)
    }

    /// Link requests about records of the caller's area (`PersonWrite`): pending ones by
    /// default, newest first. The requesting community never sees its own requests here.
    pub async fn person_links(&self, grant: &Grant, all: bool) -> AppResult<Vec<PersonLink>> {
        let scope = grant.scope(Action::PersonWrite)?;
        let mut q = Sql::new(
            "SELECT l.id, l.from_person_id, l.to_path, l.status, l.requested_at, l.decided_at, p.name, p.id_masked,
                    (SELECT r.start_date FROM residences r WHERE r.person_id = l.to_person_id ORDER BY r.start_date DESC LIMIT 1) AS to_start,
                    (SELECT COUNT(*) FROM residences r WHERE r.person_id = l.from_person_id AND r.end_date IS NULL) AS lives
               FROM person_links l JOIN persons p ON p.id = l.from_person_id WHERE ",
        );
        q.scope("l.from_path", scope.prefixes());
        if !all {
            q.push(" AND l.status = 'pending'");
        }
        q.push(" ORDER BY l.requested_at DESC, l.id DESC LIMIT 500");
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(PersonLink {
                id: str_(r, "id"),
                person_id: str_(r, "from_person_id"),
                name: str_(r, "name"),
                id_number_masked: str_(r, "id_masked"),
                lives_here: i64_(r, "lives") > 0,
                to_community: self.community_name(&str_(r, "to_path")).await?,
                to_start_date: opt_str(r, "to_start"),
                status: str_(r, "status"),
                requested_at: i64_(r, "requested_at"),
                decided_at: crate::db::opt_i64(r, "decided_at"),
            });
        }
        Ok(out)
    }

    /// Confirm (`confirm = true`) or decline a pending link request, as staff who may write
    /// persons where the earlier record lives now. See the module doc for what confirming does.
    pub async fn decide_person_link(
        &self,
        grant: &Grant,
        actor: &Actor,
        id: &str,
        confirm: bool,
        d: &LinkDecision,
    ) -> AppResult<PersonLink> {
        let scope = grant.scope(Action::PersonWrite)?;
        let note = d
            .note
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        if note.as_ref().is_some_and(|n| n.chars().count() > 200) {
            return Err(AppError::bad_request("validation.too_long").arg("field", "note"));
        }
        if !confirm && note.is_none() {
            return Err(AppError::required("note"));
        }
        let not_found = || AppError::not_found("registry.link.not_found");
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let link = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT from_person_id, to_person_id, to_path, status FROM person_links WHERE id = $1{}",
            self.backend().for_update()
        )))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or_else(not_found)?;
        let (from, to, to_path) = (
            str_(&link, "from_person_id"),
            str_(&link, "to_person_id"),
            str_(&link, "to_path"),
        );
        // Decided by the earlier record's community as it is now.
        let (_, from_path) = self.person_path(&from).await?.ok_or_else(not_found)?;
        if !scope.covers(&from_path) {
            return Err(not_found());
        }
        if str_(&link, "status") != "pending" {
            return Err(AppError::conflict("registry.link.already_decided"));
        }
        let status = if confirm { "confirmed" } else { "declined" };
        sqlx::query(
            "UPDATE person_links SET status = $1, decided_by = $2, decided_at = $3, note = $4 WHERE id = $5 AND status = 'pending'",
        )
        .bind(status)
        .bind(actor.id.clone())
        .bind(now)
        .bind(note.clone())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let community = self.community_name(&to_path).await?;
        let mut after = serde_json::json!({ "link_id": id, "status": status, "note": note, "to_community": community });
        if confirm {
            after["moved_out"] = self
                .end_for_move(&mut tx, &from, &to, &community, now)
                .await?
                .into();
            // The earlier record's phone (if the new one has none) and labels go to the new one.
            let phone = sqlx::query(
                "UPDATE persons SET phone_enc = (SELECT f.phone_enc FROM persons f WHERE f.id = $1),
                        phone_bidx = (SELECT f.phone_bidx FROM persons f WHERE f.id = $1),
                        phone_masked = (SELECT f.phone_masked FROM persons f WHERE f.id = $1),
                        version = version + 1, updated_at = $3
                  WHERE id = $2 AND phone_enc IS NULL
                    AND EXISTS (SELECT 1 FROM persons f WHERE f.id = $1 AND f.phone_enc IS NOT NULL)",
            )
            .bind(from.clone())
            .bind(to.clone())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            let labels = sqlx::query(
                "INSERT INTO person_labels (person_id, label_id)
                 SELECT $2, label_id FROM person_labels WHERE person_id = $1 ON CONFLICT DO NOTHING",
            )
            .bind(from.clone())
            .bind(to.clone())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            self.audit(
                &mut tx,
                actor,
                Entry {
                    action: "person.link",
                    entity: "person",
                    entity_id: &to,
                    path: Some(&to_path),
                    purpose: None,
                    before: None,
                    after: Some(serde_json::json!({
                        "link_id": id, "phone_added": phone > 0, "labels_added": labels,
                    })),
                },
            )
            .await?;
            let requester = sqlx::query("SELECT requested_by FROM person_links WHERE id = $1")
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
            let name = sqlx::query("SELECT name FROM persons WHERE id = $1")
                .bind(to.clone())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
            self.notify(
                &mut tx,
                &[str_(&requester, "requested_by")],
                &Notice {
                    kind: "person.linked",
                    key: "notice-person-linked",
                    args: serde_json::json!({ "name": str_(&name, "name") }),
                    entity: "person",
                    entity_id: &to,
                    path: Some(&to_path),
                    link: Some(&format!("/registry/persons/{to}")),
                },
            )
            .await?;
        }
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: if confirm {
                    "person.link_confirm"
                } else {
                    "person.link_decline"
                },
                entity: "person",
                entity_id: &from,
                path: Some(&from_path),
                purpose: None,
                before: None,
                after: Some(after),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.person_links(grant, true)
            .await?
            .into_iter()
            .find(|l| l.id == id)
            .ok_or_else(not_found)
    }

    /// End the earlier record's current residence, if any, because the person moved to
    /// `community` (on the day the new residence started, or the old one's start when that is
    /// later). Whether a residence was ended.
    async fn end_for_move(
        &self,
        tx: &mut Transaction<'static, Any>,
        from: &str,
        to: &str,
        community: &str,
        now: i64,
    ) -> AppResult<bool> {
        let Some(old) = sqlx::query(
            "SELECT id, household_id, start_date FROM residences WHERE person_id = $1 AND end_date IS NULL",
        )
        .bind(from.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?
        else {
            return Ok(false);
        };
        let moved = sqlx::query(
            "SELECT start_date FROM residences WHERE person_id = $1 ORDER BY start_date DESC LIMIT 1",
        )
        .bind(to.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?
        .map(|r| str_(&r, "start_date"))
        .unwrap_or_else(|| self.clock.today());
        let end = moved.max(str_(&old, "start_date"));
        sqlx::query("UPDATE residences SET end_date = $1, end_reason = $2 WHERE id = $3 AND end_date IS NULL")
            .bind(end)
            .bind(format!("迁往{community}"))
            .bind(str_(&old, "id"))
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        sqlx::query("UPDATE households SET head_person_id = NULL, updated_at = $1 WHERE id = $2 AND head_person_id = $3")
            .bind(now)
            .bind(str_(&old, "household_id"))
            .bind(from.to_string())
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        Ok(true)
    }
}

/// The depth of the community level above a household path (bindings above it — district or
/// city administrators — are not asked about each move), when the path is deep enough.
fn from_path_community(path: &str) -> Option<usize> {
    crate::registry::places::community_prefix(path).map(|c| c.matches('/').count())
}
