//! Tables of the access module (migration 5): gates, access records, alerts, the plate
//! blacklist, residents' vehicles, visitor passes and their verification attempts.

use crate::db::{Migration, Stmt, Stmt::*};

/// The access module's migrations, in order.
pub static MIGRATIONS: &[Migration] = &[
    Migration {
        version: 5,
        name: "access: gates, records, vehicles, visitor passes",
        statements: V5,
    },
    Migration {
        version: 12,
        name: "household record: gate passages by person",
        statements: V12,
    },
];

/// The household record looks up gate passages by person.
const V12: &[Stmt] = &[Both(
    "CREATE INDEX access_records_person ON access_records (person_id, at)",
)];

pub const V5: &[Stmt] = &[
    // A gate: a pedestrian face terminal or a vehicle barrier at a community or building
    // entrance. `device_id` is the IoT registry's id (no foreign key: that table belongs to
    // the IoT module).
    Both(
        "CREATE TABLE gates (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            place_id TEXT NOT NULL REFERENCES places(id),
            path {ptext} NOT NULL,
            kind TEXT NOT NULL,
            device_id TEXT,
            active BIGINT NOT NULL DEFAULT 1,
            version BIGINT NOT NULL DEFAULT 1,
            created_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX gates_path ON gates (path)"),
    Both(
        "CREATE TABLE access_records (
            id TEXT PRIMARY KEY,
            gate_id TEXT NOT NULL REFERENCES gates(id),
            path {ptext} NOT NULL,
            direction TEXT NOT NULL,
            subject TEXT NOT NULL,
            person_id TEXT REFERENCES persons(id),
            plate TEXT,
            vehicle TEXT,
            temp_x10 BIGINT,
            fever BIGINT NOT NULL DEFAULT 0,
            photo_ref TEXT,
            pass_id TEXT,
            at BIGINT NOT NULL,
            created_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX access_records_path ON access_records (path, at)"),
    Both("CREATE INDEX access_records_gate ON access_records (gate_id, at)"),
    Both(
        "CREATE TABLE access_alerts (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            severity TEXT NOT NULL,
            path {ptext} NOT NULL,
            details TEXT NOT NULL,
            created_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX access_alerts_path ON access_alerts (path, created_at)"),
    Both(
        "CREATE TABLE plate_blacklist (
            id TEXT PRIMARY KEY,
            plate TEXT NOT NULL,
            place_id TEXT NOT NULL REFERENCES places(id),
            path {ptext} NOT NULL,
            reason TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at BIGINT NOT NULL)",
    ),
    Both("CREATE UNIQUE INDEX plate_blacklist_plate ON plate_blacklist (plate, place_id)"),
    Both(
        "CREATE TABLE vehicles (
            id TEXT PRIMARY KEY,
            household_id TEXT NOT NULL REFERENCES households(id),
            path {ptext} NOT NULL,
            plate TEXT NOT NULL UNIQUE,
            created_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX vehicles_household ON vehicles (household_id)"),
    Both(
        "CREATE TABLE visitor_passes (
            id TEXT PRIMARY KEY,
            household_id TEXT NOT NULL REFERENCES households(id),
            path {ptext} NOT NULL,
            community_path {ptext} NOT NULL,
            visitor_name TEXT NOT NULL,
            phone_enc TEXT NOT NULL,
            phone_masked TEXT NOT NULL,
            plate TEXT,
            valid_from BIGINT NOT NULL,
            valid_until BIGINT NOT NULL,
            multi_use BIGINT NOT NULL,
            uses BIGINT NOT NULL DEFAULT 0,
            last_used_at BIGINT,
            revoked_at BIGINT,
            created_by TEXT NOT NULL,
            created_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX visitor_passes_household ON visitor_passes (household_id, created_at)"),
    Both("CREATE INDEX visitor_passes_path ON visitor_passes (path)"),
    Both("CREATE INDEX visitor_passes_plate ON visitor_passes (plate)"),
    Both(
        "CREATE TABLE pass_checks (
            id TEXT PRIMARY KEY,
            pass_id TEXT NOT NULL REFERENCES visitor_passes(id),
            gate_id TEXT NOT NULL REFERENCES gates(id),
            path {ptext} NOT NULL,
            result TEXT NOT NULL,
            at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX pass_checks_pass ON pass_checks (pass_id, at)"),
];
