//! Repairs (物业报修) steps: who does the work — assign (派给某人) and grab (抢单); round robin
//! (轮派) happens inside dispatch, see [`record_auto_assign`] — and the price of a paid repair:
//! quote (报价), then the resident's quote_accept or quote_decline. Eligibility and the grab
//! pool are in `reports/repairs.rs`; the pure rules in `linli_core::reports::repairs`.

use serde_json::json;
use sqlx::{Any, Transaction};

use linli_core::reports::repairs::{self as repair_rules, QuoteState, QuoteStep};
use linli_core::reports::state::{Status, Transition};
use linli_core::{AppError, AppResult};

use crate::audit::{self, Actor, Entry};
use crate::db::db_err;

use super::super::Report;
use super::super::repairs::{may_assign, works_there};
use super::super::status_str;
use super::frame::{Act, Change, Done, Written, insert_event};

/// Give the work to a person of the unit (or to another one), while dispatched or in progress.
/// A dispatcher of the place or someone of the unit assigns; the person must be eligible. The
/// new person is told, and the one who lost it.
pub(super) async fn assign(a: &Act<'_>, to: String) -> AppResult<Done> {
    let r = &a.r;
    let unit = a.unit.as_ref().ok_or_else(|| a.illegal())?;
    a.need(may_assign(a.p, unit, &r.path))?;
    if !repair_rules::assignable(a.from) {
        return Err(a.illegal());
    }
    if !a.store.eligible_for(unit, &r.path, &to).await? {
        return Err(AppError::bad_request("report.assignee_not_eligible"));
    }
    if r.assignee_user_id.as_deref() == Some(to.as_str()) {
        return Err(AppError::bad_request("report.same_assignee"));
    }
    let mut c = Change::keep();
    c.set("assignee_user_id", to.clone());
    c.set("assigned_at", a.now);
    let c = c.data(
        json!({ "assignee_user_id": to, "previous_assignee_user_id": r.assignee_user_id, "mode": r.dispatch_mode }),
    );
    let mut w = a.write(c).await?;
    w.tell(vec![to], "notice-report-assigned");
    if let Some(prev) = &r.assignee_user_id {
        w.tell(vec![prev.clone()], "notice-report-unassigned");
    }
    w.commit().await
}

/// 抢单: the first of the unit's people to take an unassigned grab job gets it. The write is
/// conditional on nobody holding it, so of two concurrent grabs one wins and the other is a
/// 409 `report.already_taken`.
pub(super) async fn grab(a: &Act<'_>) -> AppResult<Done> {
    let r = &a.r;
    let unit = a.unit.as_ref().ok_or_else(|| a.illegal())?;
    // Only the unit's own people take work from the pool.
    a.need(works_there(a.p, unit, &r.path))?;
    if r.dispatch_mode.as_deref() != Some("grab") {
        return Err(AppError::conflict("report.not_grab_mode"));
    }
    if !repair_rules::assignable(a.from) {
        return Err(a.illegal());
    }
    if r.assignee_user_id.is_some() {
        return Err(AppError::conflict("report.already_taken"));
    }
    let mut c = Change::keep();
    c.set("assignee_user_id", a.p.user_id.clone());
    c.set("assigned_at", a.now);
    c.only_if_unassigned = true;
    let c = c.data(json!({ "assignee_user_id": a.p.user_id, "mode": "grab" }));
    let mut w = a.write(c).await?;
    w.tell(vec![a.p.user_id.clone()], "notice-report-assigned");
    if let Some(prev) = &r.assignee_user_id {
        w.tell(vec![prev.clone()], "notice-report-unassigned");
    }
    w.commit().await
}

