//! The schema, as one ordered list of migrations for both backends. Append, never edit.
//!
//! Conventions: ids are UUIDv7 text; instants are BIGINT milliseconds (UTC); calendar dates are
//! `YYYY-MM-DD` text; flags are BIGINT 0/1; money is BIGINT fen. `path` columns hold the
//! materialized place path (`/id/id/…/`) and use a byte-ordered collation so a subtree is a range.
//!
//! Each capability keeps its own statements next to its code (e.g. `reports::schema::V2`) and
//! adds one `Migration` here. Versions are reserved so modules built in parallel do not collide:
//! 2 reports, 3 notifications (inbox, webhooks, e-mail), 4 IoT (devices, telemetry, alarms),
//! 5 access (gates, vehicles, visitor passes), 6 jobs (durable background work), 8 repairs
//! (assignee, dispatch modes, quotes), 9 report surface (Open311 contacts, geo, paging),
//! 10 registry search (household path on residences, covering indexes), 11 unit visibility of
//! reports (summons by unit), 12 the household record's lookups by person.

use crate::db::{Migration, Stmt, Stmt::*};

pub static ALL: &[Migration] = &[
    Migration {
        version: 1,
        name: "core registry, accounts, audit",
        statements: V1,
    },
    Migration {
        version: 2,
        name: "reports: catalogue, calendar, reports and their events",
        statements: crate::reports::schema::V2,
    },
    Migration {
        version: 3,
        name: "notifications inbox",
        statements: crate::notify::schema::V3,
    },
    Migration {
        version: 7,
        name: "notifications: follows, channels, webhooks, outbox",
        statements: crate::notify::schema::V7,
    },
    Migration {
        version: 5,
        name: "access: gates, records, vehicles, visitor passes",
        statements: crate::access::schema::V5,
    },
    Migration {
        version: 4,
        name: "IoT devices, telemetry, rules, alarms, SOS",
        statements: crate::iot::schema::V4,
    },
    Migration {
        version: 8,
        name: "repairs: assignee, dispatch settings, price quote, round-robin cursors",
        statements: crate::reports::schema::V8,
    },
    Migration {
        version: 10,
        name: "registry: covering indexes for person search",
        statements: V10,
    },
    Migration {
        version: 9,
        name: "reports: Open311 contacts, map areas of places, community list keyset index",
        statements: crate::reports::schema_v9::V9,
    },
    Migration {
        version: 11,
        name: "reports: summoned units looked up by unit (unit staff visibility)",
        statements: crate::reports::schema::V11,
    },
    Migration {
        version: 12,
        name: "household record: devices, alarms and gate passages by person",
        statements: V12,
    },
];

/// Person search by label or by place. A current residence carries its household's path
/// (`hpath`; paths never change), so "the people of a building" is one range of one index and "the
/// holders of a label, by address" is two index lookups per holder — instead of a walk through
/// households and one more lookup per row. The label index covers the holder's id too.
const V10: &[Stmt] = &[
    Both("CREATE INDEX person_labels_label_person ON person_labels (label_id, person_id)"),
    Both("DROP INDEX person_labels_label"),
    Both("ALTER TABLE residences ADD COLUMN hpath {ptext}"),
    Both(
        "UPDATE residences SET hpath = (SELECT h.path FROM households h WHERE h.id = residences.household_id)",
    ),
    // `end_date` last: as a first column, `end_date IS NULL` would look like a selective equality to
    // SQLite's planner and lure every residence join onto this index.
    Both("CREATE INDEX residences_current_by_path ON residences (hpath, person_id, end_date)"),
    Both("CREATE INDEX residences_person_path ON residences (person_id, end_date, hpath)"),
];

