//! Linli domain types and rules. No I/O here: everything is a pure function of its inputs,
//! so it can be unit-tested and reused by the store, the server and the CLI.

pub mod access;
pub mod alloc_meter;
pub mod auth;
pub mod crypto;
pub mod division;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod geo;
pub mod i18n;
pub mod idcard;
pub mod iot;
pub mod password;
pub mod phone;
pub mod reports;

pub use error::{AppError, AppResult, ErrorKind};

/// A new time-ordered identifier (UUIDv7) as text, portable across SQLite and PostgreSQL.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Now as milliseconds since the Unix epoch (UTC); all instants are stored this way.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
pub mod demo;
pub mod import_rows;
pub mod sheet;
