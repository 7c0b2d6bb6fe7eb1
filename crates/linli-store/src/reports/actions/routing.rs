//! Getting the report to a unit and the unit taking it: dispatch (派单), transfer (转办), sign
//! (签收), return (退单) and contact (首次联系).

use serde_json::json;

use linli_core::reports::repairs::DispatchMode;
use linli_core::reports::state::{Status, Transition};
use linli_core::{AppError, AppResult};

use crate::Store;
use crate::db::Val;

use super::super::Report;
use super::super::Unit;
use super::super::catalogue::RoutingRule;
use super::frame::{Act, Change, Done};

/// accepted → dispatched: to the chosen unit, or the catalogue's. Deadlines from the rule;
/// the rule's repair settings travel with the report (see [`send_to_unit`]).
pub(super) async fn dispatch(a: &Act<'_>, unit_id: Option<String>) -> AppResult<Done> {
    a.need(a.can_dispatch)?;
    let chosen = match unit_id {
        Some(u) => Some(a.store.unit_or_bad(&u).await?),
        None => None,
    };
    send_to_unit(a, chosen, Transition::Dispatch).await
}

/// in_progress → dispatched to another unit (new sign-by deadline; resolve-by kept).
pub(super) async fn transfer(a: &Act<'_>, unit_id: String) -> AppResult<Done> {
    a.need(a.can_dispatch)?;
    let unit = a.store.unit_or_bad(&unit_id).await?;
    if a.r.unit_id.as_ref() == Some(&unit.id) {
        return Err(AppError::bad_request("report.same_unit"));
    }
    send_to_unit(a, Some(unit), Transition::Transfer).await
}

/// Dispatch or transfer. The catalogue's repair settings hold for its own unit; another unit
/// chosen by hand works the plain way (assign, free, always visited). A new unit starts
/// afresh: nobody assigned, no price agreed. Its people are told (grab mode: the job is open
/// for grabbing); round robin picks the next person in the same transaction.
async fn send_to_unit(a: &Act<'_>, chosen: Option<Unit>, t: Transition) -> AppResult<Done> {
    let first = t == Transition::Dispatch;
    let (rule, rule_id) = a.store.rule_for(&a.r, chosen.as_ref()).await?;
    let unit = match chosen {
        Some(u) => u,
        None => a
            .store
            .unit(&rule.unit_id)
            .await?
            .ok_or_else(|| AppError::bad_request("report.no_route"))?,
    };
    let d = a.store.deadlines_for(&rule, a.now).await?;
    let mut c = Change::along(t);
    c.set("unit_id", unit.id.clone());
    c.set("dispatched_at", a.now);
    c.set("sign_by", d.sign_by);
    c.set("signed_at", Val::NullInt);
    c.set("overdue_sign", 0i64);
    if first {
        c.set("first_contact_by", d.first_contact_by);
        c.set("resolve_by", d.resolve_by);
        c.set("routing_rule_id", rule_id.clone());
    }
    if let Some(w) = &d.warning {
        c.set("calendar_warning", w.clone());
    }
    let (mode, paid, visit, pct) = match &rule_id {
        Some(_) => (
            DispatchMode::parse(&rule.dispatch_mode).unwrap_or(DispatchMode::Assign),
            rule.paid,
            rule.return_visit.clone(),
            rule.visit_sample_percent,
        ),
        None => (DispatchMode::Assign, false, "always".to_string(), 0),
    };
    c.set("dispatch_mode", mode.as_str());
    c.set("paid", i64::from(paid));
    c.set("return_visit", visit.clone());
    c.set("visit_sample_percent", pct);
    c.clear_assignment();
    c.clear_quote();
    let people = if mode == DispatchMode::Assign {
        Vec::new()
    } else {
        a.store.eligible_people(&unit, &a.r.path).await?
    };
    let c = c.data(
        json!({ "unit_id": unit.id, "unit": unit.name, "sign_by": d.sign_by, "resolve_by": d.resolve_by, "routing_rule_id": rule_id, "calendar_warning": d.warning, "dispatch_mode": mode.as_str(), "paid": paid, "return_visit": visit }),
    );

    let mut w = a.write(c).await?;
    let members = w.members(&unit).await?;
    w.tell(
        members,
        if mode == DispatchMode::Grab {
            "notice-report-grab-open"
        } else {
            "notice-report-dispatched"
        },
    );
    let mut auto_assigned = None;
    if mode == DispatchMode::RoundRobin {
        match a
            .store
            .rotate_in_tx(w.tx(), &unit.id, &people, a.now)
            .await?
        {
            Some(next) => auto_assigned = Some(next),
            None => {
                // Nobody to rotate to: the report waits unassigned and the dispatchers are
                // told, never dropped silently.
                w.data["round_robin"] = json!("no_eligible_person");
                let dispatchers = w.dispatchers().await?;
                w.tell(dispatchers, "notice-report-no-assignee");
            }
        }
    }
    if first {
        let reporters = w.reporters().await?;
        w.tell(reporters, "notice-report-progress");
    }
    if let Some(next) = auto_assigned {
        // The dispatch event first, then the rotation's own assign event.
        w.record().await?;
        let to = w.to;
        super::repairs::record_auto_assign(w.tx(), &a.r, &next, to, a.now).await?;
        w.tell(vec![next], "notice-report-assigned");
    }
    w.commit().await
}

