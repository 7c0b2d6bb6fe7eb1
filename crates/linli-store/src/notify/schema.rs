//! Tables of the notifications module (migration 3).

use crate::db::{Stmt, Stmt::*};

pub const V3: &[Stmt] = &[
    Both(
        "CREATE TABLE notifications (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id),
            kind TEXT NOT NULL,
            msg_key TEXT NOT NULL,
            args TEXT NOT NULL,
            entity TEXT NOT NULL,
            entity_id TEXT NOT NULL,
            path {ptext},
            link TEXT,
            created_at BIGINT NOT NULL,
            read_at BIGINT)",
    ),
    Both("CREATE INDEX notifications_user ON notifications (user_id, created_at)"),
    Both("CREATE INDEX notifications_entity ON notifications (entity, entity_id)"),
];
