//! The rule engine's state where every instance sees it. With an external broker's shared
//! subscription, one device's messages are split between the instances (the broker picks a
//! subscriber per message), so "N points in a row", "held for M minutes" and "is this rule's
//! alarm active" cannot live in one process: a batch locks its devices (PostgreSQL: an advisory
//! lock per device, taken in one sorted order so two batches never wait on each other in a
//! circle; SQLite: the one writer), reads their state, decides, and writes it back in the same
//! transaction as the telemetry and alarms.

use std::collections::{BTreeSet, HashMap};

use sqlx::{Any, Row, Transaction};

use linli_core::AppResult;
use linli_core::iot::RuleState;

use crate::Backend;
use crate::db::{Sql, db_err};

/// (device id, rule id) → state.
pub type States = HashMap<(String, String), RuleState>;

/// At most this many devices per statement.
const CHUNK: usize = 500;

/// Serialize the work on `devices` with every other transaction that locks them, until this
/// transaction ends. The keys are sorted, so lock order is the same everywhere (no deadlock).
pub async fn lock_devices(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    devices: &BTreeSet<String>,
) -> AppResult<()> {
    if backend != Backend::Postgres || devices.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<i64> = devices
        .iter()
        .map(|d| crate::db::lock_key(&format!("iot.device:{d}")))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    for chunk in keys.chunks(CHUNK) {
        // A VALUES list is scanned in the order written: the locks are taken in sorted order.
        // The keys are integers computed here, never outside input.
        let values: Vec<String> = chunk.iter().map(|k| format!("({k})")).collect();
        let sql = format!(
            "SELECT pg_advisory_xact_lock(k) FROM (VALUES {}) AS v(k)",
            values.join(", ")
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut **tx)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

/// The state of every (device, rule) of `devices`: counting state from `iot_rule_state`,
/// `active` from the rules' active alarms. Pairs not listed are at rest (the default).
pub async fn load(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    devices: &BTreeSet<String>,
) -> AppResult<States> {
    let mut out = States::new();
    let ids: Vec<String> = devices.iter().cloned().collect();
    for chunk in ids.chunks(CHUNK) {
        let mut q = Sql::new("SELECT device_id, rule_id, since, run FROM iot_rule_state WHERE ");
        q.in_list(backend, "device_id", chunk);
        for r in q.query().fetch_all(&mut **tx).await.map_err(db_err)? {
            let st = out
                .entry((r.get::<String, _>(0), r.get::<String, _>(1)))
                .or_default();
            st.since = r.get::<Option<i64>, _>(2);
            st.run = u32::try_from(r.get::<i64, _>(3)).unwrap_or(u32::MAX);
        }
        let mut q = Sql::new(
            "SELECT originator, rule_id FROM alarms WHERE active = 1 AND rule_id IS NOT NULL AND ",
        );
        q.in_list(backend, "originator", chunk);
        for r in q.query().fetch_all(&mut **tx).await.map_err(db_err)? {
            out.entry((r.get::<String, _>(0), r.get::<String, _>(1)))
                .or_default()
                .active = true;
        }
    }
    Ok(out)
}

/// Write back the counting state of the pairs that changed since [`load`]: a pair at rest (or
/// whose alarm is active, which needs no count) is deleted, others are upserted.
pub async fn save(
    tx: &mut Transaction<'static, Any>,
    before: &States,
    after: &States,
) -> AppResult<()> {
    let mut keys: Vec<&(String, String)> = after
        .iter()
        .filter(|(k, v)| {
            let old = before.get(*k).cloned().unwrap_or_default();
            (old.since, old.run) != (v.since, v.run)
        })
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    for (device, rule) in keys {
        let st = &after[&(device.clone(), rule.clone())];
        if st.run == 0 && st.since.is_none() {
            sqlx::query("DELETE FROM iot_rule_state WHERE device_id = $1 AND rule_id = $2")
                .bind(device.clone())
                .bind(rule.clone())
                .execute(&mut **tx)
                .await
                .map_err(db_err)?;
        } else {
            sqlx::query(
                "INSERT INTO iot_rule_state (device_id, rule_id, since, run) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (device_id, rule_id) DO UPDATE SET since = excluded.since, run = excluded.run",
            )
            .bind(device.clone())
            .bind(rule.clone())
            .bind(st.since)
            .bind(i64::from(st.run))
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        }
    }
    Ok(())
}
