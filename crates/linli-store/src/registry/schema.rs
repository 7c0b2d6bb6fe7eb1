//! The registry's own migrations (its first tables are in the platform's migration 1).

use crate::db::{Migration, Stmt, Stmt::*};

pub static MIGRATIONS: &[Migration] = &[
    Migration {
        version: 10,
        name: "registry: covering indexes for person search",
        statements: V10,
    },
    Migration {
        version: 11,
        name: "registry: records of one person in several communities, and their links",
        statements: V11,
    },
];

/// Identity linking across communities (issue #13 round 2, finding 2; `registry/links.rs`).
///
/// A community that registers someone whose ID number another community's record holds gets a
/// record of its own: `persons.id_bidx` (unique) keeps the first record's blind index, a later
/// record holds `local:<its id>` there and the ID's blind index in `id_key`; search by ID looks
/// in both. `person_links` asks the earlier record's community to confirm that it is the same
/// person; only then does the new record receive the earlier one's phone and labels.
const V11: &[Stmt] = &[
    Both("ALTER TABLE persons ADD COLUMN id_key TEXT"),
    Both("CREATE INDEX persons_id_key ON persons (id_key) WHERE id_key IS NOT NULL"),
    Both(
        "CREATE TABLE person_links (
            id TEXT PRIMARY KEY,
            from_person_id TEXT NOT NULL REFERENCES persons(id),
            from_path {ptext} NOT NULL,
            to_person_id TEXT NOT NULL REFERENCES persons(id),
            to_path {ptext} NOT NULL,
            status TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            requested_at BIGINT NOT NULL,
            decided_by TEXT,
            decided_at BIGINT,
            note TEXT)",
    ),
    Both("CREATE INDEX person_links_from ON person_links (from_path, status)"),
    Both(
        "CREATE UNIQUE INDEX person_links_pending ON person_links (to_person_id) WHERE status = 'pending'",
    ),
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
