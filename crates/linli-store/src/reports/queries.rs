//! Reading reports: the filtered, paged list and one report with its history. Visibility is
//! decided in SQL from the [`Viewer`]: area staff see their grant's subtrees; unit staff (property
//! company, department) see the reports of their units' area that their unit handles or was
//! summoned to; residents see their own
//! and their household's reports, and moderated public reports of their communities (never
//! complaints). Residents never see internal notes, nor who reported a neighbour's report.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use linli_core::AppResult;
use linli_core::auth::Action;

use crate::Store;
use crate::db::{Cols, Sql};

use super::{REPORT_COLS, REPORT_FROM, Report, Viewer, not_found, report_from_row};

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// submitted, accepted, dispatched, in_progress, replied, awaiting_visit, closed; or `open`.
    pub status: Option<String>,
    pub kind: Option<String>,
    pub category: Option<String>,
    /// The handling unit (org id).
    pub unit_id: Option<String>,
    /// Only reports at or below this place.
    pub place_id: Option<String>,
    /// Only overdue (now, or frozen at close) reports.
    pub overdue: Option<bool>,
    /// Only the caller's own (and their household's) reports.
    pub mine: Option<bool>,
    /// `me`: only reports assigned to the caller (我的工单).
    pub assignee: Option<String>,
    /// Only reports filed by or for this household (一户一表).
    pub household_id: Option<String>,
    /// Created at or after (ms).
    pub from: Option<i64>,
    /// Created before (ms).
    pub to: Option<i64>,
    /// Page size (1–200, default 50).
    pub limit: Option<i64>,
    /// Skip this many (older paging; prefer `cursor`, which stays fast on deep pages).
    pub offset: Option<i64>,
    /// Keyset paging: the `next_cursor` of the previous page (reports older than it).
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportPage {
    pub items: Vec<Report>,
    /// Offset of the next page, if there is one (offset paging).
    pub next_offset: Option<i64>,
    /// Cursor of the next page (`created_at.id` of the last item), if there is one.
    pub next_cursor: Option<String>,
}

/// A keyset position: (created_at, id) of the last report shown.
fn parse_cursor(c: &str) -> AppResult<(i64, String)> {
    let bad = || linli_core::AppError::bad_request("validation.bad_value").arg("field", "cursor");
    let (at, id) = c.split_once('.').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    if id.is_empty()
        || id.len() > 64
        || !id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
    {
        return Err(bad());
    }
    Ok((at, id.to_string()))
}

