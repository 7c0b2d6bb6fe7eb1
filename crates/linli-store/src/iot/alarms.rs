//! Alarms after ThingsBoard's model: one active alarm per (originator, type), updated on repeat;
//! acknowledge, clear, assign, comment (each audited and recorded with time in
//! `alarm_events`); the place path stored on the alarm makes "active alarms in building 3" one
//! range query. Escalation is durable: the chain of tiers (who, after how long) and the next
//! escalation instant live on the alarm row, and [`Store::escalate_due`] — driven by the IoT
//! tick with the store's clock — tells the next tier until someone acknowledges or clears.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Any, Transaction};

use linli_core::auth::{Action, Grant, Principal, Role};
use linli_core::iot::Severity;
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::bus::BusEvent;
use crate::db::{Sql, db_err, i64_, opt_i64, opt_str, str_};
use crate::notify::Notice;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Alarm {
    pub id: String,
    /// The device or person the alarm is about.
    pub originator: String,
    pub device_id: Option<String>,
    pub person_id: Option<String>,
    pub alarm_type: String,
    pub severity: Severity,
    pub path: String,
    pub place_id: String,
    pub active: bool,
    pub acked: bool,
    /// ACTIVE_UNACK, ACTIVE_ACK, CLEARED_UNACK, CLEARED_ACK
    pub status: String,
    pub started_at: i64,
    pub updated_at: i64,
    /// How often it was raised again while active.
    pub repeats: i64,
    pub details: Value,
    pub ack_at: Option<i64>,
    pub ack_by: Option<String>,
    pub cleared_at: Option<i64>,
    pub cleared_by: Option<String>,
    pub assignee_id: Option<String>,
    pub report_id: Option<String>,
    /// When the next escalation tier is told, if any.
    pub next_esc_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlarmEvent {
    pub at: i64,
    /// raised, repeated, notified, acknowledged, cleared, assigned, commented, report
    pub kind: String,
    pub user_id: Option<String>,
    /// Escalation tier of a notification.
    pub step: Option<i64>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlarmView {
    pub alarm: Alarm,
    pub events: Vec<AlarmEvent>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct AlarmQuery {
    /// Only alarms at or below this place (room, building, community …).
    pub place_id: Option<String>,
    /// Only active (true) or only cleared (false) alarms.
    pub active: Option<bool>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct AssignBody {
    pub user_id: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct CommentBody {
    pub text: String,
}

/// One tier of an escalation chain: these users, told `delay_ms` after the previous tier.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Tier {
    pub label: String,
    pub users: Vec<String>,
    pub delay_ms: i64,
}

/// The escalation chain of an alarm. After the last tier, with `repeat_ms`, all tiers are told
/// again every `repeat_ms` (at most `MAX_ROUNDS` times) until acknowledged.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Chain {
    pub tiers: Vec<Tier>,
    pub repeat_ms: Option<i64>,
}

const MAX_ROUNDS: i64 = 48;

/// An alarm to raise (or update, when one of the same type is active on the originator).
#[derive(Debug, Clone)]
pub struct Raise {
    pub originator: String,
    pub device_id: Option<String>,
    pub person_id: Option<String>,
    pub alarm_type: String,
    pub severity: Severity,
    pub path: String,
    pub place_id: String,
    pub details: Value,
    pub rule_id: Option<String>,
    pub chain: Chain,
    /// `alarm.raised` or `alarm.sos` (notice kind).
    pub notice_kind: &'static str,
}

const COLS: &str = "id, originator, device_id, person_id, alarm_type, severity, path, place_id, active, acked, started_at, updated_at, repeats, details, ack_at, ack_by, cleared_at, cleared_by, assignee_id, report_id, next_esc_at";

fn from_row(r: &sqlx::any::AnyRow) -> Alarm {
    let active = i64_(r, "active") == 1;
    let acked = i64_(r, "acked") == 1;
    Alarm {
        id: str_(r, "id"),
        originator: str_(r, "originator"),
        device_id: opt_str(r, "device_id"),
        person_id: opt_str(r, "person_id"),
        alarm_type: str_(r, "alarm_type"),
        severity: Severity::parse(&str_(r, "severity")).unwrap_or(Severity::Indeterminate),
        path: str_(r, "path"),
        place_id: str_(r, "place_id"),
        active,
        acked,
        status: format!(
            "{}_{}",
            if active { "ACTIVE" } else { "CLEARED" },
            if acked { "ACK" } else { "UNACK" }
        ),
        started_at: i64_(r, "started_at"),
        updated_at: i64_(r, "updated_at"),
        repeats: i64_(r, "repeats"),
        details: serde_json::from_str(&str_(r, "details")).unwrap_or(Value::Null),
        ack_at: opt_i64(r, "ack_at"),
        ack_by: opt_str(r, "ack_by"),
        cleared_at: opt_i64(r, "cleared_at"),
        cleared_by: opt_str(r, "cleared_by"),
        assignee_id: opt_str(r, "assignee_id"),
        report_id: opt_str(r, "report_id"),
        next_esc_at: opt_i64(r, "next_esc_at"),
    }
}

pub async fn add_event(
    tx: &mut Transaction<'static, Any>,
    alarm_id: &str,
    at: i64,
    kind: &str,
    user_id: Option<&str>,
    step: Option<i64>,
    detail: &str,
) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO alarm_events (id, alarm_id, at, kind, user_id, step, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id())
    .bind(alarm_id.to_string())
    .bind(at)
    .bind(kind.to_string())
    .bind(user_id.map(str::to_string))
    .bind(step)
    .bind(detail.to_string())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Users holding `role` through a binding on a place that contains `path`.
pub async fn users_with_role_over(
    tx: &mut Transaction<'static, Any>,
    role: &Role,
    path: &str,
) -> AppResult<Vec<String>> {
    let rows = sqlx::query(
        "SELECT DISTINCT rb.user_id FROM role_bindings rb
         JOIN places p ON p.id = rb.place_id
         JOIN users u ON u.id = rb.user_id
         WHERE rb.role = $1 AND u.disabled = 0 AND p.path = substr($2, 1, length(p.path))
         ORDER BY rb.user_id",
    )
    .bind(role.as_str().to_string())
    .bind(path.to_string())
    .fetch_all(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(|r| str_(r, "user_id")).collect())
}

impl Store {
    /// Raise an alarm, or update the active one of the same (originator, type), inside the
    /// caller's transaction. A new alarm tells its first tier at once when that tier has no
    /// delay. Returns the alarm id and whether it is new; publish `alarm.raised` /
    /// `alarm.updated` after commit.
    pub async fn raise_alarm(
        &self,
        tx: &mut Transaction<'static, Any>,
        r: &Raise,
        now: i64,
    ) -> AppResult<(String, bool)> {
        let existing = sqlx::query(
            "SELECT id, sev_rank FROM alarms WHERE originator = $1 AND alarm_type = $2 AND active = 1",
        )
        .bind(r.originator.clone())
        .bind(r.alarm_type.clone())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
        if let Some(row) = existing {
            let id = str_(&row, "id");
            // A repeat never lowers the severity.
            let rank = i64_(&row, "sev_rank").min(r.severity.rank());
            let sev = [
                Severity::Critical,
                Severity::Major,
                Severity::Minor,
                Severity::Warning,
                Severity::Indeterminate,
            ][rank as usize];
            sqlx::query(
                "UPDATE alarms SET updated_at = $1, repeats = repeats + 1, details = $2, severity = $3, sev_rank = $4 WHERE id = $5",
            )
            .bind(now)
            .bind(r.details.to_string())
            .bind(sev.as_str().to_string())
            .bind(rank)
            .bind(id.clone())
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
            add_event(tx, &id, now, "repeated", None, None, "").await?;
            return Ok((id, false));
        }
        let id = new_id();
        let chain = serde_json::to_string(&r.chain).unwrap_or_else(|_| "{}".into());
        sqlx::query(
            "INSERT INTO alarms (id, originator, device_id, person_id, alarm_type, severity, sev_rank, path, place_id, active, acked, started_at, updated_at, details, rule_id, chain)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, 0, $10, $10, $11, $12, $13)",
        )
        .bind(id.clone())
        .bind(r.originator.clone())
        .bind(r.device_id.clone())
        .bind(r.person_id.clone())
        .bind(r.alarm_type.clone())
        .bind(r.severity.as_str().to_string())
        .bind(r.severity.rank())
        .bind(r.path.clone())
        .bind(r.place_id.clone())
        .bind(now)
        .bind(r.details.to_string())
        .bind(r.rule_id.clone())
        .bind(chain)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
        add_event(tx, &id, now, "raised", None, None, "").await?;
        self.audit(
            tx,
            &Actor::system("iot"),
            Entry {
                action: "alarm.raise",
                entity: "alarm",
                entity_id: &id,
                path: Some(&r.path),
                purpose: None,
                before: None,
                after: Some(serde_json::json!({
                    "type": r.alarm_type, "severity": r.severity.as_str(), "originator": r.originator
                })),
            },
        )
        .await?;
        // Tier 0 at once when it has no delay; otherwise schedule it.
        match r.chain.tiers.first() {
            Some(t) if t.delay_ms <= 0 => {
                self.fire_tier(tx, &id, r, 0, now).await?;
            }
            Some(t) => {
                self.set_escalation(tx, &id, 0, Some(now + t.delay_ms))
                    .await?;
            }
            None => {}
        }
        Ok((id, true))
    }

    async fn set_escalation(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
        step: i64,
        next: Option<i64>,
    ) -> AppResult<()> {
        sqlx::query("UPDATE alarms SET esc_step = $1, next_esc_at = $2 WHERE id = $3")
            .bind(step)
            .bind(next)
            .bind(id.to_string())
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Tell the users of escalation step `step` (tiers 0..=step once the chain repeats) and
    /// schedule the next one.
    async fn fire_tier(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
        r: &Raise,
        step: i64,
        now: i64,
    ) -> AppResult<()> {
        let tiers = &r.chain.tiers;
        let n = tiers.len() as i64;
        let (told, kind): (Vec<usize>, &str) = if step < n {
            ((0..=step as usize).collect(), r.notice_kind)
        } else {
            ((0..tiers.len()).collect(), r.notice_kind)
        };
        let mut users: Vec<String> = Vec::new();
        for i in &told {
            for u in &tiers[*i].users {
                if !users.contains(u) {
                    users.push(u.clone());
                    add_event(
                        tx,
                        id,
                        now,
                        "notified",
                        Some(u),
                        Some(step),
                        &tiers[*i].label,
                    )
                    .await?;
                }
            }
        }
        let place = self.address(&r.path).await.unwrap_or_default();
        let link = format!("/staff/alarms/{id}");
        self.notify(
            tx,
            &users,
            &Notice {
                kind,
                key: if r.notice_kind == "alarm.sos" {
                    "notice-alarm-sos"
                } else {
                    "notice-alarm-raised"
                },
                args: serde_json::json!({
                    "type": r.alarm_type, "severity": r.severity.as_str(), "place": place, "step": step + 1
                }),
                entity: "alarm",
                entity_id: id,
                path: Some(&r.path),
                link: Some(&link),
            },
        )
        .await?;
        let next = if step + 1 < n {
            Some(now + tiers[(step + 1) as usize].delay_ms.max(1))
        } else {
            match r.chain.repeat_ms {
                Some(rep) if rep > 0 && step < n + MAX_ROUNDS => Some(now + rep),
                _ => None,
            }
        };
        self.set_escalation(tx, id, step + 1, next).await
    }

    /// Tell the next tier of every unacknowledged active alarm whose escalation time has
    /// come. Returns the events to publish (already committed).
    pub async fn escalate_due(&self, now: i64) -> AppResult<Vec<BusEvent>> {
        let rows = sqlx::query(
            "SELECT id FROM alarms WHERE next_esc_at IS NOT NULL AND next_esc_at <= $1 AND active = 1 AND acked = 0 ORDER BY next_esc_at LIMIT 200",
        )
        .bind(now)
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let id = str_(&row, "id");
            let mut tx = self.db.begin_write().await.map_err(db_err)?;
            // Re-read and claim under the row's lock: someone may have acknowledged meanwhile,
            // and another instance running the same job skips the alarm (PostgreSQL `SKIP
            // LOCKED`) or, once it committed, finds its next escalation moved on.
            let sql = format!(
                "SELECT originator, device_id, person_id, alarm_type, severity, path, place_id, details, rule_id, chain, esc_step
                 FROM alarms WHERE id = $1 AND active = 1 AND acked = 0 AND next_esc_at IS NOT NULL AND next_esc_at <= $2{}",
                self.backend().skip_locked()
            );
            let r = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id.clone())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            let Some(r) = r else {
                continue;
            };
            let chain: Chain = serde_json::from_str(&str_(&r, "chain")).unwrap_or_default();
            let raise = Raise {
                originator: str_(&r, "originator"),
                device_id: opt_str(&r, "device_id"),
                person_id: opt_str(&r, "person_id"),
                alarm_type: str_(&r, "alarm_type"),
                severity: Severity::parse(&str_(&r, "severity")).unwrap_or(Severity::Indeterminate),
                path: str_(&r, "path"),
                place_id: str_(&r, "place_id"),
                details: Value::Null,
                rule_id: opt_str(&r, "rule_id"),
                notice_kind: if opt_str(&r, "person_id").is_some()
                    && str_(&r, "alarm_type") == "sos"
                {
                    "alarm.sos"
                } else {
                    "alarm.raised"
                },
                chain,
            };
            self.fire_tier(&mut tx, &id, &raise, i64_(&r, "esc_step"), now)
                .await?;
            tx.commit().await.map_err(db_err)?;
            self.publish_alarm_inbox(&id, now).await?;
            out.push(BusEvent {
                kind: "alarm.escalated".into(),
                path: raise.path.clone(),
                id: id.clone(),
                users: vec![],
            });
        }
        for e in &out {
            self.bus.publish(e.clone());
        }
        Ok(out)
    }

    /// Clear the active alarm of (originator, type) because its rule says so (system), inside
    /// the caller's transaction. Returns (id, path) when there was one.
    pub async fn clear_alarm_by_rule(
        &self,
        tx: &mut Transaction<'static, Any>,
        originator: &str,
        alarm_type: &str,
        now: i64,
    ) -> AppResult<Option<(String, String)>> {
        let r = sqlx::query(
            "SELECT id, path FROM alarms WHERE originator = $1 AND alarm_type = $2 AND active = 1",
        )
        .bind(originator.to_string())
        .bind(alarm_type.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
        let Some(r) = r else { return Ok(None) };
        let id = str_(&r, "id");
        sqlx::query(
            "UPDATE alarms SET active = 0, cleared_at = $1, cleared_by = 'system', updated_at = $1, next_esc_at = NULL WHERE id = $2",
        )
        .bind(now)
        .bind(id.clone())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
        add_event(tx, &id, now, "cleared", None, None, "rule").await?;
        Ok(Some((id, str_(&r, "path"))))
    }

    /// Enabled devices last seen (or, never heard from, registered) before `cutoff`, without
    /// an active alarm of any of the no-data rules `rules`: the candidates for a no-data alarm,
    /// with when they were last seen.
    pub async fn devices_silent_since(
        &self,
        cutoff: i64,
        rules: &[String],
    ) -> AppResult<Vec<(String, i64)>> {
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = crate::db::Sql::new(
            "SELECT d.id, COALESCE(l.seen_at, d.created_at) AS seen FROM devices d
             LEFT JOIN device_latest l ON l.device_id = d.id
             WHERE d.disabled = 0 AND COALESCE(l.seen_at, d.created_at) < ",
        );
        q.bind(cutoff);
        q.push(
            " AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.originator = d.id AND a.active = 1 AND a.rule_id IN (",
        );
        q.bind_list(rules);
        q.push("))");
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| (str_(r, "id"), i64_(r, "seen")))
            .collect())
    }

    /// After commit: tell the users notified about an alarm since `since` that their inbox has
    /// something new (an `inbox` bus event addressed to them, for open pages).
    pub async fn publish_alarm_inbox(&self, alarm_id: &str, since: i64) -> AppResult<()> {
        let rows = sqlx::query(
            "SELECT DISTINCT user_id FROM alarm_events WHERE alarm_id = $1 AND kind = 'notified' AND at >= $2 AND user_id IS NOT NULL",
        )
        .bind(alarm_id.to_string())
        .bind(since)
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        let users: Vec<String> = rows.iter().map(|r| str_(r, "user_id")).collect();
        if !users.is_empty() {
            self.bus.publish(BusEvent {
                kind: "inbox".into(),
                path: String::new(),
                id: alarm_id.to_string(),
                users,
            });
        }
        Ok(())
    }

    /// Alarms in the grant, active first, most severe first, newest first.
    pub async fn alarms(&self, grant: &Grant, q: &AlarmQuery) -> AppResult<Vec<Alarm>> {
        let scope = grant.scope_in(&[Action::AlarmRead, Action::AlarmHandle])?;
        let prefixes = match &q.place_id {
            Some(pid) => {
                let path = self
                    .place_unscoped(pid)
                    .await?
                    .map(|p| p.path)
                    .ok_or(AppError::not_found("registry.place.not_found"))?;
                scope.narrowed_to(&path)
            }
            None => scope.prefixes().to_vec(),
        };
        let mut s = Sql::new(&format!("SELECT {COLS} FROM alarms WHERE "));
        s.scope("path", &prefixes);
        if let Some(a) = q.active {
            s.push(" AND active = ").bind(i64::from(a));
        }
        s.push(" ORDER BY active DESC, sev_rank, updated_at DESC LIMIT ")
            .bind(q.limit.unwrap_or(200).clamp(1, 1000));
        let rows = s.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows.iter().map(from_row).collect())
    }

    async fn alarm_row(&self, grant: &Grant, id: &str) -> AppResult<Alarm> {
        let scope = grant.scope_in(&[Action::AlarmRead, Action::AlarmHandle])?;
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM alarms WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?;
        match r.as_ref().map(from_row) {
            Some(a) if scope.covers(&a.path) => Ok(a),
            _ => Err(AppError::not_found("iot.alarm.not_found")),
        }
    }

    /// An alarm to act on (acknowledge, clear, assign, comment): the grant must be the one for
    /// `alarm_handle` (one for `alarm_read` finds the alarm but may not change it).
    async fn handled_alarm(&self, grant: &Grant, id: &str) -> AppResult<Alarm> {
        grant.scope(Action::AlarmHandle)?;
        self.alarm_row(grant, id).await
    }

    /// One alarm with its history (raised, notified, acknowledged …).
    pub async fn alarm(&self, grant: &Grant, id: &str) -> AppResult<AlarmView> {
        let alarm = self.alarm_row(grant, id).await?;
        let rows = sqlx::query(
            "SELECT at, kind, user_id, step, detail FROM alarm_events WHERE alarm_id = $1 ORDER BY at, id",
        )
        .bind(id.to_string())
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        let events = rows
            .iter()
            .map(|r| AlarmEvent {
                at: i64_(r, "at"),
                kind: str_(r, "kind"),
                user_id: opt_str(r, "user_id"),
                step: opt_i64(r, "step"),
                detail: str_(r, "detail"),
            })
            .collect();
        Ok(AlarmView { alarm, events })
    }

    /// Acknowledge: stops the escalation. Acknowledging twice is a conflict.
    pub async fn ack_alarm(&self, grant: &Grant, actor: &Actor, id: &str) -> AppResult<AlarmView> {
        self.alarm_step(
            grant,
            actor,
            id,
            "acked = 1, ack_at = $1, ack_by = $2",
            "acked = 0",
            (
                "iot.alarm.already_acked",
                "acknowledged",
                "alarm.ack",
                "alarm.updated",
            ),
        )
        .await
    }

    /// Clear by hand (the cause is gone). Clearing a cleared alarm is a conflict.
    pub async fn clear_alarm(
        &self,
        grant: &Grant,
        actor: &Actor,
        id: &str,
    ) -> AppResult<AlarmView> {
        self.alarm_step(
            grant,
            actor,
            id,
            "active = 0, cleared_at = $1, cleared_by = $2",
            "active = 1",
            (
                "iot.alarm.already_cleared",
                "cleared",
                "alarm.clear",
                "alarm.cleared",
            ),
        )
        .await
    }

    /// One step of an alarm by a person (acknowledge, clear): a conditional update that also
    /// stops the escalation, its event and audit entry, and the bus event after commit. `set`
    /// and `unless_done` are constant SQL fragments; `$1` is now and `$2` the actor.
    async fn alarm_step(
        &self,
        grant: &Grant,
        actor: &Actor,
        id: &str,
        set: &str,
        unless_done: &str,
        (conflict, event, audit_action, bus_kind): (&'static str, &str, &str, &str),
    ) -> AppResult<AlarmView> {
        let a = self.handled_alarm(grant, id).await?;
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let n = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE alarms SET {set}, updated_at = $1, next_esc_at = NULL WHERE id = $3 AND {unless_done}"
        )))
        .bind(now)
        .bind(actor.id.clone())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if n == 0 {
            return Err(AppError::conflict(conflict));
        }
        self.alarm_change(&mut tx, actor, &a, event, audit_action, "", now)
            .await?;
        tx.commit().await.map_err(db_err)?;
        self.publish_alarm(&a, bus_kind);
        self.alarm(grant, id).await
    }

    /// Assign to a user who may handle alarms there.
    pub async fn assign_alarm(
        &self,
        grant: &Grant,
        actor: &Actor,
        id: &str,
        user_id: &str,
    ) -> AppResult<AlarmView> {
        let a = self.handled_alarm(grant, id).await?;
        let assignee = self
            .principal(user_id)
            .await?
            .ok_or(AppError::not_found("iot.alarm.assignee_not_found"))?;
        if !assignee.may(Action::AlarmHandle, &a.path) {
            return Err(AppError::bad_request("iot.alarm.assignee_cannot_handle"));
        }
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query("UPDATE alarms SET assignee_id = $1, updated_at = $2 WHERE id = $3")
            .bind(user_id.to_string())
            .bind(now)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        self.alarm_change(&mut tx, actor, &a, "assigned", "alarm.assign", user_id, now)
            .await?;
        tx.commit().await.map_err(db_err)?;
        self.publish_alarm(&a, "alarm.updated");
        self.alarm(grant, id).await
    }

    pub async fn comment_alarm(
        &self,
        grant: &Grant,
        actor: &Actor,
        id: &str,
        text: &str,
    ) -> AppResult<AlarmView> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > 2000 {
            return Err(AppError::required("text"));
        }
        let a = self.handled_alarm(grant, id).await?;
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        self.alarm_change(&mut tx, actor, &a, "commented", "alarm.comment", text, now)
            .await?;
        tx.commit().await.map_err(db_err)?;
        self.publish_alarm(&a, "alarm.updated");
        self.alarm(grant, id).await
    }

    /// Record a report opened for an alarm (or the failure to open one).
    pub async fn alarm_report(&self, id: &str, report: Result<&str, &str>) -> AppResult<()> {
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        match report {
            Ok(rid) => {
                sqlx::query("UPDATE alarms SET report_id = $1 WHERE id = $2")
                    .bind(rid.to_string())
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                add_event(&mut tx, id, now, "report", None, None, rid).await?;
            }
            Err(why) => add_event(&mut tx, id, now, "report_failed", None, None, why).await?,
        }
        tx.commit().await.map_err(db_err)
    }

    #[allow(clippy::too_many_arguments)]
    async fn alarm_change(
        &self,
        tx: &mut Transaction<'static, Any>,
        actor: &Actor,
        a: &Alarm,
        event: &str,
        action: &str,
        detail: &str,
        now: i64,
    ) -> AppResult<()> {
        add_event(tx, &a.id, now, event, Some(&actor.id), None, detail).await?;
        self.audit(
            tx,
            actor,
            Entry {
                action,
                entity: "alarm",
                entity_id: &a.id,
                path: Some(&a.path),
                purpose: None,
                before: None,
                after: if detail.is_empty() {
                    None
                } else {
                    Some(serde_json::json!({ "detail": detail }))
                },
            },
        )
        .await?;
        Ok(())
    }

    fn publish_alarm(&self, a: &Alarm, kind: &str) {
        self.bus.publish(BusEvent {
            kind: kind.into(),
            path: a.path.clone(),
            id: a.id.clone(),
            users: vec![],
        });
    }
}

