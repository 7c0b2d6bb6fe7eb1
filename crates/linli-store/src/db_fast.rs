//! The fast read path: short, index-driven reads (searches, session and token resolution, report
//! lists) that run many thousand times a second.
//!
//! One call site for both backends: [`Db::fetch_all_fast`] (and `_optional` / `_one`) takes the
//! same [`Sql`] (`$n` placeholders) and returns [`FastRow`]s with typed getters.
//!
//! - On SQLite the query runs on a small pool of native read connections (`rusqlite`, the same
//!   bundled `libsqlite3` that sqlx links), each with a prepared-statement cache, synchronously on
//!   the calling thread. The `Any` driver instead hands every query to a worker thread, waits for
//!   it, and converts every value twice; for a 50–300 µs index lookup that hand-off was most of the
//!   cost. Reads here must stay short (index-driven, bounded by LIMIT): a long scan would hold a
//!   runtime thread. The connections are opened read-write but with `query_only`, in WAL mode
//!   they never block the writer, and every statement sees the latest committed data.
//! - On PostgreSQL (and for an in-memory SQLite database, which other connections cannot open)
//!   the same SQL goes through the sqlx pool and the rows are converted to `FastRow`s.
//!
//! SQLite numbers a named parameter like `$2` by its first appearance, not by its name, so values
//! are bound by name: parameter `$n` gets `vals[n - 1]` wherever it stands and however often it
//! is repeated.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::{Row, ValueRef as _};

use linli_core::AppError;

use crate::db::{Backend, Db, Sql, Val, db_err};

/// A column value as read.
#[derive(Debug, Clone, PartialEq)]
pub enum FastVal {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// One result row: values by position, column names shared by all rows of a result.
#[derive(Debug)]
pub struct FastRow {
    names: Arc<[String]>,
    vals: Vec<FastVal>,
    /// Where the next lookup by name starts: rows are mostly read column after column, so a
    /// wide row (a report has 60 columns) is read in linear, not quadratic, time.
    next: AtomicUsize,
}

impl Clone for FastRow {
    fn clone(&self) -> Self {
        FastRow::new(self.names.clone(), self.vals.clone())
    }
}

impl FastRow {
    fn new(names: Arc<[String]>, vals: Vec<FastVal>) -> FastRow {
        FastRow {
            names,
            vals,
            next: AtomicUsize::new(0),
        }
    }

    /// The position of a column (names as in the SELECT list, `AS` aliases included).
    pub fn index(&self, col: &str) -> Option<usize> {
        let n = self.names.len();
        let start = self.next.load(Ordering::Relaxed).min(n);
        let found = (start..n).chain(0..start).find(|&i| self.names[i] == col)?;
        self.next.store(found + 1, Ordering::Relaxed);
        Some(found)
    }

    pub fn columns(&self) -> &[String] {
        &self.names
    }

    /// The value of a column; a column the query did not select is a programming error, logged
    /// and read as NULL.
    pub fn get(&self, col: &str) -> &FastVal {
        match self.index(col) {
            Some(i) => &self.vals[i],
            None => {
                debug_assert!(false, "no column {col} in {:?}", self.names);
                tracing::error!(column = col, "column not in the result");
                &FastVal::Null
            }
        }
    }

    pub fn has(&self, col: &str) -> bool {
        self.index(col).is_some()
    }

    /// Text or NULL (an integer reads as its decimal text).
    pub fn opt_str(&self, col: &str) -> Option<String> {
        self.opt_str_ref(col)
            .map(str::to_string)
            .or_else(|| match self.get(col) {
                FastVal::Int(i) => Some(i.to_string()),
                _ => None,
            })
    }

