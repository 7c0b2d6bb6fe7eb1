//! The celebrations module's tables.

use crate::db::{Migration, Stmt, Stmt::*};

pub static MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "celebrations and congratulations",
    statements: V1,
}];

const V1: &[Stmt] = &[
    // `path` is the household's place (scope of the poster's household); `community_path` is
    // where the post may be seen.
    Both(
        "CREATE TABLE celebrations (
            id TEXT PRIMARY KEY,
            household_id TEXT NOT NULL REFERENCES households(id),
            path {ptext} NOT NULL,
            community_path {ptext} NOT NULL,
            kind TEXT NOT NULL,
            title TEXT NOT NULL,
            message TEXT NOT NULL,
            created_by TEXT REFERENCES users(id),
            created_at BIGINT NOT NULL,
            congratulations BIGINT NOT NULL DEFAULT 0,
            hidden_at BIGINT,
            hidden_by TEXT)",
    ),
    Both("CREATE INDEX celebrations_community ON celebrations (community_path, created_at)"),
    Both("CREATE INDEX celebrations_household ON celebrations (household_id, created_at)"),
    // One congratulation per person and post.
    Both(
        "CREATE TABLE congratulations (
            celebration_id TEXT NOT NULL REFERENCES celebrations(id),
            user_id TEXT NOT NULL REFERENCES users(id),
            created_at BIGINT NOT NULL,
            PRIMARY KEY (celebration_id, user_id))",
    ),
];
