//! Residents' own data (居民自主更新): a resident reads and exports what Linli holds about their
//! household and asks for corrections; staff with `CorrectionReview` approve (applied at once)
//! or reject them.

use serde::{Deserialize, Serialize};

use linli_core::auth::{Action, Grant, Principal};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, AuditFilter, AuditRecord, Entry};
use crate::db::{Sql, db_err, i64_, opt_i64, opt_str, str_};
use crate::registry::households::{HouseholdPatch, HouseholdView, validate_tenure};
use crate::registry::persons::{PersonPatch, validate_date, validate_name, validate_phone};

pub const FIELDS: [&str; 6] = ["name", "phone", "tenure", "moved_in", "note", "other"];

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Correction {
    pub id: String,
    pub household_id: String,
    pub person_id: Option<String>,
    pub field: String,
    pub new_value: String,
    pub reason: String,
    /// pending, approved, rejected
    pub status: String,
    pub decided_at: Option<i64>,
    pub decision_note: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewCorrection {
    /// The member concerned (for name/phone).
    pub person_id: Option<String>,
    /// name, phone, tenure, moved_in, note, other
    pub field: String,
    pub new_value: String,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    pub approve: bool,
    pub note: Option<String>,
}

/// Everything held about the caller's household, for the resident's own export.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OwnExport {
    pub exported_at: i64,
    pub household: HouseholdView,
    /// The caller's own full ID and phone numbers (other members stay masked).
    pub me: Option<OwnNumbers>,
    /// Who wrote or read this household's records, and why.
    pub processing_log: Vec<AuditRecord>,
    /// What every module holds about the household (reports, devices and alarms, vehicles,
    /// visitor passes, SOS contacts and check-ins, gate passages …), by section.
    #[schema(value_type = Object)]
    pub linked: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OwnNumbers {
    pub person_id: String,
    pub id_number: String,
    pub phone: Option<String>,
}

fn from_row(r: &sqlx::any::AnyRow) -> Correction {
    Correction {
        id: str_(r, "id"),
        household_id: str_(r, "household_id"),
        person_id: opt_str(r, "person_id"),
        field: str_(r, "field"),
        new_value: str_(r, "new_value"),
        reason: str_(r, "reason"),
        status: str_(r, "status"),
        decided_at: opt_i64(r, "decided_at"),
        decision_note: opt_str(r, "decision_note"),
        created_at: i64_(r, "created_at"),
    }
}

const COLS: &str = "id, household_id, person_id, field, new_value, reason, status, decided_at, decision_note, created_at";

impl Store {
    pub(crate) async fn corrections_of_household(
        &self,
        household_id: &str,
    ) -> AppResult<Vec<Correction>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM corrections WHERE household_id = $1 ORDER BY created_at DESC"
        )))
        .bind(household_id.to_string())
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(from_row).collect())
    }

    fn own_household_id(p: &Principal) -> AppResult<String> {
        p.own_households().into_iter().next().ok_or(
            AppError::forbidden().details(serde_json::json!({"reason": "registry.not_a_resident"})),
        )
    }

    /// The resident's own household (their own sensitive labels included).
    pub async fn own_household(&self, p: &Principal) -> AppResult<HouseholdView> {
        let id = Self::own_household_id(p)?;
        let h = self
            .household_row_unscoped(&id)
            .await?
            .ok_or(AppError::not_found("registry.household.not_found"))?;
        let own = Grant::system(Action::SensitiveLabelRead);
        self.household_view(h, Some(&own)).await
    }

    /// The resident's export: the household view, their own full numbers, and the processing log.
    pub async fn own_export(
        &self,
        p: &Principal,
        person_id: Option<&str>,
        sections: &[&super::dossier::RecordSection],
    ) -> AppResult<OwnExport> {
        let household = self.own_household(p).await?;
        let me = match person_id {
            Some(pid) if household.members.iter().any(|m| m.person.id == pid) => {
                let row = sqlx::query("SELECT id_enc, phone_enc FROM persons WHERE id = $1")
                    .bind(pid.to_string())
                    .fetch_one(&self.db.read)
                    .await
                    .map_err(db_err)?;
                let dec = |s: &str| self.cipher.decrypt(s).map_err(|_| AppError::internal());
                Some(OwnNumbers {
                    person_id: pid.to_string(),
                    id_number: dec(&str_(&row, "id_enc"))?,
                    phone: opt_str(&row, "phone_enc").map(|s| dec(&s)).transpose()?,
                })
            }
            _ => None,
        };
        let all = Grant::system(Action::AuditRead);
        let mut log = self
            .audit_list(
                &all,
                &AuditFilter {
                    entity: Some("household".into()),
                    entity_id: Some(household.id.clone()),
                    limit: Some(1000),
                    ..Default::default()
                },
            )
            .await?;
        for m in &household.members {
            log.extend(
                self.audit_list(
                    &all,
                    &AuditFilter {
                        entity: Some("person".into()),
                        entity_id: Some(m.person.id.clone()),
                        limit: Some(1000),
                        ..Default::default()
                    },
                )
                .await?,
            );
        }
        log.sort_by_key(|r| r.seq);
        let linked = self.household_record(p, &household.id, sections).await?;
        Ok(OwnExport {
            exported_at: self.now_ms(),
            household,
            me,
            processing_log: log,
            linked,
        })
    }

    /// A resident asks for a correction of their household's data.
    pub async fn submit_correction(
        &self,
        p: &Principal,
        new: NewCorrection,
    ) -> AppResult<Correction> {
        let hid = Self::own_household_id(p)?;
        let h = self
            .household_row_unscoped(&hid)
            .await?
            .ok_or(AppError::not_found("registry.household.not_found"))?;
        if !FIELDS.contains(&new.field.as_str()) {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "field"));
        }
        let value = new.new_value.trim().to_string();
        if value.is_empty() {
            return Err(AppError::required("new_value"));
        }
        if value.chars().count() > 500 || new.reason.chars().count() > 1000 {
            return Err(AppError::bad_request("validation.too_long").arg("field", "new_value"));
        }
        match new.field.as_str() {
            "name" => {
                validate_name(&value)?;
            }
            "phone" => {
                validate_phone(&value)?;
            }
            "tenure" => {
                validate_tenure(&value)?;
            }
            "moved_in" => {
                validate_date(&value, "moved_in")?;
            }
            _ => {}
        }
        if matches!(new.field.as_str(), "name" | "phone") {
            let pid = new
                .person_id
                .as_deref()
                .ok_or(AppError::required("person_id"))?;
            let member = sqlx::query("SELECT 1 AS x FROM residences WHERE household_id = $1 AND person_id = $2 AND end_date IS NULL")
                .bind(hid.clone())
                .bind(pid.to_string())
                .fetch_optional(&self.db.read)
                .await
                .map_err(db_err)?;
            if member.is_none() {
                return Err(AppError::not_found("registry.person.not_found"));
            }
        }
        let c = Correction {
            id: new_id(),
            household_id: hid,
            person_id: new.person_id.clone(),
            field: new.field.clone(),
            new_value: value,
            reason: new.reason.trim().to_string(),
            status: "pending".into(),
            decided_at: None,
            decision_note: None,
            created_at: self.now_ms(),
        };
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO corrections (id, household_id, path, person_id, field, new_value, reason, status, submitted_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9)",
        )
        .bind(c.id.clone())
        .bind(c.household_id.clone())
        .bind(h.path.clone())
        .bind(c.person_id.clone())
        .bind(c.field.clone())
        .bind(c.new_value.clone())
        .bind(c.reason.clone())
        .bind(p.user_id().to_string())
        .bind(c.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let masked_value = if c.field == "phone" {
            linli_core::phone::mask(&c.new_value)
        } else {
            c.new_value.clone()
        };
        self.audit(
            &mut tx,
            &Actor::from(p),
            Entry {
                action: "correction.submit",
                entity: "household",
                entity_id: &c.household_id,
                path: Some(&h.path),
                purpose: None,
                before: None,
                after: Some(serde_json::json!({ "correction_id": c.id, "field": c.field, "new_value": masked_value })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        // Tell reviewers' open pages that a request arrived.
        self.bus.publish(crate::bus::BusEvent {
            kind: "correction".into(),
            path: h.path.clone(),
            id: c.id.clone(),
            users: Vec::new(),
        });
        Ok(c)
    }

    /// Pending (or all) corrections inside the reviewer's area.
    pub async fn corrections(
        &self,
        grant: &Grant,
        status: Option<&str>,
    ) -> AppResult<Vec<Correction>> {
        let scope = grant.scope(Action::CorrectionReview)?;
        let mut q = Sql::new(&format!("SELECT {COLS} FROM corrections WHERE "));
        q.scope("path", scope.prefixes());
        if let Some(s) = status {
            q.push(" AND status = ").bind(s);
        }
        q.push(" ORDER BY created_at DESC LIMIT 500");
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Approve (and apply) or reject a correction.
    pub async fn decide_correction(
        &self,
        grant: &Grant,
        actor: &Actor,
        id: &str,
        d: Decision,
    ) -> AppResult<Correction> {
        let scope = grant.scope(Action::CorrectionReview)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLS}, path FROM corrections WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?
        .ok_or(AppError::not_found("registry.correction.not_found"))?;
        let path = str_(&row, "path");
        if !scope.covers(&path) {
            return Err(AppError::not_found("registry.correction.not_found"));
        }
        let c = from_row(&row);
        if c.status != "pending" {
            return Err(AppError::conflict("registry.correction.already_decided"));
        }
        if d.approve {
            // Apply through the normal write paths, so validation and audit are the same as staff edits.
            let system_sensitive = Grant::system(Action::SensitiveLabelRead);
            match c.field.as_str() {
                "name" | "phone" => {
                    let pid = c.person_id.clone().ok_or(AppError::required("person_id"))?;
                    let current = self
                        .person(&Grant::system(Action::PersonRead), None, &pid)
                        .await?;
                    let patch = PersonPatch {
                        version: current.version,
                        name: (c.field == "name").then(|| c.new_value.clone()),
                        phone: (c.field == "phone").then(|| c.new_value.clone()),
                        relation: None,
                        labels: None,
                    };
                    self.update_person(
                        &Grant::system(Action::PersonWrite),
                        Some(&system_sensitive),
                        actor,
                        &pid,
                        patch,
                    )
                    .await?;
                }
                "tenure" | "moved_in" | "note" => {
                    let h = self
                        .household_row_unscoped(&c.household_id)
                        .await?
                        .ok_or(AppError::not_found("registry.household.not_found"))?;
                    let patch = HouseholdPatch {
                        version: h.version,
                        tenure: (c.field == "tenure").then(|| c.new_value.clone()),
                        moved_in: (c.field == "moved_in").then(|| c.new_value.clone()),
                        note: (c.field == "note").then(|| c.new_value.clone()),
                    };
                    self.update_household(
                        &Grant::system(Action::HouseholdWrite),
                        None,
                        actor,
                        &c.household_id,
                        patch,
                    )
                    .await?;
                }
                _ => {}
            }
        }
        let status = if d.approve { "approved" } else { "rejected" };
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let res = sqlx::query(
            "UPDATE corrections SET status = $1, decided_by = $2, decided_at = $3, decision_note = $4 WHERE id = $5 AND status = 'pending'",
        )
        .bind(status)
        .bind(actor.id.clone())
        .bind(self.now_ms())
        .bind(d.note.clone())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if res.rows_affected() != 1 {
            return Err(AppError::conflict("registry.correction.already_decided"));
        }
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: if d.approve {
                    "correction.approve"
                } else {
                    "correction.reject"
                },
                entity: "household",
                entity_id: &c.household_id,
                path: Some(&path),
                purpose: None,
                before: None,
                after: Some(serde_json::json!({ "correction_id": id, "note": d.note })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Correction {
            status: status.into(),
            decided_at: Some(self.now_ms()),
            decision_note: d.note,
            ..c
        })
    }
}
