//! Connection pools, the SQL dialect seam, and the one migration path for both backends.
//!
//! All SQL is written once with `$n` placeholders (SQLite accepts them too) and portable types
//! (TEXT, BIGINT). The few dialect differences — column collation, the append-only audit trigger,
//! migration locking — live in [`Backend`] and in [`Stmt`] variants, nowhere else.

use std::time::Duration;

use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};

use linli_core::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Suffix of a SELECT that claims rows for one worker: other workers skip them (PostgreSQL);
    /// SQLite has one writer, whose `BEGIN IMMEDIATE` transaction already excludes the others.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Suffix of a SELECT inside a write transaction that locks the rows it reads until the
    /// transaction ends (PostgreSQL), so that a count or check made under it still holds when
    /// the transaction writes; SQLite's `BEGIN IMMEDIATE` already holds the one write lock.
    /// Limits per parent row (photos per report, contacts per person) are counted under the
    /// parent's lock.
    pub fn for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// An aggregate joining text values with commas.
    pub fn concat_agg(self, expr: &str) -> String {
        match self {
            Backend::Sqlite => format!("group_concat({expr}, ',')"),
            Backend::Postgres => format!("string_agg({expr}, ',')"),
        }
    }
}

/// Two pools: on SQLite all writes go through one connection (SQLite has one writer anyway;
/// queuing in-process avoids busy errors), reads use several. On PostgreSQL both are the same pool.
#[derive(Clone, Debug)]
pub struct Db {
    pub read: AnyPool,
    pub write: AnyPool,
    pub backend: Backend,
    /// The connection URL (PostgreSQL `LISTEN` needs a connection of its own).
    pub url: String,
    /// Native SQLite read connections for the fast read path (`db_fast.rs`); None on PostgreSQL.
    pub(crate) fast: Option<std::sync::Arc<crate::db_fast::SqliteReaders>>,
}

#[derive(Debug, Clone)]
pub struct DbConfig {
    pub url: String,
    pub max_connections: u32,
    /// SQLite `synchronous`: FULL (default, a commit survives power loss) or NORMAL.
    pub sqlite_synchronous: String,
}

