//! The audit log: every write and every reveal of personal data, append-only and hash-chained.
//!
//! Each entry's hash covers its own fields and the previous entry's hash, so editing or deleting
//! any row breaks the chain from that row on; `verify` finds the first broken link. Entries are
//! written in the same transaction as the change they describe, and the chain head row
//! (`audit_head`) serializes writers on both backends.

use serde::Serialize;
use serde_json::Value;
use sqlx::{Any, Transaction};

use linli_core::AppResult;
use linli_core::auth::{Grant, Principal};
use linli_core::crypto::sha256_hex;

use crate::Store;
use crate::db::{Sql, Val, db_err, i64_, opt_str, str_};

/// Who did it.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub name: String,
}

impl Actor {
    pub fn system(name: &str) -> Actor {
        Actor {
            id: "system".into(),
            name: name.into(),
        }
    }
}

impl From<&Principal> for Actor {
    fn from(p: &Principal) -> Self {
        let name = if p.token().is_some() {
            format!("{} (token)", p.login())
        } else {
            p.login().to_string()
        };
        Actor {
            id: p.user_id().to_string(),
            name,
        }
    }
}

/// One entry to append. `before`/`after` must already be masked.
pub struct Entry<'a> {
    pub action: &'a str,
    pub entity: &'a str,
    pub entity_id: &'a str,
    pub path: Option<&'a str>,
    pub purpose: Option<&'a str>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// An entry with owned fields, for [`append_many`].
#[derive(Debug, Clone)]
pub struct OwnedEntry {
    pub actor: Actor,
    pub action: String,
    pub entity: String,
    pub entity_id: String,
    pub path: Option<String>,
    pub after: Option<Value>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: i64,
    pub actor_id: String,
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub entity_id: String,
    pub purpose: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub hash: String,
}

#[allow(clippy::too_many_arguments)]
fn entry_hash(
    seq: i64,
    at: i64,
    actor_id: &str,
    actor: &str,
    action: &str,
    entity: &str,
    entity_id: &str,
    path: Option<&str>,
    purpose: Option<&str>,
    before: Option<&str>,
    after: Option<&str>,
    prev_hash: &str,
) -> String {
    let s = [
        seq.to_string().as_str(),
        at.to_string().as_str(),
        actor_id,
        actor,
        action,
        entity,
        entity_id,
        path.unwrap_or("\u{0}"),
        purpose.unwrap_or("\u{0}"),
        before.unwrap_or("\u{0}"),
        after.unwrap_or("\u{0}"),
        prev_hash,
    ]
    .join("\u{1f}");
    sha256_hex(s.as_bytes())
}

impl Store {
    /// Append an entry inside the caller's transaction, at the store clock's time; returns its
    /// sequence number.
    pub async fn audit(
        &self,
        tx: &mut Transaction<'static, Any>,
        actor: &Actor,
        e: Entry<'_>,
    ) -> AppResult<i64> {
        append(tx, self.now_ms(), actor, e).await
    }
}

/// Append an entry inside the caller's transaction; `at` comes from the store's clock
/// ([`Store::audit`]).
pub async fn append(
    tx: &mut Transaction<'static, Any>,
    at: i64,
    actor: &Actor,
    e: Entry<'_>,
) -> AppResult<i64> {
    // Taking the head row first locks it (PostgreSQL row lock; SQLite write lock) until commit.
    let head = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)?;
    let seq = i64_(&head, "seq");
    let prev = str_(&head, "hash");
    let before = e.before.map(|v| v.to_string());
    let after = e.after.map(|v| v.to_string());
    let hash = entry_hash(
        seq,
        at,
        &actor.id,
        &actor.name,
        e.action,
        e.entity,
        e.entity_id,
        e.path,
        e.purpose,
        before.as_deref(),
        after.as_deref(),
        &prev,
    );
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor_id, actor, action, entity, entity_id, path, purpose, before_json, after_json, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(seq)
    .bind(at)
    .bind(actor.id.clone())
    .bind(actor.name.clone())
    .bind(e.action.to_string())
    .bind(e.entity.to_string())
    .bind(e.entity_id.to_string())
    .bind(e.path.map(str::to_string))
    .bind(e.purpose.map(str::to_string))
    .bind(before)
    .bind(after)
    .bind(prev)
    .bind(hash.clone())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(hash)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    Ok(seq)
}

/// Result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub entries: i64,
    /// The first entry whose hash, link or sequence does not match; `None` when intact.
    pub first_broken: Option<i64>,
    pub reason: Option<String>,
}

/// Filters for listing the log.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::IntoParams)]
pub struct AuditFilter {
    pub entity: Option<String>,
    pub entity_id: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub limit: Option<i64>,
    pub before_seq: Option<i64>,
}

