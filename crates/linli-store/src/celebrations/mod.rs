//! 家有喜事 (celebrations): a household shares a happy event; neighbours of the same community
//! congratulate; committee staff may hide a post. A post is seen only inside its community: by
//! the residents of that community and by the staff who moderate it.
//!
//! The store functions follow the platform's rules: each takes the caller ([`Principal`]) and
//! checks what it may do inside the writing transaction; every write is audited; a bus event
//! follows the commit.

use serde::{Deserialize, Serialize};
use serde_json::json;

use linli_core::auth::Principal;
use linli_core::celebrations::{CELEBRATION_MODERATE, post};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::bus::BusEvent;
use crate::db::{Sql, db_err};
use crate::notify::Notice;
use crate::registry::places::community_prefix;

pub mod demo;
pub mod record;
pub mod schema;

/// A celebration as the community sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Celebration {
    pub id: String,
    pub household_id: String,
    /// The household's address, as its neighbours know it (community and building).
    pub place: String,
    /// `wedding`, `birth`, `longevity`, `graduation` or `other`.
    pub kind: String,
    pub title: String,
    pub message: String,
    pub created_at: i64,
    pub congratulations: i64,
    /// Whether the caller congratulated already.
    pub congratulated: bool,
    /// Whether the caller's own household shared it.
    pub own: bool,
    /// Hidden by staff (only staff see hidden posts).
    pub hidden: bool,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewCelebration {
    /// `wedding`, `birth`, `longevity`, `graduation` or `other`.
    pub kind: String,
    /// 1–40 characters.
    pub title: String,
    /// Up to 500 characters.
    #[serde(default)]
    pub message: String,
}

const COLS: &str = "c.id, c.household_id, c.path, c.community_path, c.kind, c.title, c.message, c.created_at, c.congratulations, c.hidden_at";

fn not_found() -> AppError {
    AppError::not_found("celebration.not_found")
}

/// Where the caller may see celebrations: the communities of their own households (residents)
/// and the area where they moderate (staff).
struct Audience {
    communities: Vec<String>,
    moderate: Vec<String>,
}

impl Store {
    async fn audience(&self, p: &Principal) -> AppResult<Audience> {
        let mut communities = Vec::new();
        for (_, path) in self.own_homes(p).await? {
            if let Some(c) = community_prefix(&path)
                && !communities.contains(&c)
            {
                communities.push(c);
            }
        }
        let moderate = p
            .grant(CELEBRATION_MODERATE)
            .map(|g| g.area(CELEBRATION_MODERATE).to_vec())
            .unwrap_or_default();
        if communities.is_empty() && moderate.is_empty() {
            return Err(AppError::forbidden());
        }
        Ok(Audience {
            communities,
            moderate,
        })
    }

    fn celebration_from(
        &self,
        r: &crate::db_fast::FastRow,
        p: &Principal,
        congratulated: bool,
        place: String,
    ) -> Celebration {
        let household_id = r.str("household_id");
        Celebration {
            own: p.own_households().contains(&household_id),
            id: r.str("id"),
            household_id,
            place,
            kind: r.str("kind"),
            title: r.str("title"),
            message: r.str("message"),
            created_at: r.i64("created_at"),
            congratulations: r.i64("congratulations"),
            congratulated,
            hidden: r.opt_i64("hidden_at").is_some(),
        }
    }

    /// The neighbour-facing address of a household path: community and building, never the
    /// unit or room.
    async fn neighbour_place(&self, path: &str) -> AppResult<String> {
        let ids = crate::registry::places::path_ids(path);
        let upto = ids.len().min(6);
        let short = format!("/{}/", ids[..upto].join("/"));
        self.address(&short).await
    }