impl Db {
    pub async fn connect(cfg: &DbConfig) -> Result<Db, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let backend = if cfg.url.starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        match backend {
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(cfg.max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(10))
                    // A ping before every acquire doubled the round trips of short reads; a
                    // connection that died is replaced when its query fails, and none lives
                    // longer than half an hour.
                    .test_before_acquire(false)
                    .max_lifetime(Duration::from_secs(30 * 60))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // Linli's working set (places, households, residences) is small
                            // and hot: index probes cost about what sequential reads do, so
                            // the planner walks the few label holders' residences by index
                            // instead of scanning a community's (4.6 ms → 1.8 ms).
                            conn.execute("SET random_page_cost = 1.1").await?;
                            // An instance frozen inside a transaction (a stopped process, a
                            // VM paused) would hold its row and advisory locks until its TCP
                            // connection times out — minutes — and stall every other
                            // instance's writes to the same rows. No Linli transaction waits
                            // that long between statements: the server ends such a session.
                            conn.execute("SET idle_in_transaction_session_timeout = '15s'")
                                .await?;
                            Ok(())
                        })
                    })
                    .connect(&cfg.url)
                    .await?;
                Ok(Db {
                    read: pool.clone(),
                    write: pool,
                    backend,
                    url: cfg.url.clone(),
                    fast: None,
                })
            }
            Backend::Sqlite => {
                let sync = match cfg.sqlite_synchronous.to_ascii_uppercase().as_str() {
                    "NORMAL" => "NORMAL",
                    _ => "FULL",
                };
                let pragmas: &'static str = if sync == "NORMAL" {
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000; PRAGMA cache_size=-16000; PRAGMA mmap_size=268435456; PRAGMA temp_store=MEMORY;"
                } else {
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000; PRAGMA cache_size=-16000; PRAGMA mmap_size=268435456; PRAGMA temp_store=MEMORY;"
                };
                let opts = |n: u32| {
                    AnyPoolOptions::new()
                        .max_connections(n)
                        .min_connections(1)
                        // A connection to a local file does not go stale; the test is a round
                        // trip to the connection's worker thread on every acquire.
                        .test_before_acquire(false)
                        .acquire_timeout(Duration::from_secs(30))
                        .after_connect(move |conn, _| {
                            Box::pin(async move {
                                conn.execute(pragmas).await?;
                                Ok(())
                            })
                        })
                };
                let write = opts(1).connect(&cfg.url).await?;
                let read = opts(cfg.max_connections.max(2)).connect(&cfg.url).await?;
                let fast = crate::db_fast::SqliteReaders::for_url(
                    &cfg.url,
                    cfg.max_connections.max(2) as usize,
                )
                .map(std::sync::Arc::new);
                Ok(Db {
                    read,
                    write,
                    backend,
                    url: cfg.url.clone(),
                    fast,
                })
            }
        }
    }

    /// Start a write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`),
    /// so a transaction that reads before it writes cannot fail half-way when another process
    /// (a CLI import next to the server) wrote in between; it waits for the lock instead.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.write.begin().await,
        }
    }

    /// Serialize `name`'s work with every other transaction that takes the same lock, until
    /// this transaction ends (PostgreSQL: a transaction-scoped advisory lock; SQLite: the
    /// `BEGIN IMMEDIATE` write lock is already exclusive). For one-time work without a natural
    /// unique key (seeding default rules): lock, re-read inside, then write.
    pub async fn lock_xact(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        name: &str,
    ) -> Result<(), sqlx::Error> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock_key(name))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Bring the query planner's statistics (and the visibility map) up to date after a bulk
    /// write (demo seeding, an import). PostgreSQL plans from sampled statistics: right after thousands of rows arrive
    /// (before autovacuum's next round, if it runs at all) it believes tables hold a few dozen
    /// rows and walks whole communities for an exact ID — 15 ms instead of 0.08 ms. SQLite
    /// plans without statistics here (the query shapes fix the join order), so nothing is done.
    pub async fn refresh_statistics(&self, tables: &[&str]) -> Result<(), sqlx::Error> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        // Table names are the caller's constants, never outside input; none: every table.
        // VACUUM as well: it marks the pages all-visible, so the covering indexes answer alone
        // (index-only scans) instead of visiting every row's page too (a label's holders:
        // 2.4 ms → 1.2 ms).
        let list = tables.join(", ");
        sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM (ANALYZE) {list}")))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Run `work` while holding `name`'s lock across transactions (PostgreSQL: a session
    /// advisory lock on a connection of its own, released afterwards; SQLite: nothing — one
    /// writer, and each of `work`'s transactions is exclusive). Several instances starting at
    /// once run such work one after the other, each seeing what the one before wrote.
    pub async fn with_session_lock<T>(
        &self,
        name: &str,
        work: impl std::future::Future<Output = Result<T, AppError>>,
    ) -> Result<T, AppError> {
        if self.backend != Backend::Postgres {
            return work.await;
        }
        let mut conn = self.write.acquire().await.map_err(db_err)?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(lock_key(name))
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        let out = work.await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(lock_key(name))
            .execute(&mut *conn)
            .await;
        if unlocked.is_err() {
            // The lock goes with the connection: do not hand it back to the pool.
            let _ = conn.detach();
        }
        out
    }

    /// Run all pending migrations of every module, module by module in the platform's order
    /// (idempotent; safe with several processes starting at once). Versions count per module,
    /// so modules built in parallel never collide; `module_migrations` records what ran.
    /// `now_ms` (the store's clock) is recorded as their time.
    pub async fn migrate(
        &self,
        schema: &[crate::platform::ModuleSchema],
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            tx.execute("SELECT pg_advisory_xact_lock(424242)").await?;
        }
        tx.execute(
            "CREATE TABLE IF NOT EXISTS module_migrations (module TEXT NOT NULL, version BIGINT NOT NULL, name TEXT NOT NULL, applied_at BIGINT NOT NULL, PRIMARY KEY (module, version))",
        )
        .await?;
        crate::migrations::adopt_legacy_versions(&mut tx, now_ms).await?;
        let done: Vec<(String, i64)> = sqlx::query("SELECT module, version FROM module_migrations")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
            .collect();
        for part in schema {
            for m in part.migrations {
                if done
                    .iter()
                    .any(|(module, v)| module == part.module && *v == m.version)
                {
                    continue;
                }
                tracing::info!(
                    module = part.module,
                    version = m.version,
                    name = m.name,
                    "applying migration"
                );
                for stmt in m.statements {
                    if let Some(sql) = stmt.for_backend(self.backend) {
                        tx.execute(AssertSqlSafe(sql)).await?;
                    }
                }
                sqlx::query(
                    "INSERT INTO module_migrations (module, version, name, applied_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(part.module)
                .bind(m.version)
                .bind(m.name)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await
    }
}

/// A stable advisory-lock key for a name (FNV-1a, 64 bits; the migration lock is 424242).
pub(crate) fn lock_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// A migration statement: portable, or one variant per backend.
pub enum Stmt {
    /// Portable SQL; `{ptext}` becomes a byte-ordered text type (paths are compared by range).
    Both(&'static str),
    Sqlite(&'static str),
    Postgres(&'static str),
}

impl Stmt {
    fn for_backend(&self, backend: Backend) -> Option<String> {
        match (self, backend) {
            (Stmt::Both(s), Backend::Sqlite) => Some(s.replace("{ptext}", "TEXT")),
            (Stmt::Both(s), Backend::Postgres) => Some(s.replace("{ptext}", "TEXT COLLATE \"C\"")),
            (Stmt::Sqlite(s), Backend::Sqlite) | (Stmt::Postgres(s), Backend::Postgres) => {
                Some(s.to_string())
            }
            _ => None,
        }
    }
}

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub statements: &'static [Stmt],
}

/// A bound value for dynamically assembled queries.
#[derive(Debug, Clone)]
pub enum Val {
    Text(String),
    Int(i64),
    NullText,
    NullInt,
}

impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::Text(s.to_string())
    }
}
impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::Text(s)
    }
}
impl From<&String> for Val {
    fn from(s: &String) -> Self {
        Val::Text(s.clone())
    }
}
impl From<i64> for Val {
    fn from(i: i64) -> Self {
        Val::Int(i)
    }
}
impl From<Option<String>> for Val {
    fn from(s: Option<String>) -> Self {
        s.map(Val::Text).unwrap_or(Val::NullText)
    }
}
impl From<Option<i64>> for Val {
    fn from(i: Option<i64>) -> Self {
        i.map(Val::Int).unwrap_or(Val::NullInt)
    }
}

