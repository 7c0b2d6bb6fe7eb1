//! The registry's own migrations (its first tables are in the platform's migration 1).

use crate::db::{Migration, Stmt, Stmt::*};

pub static MIGRATIONS: &[Migration] = &[Migration {
    version: 10,
    name: "registry: covering indexes for person search",
    statements: V10,
}];

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
