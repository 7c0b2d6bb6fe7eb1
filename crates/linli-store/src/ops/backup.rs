//! Online backup and restore of the embedded (SQLite) database, uploads included, as ONE file.
//!
//! `backup_to` takes a consistent snapshot with `VACUUM INTO` (a read transaction: the server
//! keeps serving and writing meanwhile), then copies the uploaded files into a `backup_files`
//! table of the snapshot — uploads are written and fsynced before the row that names them
//! commits and are never modified, so every file the snapshot refers to already exists. The
//! file is written under a temporary name, fsynced and renamed: a crash never leaves a
//! half-written backup under the final name.
//!
//! `restore` builds a new data directory from such a file: the database (without the backup's
//! own tables) and the uploads. It refuses a non-empty target and a file that is not a Linli
//! backup, and it needs the master key of the backed-up instance (the key never goes into the
//! backup: a stolen backup must not carry the key to its encrypted fields).
//!
//! PostgreSQL deployments back up with the database's own tools (`pg_dump -Fc`, or base backups
//! with WAL archiving for point-in-time recovery); see `docs/operations.md`.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sqlx::{AnyConnection, Connection, Executor, Row};

use crate::Store;
use crate::db::Backend;

/// What a backup or restore did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub file: String,
    pub bytes: u64,
    pub tables: usize,
    pub uploads: usize,
    pub schema_version: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "backups of a PostgreSQL database are taken with pg_dump / pg_basebackup (see docs/operations.md)"
    )]
    Postgres,
    #[error("{0} already exists; choose a new file name")]
    Exists(String),
    #[error("{0} is not a Linli backup")]
    NotABackup(String),
    #[error(
        "the data directory {0} already holds a database; restore only into an empty data directory"
    )]
    TargetNotEmpty(String),
    #[error(
        "the master key does not match the backed-up instance (restore needs the same master.key or master_key)"
    )]
    WrongKey,
    #[error(
        "restore needs the master key of the backed-up instance: pass --key FILE or set master_key"
    )]
    NoKey,
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io(path.display().to_string(), e)
}

fn sqlite_file_url(path: &Path, create: bool) -> String {
    format!(
        "sqlite://{}?mode={}",
        path.display(),
        if create { "rwc" } else { "ro" }
    )
}

/// Make a file's contents and its name durable.
fn sync_file_and_dir(path: &Path) -> Result<(), BackupError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        std::fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

