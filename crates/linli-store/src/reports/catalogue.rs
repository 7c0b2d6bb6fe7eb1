//! The routing catalogue (派单目录) and the working-day calendar, both as data.
//!
//! A rule maps category × area (a place subtree) to the responsible unit, with deadlines per
//! stage (sign-by, first-contact-by, resolve-by) in working days or clock hours, the notice shown
//! to the resident, and repair settings. Rules are versioned: a change inserts a new row with the
//! next version and retires the previous one, so a report keeps pointing at the exact version it
//! was routed with. The most specific current rule (longest area path) wins.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use linli_core::auth::{Action, Grant};
use linli_core::reports::calendar::{DayKind, OFFICIAL, WorkCalendar};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err, i64_, str_};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Category {
    pub code: String,
    pub kind: String,
    pub name_zh: String,
    pub name_en: String,
}

/// One version of a routing rule.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoutingRule {
    pub id: String,
    /// Stable across versions.
    pub rule_key: String,
    pub version: i64,
    pub current: bool,
    pub category: String,
    pub area_id: String,
    pub area_path: String,
    pub unit_id: String,
    /// `workdays` or `hours`.
    pub deadline_unit: String,
    pub sign_by: i64,
    pub first_contact_by: i64,
    pub resolve_by: i64,
    /// What the resident is told when the report is routed.
    pub notice_zh: String,
    pub notice_en: String,
    /// Repairs: `assign`, `grab` or `round_robin`.
    pub dispatch_mode: String,
    /// Repairs: paid service (fee to be agreed) or free.
    pub paid: bool,
    /// `always`, `sample` or `none`.
    pub return_visit: String,
    /// `sample`: the percentage of reports that get a return visit (0–100), chosen by a stable
    /// hash of the report id.
    pub visit_sample_percent: i64,
    pub created_by: String,
    pub created_at: i64,
}

/// A new rule, or a new version of an existing one (`rule_key` given).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct RoutingRuleInput {
    #[serde(default)]
    pub rule_key: Option<String>,
    pub category: String,
    pub area_id: String,
    pub unit_id: String,
    pub deadline_unit: String,
    pub sign_by: i64,
    pub first_contact_by: i64,
    pub resolve_by: i64,
    #[serde(default)]
    pub notice_zh: String,
    #[serde(default)]
    pub notice_en: String,
    #[serde(default = "default_mode")]
    pub dispatch_mode: String,
    #[serde(default)]
    pub paid: bool,
    #[serde(default = "default_visit")]
    pub return_visit: String,
    /// `sample`: the percentage visited (0–100, default 30).
    #[serde(default = "default_sample")]
    pub visit_sample_percent: i64,
}

fn default_sample() -> i64 {
    linli_core::reports::repairs::DEFAULT_VISIT_SAMPLE_PERCENT
}

fn default_mode() -> String {
    "assign".into()
}
fn default_visit() -> String {
    "always".into()
}

const RULE_COLS: &str = "id, rule_key, version, current, category, area_id, area_path, unit_id, deadline_unit, sign_by, first_contact_by, resolve_by, notice_zh, notice_en, dispatch_mode, paid, return_visit, visit_sample_percent, created_by, created_at";

fn rule_from_row<R: crate::db::Cols>(r: &R) -> RoutingRule {
    RoutingRule {
        id: r.col_str("id"),
        rule_key: r.col_str("rule_key"),
        version: r.col_i64("version"),
        current: r.col_i64("current") != 0,
        category: r.col_str("category"),
        area_id: r.col_str("area_id"),
        area_path: r.col_str("area_path"),
        unit_id: r.col_str("unit_id"),
        deadline_unit: r.col_str("deadline_unit"),
        sign_by: r.col_i64("sign_by"),
        first_contact_by: r.col_i64("first_contact_by"),
        resolve_by: r.col_i64("resolve_by"),
        notice_zh: r.col_str("notice_zh"),
        notice_en: r.col_str("notice_en"),
        dispatch_mode: r.col_str("dispatch_mode"),
        paid: r.col_i64("paid") != 0,
        return_visit: r.col_str("return_visit"),
        visit_sample_percent: r.col_i64("visit_sample_percent"),
        created_by: r.col_str("created_by"),
        created_at: r.col_i64("created_at"),
    }
}

/// A year of the calendar as an administrator enters it: the exceptional days.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct CalendarYearInput {
    pub year: i32,
    /// Where the arrangement comes from (e.g. the State Council notice).
    pub source: String,
    /// Weekdays off (`YYYY-MM-DD`).
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Weekend days worked (调休上班).
    #[serde(default)]
    pub workdays: Vec<String>,
}