    /// Borrowed text, None for NULL or a non-text value.
    pub fn opt_str_ref(&self, col: &str) -> Option<&str> {
        match self.get(col) {
            FastVal::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Text; NULL reads as the empty string.
    pub fn str(&self, col: &str) -> String {
        self.opt_str(col).unwrap_or_default()
    }

    /// Move a text value out of the row (no copy); NULL gives None.
    pub fn take_str(&mut self, col: &str) -> Option<String> {
        let i = self.index(col)?;
        match std::mem::replace(&mut self.vals[i], FastVal::Null) {
            FastVal::Text(s) => Some(s),
            FastVal::Int(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Integer or NULL (booleans read as 0/1; a real is truncated).
    pub fn opt_i64(&self, col: &str) -> Option<i64> {
        match self.get(col) {
            FastVal::Int(i) => Some(*i),
            FastVal::Real(f) => Some(*f as i64),
            FastVal::Text(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// Integer; NULL reads as 0.
    pub fn i64(&self, col: &str) -> i64 {
        self.opt_i64(col).unwrap_or_default()
    }

    pub fn opt_f64(&self, col: &str) -> Option<f64> {
        match self.get(col) {
            FastVal::Int(i) => Some(*i as f64),
            FastVal::Real(f) => Some(*f),
            _ => None,
        }
    }

    /// A 0/1 flag.
    pub fn flag(&self, col: &str) -> bool {
        self.i64(col) != 0
    }
}

/// Native read connections to one SQLite file, opened on first use.
pub(crate) struct SqliteReaders {
    path: String,
    conns: Vec<Mutex<Option<rusqlite::Connection>>>,
}

static THREAD_SLOTS: AtomicUsize = AtomicUsize::new(0);

impl std::fmt::Debug for SqliteReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReaders")
            .field("path", &self.path)
            .field("size", &self.conns.len())
            .finish()
    }
}

/// Prepared statements kept per connection (the hot queries are a few dozen shapes).
const STATEMENT_CACHE: usize = 128;

impl SqliteReaders {
    /// Readers for a sqlx SQLite URL; None for in-memory databases (only the sqlx pool sees them).
    /// Queries run on the calling thread, so the pool needs about as many connections as
    /// threads that run queries at once (the runtime's workers): `size`, opened on first use.
    pub(crate) fn for_url(url: &str, size: usize) -> Option<SqliteReaders> {
        let path = sqlite_path(url)?;
        Some(SqliteReaders {
            path,
            conns: (0..size.max(2)).map(|_| Mutex::new(None)).collect(),
        })
    }

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.execute_batch(
            "PRAGMA busy_timeout=10000; PRAGMA cache_size=-16000; PRAGMA mmap_size=268435456; PRAGMA temp_store=MEMORY; PRAGMA query_only=ON;",
        )?;
        // Plans must not depend on bound values: without the query planner stability guarantee
        // SQLite 3.51 looks at the value bound to a LIMIT or OFFSET (and a few other places) while
        // planning, marks the statement, and re-parses and re-plans the cached statement every
        // time that parameter gets another value. On the search mix that was a fifth of all CPU.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    /// Run `sql` on a free connection (or wait for one: every use is short). A thread starts
    /// with "its" connection, so each connection's page cache stays warm for the same thread.
    fn fetch(&self, sql: &Sql, max_rows: usize) -> rusqlite::Result<Vec<FastRow>> {
        thread_local! {
            static SLOT: usize = THREAD_SLOTS.fetch_add(1, Ordering::Relaxed);
        }
        let n = self.conns.len();
        let start = SLOT.with(|s| *s) % n;
        let mut guard = (0..n)
            .find_map(|k| self.conns[(start + k) % n].try_lock().ok())
            .unwrap_or_else(|| self.conns[start].lock().unwrap_or_else(|p| p.into_inner()));
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        let conn = guard.as_ref().expect("opened above");
        let res = query(conn, sql, max_rows);
        if let Err(e) = &res
            && !matches!(
                e,
                rusqlite::Error::SqliteFailure(_, _) | rusqlite::Error::InvalidParameterCount(..)
            )
        {
            // Anything unexpected: start over with a fresh connection next time.
            *guard = None;
        }
        res
    }
}

/// The file path of a sqlx SQLite URL (`sqlite://PATH?opts`, `sqlite:PATH`), None for memory.
fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, opts) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || opts.split('&').any(|o| o == "mode=memory") {
        return None;
    }
    Some(path.to_string())
}

/// `sql` with every `$n` placeholder written `?n`, when that is safe: no bare `?` and no `$` that
/// is not a placeholder (outside quoted literals and identifiers). `None`: bind by name instead.
fn numbered_params(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<u8> = None;
    let mut i = 0;
    let mut start = 0;
    let mut any = false;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'\'' | b'"' => quote = Some(c),
                b'?' => return None,
                b'$' => {
                    let digits = b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
                    if digits == 0 {
                        return None;
                    }
                    out.push_str(&sql[start..i]);
                    out.push('?');
                    start = i + 1;
                    any = true;
                }
                _ => {}
            },
        }
        i += 1;
    }
    if !any {
        return None;
    }
    out.push_str(&sql[start..]);
    Some(out)
}

/// The value index (0-based) for SQLite parameter `i` (1-based): by its `$n` name, else position.
fn value_index(name: Option<&str>, i: usize) -> Option<usize> {
    match name {
        None => Some(i - 1),
        Some(n) => n
            .strip_prefix(['$', '?', ':', '@'])
            .and_then(|d| d.parse::<usize>().ok())
            .filter(|d| *d >= 1)
            .map(|d| d - 1),
    }
}

fn query(
    conn: &rusqlite::Connection,
    sql: &Sql,
    max_rows: usize,
) -> rusqlite::Result<Vec<FastRow>> {
    // `$n` as SQLite's numbered `?n`: parameter n is value n, no lookup of names per bind (that
    // lookup walks a list in SQLite and was 2 % of the CPU of a report read).
    let numbered = numbered_params(&sql.text);
    let mut stmt = conn.prepare_cached(numbered.as_deref().unwrap_or(&sql.text))?;
    let params = stmt.parameter_count();
    for i in 1..=params {
        let k = if numbered.is_some() {
            Some(i - 1)
        } else {
            value_index(stmt.parameter_name(i), i)
        };
        let v = k
            .and_then(|k| sql.vals.get(k))
            .ok_or(rusqlite::Error::InvalidParameterCount(
                params,
                sql.vals.len(),
            ))?;
        match v {
            Val::Text(s) => stmt.raw_bind_parameter(i, s.as_str())?,
            Val::Int(n) => stmt.raw_bind_parameter(i, *n)?,
            Val::NullText | Val::NullInt => stmt.raw_bind_parameter(i, rusqlite::types::Null)?,
        }
    }
    let ncol = stmt.column_count();
    let names: Arc<[String]> = (0..ncol)
        .map(|c| stmt.column_name(c).map(str::to_string))
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into();
    let mut out = Vec::new();
    let mut rows = stmt.raw_query();
    while let Some(r) = rows.next()? {
        let mut vals = Vec::with_capacity(ncol);
        for c in 0..ncol {
            use rusqlite::types::ValueRef as V;
            vals.push(match r.get_ref(c)? {
                V::Null => FastVal::Null,
                V::Integer(i) => FastVal::Int(i),
                V::Real(f) => FastVal::Real(f),
                // Valid UTF-8 (always, as we write it) is checked by the fast path of `from_utf8`.
                V::Text(t) => FastVal::Text(match std::str::from_utf8(t) {
                    Ok(s) => s.to_owned(),
                    Err(_) => String::from_utf8_lossy(t).into_owned(),
                }),
                V::Blob(b) => FastVal::Blob(b.to_vec()),
            });
        }
        out.push(FastRow::new(names.clone(), vals));
        if out.len() >= max_rows {
            break;
        }
    }
    Ok(out)
}

fn fast_err(e: rusqlite::Error) -> AppError {
    tracing::error!(error = %e, "database error (fast read path)");
    AppError::internal()
}

/// Convert sqlx rows (PostgreSQL, or SQLite in memory) to `FastRow`s.
fn from_any(rows: Vec<sqlx::any::AnyRow>) -> Result<Vec<FastRow>, AppError> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let names: Arc<[String]> = first
        .columns()
        .iter()
        .map(|c| sqlx::Column::name(c).to_string())
        .collect::<Vec<_>>()
        .into();
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut vals = Vec::with_capacity(names.len());
        for i in 0..names.len() {
            let raw = row.try_get_raw(i).map_err(db_err)?;
            let v = if raw.is_null() {
                FastVal::Null
            } else {
                use sqlx::any::AnyTypeInfoKind as K;
                match raw.type_info().kind() {
                    K::Bool => FastVal::Int(i64::from(row.try_get::<bool, _>(i).map_err(db_err)?)),
                    K::SmallInt | K::Integer | K::BigInt => {
                        FastVal::Int(row.try_get::<i64, _>(i).map_err(db_err)?)
                    }
                    K::Real | K::Double => FastVal::Real(row.try_get::<f64, _>(i).map_err(db_err)?),
                    K::Blob => FastVal::Blob(row.try_get::<Vec<u8>, _>(i).map_err(db_err)?),
                    K::Text => FastVal::Text(row.try_get::<String, _>(i).map_err(db_err)?),
                    K::Null => FastVal::Null,
                }
            };
            vals.push(v);
        }
        out.push(FastRow::new(names.clone(), vals));
    }
    Ok(out)
}

