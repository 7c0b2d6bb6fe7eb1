//! Time and help while the work is in progress: extension request and approval (延期),
//! escalation (上报), and 吹哨报到 — summoning units (whistle), who sign in (summon_sign) and
//! reply (summon_reply); the report cannot be replied while a summoned unit is still open.

use serde_json::json;

use linli_core::auth::Action;
use linli_core::reports::calendar::CalendarError;
use linli_core::reports::state::{Status, Transition, TransitionError};
use linli_core::{AppError, AppResult, new_id};

use crate::db::{Val, db_err, opt_i64, str_};

use super::super::Unit;
use super::frame::{Act, Change, Done, acts_for, transition_error};

/// The unit asks for more working days, before the resolve-by deadline; the dispatchers are
/// told. The status stays.
pub(super) async fn extend_request(a: &Act<'_>, days: i64) -> AppResult<Done> {
    a.need(a.can_handle)?;
    if a.from != Status::InProgress {
        return Err(a.illegal());
    }
    if a.r.resolve_by.is_some_and(|d| a.now >= d) {
        return Err(transition_error(TransitionError::ExtensionAfterDue));
    }
    let mut c = Change::keep();
    c.set("extension_days", days);
    let mut w = a.write(c.data(json!({ "days": days }))).await?;
    let dispatchers = w.dispatchers().await?;
    w.tell(dispatchers, "notice-report-extension-requested");
    w.commit().await
}

/// A dispatcher extends the resolve-by deadline by `days` working days (or the days of the
/// pending request), before it passed (counts towards 延期率).
pub(super) async fn extend(a: &Act<'_>, days: Option<i64>) -> AppResult<Done> {
    a.need(a.can_dispatch)?;
    let r = &a.r;
    let days = days
        .or(r.extension_days)
        .ok_or_else(|| AppError::required("days"))?;
    if !(1..=30).contains(&days) {
        return Err(AppError::bad_request("validation.bad_value").arg("field", "days"));
    }
    let base = r.resolve_by.unwrap_or(a.now);
    let cal = a.store.work_calendar().await?;
    let (due, warning) = match cal.add_working_days(base, days as u32) {
        Ok(d) => (d, None),
        Err(CalendarError::MissingYear(y)) => {
            tracing::warn!(year = y, "calendar year missing; extension in clock days");
            (
                base + days * 86_400_000,
                Some(format!("calendar_missing_year:{y}")),
            )
        }
    };
    let mut c = Change::along(Transition::Extend);
    c.set("resolve_by", due);
    c.set("extension_days", Val::NullInt);
    c.set("extended_count", r.extended_count + 1);
    if let Some(w) = warning {
        c.set("calendar_warning", w);
    }
    let c = c.data(json!({ "days": days, "resolve_by": due, "previous_resolve_by": r.resolve_by }));
    let mut w = a.write(c).await?;
    w.tell_unit("notice-report-extended").await?;
    w.commit().await
}

/// Report it up one level (street, then district, then city); the lead unit keeps it. The
/// officers of that level are told.
pub(super) async fn escalate(a: &Act<'_>) -> AppResult<Done> {
    a.need(a.can_dispatch || a.can_handle)?;
    let level = a.r.escalation_level + 1;
    let mut c = Change::along(Transition::Escalate);
    c.set("escalation_level", level);
    let mut w = a.write(c.data(json!({ "level": level }))).await?;
    let (place, staff) = a
        .store
        .parent_level_staff(w.tx(), &a.r.path, level as usize)
        .await?;
    w.data["to_place_id"] = json!(place);
    w.tell(staff, "notice-report-escalated");
    w.commit().await
}

/// 吹哨: summon other units (not the lead unit, each once until it replies); each is told.
pub(super) async fn whistle(a: &Act<'_>, unit_ids: Vec<String>) -> AppResult<Done> {
    a.need(a.can_dispatch)?;
    let mut units: Vec<Unit> = Vec::new();
    for u in &unit_ids {
        let unit = a.store.unit_or_bad(u).await?;
        if Some(&unit.id) == a.r.unit_id.as_ref() || units.iter().any(|x| x.id == unit.id) {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "unit_ids"));
        }
        units.push(unit);
    }
    let c = Change::along(Transition::Whistle).data(
        json!({ "units": units.iter().map(|u| json!({"id": u.id, "name": u.name})).collect::<Vec<_>>() }),
    );
    let mut w = a.write(c).await?;
    for u in &units {
        let tx = w.tx();
        let open = sqlx::query("SELECT 1 AS x FROM report_summons WHERE report_id = $1 AND unit_id = $2 AND replied_at IS NULL")
            .bind(a.r.id.clone())
            .bind(u.id.clone())
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
        if open.is_some() {
            return Err(AppError::conflict("report.already_summoned"));
        }
        sqlx::query("INSERT INTO report_summons (id, report_id, unit_id, summoned_at) VALUES ($1, $2, $3, $4)")
            .bind(new_id())
            .bind(a.r.id.clone())
            .bind(u.id.clone())
            .bind(a.now)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        let members = w.members(u).await?;
        w.tell(members, "notice-report-summoned");
    }
    w.commit().await
}

/// A summoned unit reports in (报到).
pub(super) async fn summon_sign(a: &Act<'_>, unit_id: String) -> AppResult<Done> {
    summons_step(a, unit_id, false).await
}

/// A summoned unit replies (it must have signed); the lead unit is told.
pub(super) async fn summon_reply(a: &Act<'_>, unit_id: String) -> AppResult<Done> {
    summons_step(a, unit_id, true).await
}

/// The summoned unit's people act for it (or a dispatcher), while the report is in progress.
async fn summons_step(a: &Act<'_>, unit_id: String, reply: bool) -> AppResult<Done> {
    let unit = a.store.unit_or_bad(&unit_id).await?;
    let p = a.p;
    a.need(
        a.can_dispatch
            || (p.may(Action::ReportHandle, &a.r.path)
                && acts_for(p, &unit.id, &unit.kind, &unit.place_id, &unit.path)),
    )?;
    if a.from != Status::InProgress {
        return Err(a.illegal());
    }
    let c = Change::keep().data(json!({ "unit_id": unit.id, "unit": unit.name }));
    let mut w = a.write(c).await?;
    let tx = w.tx();
    let s = sqlx::query("SELECT id, signed_at FROM report_summons WHERE report_id = $1 AND unit_id = $2 AND replied_at IS NULL")
        .bind(a.r.id.clone())
        .bind(unit.id.clone())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?
        .ok_or_else(|| AppError::conflict("report.not_summoned"))?;
    let signed = opt_i64(&s, "signed_at").is_some();
    if !reply {
        if signed {
            return Err(AppError::conflict("report.summons_already_signed"));
        }
        sqlx::query("UPDATE report_summons SET signed_at = $1 WHERE id = $2")
            .bind(a.now)
            .bind(str_(&s, "id"))
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        return w.commit().await;
    }
    if !signed {
        return Err(AppError::conflict("report.summons_not_signed"));
    }
    sqlx::query("UPDATE report_summons SET replied_at = $1, reply = $2 WHERE id = $3")
        .bind(a.now)
        .bind(a.notes.public.clone().or(a.notes.internal.clone()))
        .bind(str_(&s, "id"))
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    w.tell_unit("notice-report-summons-replied").await?;
    w.commit().await
}
