//! Gates, vehicles and visitor passes (门禁、车辆、访客通行证).
//!
//! - `gates`: gates (face terminals, vehicle barriers) at community or building entrances.
//! - `vehicles`: residents' registered vehicles.
//! - `blacklist`: the plate blacklist.
//! - `settings`: the fever threshold.
//! - `records`: access records sent by gate terminals, fever and blacklist alarms (through an
//!   [`AccessAlarmSink`]), listing and per-gate per-hour statistics.
//! - `passes`: visitor passes with signed tokens; verification at the gate.
//!
//! Scope: gates, records, alerts and blacklist entries carry the place path of their gate or
//! place; vehicles and passes the path of their household's room, passes also the path of the
//! community they are valid in.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use sqlx::{Any, Transaction};

use linli_core::access::parse_plate;
use linli_core::{AppError, AppResult};

use crate::Store;
use crate::bus::BusEvent;
use crate::db::db_err;
use crate::notify::Notice;

pub mod blacklist;
pub(crate) mod demo;
pub mod gates;
pub mod passes;
pub mod record;
pub mod records;
pub mod schema;
pub mod settings;
pub mod vehicles;

/// A field with a value the module does not accept.
pub(crate) fn bad(field: &str) -> AppError {
    AppError::bad_request("validation.bad_value").arg("field", field)
}

/// A required text field, trimmed, at most `max` characters.
pub(crate) fn check_text(field: &str, v: &str, max: usize) -> AppResult<String> {
    let t = v.trim();
    if t.is_empty() {
        return Err(AppError::required(field));
    }
    if t.chars().count() > max {
        return Err(AppError::bad_request("validation.too_long").arg("field", field));
    }
    Ok(t.to_string())
}

/// A licence plate in its canonical form.
pub(crate) fn plate(v: &str) -> AppResult<String> {
    parse_plate(v).ok_or(AppError::bad_request("access.plate.invalid"))
}

/// One alarm raised by the access module: a fever reading or a blacklisted plate at a gate.
#[derive(Debug, Clone)]
pub struct AccessAlarm {
    /// `fever` or `blacklist`.
    pub kind: &'static str,
    /// `major` (fever) or `critical` (blacklisted plate).
    pub severity: &'static str,
    /// The gate's place path.
    pub path: String,
    /// What happened: gate, record, temperature or plate, reason.
    pub details: Value,
}

/// Where access alarms go. Raised inside the transaction that stores the access record, so an
/// alarm exists exactly when its record does; the events returned are published after commit.
/// The IoT module (`iot`) can implement this to turn access alarms into alarms with a lifecycle;
/// [`BuiltinAlarmSink`] works on its own.
pub trait AccessAlarmSink: Send + Sync {
    fn raise<'a>(
        &'a self,
        store: &'a Store,
        tx: &'a mut Transaction<'static, Any>,
        alarm: &'a AccessAlarm,
    ) -> Pin<Box<dyn Future<Output = AppResult<Vec<BusEvent>>> + Send + 'a>>;
}

/// Writes an `access_alerts` row, puts a notice into the inbox of the committee and property
/// staff whose area holds the gate, and asks for an `access.alert` event (plus `inbox` events).
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinAlarmSink;

impl AccessAlarmSink for BuiltinAlarmSink {
    fn raise<'a>(
        &'a self,
        store: &'a Store,
        tx: &'a mut Transaction<'static, Any>,
        alarm: &'a AccessAlarm,
    ) -> Pin<Box<dyn Future<Output = AppResult<Vec<BusEvent>>> + Send + 'a>> {
        Box::pin(async move {
            let id = linli_core::new_id();
            sqlx::query(
                "INSERT INTO access_alerts (id, kind, severity, path, details, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id.clone())
            .bind(alarm.kind)
            .bind(alarm.severity)
            .bind(alarm.path.clone())
            .bind(alarm.details.to_string())
            .bind(store.now_ms())
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
            let recipients = store.staff_covering(tx, &alarm.path).await?;
            let key = match alarm.kind {
                "fever" => "notice-access-fever",
                _ => "notice-access-blacklist",
            };
            let mut args = alarm.details.clone();
            if let Some(t) = args.get("temperature_x10").and_then(Value::as_i64) {
                args["temperature"] = Value::from(linli_core::access::format_x10(t));
            }
            store
                .notify(
                    tx,
                    &recipients,
                    &Notice {
                        kind: if alarm.kind == "fever" {
                            "access.fever"
                        } else {
                            "access.blacklist"
                        },
                        key,
                        args,
                        entity: "access_alert",
                        entity_id: &id,
                        path: Some(&alarm.path),
                        link: Some("/staff/access"),
                    },
                )
                .await?;
            let mut events = vec![BusEvent {
                kind: "access.alert".into(),
                path: alarm.path.clone(),
                id: id.clone(),
                users: Vec::new(),
            }];
            if !recipients.is_empty() {
                events.push(BusEvent {
                    kind: "inbox".into(),
                    path: String::new(),
                    id,
                    users: recipients,
                });
            }
            Ok(events)
        })
    }
}

/// Roles told about access alarms of a place.
const ALARM_ROLES: &str = "('committee_staff', 'property_staff')";

impl Store {
    /// Enabled accounts with a committee or property binding whose area holds `path` (directly
    /// bound to a place above it, or through a property company serving such a place).
    pub(crate) async fn staff_covering(
        &self,
        tx: &mut Transaction<'static, Any>,
        path: &str,
    ) -> AppResult<Vec<String>> {
        let sql = format!(
            "SELECT DISTINCT rb.user_id FROM role_bindings rb
               JOIN places p ON p.id = rb.place_id
               JOIN users u ON u.id = rb.user_id
              WHERE rb.role IN {ALARM_ROLES} AND u.disabled = 0
                AND substr($1, 1, length(p.path)) = p.path
             UNION
             SELECT DISTINCT rb.user_id FROM role_bindings rb
               JOIN org_serves os ON os.org_id = rb.org_id
               JOIN places p ON p.id = os.place_id
               JOIN users u ON u.id = rb.user_id
              WHERE rb.role IN {ALARM_ROLES} AND u.disabled = 0
                AND substr($2, 1, length(p.path)) = p.path"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(path.to_string())
            .bind(path.to_string())
            .fetch_all(&mut **tx)
            .await
            .map_err(db_err)?;
        let mut out: Vec<String> = rows.iter().map(|r| crate::db::str_(r, "user_id")).collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The path of the community that holds `path` (itself when it is one).
    pub(crate) async fn community_of(&self, path: &str) -> AppResult<Option<String>> {
        let r = sqlx::query(
            "SELECT path FROM places WHERE kind = 'community' AND substr($1, 1, length(path)) = path",
        )
        .bind(path.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(r.map(|r| crate::db::str_(&r, "path")))
    }
}
