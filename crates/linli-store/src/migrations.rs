//! The platform's own schema (accounts, audit, the place tree and the registry's first tables)
//! and the bookkeeping of every module's migrations.
//!
//! Each module keeps its migrations next to its code (`reports::schema::MIGRATIONS`) and lists
//! them in its manifest; the store runs them module by module in the platform's order, each
//! module's versions counting on their own (`module_migrations (module, version)`). Append to
//! a module's list, never edit a migration that has shipped.
//!
//! Conventions: ids are UUIDv7 text; instants are BIGINT milliseconds (UTC); calendar dates are
//! `YYYY-MM-DD` text; flags are BIGINT 0/1; money is BIGINT fen. `path` columns hold the
//! materialized place path (`/id/id/…/`) and use a byte-ordered collation so a subtree is a range.

use sqlx::{Any, Executor, Row, Transaction};

use crate::db::{Migration, Stmt, Stmt::*};

/// The platform's migrations (module `platform`).
pub static PLATFORM: &[Migration] = &[
    Migration {
        version: 1,
        name: "core registry, accounts, audit",
        statements: V1,
    },
    Migration {
        version: 2,
        name: "custom roles",
        statements: ROLES,
    },
    Migration {
        version: 3,
        name: "state shared by instances: job leases, login throttling, form tokens",
        statements: crate::cluster::SHARED_STATE,
    },
];

/// Custom roles an administrator composed from actions (built-in templates live in code).
/// A role is defined at a place and can be bound inside its subtree only.
const ROLES: &[Stmt] = &[Both(
    "CREATE TABLE roles (
        id TEXT PRIMARY KEY,
        code TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        place_id TEXT NOT NULL REFERENCES places(id),
        path {ptext} NOT NULL,
        actions TEXT NOT NULL,
        based_on TEXT,
        version BIGINT NOT NULL,
        created_by TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL)",
)];

/// Before migrations were counted per module, one global list numbered them 1–12. A database
/// of that time has `schema_migrations`; its versions are adopted once as the modules' own.
const LEGACY: &[(i64, &[(&str, i64)])] = &[
    (1, &[("platform", 1)]),
    (2, &[("reports", 2)]),
    (3, &[("notify", 3)]),
    (4, &[("iot", 4)]),
    (5, &[("access", 5)]),
    (7, &[("notify", 7)]),
    (8, &[("reports", 8)]),
    (9, &[("reports", 9)]),
    (10, &[("registry", 10)]),
    (11, &[("reports", 11)]),
    (12, &[("iot", 12), ("access", 12)]),
];

/// Adopt a pre-module database's versions (once: only while `module_migrations` is empty).
pub(crate) async fn adopt_legacy_versions(
    tx: &mut Transaction<'static, Any>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let adopted: i64 = sqlx::query("SELECT COUNT(*) FROM module_migrations")
        .fetch_one(&mut **tx)
        .await?
        .get(0);
    if adopted > 0 {
        return Ok(());
    }
    // The legacy table exists on old databases only; create it empty so the read is portable.
    tx.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let old: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect();
    for v in old {
        for (module, version) in LEGACY
            .iter()
            .filter(|(o, _)| *o == v)
            .flat_map(|(_, to)| to.iter())
        {
            sqlx::query(
                "INSERT INTO module_migrations (module, version, name, applied_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(*module)
            .bind(*version)
            .bind("adopted from schema_migrations")
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

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
