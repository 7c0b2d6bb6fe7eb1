//! Moving a report: every action of DOMAIN.md's state machine, plus the steps that do not change
//! the status (extension request, first contact, summoned units signing and replying,
//! moderation). Each action runs in one transaction: the row (guarded by its version), an event
//! with actor, time and public/internal notes, an audit entry, and inbox notices for the people
//! who must act; a `report.<action>` bus event follows the commit. A move the state machine does
//! not allow is a 409 with a stable code, and nothing changes.

use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::{Any, Transaction};

use linli_core::auth::{Action, Principal};
use linli_core::reports::repairs::{
    self as repair_rules, DispatchMode, MAX_QUOTE_FEN, QuoteState, QuoteStep,
};
use linli_core::reports::state::{
    self, Outcome, RejectReason, Status, Transition, TransitionError,
};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, Val, db_err, i64_, str_};
use crate::notify::Notice;

use super::catalogue::RoutingRule;
use super::repairs::{may_assign, works_there};
use super::{
    REPORT_COLS, REPORT_FROM, Report, Unit, context_of, not_found, parse_status, report_from_row,
    status_str,
};

/// One action on a report. `action` is one of: accept, reject, dispatch, sign, return,
/// extend_request, extend, transfer, escalate, whistle, summon_sign, summon_reply, contact,
/// reply, review_pass, review_fail, visit, reopen, moderate; repairs: assign, grab, quote,
/// quote_accept, quote_decline. Other fields as the action needs.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct ReportAction {
    pub action: String,
    /// Shown to the resident.
    #[serde(default)]
    pub public_note: Option<String>,
    /// Staff only.
    #[serde(default)]
    pub internal_note: Option<String>,
    /// reject: `out_of_scope`, `answered` or `duplicate`; return: why (required).
    #[serde(default)]
    pub reason: Option<String>,
    /// reject with reason `duplicate`: the report this one duplicates (merged into it).
    #[serde(default)]
    pub duplicate_of: Option<String>,
    /// dispatch (optional, else the catalogue's unit), transfer (required), summon_sign /
    /// summon_reply (the summoned unit).
    #[serde(default)]
    pub unit_id: Option<String>,
    /// whistle: the units summoned.
    #[serde(default)]
    pub unit_ids: Vec<String>,
    /// extend_request / extend: working days.
    #[serde(default)]
    pub days: Option<i64>,
    /// reply: solved, explained, unsolvable.
    #[serde(default)]
    pub outcome: Option<String>,
    /// visit: 1–5.
    #[serde(default)]
    pub rating: Option<i64>,
    /// visit: whether the problem is solved.
    #[serde(default)]
    pub solved: Option<bool>,
    /// moderate: show to neighbours or not.
    #[serde(default)]
    pub public: Option<bool>,
    /// assign: the person of the unit who does the work.
    #[serde(default)]
    pub assignee_user_id: Option<String>,
    /// quote: the price in fen (分), with the explanation in `public_note`.
    #[serde(default)]
    pub amount_fen: Option<i64>,
    /// The version the caller read; a mismatch is a 409.
    #[serde(default)]
    pub version: Option<i64>,
}

fn transition_error(e: TransitionError) -> AppError {
    match e {
        TransitionError::SummonsOutstanding(n) => {
            AppError::conflict(e.code()).arg("count", n.to_string())
        }
        TransitionError::Illegal { from, action } => AppError::conflict(e.code())
            .details(json!({ "status": status_str(from), "action": action })),
        _ => AppError::conflict(e.code()),
    }
}

fn note(v: &Option<String>, field: &str) -> AppResult<Option<String>> {
    match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if s.chars().count() > 2000 => {
            Err(AppError::bad_request("validation.too_long").arg("field", field.to_string()))
        }
        Some(s) => Ok(Some(s.to_string())),
        None => Ok(None),
    }
}

