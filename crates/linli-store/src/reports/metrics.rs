//! Report metrics per unit, category, area (community) or month (in the configured time zone):
//! 响应率 (signed in time / dispatched), 解决率 (solved / replied), 满意率 (rated 4–5 / rated),
//! 按时办结率 (closed on time / closed after handling), 回退率 (returned at least once /
//! dispatched), 重办率 (reopened / replied at least once), 延期率 (extended / dispatched), and
//! the average time of each stage. Overdue flags are frozen at close, so closed months do not
//! change. Rows are read scoped to the grant and aggregated here (one portable query).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use linli_core::auth::{Action, Forbidden, Grant, Principal, RoleKind};
use linli_core::{AppError, AppResult};

use crate::Store;
use crate::db::{Sql, db_err, i64_, opt_i64, opt_str, str_};

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// unit (default), category, area or month.
    pub by: Option<String>,
    /// Only reports at or below this place.
    pub place_id: Option<String>,
    /// Created at or after (ms).
    pub from: Option<i64>,
    /// Created before (ms).
    pub to: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct StatsRow {
    /// The unit id, category code, community path or `YYYY-MM`.
    pub key: String,
    /// Unit name, category name or community name.
    pub label: String,
    pub total: i64,
    pub dispatched: i64,
    pub signed_on_time: i64,
    pub replied: i64,
    pub solved: i64,
    pub rated: i64,
    pub satisfied: i64,
    pub closed_handled: i64,
    pub closed_on_time: i64,
    pub returned: i64,
    pub reopened: i64,
    pub extended: i64,
    pub response_rate: Option<f64>,
    pub solve_rate: Option<f64>,
    pub satisfaction_rate: Option<f64>,
    pub on_time_rate: Option<f64>,
    pub return_rate: Option<f64>,
    pub reopen_rate: Option<f64>,
    pub extension_rate: Option<f64>,
    /// Average milliseconds: submitted → accepted, dispatched → signed, signed → replied,
    /// replied → closed.
    pub avg_accept_ms: Option<i64>,
    pub avg_sign_ms: Option<i64>,
    pub avg_handle_ms: Option<i64>,
    pub avg_close_ms: Option<i64>,
    #[serde(skip)]
    sums: [(i64, i64); 4],
}

fn rate(n: i64, d: i64) -> Option<f64> {
    (d > 0).then(|| (n as f64 / d as f64 * 10_000.0).round() / 10_000.0)
}

fn month_of(zone: linli_core::tz::Zone, ms: i64) -> String {
    zone.local(ms).format("%Y-%m").to_string()
}

/// Column headers of the export, in order.
pub const EXPORT_HEADERS: [&str; 16] = [
    "key",
    "label",
    "total",
    "dispatched",
    "response_rate",
    "solve_rate",
    "satisfaction_rate",
    "on_time_rate",
    "return_rate",
    "reopen_rate",
    "extension_rate",
    "avg_accept_hours",
    "avg_sign_hours",
    "avg_handle_hours",
    "avg_close_hours",
    "replied",
];

impl StatsRow {
    pub fn export_row(&self) -> Vec<String> {
        let r = |v: Option<f64>| v.map(|x| format!("{:.2}%", x * 100.0)).unwrap_or_default();
        let h = |v: Option<i64>| {
            v.map(|x| format!("{:.1}", x as f64 / 3_600_000.0))
                .unwrap_or_default()
        };
        vec![
            self.key.clone(),
            self.label.clone(),
            self.total.to_string(),
            self.dispatched.to_string(),
            r(self.response_rate),
            r(self.solve_rate),
            r(self.satisfaction_rate),
            r(self.on_time_rate),
            r(self.return_rate),
            r(self.reopen_rate),
            r(self.extension_rate),
            h(self.avg_accept_ms),
            h(self.avg_sign_ms),
            h(self.avg_handle_ms),
            h(self.avg_close_ms),
            self.replied.to_string(),
        ]
    }
}

/// Whose reports the statistics count: every report of the caller's area (area staff), and the
/// reports their units handle inside their units' area (a property company's or department's
/// staff; see [`linli_core::auth::RoleKind::Unit`]).
#[derive(Debug, Clone)]
pub struct StatsScope {
    all: Grant,
    area: Option<Grant>,
    unit: Option<Grant>,
    units: Vec<String>,
}

impl StatsScope {
    pub fn of(p: &Principal) -> Result<StatsScope, Forbidden> {
        let all = p.grant(Action::ReportStats)?;
        let units = p.units(Action::ReportStats);
        Ok(StatsScope {
            all,
            area: p
                .grant_where(Action::ReportStats, |b| b.kind() != RoleKind::Unit)
                .ok(),
            unit: if units.is_empty() {
                None
            } else {
                p.grant_where(Action::ReportStats, |b| b.kind() == RoleKind::Unit)
                    .ok()
            },
            units,
        })
    }
}

