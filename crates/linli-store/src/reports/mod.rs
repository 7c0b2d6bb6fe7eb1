//! The reports engine (报事 / 报修 / 投诉, issue #4): intake, routing, the state machine of
//! DOMAIN.md, deadlines and metrics. The pure rules live in `linli_core::reports`; this module
//! stores reports and moves them, one transaction per change (row update + event + audit entry +
//! inbox notices), publishing a `report.<action>` bus event after commit.
//!
//! The API for other layers (Open311, web pages):
//! - [`Store::report_viewer`] turns a principal into a [`Viewer`] (staff grant and/or the
//!   resident's own households and communities); every read takes one, and filters in SQL.
//! - [`Store::create_report`] (intake, with routing and duplicate detection available through
//!   [`Store::report_duplicates`]), [`Store::report_me_too`].
//! - [`Store::report_act`] performs one [`actions::ReportAction`] (accept, dispatch, sign, …
//!   reopen; one function per action in `actions/`), checking rights, the state machine and its
//!   guards; illegal moves are 409s that change nothing.
//! - [`Store::reports`] (filtered, paged list), [`Store::report`] (one, with events, summons,
//!   photos; internal notes for staff only).
//! - [`Store::report_add_photo`] / [`Store::report_photo`]: validated, metadata-stripped images.
//! - Catalogue: [`Store::report_categories`], [`Store::routing_rules`], [`Store::put_routing_rule`];
//!   calendar: [`Store::work_calendar`], [`Store::put_calendar_year`].
//! - Repairs (`repairs`): [`Store::report_assignees`] (who can be given the work),
//!   [`Store::grab_pool`] (待抢单); assign / grab / quote actions go through `report_act`.
//! - [`Store::reports_tick`]: the deadline job (reminders, 催办, escalation), idempotent.
//! - [`Store::report_stats`]: metrics per unit / category / area / month.

pub mod actions;
pub mod calendar_check;
pub mod catalogue;
pub mod contacts;
pub mod deadlines;
pub mod from_alarm;
pub mod images;
pub mod intake;
pub mod metrics;
pub mod open311;
pub mod queries;
pub mod record;
pub mod repairs;
pub mod schema;
pub mod schema_v9;
pub mod writer;

use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};

use linli_core::auth::{Action, Grant, Principal, RoleKind};
use linli_core::reports::state::{Context, Status};
use linli_core::{AppError, AppResult};

use crate::Store;
use crate::bus::BusEvent;
use crate::db::{db_err, str_};

/// The kinds of report (the category decides which).
pub const KINDS: [&str; 5] = [
    "public_affair",
    "repair",
    "complaint",
    "suggestion",
    "inquiry",
];

/// How a report came in.
pub const CHANNELS: [&str; 6] = [
    "resident_app",
    "staff_proxy",
    "phone",
    "grid_patrol",
    "open311",
    "iot",
];

/// How long after closing a report may be reopened (重办).
pub const REOPEN_WINDOW_MS: i64 = 7 * 86_400_000;

/// Who is looking: staff of an area (a `ReportRead` grant over some subtrees), staff of a unit
/// (a property company or department: the reports of their area that their unit handles or was
/// summoned to), and/or a resident (own reports, own households' reports, and moderated public
/// reports of their communities).
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user_id: String,
    /// Area staff (committee, grid, street, district, city): every report of these subtrees.
    pub(crate) grant: Option<Grant>,
    /// Unit staff ([`linli_core::auth::RoleKind::Unit`]): where their units work …
    pub(crate) unit_grant: Option<Grant>,
    /// … and the units (org ids) whose reports they see there.
    pub units: Vec<String>,
    pub households: Vec<String>,
    /// Community paths of the resident's households.
    pub communities: Vec<String>,
    /// Where the reports the viewer filed are theirs to see as their reporter: everywhere for a
    /// person (`None`); for an API token, inside its `report_create` area only, as on Open311
    /// (a token never reads what its creator filed outside its area, nor without the action).
    pub(crate) own_area: Option<Vec<String>>,
}

impl Viewer {
    /// Whether the viewer filed the report and may read it as its reporter.
    pub fn filed(&self, r: &Report) -> bool {
        r.reporter_user_id.as_deref() == Some(self.user_id.as_str())
            && self
                .own_area
                .as_ref()
                .is_none_or(|a| a.iter().any(|p| r.path.starts_with(p.as_str())))
    }

