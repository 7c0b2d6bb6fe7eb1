//! The celebrations' demo: a few happy events in the demo communities (idempotent).

use linli_core::{AppResult, new_id};

use crate::Store;
use crate::db::db_err;
use crate::registry::places::community_prefix;

/// (household index within the community, kind, title, message)
const POSTS: [(usize, &str, &str, &str); 3] = [
    (
        0,
        "birth",
        "添丁之喜",
        "小孙女昨天出生，母女平安，谢谢邻居们的关心！",
    ),
    (
        3,
        "longevity",
        "百岁寿辰",
        "家里老人今年百岁，欢迎邻居们来沾沾福气。",
    ),
    (
        7,
        "graduation",
        "金榜题名",
        "孩子考上了武汉大学，全家感谢社区老师的辅导。",
    ),
];

impl Store {
    pub async fn seed_celebrations_demo(&self) -> AppResult<()> {
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let any = sqlx::query("SELECT 1 AS x FROM celebrations LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if any.is_some() {
            return Ok(());
        }
        // The demo resident's household first, then others of the first community.
        let homes = sqlx::query(
            "SELECT h.id, h.path, u.id AS user_id FROM households h
             LEFT JOIN role_bindings b ON b.household_id = h.id AND b.role = 'resident'
             LEFT JOIN users u ON u.id = b.user_id
             ORDER BY CASE WHEN u.id IS NULL THEN 1 ELSE 0 END, h.path LIMIT 12",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let now = self.now_ms();
        for (i, (n, kind, title, message)) in POSTS.iter().enumerate() {
            let Some(h) = homes.get(*n) else { continue };
            let path = crate::db::str_(h, "path");
            let Some(community) = community_prefix(&path) else {
                continue;
            };
            sqlx::query(
                "INSERT INTO celebrations (id, household_id, path, community_path, kind, title, message, created_by, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(new_id())
            .bind(crate::db::str_(h, "id"))
            .bind(path)
            .bind(community)
            .bind(*kind)
            .bind(*title)
            .bind(*message)
            .bind(crate::db::opt_str(h, "user_id"))
            .bind(now - (i as i64 + 1) * 86_400_000)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }
}