impl Store {
    /// Walk the whole chain in order.
    pub async fn audit_verify(&self) -> AppResult<VerifyReport> {
        let mut prev = "0".repeat(64);
        let mut expected_seq = 1i64;
        let mut last_seq = 0i64;
        let page = 5000i64;
        loop {
            let rows = sqlx::query(
                "SELECT seq, at, actor_id, actor, action, entity, entity_id, path, purpose, before_json, after_json, prev_hash, hash
                 FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(last_seq)
            .bind(page)
            .fetch_all(&self.db.read)
            .await
            .map_err(db_err)?;
            for r in &rows {
                let seq = i64_(r, "seq");
                let broken = |why: &str| {
                    Ok(VerifyReport {
                        entries: seq - 1,
                        first_broken: Some(seq),
                        reason: Some(why.to_string()),
                    })
                };
                if seq != expected_seq {
                    return Ok(VerifyReport {
                        entries: expected_seq - 1,
                        first_broken: Some(expected_seq),
                        reason: Some(format!("entry {expected_seq} is missing")),
                    });
                }
                if str_(r, "prev_hash") != prev {
                    return broken("link to the previous entry does not match");
                }
                let h = entry_hash(
                    seq,
                    i64_(r, "at"),
                    &str_(r, "actor_id"),
                    &str_(r, "actor"),
                    &str_(r, "action"),
                    &str_(r, "entity"),
                    &str_(r, "entity_id"),
                    opt_str(r, "path").as_deref(),
                    opt_str(r, "purpose").as_deref(),
                    opt_str(r, "before_json").as_deref(),
                    opt_str(r, "after_json").as_deref(),
                    &prev,
                );
                if h != str_(r, "hash") {
                    return broken("entry content does not match its hash");
                }
                prev = h;
                expected_seq += 1;
                last_seq = seq;
            }
            if (rows.len() as i64) < page {
                break;
            }
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.db.read)
            .await
            .map_err(db_err)?;
        if i64_(&head, "seq") != last_seq || str_(&head, "hash") != prev {
            return Ok(VerifyReport {
                entries: last_seq,
                first_broken: Some(last_seq + 1),
                reason: Some("entries after the last one present were removed".into()),
            });
        }
        Ok(VerifyReport {
            entries: last_seq,
            first_broken: None,
            reason: None,
        })
    }

    /// List entries about things inside the caller's area (newest first).
    pub async fn audit_list(&self, grant: &Grant, f: &AuditFilter) -> AppResult<Vec<AuditRecord>> {
        let scope = grant.scope(linli_core::auth::Action::AuditRead)?;
        let mut q = Sql::new(
            "SELECT seq, at, actor_id, actor, action, entity, entity_id, purpose, before_json, after_json, hash FROM audit_log WHERE ",
        );
        // Entries without a place (account changes) are visible to whole-tree grants only.
        if scope.is_everywhere() {
            q.push("1 = 1");
        } else {
            q.scope("path", scope.prefixes());
        }
        if let Some(v) = &f.entity {
            q.push(" AND entity = ").bind(v);
        }
        if let Some(v) = &f.entity_id {
            q.push(" AND entity_id = ").bind(v);
        }
        if let Some(v) = &f.actor {
            q.push(" AND actor = ").bind(v);
        }
        if let Some(v) = &f.action {
            q.push(" AND action = ").bind(v);
        }
        if let Some(v) = f.before_seq {
            q.push(" AND seq < ").bind(v);
        }
        q.push(" ORDER BY seq DESC LIMIT ")
            .bind(f.limit.unwrap_or(100).clamp(1, 1000));
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| AuditRecord {
                seq: i64_(r, "seq"),
                at: i64_(r, "at"),
                actor_id: str_(r, "actor_id"),
                actor: str_(r, "actor"),
                action: str_(r, "action"),
                entity: str_(r, "entity"),
                entity_id: str_(r, "entity_id"),
                purpose: opt_str(r, "purpose"),
                before: opt_str(r, "before_json").and_then(|s| serde_json::from_str(&s).ok()),
                after: opt_str(r, "after_json").and_then(|s| serde_json::from_str(&s).ok()),
                hash: str_(r, "hash"),
            })
            .collect())
    }
}

/// Append several entries inside the caller's transaction, chained in the given order, with one
/// head update and multi-row inserts (group commit of many small writes); all at `at` (the
/// store clock's time of the batch).
pub async fn append_many(
    tx: &mut Transaction<'static, Any>,
    at: i64,
    entries: Vec<OwnedEntry>,
) -> AppResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let n = entries.len() as i64;
    let head = sqlx::query("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
        .bind(n)
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)?;
    let mut seq = i64_(&head, "seq") - n;
    let mut prev = str_(&head, "hash");
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        seq += 1;
        let after = e.after.map(|v| v.to_string());
        let hash = entry_hash(
            seq,
            at,
            &e.actor.id,
            &e.actor.name,
            &e.action,
            &e.entity,
            &e.entity_id,
            e.path.as_deref(),
            None,
            None,
            after.as_deref(),
            &prev,
        );
        rows.push(vec![
            Val::Int(seq),
            Val::Int(at),
            Val::from(e.actor.id),
            Val::from(e.actor.name),
            Val::from(e.action),
            Val::from(e.entity),
            Val::from(e.entity_id),
            Val::from(e.path),
            Val::NullText,
            Val::NullText,
            Val::from(after),
            Val::from(prev.clone()),
            Val::from(hash.clone()),
        ]);
        prev = hash;
    }
    crate::db::insert_many(
        tx,
        "audit_log",
        &[
            "seq",
            "at",
            "actor_id",
            "actor",
            "action",
            "entity",
            "entity_id",
            "path",
            "purpose",
            "before_json",
            "after_json",
            "prev_hash",
            "hash",
        ],
        rows,
    )
    .await?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(prev)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    Ok(())
}