/// The handler states the price of a paid repair (after signing, before the reply; again while
/// not accepted). The reporters are asked to answer.
pub(super) async fn quote(a: &Act<'_>, amount_fen: i64) -> AppResult<Done> {
    a.need(a.can_handle)?;
    quote_allowed(a, QuoteStep::Quote)?;
    let explain = a.notes.public.clone().unwrap_or_default();
    let mut c = Change::keep();
    c.set("quote_fen", amount_fen);
    c.set("quote_note", explain);
    c.set("quote_status", "pending");
    c.set("quoted_at", a.now);
    let c = c.data(json!({ "amount_fen": amount_fen, "previous_status": a.r.quote_status }));
    let mut w = a.write(c).await?;
    let reporters = w.reporters().await?;
    w.tell(reporters, "notice-report-quote");
    w.commit().await
}

/// The resident (or a dispatcher for them) accepts the pending price; the work may go on.
pub(super) async fn quote_accept(a: &Act<'_>) -> AppResult<Done> {
    a.need(a.is_reporter || a.can_dispatch)?;
    quote_allowed(a, QuoteStep::Accept)?;
    let mut c = Change::keep();
    c.set("quote_status", "accepted");
    let mut w = a.write(c.data(answer_data(a))).await?;
    let to = handlers(&mut w, a).await?;
    w.tell(to, "notice-report-quote-accepted");
    w.commit().await
}

/// The resident (or a dispatcher for them) declines the price: the work ends here, closed with
/// outcome `declined` (not a reply, so the solve rate leaves it out).
pub(super) async fn quote_decline(a: &Act<'_>) -> AppResult<Done> {
    a.need(a.is_reporter || a.can_dispatch)?;
    quote_allowed(a, QuoteStep::Decline)?;
    let mut c = Change::along(Transition::DeclineQuote);
    c.set("quote_status", "declined");
    c.set("outcome", "declined");
    c.set("closed_at", a.now);
    let mut w = a.write(c.data(answer_data(a))).await?;
    let to = handlers(&mut w, a).await?;
    w.tell(to, "notice-report-quote-declined");
    w.commit().await
}

/// A quote step the rules refuse is a 409 with the rule's code.
fn quote_allowed(a: &Act<'_>, step: QuoteStep) -> AppResult<()> {
    repair_rules::quote_step(
        a.from,
        a.r.paid,
        QuoteState::parse(a.r.quote_status.as_deref()),
        step,
    )
    .map(|_| ())
    .map_err(|e| AppError::conflict(e.code()))
}

fn answer_data(a: &Act<'_>) -> serde_json::Value {
    let by = if a.is_reporter { "resident" } else { "staff" };
    json!({ "amount_fen": a.r.quote_fen, "by": by })
}

/// Who hears the resident's answer: the assignee and the unit's people.
async fn handlers(w: &mut Written<'_>, a: &Act<'_>) -> AppResult<Vec<String>> {
    let mut to: Vec<String> = a.r.assignee_user_id.iter().cloned().collect();
    if let Some(u) = &a.unit {
        to.extend(w.members(u).await?);
    }
    to.dedup();
    Ok(to)
}

/// Round robin picked `next` while dispatching: set the assignee and record it as its own
/// `assign` event (actor: the rotation) and audit entry, in the dispatch transaction.
pub(super) async fn record_auto_assign(
    tx: &mut Transaction<'static, Any>,
    r: &Report,
    next: &str,
    status: Status,
    now: i64,
) -> AppResult<()> {
    let status = status_str(status);
    sqlx::query("UPDATE reports SET assignee_user_id = $1, assigned_at = $2 WHERE id = $3")
        .bind(next.to_string())
        .bind(now)
        .bind(r.id.clone())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    let actor = Actor::system("round_robin");
    let data = json!({ "assignee_user_id": next, "mode": "round_robin", "auto": true });
    insert_event(
        tx,
        &r.id,
        "assign",
        Some(status),
        status,
        &actor,
        now,
        None,
        None,
        data.clone(),
    )
    .await?;
    audit::append(
        tx,
        &actor,
        Entry {
            action: "report.assign",
            entity: "report",
            entity_id: &r.id,
            path: Some(&r.path),
            purpose: None,
            before: Some(json!({ "assignee_user_id": null })),
            after: Some(data),
        },
    )
    .await?;
    Ok(())
}