impl Db {
    /// Whether reads go through native SQLite connections (else through sqlx).
    pub fn has_native_readers(&self) -> bool {
        self.fast.is_some()
    }

    /// All rows of a short, index-driven read. Same SQL on both backends.
    pub async fn fetch_all_fast(&self, sql: &Sql) -> Result<Vec<FastRow>, AppError> {
        match (&self.fast, self.backend) {
            (Some(r), Backend::Sqlite) => r.fetch(sql, usize::MAX).map_err(fast_err),
            _ => from_any(sql.query().fetch_all(&self.read).await.map_err(db_err)?),
        }
    }

    /// The first row, if any.
    pub async fn fetch_optional_fast(&self, sql: &Sql) -> Result<Option<FastRow>, AppError> {
        match (&self.fast, self.backend) {
            (Some(r), Backend::Sqlite) => Ok(r.fetch(sql, 1).map_err(fast_err)?.pop()),
            _ => Ok(
                match sql
                    .query()
                    .fetch_optional(&self.read)
                    .await
                    .map_err(db_err)?
                {
                    Some(row) => from_any(vec![row])?.pop(),
                    None => None,
                },
            ),
        }
    }

    /// Exactly one row (an aggregate); none is an internal error.
    pub async fn fetch_one_fast(&self, sql: &Sql) -> Result<FastRow, AppError> {
        self.fetch_optional_fast(sql).await?.ok_or_else(|| {
            tracing::error!(sql = %sql.text, "expected one row, got none");
            AppError::internal()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_to_paths() {
        assert_eq!(
            sqlite_path("sqlite:///tmp/x/linli.db?mode=rwc").as_deref(),
            Some("/tmp/x/linli.db")
        );
        assert_eq!(sqlite_path("sqlite:data.db").as_deref(), Some("data.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("sqlite://x.db?mode=memory&cache=shared"), None);
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }

    #[test]
    fn parameters_bind_by_name() {
        assert_eq!(
            numbered_params("SELECT a FROM t WHERE x = $1 AND y = '$2' AND z IN ($12, $1)")
                .as_deref(),
            Some("SELECT a FROM t WHERE x = ?1 AND y = '$2' AND z IN (?12, ?1)")
        );
        assert_eq!(numbered_params("SELECT 1"), None);
        assert_eq!(numbered_params("SELECT ? WHERE x = $1"), None);
        assert_eq!(numbered_params("SELECT $a"), None);
        assert_eq!(value_index(Some("$1"), 1), Some(0));
        assert_eq!(value_index(Some("$12"), 1), Some(11));
        assert_eq!(value_index(None, 3), Some(2));
        assert_eq!(value_index(Some("$0"), 1), None);
        assert_eq!(value_index(Some(":name"), 1), None);
    }

    /// A cached statement is planned once: a new LIMIT or OFFSET value must not make SQLite
    /// re-parse it (it did, before the readers asked for the planner stability guarantee).
    #[test]
    fn new_limit_values_do_not_re_prepare() {
        let dir = std::env::temp_dir().join(format!("linli-qpsg-{}", linli_core::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.db");
        {
            let c = rusqlite::Connection::open(&file).unwrap();
            c.execute_batch(
                "CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT); INSERT INTO t VALUES ('a', 1), ('b', 2), ('c', 3);",
            )
            .unwrap();
        }
        let readers =
            SqliteReaders::for_url(&format!("sqlite://{}", file.display()), 2).expect("a file");
        let conn = readers.open().unwrap();
        for limit in 1..=3i64 {
            let mut q = Sql::new("SELECT id FROM t ORDER BY id LIMIT ");
            q.bind(limit).push(" OFFSET ").bind(3 - limit);
            let rows = query(&conn, &q, usize::MAX).unwrap();
            assert_eq!(rows.len() as i64, limit);
        }
        let stmt = conn
            .prepare_cached("SELECT id FROM t ORDER BY id LIMIT ?1 OFFSET ?2")
            .unwrap();
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "re-prepared on new LIMIT values"
        );
        drop(stmt);
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn mem() -> rusqlite::Connection {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT, note TEXT, r REAL);
             INSERT INTO t VALUES ('a', 1, NULL, 1.5), ('b', 2, 'x', NULL), ('c', NULL, 'y', 2.0);",
        )
        .unwrap();
        c
    }

    #[test]
    fn placeholders_out_of_order_and_repeated() {
        let c = mem();
        // $2 appears first (SQLite would number it 1) and $1 twice.
        let mut q = Sql::new("SELECT id FROM t WHERE n = $2 OR (id = $1 AND id = $1) ORDER BY id");
        q.vals = vec![Val::from("c"), Val::Int(1)];
        let rows = query(&c, &q, usize::MAX).unwrap();
        let ids: Vec<String> = rows.iter().map(|r| r.str("id")).collect();
        assert_eq!(ids, ["a", "c"]);
        // Built with Sql::bind, as everywhere in the store.
        let mut q = Sql::new("SELECT id, n FROM t WHERE n >= ");
        q.bind(2i64)
            .push(" OR id = ")
            .bind("a")
            .push(" ORDER BY id");
        let rows = query(&c, &q, usize::MAX).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].i64("n"), 2);
        // Too few values is an error, not a silent NULL.
        let q = Sql::new("SELECT id FROM t WHERE n = $1");
        assert!(query(&c, &q, usize::MAX).is_err());
    }

    #[test]
    fn nulls_and_types() {
        let c = mem();
        let mut q = Sql::new("SELECT id, n, note, r, n * 2 AS twice FROM t WHERE id <> ");
        q.bind(Val::NullText)
            .push(" OR note IS ")
            .bind(Val::NullText);
        q.push(" ORDER BY id");
        // `id <> NULL` is never true: only the row whose note IS NULL.
        let rows = query(&c, &q, usize::MAX).unwrap();
        assert_eq!(rows.len(), 1);
        let a = &rows[0];
        assert_eq!(a.str("id"), "a");
        assert_eq!(a.opt_str("note"), None);
        assert_eq!(a.str("note"), "");
        assert_eq!(a.opt_i64("n"), Some(1));
        assert_eq!(a.i64("twice"), 2);
        assert_eq!(a.opt_f64("r"), Some(1.5));
        assert!(a.flag("n"));
        let mut q = Sql::new("SELECT id, n FROM t WHERE id = ");
        q.bind("c");
        let mut rows = query(&c, &q, usize::MAX).unwrap();
        assert_eq!(rows[0].opt_i64("n"), None);
        assert_eq!(rows[0].i64("n"), 0);
        assert_eq!(rows[0].take_str("id").as_deref(), Some("c"));
        assert_eq!(rows[0].opt_str("id"), None, "taken");
        assert_eq!(rows[0].columns(), ["id", "n"]);
    }

    #[test]
    fn statement_cache_rebinds() {
        let c = mem();
        for (id, want) in [("a", Some(1)), ("b", Some(2)), ("z", None)] {
            let mut q = Sql::new("SELECT n FROM t WHERE id = ");
            q.bind(id);
            let rows = query(&c, &q, usize::MAX).unwrap();
            assert_eq!(rows.first().map(|r| r.i64("n")), want);
        }
        let q = Sql::new("SELECT id FROM t ORDER BY id");
        assert_eq!(query(&c, &q, 2).unwrap().len(), 2);
    }
}

#[cfg(test)]
mod compare {
    use super::*;

    /// CPU time of this process (all threads), in ms.
    fn cpu_ms() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) * 10.0
    }

    /// `LINLI_FAST_CMP_DB=/path/linli.db cargo test -p linli-store --release compare -- --ignored --nocapture`
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn sqlx_vs_native() {
        let path = std::env::var("LINLI_FAST_CMP_DB").unwrap();
        let url = format!("sqlite://{path}");
        let db = Db::connect(&crate::db::DbConfig {
            url,
            max_connections: 4,
            sqlite_synchronous: "NORMAL".into(),
        })
        .await
        .unwrap();
        let lid = db
            .fetch_one_fast(&Sql::new(
                "SELECT id FROM labels WHERE code = 'elderly_alone'",
            ))
            .await
            .unwrap()
            .str("id");
        let root = db
            .fetch_one_fast(&Sql::new("SELECT path FROM places WHERE kind = 'city'"))
            .await
            .unwrap()
            .str("path");
        let label = Sql::new("SELECT p.id, p.name, h.path AS hpath FROM person_labels pl CROSS JOIN persons p CROSS JOIN residences r CROSS JOIN households h WHERE pl.label_id = $1 AND p.id = pl.person_id AND r.person_id = p.id AND r.end_date IS NULL AND h.id = r.household_id AND ((h.path >= $2 AND h.path < $3)) ORDER BY h.path, p.id LIMIT $4 OFFSET $5")
            .arg(lid)
            .arg(root.clone())
            .arg(crate::db::prefix_upper_bound(&root))
            .arg(20i64)
            .arg(0i64);
        let by_id = Sql::new(
            "SELECT id, name, id_masked FROM persons WHERE id = (SELECT MIN(id) FROM persons)",
        );
        let n = 2000;
        for (what, q) in [("label list", &label), ("person by id", &by_id)] {
            for round in 0..2 {
                let c = cpu_ms();
                for _ in 0..n {
                    q.query().fetch_all(&db.read).await.unwrap();
                }
                let sqlx_ms = (cpu_ms() - c) / n as f64;
                let c = cpu_ms();
                for _ in 0..n {
                    db.fetch_all_fast(q).await.unwrap();
                }
                let fast_ms = (cpu_ms() - c) / n as f64;
                let r = db.fast.as_ref().unwrap();
                let conn = r.open().unwrap();
                conn.execute_batch("PRAGMA mmap_size=0").unwrap();
                for _ in 0..50 {
                    query(&conn, q, usize::MAX).unwrap();
                }
                let c = cpu_ms();
                for _ in 0..n {
                    query(&conn, q, usize::MAX).unwrap();
                }
                let nommap_ms = (cpu_ms() - c) / n as f64;
                println!(
                    "{what} round {round}: CPU per query: sqlx {sqlx_ms:.3} ms, fast {fast_ms:.3} ms, fast without mmap {nommap_ms:.3} ms"
                );
            }
        }
    }
}
