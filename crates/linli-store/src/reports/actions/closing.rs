//! Finishing the work: the unit's reply (回复/办结), the dispatchers' review (审核: pass →
//! return visit or closed by the return-visit policy; fail → 补办), the return visit
//! (回访: rating 1–5, solved?) and reopening (重办).

use serde_json::json;

use linli_core::AppResult;
use linli_core::reports::repairs as repair_rules;
use linli_core::reports::state::{Outcome, Status, Transition};

use crate::db::Val;

use super::frame::{Act, Change, Done, late_at_close};

/// in_progress → replied, with the outcome and a public note. The state machine refuses while
/// a summoned unit is open, or a paid repair's price is not accepted.
pub(super) async fn reply(a: &Act<'_>, outcome: Outcome) -> AppResult<Done> {
    a.need(a.can_handle)?;
    let r = &a.r;
    let late = r.resolve_by.is_some_and(|d| a.now > d);
    let name = match outcome {
        Outcome::Solved => "solved",
        Outcome::Explained => "explained",
        Outcome::Unsolvable => "unsolvable",
        Outcome::Declined => "declined",
    };
    let mut c = Change::along(Transition::Reply { outcome });
    c.set("replied_at", a.now);
    c.set("outcome", name);
    if late {
        c.set("overdue_resolve", 1i64);
    }
    if r.first_contact_at.is_none() {
        c.set("first_contact_at", a.now);
    }
    let mut w = a
        .write(c.data(json!({ "outcome": name, "late": late })))
        .await?;
    let dispatchers = w.dispatchers().await?;
    w.tell(dispatchers, "notice-report-replied");
    let reporters = w.reporters().await?;
    w.tell(reporters, "notice-report-replied");
    w.commit().await
}

/// replied → awaiting_visit, or closed at once when the return-visit policy (always / sample /
/// none) says no visit; the reporters are asked to rate, or told it is done.
pub(super) async fn review_pass(a: &Act<'_>) -> AppResult<Done> {
    a.need(a.can_dispatch)?;
    let r = &a.r;
    let policy = r.return_visit.clone().unwrap_or_else(|| "always".into());
    let pct = r
        .visit_sample_percent
        .unwrap_or(repair_rules::DEFAULT_VISIT_SAMPLE_PERCENT);
    let visit = repair_rules::needs_return_visit(&policy, pct, &r.id);
    let mut c = Change::along(Transition::ReviewPass { visit });
    if !visit {
        // Closed without a visit: the overdue flags freeze now, as at a visit.
        c.set("closed_at", a.now);
        c.set("overdue_resolve", i64::from(late_at_close(r)));
    }
    let mut data = json!({ "return_visit": policy, "visit": visit });
    if policy == "sample" {
        data["sample_percent"] = json!(pct);
        data["sample_bucket"] = json!(repair_rules::sample_bucket(&r.id));
    }
    let mut w = a.write(c.data(data)).await?;
    let reporters = w.reporters().await?;
    // Asked to rate only when a return visit follows.
    let key = if w.to == Status::AwaitingVisit {
        "notice-report-rate"
    } else {
        "notice-report-done"
    };
    w.tell(reporters, key);
    w.commit().await
}

/// replied → in_progress: the reply is withdrawn and the unit told to do more (补办).
pub(super) async fn review_fail(a: &Act<'_>) -> AppResult<Done> {
    a.need(a.can_dispatch)?;
    let mut c = Change::along(Transition::ReviewFail);
    c.set("replied_at", Val::NullInt);
    c.set("outcome", Val::NullText);
    let mut w = a.write(c).await?;
    w.tell_unit("notice-report-review-failed").await?;
    w.commit().await
}

/// awaiting_visit → closed with the rating; by the reporter (or a dispatcher who called them).
/// The overdue flags freeze.
pub(super) async fn visit(a: &Act<'_>, rating: i64, solved: bool) -> AppResult<Done> {
    a.need(a.can_dispatch || a.is_reporter)?;
    let mut c = Change::along(Transition::Visit);
    c.set("rating", rating);
    c.set("solved", i64::from(solved));
    c.set("closed_at", a.now);
    c.set("overdue_resolve", i64::from(late_at_close(&a.r)));
    let by = if a.is_reporter && !a.can_dispatch {
        "resident"
    } else {
        "staff"
    };
    let c = c.data(json!({ "rating": rating, "solved": solved, "by": by }));
    let mut w = a.write(c).await?;
    w.tell_unit("notice-report-closed").await?;
    w.commit().await
}

/// awaiting_visit, or closed within the window → in_progress with the same unit (重办): a new
/// resolve-by from the rule, the reply and rating cleared. A late first round stays late:
/// overdue flags are never cleared.
pub(super) async fn reopen(a: &Act<'_>) -> AppResult<Done> {
    a.need(a.can_dispatch || a.is_reporter)?;
    let r = &a.r;
    if r.unit_id.is_none() {
        return Err(a.illegal());
    }
    let rule = match r.routing_rule_id.as_deref() {
        Some(rid) => a.store.routing_rule_by_id(rid).await?,
        None => None,
    };
    let mut c = Change::along(Transition::Reopen);
    if let Some(rule) = rule {
        let d = a.store.deadlines_for(&rule, a.now).await?;
        c.set("resolve_by", d.resolve_by);
        if let Some(w) = d.warning {
            c.set("calendar_warning", w);
        }
    }
    c.set("reopened_count", r.reopened_count + 1);
    c.set("closed_at", Val::NullInt);
    c.set("replied_at", Val::NullInt);
    c.set("outcome", Val::NullText);
    c.set("rating", Val::NullInt);
    c.set("solved", Val::NullInt);
    let mut w = a.write(c).await?;
    w.tell_unit("notice-report-reopened").await?;
    w.commit().await
}
