//! Tables of the IoT module (migration 4): devices, telemetry, rules, alarms, SOS care chains.

use crate::db::{Migration, Stmt, Stmt::*};

/// The IoT module's migrations, in order.
pub static MIGRATIONS: &[Migration] = &[
    Migration {
        version: 4,
        name: "IoT devices, telemetry, rules, alarms, SOS",
        statements: V4,
    },
    Migration {
        version: 12,
        name: "household record: devices and alarms by person",
        statements: V12,
    },
    Migration {
        version: 13,
        name: "rule state shared by instances",
        statements: V13,
    },
];

/// The rule engine's counting state (points in a row, since when) per device and rule, so that
/// instances sharing a broker's messages count one device's points together. Only states that
/// are counting are kept; whether a rule's alarm is active is read from `alarms`.
const V13: &[Stmt] = &[Both(
    "CREATE TABLE iot_rule_state (
        device_id TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        since BIGINT,
        run BIGINT NOT NULL,
        PRIMARY KEY (device_id, rule_id))",
)];

/// The household record looks up devices and alarms by person.
const V12: &[Stmt] = &[
    Both("CREATE INDEX devices_person ON devices (person_id)"),
    Both("CREATE INDEX alarms_person ON alarms (person_id, active)"),
];

pub const V4: &[Stmt] = &[
    Both(
        "CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            place_id TEXT NOT NULL REFERENCES places(id),
            path {ptext} NOT NULL,
            person_id TEXT REFERENCES persons(id),
            token_hash TEXT NOT NULL UNIQUE,
            plan_x BIGINT,
            plan_y BIGINT,
            disabled BIGINT NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX devices_path ON devices (path)"),
    // One row per (device, ingest batch): the batch's points as compact JSON `[[ts,{..}],..]`.
    Both(
        "CREATE TABLE telemetry (
            id TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            t_min BIGINT NOT NULL,
            t_max BIGINT NOT NULL,
            n BIGINT NOT NULL,
            points TEXT NOT NULL,
            hourly BIGINT NOT NULL DEFAULT 0)",
    ),
    Both("CREATE INDEX telemetry_device ON telemetry (device_id, t_max)"),
    Both(
        "CREATE TABLE device_latest (
            device_id TEXT PRIMARY KEY,
            ts BIGINT NOT NULL,
            vals TEXT NOT NULL,
            seen_at BIGINT NOT NULL)",
    ),
    Both(
        "CREATE TABLE alarm_rules (
            id TEXT PRIMARY KEY,
            device_kind TEXT NOT NULL,
            place_id TEXT REFERENCES places(id),
            path {ptext},
            device_id TEXT REFERENCES devices(id),
            alarm_type TEXT NOT NULL,
            spec TEXT NOT NULL,
            enabled BIGINT NOT NULL DEFAULT 1,
            created_at BIGINT NOT NULL)",
    ),
    Both(
        "CREATE TABLE alarms (
            id TEXT PRIMARY KEY,
            originator TEXT NOT NULL,
            device_id TEXT REFERENCES devices(id),
            person_id TEXT REFERENCES persons(id),
            alarm_type TEXT NOT NULL,
            severity TEXT NOT NULL,
            sev_rank BIGINT NOT NULL,
            path {ptext} NOT NULL,
            place_id TEXT NOT NULL,
            active BIGINT NOT NULL,
            acked BIGINT NOT NULL DEFAULT 0,
            started_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            repeats BIGINT NOT NULL DEFAULT 0,
            details TEXT NOT NULL DEFAULT '{}',
            ack_at BIGINT,
            ack_by TEXT,
            cleared_at BIGINT,
            cleared_by TEXT,
            assignee_id TEXT REFERENCES users(id),
            rule_id TEXT,
            chain TEXT NOT NULL DEFAULT '[]',
            esc_step BIGINT NOT NULL DEFAULT 0,
            next_esc_at BIGINT,
            report_id TEXT)",
    ),
    // One active alarm per (originator, type).
    Both(
        "CREATE UNIQUE INDEX alarms_one_active ON alarms (originator, alarm_type) WHERE active = 1",
    ),
    Both("CREATE INDEX alarms_path ON alarms (path, active)"),
    Both("CREATE INDEX alarms_escalation ON alarms (next_esc_at)"),
    // What happened to an alarm, with time: raised, repeated, notified, acknowledged, cleared,
    // assigned, commented, report.
    Both(
        "CREATE TABLE alarm_events (
            id TEXT PRIMARY KEY,
            alarm_id TEXT NOT NULL REFERENCES alarms(id),
            at BIGINT NOT NULL,
            kind TEXT NOT NULL,
            user_id TEXT,
            step BIGINT,
            detail TEXT NOT NULL DEFAULT '')",
    ),
    Both("CREATE INDEX alarm_events_alarm ON alarm_events (alarm_id, at)"),
    // SOS 一键通: whom to call for a person, in order (family first).
    Both(
        "CREATE TABLE care_contacts (
            id TEXT PRIMARY KEY,
            person_id TEXT NOT NULL REFERENCES persons(id),
            contact_user_id TEXT NOT NULL REFERENCES users(id),
            relation TEXT NOT NULL DEFAULT '',
            ord BIGINT NOT NULL,
            created_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX care_contacts_person ON care_contacts (person_id, ord)"),
    Both(
        "CREATE TABLE checkins (
            person_id TEXT PRIMARY KEY REFERENCES persons(id),
            last_at BIGINT NOT NULL)",
    ),
];
