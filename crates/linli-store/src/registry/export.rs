//! Export households and persons as rows (the caller renders XLSX or CSV). Numbers are masked
//! unless the caller holds `PersonReveal` for the whole export and states a purpose; such an
//! export is itself an audited reveal. The persons export uses the import template's columns,
//! so an unmasked export can be imported elsewhere.

use linli_core::auth::{Action, Grant};
use linli_core::import_rows::{HOUSEHOLD_HEADERS, relation_name, tenure_name};
use linli_core::{AppError, AppResult};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err, opt_str, str_};

pub const HOUSEHOLD_EXPORT_HEADERS: [&str; 9] = [
    "户号",
    "社区",
    "楼栋",
    "单元",
    "房号",
    "居住类型",
    "户主",
    "现有人数",
    "入住日期",
];

/// A finished table.
pub struct Exported {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// How to treat sensitive numbers.
pub enum Masking<'a> {
    Masked,
    /// Full numbers: needs a PersonReveal grant covering the export and a purpose.
    Revealed {
        grant: &'a Grant,
        purpose: &'a str,
    },
}

impl Store {
    /// community / building / unit / room names of a room path.
    async fn address_parts(&self, path: &str) -> AppResult<[String; 4]> {
        let ids: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let names = self.place_names(&ids).await?;
        let mut out: [String; 4] = Default::default();
        for id in ids {
            if let Some((kind, name)) = names.get(id) {
                let slot = match kind.as_str() {
                    "community" => 0,
                    "building" => 1,
                    "unit" => 2,
                    "room" => 3,
                    _ => continue,
                };
                out[slot] = name.clone();
            }
        }
        Ok(out)
    }

    pub async fn export_households(&self, grant: &Grant) -> AppResult<Exported> {
        let scope = grant.scope(Action::RegistryExport)?;
        let mut q = Sql::new(
            "SELECT h.id, h.path, h.tenure, h.moved_in, p.name AS head_name,
             (SELECT COUNT(*) FROM residences r WHERE r.household_id = h.id AND r.end_date IS NULL) AS members
             FROM households h LEFT JOIN persons p ON p.id = h.head_person_id WHERE ",
        );
        q.scope("h.path", scope.prefixes()).push(" ORDER BY h.path");
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let [c, b, u, room] = self.address_parts(&str_(r, "path")).await?;
            out.push(vec![
                str_(r, "id"),
                c,
                b,
                u,
                room,
                tenure_name(&str_(r, "tenure"))
                    .unwrap_or("其他")
                    .to_string(),
                opt_str(r, "head_name").unwrap_or_default(),
                crate::db::i64_(r, "members").to_string(),
                opt_str(r, "moved_in").unwrap_or_default(),
            ]);
        }
        Ok(Exported {
            headers: HOUSEHOLD_EXPORT_HEADERS.to_vec(),
            rows: out,
        })
    }

    pub async fn export_persons(
        &self,
        grant: &Grant,
        sensitive: Option<&Grant>,
        actor: &Actor,
        masking: Masking<'_>,
    ) -> AppResult<Exported> {
        let scope = grant.scope(Action::RegistryExport)?;
        if let Masking::Revealed {
            grant: reveal,
            purpose,
        } = &masking
        {
            if reveal.action() != Action::PersonReveal
                || !scope
                    .prefixes()
                    .iter()
                    .all(|p| reveal.allows(Action::PersonReveal, p))
            {
                return Err(AppError::forbidden());
            }
            if purpose.trim().chars().count() < 2 {
                return Err(AppError::bad_request("validation.purpose_required"));
            }
        }
        let mut q = Sql::new(
            "SELECT p.id, p.name, p.id_masked, p.phone_masked, p.id_enc, p.phone_enc, r.relation, r.start_date, h.id AS household_id, h.path, h.tenure
             FROM persons p JOIN residences r ON r.person_id = p.id AND r.end_date IS NULL
             JOIN households h ON h.id = r.household_id WHERE ",
        );
        q.scope("h.path", scope.prefixes())
            .push(" ORDER BY h.path, h.id, CASE r.relation WHEN 'head' THEN 0 ELSE 1 END, p.name");
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        let ids: Vec<String> = rows.iter().map(|r| str_(r, "id")).collect();
        let labels = self.labels_of(&ids).await?;
        let reveal = matches!(masking, Masking::Revealed { .. });
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let path = str_(r, "path");
            let [c, b, u, room] = self.address_parts(&path).await?;
            let show_sensitive =
                sensitive.is_some_and(|g| g.allows(Action::SensitiveLabelRead, &path));
            let (id_number, phone) = if reveal {
                let dec = |s: &str| self.cipher.decrypt(s).map_err(|_| AppError::internal());
                (
                    dec(&str_(r, "id_enc"))?,
                    opt_str(r, "phone_enc")
                        .map(|s| dec(&s))
                        .transpose()?
                        .unwrap_or_default(),
                )
            } else {
                (
                    str_(r, "id_masked"),
                    opt_str(r, "phone_masked").unwrap_or_default(),
                )
            };
            let label_names: Vec<String> = labels
                .get(&str_(r, "id"))
                .map(|ls| {
                    ls.iter()
                        .filter(|(_, s)| show_sensitive || !s)
                        .map(|(l, _)| l.name_zh.clone())
                        .collect()
                })
                .unwrap_or_default();
            out.push(vec![
                str_(r, "household_id"),
                c,
                b,
                u,
                room,
                tenure_name(&str_(r, "tenure"))
                    .unwrap_or("其他")
                    .to_string(),
                str_(r, "name"),
                relation_name(&str_(r, "relation"))
                    .unwrap_or("其他")
                    .to_string(),
                id_number,
                phone,
                label_names.join("、"),
                str_(r, "start_date"),
            ]);
        }
        if let Masking::Revealed { purpose, .. } = masking {
            let mut tx = self.db.begin_write().await.map_err(db_err)?;
            self.audit(
                &mut tx,
                actor,
                Entry {
                    action: "registry.export_revealed",
                    entity: "export",
                    entity_id: "persons",
                    path: scope.prefixes().first().map(String::as_str),
                    purpose: Some(purpose.trim()),
                    before: None,
                    after: Some(
                        serde_json::json!({ "persons": out.len(), "scope": scope.prefixes() }),
                    ),
                },
            )
            .await?;
            tx.commit().await.map_err(db_err)?;
        }
        Ok(Exported {
            headers: HOUSEHOLD_HEADERS.to_vec(),
            rows: out,
        })
    }
}