    /// Whether the viewer governs the area of `path` (area staff), so sees every report there
    /// as staff (internal notes, reporter identity).
    pub fn is_staff_for(&self, path: &str) -> bool {
        self.grant
            .as_ref()
            .is_some_and(|g| g.allows(Action::ReportRead, path))
    }

    /// Whether the viewer sees this report as staff: area staff of its place, or staff of the
    /// unit handling it (or of a unit summoned to it, `summoned`) inside their unit's area.
    pub fn is_staff_on(&self, r: &Report, summoned: &[String]) -> bool {
        self.is_staff_for(&r.path)
            || (self
                .unit_grant
                .as_ref()
                .is_some_and(|g| g.allows(Action::ReportRead, &r.path))
                && (r.unit_id.as_ref().is_some_and(|u| self.units.contains(u))
                    || summoned.iter().any(|u| self.units.contains(u))))
    }

    /// Whether the viewer works at `path` as staff at all (area staff, or staff of a unit whose
    /// area holds it): may file there on someone's behalf and look for duplicates there.
    pub fn works_in(&self, path: &str) -> bool {
        self.is_staff_for(path)
            || (!self.units.is_empty()
                && self
                    .unit_grant
                    .as_ref()
                    .is_some_and(|g| g.allows(Action::ReportRead, path)))
    }

    /// Whether unit membership could matter for a report at `path` (the viewer is not area
    /// staff there but works for a unit there): only then are the summoned units looked up.
    pub fn needs_units_for(&self, path: &str) -> bool {
        !self.is_staff_for(path)
            && !self.units.is_empty()
            && self
                .unit_grant
                .as_ref()
                .is_some_and(|g| g.allows(Action::ReportRead, path))
    }
}

/// A report as stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub id: String,
    /// public_affair, repair, complaint, suggestion, inquiry
    pub kind: String,
    pub category: String,
    pub title: String,
    pub description: String,
    pub place_id: String,
    pub path: String,
    /// Latitude / longitude (WGS-84 degrees), if given.
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// A point on the community site plan (1000×700 units), if given.
    pub plan_x: Option<i64>,
    pub plan_y: Option<i64>,
    pub channel: String,
    /// Hidden from neighbours (staff still see who reported).
    pub anonymous: bool,
    /// The reporter (staff view only; `None` for others).
    pub reporter_user_id: Option<String>,
    pub household_id: Option<String>,
    /// submitted, accepted, dispatched, in_progress, replied, awaiting_visit, closed
    pub status: String,
    /// The unit handling it now (org id) and its name.
    pub unit_id: Option<String>,
    pub unit_name: Option<String>,
    /// The routing-catalogue row (one version of a rule) it was routed with.
    pub routing_rule_id: Option<String>,
    pub sign_by: Option<i64>,
    pub first_contact_by: Option<i64>,
    pub resolve_by: Option<i64>,
    /// Set when deadlines had to be computed in clock days because the working-day calendar
    /// lacked a year.
    pub calendar_warning: Option<String>,
    pub accepted_at: Option<i64>,
    pub dispatched_at: Option<i64>,
    pub signed_at: Option<i64>,
    pub first_contact_at: Option<i64>,
    pub replied_at: Option<i64>,
    pub closed_at: Option<i64>,
    /// Signed after the sign-by deadline (frozen once signed).
    pub overdue_sign: bool,
    /// Not replied by the resolve-by deadline (frozen at close).
    pub overdue_resolve: bool,
    /// solved, explained, unsolvable
    pub outcome: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub reject_reason: Option<serde_json::Value>,
    pub duplicate_of: Option<String>,
    /// The reporter agreed to show it to neighbours; `public` after moderation.
    pub public_requested: bool,
    pub public: bool,
    pub returned_count: i64,
    pub reopened_count: i64,
    pub extended_count: i64,
    pub escalation_level: i64,
    /// Days asked for by a pending extension request.
    pub extension_days: Option<i64>,
    pub rating: Option<i64>,
    pub solved: Option<bool>,
    /// "Me too" count.
    pub supporters: i64,
    /// The person of the unit doing the work (派给谁), and their display name; hidden from
    /// neighbours.
    pub assignee_user_id: Option<String>,
    pub assignee_name: Option<String>,
    pub assigned_at: Option<i64>,
    /// The repair settings the report was dispatched with: `assign`, `grab` or `round_robin`.
    pub dispatch_mode: Option<String>,
    /// A paid repair: a price must be quoted and accepted before the reply.
    pub paid: bool,
    /// `always`, `sample` or `none` (return visit after the review).
    pub return_visit: Option<String>,
    /// `sample`: the percentage of reports visited (see `linli_core::reports::repairs`).
    pub visit_sample_percent: Option<i64>,
    /// The price quote in fen, its note, and `pending` / `accepted` / `declined`.
    pub quote_fen: Option<i64>,
    pub quote_note: Option<String>,
    pub quote_status: Option<String>,
    pub quoted_at: Option<i64>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Open311 projection: `open` / `closed`, and mySociety's extended status.
    pub open311_status: String,
    pub extended_status: String,
}