impl Store {
    pub async fn report_stats(
        &self,
        scope: &StatsScope,
        q: &StatsQuery,
    ) -> AppResult<Vec<StatsRow>> {
        scope.all.scope(Action::ReportStats)?;
        let by = q.by.as_deref().filter(|s| !s.is_empty()).unwrap_or("unit");
        if !["unit", "category", "area", "month"].contains(&by) {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "by"));
        }
        let mut s = Sql::new(
            "SELECT r.unit_id, u.name AS unit_name, r.category, c.name_zh AS category_name, r.community_path, r.created_at, r.accepted_at, r.dispatched_at, r.signed_at, r.replied_at, r.closed_at, r.overdue_sign, r.overdue_resolve, r.outcome, r.rating, r.returned_count, r.reopened_count, r.extended_count, r.status
             FROM reports r LEFT JOIN orgs u ON u.id = r.unit_id JOIN report_categories c ON c.code = r.category WHERE ",
        );
        let place = match q.place_id.as_deref().filter(|s| !s.is_empty()) {
            Some(pid) => Some(self.place(&scope.all, pid).await?.path),
            None => None,
        };
        let narrow = |g: &Grant| match (&place, g.scope(Action::ReportStats)) {
            (_, Err(_)) => Vec::new(),
            (Some(path), Ok(s)) => s.narrowed_to(path),
            (None, Ok(s)) => s.prefixes().to_vec(),
        };
        let mut parts = 0;
        s.push("(");
        if let Some(px) = scope.area.as_ref().map(narrow).filter(|px| !px.is_empty()) {
            s.scope("r.path", &px);
            parts += 1;
        }
        if let Some(px) = scope.unit.as_ref().map(narrow).filter(|px| !px.is_empty()) {
            if parts > 0 {
                s.push(" OR ");
            }
            s.push("(");
            s.scope("r.path", &px);
            s.push(" AND r.unit_id IN (")
                .bind_list(&scope.units)
                .push("))");
            parts += 1;
        }
        if parts == 0 {
            s.push("1 = 0");
        }
        s.push(")");
        if let Some(f) = q.from {
            s.push(" AND r.created_at >= ").bind(f);
        }
        if let Some(t) = q.to {
            s.push(" AND r.created_at < ").bind(t);
        }
        let rows = s.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        let mut groups: BTreeMap<String, StatsRow> = BTreeMap::new();
        let zone = self.clock.zone();
        for r in &rows {
            let (key, label) = match by {
                "unit" => (
                    opt_str(r, "unit_id").unwrap_or_default(),
                    opt_str(r, "unit_name").unwrap_or_default(),
                ),
                "category" => (str_(r, "category"), str_(r, "category_name")),
                "area" => (str_(r, "community_path"), String::new()),
                _ => (month_of(zone, i64_(r, "created_at")), String::new()),
            };
            let g = groups.entry(key.clone()).or_insert_with(|| StatsRow {
                key,
                label,
                ..Default::default()
            });
            let at = |c: &str| opt_i64(r, c);
            g.total += 1;
            let dispatched = at("dispatched_at").is_some();
            if dispatched {
                g.dispatched += 1;
            }
            if at("signed_at").is_some() && i64_(r, "overdue_sign") == 0 {
                g.signed_on_time += 1;
            }
            let outcome = opt_str(r, "outcome");
            // A declined price quote ends the work without a reply: not in the solve rate.
            if outcome.is_some() && outcome.as_deref() != Some("declined") {
                g.replied += 1;
            }
            if outcome.as_deref() == Some("solved") {
                g.solved += 1;
            }
            if let Some(rt) = at("rating") {
                g.rated += 1;
                if rt >= 4 {
                    g.satisfied += 1;
                }
            }
            if str_(r, "status") == "closed" && dispatched {
                g.closed_handled += 1;
                if i64_(r, "overdue_resolve") == 0 {
                    g.closed_on_time += 1;
                }
            }
            if i64_(r, "returned_count") > 0 {
                g.returned += 1;
            }
            let reopened = i64_(r, "reopened_count") > 0;
            if reopened {
                g.reopened += 1;
            }
            if i64_(r, "extended_count") > 0 {
                g.extended += 1;
            }
            let spans = [
                (at("created_at"), at("accepted_at")),
                (at("dispatched_at"), at("signed_at")),
                (at("signed_at"), at("replied_at")),
                (at("replied_at"), at("closed_at")),
            ];
            for (i, (a, b)) in spans.iter().enumerate() {
                if let (Some(a), Some(b)) = (a, b)
                    && b >= a
                {
                    g.sums[i].0 += b - a;
                    g.sums[i].1 += 1;
                }
            }
        }
        let names = if by == "area" {
            let paths: Vec<String> = groups.keys().cloned().collect();
            let mut m = std::collections::HashMap::new();
            for p in paths {
                if let Some(id) = super::path_ids(&p).last()
                    && let Some(pl) = self.place_unscoped(id).await?
                {
                    m.insert(p, pl.name);
                }
            }
            m
        } else {
            Default::default()
        };
        Ok(groups
            .into_values()
            .map(|mut g| {
                if let Some(n) = names.get(&g.key) {
                    g.label = n.clone();
                }
                g.response_rate = rate(g.signed_on_time, g.dispatched);
                g.solve_rate = rate(g.solved, g.replied);
                g.satisfaction_rate = rate(g.satisfied, g.rated);
                g.on_time_rate = rate(g.closed_on_time, g.closed_handled);
                g.return_rate = rate(g.returned, g.dispatched);
                g.reopen_rate = rate(g.reopened, g.replied.max(g.reopened));
                g.extension_rate = rate(g.extended, g.dispatched);
                let avg = |(s, n): (i64, i64)| (n > 0).then(|| s / n);
                g.avg_accept_ms = avg(g.sums[0]);
                g.avg_sign_ms = avg(g.sums[1]);
                g.avg_handle_ms = avg(g.sums[2]);
                g.avg_close_ms = avg(g.sums[3]);
                g
            })
            .collect())
    }
}
