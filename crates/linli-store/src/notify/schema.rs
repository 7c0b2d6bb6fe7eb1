//! Tables of the notifications module (migration 3).

use crate::db::{Migration, Stmt, Stmt::*};

/// The notifications module's migrations, in order.
pub static MIGRATIONS: &[Migration] = &[
    Migration {
        version: 3,
        name: "notifications inbox",
        statements: V3,
    },
    Migration {
        version: 7,
        name: "notifications: follows, channels, webhooks, outbox",
        statements: V7,
    },
];

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

/// Migration 7: follows, per-user channels, outbound webhooks and the durable delivery outbox.
pub const V7: &[Stmt] = &[
    Both(
        "CREATE TABLE follows (
            user_id TEXT NOT NULL REFERENCES users(id),
            entity TEXT NOT NULL,
            entity_id TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (user_id, entity, entity_id))",
    ),
    Both("CREATE INDEX follows_entity ON follows (entity, entity_id)"),
    Both(
        "CREATE TABLE user_channels (
            user_id TEXT PRIMARY KEY REFERENCES users(id),
            email TEXT,
            email_enabled BIGINT NOT NULL DEFAULT 0,
            muted TEXT NOT NULL DEFAULT '',
            updated_at BIGINT NOT NULL)",
    ),
    Both(
        "CREATE TABLE webhooks (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            url TEXT NOT NULL,
            secret_enc TEXT NOT NULL,
            place_id TEXT NOT NULL REFERENCES places(id),
            path {ptext} NOT NULL,
            kinds TEXT NOT NULL DEFAULT '',
            active BIGINT NOT NULL DEFAULT 1,
            created_by TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            deleted_at BIGINT)",
    ),
    Both("CREATE INDEX webhooks_path ON webhooks (path)"),
    Both(
        "CREATE TABLE outbox (
            id TEXT PRIMARY KEY,
            channel TEXT NOT NULL,
            webhook_id TEXT REFERENCES webhooks(id),
            user_id TEXT REFERENCES users(id),
            target TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts BIGINT NOT NULL DEFAULT 0,
            next_at BIGINT NOT NULL,
            last_status BIGINT,
            last_error TEXT,
            created_at BIGINT NOT NULL,
            delivered_at BIGINT)",
    ),
    Both("CREATE INDEX outbox_due ON outbox (status, next_at)"),
    Both("CREATE INDEX outbox_webhook ON outbox (webhook_id, created_at)"),
];
