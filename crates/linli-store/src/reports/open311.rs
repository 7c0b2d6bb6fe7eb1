//! Reads for the Open311 GeoReport v2 API (`/open311/v2/`, in `linli-server`).
//!
//! Open311 is a public interface: anonymous callers see only reports published after moderation
//! (never complaints). A caller with an `api_key` (a Linli API token) sees in addition the
//! reports of its `ReportRead` area, and the reports its account filed inside its
//! `ReportCreate` area (so an integration can read back what it posted). Only public notes of
//! events go out; internal notes and the reporter's identity never do. Addresses of reports the
//! caller sees only as published are cut at the building (no unit or room).

use std::collections::HashMap;

use linli_core::AppResult;
use linli_core::auth::{Action, Principal};

use crate::Store;
use crate::db::{Sql, db_err, i64_, opt_str, str_};

use linli_core::reports::state::{Outcome, RejectReason, Status, open311_extended_status};

use super::{
    REPORT_COLS, REPORT_FROM, Report, parse_status, path_ids, report_from_row, status_str,
};

/// The most rows one call answers.
pub const MAX_ROWS: i64 = 1000;

/// Filters of `GET requests` (already validated by the API layer).
#[derive(Debug, Clone, Default)]
pub struct Open311Filter {
    /// When non-empty, only these ids (and every other filter is ignored, as the spec says).
    pub ids: Vec<String>,
    /// Category codes; empty = all.
    pub service_codes: Vec<String>,
    /// `open` / `closed`; empty = both.
    pub statuses: Vec<String>,
    /// Created at or after (ms).
    pub start: Option<i64>,
    /// Created at or before (ms).
    pub end: Option<i64>,
    pub limit: i64,
}

/// A report as an Open311 caller may see it.
#[derive(Debug, Clone)]
pub struct Open311Request {
    pub report: Report,
    /// The latest public note (status_notes).
    pub status_notes: Option<String>,
    /// Place names from the community down (to the building for published-only views).
    pub address: String,
    /// The Linli place id the address names.
    pub address_id: String,
    /// The caller sees it as staff or as its filer (full address).
    pub full: bool,
    /// The routing catalogue's notice for it (Chinese, English), if any.
    pub notice: Option<(String, String)>,
}

/// One public step of a report (mySociety's `servicerequestupdates`).
#[derive(Debug, Clone)]
pub struct Open311Update {
    pub update_id: String,
    pub service_request_id: String,
    pub action: String,
    /// The report's fine status after this step.
    pub to_status: String,
    /// mySociety's status of the report after this step (`IN_PROGRESS`, `FIXED`, …).
    pub extended_status: String,
    pub at: i64,
    /// The public note (never the internal one).
    pub description: Option<String>,
}

struct Access {
    read: Vec<String>,
    own: Option<(String, Vec<String>)>,
}

fn access(p: Option<&Principal>) -> Access {
    let read = p
        .and_then(|p| p.grant(Action::ReportRead).ok())
        .map(|g| g.area(Action::ReportRead).to_vec())
        .unwrap_or_default();
    let own = p.and_then(|p| {
        p.grant(Action::ReportCreate).ok().map(|g| {
            (
                p.user_id().to_string(),
                g.area(Action::ReportCreate).to_vec(),
            )
        })
    });
    Access { read, own }
}

impl Access {
    fn push(&self, q: &mut Sql) {
        q.push("((r.public_approved = 1 AND r.kind <> 'complaint')");
        if !self.read.is_empty() {
            q.push(" OR ");
            q.scope("r.path", &self.read);
        }
        if let Some((user, prefixes)) = &self.own {
            q.push(" OR (r.reporter_user_id = ")
                .bind(user.clone())
                .push(" AND ");
            q.scope("r.path", prefixes);
            q.push(")");
        }
        q.push(")");
    }

    fn full(&self, r: &Report) -> bool {
        self.read.iter().any(|p| r.path.starts_with(p.as_str()))
            || self.own.as_ref().is_some_and(|(u, prefixes)| {
                r.reporter_user_id.as_deref() == Some(u.as_str())
                    && prefixes.iter().any(|p| r.path.starts_with(p.as_str()))
            })
    }
}