/// Every regular file below `dir`, as paths relative to it (sorted, `/`-separated).
fn files_below(dir: &Path) -> Result<Vec<String>, BackupError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(BackupError::Io(d.display().to_string(), e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&d))?;
            let p = entry.path();
            let ft = entry.file_type().map_err(io(&p))?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file()
                && let Ok(rel) = p.strip_prefix(dir)
            {
                // Files still being written carry a `.part` suffix and belong to no row yet.
                let rel = rel.to_string_lossy().replace('\\', "/");
                if !rel.ends_with(".part") {
                    out.push(rel);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

async fn count_user_tables(conn: &mut AnyConnection) -> Result<usize, BackupError> {
    let r = sqlx::query(
        "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT IN ('backup_meta', 'backup_files')",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(r.get::<i64, _>("n") as usize)
}

impl Store {
    /// Take a consistent online backup of the SQLite database and the uploads into `dest`.
    pub async fn backup_to(
        &self,
        dest: &Path,
        data_dir: &Path,
    ) -> Result<BackupReport, BackupError> {
        if self.backend() == Backend::Postgres {
            return Err(BackupError::Postgres);
        }
        if dest.exists() {
            return Err(BackupError::Exists(dest.display().to_string()));
        }
        let tmp = dest.with_extension("linli-backup-part");
        let _ = std::fs::remove_file(&tmp);
        // The snapshot: one read transaction, concurrent writers are not blocked (WAL).
        let mut conn = self.db.read.acquire().await?;
        sqlx::query("VACUUM INTO $1")
            .bind(tmp.display().to_string())
            .execute(&mut *conn)
            .await?;
        drop(conn);

        let mut b = AnyConnection::connect(&sqlite_file_url(&tmp, true)).await?;
        b.execute("PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL")
            .await?;
        let schema_version: i64 =
            sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
                .fetch_one(&mut b)
                .await?
                .get("v");
        let mut tx = b.begin().await?;
        tx.execute("CREATE TABLE backup_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            .await?;
        tx.execute("CREATE TABLE backup_files (path TEXT PRIMARY KEY, bytes BLOB NOT NULL)")
            .await?;
        for (k, v) in [
            ("format", "linli-backup-1".to_string()),
            ("created_at", self.now_ms().to_string()),
            ("linli_version", env!("CARGO_PKG_VERSION").to_string()),
            ("schema_version", schema_version.to_string()),
        ] {
            sqlx::query("INSERT INTO backup_meta (key, value) VALUES ($1, $2)")
                .bind(k)
                .bind(v)
                .execute(&mut *tx)
                .await?;
        }
        let uploads_dir = data_dir.join("uploads");
        let files = files_below(&uploads_dir)?;
        for rel in &files {
            let p = uploads_dir.join(rel);
            let bytes = std::fs::read(&p).map_err(io(&p))?;
            sqlx::query("INSERT INTO backup_files (path, bytes) VALUES ($1, $2)")
                .bind(rel.clone())
                .bind(bytes)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let tables = count_user_tables(&mut b).await?;
        b.close().await?;
        sync_file_and_dir(&tmp)?;
        std::fs::rename(&tmp, dest).map_err(io(dest))?;
        sync_file_and_dir(dest)?;
        let bytes = std::fs::metadata(dest).map_err(io(dest))?.len();
        Ok(BackupReport {
            file: dest.display().to_string(),
            bytes,
            tables,
            uploads: files.len(),
            schema_version,
        })
    }
}

/// Restore `file` into the empty data directory `data_dir`. `key_hex` is the master key of the
/// backed-up instance (written to `data_dir/master.key` when given and none is there yet).
pub async fn restore(
    file: &Path,
    data_dir: &Path,
    key_hex: Option<&str>,
) -> Result<BackupReport, BackupError> {
    sqlx::any::install_default_drivers();
    let not_backup = || BackupError::NotABackup(file.display().to_string());
    let head = {
        use std::io::Read;
        let mut f = std::fs::File::open(file).map_err(io(file))?;
        let mut head = [0u8; 16];
        f.read_exact(&mut head).map_err(|_| not_backup())?;
        head
    };
    if &head != b"SQLite format 3\0" {
        return Err(not_backup());
    }
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let db_path = data_dir.join("linli.db");
    if db_path.exists() {
        return Err(BackupError::TargetNotEmpty(data_dir.display().to_string()));
    }
    // The key: given, or already in the target directory.
    let key_path = data_dir.join("master.key");
    let key = match key_hex {
        Some(k) => k.trim().to_string(),
        None => match std::fs::read_to_string(&key_path) {
            Ok(k) => k.trim().to_string(),
            Err(_) => return Err(BackupError::NoKey),
        },
    };
    let cipher =
        linli_core::crypto::FieldCipher::from_hex(&key).map_err(|_| BackupError::WrongKey)?;

    let tmp = data_dir.join("linli.db.restore-part");
    let _ = std::fs::remove_file(&tmp);
    std::fs::copy(file, &tmp).map_err(io(&tmp))?;
    let mut c = AnyConnection::connect(&sqlite_file_url(&tmp, true)).await?;
    let format: Option<String> = sqlx::query("SELECT value FROM backup_meta WHERE key = 'format'")
        .fetch_optional(&mut c)
        .await
        .map_err(|_| not_backup())?
        .map(|r| r.get("value"));
    if format.as_deref() != Some("linli-backup-1") {
        let _ = c.close().await;
        let _ = std::fs::remove_file(&tmp);
        return Err(not_backup());
    }
    // The key must be the one the backed-up data was encrypted with.
    let stored: Option<String> =
        sqlx::query("SELECT value FROM settings WHERE key = 'master_key_check'")
            .fetch_optional(&mut c)
            .await?
            .map(|r| r.get("value"));
    if let Some(stored) = stored
        && stored != crate::key_check(&cipher)
    {
        let _ = c.close().await;
        let _ = std::fs::remove_file(&tmp);
        return Err(BackupError::WrongKey);
    }
    let schema_version: i64 =
        sqlx::query("SELECT value FROM backup_meta WHERE key = 'schema_version'")
            .fetch_one(&mut c)
            .await?
            .get::<String, _>("value")
            .parse()
            .unwrap_or(0);
    // Uploads back into place (each file fsynced), then the backup's own tables go.
    let uploads_dir = data_dir.join("uploads");
    let rows = sqlx::query("SELECT path, bytes FROM backup_files ORDER BY path")
        .fetch_all(&mut c)
        .await?;
    for r in &rows {
        let rel: String = r.get("path");
        if rel.split('/').any(|seg| seg == ".." || seg.is_empty()) || rel.starts_with('/') {
            let _ = c.close().await;
            let _ = std::fs::remove_file(&tmp);
            return Err(not_backup());
        }
        let bytes: Vec<u8> = r.get("bytes");
        let p = uploads_dir.join(&rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&p, &bytes).map_err(io(&p))?;
        sync_file_and_dir(&p)?;
    }
    c.execute("DROP TABLE backup_files; DROP TABLE backup_meta")
        .await?;
    c.execute("VACUUM").await?;
    let tables = count_user_tables(&mut c).await?;
    c.close().await?;
    sync_file_and_dir(&tmp)?;
    if key_hex.is_some() && !key_path.exists() {
        crate::write_secret_file(&key_path, &key).map_err(io(&key_path))?;
    }
    std::fs::rename(&tmp, &db_path).map_err(io(&db_path))?;
    sync_file_and_dir(&db_path)?;
    let bytes = std::fs::metadata(&db_path).map_err(io(&db_path))?.len();
    Ok(BackupReport {
        file: db_path.display().to_string(),
        bytes,
        tables,
        uploads: rows.len(),
        schema_version,
    })
}

async fn user_tables(c: &mut AnyConnection) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT IN ('backup_meta', 'backup_files') ORDER BY name",
    )
    .fetch_all(&mut *c)
    .await?;
    Ok(rows.iter().map(|r| r.get::<String, _>("name")).collect())
}

/// Every row of `table` as one text (SQLite's `quote()` of each column), sorted.
async fn table_rows(c: &mut AnyConnection, table: &str) -> Result<Vec<String>, sqlx::Error> {
    let cols: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
    )))
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| r.get::<String, _>("name"))
    .collect();
    let expr = cols
        .iter()
        .map(|c| format!("quote(\"{c}\")"))
        .collect::<Vec<_>>()
        .join(" || '|' || ");
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {expr} AS r FROM \"{table}\" ORDER BY 1"
    )))
    .fetch_all(&mut *c)
    .await?;
    Ok(rows.iter().map(|r| r.get::<String, _>("r")).collect())
}