/// Whether the principal works for `unit`: bound to the organisation, or (committees) bound
/// inside its community with a role that handles reports.
pub fn acts_for(
    p: &Principal,
    unit_id: &str,
    unit_kind: &str,
    unit_place_id: &str,
    unit_path: &str,
) -> bool {
    if p.token.is_some() && p.grant(Action::ReportHandle).is_err() {
        return false;
    }
    p.bindings.iter().any(|b| {
        b.role.actions().contains(&Action::ReportHandle)
            && (b.node_id == unit_id
                || (unit_kind == "committee"
                    && (b.node_id == unit_place_id
                        || b.prefixes.iter().any(|px| px.starts_with(unit_path)))))
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_event(
    tx: &mut Transaction<'static, Any>,
    report_id: &str,
    action: &str,
    from: Option<&str>,
    to: &str,
    actor: &Actor,
    at: i64,
    public_note: Option<&str>,
    internal_note: Option<&str>,
    data: Value,
) -> AppResult<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO report_events (id, report_id, action, from_status, to_status, actor_id, actor, at, public_note, internal_note, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id.clone())
    .bind(report_id.to_string())
    .bind(action.to_string())
    .bind(from.map(str::to_string))
    .bind(to.to_string())
    .bind(actor.id.clone())
    .bind(actor.name.clone())
    .bind(at)
    .bind(public_note.map(str::to_string))
    .bind(internal_note.map(str::to_string))
    .bind(data.to_string())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(id)
}

/// Who is told, and with which message.
struct Tell {
    to: Vec<String>,
    key: &'static str,
}

impl Store {
    pub(crate) async fn report_unscoped(&self, id: &str) -> AppResult<Option<Report>> {
        let mut q = Sql::new(&format!("SELECT {REPORT_COLS} {REPORT_FROM} WHERE r.id = "));
        q.bind(id);
        let r = self.db.fetch_optional_fast(&q).await?;
        Ok(r.as_ref().map(report_from_row))
    }

    async fn report_in_tx(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
    ) -> AppResult<Option<Report>> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REPORT_COLS} {REPORT_FROM} WHERE r.id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
        Ok(r.as_ref().map(report_from_row))
    }

    /// The reporter and the resident accounts of the report's household.
    pub(crate) async fn report_reporters(
        &self,
        tx: &mut Transaction<'static, Any>,
        r: &Report,
    ) -> AppResult<Vec<String>> {
        let mut out: Vec<String> = r.reporter_user_id.iter().cloned().collect();
        if let Some(h) = &r.household_id {
            let rows = sqlx::query(
                "SELECT user_id FROM role_bindings WHERE household_id = $1 AND role = 'resident' ORDER BY user_id",
            )
            .bind(h.clone())
            .fetch_all(&mut **tx)
            .await
            .map_err(db_err)?;
            out.extend(rows.iter().map(|r| str_(r, "user_id")));
        }
        Ok(out)
    }

    async fn open_summons(&self, tx: &mut Transaction<'static, Any>, id: &str) -> AppResult<usize> {
        let r = sqlx::query(
            "SELECT COUNT(*) AS n FROM report_summons WHERE report_id = $1 AND replied_at IS NULL",
        )
        .bind(id.to_string())
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)?;
        Ok(i64_(&r, "n") as usize)
    }

    async fn unit_or_bad(&self, id: Option<&str>) -> AppResult<Unit> {
        let id = id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AppError::required("unit_id"))?;
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

    /// Perform one action on a report (see [`ReportAction`]). A report the caller cannot see is
    /// not found; one they see but may not act on is forbidden; a move the state machine refuses
    /// is a conflict. Returns the report after the change.
    pub async fn report_act(&self, p: &Principal, id: &str, a: ReportAction) -> AppResult<Report> {
        let viewer = self.report_viewer(p).await?;
        let r = self.visible_report(&viewer, id).await?;
        let can_dispatch = p
            .grant(Action::ReportDispatch)
            .is_ok_and(|g| g.covers(&r.path));
        let current_unit = match &r.unit_id {
            Some(u) => self.unit(u).await?,
            None => None,
        };
        let can_handle = p
            .grant(Action::ReportHandle)
            .is_ok_and(|g| g.covers(&r.path))
            && (can_dispatch
                || current_unit
                    .as_ref()
                    .is_some_and(|u| acts_for(p, &u.id, &u.kind, &u.place_id, &u.path)));
        let is_reporter = r.reporter_user_id.as_deref() == Some(p.user_id.as_str())
            || r.household_id
                .as_ref()
                .is_some_and(|h| viewer.households.contains(h));
        let need = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(AppError::forbidden())
            }
        };
        if let Some(v) = a.version
            && v != r.version
        {
            // A page posts the version it showed; for a grab the news is that someone was faster.
            return Err(lost_race(a.action.trim()));
        }
        let public_note = note(&a.public_note, "public_note")?;
        let mut internal_note = note(&a.internal_note, "internal_note")?;
        let now = self.now_ms();
        let from = parse_status(&r.status);
        let action = a.action.trim().to_string();

        // Validate and compute outside the transaction what needs other reads.
        let mut transition: Option<Transition> = None;
        let mut sets: Vec<(&'static str, Val)> = Vec::new();
        let mut data = json!({});
        let mut new_unit: Option<Unit> = None;
        let mut summon_units: Vec<Unit> = Vec::new();
        // Repairs: the mode a dispatch set, the unit's eligible people (grab / round robin),
        // the person an assign or grab gives the work to.
        let mut dispatch_mode: Option<DispatchMode> = None;
        let mut people: Vec<String> = Vec::new();
        let mut assignee: Option<String> = None;
        match action.as_str() {
            "accept" => {
                need(can_dispatch)?;
                transition = Some(Transition::Accept);
                sets.push(("accepted_at", now.into()));
            }
            "reject" => {
                need(can_dispatch)?;
                let reason = match a.reason.as_deref() {
                    Some("out_of_scope") => RejectReason::OutOfScope,
                    Some("answered") => RejectReason::Answered,
                    Some("duplicate") => {
                        let dup = a
                            .duplicate_of
                            .as_deref()
                            .filter(|d| *d != r.id)
                            .ok_or_else(|| AppError::required("duplicate_of"))?;
                        let target = match self.report_unscoped(dup).await? {
                            Some(t)
                                if t.status != "closed"
                                    && self.report_visible(&viewer, &t).await? =>
                            {
                                t
                            }
                            _ => {
                                return Err(AppError::bad_request("validation.bad_value")
                                    .arg("field", "duplicate_of"));
                            }
                        };
                        sets.push(("duplicate_of", target.id.clone().into()));
                        RejectReason::DuplicateOf {
                            report_id: target.id,
                        }
                    }
                    Some(_) => {
                        return Err(
                            AppError::bad_request("validation.bad_value").arg("field", "reason")
                        );
                    }
                    None => return Err(AppError::required("reason")),
                };
                sets.push((
                    "reject_reason",
                    serde_json::to_string(&reason).unwrap_or_default().into(),
                ));
                sets.push(("closed_at", now.into()));
                data = json!({ "reason": reason });
                transition = Some(Transition::Reject { reason });
            }
            "dispatch" | "transfer" => {
                need(can_dispatch)?;
                let chosen = match a.unit_id.as_deref() {
                    Some(_) => Some(self.unit_or_bad(a.unit_id.as_deref()).await?),
                    None if action == "transfer" => return Err(AppError::required("unit_id")),
                    None => None,
                };
                if action == "transfer" && chosen.as_ref().map(|u| &u.id) == r.unit_id.as_ref() {
                    return Err(AppError::bad_request("report.same_unit"));
                }
                let (rule, rule_id) = self.rule_for(&r, chosen.as_ref()).await?;
                let unit = match chosen {
                    Some(u) => u,
                    None => self
                        .unit(&rule.unit_id)
                        .await?
                        .ok_or_else(|| AppError::bad_request("report.no_route"))?,
                };
                let d = self.deadlines_for(&rule, now).await?;
                sets.push(("unit_id", unit.id.clone().into()));
                sets.push(("dispatched_at", now.into()));
                sets.push(("sign_by", d.sign_by.into()));
                sets.push(("signed_at", Val::NullInt));
                sets.push(("overdue_sign", 0i64.into()));
                if action == "dispatch" {
                    sets.push(("first_contact_by", d.first_contact_by.into()));
                    sets.push(("resolve_by", d.resolve_by.into()));
                    sets.push(("routing_rule_id", rule_id.clone().into()));
                }
                if let Some(w) = &d.warning {
                    sets.push(("calendar_warning", w.clone().into()));
                }
                // The catalogue's repair settings hold for its own unit; another unit chosen by
                // hand works the plain way (assign, free, always visited).
                let (mode, paid, visit, pct) = match &rule_id {
                    Some(_) => (
                        DispatchMode::parse(&rule.dispatch_mode).unwrap_or(DispatchMode::Assign),
                        rule.paid,
                        rule.return_visit.clone(),
                        rule.visit_sample_percent,
                    ),
                    None => (DispatchMode::Assign, false, "always".to_string(), 0),
                };
                sets.push(("dispatch_mode", mode.as_str().into()));
                sets.push(("paid", i64::from(paid).into()));
                sets.push(("return_visit", visit.clone().into()));
                sets.push(("visit_sample_percent", pct.into()));
                // A new unit starts afresh: nobody assigned, no price agreed.
                clear_assignment(&mut sets);
                clear_quote(&mut sets);
                if mode != DispatchMode::Assign {
                    people = self.eligible_people(&unit, &r.path).await?;
                }
                data = json!({ "unit_id": unit.id, "unit": unit.name, "sign_by": d.sign_by, "resolve_by": d.resolve_by, "routing_rule_id": rule_id, "calendar_warning": d.warning, "dispatch_mode": mode.as_str(), "paid": paid, "return_visit": visit });
                dispatch_mode = Some(mode);
                transition = Some(if action == "dispatch" {
                    Transition::Dispatch
                } else {
                    Transition::Transfer
                });
                new_unit = Some(unit);
            }
            "sign" => {
                need(can_handle)?;
                transition = Some(Transition::Sign);
                sets.push(("signed_at", now.into()));
                let late = r.sign_by.is_some_and(|d| now > d);
                sets.push(("overdue_sign", i64::from(late).into()));
                data = json!({ "late": late });
            }
            "return" => {
                need(can_handle)?;
                let reason =
                    note(&a.reason, "reason")?.ok_or_else(|| AppError::required("reason"))?;
                transition = Some(Transition::Return);
                sets.push(("unit_id", Val::NullText));
                sets.push(("sign_by", Val::NullInt));
                sets.push(("returned_count", (r.returned_count + 1).into()));
                clear_assignment(&mut sets);
                clear_quote(&mut sets);
                if internal_note.is_none() {
                    internal_note = Some(reason.clone());
                }
                data = json!({ "reason": reason, "unit_id": r.unit_id });
            }
            "extend_request" => {
                need(can_handle)?;
                if from != Status::InProgress {
                    return Err(transition_error(TransitionError::Illegal {
                        from,
                        action: "extend_request",
                    }));
                }
                if r.resolve_by.is_some_and(|d| now >= d) {
                    return Err(transition_error(TransitionError::ExtensionAfterDue));
                }
                let days = a.days.ok_or_else(|| AppError::required("days"))?;
                if !(1..=30).contains(&days) {
                    return Err(AppError::bad_request("validation.bad_value").arg("field", "days"));
                }
                sets.push(("extension_days", days.into()));
                data = json!({ "days": days });
            }
            "extend" => {
                need(can_dispatch)?;
                transition = Some(Transition::Extend);
                let days = a
                    .days
                    .or(r.extension_days)
                    .ok_or_else(|| AppError::required("days"))?;
                if !(1..=30).contains(&days) {
                    return Err(AppError::bad_request("validation.bad_value").arg("field", "days"));
                }
                let base = r.resolve_by.unwrap_or(now);
                let cal = self.work_calendar().await?;
                let (due, warning) = match cal.add_working_days(base, days as u32) {
                    Ok(d) => (d, None),
                    Err(linli_core::reports::calendar::CalendarError::MissingYear(y)) => {
                        tracing::warn!(year = y, "calendar year missing; extension in clock days");
                        (
                            base + days * 86_400_000,
                            Some(format!("calendar_missing_year:{y}")),
                        )
                    }
                };
                sets.push(("resolve_by", due.into()));
                sets.push(("extension_days", Val::NullInt));
                sets.push(("extended_count", (r.extended_count + 1).into()));
                if let Some(w) = warning {
                    sets.push(("calendar_warning", w.into()));
                }
                data =
                    json!({ "days": days, "resolve_by": due, "previous_resolve_by": r.resolve_by });
            }
            "escalate" => {
                need(can_dispatch || can_handle)?;
                transition = Some(Transition::Escalate);
                sets.push(("escalation_level", (r.escalation_level + 1).into()));
                data = json!({ "level": r.escalation_level + 1 });
            }
            "whistle" => {
                need(can_dispatch)?;
                if a.unit_ids.is_empty() {
                    return Err(AppError::required("unit_ids"));
                }
                for u in &a.unit_ids {
                    let unit = self.unit_or_bad(Some(u)).await?;
                    if Some(&unit.id) == r.unit_id.as_ref()
                        || summon_units.iter().any(|x| x.id == unit.id)
                    {
                        return Err(
                            AppError::bad_request("validation.bad_value").arg("field", "unit_ids")
                        );
                    }
                    summon_units.push(unit);
                }
                transition = Some(Transition::Whistle);
                data = json!({ "units": summon_units.iter().map(|u| json!({"id": u.id, "name": u.name})).collect::<Vec<_>>() });
            }
            "summon_sign" | "summon_reply" => {
                let unit = self.unit_or_bad(a.unit_id.as_deref()).await?;
                need(
                    can_dispatch
                        || (p
                            .grant(Action::ReportHandle)
                            .is_ok_and(|g| g.covers(&r.path))
                            && acts_for(p, &unit.id, &unit.kind, &unit.place_id, &unit.path)),
                )?;
                if from != Status::InProgress {
                    return Err(transition_error(TransitionError::Illegal {
                        from,
                        action: if action == "summon_sign" {
                            "summon_sign"
                        } else {
                            "summon_reply"
                        },
                    }));
                }
                if action == "summon_reply" && public_note.is_none() && internal_note.is_none() {
                    return Err(AppError::required("public_note"));
                }
                data = json!({ "unit_id": unit.id, "unit": unit.name });
                new_unit = Some(unit);
            }
            "contact" => {
                need(can_handle)?;
                if !matches!(from, Status::Dispatched | Status::InProgress) {
                    return Err(transition_error(TransitionError::Illegal {
                        from,
                        action: "contact",
                    }));
                }
                if r.first_contact_at.is_none() {
                    sets.push(("first_contact_at", now.into()));
                }
                data = json!({ "late": r.first_contact_by.is_some_and(|d| now > d) });
            }
            "reply" => {
                need(can_handle)?;
                let outcome = match a.outcome.as_deref() {
                    Some("solved") => Outcome::Solved,
                    Some("explained") => Outcome::Explained,
                    Some("unsolvable") => Outcome::Unsolvable,
                    Some(_) => {
                        return Err(
                            AppError::bad_request("validation.bad_value").arg("field", "outcome")
                        );
                    }
                    None => return Err(AppError::required("outcome")),
                };
                if public_note.is_none() {
                    return Err(AppError::required("public_note"));
                }
                transition = Some(Transition::Reply { outcome });
                let late = r.resolve_by.is_some_and(|d| now > d);
                sets.push(("replied_at", now.into()));
                sets.push(("outcome", a.outcome.clone().unwrap_or_default().into()));
                if late {
                    sets.push(("overdue_resolve", 1i64.into()));
                }
                if r.first_contact_at.is_none() {
                    sets.push(("first_contact_at", now.into()));
                }
                data = json!({ "outcome": a.outcome, "late": late });
            }
            "review_pass" => {
                need(can_dispatch)?;
                let policy = r.return_visit.clone().unwrap_or_else(|| "always".into());
                let pct = r
                    .visit_sample_percent
                    .unwrap_or(repair_rules::DEFAULT_VISIT_SAMPLE_PERCENT);
                let visit = repair_rules::needs_return_visit(&policy, pct, &r.id);
                if !visit {
                    // Closed without a visit: the overdue flags freeze now, as at a visit.
                    sets.push(("closed_at", now.into()));
                    sets.push(("overdue_resolve", i64::from(late_at_close(&r)).into()));
                }
                let mut d = json!({ "return_visit": policy, "visit": visit });
                if policy == "sample" {
                    d["sample_percent"] = json!(pct);
                    d["sample_bucket"] = json!(repair_rules::sample_bucket(&r.id));
                }
                data = d;
                transition = Some(Transition::ReviewPass { visit });
            }
            "review_fail" => {
                need(can_dispatch)?;
                transition = Some(Transition::ReviewFail);
                sets.push(("replied_at", Val::NullInt));
                sets.push(("outcome", Val::NullText));
            }
            "visit" => {
                need(can_dispatch || is_reporter)?;
                let rating = a.rating.ok_or_else(|| AppError::required("rating"))?;
                if !(1..=5).contains(&rating) {
                    return Err(
                        AppError::bad_request("validation.bad_value").arg("field", "rating")
                    );
                }
                let solved = a.solved.ok_or_else(|| AppError::required("solved"))?;
                transition = Some(Transition::Visit);
                sets.push(("rating", rating.into()));
                sets.push(("solved", i64::from(solved).into()));
                sets.push(("closed_at", now.into()));
                // Overdue flags freeze at close.
                sets.push(("overdue_resolve", i64::from(late_at_close(&r)).into()));
                data = json!({ "rating": rating, "solved": solved, "by": if is_reporter && !can_dispatch { "resident" } else { "staff" } });
            }
            "reopen" => {
                need(can_dispatch || is_reporter)?;
                if r.unit_id.is_none() {
                    return Err(transition_error(TransitionError::Illegal {
                        from,
                        action: "reopen",
                    }));
                }
                transition = Some(Transition::Reopen);
                let rule = match r.routing_rule_id.as_deref() {
                    Some(rid) => self.routing_rule_by_id(rid).await?,
                    None => None,
                };
                if let Some(rule) = rule {
                    let d = self.deadlines_for(&rule, now).await?;
                    sets.push(("resolve_by", d.resolve_by.into()));
                    if let Some(w) = d.warning {
                        sets.push(("calendar_warning", w.into()));
                    }
                }
                sets.push(("reopened_count", (r.reopened_count + 1).into()));
                sets.push(("closed_at", Val::NullInt));
                sets.push(("replied_at", Val::NullInt));
                sets.push(("outcome", Val::NullText));
                sets.push(("rating", Val::NullInt));
                sets.push(("solved", Val::NullInt));
                // A late first round stays late: overdue flags are never cleared.
            }
            "assign" => {
                let unit = current_unit.as_ref().ok_or_else(|| {
                    transition_error(TransitionError::Illegal {
                        from,
                        action: "assign",
                    })
                })?;
                need(may_assign(p, unit, &r.path))?;
                if !repair_rules::assignable(from) {
                    return Err(transition_error(TransitionError::Illegal {
                        from,
                        action: "assign",
                    }));
                }
                let to = a
                    .assignee_user_id
                    .as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| AppError::required("assignee_user_id"))?;
                if !self.eligible_for(unit, &r.path, to).await? {
                    return Err(AppError::bad_request("report.assignee_not_eligible"));
                }
                if r.assignee_user_id.as_deref() == Some(to) {
                    return Err(AppError::bad_request("report.same_assignee"));
                }
                sets.push(("assignee_user_id", to.to_string().into()));
                sets.push(("assigned_at", now.into()));
                data = json!({ "assignee_user_id": to, "previous_assignee_user_id": r.assignee_user_id, "mode": r.dispatch_mode });
                assignee = Some(to.to_string());
            }
            "grab" => {
                let unit = current_unit.as_ref().ok_or_else(|| {
                    transition_error(TransitionError::Illegal {
                        from,
                        action: "grab",
                    })
                })?;
                // Only the unit's own people take work from the pool.
                need(works_there(p, unit, &r.path))?;
                if r.dispatch_mode.as_deref() != Some("grab") {
                    return Err(AppError::conflict("report.not_grab_mode"));
                }
                if !repair_rules::assignable(from) {
                    return Err(transition_error(TransitionError::Illegal {
                        from,
                        action: "grab",
                    }));
                }
                if r.assignee_user_id.is_some() {
                    return Err(AppError::conflict("report.already_taken"));
                }
                sets.push(("assignee_user_id", p.user_id.clone().into()));
                sets.push(("assigned_at", now.into()));
                data = json!({ "assignee_user_id": p.user_id, "mode": "grab" });
                assignee = Some(p.user_id.clone());
            }
            "quote" => {
                need(can_handle)?;
                self.quote_allowed(&r, from, QuoteStep::Quote)?;
                let fen = a
                    .amount_fen
                    .ok_or_else(|| AppError::required("amount_fen"))?;
                if !(1..=MAX_QUOTE_FEN).contains(&fen) {
                    return Err(
                        AppError::bad_request("validation.bad_value").arg("field", "amount_fen")
                    );
                }
                let explain = public_note
                    .clone()
                    .ok_or_else(|| AppError::required("public_note"))?;
                sets.push(("quote_fen", fen.into()));
                sets.push(("quote_note", explain.into()));
                sets.push(("quote_status", "pending".into()));
                sets.push(("quoted_at", now.into()));
                data = json!({ "amount_fen": fen, "previous_status": r.quote_status });
            }
            "quote_accept" => {
                need(is_reporter || can_dispatch)?;
                self.quote_allowed(&r, from, QuoteStep::Accept)?;
                sets.push(("quote_status", "accepted".into()));
                data = json!({ "amount_fen": r.quote_fen, "by": if is_reporter { "resident" } else { "staff" } });
            }
            "quote_decline" => {
                need(is_reporter || can_dispatch)?;
                self.quote_allowed(&r, from, QuoteStep::Decline)?;
                // The work ends here: closed, outcome `declined` (not counted as replied).
                transition = Some(Transition::DeclineQuote);
                sets.push(("quote_status", "declined".into()));
                sets.push(("outcome", "declined".into()));
                sets.push(("closed_at", now.into()));
                data = json!({ "amount_fen": r.quote_fen, "by": if is_reporter { "resident" } else { "staff" } });
            }
            "moderate" => {
                need(can_dispatch)?;
                let public = a.public.ok_or_else(|| AppError::required("public"))?;
                if public && r.kind == "complaint" {
                    return Err(AppError::bad_request("report.complaint_never_public"));
                }
                if public && !r.public_requested {
                    return Err(AppError::bad_request("report.public_not_requested"));
                }
                sets.push(("public_approved", i64::from(public).into()));
                data = json!({ "public": public });
            }
            _ => return Err(AppError::bad_request("validation.bad_value").arg("field", "action")),
        }

        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        // Re-read inside the transaction: the version guards against a concurrent change.
        let cur = self
            .report_in_tx(&mut tx, id)
            .await?
            .ok_or_else(not_found)?;
        if cur.version != r.version {
            return Err(lost_race(&action));
        }
        let open = self.open_summons(&mut tx, id).await?;
        let to = match &transition {
            Some(t) => {
                state::next(from, t, &context_of(&r, now, open)).map_err(transition_error)?
            }
            None => from,
        };
        let mut q = Sql::new("UPDATE reports SET status = ");
        q.bind(status_str(to));
        q.push(", version = version + 1, updated_at = ").bind(now);
        for (c, v) in sets {
            q.push(", ").push(c).push(" = ").bind(v);
        }
        q.push(" WHERE id = ")
            .bind(id)
            .push(" AND version = ")
            .bind(r.version);
        if action == "grab" {
            // 抢单: the first grab wins; a second one finds the seat taken and changes nothing.
            q.push(" AND assignee_user_id IS NULL");
        }
        let n = q
            .query()
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        if n != 1 {
            return Err(lost_race(&action));
        }

        // Side tables, and who must be told.
        let mut tells: Vec<Tell> = Vec::new();
        let mut auto_assigned: Option<String> = None;
        let reporters = self.report_reporters(&mut tx, &r).await?;
        match action.as_str() {
            "accept" => tells.push(Tell {
                to: reporters,
                key: "notice-report-accepted",
            }),
            "reject" => {
                if let Some(dup) = &a.duplicate_of
                    && a.reason.as_deref() == Some("duplicate")
                {
                    // Merge: the reporter and supporters back the surviving report.
                    let mut backers: Vec<String> = r.reporter_user_id.iter().cloned().collect();
                    let rows =
                        sqlx::query("SELECT user_id FROM report_supporters WHERE report_id = $1")
                            .bind(id.to_string())
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(db_err)?;
                    backers.extend(rows.iter().map(|x| str_(x, "user_id")));
                    for b in backers {
                        let exists = sqlx::query("SELECT 1 AS x FROM report_supporters WHERE report_id = $1 AND user_id = $2")
                            .bind(dup.clone())
                            .bind(b.clone())
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(db_err)?;
                        if exists.is_none() {
                            sqlx::query("INSERT INTO report_supporters (report_id, user_id, created_at) VALUES ($1, $2, $3)")
                                .bind(dup.clone())
                                .bind(b)
                                .bind(now)
                                .execute(&mut *tx)
                                .await
                                .map_err(db_err)?;
                        }
                    }
                    sqlx::query("UPDATE reports SET supporters = (SELECT COUNT(*) FROM report_supporters s WHERE s.report_id = reports.id), version = version + 1, updated_at = $2 WHERE id = $1")
                        .bind(dup.clone())
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                }
                tells.push(Tell {
                    to: reporters,
                    key: "notice-report-rejected",
                });
            }
            "dispatch" | "transfer" => {
                if let Some(u) = &new_unit {
                    tells.push(Tell {
                        to: self.unit_members(&mut tx, u).await?,
                        key: if dispatch_mode == Some(DispatchMode::Grab) {
                            "notice-report-grab-open"
                        } else {
                            "notice-report-dispatched"
                        },
                    });
                    if dispatch_mode == Some(DispatchMode::RoundRobin) {
                        match self.rotate_in_tx(&mut tx, &u.id, &people, now).await? {
                            Some(next) => {
                                auto_assigned = Some(next);
                            }
                            None => {
                                // Nobody to rotate to: the report waits unassigned and the
                                // dispatchers are told, never dropped silently.
                                data["round_robin"] = json!("no_eligible_person");
                                tells.push(Tell {
                                    to: self.report_dispatchers(&mut tx, &r.path).await?,
                                    key: "notice-report-no-assignee",
                                });
                            }
                        }
                    }
                }
                if action == "dispatch" {
                    tells.push(Tell {
                        to: reporters,
                        key: "notice-report-progress",
                    });
                }
            }
            "sign" | "contact" => tells.push(Tell {
                to: reporters,
                key: "notice-report-progress",
            }),
            "return" | "extend_request" => tells.push(Tell {
                to: self.report_dispatchers(&mut tx, &r.path).await?,
                key: if action == "return" {
                    "notice-report-returned"
                } else {
                    "notice-report-extension-requested"
                },
            }),
            "extend" | "review_fail" | "reopen" => {
                if let Some(u) = &current_unit {
                    tells.push(Tell {
                        to: self.unit_members(&mut tx, u).await?,
                        key: match action.as_str() {
                            "extend" => "notice-report-extended",
                            "review_fail" => "notice-report-review-failed",
                            _ => "notice-report-reopened",
                        },
                    });
                }
            }
            "escalate" => {
                let (place, staff) = self
                    .parent_level_staff(&mut tx, &r.path, (r.escalation_level + 1) as usize)
                    .await?;
                data["to_place_id"] = json!(place);
                tells.push(Tell {
                    to: staff,
                    key: "notice-report-escalated",
                });
            }
            "whistle" => {
                for u in &summon_units {
                    let open = sqlx::query("SELECT 1 AS x FROM report_summons WHERE report_id = $1 AND unit_id = $2 AND replied_at IS NULL")
                        .bind(id.to_string())
                        .bind(u.id.clone())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    if open.is_some() {
                        return Err(AppError::conflict("report.already_summoned"));
                    }
                    sqlx::query("INSERT INTO report_summons (id, report_id, unit_id, summoned_at) VALUES ($1, $2, $3, $4)")
                        .bind(new_id())
                        .bind(id.to_string())
                        .bind(u.id.clone())
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    tells.push(Tell {
                        to: self.unit_members(&mut tx, u).await?,
                        key: "notice-report-summoned",
                    });
                }
            }
            "summon_sign" | "summon_reply" => {
                let u = new_unit.as_ref().ok_or_else(AppError::internal)?;
                let s = sqlx::query("SELECT id, signed_at FROM report_summons WHERE report_id = $1 AND unit_id = $2 AND replied_at IS NULL")
                    .bind(id.to_string())
                    .bind(u.id.clone())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?
                    .ok_or_else(|| AppError::conflict("report.not_summoned"))?;
                let signed = crate::db::opt_i64(&s, "signed_at").is_some();
                if action == "summon_sign" {
                    if signed {
                        return Err(AppError::conflict("report.summons_already_signed"));
                    }
                    sqlx::query("UPDATE report_summons SET signed_at = $1 WHERE id = $2")
                        .bind(now)
                        .bind(str_(&s, "id"))
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                } else {
                    if !signed {
                        return Err(AppError::conflict("report.summons_not_signed"));
                    }
                    sqlx::query(
                        "UPDATE report_summons SET replied_at = $1, reply = $2 WHERE id = $3",
                    )
                    .bind(now)
                    .bind(public_note.clone().or(internal_note.clone()))
                    .bind(str_(&s, "id"))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    if let Some(cu) = &current_unit {
                        tells.push(Tell {
                            to: self.unit_members(&mut tx, cu).await?,
                            key: "notice-report-summons-replied",
                        });
                    }
                }
            }
            "reply" => {
                tells.push(Tell {
                    to: self.report_dispatchers(&mut tx, &r.path).await?,
                    key: "notice-report-replied",
                });
                tells.push(Tell {
                    to: reporters,
                    key: "notice-report-replied",
                });
            }
            "review_pass" => tells.push(Tell {
                to: reporters,
                // Asked to rate only when a return visit follows.
                key: if to == Status::AwaitingVisit {
                    "notice-report-rate"
                } else {
                    "notice-report-done"
                },
            }),
            "visit" => {
                if let Some(u) = &current_unit {
                    tells.push(Tell {
                        to: self.unit_members(&mut tx, u).await?,
                        key: "notice-report-closed",
                    });
                }
            }
            "assign" | "grab" => {
                tells.push(Tell {
                    to: assignee.iter().cloned().collect(),
                    key: "notice-report-assigned",
                });
                if let Some(prev) = &r.assignee_user_id {
                    tells.push(Tell {
                        to: vec![prev.clone()],
                        key: "notice-report-unassigned",
                    });
                }
            }
            "quote" => tells.push(Tell {
                to: reporters,
                key: "notice-report-quote",
            }),
            "quote_accept" | "quote_decline" => {
                let mut to: Vec<String> = r.assignee_user_id.iter().cloned().collect();
                if let Some(u) = &current_unit {
                    to.extend(self.unit_members(&mut tx, u).await?);
                }
                to.dedup();
                tells.push(Tell {
                    to,
                    key: if action == "quote_accept" {
                        "notice-report-quote-accepted"
                    } else {
                        "notice-report-quote-declined"
                    },
                });
            }
            _ => {}
        }
        let actor = Actor::from(p);
        insert_event(
            &mut tx,
            id,
            &action,
            Some(status_str(from)),
            status_str(to),
            &actor,
            now,
            public_note.as_deref(),
            internal_note.as_deref(),
            data.clone(),
        )
        .await?;
        let audit_action = format!("report.{action}");
        self.audit(
            &mut tx,
            &actor,
            Entry {
                action: &audit_action,
                entity: "report",
                entity_id: id,
                path: Some(&r.path),
                purpose: None,
                before: Some(
                    json!({ "status": status_str(from), "unit_id": r.unit_id, "assignee_user_id": r.assignee_user_id }),
                ),
                after: Some(json!({ "status": status_str(to), "data": data })),
            },
        )
        .await?;
        if let Some(next) = &auto_assigned {
            self.record_auto_assign(&mut tx, &r, next, status_str(to), now)
                .await?;
            tells.push(Tell {
                to: vec![next.clone()],
                key: "notice-report-assigned",
            });
        }
        let link = format!("/reports/{id}");
        let kind = format!("report.{action}");
        for t in tells {
            let recipients: Vec<String> = t.to.into_iter().filter(|u| *u != p.user_id).collect();
            self.notify(
                &mut tx,
                &recipients,
                &Notice {
                    kind: &kind,
                    key: t.key,
                    args: json!({ "title": r.title, "status": status_str(to) }),
                    entity: "report",
                    entity_id: id,
                    path: Some(&r.path),
                    link: Some(&link),
                },
            )
            .await?;
        }
        tx.commit().await.map_err(db_err)?;
        self.publish_report(&action, id, &r.path);
        self.report_unscoped(id).await?.ok_or_else(not_found)
    }
}