pub(crate) const REPORT_COLS: &str = "r.id, r.kind, r.category, r.title, r.description, r.place_id, r.path, r.community_path, r.lat_e6, r.lon_e6, r.plan_x, r.plan_y, r.channel, r.anonymous, r.reporter_user_id, r.household_id, r.status, r.unit_id, u.name AS unit_name, r.routing_rule_id, r.sign_by, r.first_contact_by, r.resolve_by, r.calendar_warning, r.accepted_at, r.dispatched_at, r.signed_at, r.first_contact_at, r.replied_at, r.closed_at, r.overdue_sign, r.overdue_resolve, r.outcome, r.reject_reason, r.duplicate_of, r.public_requested, r.public_approved, r.returned_count, r.reopened_count, r.extended_count, r.escalation_level, r.extension_days, r.rating, r.solved, r.supporters, r.assignee_user_id, au.display_name AS assignee_name, r.assigned_at, r.dispatch_mode, r.paid, r.return_visit, r.visit_sample_percent, r.quote_fen, r.quote_note, r.quote_status, r.quoted_at, r.version, r.created_at, r.updated_at";

pub(crate) const REPORT_FROM: &str = "FROM reports r LEFT JOIN orgs u ON u.id = r.unit_id LEFT JOIN users au ON au.id = r.assignee_user_id";

pub fn parse_status(s: &str) -> Status {
    match s {
        "accepted" => Status::Accepted,
        "dispatched" => Status::Dispatched,
        "in_progress" => Status::InProgress,
        "replied" => Status::Replied,
        "awaiting_visit" => Status::AwaitingVisit,
        "closed" => Status::Closed,
        _ => Status::Submitted,
    }
}

pub fn status_str(s: Status) -> &'static str {
    match s {
        Status::Submitted => "submitted",
        Status::Accepted => "accepted",
        Status::Dispatched => "dispatched",
        Status::InProgress => "in_progress",
        Status::Replied => "replied",
        Status::AwaitingVisit => "awaiting_visit",
        Status::Closed => "closed",
    }
}

