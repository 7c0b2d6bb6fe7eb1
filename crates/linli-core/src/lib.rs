//! Linli domain types and rules. No I/O here: everything is a pure function of its inputs,
//! so it can be unit-tested and reused by the store, the server and the CLI.

pub mod access;
pub mod alloc_meter;
pub mod auth;
pub mod celebrations;
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
pub mod tz;

pub use error::{AppError, AppResult, ErrorKind};

/// A new time-ordered identifier (UUIDv7) as text, portable across SQLite and PostgreSQL.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Now as milliseconds since the Unix epoch (UTC); all instants are stored this way. Read it
/// through the store's clock (`linli_store::Clock`, `Store::now_ms`), which tests move forward;
/// this function is that clock's source.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
pub mod demo;
pub mod import_rows;
pub mod sheet;

/// A boxed future, for functions the platform calls through a module's manifest.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