/// Builds SQL with numbered placeholders from trusted fragments; values are always bound.
#[derive(Debug, Default)]
pub struct Sql {
    pub text: String,
    pub vals: Vec<Val>,
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            vals: Vec::new(),
        }
    }
    /// The value of the next `$n` of a statement written out in full:
    /// `Sql::new("SELECT … WHERE id = $1").arg(id)`.
    pub fn arg(mut self, v: impl Into<Val>) -> Self {
        self.vals.push(v.into());
        self
    }
    /// Append a trusted SQL fragment.
    pub fn push(&mut self, fragment: &str) -> &mut Self {
        self.text.push_str(fragment);
        self
    }
    /// Append a placeholder bound to `v`.
    pub fn bind(&mut self, v: impl Into<Val>) -> &mut Self {
        self.vals.push(v.into());
        self.text.push('$');
        self.text.push_str(&self.vals.len().to_string());
        self
    }
    /// `column IN (…items)`. On PostgreSQL one parameter,
    /// `column = ANY(string_to_array($n, chr(31)))`: the statement's text, hence its prepared
    /// statement, is the same for any number of items, and it plans three times faster than
    /// fifty placeholders (a search page: 1.15 → 0.37 ms). SQLite: the list of placeholders.
    /// `items` must not be empty.
    pub fn in_list(&mut self, backend: Backend, column: &str, items: &[String]) -> &mut Self {
        self.push(column);
        if backend == Backend::Postgres && items.iter().all(|x| !x.contains('\u{1f}')) {
            self.push(" = ANY(string_to_array(");
            self.bind(items.join("\u{1f}"));
            self.push(", chr(31)))")
        } else {
            self.push(" IN (").bind_list(items).push(")")
        }
    }

    /// Placeholders `$a, $b, …` bound to `items` (the inside of an `IN (…)`).
    pub fn bind_list(&mut self, items: &[String]) -> &mut Self {
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(x.clone());
        }
        self
    }
    /// `(col >= lo AND col < hi) OR …` for every granted subtree: index-friendly prefix match.
    pub fn scope(&mut self, column: &str, prefixes: &[String]) -> &mut Self {
        self.push("(");
        for (i, p) in prefixes.iter().enumerate() {
            if i > 0 {
                self.push(" OR ");
            }
            self.push("(").push(column).push(" >= ").bind(p.clone());
            self.push(" AND ")
                .push(column)
                .push(" < ")
                .bind(prefix_upper_bound(p))
                .push(")");
        }
        if prefixes.is_empty() {
            self.push("1 = 0");
        }
        self.push(")");
        self
    }
    pub fn query(&self) -> sqlx::query::Query<'static, sqlx::Any, AnyArguments> {
        let mut q = sqlx::query(AssertSqlSafe(self.text.clone()));
        for v in &self.vals {
            q = match v {
                Val::Text(s) => q.bind(s.clone()),
                Val::Int(i) => q.bind(*i),
                Val::NullText => q.bind(None::<String>),
                Val::NullInt => q.bind(None::<i64>),
            };
        }
        q
    }
}