pub(crate) fn report_from_row<R: crate::db::Cols>(r: &R) -> Report {
    use linli_core::reports::state::{
        Outcome, RejectReason, open311_extended_status, open311_status,
    };
    let status = parse_status(&r.col_str("status"));
    let reject: Option<RejectReason> = r
        .col_opt_str("reject_reason")
        .and_then(|s| serde_json::from_str(&s).ok());
    let outcome: Option<Outcome> = r
        .col_opt_str("outcome")
        .and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok());
    let reopened = r.col_i64("reopened_count") > 0;
    Report {
        id: r.col_str("id"),
        kind: r.col_str("kind"),
        category: r.col_str("category"),
        title: r.col_str("title"),
        description: r.col_str("description"),
        place_id: r.col_str("place_id"),
        path: r.col_str("path"),
        lat: r.col_opt_i64("lat_e6").map(|v| v as f64 / 1e6),
        lon: r.col_opt_i64("lon_e6").map(|v| v as f64 / 1e6),
        plan_x: r.col_opt_i64("plan_x"),
        plan_y: r.col_opt_i64("plan_y"),
        channel: r.col_str("channel"),
        anonymous: r.col_i64("anonymous") != 0,
        reporter_user_id: r.col_opt_str("reporter_user_id"),
        household_id: r.col_opt_str("household_id"),
        status: status_str(status).to_string(),
        unit_id: r.col_opt_str("unit_id"),
        unit_name: r.col_opt_str("unit_name"),
        routing_rule_id: r.col_opt_str("routing_rule_id"),
        sign_by: r.col_opt_i64("sign_by"),
        first_contact_by: r.col_opt_i64("first_contact_by"),
        resolve_by: r.col_opt_i64("resolve_by"),
        calendar_warning: r.col_opt_str("calendar_warning"),
        accepted_at: r.col_opt_i64("accepted_at"),
        dispatched_at: r.col_opt_i64("dispatched_at"),
        signed_at: r.col_opt_i64("signed_at"),
        first_contact_at: r.col_opt_i64("first_contact_at"),
        replied_at: r.col_opt_i64("replied_at"),
        closed_at: r.col_opt_i64("closed_at"),
        overdue_sign: r.col_i64("overdue_sign") != 0,
        overdue_resolve: r.col_i64("overdue_resolve") != 0,
        outcome: r.col_opt_str("outcome"),
        reject_reason: reject.as_ref().and_then(|x| serde_json::to_value(x).ok()),
        duplicate_of: r.col_opt_str("duplicate_of"),
        public_requested: r.col_i64("public_requested") != 0,
        public: r.col_i64("public_approved") != 0,
        returned_count: r.col_i64("returned_count"),
        reopened_count: r.col_i64("reopened_count"),
        extended_count: r.col_i64("extended_count"),
        escalation_level: r.col_i64("escalation_level"),
        extension_days: r.col_opt_i64("extension_days"),
        rating: r.col_opt_i64("rating"),
        solved: r.col_opt_i64("solved").map(|v| v != 0),
        supporters: r.col_i64("supporters"),
        assignee_user_id: r.col_opt_str("assignee_user_id"),
        assignee_name: r.col_opt_str("assignee_name"),
        assigned_at: r.col_opt_i64("assigned_at"),
        dispatch_mode: r.col_opt_str("dispatch_mode"),
        paid: r.col_i64("paid") != 0,
        return_visit: r.col_opt_str("return_visit"),
        visit_sample_percent: r.col_opt_i64("visit_sample_percent"),
        quote_fen: r.col_opt_i64("quote_fen"),
        quote_note: r.col_opt_str("quote_note"),
        quote_status: r.col_opt_str("quote_status"),
        quoted_at: r.col_opt_i64("quoted_at"),
        version: r.col_i64("version"),
        created_at: r.col_i64("created_at"),
        updated_at: r.col_i64("updated_at"),
        open311_status: open311_status(status).to_string(),
        extended_status: open311_extended_status(status, reject.as_ref(), outcome, reopened)
            .to_string(),
    }
}

pub use crate::registry::places::{community_prefix, path_ids};

/// An organisation a report can be routed to, with where it sits.
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub place_id: String,
    pub path: String,
}

impl Store {
    /// The viewer for a principal: their `ReportRead` grant (if any) and, for residents, their
    /// households and communities.
    pub async fn report_viewer(&self, p: &Principal) -> AppResult<Viewer> {
        let households = p.own_households();
        let mut communities = Vec::new();
        for h in &households {
            if let Some(path) = self.household_path(h).await?
                && let Some(c) = community_prefix(&path)
                && !communities.contains(&c)
            {
                communities.push(c);
            }
        }
        let units = p.units(Action::ReportRead);
        Ok(Viewer {
            user_id: p.user_id().to_string(),
            grant: p
                .grant_where(Action::ReportRead, |b| b.kind() != RoleKind::Unit)
                .ok(),
            unit_grant: if units.is_empty() {
                None
            } else {
                p.grant_where(Action::ReportRead, |b| b.kind() == RoleKind::Unit)
                    .ok()
            },
            units,
            households,
            communities,
            own_area: p.via_token().then(|| {
                p.grant(Action::ReportCreate)
                    .map(|g| g.area(Action::ReportCreate).to_vec())
                    .unwrap_or_default()
            }),
        })
    }

