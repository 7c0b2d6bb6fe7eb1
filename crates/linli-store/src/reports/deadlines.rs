//! Deadline enforcement. The database is the durable job list: open reports carry their
//! deadlines in indexed columns (`sign_by`, `resolve_by`), and each step taken is recorded once
//! in `report_alerts` (report, stage, step, due) — so a restart loses nothing and repeats
//! nothing. [`Store::reports_tick`] runs the due steps; `linli serve` calls it periodically and
//! tests call it after moving `store.clock`.
//!
//! Per stage (sign-by for dispatched reports, resolve-by for reports in progress):
//! - `remind`: [`REMIND_BEFORE_MS`] before the deadline, the unit is reminded;
//! - `urge` (催办): at the deadline, the unit and the dispatchers are told, and the report is
//!   flagged overdue;
//! - `escalate`: [`ESCALATE_AFTER_MS`] past the deadline, the level above the unit is told —
//!   for reports in progress through the state machine's escalate (the lead unit keeps it),
//!   for unsigned reports as supervision (督办).

use serde::Serialize;
use serde_json::json;

use linli_core::AppResult;
use linli_core::reports::state::{self, Status, Transition};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{db_err, opt_i64, str_};
use crate::notify::Notice;

use super::{Unit, context_of, not_found, parse_status};

/// How long before a deadline the unit is reminded.
pub const REMIND_BEFORE_MS: i64 = 4 * 3_600_000;
/// How long past a deadline the level above is told.
pub const ESCALATE_AFTER_MS: i64 = 24 * 3_600_000;

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct TickSummary {
    pub reminded: usize,
    pub urged: usize,
    pub escalated: usize,
}

impl Store {
    /// Run every deadline step that is due and not yet taken. Idempotent.
    pub async fn reports_tick(&self) -> AppResult<TickSummary> {
        let now = self.now_ms();
        let horizon = now + REMIND_BEFORE_MS;
        let rows = sqlx::query(
            // Reports whose series is finished (escalated for this due time) drop out of the scan.
            "SELECT id, status, sign_by, resolve_by FROM reports r
             WHERE (r.sign_by <= $1 AND r.status = 'dispatched' AND NOT EXISTS (SELECT 1 FROM report_alerts a
                    WHERE a.report_id = r.id AND a.stage = 'sign' AND a.step = 'escalate' AND a.due_at = r.sign_by))
                OR (r.resolve_by <= $1 AND r.status = 'in_progress' AND NOT EXISTS (SELECT 1 FROM report_alerts a
                    WHERE a.report_id = r.id AND a.stage = 'resolve' AND a.step = 'escalate' AND a.due_at = r.resolve_by))
             ORDER BY r.id LIMIT 5000",
        )
        .bind(horizon)
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        let mut sum = TickSummary::default();
        for r in &rows {
            let id = str_(r, "id");
            let (stage, due) = match str_(r, "status").as_str() {
                "dispatched" => ("sign", opt_i64(r, "sign_by")),
                _ => ("resolve", opt_i64(r, "resolve_by")),
            };
            let Some(due) = due else { continue };
            let mut steps = Vec::new();
            if now >= due + ESCALATE_AFTER_MS {
                steps.push("urge");
                steps.push("escalate");
            } else if now >= due {
                steps.push("urge");
            } else if now >= due - REMIND_BEFORE_MS {
                steps.push("remind");
            }
            for step in steps {
                if self.deadline_step(&id, stage, step, due, now).await? {
                    match step {
                        "remind" => sum.reminded += 1,
                        "urge" => sum.urged += 1,
                        _ => sum.escalated += 1,
                    }
                }
            }
        }
        // First contact (首次联系): the unit is urged once when nobody has contacted the
        // reporter by the first-contact deadline.
        let uncontacted = sqlx::query(
            "SELECT id, first_contact_by FROM reports r
             WHERE r.first_contact_by <= $1 AND r.first_contact_at IS NULL AND r.status IN ('dispatched', 'in_progress')
               AND NOT EXISTS (SELECT 1 FROM report_alerts a WHERE a.report_id = r.id AND a.stage = 'contact' AND a.due_at = r.first_contact_by)
             ORDER BY r.id LIMIT 5000",
        )
        .bind(now)
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        for r in &uncontacted {
            let Some(due) = opt_i64(r, "first_contact_by") else {
                continue;
            };
            if self
                .deadline_step(&str_(r, "id"), "contact", "urge", due, now)
                .await?
            {
                sum.urged += 1;
            }
        }
        Ok(sum)
    }

