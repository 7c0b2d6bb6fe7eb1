//! The celebrations' section of the household record: what the household shared.

use serde_json::{Value, json};

use linli_core::celebrations::CELEBRATION_MODERATE;
use linli_core::{AppResult, BoxFuture};

use crate::Store;
use crate::db::Sql;
use crate::registry::dossier::{RecordCtx, RecordSection};

/// The household's celebrations, newest first (at most 20).
pub static CELEBRATIONS: RecordSection = RecordSection {
    key: "celebrations",
    action: CELEBRATION_MODERATE,
    load,
};

fn load<'a>(store: &'a Store, ctx: &'a RecordCtx<'a>) -> BoxFuture<'a, AppResult<Value>> {
    Box::pin(async move {
        let q = Sql::new(
            "SELECT id, kind, title, created_at, congratulations, hidden_at FROM celebrations WHERE household_id = $1 AND created_at >= $2 ORDER BY created_at DESC LIMIT 20",
        )
        .arg(ctx.household_id)
        .arg(ctx.since);
        let items: Vec<Value> = store
            .db
            .fetch_all_fast(&q)
            .await?
            .iter()
            .map(|r| {
                json!({
                    "id": r.str("id"),
                    "kind": r.str("kind"),
                    "title": r.str("title"),
                    "created_at": r.i64("created_at"),
                    "congratulations": r.i64("congratulations"),
                    "hidden": r.opt_i64("hidden_at").is_some(),
                })
            })
            .collect();
        Ok(Value::Array(items))
    })
}