    /// A report by id, whoever asks (callers check visibility).
    pub(crate) async fn report_unscoped(&self, id: &str) -> AppResult<Option<Report>> {
        let mut q =
            crate::db::Sql::new(&format!("SELECT {REPORT_COLS} {REPORT_FROM} WHERE r.id = "));
        q.bind(id);
        let r = self.db.fetch_optional_fast(&q).await?;
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

    pub(crate) async fn unit(&self, id: &str) -> AppResult<Option<Unit>> {
        let r = sqlx::query("SELECT id, kind, name, place_id, path FROM orgs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await
            .map_err(db_err)?;
        Ok(r.map(|r| Unit {
            id: str_(&r, "id"),
            kind: str_(&r, "kind"),
            name: str_(&r, "name"),
            place_id: str_(&r, "place_id"),
            path: str_(&r, "path"),
        }))
    }

    /// Users who work for a unit: bound to the organisation itself, or (committees) staff bound
    /// to the community the committee belongs to.
    pub(crate) async fn unit_members(
        &self,
        tx: &mut Transaction<'static, Any>,
        unit: &Unit,
    ) -> AppResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT user_id FROM role_bindings WHERE org_id = $1
             OR (place_id = $2 AND role IN ('committee_staff', 'grid_worker') AND $3 = 'committee')
             ORDER BY user_id",
        )
        .bind(unit.id.clone())
        .bind(unit.place_id.clone())
        .bind(unit.kind.clone())
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(|r| str_(r, "user_id")).collect())
    }

    /// Users who accept and dispatch reports at a place: committee staff of its community and
    /// street officers of its street.
    pub(crate) async fn report_dispatchers(
        &self,
        tx: &mut Transaction<'static, Any>,
        path: &str,
    ) -> AppResult<Vec<String>> {
        let rows = dispatchers_sql(path)
            .query()
            .fetch_all(&mut **tx)
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(|r| str_(r, "user_id")).collect())
    }

    /// [`Store::report_dispatchers`] outside a transaction.
    pub(crate) async fn report_dispatchers_now(&self, path: &str) -> AppResult<Vec<String>> {
        let rows = self.db.fetch_all_fast(&dispatchers_sql(path)).await?;
        Ok(rows
            .into_iter()
            .map(|mut r| r.take_str("user_id").unwrap_or_default())
            .collect())
    }

    /// Officers `level` levels above the report's community (1 = the street, 2 = the district,
    /// 3 = the city): street officers and district / city administrators bound there.
    pub(crate) async fn parent_level_staff(
        &self,
        tx: &mut Transaction<'static, Any>,
        report_path: &str,
        level: usize,
    ) -> AppResult<(Option<String>, Vec<String>)> {
        let ids = path_ids(report_path);
        if ids.len() < 4 || level == 0 || level > 3 {
            return Ok((None, Vec::new()));
        }
        let parent = ids[3 - level].clone();
        let rows = sqlx::query(
            "SELECT DISTINCT user_id FROM role_bindings WHERE place_id = $1
             AND role IN ('street_officer', 'district_admin', 'city_admin') ORDER BY user_id",
        )
        .bind(parent.clone())
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?;
        Ok((
            Some(parent),
            rows.iter().map(|r| str_(r, "user_id")).collect(),
        ))
    }

    /// Publish a report change after commit.
    pub(crate) fn publish_report(&self, action: &str, id: &str, path: &str) {
        self.bus.publish(BusEvent {
            kind: format!("report.{action}"),
            path: path.to_string(),
            id: id.to_string(),
            users: Vec::new(),
        });
    }
}

fn dispatchers_sql(path: &str) -> crate::db::Sql {
    let ids = path_ids(path);
    let mut q = crate::db::Sql::new(
        "SELECT DISTINCT user_id FROM role_bindings WHERE role IN ('committee_staff', 'street_officer') AND place_id IN (",
    );
    q.bind_list(&ids);
    if ids.is_empty() {
        q.push("''");
    }
    q.push(") ORDER BY user_id");
    q
}

/// The state-machine context of a stored report.
pub(crate) fn context_of(r: &Report, now: i64, open_summons: usize) -> Context {
    Context {
        now,
        due_at: r.resolve_by,
        closed_at: r.closed_at,
        reopen_window_ms: REOPEN_WINDOW_MS,
        open_summons,
        quote_unaccepted: linli_core::reports::repairs::reply_blocked_by_quote(
            r.paid,
            linli_core::reports::repairs::QuoteState::parse(r.quote_status.as_deref()),
        ),
    }
}

/// Not found, the same whether the report does not exist or lies outside the caller's view.
pub fn not_found() -> AppError {
    AppError::not_found("report.not_found")
}