/// The community paths a staff viewer's list can be read by through the
/// `(community_path, created_at, id)` index: a viewer with no household (so nothing of theirs
/// outside their grant but their own filings) whose grant is exactly whole communities.
fn whole_communities(v: &Viewer) -> Option<Vec<String>> {
    let area = v.grant.as_ref()?.area(Action::ReportRead);
    if !v.households.is_empty() || !v.units.is_empty() || area.is_empty() {
        return None;
    }
    area.iter()
        .all(|p| super::community_prefix(p).as_deref() == Some(p.as_str()))
        .then(|| area.to_vec())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportEvent {
    pub id: String,
    pub action: String,
    pub from_status: Option<String>,
    pub to_status: String,
    /// Who acted (staff view; residents see an empty string for staff actors).
    pub actor: String,
    pub at: i64,
    pub public_note: Option<String>,
    /// Staff only.
    pub internal_note: Option<String>,
    #[schema(value_type = Object)]
    pub data: Value,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Summons {
    pub id: String,
    pub unit_id: String,
    pub unit_name: String,
    pub summoned_at: i64,
    pub signed_at: Option<i64>,
    pub replied_at: Option<i64>,
    pub reply: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PhotoMeta {
    pub id: String,
    /// `intake` (with the report) or `handling` (with a reply).
    pub stage: String,
    pub mime: String,
    pub bytes: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportView {
    pub report: Report,
    /// Where: the address of the report's place.
    pub address: String,
    /// Staff: who filed it and how to reach them (masked; the full number through an audited
    /// reveal on the person's page). Absent for anonymous reports and for residents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporter: Option<Reporter>,
    /// The viewer sees it as staff (internal notes included).
    pub staff_view: bool,
    pub events: Vec<ReportEvent>,
    pub summons: Vec<Summons>,
    pub photos: Vec<PhotoMeta>,
    /// Staff only: the contact details it was filed with (Open311), masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<super::contacts::ReportContact>,
}

/// Who filed a report, for the staff who work it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reporter {
    pub name: String,
    pub phone_masked: Option<String>,
    /// The person's record (the reveal is there).
    pub person_id: Option<String>,
    /// The household it was filed for, and its address.
    pub household_id: Option<String>,
    pub household_address: Option<String>,
}

/// Whether a report is the viewer's as a resident: their own, their household's, or a
/// moderated public report of their community (never a complaint).
fn resident_sees(v: &Viewer, r: &Report) -> bool {
    v.filed(r)
        || r.household_id
            .as_ref()
            .is_some_and(|h| v.households.contains(h))
        || (r.public
            && r.kind != "complaint"
            && v.communities.iter().any(|c| r.path.starts_with(c.as_str())))
}

/// Depth of a building in a place path (city / district / street / community / grid / building).
const BUILDING_DEPTH: usize = 6;

/// `(filed by the viewer, where they may read it as its reporter)` as SQL on alias `r`.
fn push_filed(q: &mut Sql, v: &Viewer) {
    q.push("(r.reporter_user_id = ").bind(v.user_id.clone());
    if let Some(area) = &v.own_area {
        q.push(" AND ");
        q.scope("r.path", area);
    }
    q.push(")");
}

/// `(visible to the viewer)` as SQL on alias `r`.
fn push_visibility(q: &mut Sql, v: &Viewer) {
    q.push("(");
    match &v.grant {
        Some(g) => {
            q.scope("r.path", g.area(Action::ReportRead));
        }
        None => {
            q.push("1 = 0");
        }
    }
    // Unit staff: inside their units' area, what their unit handles or was summoned to.
    if let Some(ug) = v.unit_grant.as_ref().filter(|_| !v.units.is_empty()) {
        q.push(" OR (");
        q.scope("r.path", ug.area(Action::ReportRead));
        q.push(" AND (r.unit_id IN (").bind_list(&v.units);
        q.push(") OR r.id IN (SELECT s.report_id FROM report_summons s WHERE s.unit_id IN (")
            .bind_list(&v.units)
            .push("))))");
    }
    q.push(" OR ");
    push_filed(q, v);
    for h in &v.households {
        q.push(" OR r.household_id = ").bind(h.clone());
    }
    if !v.communities.is_empty() {
        q.push(" OR (r.public_approved = 1 AND r.kind <> 'complaint' AND r.community_path IN (");
        q.bind_list(&v.communities).push("))");
    }
    q.push(")");
}

impl Store {
    /// The units summoned (吹哨) to a report, answered or not.
    pub(crate) async fn report_summoned_units(&self, id: &str) -> AppResult<Vec<String>> {
        let q = Sql::new("SELECT unit_id FROM report_summons WHERE report_id = $1").arg(id);
        Ok(self
            .db
            .fetch_all_fast(&q)
            .await?
            .into_iter()
            .map(|mut r| r.take_str("unit_id").unwrap_or_default())
            .collect())
    }

    /// Whether the viewer sees the report as staff ([`Viewer::is_staff_on`]); the summoned units
    /// are read only for unit staff whose unit does not handle it.
    pub async fn report_staff_view(&self, v: &Viewer, r: &Report) -> AppResult<bool> {
        if v.is_staff_on(r, &[]) {
            return Ok(true);
        }
        if !v.needs_units_for(&r.path) {
            return Ok(false);
        }
        Ok(v.is_staff_on(r, &self.report_summoned_units(&r.id).await?))
    }

    /// Whether the viewer may see a report at all.
    pub async fn report_visible(&self, v: &Viewer, r: &Report) -> AppResult<bool> {
        Ok(resident_sees(v, r) || self.report_staff_view(v, r).await?)
    }

    /// The report with this id if the viewer may see it; not found otherwise (existence does not
    /// leak outside the viewer's view).
    pub(crate) async fn visible_report(&self, v: &Viewer, id: &str) -> AppResult<Report> {
        let r = self.report_unscoped(id).await?.ok_or_else(not_found)?;
        if self.report_visible(v, &r).await? {
            Ok(r)
        } else {
            Err(not_found())
        }
    }

    /// Whether the viewer may see the report with this id (false when it does not exist). Used
    /// by the live stream to tell residents and unit staff about the reports they see.
    pub async fn report_visible_id(&self, v: &Viewer, id: &str) -> AppResult<bool> {
        match self.report_unscoped(id).await? {
            Some(r) => self.report_visible(v, &r).await,
            None => Ok(false),
        }
    }

    /// Hide what a viewer who is not staff on it (`staff`) may not see of someone else's report.
    fn redact(&self, v: &Viewer, staff: bool, mut r: Report) -> Report {
        let own = v.filed(&r)
            || r.household_id
                .as_ref()
                .is_some_and(|h| v.households.contains(h));
        if !staff && !own {
            r.reporter_user_id = None;
            r.household_id = None;
            r.rating = None;
            r.assignee_user_id = None;
            r.assignee_name = None;
            r.quote_fen = None;
            r.quote_note = None;
            // Where, not whose flat: a neighbour (a public report of their community) gets the
            // place cut at the building, as Open311 answers those who see it only because it
            // was published.
            let ids = super::path_ids(&r.path);
            if ids.len() > BUILDING_DEPTH {
                r.place_id = ids[BUILDING_DEPTH - 1].clone();
                r.path = format!("/{}/", ids[..BUILDING_DEPTH].join("/"));
            }
        }
        r
    }

    /// Reports the viewer may see, newest first, filtered and paged (by `cursor`, or `offset`).
    pub async fn reports(&self, v: &Viewer, f: &ReportQuery) -> AppResult<ReportPage> {
        let limit = f.limit.unwrap_or(50).clamp(1, 200);
        let (q, offset) = self
            .report_list_sql(v, f, &format!("SELECT {REPORT_COLS}"))
            .await?;
        // The hot read of the reports list: the native SQLite read path (sqlx on PostgreSQL).
        let rows = self.db.fetch_all_fast(&q).await?;
        let more = rows.len() as i64 > limit;
        let reports: Vec<Report> = rows
            .iter()
            .take(limit as usize)
            .map(report_from_row)
            .collect();
        // Unit staff see a report summoned to their unit as staff: one read for the page.
        let need: Vec<String> = reports
            .iter()
            .filter(|r| !v.is_staff_on(r, &[]) && v.needs_units_for(&r.path))
            .map(|r| r.id.clone())
            .collect();
        let mut summoned: Vec<(String, String)> = Vec::new();
        if !need.is_empty() {
            let mut sq =
                Sql::new("SELECT report_id, unit_id FROM report_summons WHERE report_id IN (");
            sq.bind_list(&need).push(")");
            for mut row in self.db.fetch_all_fast(&sq).await? {
                summoned.push((
                    row.take_str("report_id").unwrap_or_default(),
                    row.take_str("unit_id").unwrap_or_default(),
                ));
            }
        }
        let items: Vec<Report> = reports
            .into_iter()
            .map(|r| {
                let units: Vec<String> = summoned
                    .iter()
                    .filter(|(rid, _)| *rid == r.id)
                    .map(|(_, u)| u.clone())
                    .collect();
                let staff = v.is_staff_on(&r, &units);
                self.redact(v, staff, r)
            })
            .collect();
        let next_cursor = more
            .then(|| items.last().map(|r| format!("{}.{}", r.created_at, r.id)))
            .flatten();
        Ok(ReportPage {
            items,
            next_offset: (more && f.cursor.is_none()).then_some(offset.saturating_add(limit)),
            next_cursor,
        })
    }

    /// The database's plan for the list query (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on
    /// PostgreSQL), one line per step: lets tests and operators check the list walks an index.
    pub async fn reports_plan(&self, v: &Viewer, f: &ReportQuery) -> AppResult<Vec<String>> {
        let explain = match self.db.backend {
            crate::Backend::Sqlite => "EXPLAIN QUERY PLAN SELECT r.id",
            crate::Backend::Postgres => "EXPLAIN SELECT r.id",
        };
        let (q, _) = self.report_list_sql(v, f, explain).await?;
        let rows = q
            .query()
            .fetch_all(&self.db.read)
            .await
            .map_err(crate::db::db_err)?;
        Ok(rows
            .iter()
            .map(|r| {
                use sqlx::Row;
                (0..r.len())
                    .filter_map(|i| {
                        r.try_get::<String, _>(i)
                            .ok()
                            .or_else(|| r.try_get::<i64, _>(i).ok().map(|n| n.to_string()))
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect())
    }

    /// The list query (with `select` as its head) and the offset it skips.
    async fn report_list_sql(
        &self,
        v: &Viewer,
        f: &ReportQuery,
        select: &str,
    ) -> AppResult<(Sql, i64)> {
        let mut q = Sql::new(&format!("{select} {REPORT_FROM} WHERE "));
        // One household's reports are few: its own index serves them better than walking the
        // community's.
        let one_household = f.household_id.as_deref().is_some_and(|h| !h.is_empty());
        let communities = (f.mine != Some(true) && !one_household)
            .then(|| whole_communities(v))
            .flatten();
        if let Some(cs) = communities {
            // Whole communities: an equality on the indexed community path, so the newest
            // reports are read off the index in order instead of sorting the whole area.
            q.push("r.community_path IN (");
            q.bind_list(&cs).push(")");
        } else if f.mine == Some(true) {
            q.push("(");
            push_filed(&mut q, v);
            for h in &v.households {
                q.push(" OR r.household_id = ").bind(h.clone());
            }
            q.push(")");
        } else {
            push_visibility(&mut q, v);
        }
        match f.status.as_deref().filter(|s| !s.is_empty()) {
            Some("open") => {
                q.push(" AND r.status <> 'closed'");
            }
            Some(s) => {
                q.push(" AND r.status = ").bind(s);
            }
            None => {}
        }
        if let Some(k) = f.kind.as_deref().filter(|s| !s.is_empty()) {
            q.push(" AND r.kind = ").bind(k);
        }
        if let Some(c) = f.category.as_deref().filter(|s| !s.is_empty()) {
            q.push(" AND r.category = ").bind(c);
        }
        if let Some(u) = f.unit_id.as_deref().filter(|s| !s.is_empty()) {
            q.push(" AND r.unit_id = ").bind(u);
        }
        if let Some(h) = f.household_id.as_deref().filter(|s| !s.is_empty()) {
            q.push(" AND r.household_id = ").bind(h);
        }
        match f.assignee.as_deref().filter(|s| !s.is_empty()) {
            Some("me") => {
                q.push(" AND r.assignee_user_id = ").bind(v.user_id.clone());
            }
            Some(_) => {
                return Err(linli_core::AppError::bad_request("validation.bad_value")
                    .arg("field", "assignee"));
            }
            None => {}
        }
        if let Some(pid) = f.place_id.as_deref().filter(|s| !s.is_empty()) {
            match self.place_unscoped(pid).await? {
                Some(pl) => {
                    q.push(" AND ");
                    q.scope("r.path", &[pl.path]);
                }
                None => {
                    q.push(" AND 1 = 0");
                }
            }
        }
        if f.overdue == Some(true) {
            let now = self.now_ms();
            q.push(" AND (r.overdue_sign = 1 OR r.overdue_resolve = 1 OR (r.status = 'dispatched' AND r.sign_by < ")
                .bind(now)
                .push(") OR (r.status = 'in_progress' AND r.resolve_by < ")
                .bind(now)
                .push("))");
        }
        if let Some(from) = f.from {
            q.push(" AND r.created_at >= ").bind(from);
        }
        if let Some(to) = f.to {
            q.push(" AND r.created_at < ").bind(to);
        }
        let limit = f.limit.unwrap_or(50).clamp(1, 200);
        let mut offset = f.offset.unwrap_or(0).clamp(0, 1_000_000);
        if let Some(c) = f.cursor.as_deref().filter(|c| !c.is_empty()) {
            // Strictly older than the last report shown, in (created_at, id) order.
            let (at, id) = parse_cursor(c)?;
            q.push(" AND r.created_at <= ")
                .bind(at)
                .push(" AND (r.created_at < ")
                .bind(at)
                .push(" OR r.id < ")
                .bind(id)
                .push(")");
            offset = 0;
        }
        q.push(" ORDER BY r.created_at DESC, r.id DESC LIMIT ")
            .bind(limit + 1)
            .push(" OFFSET ")
            .bind(offset);
        Ok((q, offset))
    }

    /// One report with its events, summons and photos; not found outside the viewer's view.
    pub async fn report(&self, v: &Viewer, id: &str) -> AppResult<ReportView> {
        let r = self.report_unscoped(id).await?.ok_or_else(not_found)?;
        let staff = self.report_staff_view(v, &r).await?;
        if !staff && !resident_sees(v, &r) {
            return Err(not_found());
        }
        // The three parts of the history: short index reads on the fast path.
        let mut events_q = Sql::new(
            "SELECT id, action, from_status, to_status, actor_id, actor, at, public_note, internal_note, data FROM report_events WHERE report_id = ",
        );
        events_q.bind(id).push(" ORDER BY at, id");
        let mut summons_q = Sql::new(
            "SELECT s.id, s.unit_id, o.name AS unit_name, s.summoned_at, s.signed_at, s.replied_at, s.reply FROM report_summons s JOIN orgs o ON o.id = s.unit_id WHERE s.report_id = ",
        );
        summons_q.bind(id).push(" ORDER BY s.summoned_at, s.id");
        let events = self.db.fetch_all_fast(&events_q).await;
        let summons = self.db.fetch_all_fast(&summons_q).await;
        let photos = self.report_photos(id).await;
        let events = events?
            .iter()
            .map(|e| {
                let own = e.col_str("actor_id") == v.user_id;
                ReportEvent {
                    id: e.col_str("id"),
                    action: e.col_str("action"),
                    from_status: e.col_opt_str("from_status"),
                    to_status: e.col_str("to_status"),
                    actor: if staff || own {
                        e.col_str("actor")
                    } else {
                        String::new()
                    },
                    at: e.col_i64("at"),
                    public_note: e.col_opt_str("public_note"),
                    internal_note: if staff {
                        e.col_opt_str("internal_note")
                    } else {
                        None
                    },
                    data: if staff {
                        serde_json::from_str(&e.col_str("data")).unwrap_or(Value::Null)
                    } else {
                        Value::Null
                    },
                }
            })
            .collect();
        let summons = summons?
            .iter()
            .map(|s| Summons {
                id: s.col_str("id"),
                unit_id: s.col_str("unit_id"),
                unit_name: s.col_str("unit_name"),
                summoned_at: s.col_i64("summoned_at"),
                signed_at: s.col_opt_i64("signed_at"),
                replied_at: s.col_opt_i64("replied_at"),
                reply: s.col_opt_str("reply"),
            })
            .collect();
        let photos = photos?;
        let contact = self.report_contact(staff, id).await?;
        let address = self.address(&r.path).await?;
        let reporter = if staff && !r.anonymous {
            self.reporter_of(&r).await?
        } else {
            None
        };
        Ok(ReportView {
            contact,
            address,
            reporter,
            report: self.redact(v, staff, r),
            staff_view: staff,
            events,
            summons,
            photos,
        })
    }

    /// The reporter's name and masked phone (their person record, else the account's name), and
    /// the household the report was filed for.
    async fn reporter_of(&self, r: &Report) -> AppResult<Option<Reporter>> {
        let mut out = Reporter {
            name: String::new(),
            phone_masked: None,
            person_id: None,
            household_id: r.household_id.clone(),
            household_address: None,
        };
        if let Some(uid) = &r.reporter_user_id {
            let q = Sql::new(
                "SELECT u.display_name, p.id AS person_id, p.name, p.phone_masked FROM users u LEFT JOIN persons p ON p.id = u.person_id WHERE u.id = $1",
            )
            .arg(uid);
            if let Some(row) = self.db.fetch_optional_fast(&q).await? {
                out.person_id = row.opt_str("person_id");
                out.name = row
                    .opt_str("name")
                    .unwrap_or_else(|| row.str("display_name"));
                out.phone_masked = row.opt_str("phone_masked");
            }
        }
        if let Some(h) = &r.household_id
            && let Some(path) = self.household_path(h).await?
        {
            out.household_address = Some(self.address(&path).await?);
        }
        if out.name.is_empty() && out.household_id.is_none() {
            return Ok(None);
        }
        Ok(Some(out))
    }

    pub(crate) async fn report_photos(&self, id: &str) -> AppResult<Vec<PhotoMeta>> {
        let mut q = Sql::new(
            "SELECT id, stage, mime, bytes, created_at FROM report_photos WHERE report_id = ",
        );
        q.bind(id).push(" ORDER BY created_at, id");
        let rows = self.db.fetch_all_fast(&q).await?;
        Ok(rows
            .iter()
            .map(|p| PhotoMeta {
                id: p.col_str("id"),
                stage: p.col_str("stage"),
                mime: p.col_str("mime"),
                bytes: p.col_i64("bytes"),
                created_at: p.col_i64("created_at"),
            })
            .collect())
    }
}

/// What waits for a viewer: open reports they can see, and the overdue ones among them.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct Workload {
    pub open: i64,
    pub overdue: i64,
}

impl Store {
    /// Open and overdue reports the viewer can see (the staff workbench's figures).
    pub async fn report_workload(&self, v: &Viewer) -> AppResult<Workload> {
        let now = self.now_ms();
        let mut q = Sql::new(
            "SELECT COUNT(*) AS open, COALESCE(SUM(CASE WHEN (r.status = 'dispatched' AND r.sign_by < ",
        );
        q.bind(now)
            .push(") OR (r.status = 'in_progress' AND r.resolve_by < ")
            .bind(now)
            .push(") THEN 1 ELSE 0 END), 0) AS overdue FROM reports r WHERE r.status NOT IN ('closed', 'replied', 'awaiting_visit') AND ");
        push_visibility(&mut q, v);
        let row = self.db.fetch_optional_fast(&q).await?;
        Ok(row
            .map(|r| Workload {
                open: r.i64("open"),
                overdue: r.i64("overdue"),
            })
            .unwrap_or_default())
    }
}