const V1: &[Stmt] = &[
    Both("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)"),
    Both(
        "CREATE TABLE places (
            id TEXT PRIMARY KEY,
            parent_id TEXT REFERENCES places(id),
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            code TEXT,
            path {ptext} NOT NULL UNIQUE,
            area_x100 BIGINT,
            room_use TEXT,
            plan TEXT,
            sort_key BIGINT NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX places_parent ON places (parent_id, sort_key, name)"),
    Both("CREATE INDEX places_kind_name ON places (kind, name)"),
    Both(
        "CREATE TABLE orgs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            place_id TEXT NOT NULL REFERENCES places(id),
            path {ptext} NOT NULL,
            categories TEXT NOT NULL DEFAULT '[]',
            created_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX orgs_path ON orgs (path)"),
    Both(
        "CREATE TABLE org_serves (
            org_id TEXT NOT NULL REFERENCES orgs(id),
            place_id TEXT NOT NULL REFERENCES places(id),
            PRIMARY KEY (org_id, place_id))",
    ),
    Both(
        "CREATE TABLE labels (
            id TEXT PRIMARY KEY,
            parent_id TEXT REFERENCES labels(id),
            code TEXT NOT NULL UNIQUE,
            name_zh TEXT NOT NULL UNIQUE,
            name_en TEXT NOT NULL,
            sensitive BIGINT NOT NULL DEFAULT 0,
            sort_key BIGINT NOT NULL DEFAULT 0)",
    ),
    Both(
        "CREATE TABLE households (
            id TEXT PRIMARY KEY,
            room_id TEXT NOT NULL REFERENCES places(id),
            path {ptext} NOT NULL,
            tenure TEXT NOT NULL,
            head_person_id TEXT,
            moved_in TEXT,
            note TEXT NOT NULL DEFAULT '',
            version BIGINT NOT NULL DEFAULT 1,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX households_path ON households (path)"),
    Both("CREATE INDEX households_room ON households (room_id)"),
    Both(
        "CREATE TABLE persons (
            id TEXT PRIMARY KEY,
            name {ptext} NOT NULL,
            gender TEXT NOT NULL,
            birth_year BIGINT NOT NULL,
            id_enc TEXT NOT NULL,
            id_bidx TEXT NOT NULL UNIQUE,
            id_masked TEXT NOT NULL,
            phone_enc TEXT,
            phone_bidx TEXT,
            phone_masked TEXT,
            version BIGINT NOT NULL DEFAULT 1,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX persons_phone ON persons (phone_bidx)"),
    Both("CREATE INDEX persons_name ON persons (name)"),
    Both(
        "CREATE TABLE residences (
            id TEXT PRIMARY KEY,
            household_id TEXT NOT NULL REFERENCES households(id),
            person_id TEXT NOT NULL REFERENCES persons(id),
            relation TEXT NOT NULL,
            start_date TEXT NOT NULL,
            end_date TEXT,
            end_reason TEXT,
            created_at BIGINT NOT NULL)",
    ),
    // A person lives in at most one household at a time; past residences are kept.
    Both("CREATE UNIQUE INDEX residences_current ON residences (person_id) WHERE end_date IS NULL"),
    Both("CREATE INDEX residences_household ON residences (household_id)"),
    Both(
        "CREATE TABLE person_labels (
            person_id TEXT NOT NULL REFERENCES persons(id),
            label_id TEXT NOT NULL REFERENCES labels(id),
            PRIMARY KEY (person_id, label_id))",
    ),
    Both("CREATE INDEX person_labels_label ON person_labels (label_id)"),
    Both(
        "CREATE TABLE users (
            id TEXT PRIMARY KEY,
            login TEXT NOT NULL UNIQUE,
            phone_bidx TEXT UNIQUE,
            display_name TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            person_id TEXT REFERENCES persons(id),
            disabled BIGINT NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL)",
    ),
    Both(
        "CREATE TABLE role_bindings (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id),
            role TEXT NOT NULL,
            place_id TEXT REFERENCES places(id),
            org_id TEXT REFERENCES orgs(id),
            household_id TEXT REFERENCES households(id),
            created_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX role_bindings_user ON role_bindings (user_id)"),
    Both(
        "CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id),
            csrf TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL)",
    ),
    Both(
        "CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            user_id TEXT NOT NULL REFERENCES users(id),
            name TEXT NOT NULL,
            actions TEXT NOT NULL,
            place_id TEXT NOT NULL REFERENCES places(id),
            path {ptext} NOT NULL,
            expires_at BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            revoked_at BIGINT)",
    ),
    Both(
        "CREATE TABLE corrections (
            id TEXT PRIMARY KEY,
            household_id TEXT NOT NULL REFERENCES households(id),
            path {ptext} NOT NULL,
            person_id TEXT REFERENCES persons(id),
            field TEXT NOT NULL,
            new_value TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL,
            submitted_by TEXT NOT NULL REFERENCES users(id),
            decided_by TEXT REFERENCES users(id),
            decided_at BIGINT,
            decision_note TEXT,
            created_at BIGINT NOT NULL)",
    ),
    Both("CREATE INDEX corrections_path ON corrections (path, status)"),
    Both(
        "CREATE TABLE audit_log (
            seq BIGINT PRIMARY KEY,
            at BIGINT NOT NULL,
            actor_id TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            entity TEXT NOT NULL,
            entity_id TEXT NOT NULL,
            path {ptext},
            purpose TEXT,
            before_json TEXT,
            after_json TEXT,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL)",
    ),
    Both("CREATE INDEX audit_entity ON audit_log (entity, entity_id)"),
    Both("CREATE INDEX audit_path ON audit_log (path)"),
    Both(
        "CREATE TABLE audit_head (id BIGINT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
    ),
    Both(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000')",
    ),
    // The audit log is append-only: the database itself refuses edits and deletions.
    Sqlite(
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    ),
    Sqlite(
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    ),
    Postgres(
        "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
    ),
    Postgres(
        "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
    ),
];

/// The household record (一户一表) looks up devices, alarms and gate passages by person.
const V12: &[Stmt] = &[
    Both("CREATE INDEX devices_person ON devices (person_id)"),
    Both("CREATE INDEX alarms_person ON alarms (person_id, active)"),
    Both("CREATE INDEX access_records_person ON access_records (person_id, at)"),
];