    /// Take one step once; false when it was already taken (or the report moved on).
    async fn deadline_step(
        &self,
        id: &str,
        stage: &str,
        step: &str,
        due: i64,
        now: i64,
    ) -> AppResult<bool> {
        // Cheap check first, without taking the write lock; repeated under the lock below.
        let taken = sqlx::query(
            "SELECT 1 AS x FROM report_alerts WHERE report_id = $1 AND stage = $2 AND step = $3 AND due_at = $4",
        )
        .bind(id.to_string())
        .bind(stage.to_string())
        .bind(step.to_string())
        .bind(due)
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?;
        if taken.is_some() {
            return Ok(false);
        }
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let done = sqlx::query(
            "SELECT 1 AS x FROM report_alerts WHERE report_id = $1 AND stage = $2 AND step = $3 AND due_at = $4",
        )
        .bind(id.to_string())
        .bind(stage.to_string())
        .bind(step.to_string())
        .bind(due)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.is_some() {
            return Ok(false);
        }
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} {} WHERE r.id = $1",
            super::REPORT_COLS,
            super::REPORT_FROM
        )))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .map(|x| super::report_from_row(&x))
        .ok_or_else(not_found)?;
        // The report may have moved on since the scan.
        let still_due = match stage {
            "sign" => r.status == "dispatched" && r.sign_by == Some(due),
            "resolve" => r.status == "in_progress" && r.resolve_by == Some(due),
            _ => {
                matches!(r.status.as_str(), "dispatched" | "in_progress")
                    && r.first_contact_at.is_none()
                    && r.first_contact_by == Some(due)
            }
        };
        if !still_due {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO report_alerts (report_id, stage, step, due_at, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.to_string())
        .bind(stage.to_string())
        .bind(step.to_string())
        .bind(due)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let unit = match &r.unit_id {
            Some(u) => {
                let row =
                    sqlx::query("SELECT id, kind, name, place_id, path FROM orgs WHERE id = $1")
                        .bind(u.clone())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err)?;
                row.map(|o| Unit {
                    id: str_(&o, "id"),
                    kind: str_(&o, "kind"),
                    name: str_(&o, "name"),
                    place_id: str_(&o, "place_id"),
                    path: str_(&o, "path"),
                })
            }
            None => None,
        };
        let actor = Actor::system("deadlines");
        let mut to: Vec<String> = Vec::new();
        let from = parse_status(&r.status);
        let mut data = json!({ "stage": stage, "due_at": due });
        let (action, key) = match step {
            "remind" => {
                if let Some(u) = &unit {
                    to = self.unit_members(&mut tx, u).await?;
                }
                ("remind", "notice-report-reminder")
            }
            "urge" => {
                if let Some(u) = &unit {
                    to = self.unit_members(&mut tx, u).await?;
                }
                to.extend(self.report_dispatchers(&mut tx, &r.path).await?);
                let col = match stage {
                    "sign" => Some("overdue_sign"),
                    "resolve" => Some("overdue_resolve"),
                    _ => None,
                };
                if let Some(col) = col {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE reports SET {col} = 1, version = version + 1, updated_at = $1 WHERE id = $2"
                    )))
                    .bind(now)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                }
                ("urge", "notice-report-urged")
            }
            _ => {
                let level = r.escalation_level + 1;
                let (place, staff) = self
                    .parent_level_staff(&mut tx, &r.path, level as usize)
                    .await?;
                data["to_place_id"] = json!(place);
                to = staff;
                data["level"] = json!(level);
                if from == Status::InProgress {
                    // Through the state machine: the lead unit keeps ownership.
                    state::next(from, &Transition::Escalate, &context_of(&r, now, 0))
                        .map_err(|e| linli_core::AppError::conflict(e.code()))?;
                    sqlx::query("UPDATE reports SET escalation_level = $1, version = version + 1, updated_at = $2 WHERE id = $3")
                        .bind(level)
                        .bind(now)
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    ("escalate", "notice-report-escalated")
                } else {
                    ("supervise", "notice-report-escalated")
                }
            }
        };
        super::actions::insert_event(
            &mut tx,
            id,
            action,
            Some(&r.status),
            &r.status,
            &actor,
            now,
            None,
            None,
            data.clone(),
        )
        .await?;
        let audit_action = format!("report.deadline_{action}");
        self.audit(
            &mut tx,
            &actor,
            Entry {
                action: &audit_action,
                entity: "report",
                entity_id: id,
                path: Some(&r.path),
                purpose: None,
                before: None,
                after: Some(data),
            },
        )
        .await?;
        let kind = format!("report.{action}");
        let link = format!("/reports/{id}");
        self.notify(
            &mut tx,
            &to,
            &Notice {
                kind: &kind,
                key,
                args: json!({ "title": r.title, "stage": stage }),
                entity: "report",
                entity_id: id,
                path: Some(&r.path),
                link: Some(&link),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.publish_report(action, id, &r.path);
        Ok(true)
    }

    /// One run of the deadline job: [`Store::reports_tick`], its outcome logged.
    pub async fn reports_job(&self) {
        match self.reports_tick().await {
            Ok(s) if s.reminded + s.urged + s.escalated > 0 => {
                tracing::info!(
                    reminded = s.reminded,
                    urged = s.urged,
                    escalated = s.escalated,
                    "report deadlines"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "report deadline tick failed"),
        }
    }
}
