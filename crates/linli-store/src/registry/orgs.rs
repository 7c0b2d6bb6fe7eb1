//! Organisations attached to places: residents' committees, property companies (serving one or
//! more communities), street and district departments (with the report categories they handle),
//! social organisations, merchants, enterprise partners.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use linli_core::auth::{Action, Grant};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err, str_};

pub const ORG_KINDS: [&str; 6] = [
    "committee",
    "property_company",
    "department",
    "social_org",
    "merchant",
    "enterprise",
];

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Org {
    pub id: String,
    pub kind: String,
    pub name: String,
    /// The place the organisation belongs to (community, street, district …).
    pub place_id: String,
    /// Report categories a department handles (used by routing).
    pub categories: Vec<String>,
    /// Communities a property company serves.
    pub serves: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewOrg {
    pub kind: String,
    pub name: String,
    pub place_id: String,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub serves: Vec<String>,
}

fn from_row(r: &AnyRow) -> Org {
    Org {
        id: str_(r, "id"),
        kind: str_(r, "kind"),
        name: str_(r, "name"),
        place_id: str_(r, "place_id"),
        categories: serde_json::from_str(&str_(r, "categories")).unwrap_or_default(),
        serves: Vec::new(),
    }
}

impl Store {
    /// Organisations attached inside the caller's area, or serving a community in it.
    /// An organisation's name (for labels on pages that already hold its id from a scoped
    /// read, such as a routing rule's unit).
    pub async fn org_name(&self, id: &str) -> AppResult<Option<String>> {
        let q = Sql::new("SELECT name FROM orgs WHERE id = $1").arg(id);
        Ok(self
            .db
            .fetch_optional_fast(&q)
            .await?
            .and_then(|mut r| r.take_str("name")))
    }

    pub async fn orgs(&self, grant: &Grant, kind: Option<&str>) -> AppResult<Vec<Org>> {
        let scope = grant.scope(Action::OrgRead)?;
        let mut q = Sql::new("SELECT id, kind, name, place_id, categories FROM orgs o WHERE (");
        q.scope("o.path", scope.prefixes());
        q.push(" OR EXISTS (SELECT 1 FROM org_serves s JOIN places p ON p.id = s.place_id WHERE s.org_id = o.id AND ");
        q.scope("p.path", scope.prefixes()).push("))");
        if let Some(k) = kind {
            q.push(" AND kind = ").bind(k);
        }
        q.push(" ORDER BY kind, name");
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        let mut orgs: Vec<Org> = rows.iter().map(from_row).collect();
        for o in orgs.iter_mut().filter(|o| o.kind == "property_company") {
            o.serves = self.org_serves(&o.id).await?;
        }
        Ok(orgs)
    }

    pub async fn org(&self, grant: &Grant, id: &str) -> AppResult<Org> {
        self.orgs(grant, None)
            .await?
            .into_iter()
            .find(|o| o.id == id)
            .ok_or(AppError::not_found("registry.org.not_found"))
    }

    pub(crate) async fn org_serves(&self, org_id: &str) -> AppResult<Vec<String>> {
        let rows =
            sqlx::query("SELECT place_id FROM org_serves WHERE org_id = $1 ORDER BY place_id")
                .bind(org_id.to_string())
                .fetch_all(&self.db.read)
                .await
                .map_err(db_err)?;
        Ok(rows.iter().map(|r| str_(r, "place_id")).collect())
    }

    pub async fn create_org(&self, grant: &Grant, actor: &Actor, new: NewOrg) -> AppResult<Org> {
        grant.scope(Action::OrgWrite)?;
        if !ORG_KINDS.contains(&new.kind.as_str()) {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "kind"));
        }
        if new.name.trim().is_empty() {
            return Err(AppError::required("name"));
        }
        let place = self.place(grant, &new.place_id).await?;
        let mut served = Vec::new();
        for s in &new.serves {
            let c = self.place(grant, s).await?;
            if c.kind != "community" {
                return Err(AppError::bad_request("validation.bad_value").arg("field", "serves"));
            }
            served.push(c.id);
        }
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let id = insert_org(
            &mut tx,
            self.now_ms(),
            &new.kind,
            new.name.trim(),
            &place.id,
            &place.path,
            &new.categories,
            &served,
        )
        .await?;
        let org = Org {
            id: id.clone(),
            kind: new.kind,
            name: new.name.trim().to_string(),
            place_id: place.id,
            categories: new.categories,
            serves: served,
        };
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "org.create",
                entity: "org",
                entity_id: &id,
                path: Some(&place.path),
                purpose: None,
                before: None,
                after: Some(serde_json::to_value(&org).unwrap_or_default()),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(org)
    }
}

pub(crate) async fn insert_org(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    now: i64,
    kind: &str,
    name: &str,
    place_id: &str,
    path: &str,
    categories: &[String],
    serves: &[String],
) -> AppResult<String> {
    let id = new_id();
    sqlx::query("INSERT INTO orgs (id, kind, name, place_id, path, categories, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(id.clone())
        .bind(kind.to_string())
        .bind(name.to_string())
        .bind(place_id.to_string())
        .bind(path.to_string())
        .bind(serde_json::to_string(categories).unwrap_or_else(|_| "[]".into()))
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    for s in serves {
        sqlx::query("INSERT INTO org_serves (org_id, place_id) VALUES ($1, $2)")
            .bind(id.clone())
            .bind(s.clone())
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    }
    Ok(id)
}
