//! Alarm rules: defaults per device kind, overridable per place subtree (a building) or per
//! device. For a device, the most specific rule of each alarm type applies: device > the
//! deepest place containing it > the kind's default.

use serde::{Deserialize, Serialize};

use linli_core::auth::{Action, Grant};
use linli_core::iot::{Condition, EscalationStep, Op, RuleSpec, Severity, Trigger};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err, i64_, opt_str, str_};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rule {
    pub id: String,
    pub device_kind: String,
    /// Override for devices under this place.
    pub place_id: Option<String>,
    pub path: Option<String>,
    /// Override for one device.
    pub device_id: Option<String>,
    pub spec: RuleSpec,
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewRule {
    pub device_kind: String,
    #[serde(default)]
    pub place_id: Option<String>,
    #[serde(default)]
    pub device_id: Option<String>,
    pub spec: RuleSpec,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

fn from_row(r: &sqlx::any::AnyRow) -> Option<Rule> {
    Some(Rule {
        id: str_(r, "id"),
        device_kind: str_(r, "device_kind"),
        place_id: opt_str(r, "place_id"),
        path: opt_str(r, "path"),
        device_id: opt_str(r, "device_id"),
        spec: serde_json::from_str(&str_(r, "spec")).ok()?,
        enabled: i64_(r, "enabled") == 1,
    })
}

const COLS: &str = "id, device_kind, place_id, path, device_id, spec, enabled";

/// Which rules apply to a device: per alarm type the most specific one (disabled ones win too:
/// a disabled override switches the default off there).
pub fn applicable<'a>(rules: &'a [Rule], device_id: &str, kind: &str, path: &str) -> Vec<&'a Rule> {
    let mut best: Vec<(&'a Rule, usize)> = Vec::new();
    for r in rules.iter().filter(|r| r.device_kind == kind) {
        let rank = match (&r.device_id, &r.path) {
            (Some(d), _) if d == device_id => usize::MAX,
            (Some(_), _) => continue,
            (None, Some(p)) if path.starts_with(p.as_str()) => 1 + p.len(),
            (None, Some(_)) => continue,
            (None, None) => 0,
        };
        match best
            .iter_mut()
            .find(|(b, _)| b.spec.alarm_type == r.spec.alarm_type)
        {
            Some(slot) if slot.1 < rank => *slot = (r, rank),
            Some(_) => {}
            None => best.push((r, rank)),
        }
    }
    best.into_iter()
        .map(|(r, _)| r)
        .filter(|r| r.enabled)
        .collect()
}

fn cond(key: &str, op: Op, value: f64) -> Condition {
    Condition {
        key: key.into(),
        op,
        value,
        value2: None,
    }
}

/// The rules every installation starts with.
pub fn default_rules(zone: linli_core::tz::Zone) -> Vec<(&'static str, RuleSpec)> {
    use linli_core::auth::Role;
    let spec = |t: &str, sev, trigger| RuleSpec {
        alarm_type: t.into(),
        severity: sev,
        trigger,
        clear: None,
        schedule: None,
        escalation: vec![],
        open_report: None,
    };
    let now_then = vec![
        EscalationStep {
            after_ms: 0,
            roles: vec![Role::GridWorker],
        },
        EscalationStep {
            after_ms: 5 * 60_000,
            roles: vec![Role::CommitteeStaff],
        },
    ];
    vec![
        (
            "smoke",
            RuleSpec {
                escalation: now_then.clone(),
                ..spec(
                    "smoke",
                    Severity::Critical,
                    Trigger::Threshold {
                        condition: cond("smoke", Op::Gt, 0.5),
                        hold_ms: 0,
                        count: 1,
                    },
                )
            },
        ),
        (
            "smoke",
            spec(
                "offline",
                Severity::Warning,
                Trigger::NoData {
                    period_ms: 3_600_000,
                },
            ),
        ),
        (
            "water_leak",
            RuleSpec {
                escalation: now_then.clone(),
                ..spec(
                    "leak",
                    Severity::Major,
                    Trigger::Threshold {
                        condition: cond("leak", Op::Gt, 0.5),
                        hold_ms: 0,
                        count: 1,
                    },
                )
            },
        ),
        (
            "manhole",
            RuleSpec {
                escalation: now_then.clone(),
                open_report: Some("public_facility".into()),
                clear: Some(cond("tilt", Op::Lt, 5.0)),
                ..spec(
                    "cover_displaced",
                    Severity::Major,
                    Trigger::Threshold {
                        condition: cond("tilt", Op::Gt, 15.0),
                        hold_ms: 0,
                        count: 2,
                    },
                )
            },
        ),
        (
            "door",
            RuleSpec {
                schedule: Some(linli_core::iot::Schedule {
                    start_minute: 23 * 60,
                    end_minute: 5 * 60,
                    utc_offset_minutes: zone.offset_minutes(),
                }),
                ..spec(
                    "intrusion",
                    Severity::Minor,
                    Trigger::Threshold {
                        condition: cond("open", Op::Eq, 1.0),
                        hold_ms: 60_000,
                        count: 1,
                    },
                )
            },
        ),
        (
            "thermometer",
            spec(
                "fever",
                Severity::Warning,
                Trigger::Threshold {
                    condition: cond("temperature", Op::Gt, 37.3),
                    hold_ms: 0,
                    count: 1,
                },
            ),
        ),
        (
            "sos_button",
            spec(
                "offline",
                Severity::Warning,
                Trigger::NoData {
                    period_ms: 24 * 3_600_000,
                },
            ),
        ),
    ]
}

/// Bus event: alarm rules were added or changed; every instance's rule engine reloads them.
pub const RULES_CHANGED: &str = "iot.rules_changed";

impl Store {
    /// Insert the default rules once (idempotent). Rules have no natural unique key, so the
    /// "none yet" check is made under a transaction lock, inside the transaction that inserts:
    /// two instances seeding at once insert one set.
    pub async fn ensure_default_rules(&self) -> AppResult<()> {
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        self.db
            .lock_xact(&mut tx, "iot.default_rules")
            .await
            .map_err(db_err)?;
        let n = sqlx::query("SELECT COUNT(*) AS n FROM alarm_rules")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        if i64_(&n, "n") > 0 {
            return tx.rollback().await.map_err(db_err);
        }
        for (kind, spec) in default_rules(self.clock.zone()) {
            sqlx::query(
                "INSERT INTO alarm_rules (id, device_kind, alarm_type, spec, enabled, created_at) VALUES ($1, $2, $3, $4, 1, $5)",
            )
            .bind(new_id())
            .bind(kind.to_string())
            .bind(spec.alarm_type.clone())
            .bind(serde_json::to_string(&spec).unwrap_or_default())
            .bind(self.now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    /// Every rule (for the rule engine).
    pub async fn rules_all(&self) -> AppResult<Vec<Rule>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM alarm_rules ORDER BY created_at, id"
        )))
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().filter_map(from_row).collect())
    }

    /// The kind defaults plus the overrides inside the grant.
    pub async fn rules(&self, grant: &Grant) -> AppResult<Vec<Rule>> {
        let scope = grant.scope_in(&[Action::DeviceRead, Action::DeviceAdmin])?;
        let mut q = Sql::new(&format!(
            "SELECT {COLS} FROM alarm_rules WHERE path IS NULL AND device_id IS NULL OR "
        ));
        q.scope("path", scope.prefixes());
        q.push(" ORDER BY device_kind, created_at");
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows.iter().filter_map(from_row).collect())
    }

    /// Add a rule: a kind default (whole-tree administrators only) or an override for a place
    /// or a device inside the grant.
    pub async fn create_rule(&self, grant: &Grant, actor: &Actor, new: NewRule) -> AppResult<Rule> {
        let scope = grant.scope(Action::DeviceAdmin)?;
        if !linli_core::iot::valid_kind(&new.device_kind) {
            return Err(AppError::bad_request("iot.device.bad_kind").arg("kind", new.device_kind));
        }
        new.spec.validate()?;
        let (place_id, path) = match (&new.device_id, &new.place_id) {
            (Some(d), _) => {
                let dev = self.device(grant, d).await?;
                if dev.kind != new.device_kind {
                    return Err(
                        AppError::bad_request("iot.rule.invalid").arg("detail", "device_kind")
                    );
                }
                (Some(dev.place_id), Some(dev.path))
            }
            (None, Some(p)) => {
                let place = self.place(grant, p).await?;
                (Some(place.id), Some(place.path))
            }
            (None, None) => {
                if !scope.is_everywhere() {
                    return Err(AppError::forbidden());
                }
                (None, None)
            }
        };
        let id = new_id();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO alarm_rules (id, device_kind, place_id, path, device_id, alarm_type, spec, enabled, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id.clone())
        .bind(new.device_kind.clone())
        .bind(place_id.clone())
        .bind(path.clone())
        .bind(new.device_id.clone())
        .bind(new.spec.alarm_type.clone())
        .bind(serde_json::to_string(&new.spec).unwrap_or_default())
        .bind(i64::from(new.enabled))
        .bind(self.now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "rule.create",
                entity: "alarm_rule",
                entity_id: &id,
                path: path.as_deref(),
                purpose: None,
                before: None,
                after: Some(serde_json::to_value(&new.spec).unwrap_or_default()),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        // Every instance's rule engine reloads (through `LISTEN/NOTIFY` between processes).
        self.bus.publish(crate::bus::BusEvent {
            kind: RULES_CHANGED.into(),
            path: String::new(),
            id: id.clone(),
            users: Vec::new(),
        });
        Ok(Rule {
            id,
            device_kind: new.device_kind,
            place_id,
            path,
            device_id: new.device_id,
            spec: new.spec,
            enabled: new.enabled,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, t: &str, path: Option<&str>, dev: Option<&str>) -> Rule {
        Rule {
            id: id.into(),
            device_kind: "smoke".into(),
            place_id: None,
            path: path.map(str::to_string),
            device_id: dev.map(str::to_string),
            spec: RuleSpec {
                alarm_type: t.into(),
                ..default_rules(linli_core::tz::Zone::SHANGHAI)[0].1.clone()
            },
            enabled: true,
        }
    }

    #[test]
    fn most_specific_rule_wins() {
        let rules = vec![
            rule("default", "smoke", None, None),
            rule("building", "smoke", Some("/a/b/"), None),
            rule("other", "smoke", Some("/a/c/"), None),
            rule("device", "smoke", None, Some("d2")),
            rule("offline", "offline", None, None),
        ];
        let ids = |d: &str, p: &str| -> Vec<String> {
            applicable(&rules, d, "smoke", p)
                .iter()
                .map(|r| r.id.clone())
                .collect()
        };
        assert_eq!(ids("d1", "/a/b/r/"), ["building", "offline"]);
        assert_eq!(ids("d1", "/a/x/"), ["default", "offline"]);
        assert_eq!(ids("d2", "/a/b/r/"), ["device", "offline"]);
        assert!(applicable(&rules, "d1", "door", "/a/").is_empty());
        let mut off = rules.clone();
        off[1].enabled = false;
        assert_eq!(
            applicable(&off, "d1", "smoke", "/a/b/r/")
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            ["offline"]
        );
    }
}