/// dispatched → in_progress. The unit's people (or a dispatcher); late if after sign-by.
pub(super) async fn sign(a: &Act<'_>) -> AppResult<Done> {
    a.need(a.can_handle)?;
    let late = a.r.sign_by.is_some_and(|d| a.now > d);
    let mut c = Change::along(Transition::Sign);
    c.set("signed_at", a.now);
    c.set("overdue_sign", i64::from(late));
    let mut w = a.write(c.data(json!({ "late": late }))).await?;
    let reporters = w.reporters().await?;
    w.tell(reporters, "notice-report-progress");
    w.commit().await
}

/// dispatched → accepted: the unit gives it back (counts towards 回退率); the dispatchers
/// route it again.
pub(super) async fn return_(a: &Act<'_>, reason: String) -> AppResult<Done> {
    a.need(a.can_handle)?;
    let mut c = Change::along(Transition::Return);
    c.set("unit_id", Val::NullText);
    c.set("sign_by", Val::NullInt);
    c.set("returned_count", a.r.returned_count + 1);
    c.clear_assignment();
    c.clear_quote();
    let mut w = a
        .write(c.data(json!({ "reason": reason, "unit_id": a.r.unit_id })))
        .await?;
    let dispatchers = w.dispatchers().await?;
    w.tell(dispatchers, "notice-report-returned");
    w.commit().await
}

/// First contact with the resident (首次联系), while dispatched or in progress; the first one
/// stops the first-contact deadline.
pub(super) async fn contact(a: &Act<'_>) -> AppResult<Done> {
    a.need(a.can_handle)?;
    if !matches!(a.from, Status::Dispatched | Status::InProgress) {
        return Err(a.illegal());
    }
    let mut c = Change::keep();
    if a.r.first_contact_at.is_none() {
        c.set("first_contact_at", a.now);
    }
    let late = a.r.first_contact_by.is_some_and(|d| a.now > d);
    let mut w = a.write(c.data(json!({ "late": late }))).await?;
    let reporters = w.reporters().await?;
    w.tell(reporters, "notice-report-progress");
    w.commit().await
}

impl Store {
    /// A unit reports can be sent to (committee, property company or department), else 400.
    pub(super) async fn unit_or_bad(&self, id: &str) -> AppResult<Unit> {
        if id.is_empty() {
            return Err(AppError::required("unit_id"));
        }
        self.unit(id)
            .await?
            .filter(|u| ["committee", "property_company", "department"].contains(&u.kind.as_str()))
            .ok_or_else(|| AppError::bad_request("validation.bad_value").arg("field", "unit_id"))
    }

    /// The rule for dispatching to `unit`: the catalogue's current rule for the report (if its
    /// unit is the one chosen, or no unit was chosen), else the catalogue rule's deadlines with the
    /// chosen unit, else standard deadlines (1 / 2 / 5 working days).
    async fn rule_for(
        &self,
        r: &Report,
        unit: Option<&Unit>,
    ) -> AppResult<(RoutingRule, Option<String>)> {
        let found = self.route(&r.category, &r.path).await?;
        match (found, unit) {
            (Some(rule), None) => {
                let id = rule.id.clone();
                Ok((rule, Some(id)))
            }
            (Some(rule), Some(u)) => {
                let id = (rule.unit_id == u.id).then(|| rule.id.clone());
                Ok((
                    RoutingRule {
                        unit_id: u.id.clone(),
                        ..rule
                    },
                    id,
                ))
            }
            (None, Some(u)) => Ok((
                RoutingRule {
                    id: String::new(),
                    rule_key: String::new(),
                    version: 0,
                    current: false,
                    category: r.category.clone(),
                    area_id: String::new(),
                    area_path: String::new(),
                    unit_id: u.id.clone(),
                    deadline_unit: "workdays".into(),
                    sign_by: 1,
                    first_contact_by: 2,
                    resolve_by: 5,
                    notice_zh: String::new(),
                    notice_en: String::new(),
                    dispatch_mode: "assign".into(),
                    paid: false,
                    return_visit: "always".into(),
                    visit_sample_percent: 0,
                    created_by: String::new(),
                    created_at: 0,
                },
                None,
            )),
            (None, None) => Err(AppError::bad_request("report.no_route")),
        }
    }
}