/// One year of the calendar as stored: where it comes from and its exceptional days.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CalendarYearView {
    pub year: i32,
    pub source: String,
    /// Days off that are not plain weekends, and the holiday's weekend days (`YYYY-MM-DD`).
    pub holidays: Vec<String>,
    /// Weekend days worked (调休上班).
    pub workdays: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CalendarInfo {
    /// Years with data.
    pub years: Vec<i32>,
    /// Set when the current or the next year has no data: deadlines running into it fall
    /// back to clock days and say so on the report.
    pub warning: Option<String>,
}

/// Deadlines computed for a stage set, and a warning if the calendar lacked a year.
#[derive(Debug, Clone, Default)]
pub struct Deadlines {
    pub sign_by: i64,
    pub first_contact_by: i64,
    pub resolve_by: i64,
    pub warning: Option<String>,
}

impl Store {
    pub async fn report_categories(&self) -> AppResult<Vec<Category>> {
        let rows = sqlx::query(
            "SELECT code, kind, name_zh, name_en FROM report_categories ORDER BY sort_key, code",
        )
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| Category {
                code: str_(r, "code"),
                kind: str_(r, "kind"),
                name_zh: str_(r, "name_zh"),
                name_en: str_(r, "name_en"),
            })
            .collect())
    }

    pub async fn report_category(&self, code: &str) -> AppResult<Category> {
        // Read on every intake: the fast path.
        let q =
            Sql::new("SELECT code, kind, name_zh, name_en FROM report_categories WHERE code = $1")
                .arg(code);
        let r = self.db.fetch_optional_fast(&q).await?;
        r.map(|r| Category {
            code: r.str("code"),
            kind: r.str("kind"),
            name_zh: r.str("name_zh"),
            name_en: r.str("name_en"),
        })
        .ok_or_else(|| AppError::bad_request("report.unknown_category").arg("code", code))
    }

    /// Routing rules whose area lies in the caller's subtrees (current ones, or every version).
    pub async fn routing_rules(
        &self,
        grant: &Grant,
        all_versions: bool,
    ) -> AppResult<Vec<RoutingRule>> {
        let scope = grant.scope_in(&[Action::RoutingAdmin, Action::ReportDispatch])?;
        let mut q = Sql::new(&format!("SELECT {RULE_COLS} FROM routing_rules WHERE "));
        q.scope("area_path", scope.prefixes());
        if !all_versions {
            q.push(" AND current = 1");
        }
        q.push(" ORDER BY category, area_path, version");
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows.iter().map(rule_from_row).collect())
    }

    pub(crate) async fn routing_rule_by_id(&self, id: &str) -> AppResult<Option<RoutingRule>> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RULE_COLS} FROM routing_rules WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(r.as_ref().map(rule_from_row))
    }

    /// The current rule for a category at a place: the one with the most specific area.
    pub async fn route(&self, category: &str, path: &str) -> AppResult<Option<RoutingRule>> {
        // Read on every intake: the fast path.
        let q = Sql::new(&format!(
            "SELECT {RULE_COLS} FROM routing_rules WHERE category = $1 AND current = 1"
        ))
        .arg(category);
        let rows = self.db.fetch_all_fast(&q).await?;
        Ok(rows
            .iter()
            .map(rule_from_row)
            .filter(|r| path.starts_with(r.area_path.as_str()))
            .max_by_key(|r| r.area_path.len()))
    }

    /// Add a rule or a new version of one (RoutingAdmin over the rule's area), audited.
    pub async fn put_routing_rule(
        &self,
        grant: &Grant,
        actor: &Actor,
        input: RoutingRuleInput,
    ) -> AppResult<RoutingRule> {
        let scope = grant.scope(Action::RoutingAdmin)?;
        self.report_category(&input.category).await?;
        if !["workdays", "hours"].contains(&input.deadline_unit.as_str()) {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "deadline_unit"));
        }
        if !["assign", "grab", "round_robin"].contains(&input.dispatch_mode.as_str()) {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "dispatch_mode"));
        }
        if !["always", "sample", "none"].contains(&input.return_visit.as_str()) {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "return_visit"));
        }
        if !(0..=100).contains(&input.visit_sample_percent) {
            return Err(
                AppError::bad_request("validation.bad_value").arg("field", "visit_sample_percent")
            );
        }
        for (f, v) in [
            ("sign_by", input.sign_by),
            ("first_contact_by", input.first_contact_by),
            ("resolve_by", input.resolve_by),
        ] {
            if !(0..=365).contains(&v) {
                return Err(AppError::bad_request("validation.bad_value").arg("field", f));
            }
        }
        if input.sign_by > input.resolve_by || input.first_contact_by > input.resolve_by {
            return Err(AppError::bad_request("report.deadlines_out_of_order"));
        }
        let area = self.place(grant, &input.area_id).await?;
        let unit = self
            .unit(&input.unit_id)
            .await?
            .ok_or_else(|| AppError::bad_request("validation.bad_value").arg("field", "unit_id"))?;
        if !["committee", "property_company", "department"].contains(&unit.kind.as_str()) {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "unit_id"));
        }
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let (key, version, before) = match &input.rule_key {
            Some(k) => {
                let prev = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RULE_COLS} FROM routing_rules WHERE rule_key = $1 AND current = 1"
                )))
                .bind(k.clone())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?
                .map(|r| rule_from_row(&r))
                .filter(|r| scope.covers(&r.area_path))
                .ok_or(AppError::not_found("report.rule_not_found"))?;
                sqlx::query("UPDATE routing_rules SET current = 0 WHERE id = $1")
                    .bind(prev.id.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                (
                    k.clone(),
                    prev.version + 1,
                    serde_json::to_value(&prev).ok(),
                )
            }
            None => (new_id(), 1, None),
        };
        let rule = RoutingRule {
            id: new_id(),
            rule_key: key,
            version,
            current: true,
            category: input.category,
            area_id: area.id,
            area_path: area.path,
            unit_id: unit.id,
            deadline_unit: input.deadline_unit,
            sign_by: input.sign_by,
            first_contact_by: input.first_contact_by,
            resolve_by: input.resolve_by,
            notice_zh: input.notice_zh.trim().to_string(),
            notice_en: input.notice_en.trim().to_string(),
            dispatch_mode: input.dispatch_mode,
            paid: input.paid,
            return_visit: input.return_visit,
            visit_sample_percent: input.visit_sample_percent,
            created_by: actor.id.clone(),
            created_at: self.now_ms(),
        };
        insert_rule(&mut tx, &rule).await?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "routing_rule.put",
                entity: "routing_rule",
                entity_id: &rule.rule_key,
                path: Some(&rule.area_path),
                purpose: None,
                before,
                after: serde_json::to_value(&rule).ok(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(rule)
    }

    /// The working-day calendar from the database. The official years built into Linli are
    /// written to the tables the first time (the database is the one source afterwards, and an
    /// administrator can add years).
    pub async fn work_calendar(&self) -> AppResult<WorkCalendar> {
        let mut cal = WorkCalendar::default().in_zone(self.clock.zone());
        for y in self.calendar_years().await? {
            let day = |d: &String| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
            let days: Vec<(NaiveDate, DayKind)> = y
                .holidays
                .iter()
                .filter_map(|d| day(d).map(|d| (d, DayKind::Holiday)))
                .chain(
                    y.workdays
                        .iter()
                        .filter_map(|d| day(d).map(|d| (d, DayKind::Workday))),
                )
                .collect();
            cal.add_year(y.year, &days);
        }
        Ok(cal)
    }

    async fn seed_official_calendar(&self) -> AppResult<()> {
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        // Requests that find the calendar missing at the same time seed it once: on PostgreSQL
        // the second waits here and then sees the first one's years (SQLite's write lock does
        // the same). Without it both inserted 2026 and one answered 409 — found by the crash
        // harness's concurrent first dispatches.
        if self.backend() == crate::Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(424243)")
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        for y in OFFICIAL {
            let done = sqlx::query("SELECT 1 AS x FROM calendar_years WHERE year = $1")
                .bind(i64::from(y.year))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            if done.is_some() {
                continue;
            }
            let holidays: Vec<String> = y
                .holidays
                .iter()
                .map(|(m, d)| format!("{}-{m:02}-{d:02}", y.year))
                .collect();
            let workdays: Vec<String> = y
                .workdays
                .iter()
                .map(|(m, d)| format!("{}-{m:02}-{d:02}", y.year))
                .collect();
            write_year(
                &mut tx,
                y.year,
                y.source,
                &holidays,
                &workdays,
                self.now_ms(),
            )
            .await?;
        }
        tx.commit().await.map_err(db_err)
    }

    /// Add or replace a year of the calendar (RoutingAdmin anywhere), audited.
    pub async fn put_calendar_year(
        &self,
        grant: &Grant,
        actor: &Actor,
        input: CalendarYearInput,
    ) -> AppResult<CalendarInfo> {
        grant.scope(Action::RoutingAdmin)?;
        if !(2000..=2100).contains(&input.year) {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "year"));
        }
        if input.source.trim().is_empty() {
            return Err(AppError::required("source"));
        }
        for (field, list) in [("holidays", &input.holidays), ("workdays", &input.workdays)] {
            for d in list {
                let ok = NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .is_ok_and(|x| chrono::Datelike::year(&x) == input.year);
                if !ok {
                    return Err(AppError::bad_request("validation.bad_value").arg("field", field));
                }
            }
        }
        // A day cannot be both off and worked; a make-up working day (调休上班) is a Saturday
        // or Sunday — a weekday there is a typo, and it would silently change nothing.
        if let Some(d) = input.holidays.iter().find(|d| input.workdays.contains(d)) {
            return Err(AppError::bad_request("calendar.day_twice").arg("day", d.clone()));
        }
        if let Some(d) = input.workdays.iter().find(|d| {
            NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok_and(|x| {
                !matches!(
                    chrono::Datelike::weekday(&x),
                    chrono::Weekday::Sat | chrono::Weekday::Sun
                )
            })
        }) {
            return Err(AppError::bad_request("calendar.workday_on_weekday").arg("day", d.clone()));
        }
        self.work_calendar().await?;
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        write_year(
            &mut tx,
            input.year,
            input.source.trim(),
            &input.holidays,
            &input.workdays,
            self.now_ms(),
        )
        .await?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "calendar.put_year",
                entity: "calendar_year",
                entity_id: &input.year.to_string(),
                path: None,
                purpose: None,
                before: None,
                after: serde_json::to_value(&input).ok(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.calendar_info().await
    }

    /// Every year of the calendar with its source and exceptional days, oldest first. The
    /// official years built into Linli are written to the tables the first time.
    pub async fn calendar_years(&self) -> AppResult<Vec<CalendarYearView>> {
        let known: Vec<i64> = sqlx::query("SELECT year FROM calendar_years")
            .fetch_all(&self.db.read)
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| i64_(r, "year"))
            .collect();
        if OFFICIAL.iter().any(|y| !known.contains(&i64::from(y.year))) {
            self.seed_official_calendar().await?;
        }
        let years = sqlx::query("SELECT year, source FROM calendar_years ORDER BY year")
            .fetch_all(&self.db.read)
            .await
            .map_err(db_err)?;
        let days = sqlx::query("SELECT day, is_workday FROM calendar_days ORDER BY day")
            .fetch_all(&self.db.read)
            .await
            .map_err(db_err)?;
        Ok(years
            .iter()
            .map(|y| {
                let year = i64_(y, "year") as i32;
                let prefix = format!("{year}-");
                let of_year = |workday: i64| -> Vec<String> {
                    days.iter()
                        .filter(|d| i64_(d, "is_workday") == workday)
                        .map(|d| str_(d, "day"))
                        .filter(|d| d.starts_with(&prefix))
                        .collect()
                };
                CalendarYearView {
                    year,
                    source: str_(y, "source"),
                    holidays: of_year(0),
                    workdays: of_year(1),
                }
            })
            .collect())
    }

    /// Known years, and a warning when the current or next year is missing.
    pub async fn calendar_info(&self) -> AppResult<CalendarInfo> {
        let years = self.work_calendar().await?.known_years();
        // One check for every place that warns (`/readyz`, the pages, this API): the current
        // and next year in the configured time zone.
        let missing: Vec<String> = self
            .calendar_missing_years()
            .await?
            .iter()
            .map(i32::to_string)
            .collect();
        let warning = (!missing.is_empty()).then(|| {
            let w = format!("calendar year(s) missing: {}", missing.join(", "));
            tracing::warn!("{w}; working-day deadlines fall back to clock days");
            w
        });
        Ok(CalendarInfo { years, warning })
    }

    /// The deadlines of a rule counted from `from`: working days on the calendar, or hours.
    /// A year missing from the calendar never becomes a silent guess: the deadlines fall back
    /// to clock days and the warning says so (it is stored on the report and logged).
    pub async fn deadlines_for(&self, rule: &RoutingRule, from: i64) -> AppResult<Deadlines> {
        const H: i64 = 3_600_000;
        if rule.deadline_unit == "hours" {
            return Ok(Deadlines {
                sign_by: from + rule.sign_by * H,
                first_contact_by: from + rule.first_contact_by * H,
                resolve_by: from + rule.resolve_by * H,
                warning: None,
            });
        }
        let cal = self.work_calendar().await?;
        let calc = |n: i64| cal.add_working_days(from, n.max(0) as u32);
        match (
            calc(rule.sign_by),
            calc(rule.first_contact_by),
            calc(rule.resolve_by),
        ) {
            (Ok(a), Ok(b), Ok(c)) => Ok(Deadlines {
                sign_by: a,
                first_contact_by: b,
                resolve_by: c,
                warning: None,
            }),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                let linli_core::reports::calendar::CalendarError::MissingYear(y) = e;
                let w = format!("calendar_missing_year:{y}");
                tracing::warn!(year = y, rule = %rule.id, "working-day calendar has no data for the year; deadlines computed in clock days");
                let day = 86_400_000;
                Ok(Deadlines {
                    sign_by: from + rule.sign_by.max(1) * day,
                    first_contact_by: from + rule.first_contact_by.max(1) * day,
                    resolve_by: from + rule.resolve_by.max(1) * day,
                    warning: Some(w),
                })
            }
        }
    }

    /// The demo district's catalogue: public affairs to the committee of the community, repairs
    /// to the property company, city management to the street's 城管科, security and disputes
    /// to the 综治办, water to the district water bureau, complaints (those about the property
    /// company included) / suggestions / inquiries to the committee. Idempotent.
    #[allow(clippy::type_complexity)]
    pub async fn seed_demo_catalogue(&self) -> AppResult<usize> {
        let existing = sqlx::query("SELECT COUNT(*) AS n FROM routing_rules")
            .fetch_one(&self.db.read)
            .await
            .map_err(db_err)?;
        if i64_(&existing, "n") > 0 {
            return Ok(0);
        }
        let orgs = sqlx::query("SELECT o.id, o.kind, o.name, o.place_id, o.path, p.kind AS place_kind FROM orgs o JOIN places p ON p.id = o.place_id ORDER BY o.name")
            .fetch_all(&self.db.read)
            .await
            .map_err(db_err)?;
        let mut rules: Vec<(
            String,
            String,
            String,
            String,
            &str,
            [i64; 3],
            &str,
            &str,
            &str,
            bool,
        )> = Vec::new();
        let committee_notice = (
            "您的诉求已转社区居委会办理，将在1个工作日内签收、2个工作日内联系您。",
            "Your report has been passed to the residents' committee; it will be signed for within 1 working day and you will be contacted within 2.",
        );
        for o in &orgs {
            let (id, kind, place_id, path) = (
                str_(o, "id"),
                str_(o, "kind"),
                str_(o, "place_id"),
                str_(o, "path"),
            );
            match kind.as_str() {
                "committee" => {
                    for cat in [
                        "public_facility",
                        "environment",
                        "dispute",
                        "complaint_other",
                        // A complaint about the property company is the committee's to handle:
                        // routed to the company, the company would read who complained.
                        "complaint_property",
                        "suggestion",
                        "inquiry",
                    ] {
                        rules.push((
                            cat.into(),
                            place_id.clone(),
                            path.clone(),
                            id.clone(),
                            "workdays",
                            [1, 2, 5],
                            committee_notice.0,
                            committee_notice.1,
                            "assign",
                            false,
                        ));
                    }
                }
                "property_company" => {
                    for (cat, unit, d, paid, mode) in [
                        ("repair_plumbing", "hours", [2, 4, 48], true, "grab"),
                        ("repair_elevator", "hours", [1, 1, 24], false, "assign"),
                        ("repair_door", "workdays", [1, 1, 3], false, "round_robin"),
                        ("repair_common", "workdays", [1, 2, 7], false, "assign"),
                    ] {
                        rules.push((
                            cat.into(),
                            place_id.clone(),
                            path.clone(),
                            id.clone(),
                            unit,
                            d,
                            "物业服务中心已收到您的报修，维修人员将尽快与您联系；有偿服务将先告知收费标准。",
                            "The property service centre has your request; a technician will contact you soon. For paid services you are told the price first.",
                            mode,
                            paid,
                        ));
                    }
                }
                "department" => {
                    let cats: Vec<String> = {
                        let r = sqlx::query("SELECT categories FROM orgs WHERE id = $1")
                            .bind(id.clone())
                            .fetch_one(&self.db.read)
                            .await
                            .map_err(db_err)?;
                        serde_json::from_str(&str_(&r, "categories")).unwrap_or_default()
                    };
                    for c in cats {
                        let cat = match c.as_str() {
                            "environment" => continue, // the committee first; 城管 by transfer
                            "city_appearance" => "city_appearance",
                            "public_security" => "public_security",
                            "water" => "water",
                            _ => continue,
                        };
                        rules.push((
                            cat.into(),
                            place_id.clone(),
                            path.clone(),
                            id.clone(),
                            "workdays",
                            [1, 3, 10],
                            "您的诉求已转相关职能部门办理，办理进展可在“我的报事”中查看。",
                            "Your report has been passed to the responsible department; follow its progress under My reports.",
                            "assign",
                            false,
                        ));
                    }
                }
                _ => {}
            }
        }
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        // "No catalogue yet" is decided again under a lock inside the writing transaction: two
        // instances seeding at once write one catalogue.
        self.db
            .lock_xact(&mut tx, "reports.demo_catalogue")
            .await
            .map_err(db_err)?;
        let existing = sqlx::query("SELECT COUNT(*) AS n FROM routing_rules")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        if i64_(&existing, "n") > 0 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(0);
        }
        let now = self.now_ms();
        for (cat, area_id, area_path, unit_id, unit, d, nz, ne, mode, paid) in &rules {
            let rule = RoutingRule {
                id: new_id(),
                rule_key: new_id(),
                version: 1,
                current: true,
                category: cat.clone(),
                area_id: area_id.clone(),
                area_path: area_path.clone(),
                unit_id: unit_id.clone(),
                deadline_unit: unit.to_string(),
                sign_by: d[0],
                first_contact_by: d[1],
                resolve_by: d[2],
                notice_zh: nz.to_string(),
                notice_en: ne.to_string(),
                dispatch_mode: mode.to_string(),
                paid: *paid,
                return_visit: "always".into(),
                visit_sample_percent: default_sample(),
                created_by: "system".into(),
                created_at: now,
            };
            insert_rule(&mut tx, &rule).await?;
        }
        self.audit(
            &mut tx,
            &Actor::system("demo"),
            Entry {
                action: "routing_rule.seed",
                entity: "routing_rule",
                entity_id: "demo",
                path: None,
                purpose: None,
                before: None,
                after: Some(serde_json::json!({ "rules": rules.len() })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(rules.len())
    }
}

async fn insert_rule(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    r: &RoutingRule,
) -> AppResult<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO routing_rules ({RULE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
    )))
    .bind(r.id.clone())
    .bind(r.rule_key.clone())
    .bind(r.version)
    .bind(i64::from(r.current))
    .bind(r.category.clone())
    .bind(r.area_id.clone())
    .bind(r.area_path.clone())
    .bind(r.unit_id.clone())
    .bind(r.deadline_unit.clone())
    .bind(r.sign_by)
    .bind(r.first_contact_by)
    .bind(r.resolve_by)
    .bind(r.notice_zh.clone())
    .bind(r.notice_en.clone())
    .bind(r.dispatch_mode.clone())
    .bind(i64::from(r.paid))
    .bind(r.return_visit.clone())
    .bind(r.visit_sample_percent)
    .bind(r.created_by.clone())
    .bind(r.created_at)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn write_year(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    year: i32,
    source: &str,
    holidays: &[String],
    workdays: &[String],
    now: i64,
) -> AppResult<()> {
    let lo = format!("{year}-01-01");
    let hi = format!("{}-01-01", year + 1);
    sqlx::query("DELETE FROM calendar_days WHERE day >= $1 AND day < $2")
        .bind(lo)
        .bind(hi)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    sqlx::query("DELETE FROM calendar_years WHERE year = $1")
        .bind(i64::from(year))
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    sqlx::query("INSERT INTO calendar_years (year, source, created_at) VALUES ($1, $2, $3)")
        .bind(i64::from(year))
        .bind(source.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    for (list, flag) in [(holidays, 0i64), (workdays, 1i64)] {
        for d in list {
            sqlx::query("INSERT INTO calendar_days (day, is_workday, source) VALUES ($1, $2, $3)")
                .bind(d.clone())
                .bind(flag)
                .bind(source.to_string())
                .execute(&mut **tx)
                .await
                .map_err(db_err)?;
        }
    }
    Ok(())
}
