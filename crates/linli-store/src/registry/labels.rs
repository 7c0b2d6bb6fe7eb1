//! The configurable label tree (独居老人, 残疾人, 党员, 退役军人, 低保户 …). Labels marked
//! sensitive are shown only to callers holding `SensitiveLabelRead` for the person's area.

use serde::{Deserialize, Serialize};

use linli_core::auth::{Action, Grant};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{db_err, i64_, opt_str, str_};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct Label {
    pub id: String,
    pub parent_id: Option<String>,
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub sensitive: bool,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewLabel {
    pub parent_code: Option<String>,
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    #[serde(default)]
    pub sensitive: bool,
}

/// The labels every installation starts with: (parent code, code, 中文, English, sensitive).
pub const DEFAULT_LABELS: &[(Option<&str>, &str, &str, &str, bool)] = &[
    (None, "care", "关爱对象", "Care targets", false),
    (
        Some("care"),
        "elderly_alone",
        "独居老人",
        "Elderly living alone",
        false,
    ),
    (
        Some("care"),
        "disabled",
        "残疾人",
        "Person with disability",
        true,
    ),
    (
        Some("care"),
        "low_income",
        "低保户",
        "Minimum-subsistence household",
        true,
    ),
    (None, "political", "政治面貌", "Political status", false),
    (
        Some("political"),
        "party_member",
        "党员",
        "Party member",
        true,
    ),
    (None, "service", "服务对象", "Service", false),
    (Some("service"), "veteran", "退役军人", "Veteran", true),
];

impl Store {
    pub async fn labels(&self) -> AppResult<Vec<Label>> {
        if let Some(cached) = self
            .labels_cache
            .read()
            .expect("labels cache lock")
            .as_ref()
        {
            return Ok(cached.clone());
        }
        let fresh = self.load_labels().await?;
        *self.labels_cache.write().expect("labels cache lock") = Some(fresh.clone());
        Ok(fresh)
    }

    /// The label tree changed: forget it here, and tell the other instances to (bus event
    /// [`crate::CACHE_LABELS`]).
    pub(crate) fn forget_labels(&self) {
        *self.labels_cache.write().expect("labels cache lock") = None;
        self.publish_cache_notice(crate::CACHE_LABELS);
    }

    async fn load_labels(&self) -> AppResult<Vec<Label>> {
        let rows = sqlx::query("SELECT id, parent_id, code, name_zh, name_en, sensitive FROM labels ORDER BY sort_key, code")
            .fetch_all(&self.db.read)
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| Label {
                id: str_(r, "id"),
                parent_id: opt_str(r, "parent_id"),
                code: str_(r, "code"),
                name_zh: str_(r, "name_zh"),
                name_en: str_(r, "name_en"),
                sensitive: i64_(r, "sensitive") != 0,
            })
            .collect())
    }

    /// Insert the default labels that are missing (at every start). Each insert is
    /// conditional (`ON CONFLICT DO NOTHING` on the unique code and name) and finds its parent
    /// by code inside the same statement, so instances starting together never collide and a
    /// label an administrator already made under the same name is left as it is.
    pub async fn ensure_default_labels(&self) -> AppResult<()> {
        let existing = self.labels().await?;
        if DEFAULT_LABELS
            .iter()
            .all(|(_, code, ..)| existing.iter().any(|l| l.code == *code))
        {
            return Ok(());
        }
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        for (i, (parent, code, zh, en, sensitive)) in DEFAULT_LABELS.iter().enumerate() {
            sqlx::query(
                "INSERT INTO labels (id, parent_id, code, name_zh, name_en, sensitive, sort_key) \
                 VALUES ($1, (SELECT p.id FROM labels p WHERE p.code = $2), $3, $4, $5, $6, $7) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(new_id())
            .bind(parent.map(str::to_string))
            .bind(code.to_string())
            .bind(zh.to_string())
            .bind(en.to_string())
            .bind(i64::from(*sensitive))
            .bind(i as i64)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        self.forget_labels();
        Ok(())
    }

    pub async fn create_label(
        &self,
        grant: &Grant,
        actor: &Actor,
        new: NewLabel,
    ) -> AppResult<Label> {
        grant.scope(Action::LabelWrite)?;
        let code_ok = !new.code.is_empty()
            && new.code.len() <= 40
            && new
                .code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !code_ok {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "code"));
        }
        if new.name_zh.trim().is_empty() {
            return Err(AppError::required("name_zh"));
        }
        let labels = self.labels().await?;
        let parent_id = match &new.parent_code {
            Some(pc) => Some(
                labels
                    .iter()
                    .find(|l| &l.code == pc)
                    .map(|l| l.id.clone())
                    .ok_or(AppError::not_found("registry.label.not_found"))?,
            ),
            None => None,
        };
        let label = Label {
            id: new_id(),
            parent_id,
            code: new.code,
            name_zh: new.name_zh.trim().to_string(),
            name_en: new.name_en.trim().to_string(),
            sensitive: new.sensitive,
        };
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query("INSERT INTO labels (id, parent_id, code, name_zh, name_en, sensitive, sort_key) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(label.id.clone())
            .bind(label.parent_id.clone())
            .bind(label.code.clone())
            .bind(label.name_zh.clone())
            .bind(label.name_en.clone())
            .bind(i64::from(label.sensitive))
            .bind(labels.len() as i64)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "label.create",
                entity: "label",
                entity_id: &label.id,
                path: None,
                purpose: None,
                before: None,
                after: Some(serde_json::to_value(&label).unwrap_or_default()),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.forget_labels();
        Ok(label)
    }
}