    /// The newest celebrations the caller may see (residents: their communities', not hidden;
    /// staff: their area's, hidden ones too).
    pub async fn celebrations(&self, p: &Principal) -> AppResult<Vec<Celebration>> {
        let a = self.audience(p).await?;
        let mut q = Sql::new(&format!(
            "SELECT {COLS}, (SELECT COUNT(*) FROM congratulations g WHERE g.celebration_id = c.id AND g.user_id = "
        ));
        q.bind(p.user_id().to_string());
        q.push(") AS mine FROM celebrations c WHERE ((");
        q.scope("c.community_path", &a.communities);
        q.push(" AND c.hidden_at IS NULL) OR ");
        q.scope("c.path", &a.moderate);
        q.push(") ORDER BY c.created_at DESC, c.id DESC LIMIT 50");
        let rows = self.db.fetch_all_fast(&q).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let place = self.neighbour_place(&r.str("path")).await?;
            out.push(self.celebration_from(r, p, r.i64("mine") > 0, place));
        }
        Ok(out)
    }

    /// One celebration the caller may see (not found otherwise).
    pub async fn celebration(&self, p: &Principal, id: &str) -> AppResult<Celebration> {
        self.celebrations_visible(p, id).await
    }

    async fn celebrations_visible(&self, p: &Principal, id: &str) -> AppResult<Celebration> {
        let a = self.audience(p).await?;
        let q = Sql::new(&format!(
            "SELECT {COLS} FROM celebrations c WHERE c.id = $1"
        ))
        .arg(id);
        let r = self
            .db
            .fetch_optional_fast(&q)
            .await?
            .ok_or_else(not_found)?;
        let community = r.str("community_path");
        let staff = a
            .moderate
            .iter()
            .any(|m| r.str("path").starts_with(m.as_str()));
        let neighbour = a.communities.contains(&community) && r.opt_i64("hidden_at").is_none();
        if !staff && !neighbour {
            return Err(not_found());
        }
        let mine = self
            .db
            .fetch_optional_fast(
                &Sql::new(
                    "SELECT 1 AS x FROM congratulations WHERE celebration_id = $1 AND user_id = $2",
                )
                .arg(id)
                .arg(p.user_id()),
            )
            .await?
            .is_some();
        let place = self.neighbour_place(&r.str("path")).await?;
        Ok(self.celebration_from(&r, p, mine, place))
    }

    async fn celebration_path(&self, id: &str) -> AppResult<String> {
        let q = Sql::new("SELECT path FROM celebrations WHERE id = $1").arg(id);
        Ok(self
            .db
            .fetch_optional_fast(&q)
            .await?
            .map(|r| r.str("path"))
            .unwrap_or_default())
    }

    /// A resident shares a celebration of their own household with their community.
    pub async fn share_celebration(
        &self,
        p: &Principal,
        new: NewCelebration,
    ) -> AppResult<Celebration> {
        let post = post(&new.kind, &new.title, &new.message)?;
        let (household_id, path) =
            self.own_homes(p)
                .await?
                .into_iter()
                .next()
                .ok_or(AppError::new(
                    linli_core::ErrorKind::Forbidden,
                    "registry.not_a_resident",
                ))?;
        let community = community_prefix(&path).ok_or_else(AppError::forbidden)?;
        let id = new_id();
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO celebrations (id, household_id, path, community_path, kind, title, message, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id.clone())
        .bind(household_id.clone())
        .bind(path.clone())
        .bind(community.clone())
        .bind(post.kind)
        .bind(post.title.clone())
        .bind(post.message.clone())
        .bind(p.user_id().to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.audit(
            &mut tx,
            &Actor::from(p),
            Entry {
                action: "celebration.share",
                entity: "celebration",
                entity_id: &id,
                path: Some(&path),
                purpose: None,
                before: None,
                after: Some(json!({ "kind": post.kind, "title": post.title })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.bus.publish(BusEvent {
            kind: "celebration.shared".into(),
            path: community,
            id: id.clone(),
            users: Vec::new(),
        });
        self.celebration(p, &id).await
    }

    /// A neighbour congratulates (once; not on their own household's post). The count and the
    /// once-only rule are kept inside the writing transaction; the sharer hears about it.
    pub async fn congratulate(&self, p: &Principal, id: &str) -> AppResult<Celebration> {
        let c = self.celebration(p, id).await?;
        // Neighbours congratulate: residents of the post's community, not the staff who
        // moderate it (nor an integration token).
        let homes = self.own_homes(p).await?;
        let post_community = community_prefix(&self.celebration_path(id).await?);
        if !homes
            .iter()
            .any(|(_, path)| community_prefix(path) == post_community)
        {
            return Err(AppError::forbidden());
        }
        if c.own || c.hidden {
            return Err(AppError::conflict("celebration.not_yours_to_congratulate"));
        }
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        // Not on a post hidden meanwhile; once per person (the key), both decided here.
        let inserted = sqlx::query(
            "INSERT INTO congratulations (celebration_id, user_id, created_at)
             SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM celebrations WHERE id = $1 AND hidden_at IS NULL)
             ON CONFLICT DO NOTHING",
        )
        .bind(id.to_string())
        .bind(p.user_id().to_string())
        .bind(self.now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if inserted == 1 {
            sqlx::query(
                "UPDATE celebrations SET congratulations = congratulations + 1 WHERE id = $1",
            )
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let sharer: Vec<String> = sqlx::query(
                "SELECT created_by FROM celebrations WHERE id = $1 AND created_by IS NOT NULL",
            )
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| crate::db::str_(r, "created_by"))
            .collect();
            self.notify(
                &mut tx,
                &sharer,
                &Notice {
                    kind: "celebration.congratulated",
                    key: "notice-celebration-congratulated",
                    args: json!({ "title": c.title, "name": p.display_name() }),
                    entity: "celebration",
                    entity_id: id,
                    path: None,
                    link: Some("/me/celebrations"),
                },
            )
            .await?;
        }
        tx.commit().await.map_err(db_err)?;
        self.celebration(p, id).await
    }

    /// Staff hide a post from the community (audited; the household still sees it as hidden).
    pub async fn hide_celebration(&self, p: &Principal, id: &str) -> AppResult<Celebration> {
        let g = p.grant(CELEBRATION_MODERATE)?;
        let scope = g.scope(CELEBRATION_MODERATE)?;
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let row = sqlx::query("SELECT path, title FROM celebrations WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(row) = row.filter(|r| scope.covers(&crate::db::str_(r, "path"))) else {
            return Err(not_found());
        };
        let path = crate::db::str_(&row, "path");
        sqlx::query(
            "UPDATE celebrations SET hidden_at = $1, hidden_by = $2 WHERE id = $3 AND hidden_at IS NULL",
        )
        .bind(self.now_ms())
        .bind(p.user_id().to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.audit(
            &mut tx,
            &Actor::from(p),
            Entry {
                action: "celebration.hide",
                entity: "celebration",
                entity_id: id,
                path: Some(&path),
                purpose: None,
                before: Some(json!({ "title": crate::db::str_(&row, "title") })),
                after: None,
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.celebration(p, id).await
    }
}
