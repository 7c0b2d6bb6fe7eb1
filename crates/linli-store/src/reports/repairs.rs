//! Repairs (物业报修): who of a unit does the work. A person is *eligible* for a report when
//! their account is active, they work for the report's unit (the same rule as
//! [`acts_for`](super::actions::acts_for): bound to the organisation, or — committees —
//! inside its community) and their `ReportHandle` grant covers the report's place. Round-robin
//! assignment keeps one cursor per unit in `dispatch_cursors`, so the rotation survives
//! restarts and stays fair across reports. The grab pool lists the unassigned `grab` reports a
//! caller could take. The actions themselves (assign, grab, quote …) are in `actions/repairs.rs`.

use serde::Serialize;
use sqlx::{Any, Transaction};

use linli_core::AppResult;
use linli_core::auth::{Action, Principal};
use linli_core::reports::repairs::next_in_rotation;

use crate::Store;
use crate::db::{Sql, db_err, str_};

use super::actions::acts_for;
use super::{REPORT_COLS, REPORT_FROM, Report, Unit, report_from_row};

/// Someone a report can be assigned to.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Assignee {
    pub user_id: String,
    pub display_name: String,
    /// Open reports assigned to them now (to spread the work).
    pub open_tasks: i64,
}

/// Most reports listed in the grab pool.
const POOL_LIMIT: i64 = 200;

impl Store {
    /// Whether `user_id` may be given work of `unit` at `report_path` (see the module doc).
    pub(crate) async fn eligible_for(
        &self,
        unit: &Unit,
        report_path: &str,
        user_id: &str,
    ) -> AppResult<bool> {
        // `principal` is None for unknown and disabled accounts.
        let Some(p) = self.principal(user_id).await? else {
            return Ok(false);
        };
        Ok(works_there(&p, unit, report_path))
    }

    /// Everyone eligible for work of `unit` at `report_path`, in id order.
    pub(crate) async fn eligible_people(
        &self,
        unit: &Unit,
        report_path: &str,
    ) -> AppResult<Vec<String>> {
        // Candidates: bound to the organisation, or (committees) bound to a place inside its
        // community; each is then checked with the same rule as the actions use.
        let mut q = Sql::new(
            "SELECT DISTINCT rb.user_id FROM role_bindings rb JOIN users us ON us.id = rb.user_id LEFT JOIN places pl ON pl.id = rb.place_id WHERE us.disabled = 0 AND (rb.org_id = ",
        );
        q.bind(unit.id.clone());
        if unit.kind == "committee" {
            q.push(" OR (pl.id IS NOT NULL AND ");
            q.scope("pl.path", std::slice::from_ref(&unit.path));
            q.push(")");
        }
        q.push(") ORDER BY rb.user_id");
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        let mut out = Vec::new();
        for r in &rows {
            let uid = str_(r, "user_id");
            if self.eligible_for(unit, report_path, &uid).await? {
                out.push(uid);
            }
        }
        Ok(out)
    }

    /// The people a caller may assign the report to (with their open-task counts); the caller
    /// must be able to assign it (dispatch rights, or working for its unit).
    pub async fn report_assignees(&self, p: &Principal, id: &str) -> AppResult<Vec<Assignee>> {
        let viewer = self.report_viewer(p).await?;
        let r = self.visible_report(&viewer, id).await?;
        let Some(unit) = self.report_unit(&r).await? else {
            return Ok(Vec::new());
        };
        if !may_assign(p, &unit, &r.path) {
            return Err(linli_core::AppError::forbidden());
        }
        let people = self.eligible_people(&unit, &r.path).await?;
        let mut out = Vec::with_capacity(people.len());
        for uid in people {
            let q = Sql::new(
                "SELECT u.display_name, (SELECT COUNT(*) FROM reports x WHERE x.assignee_user_id = u.id AND x.status IN ('dispatched', 'in_progress')) AS n FROM users u WHERE u.id = $1",
            )
            .arg(uid.as_str());
            if let Some(row) = q
                .query()
                .fetch_optional(&self.db.read)
                .await
                .map_err(db_err)?
            {
                out.push(Assignee {
                    user_id: uid,
                    display_name: str_(&row, "display_name"),
                    open_tasks: crate::db::i64_(&row, "n"),
                });
            }
        }
        Ok(out)
    }

