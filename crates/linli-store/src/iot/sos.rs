//! SOS 一键通 and elderly safety: a person's care chain (family contacts in order → the grid
//! worker(s) of their grid → community committee staff), SOS alarms that escalate along it
//! until someone acknowledges, and the daily check-in of people labelled 独居老人.

use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};

use linli_core::auth::{Action, Grant, Principal, Role};
use linli_core::iot::{RuleSpec, Schedule, Severity, Trigger};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::bus::BusEvent;
use crate::db::{db_err, i64_, opt_i64, opt_str, str_};
use crate::iot::alarms::{Chain, Raise, Tier, users_with_role_over};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CareContact {
    /// A user account (a family member's, a neighbour's, a clinic's) to call first, in order.
    pub user_id: String,
    #[serde(default)]
    pub relation: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SosResult {
    pub alarm_id: String,
    /// False when an SOS of this person was already active (it is updated, not duplicated).
    pub new: bool,
}

/// A care contact as staff see it.
#[derive(Debug, Clone, Serialize)]
pub struct NamedCareContact {
    pub user_id: String,
    pub display_name: String,
    pub relation: String,
}

/// What the resident who pressed SOS sees of it: who was told, whether somebody confirmed.
#[derive(Debug, Clone, Serialize)]
pub struct SosStatus {
    pub alarm_id: String,
    pub started_at: i64,
    pub active: bool,
    pub acked: bool,
    pub ack_at: Option<i64>,
    /// The display name of who confirmed (a family member, the grid worker …).
    pub ack_by: Option<String>,
    pub cleared_at: Option<i64>,
    /// Who was told so far, by group (`family`, `grid`, `committee`) in the order they were told.
    pub told: Vec<ToldGroup>,
    /// The person has care contacts (family first); without, the grid worker is told first.
    pub has_contacts: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ToldGroup {
    pub group: String,
    pub names: Vec<String>,
}

/// How long after it started the resident's SOS page still shows an SOS (acknowledged or cleared).
const SOS_SHOWN_MS: i64 = 24 * 3_600_000;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckinResult {
    pub at: i64,
}

/// Settings of the SOS and check-in logic.
#[derive(Debug, Clone, Copy)]
pub struct SafetyConfig {
    /// Minutes between escalation tiers and repeats of an unacknowledged SOS.
    pub sos_repeat_ms: i64,
    /// Local minute of the day (in the store clock's time zone) by which 独居老人 must have
    /// checked in (e.g. 10:00 = 600).
    pub checkin_deadline_minute: u32,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        SafetyConfig {
            sos_repeat_ms: 5 * 60_000,
            checkin_deadline_minute: 10 * 60,
        }
    }
}

impl Store {
    /// Replace a person's care contacts (order = call order).
    pub async fn set_care_contacts(
        &self,
        grant: &Grant,
        actor: &Actor,
        person_id: &str,
        contacts: &[CareContact],
    ) -> AppResult<Vec<CareContact>> {
        let (_, path) = self
            .person_home(person_id)
            .await?
            .filter(|(_, p)| grant.allows(Action::PersonWrite, p))
            .ok_or(AppError::not_found("registry.person.not_found"))?;
        if contacts.len() > 10 {
            return Err(AppError::bad_request("iot.care.too_many"));
        }
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        // Replacements of the same person's list queue on the person's row: each deletes what
        // the one before wrote, so the list never holds two replacements at once (nor more than
        // ten contacts).
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM persons WHERE id = $1{}",
            self.backend().for_update()
        )))
        .bind(person_id.to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("DELETE FROM care_contacts WHERE person_id = $1")
            .bind(person_id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for (i, c) in contacts.iter().enumerate() {
            let ok = sqlx::query("SELECT id FROM users WHERE id = $1 AND disabled = 0")
                .bind(c.user_id.clone())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            if ok.is_none() {
                return Err(AppError::not_found("iot.care.user_not_found"));
            }
            sqlx::query(
                "INSERT INTO care_contacts (id, person_id, contact_user_id, relation, ord, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(new_id())
            .bind(person_id.to_string())
            .bind(c.user_id.clone())
            .bind(c.relation.chars().take(50).collect::<String>())
            .bind(i as i64)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "care.contacts",
                entity: "person",
                entity_id: person_id,
                path: Some(&path),
                purpose: None,
                before: None,
                after: Some(serde_json::to_value(contacts).unwrap_or_default()),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.care_contacts_of(person_id).await
    }

    /// A person's care contacts, for staff who may read the person (not found otherwise).
    pub async fn care_contacts(
        &self,
        grant: &Grant,
        person_id: &str,
    ) -> AppResult<Vec<CareContact>> {
        let scope = grant.scope(Action::PersonRead)?;
        match self.person_home(person_id).await? {
            Some((_, path)) if scope.covers(&path) => self.care_contacts_of(person_id).await,
            _ => Err(AppError::not_found("registry.person.not_found")),
        }
    }

    /// A person's care contacts with the accounts' names (never their login or phone), for
    /// staff who may read the person (not found otherwise).
    pub async fn care_contacts_named(
        &self,
        grant: &Grant,
        person_id: &str,
    ) -> AppResult<Vec<NamedCareContact>> {
        let scope = grant.scope(Action::PersonRead)?;
        match self.person_home(person_id).await? {
            Some((_, path)) if scope.covers(&path) => {}
            _ => return Err(AppError::not_found("registry.person.not_found")),
        }
        let rows = sqlx::query(
            "SELECT c.contact_user_id, c.relation, u.display_name FROM care_contacts c \
             JOIN users u ON u.id = c.contact_user_id WHERE c.person_id = $1 ORDER BY c.ord",
        )
        .bind(person_id.to_string())
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| NamedCareContact {
                user_id: str_(r, "contact_user_id"),
                display_name: str_(r, "display_name"),
                relation: str_(r, "relation"),
            })
            .collect())
    }

    /// The account a worker names to add as a care contact: its login name or the mobile
    /// number it signs in with (a family member anywhere). Only for those who may change the
    /// person's contacts; the answer is the account's id and name, or none.
    pub async fn care_contact_candidate(
        &self,
        grant: &Grant,
        person_id: &str,
        who: &str,
    ) -> AppResult<Option<(String, String)>> {
        self.person_home(person_id)
            .await?
            .filter(|(_, p)| grant.allows(Action::PersonWrite, p))
            .ok_or(AppError::not_found("registry.person.not_found"))?;
        let who = who.trim();
        // Not a mobile number: matched by login alone (NULL never equals a phone index).
        let bidx =
            linli_core::phone::parse_mobile(who).map(|m| self.cipher.blind_index("phone", &m));
        let row = sqlx::query(
            "SELECT id, display_name FROM users WHERE disabled = 0 AND (login = $1 OR phone_bidx = $2)",
        )
        .bind(who.to_ascii_lowercase())
        .bind(bidx)
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(row.map(|r| (str_(&r, "id"), str_(&r, "display_name"))))
    }

    pub(crate) async fn care_contacts_of(&self, person_id: &str) -> AppResult<Vec<CareContact>> {
        let rows = sqlx::query(
            "SELECT contact_user_id, relation FROM care_contacts WHERE person_id = $1 ORDER BY ord",
        )
        .bind(person_id.to_string())
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| CareContact {
                user_id: str_(r, "contact_user_id"),
                relation: str_(r, "relation"),
            })
            .collect())
    }

    /// The room (id, path) a person currently lives in.
    pub(crate) async fn person_home(&self, person_id: &str) -> AppResult<Option<(String, String)>> {
        let r = sqlx::query(
            "SELECT h.room_id, h.path FROM residences r JOIN households h ON h.id = r.household_id
             WHERE r.person_id = $1 AND r.end_date IS NULL",
        )
        .bind(person_id.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(r.map(|r| (str_(&r, "room_id"), str_(&r, "path"))))
    }

    async fn care_chain(
        &self,
        tx: &mut Transaction<'static, Any>,
        person_id: Option<&str>,
        path: &str,
        step_ms: i64,
    ) -> AppResult<Chain> {
        let family: Vec<String> = match person_id {
            Some(person_id) => sqlx::query(
                "SELECT contact_user_id FROM care_contacts WHERE person_id = $1 ORDER BY ord",
            )
            .bind(person_id.to_string())
            .fetch_all(&mut **tx)
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| str_(r, "contact_user_id"))
            .collect(),
            None => Vec::new(),
        };
        let grid = users_with_role_over(tx, &Role::GridWorker, path).await?;
        let committee = users_with_role_over(tx, &Role::CommitteeStaff, path).await?;
        let mut tiers = Vec::new();
        for (label, users) in [("family", family), ("grid", grid), ("committee", committee)] {
            if !users.is_empty() {
                let delay_ms = if tiers.is_empty() { 0 } else { step_ms };
                tiers.push(Tier {
                    label: label.into(),
                    users,
                    delay_ms,
                });
            }
        }
        Ok(Chain {
            tiers,
            repeat_ms: Some(step_ms),
        })
    }

    /// Raise (or repeat) the CRITICAL SOS alarm of a person — from the resident page's
    /// 一键呼叫 button or an SOS button device — and tell the first tier of their care chain.
    ///
    /// A button raises its person's SOS only while the person lives in the button's area
    /// (`person_of_area`): a button whose person moved away, or one that names someone of
    /// another community, raises the SOS of the button's own place instead — its area's grid
    /// workers and committee are called, never another community's, and the alarm is not lost.
    pub async fn raise_sos(
        &self,
        person_id: &str,
        device_id: Option<&str>,
        source: &str,
        cfg: &SafetyConfig,
    ) -> AppResult<SosResult> {
        let home = self.person_home(person_id).await?;
        let (person, room_id, path) = match device_id {
            Some(d) => {
                let dev = sqlx::query("SELECT place_id, path FROM devices WHERE id = $1")
                    .bind(d.to_string())
                    .fetch_optional(&self.db.read)
                    .await
                    .map_err(db_err)?
                    .ok_or(AppError::not_found("iot.device.not_found"))?;
                let (dev_place, dev_path) = (str_(&dev, "place_id"), str_(&dev, "path"));
                let area = self.area_of(&dev_path).await?;
                match home {
                    Some((room, path)) if path.starts_with(area.as_str()) => {
                        (Some(person_id), room, path)
                    }
                    _ => {
                        tracing::warn!(
                            device = d,
                            "SOS button names a person who does not live in its area; raised for its place"
                        );
                        (None, dev_place, dev_path)
                    }
                }
            }
            None => {
                let (room, path) = home.ok_or(AppError::not_found("iot.sos.no_home"))?;
                (Some(person_id), room, path)
            }
        };
        let originator = person.or(device_id).unwrap_or(person_id).to_string();
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let chain = self
            .care_chain(&mut tx, person, &path, cfg.sos_repeat_ms)
            .await?;
        let (id, new) = self
            .raise_alarm(
                &mut tx,
                &Raise {
                    originator,
                    device_id: device_id.map(str::to_string),
                    person_id: person.map(str::to_string),
                    alarm_type: "sos".into(),
                    severity: Severity::Critical,
                    path: path.clone(),
                    place_id: room_id,
                    details: serde_json::json!({ "source": source }),
                    rule_id: None,
                    chain,
                    notice_kind: "alarm.sos",
                },
                now,
            )
            .await?;
        tx.commit().await.map_err(db_err)?;
        self.bus.publish(BusEvent {
            kind: if new { "alarm.raised" } else { "alarm.updated" }.into(),
            path,
            id: id.clone(),
            users: vec![],
        });
        self.publish_alarm_inbox(&id, now).await?;
        Ok(SosResult { alarm_id: id, new })
    }

    /// The latest SOS of the signed-in resident's own person (of the last 24 hours): only their
    /// own, found through their account, so no id from outside can name another's.
    pub async fn own_sos_status(&self, p: &Principal) -> AppResult<Option<SosStatus>> {
        let Some(person) = self.own_person_id(p).await? else {
            return Ok(None);
        };
        let since = self.now_ms() - SOS_SHOWN_MS;
        let Some(a) = sqlx::query(
            "SELECT a.id, a.started_at, a.active, a.acked, a.ack_at, a.cleared_at, u.display_name AS ack_name \
             FROM alarms a LEFT JOIN users u ON u.id = a.ack_by \
             WHERE a.person_id = $1 AND a.alarm_type = 'sos' AND a.started_at >= $2 \
             ORDER BY a.started_at DESC LIMIT 1",
        )
        .bind(person.clone())
        .bind(since)
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?
        else {
            return Ok(None);
        };
        let alarm_id = str_(&a, "id");
        let rows = sqlx::query(
            "SELECT e.detail, u.display_name FROM alarm_events e JOIN users u ON u.id = e.user_id \
             WHERE e.alarm_id = $1 AND e.kind = 'notified' ORDER BY e.at, e.id",
        )
        .bind(alarm_id.clone())
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        let mut told: Vec<ToldGroup> = Vec::new();
        for r in &rows {
            let (group, name) = (str_(r, "detail"), str_(r, "display_name"));
            match told.iter_mut().find(|g| g.group == group) {
                Some(g) if g.names.contains(&name) => {}
                Some(g) => g.names.push(name),
                None => told.push(ToldGroup {
                    group,
                    names: vec![name],
                }),
            }
        }
        let has_contacts =
            sqlx::query("SELECT 1 AS one FROM care_contacts WHERE person_id = $1 LIMIT 1")
                .bind(person)
                .fetch_optional(&self.db.read)
                .await
                .map_err(db_err)?
                .is_some();
        Ok(Some(SosStatus {
            alarm_id,
            started_at: i64_(&a, "started_at"),
            active: i64_(&a, "active") == 1,
            acked: i64_(&a, "acked") == 1,
            ack_at: opt_i64(&a, "ack_at"),
            ack_by: opt_str(&a, "ack_name"),
            cleared_at: opt_i64(&a, "cleared_at"),
            told,
            has_contacts,
        }))
    }

    /// Record today's check-in of a person; clears a missed-check-in alarm.
    pub async fn checkin(&self, person_id: &str) -> AppResult<CheckinResult> {
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO checkins (person_id, last_at) VALUES ($1, $2) ON CONFLICT (person_id) DO UPDATE SET last_at = excluded.last_at",
        )
        .bind(person_id.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let cleared = self
            .clear_alarm_by_rule(&mut tx, person_id, "checkin_missed", now)
            .await?;
        tx.commit().await.map_err(db_err)?;
        if let Some((id, path)) = cleared {
            self.bus.publish(BusEvent {
                kind: "alarm.cleared".into(),
                path,
                id,
                users: vec![],
            });
        }
        Ok(CheckinResult { at: now })
    }

    /// The no-data rule over daily check-ins: every person labelled 独居老人 who checks in
    /// (has checked in at least once) and has not checked in today by the deadline gets a
    /// MAJOR `checkin_missed` alarm told to their care chain. Returns the alarms raised.
    pub async fn missed_checkins(&self, cfg: &SafetyConfig) -> AppResult<Vec<String>> {
        let now = self.now_ms();
        let zone = self.clock.zone();
        let local_midnight = zone.start_of_day(now);
        let rule = RuleSpec {
            alarm_type: "checkin_missed".into(),
            severity: Severity::Major,
            trigger: Trigger::NoData {
                period_ms: (now - local_midnight).max(1_000),
            },
            clear: None,
            schedule: Some(Schedule {
                start_minute: cfg.checkin_deadline_minute,
                end_minute: 1440,
                utc_offset_minutes: zone.offset_minutes(),
            }),
            escalation: vec![],
            open_report: None,
        };
        let rows = sqlx::query(
            "SELECT c.person_id, c.last_at FROM checkins c
             JOIN person_labels pl ON pl.person_id = c.person_id
             JOIN labels l ON l.id = pl.label_id
             WHERE l.code = 'elderly_alone' AND c.last_at < $1
               AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.originator = c.person_id AND a.alarm_type = 'checkin_missed' AND a.active = 1)",
        )
        .bind(local_midnight)
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        let mut raised = Vec::new();
        for r in rows {
            let person = str_(&r, "person_id");
            if !linli_core::iot::silent(&rule, i64_(&r, "last_at"), now) {
                continue;
            }
            let Some((room_id, path)) = self.person_home(&person).await? else {
                continue;
            };
            let mut tx = self.db.begin_write().await.map_err(db_err)?;
            let chain = self
                .care_chain(&mut tx, Some(&person), &path, cfg.sos_repeat_ms)
                .await?;
            let (id, new) = self
                .raise_alarm(
                    &mut tx,
                    &Raise {
                        originator: person.clone(),
                        device_id: None,
                        person_id: Some(person.clone()),
                        alarm_type: rule.alarm_type.clone(),
                        severity: rule.severity,
                        path: path.clone(),
                        place_id: room_id,
                        details: serde_json::json!({ "last_checkin": i64_(&r, "last_at") }),
                        rule_id: None,
                        chain,
                        notice_kind: "alarm.raised",
                    },
                    now,
                )
                .await?;
            tx.commit().await.map_err(db_err)?;
            if new {
                self.bus.publish(BusEvent {
                    kind: "alarm.raised".into(),
                    path,
                    id: id.clone(),
                    users: vec![],
                });
                self.publish_alarm_inbox(&id, now).await?;
                raised.push(id);
            }
        }
        Ok(raised)
    }
}