impl Store {
    /// Reports for `GET requests`, newest first.
    pub async fn open311_requests(
        &self,
        p: Option<&Principal>,
        f: &Open311Filter,
    ) -> AppResult<Vec<Open311Request>> {
        let acc = access(p);
        let mut q = Sql::new(&format!("SELECT {REPORT_COLS} {REPORT_FROM} WHERE "));
        acc.push(&mut q);
        if !f.ids.is_empty() {
            q.push(" AND r.id IN (");
            for (i, id) in f.ids.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.bind(id.clone());
            }
            q.push(")");
        } else {
            if !f.service_codes.is_empty() {
                q.push(" AND r.category IN (");
                for (i, c) in f.service_codes.iter().enumerate() {
                    if i > 0 {
                        q.push(", ");
                    }
                    q.bind(c.clone());
                }
                q.push(")");
            }
            let open = f.statuses.iter().any(|s| s == "open");
            let closed = f.statuses.iter().any(|s| s == "closed");
            if open && !closed {
                q.push(" AND r.status <> 'closed'");
            } else if closed && !open {
                q.push(" AND r.status = 'closed'");
            }
            if let Some(s) = f.start {
                q.push(" AND r.created_at >= ").bind(s);
            }
            if let Some(e) = f.end {
                q.push(" AND r.created_at <= ").bind(e);
            }
        }
        q.push(" ORDER BY r.created_at DESC, r.id DESC LIMIT ")
            .bind(f.limit.clamp(1, MAX_ROWS));
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        let reports: Vec<Report> = rows.iter().map(report_from_row).collect();
        self.open311_decorate(&acc, reports).await
    }

    /// One report for `GET requests/{id}` (None when missing or not visible to the caller).
    pub async fn open311_request(
        &self,
        p: Option<&Principal>,
        id: &str,
    ) -> AppResult<Option<Open311Request>> {
        let f = Open311Filter {
            ids: vec![id.to_string()],
            limit: 1,
            ..Default::default()
        };
        Ok(self.open311_requests(p, &f).await?.into_iter().next())
    }

    /// `GET tokens/{token}`: Linli creates requests synchronously, so the token handed out is
    /// the request id itself. It names the request only to a caller who may read it as
    /// `GET requests/{id}` does: a report that is not public (a complaint, one not yet
    /// moderated) answers exactly as an unknown token, so the lookup does not confirm that a
    /// private report exists.
    pub async fn open311_token(
        &self,
        p: Option<&Principal>,
        token: &str,
    ) -> AppResult<Option<String>> {
        Ok(self
            .open311_request(p, token)
            .await?
            .map(|r| r.report.id.clone()))
    }

    /// Resolve an `address_string` such as `幸福里社区 3栋 2单元 301` to a place inside the
    /// granted subtrees: each word names a place below the previous one (levels in between,
    /// such as grids, may be skipped). The deepest place reached by the leading words counts
    /// when it is a community or below and was never ambiguous; `None` otherwise.
    pub async fn open311_resolve_address(
        &self,
        prefixes: &[String],
        text: &str,
    ) -> AppResult<Option<String>> {
        let words: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | '，' | '/' | '、'))
            .filter(|w| !w.is_empty())
            .take(8)
            .collect();
        let mut within: Vec<String> = prefixes.to_vec();
        let mut found: Option<(String, String)> = None;
        for w in words {
            let mut q = Sql::new("SELECT id, path FROM places WHERE name = ");
            q.bind(w.to_string()).push(" AND ");
            q.scope("path", &within);
            q.push(" ORDER BY path LIMIT 50");
            let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
            let depth = |p: &str| p.matches('/').count();
            let Some(shallowest) = rows.iter().map(|r| depth(&str_(r, "path"))).min() else {
                break;
            };
            let top: Vec<_> = rows
                .iter()
                .filter(|r| depth(&str_(r, "path")) == shallowest)
                .collect();
            if top.len() != 1 {
                return Ok(None);
            }
            let (id, path) = (str_(top[0], "id"), str_(top[0], "path"));
            within = vec![path.clone()];
            found = Some((id, path));
        }
        Ok(found
            .filter(|(_, path)| path_ids(path).len() >= 4)
            .map(|(id, _)| id))
    }

    /// Public steps of the reports the caller may see, in time order, within `[start, end]`.
    pub async fn open311_updates(
        &self,
        p: Option<&Principal>,
        start: i64,
        end: i64,
        limit: i64,
    ) -> AppResult<Vec<Open311Update>> {
        let acc = access(p);
        let mut q = Sql::new(
            "SELECT e.id, e.report_id, e.action, e.to_status, e.at, e.public_note, r.reject_reason, r.outcome FROM report_events e JOIN reports r ON r.id = e.report_id WHERE ",
        );
        acc.push(&mut q);
        q.push(" AND e.at >= ")
            .bind(start)
            .push(" AND e.at <= ")
            .bind(end)
            .push(" ORDER BY e.at, e.id LIMIT ")
            .bind(limit.clamp(1, MAX_ROWS));
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| {
                let action = str_(r, "action");
                let status = parse_status(&str_(r, "to_status"));
                let extended = if action == "reopen" {
                    "REOPEN"
                } else if status == Status::Closed {
                    let reject: Option<RejectReason> =
                        opt_str(r, "reject_reason").and_then(|s| serde_json::from_str(&s).ok());
                    let outcome: Option<Outcome> = opt_str(r, "outcome")
                        .and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok());
                    open311_extended_status(status, reject.as_ref(), outcome, false)
                } else {
                    open311_extended_status(status, None, None, false)
                };
                Open311Update {
                    update_id: str_(r, "id"),
                    service_request_id: str_(r, "report_id"),
                    action,
                    to_status: status_str(status).to_string(),
                    extended_status: extended.to_string(),
                    at: i64_(r, "at"),
                    description: opt_str(r, "public_note").filter(|s| !s.trim().is_empty()),
                }
            })
            .collect())
    }

    async fn open311_decorate(
        &self,
        acc: &Access,
        reports: Vec<Report>,
    ) -> AppResult<Vec<Open311Request>> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        // Latest public note per report.
        let mut q = Sql::new(
            "SELECT report_id, public_note FROM report_events WHERE public_note IS NOT NULL AND report_id IN (",
        );
        for (i, r) in reports.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.bind(r.id.clone());
        }
        q.push(") ORDER BY at, id");
        let mut notes: HashMap<String, String> = HashMap::new();
        for row in q.query().fetch_all(&self.db.read).await.map_err(db_err)? {
            if let Some(n) = opt_str(&row, "public_note").filter(|s| !s.trim().is_empty()) {
                notes.insert(str_(&row, "report_id"), n);
            }
        }
        // The notices of the routing rules they were routed with.
        let mut rule_ids: Vec<String> = reports
            .iter()
            .filter_map(|r| r.routing_rule_id.clone())
            .collect();
        rule_ids.sort();
        rule_ids.dedup();
        let mut notices: HashMap<String, (String, String)> = HashMap::new();
        if !rule_ids.is_empty() {
            let mut q =
                Sql::new("SELECT id, notice_zh, notice_en FROM routing_rules WHERE id IN (");
            for (i, id) in rule_ids.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.bind(id.clone());
            }
            q.push(")");
            for row in q.query().fetch_all(&self.db.read).await.map_err(db_err)? {
                notices.insert(
                    str_(&row, "id"),
                    (str_(&row, "notice_zh"), str_(&row, "notice_en")),
                );
            }
        }
        // Place names along the paths (community and below; the grid is left out).
        let mut wanted: Vec<String> = Vec::new();
        let mut shown: Vec<(bool, Vec<String>)> = Vec::new();
        for r in &reports {
            let full = acc.full(r);
            let ids = path_ids(&r.path);
            let keep: Vec<String> = ids
                .iter()
                .enumerate()
                .filter(|(i, _)| *i == 3 || (*i >= 5 && (full || *i == 5)))
                .map(|(_, id)| id.clone())
                .collect();
            for id in &keep {
                if !wanted.contains(id) {
                    wanted.push(id.clone());
                }
            }
            shown.push((full, keep));
        }
        let mut names: HashMap<String, String> = HashMap::new();
        for chunk in wanted.chunks(500) {
            let mut q = Sql::new("SELECT id, name FROM places WHERE id IN (");
            for (i, id) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.bind(id.clone());
            }
            q.push(")");
            for row in q.query().fetch_all(&self.db.read).await.map_err(db_err)? {
                names.insert(str_(&row, "id"), str_(&row, "name"));
            }
        }
        Ok(reports
            .into_iter()
            .zip(shown)
            .map(|(mut report, (full, keep))| {
                let address = keep
                    .iter()
                    .filter_map(|id| names.get(id).cloned())
                    .collect::<Vec<_>>()
                    .join(" ");
                let address_id = keep
                    .last()
                    .cloned()
                    .unwrap_or_else(|| report.place_id.clone());
                if !full {
                    report.reporter_user_id = None;
                    report.household_id = None;
                    report.rating = None;
                }
                Open311Request {
                    status_notes: notes.remove(&report.id),
                    notice: report
                        .routing_rule_id
                        .as_ref()
                        .and_then(|id| notices.get(id).cloned()),
                    report,
                    address,
                    address_id,
                    full,
                }
            })
            .collect())
    }
}