    pub(crate) async fn report_unit(&self, r: &Report) -> AppResult<Option<Unit>> {
        match &r.unit_id {
            Some(u) => self.unit(u).await,
            None => Ok(None),
        }
    }

    /// The next eligible person of the unit in its durable rotation, moving the cursor; `None`
    /// when nobody is eligible (the cursor stays). Runs inside the dispatch transaction: the
    /// cursor row is locked first (an UPDATE), so concurrent dispatches take turns.
    pub(crate) async fn rotate_in_tx(
        &self,
        tx: &mut Transaction<'static, Any>,
        unit_id: &str,
        candidates: &[String],
        now: i64,
    ) -> AppResult<Option<String>> {
        if candidates.is_empty() {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO dispatch_cursors (unit_id, last_user_id, updated_at) VALUES ($1, '', $2) ON CONFLICT (unit_id) DO NOTHING",
        )
        .bind(unit_id.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
        sqlx::query("UPDATE dispatch_cursors SET updated_at = $2 WHERE unit_id = $1")
            .bind(unit_id.to_string())
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        let row = sqlx::query("SELECT last_user_id FROM dispatch_cursors WHERE unit_id = $1")
            .bind(unit_id.to_string())
            .fetch_one(&mut **tx)
            .await
            .map_err(db_err)?;
        let last = str_(&row, "last_user_id");
        let Some(next) = next_in_rotation(candidates, Some(last.as_str())).cloned() else {
            return Ok(None);
        };
        sqlx::query("UPDATE dispatch_cursors SET last_user_id = $2 WHERE unit_id = $1")
            .bind(unit_id.to_string())
            .bind(next.clone())
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        Ok(Some(next))
    }

    /// 待抢单: unassigned reports in `grab` mode, not yet replied, of units the caller works for
    /// and places their `ReportHandle` grant covers; oldest first.
    pub async fn grab_pool(&self, p: &Principal) -> AppResult<Vec<Report>> {
        let Ok(grant) = p.grant(Action::ReportHandle) else {
            return Ok(Vec::new());
        };
        let mut q = Sql::new(&format!(
            "SELECT {REPORT_COLS}, u.kind AS unit_kind, u.place_id AS unit_place_id, u.path AS unit_path {REPORT_FROM} WHERE r.dispatch_mode = 'grab' AND r.assignee_user_id IS NULL AND r.status IN ('dispatched', 'in_progress') AND "
        ));
        q.scope("r.path", grant.area(Action::ReportHandle));
        q.push(" ORDER BY r.dispatched_at, r.id LIMIT ")
            .bind(POOL_LIMIT);
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows
            .iter()
            .filter(|row| {
                acts_for(
                    p,
                    &str_(row, "unit_id"),
                    &str_(row, "unit_kind"),
                    &str_(row, "unit_place_id"),
                    &str_(row, "unit_path"),
                )
            })
            .map(report_from_row)
            .collect())
    }
}

/// Whether the principal may be given (or take) work of `unit` at `path`.
pub(crate) fn works_there(p: &Principal, unit: &Unit, path: &str) -> bool {
    p.may(Action::ReportHandle, path)
        && acts_for(p, &unit.id, &unit.kind, &unit.place_id, &unit.path)
}

/// Whether the principal may assign work of `unit` at `path`: a dispatcher of the place, or
/// someone working for the unit (the unit's own 派单员; Linli has no separate role for it).
pub(crate) fn may_assign(p: &Principal, unit: &Unit, path: &str) -> bool {
    p.may(Action::ReportDispatch, path) || works_there(p, unit, path)
}