/// The answer when the row changed under the caller: for a grab, the localized "someone else
/// took it"; otherwise the generic version conflict.
fn lost_race(action: &str) -> AppError {
    if action == "grab" {
        AppError::conflict("report.already_taken")
    } else {
        AppError::conflict("conflict")
    }
}

/// Whether the resolve-by deadline was missed, frozen at close.
fn late_at_close(r: &Report) -> bool {
    r.overdue_resolve
        || match (r.replied_at, r.resolve_by) {
            (Some(rep), Some(due)) => rep > due,
            _ => false,
        }
}

fn clear_assignment(sets: &mut Vec<(&'static str, Val)>) {
    sets.push(("assignee_user_id", Val::NullText));
    sets.push(("assigned_at", Val::NullInt));
}

fn clear_quote(sets: &mut Vec<(&'static str, Val)>) {
    sets.push(("quote_fen", Val::NullInt));
    sets.push(("quote_note", Val::NullText));
    sets.push(("quote_status", Val::NullText));
    sets.push(("quoted_at", Val::NullInt));
}

impl Store {
    /// A quote step the rules refuse is a 409 with the rule's code.
    fn quote_allowed(&self, r: &Report, from: Status, step: QuoteStep) -> AppResult<()> {
        repair_rules::quote_step(
            from,
            r.paid,
            QuoteState::parse(r.quote_status.as_deref()),
            step,
        )
        .map(|_| ())
        .map_err(|e| AppError::conflict(e.code()))
    }

    /// Round robin picked `next` while dispatching: set the assignee and record it as its own
    /// `assign` event (actor: the rotation) and audit entry, in the dispatch transaction.
    async fn record_auto_assign(
        &self,
        tx: &mut Transaction<'static, Any>,
        r: &Report,
        next: &str,
        status: &str,
        now: i64,
    ) -> AppResult<()> {
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
        self.audit(
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
}