/// Compare two SQLite databases table by table and row by row; returns the differences found
/// (empty when identical). Used by the round-trip test and `linli restore --verify`.
pub async fn compare_sqlite(a: &Path, b: &Path) -> Result<Vec<String>, BackupError> {
    sqlx::any::install_default_drivers();
    let mut ca = AnyConnection::connect(&sqlite_file_url(a, false)).await?;
    let mut cb = AnyConnection::connect(&sqlite_file_url(b, false)).await?;
    let ta = user_tables(&mut ca).await?;
    let tb = user_tables(&mut cb).await?;
    let mut diffs = Vec::new();
    if ta != tb {
        diffs.push(format!("tables differ: {ta:?} vs {tb:?}"));
        return Ok(diffs);
    }
    for t in &ta {
        let ra = table_rows(&mut ca, t).await?;
        let rb = table_rows(&mut cb, t).await?;
        if ra.len() != rb.len() {
            diffs.push(format!("{t}: {} rows vs {} rows", ra.len(), rb.len()));
        } else if let Some(i) = (0..ra.len()).find(|i| ra[*i] != rb[*i]) {
            diffs.push(format!("{t}: row {i} differs"));
        }
    }
    Ok(diffs)
}

/// The path of the database file of a data directory.
pub fn sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("linli.db")
}