/// The smallest string greater than every string starting with `prefix` (paths end in '/').
pub fn prefix_upper_bound(prefix: &str) -> String {
    let mut s = prefix.to_string();
    match s.pop() {
        Some(c) => {
            s.push(char::from_u32(c as u32 + 1).unwrap_or(char::MAX));
            s
        }
        None => "\u{10FFFF}".to_string(),
    }
}

/// Map a database error to an `AppError`, logging the detail (never sent to the client).
pub fn db_err(e: sqlx::Error) -> AppError {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        return AppError::conflict("conflict");
    }
    tracing::error!(error = %e, "database error");
    AppError::internal()
}

/// Column getters shared by the driver's rows and the fast path's rows, so that a row mapper
/// (e.g. `report_from_row`) is written once and serves reads on either path.
pub trait Cols {
    fn col_opt_str(&self, col: &str) -> Option<String>;
    fn col_opt_i64(&self, col: &str) -> Option<i64>;
    fn col_str(&self, col: &str) -> String {
        self.col_opt_str(col).unwrap_or_default()
    }
    fn col_i64(&self, col: &str) -> i64 {
        self.col_opt_i64(col).unwrap_or_default()
    }
}

impl Cols for AnyRow {
    fn col_opt_str(&self, col: &str) -> Option<String> {
        opt_str(self, col)
    }
    fn col_opt_i64(&self, col: &str) -> Option<i64> {
        opt_i64(self, col)
    }
}

impl Cols for crate::db_fast::FastRow {
    fn col_opt_str(&self, col: &str) -> Option<String> {
        self.opt_str(col)
    }
    fn col_opt_i64(&self, col: &str) -> Option<i64> {
        self.opt_i64(col)
    }
}

pub fn opt_str(row: &AnyRow, col: &str) -> Option<String> {
    row.try_get::<Option<String>, _>(col).ok().flatten()
}
pub fn opt_i64(row: &AnyRow, col: &str) -> Option<i64> {
    row.try_get::<Option<i64>, _>(col).ok().flatten()
}
pub fn str_(row: &AnyRow, col: &str) -> String {
    row.try_get::<String, _>(col).unwrap_or_default()
}
pub fn i64_(row: &AnyRow, col: &str) -> i64 {
    row.try_get::<i64, _>(col).unwrap_or_default()
}

/// Insert many rows with multi-row `VALUES` statements (bulk import and demo seeding).
pub async fn insert_many(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Val>>,
) -> Result<(), AppError> {
    // About 1,000 values a statement: fewer round trips than row-by-row, while binding cost
    // (which grows faster than linearly with a statement's parameter count in the driver)
    // stays small. Measured: 30,000 values a statement made seeding ten times slower.
    let per_stmt = (1_000 / columns.len().max(1)).max(1);
    // On SQLite the values are bound to anonymous `?`s, in order. The driver asks SQLite for
    // every parameter's name, and for a named parameter (`$7`) SQLite walks the statement's
    // list of names to find it: a statement of 1,000 values cost half a million steps to bind
    // (10 % of the CPU of report intake's group commit). Anonymous ones have no list to walk.
    let anonymous = tx.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut q = Sql::new(&format!(
            "INSERT INTO {table} ({}) VALUES ",
            columns.join(", ")
        ));
        for (i, row) in rows.by_ref().take(per_stmt).enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            for (j, v) in row.into_iter().enumerate() {
                if j > 0 {
                    q.push(", ");
                }
                if anonymous {
                    q.vals.push(v);
                    q.push("?");
                } else {
                    q.bind(v);
                }
            }
            q.push(")");
        }
        q.query().execute(&mut **tx).await.map_err(db_err)?;
    }
    Ok(())
}