/// Whom an alarm concerns, for the people who answer it: the household of the person (an SOS
/// button) or of the home the device is in, its address, and — for callers who may read persons
/// there — its members with their masked phones and the person's SOS contacts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlarmHousehold {
    pub household_id: String,
    pub address: String,
    /// Empty when the caller may not read persons there.
    pub members: Vec<AlarmMember>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlarmMember {
    pub person_id: String,
    pub name: String,
    pub relation: String,
    pub phone_masked: Option<String>,
    /// The one the alarm is about (an SOS).
    pub concerned: bool,
}

impl Store {
    /// The household an alarm concerns, if any (see [`AlarmHousehold`]); the alarm must be
    /// inside the caller's alarm area.
    pub async fn alarm_household(
        &self,
        p: &Principal,
        id: &str,
    ) -> AppResult<Option<AlarmHousehold>> {
        let g = p.grant(Action::AlarmRead)?;
        let a = self.alarm_row(&g, id).await?;
        // The person's current home, else a household living at the alarm's place.
        let household = match &a.person_id {
            Some(pid) => self.person_path(pid).await?.map(|(h, _)| h),
            None => None,
        };
        let household = match household {
            Some(h) => Some(h),
            None => {
                let q = Sql::new("SELECT id FROM households WHERE path = $1 ORDER BY id LIMIT 1")
                    .arg(&a.path);
                self.db.fetch_optional_fast(&q).await?.map(|r| r.str("id"))
            }
        };
        let Some(hid) = household else {
            return Ok(None);
        };
        let Some(h) = self.household_row_unscoped(&hid).await? else {
            return Ok(None);
        };
        let members = if p.may(Action::PersonRead, &h.path) {
            let q = Sql::new(
                "SELECT p.id, p.name, p.phone_masked, r.relation FROM residences r JOIN persons p ON p.id = r.person_id WHERE r.household_id = $1 AND r.end_date IS NULL ORDER BY p.id",
            )
            .arg(&h.id);
            self.db
                .fetch_all_fast(&q)
                .await?
                .into_iter()
                .map(|mut r| {
                    let person_id = r.take_str("id").unwrap_or_default();
                    AlarmMember {
                        concerned: a.person_id.as_deref() == Some(person_id.as_str()),
                        person_id,
                        name: r.take_str("name").unwrap_or_default(),
                        relation: r.take_str("relation").unwrap_or_default(),
                        phone_masked: r.take_str("phone_masked"),
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Some(AlarmHousehold {
            household_id: h.id,
            address: self.address(&h.path).await?,
            members,
        }))
    }
}
