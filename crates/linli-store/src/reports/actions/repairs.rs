//! Repairs (物业报修) steps: who does the work — assign (派给某人) and grab (抢单); round robin
//! (轮派) happens inside dispatch, see [`record_auto_assign`] — and the price of a paid repair:
//! quote (报价), then the resident's quote_accept or quote_decline of the quote they were shown.
//! Eligibility and the grab pool are in `reports/repairs.rs`; the pure rules in
//! `linli_core::reports::repairs`.

use serde_json::json;
use sqlx::{Any, Transaction};

use linli_core::reports::repairs::{
    self as repair_rules, Quote, QuoteError, QuoteState, QuoteStep,
};
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
    c.set("assignee_user_id", a.p.user_id().to_string());
    c.set("assigned_at", a.now);
    c.only_if_unassigned = true;
    let c = c.data(json!({ "assignee_user_id": a.p.user_id(), "mode": "grab" }));
    let mut w = a.write(c).await?;
    w.tell(vec![a.p.user_id().to_string()], "notice-report-assigned");
    if let Some(prev) = &r.assignee_user_id {
        w.tell(vec![prev.clone()], "notice-report-unassigned");
    }
    w.commit().await
}

/// The person doing the job states the price of a paid repair (after signing, before the
/// reply; again while not accepted): the assignee, or a dispatcher of the place for them —
/// nobody else of the unit, and nobody before the job has a person. Each quote gets its own
/// `quoted_at` (later than every earlier quote of the report), which answers must name. The
/// reporters are asked to answer; when a quote replaces one they may have seen, they are told
/// the price changed (an answer to the old one is refused, see [`quote_accept`]).
pub(super) async fn quote(a: &Act<'_>, amount_fen: i64) -> AppResult<Done> {
    let is_assignee = a.r.assignee_user_id.as_deref() == Some(a.p.user_id());
    a.need(a.can_dispatch || (a.can_handle && is_assignee))?;
    quote_allowed(a, QuoteStep::Quote)?;
    let previous = last_quoted_at(a).await?;
    let quoted_at = repair_rules::next_quoted_at(a.now, previous);
    let explain = a.notes.public.clone().unwrap_or_default();
    let mut c = Change::keep();
    c.set("quote_fen", amount_fen);
    c.set("quote_note", explain);
    c.set("quote_status", "pending");
    c.set("quoted_at", quoted_at);
    let c = c.data(json!({
        "amount_fen": amount_fen,
        "quoted_at": quoted_at,
        "previous_status": a.r.quote_status,
        "previous_amount_fen": a.r.quote_fen,
    }));
    let mut w = a.write(c).await?;
    let reporters = w.reporters().await?;
    if a.r.quote_status.is_some() {
        w.tell_with(
            reporters,
            "notice-report-quote-changed",
            json!({ "amount": repair_rules::yuan(amount_fen) }),
        );
    } else {
        w.tell(reporters, "notice-report-quote");
    }
    w.commit().await
}

/// The resident (or a dispatcher for them) accepts the pending price — the quote they were
/// shown (`shown`); when the current quote is another one, a 409 `report.quote_changed` naming
/// the current price, and nothing changes. The work may go on.
pub(super) async fn quote_accept(a: &Act<'_>, shown: Quote) -> AppResult<Done> {
    a.need(a.is_reporter || a.can_dispatch)?;
    quote_allowed(a, QuoteStep::Accept(shown))?;
    let mut c = Change::keep();
    c.set("quote_status", "accepted");
    let mut w = a.write(c.data(answer_data(a, shown))).await?;
    let to = handlers(&mut w, a).await?;
    w.tell(to, "notice-report-quote-accepted");
    w.commit().await
}

/// The resident (or a dispatcher for them) declines the price they were shown (bound like
/// [`quote_accept`]): the work ends here, closed with outcome `declined` (not a reply, so the
/// solve rate leaves it out).
pub(super) async fn quote_decline(a: &Act<'_>, shown: Quote) -> AppResult<Done> {
    a.need(a.is_reporter || a.can_dispatch)?;
    quote_allowed(a, QuoteStep::Decline(shown))?;
    let mut c = Change::along(Transition::DeclineQuote);
    c.set("quote_status", "declined");
    c.set("outcome", "declined");
    c.set("closed_at", a.now);
    let mut w = a.write(c.data(answer_data(a, shown))).await?;
    let to = handlers(&mut w, a).await?;
    w.tell(to, "notice-report-quote-declined");
    w.commit().await
}

/// A quote step the rules refuse is a 409 with the rule's code; a changed quote names the
/// current price.
fn quote_allowed(a: &Act<'_>, step: QuoteStep) -> AppResult<()> {
    let r = &a.r;
    let current = match (r.quote_fen, r.quoted_at) {
        (Some(amount_fen), Some(quoted_at)) => Some(Quote {
            amount_fen,
            quoted_at,
        }),
        _ => None,
    };
    repair_rules::quote_step(
        a.from,
        r.paid,
        QuoteState::parse(r.quote_status.as_deref()),
        current,
        step,
    )
    .map(|_| ())
    .map_err(|e| match (e, current) {
        (QuoteError::Changed, Some(q)) => AppError::conflict(e.code())
            .arg("amount", repair_rules::yuan(q.amount_fen))
            .details(json!({ "amount_fen": q.amount_fen, "quoted_at": q.quoted_at })),
        _ => AppError::conflict(e.code()),
    })
}

/// The latest `quoted_at` any quote of this report had (quotes are cleared when the report
/// goes to another unit; their events stay).
async fn last_quoted_at(a: &Act<'_>) -> AppResult<Option<i64>> {
    let rows =
        sqlx::query("SELECT at, data FROM report_events WHERE report_id = $1 AND action = 'quote'")
            .bind(a.r.id.clone())
            .fetch_all(&a.store.db.read)
            .await
            .map_err(db_err)?;
    let from_events = rows.iter().map(|row| {
        crate::db::opt_str(row, "data")
            .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
            .and_then(|d| d["quoted_at"].as_i64())
            .unwrap_or_else(|| crate::db::i64_(row, "at"))
    });
    Ok(from_events.chain(a.r.quoted_at).max())
}

fn answer_data(a: &Act<'_>, shown: Quote) -> serde_json::Value {
    let by = if a.is_reporter { "resident" } else { "staff" };
    json!({ "amount_fen": shown.amount_fen, "quoted_at": shown.quoted_at, "by": by })
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
        now,
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
