//! Persons: names, ID and phone numbers (encrypted, blind-indexed, masked), labels, and the
//! residence that ties each person to a household (and so to a room, grid and community).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};

use linli_core::auth::{Action, Grant};
use linli_core::crypto::FieldCipher;
use linli_core::{AppError, AppResult, idcard, new_id, phone};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err, i64_, opt_str, str_};
use crate::db_fast::FastRow;

pub const RELATIONS: [&str; 7] = [
    "head",
    "spouse",
    "child",
    "parent",
    "grandchild",
    "sibling",
    "other",
];

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct LabelRef {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
}

/// A person as staff see them by default: sensitive numbers masked.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PersonSummary {
    pub id: String,
    pub name: String,
    /// male or female (from the ID number)
    pub gender: String,
    pub birth_year: i64,
    /// e.g. `420102********123X`
    pub id_number_masked: String,
    /// e.g. `138****5678`
    pub phone_masked: Option<String>,
    pub labels: Vec<LabelRef>,
    pub household_id: Option<String>,
    pub relation: Option<String>,
    pub address: Option<String>,
    /// The place path of the person's home (pages decide what the viewer may do here).
    #[serde(skip)]
    pub home_path: Option<String>,
    pub version: i64,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PersonQuery {
    /// The start of the name (surname, or surname and given name).
    pub name: Option<String>,
    /// Exact ID card number (matched through the blind index).
    pub id_number: Option<String>,
    /// Exact mobile number (matched through the blind index).
    pub phone: Option<String>,
    /// Label code, e.g. `elderly_alone`.
    pub label: Option<String>,
    /// A place (community, grid, building, unit, room): persons living under it.
    pub place_id: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// Search results count at most this many matches.
pub const COUNT_CAP: i64 = 500;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PersonPage {
    /// Number of matches, counted up to 500.
    pub total: i64,
    /// True when there are at least 500 matches (then `total` is 500).
    pub total_is_capped: bool,
    pub items: Vec<PersonSummary>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewPerson {
    pub name: String,
    pub id_number: String,
    pub phone: Option<String>,
    /// head, spouse, child, parent, grandchild, sibling, other
    pub relation: String,
    #[serde(default)]
    pub labels: Vec<String>,
    /// Move-in date `YYYY-MM-DD` (default: today).
    pub start_date: Option<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct PersonPatch {
    /// The version you read; a stale version is refused (someone else changed the record).
    pub version: i64,
    pub name: Option<String>,
    /// New mobile number; an empty string removes it.
    pub phone: Option<String>,
    pub relation: Option<String>,
    /// Replaces the labels the caller can see (hidden sensitive labels are kept).
    pub labels: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct RevealRequest {
    /// Why the full numbers are needed; stored in the audit log.
    pub purpose: String,
    /// `id_number` and/or `phone`
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Revealed {
    pub id_number: Option<String>,
    pub phone: Option<String>,
    pub audit_seq: i64,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct MoveOut {
    /// `YYYY-MM-DD` (default: today)
    pub end_date: Option<String>,
    pub reason: String,
}

/// Validated sensitive fields ready to store.
pub(crate) struct SealedPerson {
    pub name: String,
    pub gender: &'static str,
    pub birth_year: i64,
    pub id_enc: String,
    /// The ID's blind index for the first record of this ID number; `local:<person id>` for a
    /// later one, which keeps the blind index in `id_key` (see `registry/links.rs`).
    pub id_bidx: String,
    pub id_key: Option<String>,
    pub id_masked: String,
    pub phone_enc: Option<String>,
    pub phone_bidx: Option<String>,
    pub phone_masked: Option<String>,
}

/// Columns of a `persons` row, in the order of [`SealedPerson::into_row`].
pub(crate) const PERSON_COLUMNS: [&str; 14] = [
    "id",
    "name",
    "gender",
    "birth_year",
    "id_enc",
    "id_bidx",
    "id_key",
    "id_masked",
    "phone_enc",
    "phone_bidx",
    "phone_masked",
    "version",
    "created_at",
    "updated_at",
];

/// Columns of a `residences` row.
/// (`hpath` is the household's path, copied so that searches by place need not join households.)
pub(crate) const RESIDENCE_COLUMNS: [&str; 7] = [
    "id",
    "household_id",
    "person_id",
    "relation",
    "start_date",
    "created_at",
    "hpath",
];

impl SealedPerson {
    /// Make this a later record of an ID number another community's record holds: the unique
    /// column gets `local:<id>`, the blind index moves to `id_key` (found by ID all the same).
    pub(crate) fn as_local_record(&mut self, id: &str) {
        if self.id_key.is_none() {
            self.id_key = Some(std::mem::replace(&mut self.id_bidx, format!("local:{id}")));
        }
    }

    /// The ID number's blind index, wherever this record keeps it.
    pub(crate) fn id_index(&self) -> &str {
        self.id_key.as_deref().unwrap_or(&self.id_bidx)
    }

    /// A new `persons` row (version 1) for bulk inserts.
    pub(crate) fn into_row(self, id: String, now: i64) -> Vec<crate::db::Val> {
        use crate::db::Val;
        vec![
            Val::from(id),
            self.name.into(),
            self.gender.into(),
            self.birth_year.into(),
            self.id_enc.into(),
            self.id_bidx.into(),
            self.id_key.into(),
            self.id_masked.into(),
            self.phone_enc.into(),
            self.phone_bidx.into(),
            self.phone_masked.into(),
            1i64.into(),
            now.into(),
            now.into(),
        ]
    }
}

pub(crate) fn validate_name(name: &str) -> AppResult<String> {
    let n = name.trim();
    if n.is_empty() {
        return Err(AppError::required("name"));
    }
    if n.chars().count() > 50 || n.chars().any(char::is_control) {
        return Err(AppError::bad_request("validation.too_long").arg("field", "name"));
    }
    Ok(n.to_string())
}

pub(crate) fn validate_phone(p: &str) -> AppResult<String> {
    phone::parse_mobile(p).ok_or(AppError::bad_request("validation.phone.invalid"))
}

pub(crate) fn validate_date(d: &str, field: &str) -> AppResult<String> {
    chrono::NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
        .map(|d| d.format("%Y-%m-%d").to_string())
        .map_err(|_| AppError::bad_request("validation.bad_value").arg("field", field.to_string()))
}

pub(crate) fn validate_relation(r: &str) -> AppResult<&'static str> {
    RELATIONS
        .iter()
        .find(|x| **x == r)
        .copied()
        .ok_or(AppError::bad_request("validation.bad_value").arg("field", "relation"))
}

/// Validate and encrypt; `phone` already validated or None.
pub(crate) fn seal(
    cipher: &FieldCipher,
    name: &str,
    id_number: &str,
    phone_number: Option<&str>,
) -> AppResult<SealedPerson> {
    let name = validate_name(name)?;
    let id = idcard::parse(id_number)?;
    let phone_number = phone_number
        .filter(|p| !p.trim().is_empty())
        .map(validate_phone)
        .transpose()?;
    Ok(SealedPerson {
        name,
        gender: if id.male { "male" } else { "female" },
        birth_year: i64::from(chrono::Datelike::year(&id.birth_date)),
        id_enc: cipher.encrypt(&id.number),
        id_bidx: cipher.blind_index("id", &id.number),
        id_key: None,
        id_masked: idcard::mask(&id.number),
        phone_enc: phone_number.as_deref().map(|p| cipher.encrypt(p)),
        phone_bidx: phone_number
            .as_deref()
            .map(|p| cipher.blind_index("phone", p)),
        phone_masked: phone_number.as_deref().map(phone::mask),
    })
}

/// Insert a person row with id `id`; `false` when the ID's registry-wide key was taken
/// meanwhile (`ON CONFLICT DO NOTHING`: decide again, nothing failed).
pub(crate) async fn insert_person(
    tx: &mut Transaction<'static, Any>,
    now: i64,
    id: &str,
    p: &SealedPerson,
) -> AppResult<bool> {
    let r = sqlx::query(
        "INSERT INTO persons (id, name, gender, birth_year, id_enc, id_bidx, id_key, id_masked, phone_enc, phone_bidx, phone_masked, version, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $12) ON CONFLICT (id_bidx) DO NOTHING",
    )
    .bind(id.to_string())
    .bind(p.name.clone())
    .bind(p.gender)
    .bind(p.birth_year)
    .bind(p.id_enc.clone())
    .bind(p.id_bidx.clone())
    .bind(p.id_key.clone())
    .bind(p.id_masked.clone())
    .bind(p.phone_enc.clone())
    .bind(p.phone_bidx.clone())
    .bind(p.phone_masked.clone())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(r.rows_affected() == 1)
}

pub(crate) async fn insert_residence(
    tx: &mut Transaction<'static, Any>,
    now: i64,
    household_id: &str,
    person_id: &str,
    relation: &str,
    start_date: &str,
) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO residences (id, household_id, person_id, relation, start_date, created_at, hpath) \
         VALUES ($1, $2, $3, $4, $5, $6, (SELECT path FROM households WHERE id = $2))",
    )
    .bind(new_id())
    .bind(household_id.to_string())
    .bind(person_id.to_string())
    .bind(relation.to_string())
    .bind(start_date.to_string())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| match db_err(e) {
        e if e.code == "conflict" => AppError::conflict("registry.person.already_resident"),
        e => e,
    })?;
    Ok(())
}

/// Replace a person's labels among `visible` label ids (hidden sensitive labels are untouched).
pub(crate) async fn set_labels(
    tx: &mut Transaction<'static, Any>,
    person_id: &str,
    label_ids: &[String],
    visible: &[String],
) -> AppResult<()> {
    for l in visible {
        if !label_ids.contains(l) {
            sqlx::query("DELETE FROM person_labels WHERE person_id = $1 AND label_id = $2")
                .bind(person_id.to_string())
                .bind(l.clone())
                .execute(&mut **tx)
                .await
                .map_err(db_err)?;
        }
    }
    for l in label_ids {
        sqlx::query(
            "INSERT INTO person_labels (person_id, label_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(person_id.to_string())
        .bind(l.clone())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

fn masked_json(p: &PersonSummary) -> serde_json::Value {
    serde_json::json!({
        "name": p.name, "id_number": p.id_number_masked, "phone": p.phone_masked,
        "labels": p.labels.iter().map(|l| l.code.clone()).collect::<Vec<_>>(),
        "relation": p.relation, "household_id": p.household_id,
    })
}

const SUMMARY_COLUMNS: &str = "SELECT p.id, p.name, p.gender, p.birth_year, p.id_masked, p.phone_masked, p.version, \
     r.relation, h.id AS household_id, h.path AS hpath";

impl Store {
    /// Label codes → ids, refusing unknown codes and sensitive ones the caller may not set.
    pub(crate) async fn label_ids(
        &self,
        codes: &[String],
        allow_sensitive: bool,
    ) -> AppResult<(Vec<String>, Vec<String>)> {
        let all = self.labels().await?;
        let visible: Vec<String> = all
            .iter()
            .filter(|l| allow_sensitive || !l.sensitive)
            .map(|l| l.id.clone())
            .collect();
        let mut ids = Vec::new();
        for c in codes {
            let l = all
                .iter()
                .find(|l| &l.code == c || &l.name_zh == c)
                .ok_or(AppError::bad_request("registry.label.not_found"))?;
            if l.sensitive && !allow_sensitive {
                return Err(AppError::forbidden());
            }
            if !ids.contains(&l.id) {
                ids.push(l.id.clone());
            }
        }
        Ok((ids, visible))
    }

    /// Labels of many persons at once; sensitive ones only where `show_sensitive(person)` holds.
    pub(crate) async fn labels_of(
        &self,
        person_ids: &[String],
    ) -> AppResult<HashMap<String, Vec<(LabelRef, bool)>>> {
        let mut out: HashMap<String, Vec<(LabelRef, bool)>> = HashMap::new();
        for chunk in person_ids.chunks(500) {
            if chunk.is_empty() {
                continue;
            }
            let mut q = Sql::new(
                "SELECT pl.person_id, l.code, l.name_zh, l.name_en, l.sensitive FROM person_labels pl JOIN labels l ON l.id = pl.label_id WHERE ",
            );
            q.in_list(self.backend(), "pl.person_id", chunk);
            q.push(" ORDER BY l.sort_key");
            for r in q.query().fetch_all(&self.db.read).await.map_err(db_err)? {
                out.entry(str_(&r, "person_id")).or_default().push((
                    LabelRef {
                        code: str_(&r, "code"),
                        name_zh: str_(&r, "name_zh"),
                        name_en: str_(&r, "name_en"),
                    },
                    i64_(&r, "sensitive") != 0,
                ));
            }
        }
        Ok(out)
    }

    /// `, (…) AS label_ids`: a person's label ids, comma-separated, selected with the person
    /// so that summaries need no second query.
    pub(crate) fn label_ids_column(&self) -> String {
        format!(
            ", (SELECT {} FROM person_labels lx WHERE lx.person_id = p.id) AS label_ids",
            self.backend().concat_agg("lx.label_id")
        )
    }

    /// Turn rows selecting SUMMARY_COLUMNS and `label_ids` into summaries, hiding sensitive
    /// labels outside `sensitive`. No queries: labels and addresses come from memory.
    pub(crate) async fn summaries(
        &self,
        rows: Vec<FastRow>,
        sensitive: Option<&Grant>,
    ) -> AppResult<Vec<PersonSummary>> {
        let all = self.labels().await?;
        let mut out = Vec::with_capacity(rows.len());
        for mut r in rows {
            let hpath = r.take_str("hpath");
            let show = sensitive.is_some_and(|g| {
                hpath
                    .as_deref()
                    .is_some_and(|p| g.allows(Action::SensitiveLabelRead, p))
            });
            // Labels in the tree's order; sensitive ones only for those who may see them here.
            let mut own: Vec<usize> = r
                .opt_str_ref("label_ids")
                .unwrap_or_default()
                .split(',')
                .filter_map(|x| all.iter().position(|l| l.id == x))
                .filter(|i| show || !all[*i].sensitive)
                .collect();
            own.sort_unstable();
            own.dedup();
            let address = match &hpath {
                Some(p) => Some(self.address(p).await?),
                None => None,
            };
            out.push(PersonSummary {
                labels: own
                    .into_iter()
                    .map(|i| LabelRef {
                        code: all[i].code.clone(),
                        name_zh: all[i].name_zh.clone(),
                        name_en: all[i].name_en.clone(),
                    })
                    .collect(),
                id: r.take_str("id").unwrap_or_default(),
                name: r.take_str("name").unwrap_or_default(),
                gender: r.take_str("gender").unwrap_or_default(),
                birth_year: r.i64("birth_year"),
                id_number_masked: r.take_str("id_masked").unwrap_or_default(),
                phone_masked: r.take_str("phone_masked"),
                household_id: r.take_str("household_id"),
                relation: r.take_str("relation"),
                address,
                home_path: hpath,
                version: r.i64("version"),
            });
        }
        Ok(out)
    }

    /// Search persons living inside the grant's area.
    pub async fn search_persons(
        &self,
        grant: &Grant,
        sensitive: Option<&Grant>,
        f: &PersonQuery,
    ) -> AppResult<PersonPage> {
        let scope = grant.scope(Action::PersonRead)?;
        // A place filter narrows the area to (grant ∩ place): one range, which the planner uses.
        let mut small_place = false;
        let prefixes = match f.place_id.as_deref().filter(|s| !s.is_empty()) {
            Some(pid) => {
                let place = self
                    .place_unscoped(pid)
                    .await?
                    .ok_or(AppError::not_found("registry.place.not_found"))?;
                small_place = matches!(place.kind.as_str(), "building" | "unit" | "room");
                scope.narrowed_to(&place.path)
            }
            None => scope.prefixes().to_vec(),
        };
        let mut label_id = None;
        if let Some(code) = f.label.as_deref().filter(|s| !s.is_empty()) {
            let label = self.labels().await?.into_iter().find(|l| l.code == code);
            let label = label.ok_or(AppError::bad_request("registry.label.not_found"))?;
            // Filtering by a sensitive label would reveal it: only for those who may see it.
            if label.sensitive
                && !sensitive.is_some_and(|g| {
                    scope
                        .prefixes()
                        .iter()
                        .all(|p| g.allows(Action::SensitiveLabelRead, p))
                })
            {
                return Err(AppError::forbidden());
            }
            label_id = Some(label.id);
        }
        let mut q = Sql::new("");
        // The count's conditions when no person-level filter (name, ID, phone) is given: the
        // same rows counted without reading `persons` (one current residence per person).
        let mut lean = Sql::new("");
        // With a label, start from its few holders (CROSS JOIN fixes SQLite's join order;
        // PostgreSQL plans it as an ordinary join).
        // PostgreSQL's planner hashes a whole area's residences to join a label's few holders
        // (3.3 ms for an administrator's scope, where 187 index probes take 1.2 ms): there the
        // holders' keys come from a LATERAL subquery, which probes the residence of each.
        let mut label_keys: Option<Sql> = None;
        let (from, lean_from) = match label_id.clone() {
            Some(lid) => {
                if self.backend() == crate::Backend::Postgres {
                    let mut k = Sql::new(
                        "SELECT r.hpath AS kpath, pl.person_id AS kid FROM person_labels pl CROSS JOIN LATERAL (SELECT r.hpath FROM residences r WHERE r.person_id = pl.person_id AND r.end_date IS NULL AND ",
                    );
                    k.scope("r.hpath", &prefixes);
                    k.push(" LIMIT 1) r WHERE pl.label_id = ").bind(lid.clone());
                    label_keys = Some(k);
                }
                q.push(" WHERE pl.label_id = ").bind(lid.clone()).push(" AND p.id = pl.person_id AND r.person_id = p.id AND r.end_date IS NULL AND h.id = r.household_id AND ");
                lean.push(" WHERE pl.label_id = ")
                    .bind(lid)
                    .push(" AND r.person_id = pl.person_id AND r.end_date IS NULL AND ");
                (
                    " FROM person_labels pl CROSS JOIN persons p CROSS JOIN residences r CROSS JOIN households h",
                    " FROM person_labels pl CROSS JOIN residences r",
                )
            }
            None => {
                q.push(" WHERE ");
                lean.push(" WHERE r.end_date IS NULL AND ");
                (
                    " FROM persons p JOIN residences r ON r.person_id = p.id AND r.end_date IS NULL JOIN households h ON h.id = r.household_id",
                    " FROM residences r",
                )
            }
        };
        q.scope("h.path", &prefixes);
        // A current residence carries its household's path (`hpath`): the lean conditions need
        // neither `persons` nor `households`.
        lean.scope("r.hpath", &prefixes);
        let person_filter = [&f.name, &f.id_number, &f.phone]
            .iter()
            .any(|v| v.as_deref().is_some_and(|s| !s.trim().is_empty()));
        if let Some(name) = f.name.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            // Names match from the start (surname first) through the name index: fast at any
            // scale, and what a community worker types (姓 or 姓名).
            q.push(" AND p.name >= ")
                .bind(name.to_string())
                .push(" AND p.name < ")
                .bind(crate::db::prefix_upper_bound(name));
        }
        if let Some(id) = f
            .id_number
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let norm = idcard::parse(id)
                .map(|c| c.number)
                .unwrap_or_else(|_| id.to_ascii_uppercase());
            // The first record of an ID holds its blind index in `id_bidx`, later records of
            // other communities in `id_key` (`registry/links.rs`); both are found (in scope).
            let bidx = self.cipher.blind_index("id", &norm);
            q.push(" AND (p.id_bidx = ")
                .bind(bidx.clone())
                .push(" OR p.id_key = ")
                .bind(bidx)
                .push(")");
        }
        if let Some(ph) = f.phone.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            let norm = phone::parse_mobile(ph).unwrap_or_else(|| ph.to_string());
            q.push(" AND p.phone_bidx = ")
                .bind(self.cipher.blind_index("phone", &norm));
        }
        let limit = f.limit.unwrap_or(50).clamp(1, 500);
        let offset = f.offset.unwrap_or(0).max(0);
        // A label or a building (or smaller) matches a few hundred people: one pass over their
        // keys gives the total and the page; more than COUNT_CAP falls through to the general way.
        if !person_filter && (label_id.is_some() || small_place) {
            if let Some(page) = self
                .search_narrow(lean_from, &lean, label_keys, limit, offset, sensitive)
                .await?
            {
                return Ok(page);
            }
        }
        let label_ids = self.label_ids_column();
        // Name searches list by name (the name index gives the order); everything else by address
        // (the household path index gives it), so the first page never sorts the whole area.
        let by_name = f.name.as_deref().is_some_and(|n| !n.trim().is_empty());
        let list = if label_id.is_some() && !person_filter {
            // Label holders are spread over the whole area, so they must be sorted by address:
            // sort only the keys (from covering indexes), then read persons for the page alone.
            let mut keys = Sql {
                text: format!(
                    "SELECT r.hpath AS kpath, r.person_id AS kid{lean_from}{}",
                    lean.text
                ),
                vals: lean.vals.clone(),
            };
            keys.push(" ORDER BY r.hpath, r.person_id LIMIT ")
                .bind(limit);
            keys.push(" OFFSET ").bind(offset);
            Sql {
                text: format!(
                    "{SUMMARY_COLUMNS}{label_ids} FROM ({}) k CROSS JOIN persons p CROSS JOIN residences r CROSS JOIN households h \
                     WHERE p.id = k.kid AND r.person_id = k.kid AND r.end_date IS NULL AND h.id = r.household_id ORDER BY k.kpath, k.kid",
                    keys.text
                ),
                vals: keys.vals,
            }
        } else {
            let mut list = Sql {
                text: format!("{SUMMARY_COLUMNS}{label_ids}{from}{}", q.text),
                vals: q.vals.clone(),
            };
            list.push(if by_name {
                " ORDER BY p.name, p.id LIMIT "
            } else {
                " ORDER BY h.path, p.id LIMIT "
            })
            .bind(limit);
            list.push(" OFFSET ").bind(offset);
            list
        };
        let rows = self.db.fetch_all_fast(&list).await?;
        // The first page tells the total when it is not full; otherwise count, up to COUNT_CAP
        // ("500+" is as useful as 8,213 and costs far less).
        let total = if offset == 0 && (rows.len() as i64) < limit {
            rows.len() as i64
        } else {
            let (count_from, cond) = if person_filter {
                (from, q)
            } else {
                (lean_from, lean)
            };
            let count_sql = Sql {
                text: format!(
                    "SELECT COUNT(*) AS n FROM (SELECT 1{count_from}{} LIMIT {COUNT_CAP}) capped",
                    cond.text
                ),
                vals: cond.vals,
            };
            self.db.fetch_one_fast(&count_sql).await?.i64("n")
        };
        Ok(PersonPage {
            total,
            total_is_capped: total >= COUNT_CAP,
            items: self.summaries(rows, sensitive).await?,
        })
    }

    /// Search of a narrow set (see `search_persons`): the keys `(household path, person id)` of
    /// every match come from covering indexes in one pass and are sorted here (byte order, as
    /// `ORDER BY h.path, p.id`); then only the page's persons are read. `None` when more than
    /// `COUNT_CAP` match.
    async fn search_narrow(
        &self,
        from: &str,
        cond: &Sql,
        label_keys: Option<Sql>,
        limit: i64,
        offset: i64,
        sensitive: Option<&Grant>,
    ) -> AppResult<Option<PersonPage>> {
        let (total, page) = if from.contains("person_labels") {
            // Label holders are spread over the area: their keys, sorted here.
            let mut keys = label_keys.unwrap_or_else(|| Sql {
                text: format!(
                    "SELECT r.hpath AS kpath, r.person_id AS kid{from}{}",
                    cond.text
                ),
                vals: cond.vals.clone(),
            });
            keys.push(" LIMIT ").bind(COUNT_CAP + 1);
            let rows = self.db.fetch_all_fast(&keys).await?;
            if rows.len() as i64 > COUNT_CAP {
                return Ok(None);
            }
            let mut keys: Vec<(String, String)> = rows
                .into_iter()
                .map(|mut r| {
                    (
                        r.take_str("kpath").unwrap_or_default(),
                        r.take_str("kid").unwrap_or_default(),
                    )
                })
                .collect();
            keys.sort_unstable();
            let total = keys.len() as i64;
            let page: Vec<String> = keys
                .into_iter()
                .skip(offset as usize)
                .take(limit as usize)
                .map(|(_, id)| id)
                .collect();
            (total, page)
        } else {
            // A building or smaller is one range of the `(hpath, person_id)` index, already in
            // the list's order: count it, then read just the page's ids (nothing sorted, no
            // paths copied out).
            let count = Sql {
                text: format!(
                    "SELECT COUNT(*) AS n FROM (SELECT 1 AS x{from}{} LIMIT {}) capped",
                    cond.text,
                    COUNT_CAP + 1
                ),
                vals: cond.vals.clone(),
            };
            let total = self.db.fetch_one_fast(&count).await?.i64("n");
            if total > COUNT_CAP {
                return Ok(None);
            }
            let mut ids = Sql {
                text: format!("SELECT r.person_id AS kid{from}{}", cond.text),
                vals: cond.vals.clone(),
            };
            ids.push(" ORDER BY r.hpath, r.person_id LIMIT ")
                .bind(limit)
                .push(" OFFSET ")
                .bind(offset);
            let page = if offset < total {
                self.db
                    .fetch_all_fast(&ids)
                    .await?
                    .into_iter()
                    .map(|mut r| r.take_str("kid").unwrap_or_default())
                    .collect()
            } else {
                Vec::new()
            };
            (total, page)
        };
        let mut items = Vec::new();
        if !page.is_empty() {
            // The residence carries the household id and path: no need to read `households`.
            let mut q = Sql::new(&format!(
                "SELECT p.id, p.name, p.gender, p.birth_year, p.id_masked, p.phone_masked, p.version, \
                 r.relation, r.household_id AS household_id, r.hpath AS hpath{} FROM persons p CROSS JOIN residences r \
                 WHERE r.person_id = p.id AND r.end_date IS NULL AND ",
                self.label_ids_column()
            ));
            q.in_list(self.backend(), "p.id", &page);
            let mut rows = self.db.fetch_all_fast(&q).await?;
            // Back into the page's order.
            rows.sort_by_key(|r| page.iter().position(|id| r.opt_str_ref("id") == Some(id)));
            items = self.summaries(rows, sensitive).await?;
        }
        Ok(Some(PersonPage {
            total,
            total_is_capped: total >= COUNT_CAP,
            items,
        }))
    }

    /// The household path a person belongs to (current residence, else the latest one).
    pub(crate) async fn person_path(&self, person_id: &str) -> AppResult<Option<(String, String)>> {
        let q = Sql::new(
            "SELECT h.id, h.path FROM residences r JOIN households h ON h.id = r.household_id
             WHERE r.person_id = $1 ORDER BY CASE WHEN r.end_date IS NULL THEN 0 ELSE 1 END, r.start_date DESC LIMIT 1",
        )
        .arg(person_id);
        let row = self.db.fetch_optional_fast(&q).await?;
        Ok(row.map(|r| (r.str("id"), r.str("path"))))
    }

    /// Whether a record at the place `place_path` (a device, a gate) may name `person_id`: the
    /// person lives there now — a current residence inside the area of that place (its
    /// community; the place's own subtree when it lies above any community) — and inside
    /// `scope`, the area of the caller's grant. A person of another community, one who moved
    /// away, and an unknown id are all "no", so a caller cannot tell them apart.
    pub(crate) async fn person_of_area(
        &self,
        person_id: &str,
        place_path: &str,
        scope: &linli_core::auth::Scope<'_>,
    ) -> AppResult<bool> {
        let Some(home) = self.current_home_path(person_id).await? else {
            return Ok(false);
        };
        let area = self.area_of(place_path).await?;
        Ok(home.starts_with(area.as_str()) && scope.covers(&home))
    }

    /// The household path a person lives in now (none: no current residence).
    pub(crate) async fn current_home_path(&self, person_id: &str) -> AppResult<Option<String>> {
        let q = Sql::new(
            "SELECT h.path FROM residences r JOIN households h ON h.id = r.household_id \
             WHERE r.person_id = $1 AND r.end_date IS NULL",
        )
        .arg(person_id);
        Ok(self
            .db
            .fetch_optional_fast(&q)
            .await?
            .map(|r| r.str("path")))
    }

    /// The area a place belongs to for naming people: the community that holds it (itself
    /// when it is one), else the place itself (a street's or district's own place).
    pub(crate) async fn area_of(&self, place_path: &str) -> AppResult<String> {
        let q = Sql::new(
            "SELECT path FROM places WHERE kind = 'community' AND substr($1, 1, length(path)) = path",
        )
        .arg(place_path);
        Ok(self
            .db
            .fetch_optional_fast(&q)
            .await?
            .map(|r| r.str("path"))
            .unwrap_or_else(|| place_path.to_string()))
    }

    /// One person inside the grant (not found otherwise).
    pub async fn person(
        &self,
        grant: &Grant,
        sensitive: Option<&Grant>,
        id: &str,
    ) -> AppResult<PersonSummary> {
        let (_, path) = self
            .person_path(id)
            .await?
            .ok_or(AppError::not_found("registry.person.not_found"))?;
        if !grant
            .scope_in(&[Action::PersonRead, Action::PersonWrite])?
            .covers(&path)
        {
            return Err(AppError::not_found("registry.person.not_found"));
        }
        let q = Sql::new(&format!(
            "{SUMMARY_COLUMNS}{} FROM persons p LEFT JOIN residences r ON r.person_id = p.id AND r.end_date IS NULL
             LEFT JOIN households h ON h.id = r.household_id WHERE p.id = $1",
            self.label_ids_column()
        ))
        .arg(id);
        let rows = self.db.fetch_all_fast(&q).await?;
        let mut s = self.summaries(rows, sensitive).await?;
        s.pop()
            .ok_or(AppError::not_found("registry.person.not_found"))
    }

    /// Add a person to a household (or move an existing person without a current home in).
    ///
    /// The ID number decides, among the records the caller may see (their grant's area), whether
    /// this is someone already registered there: living in a household now is a 409
    /// `registry.person.duplicate_id`; moved out, they move in again — if the name matches too
    /// (else 409 `registry.person.name_mismatch`). Records outside the caller's area are never
    /// reused nor revealed: the caller gets a record of their own with exactly what they
    /// entered, the same answer whether the ID number is registered elsewhere or not, and when
    /// another community's record has this ID **and this name**, that community is asked to
    /// confirm the link (`registry/links.rs`); a different name asks nobody.
    pub async fn add_person(
        &self,
        grant: &Grant,
        sensitive: Option<&Grant>,
        actor: &Actor,
        household_id: &str,
        new: NewPerson,
    ) -> AppResult<PersonSummary> {
        grant.scope(Action::PersonWrite)?;
        self.add_member(grant, sensitive, actor, household_id, new)
            .await
    }

    /// [`Store::add_person`] for a caller writing with `grant` (`PersonWrite`, or
    /// `HouseholdWrite` when a household is created with its head): its area is the area whose
    /// records the caller may reuse.
    pub(crate) async fn add_member(
        &self,
        grant: &Grant,
        sensitive: Option<&Grant>,
        actor: &Actor,
        household_id: &str,
        new: NewPerson,
    ) -> AppResult<PersonSummary> {
        let own: Vec<String> = grant
            .scope_in(&[Action::PersonWrite, Action::HouseholdWrite])?
            .prefixes()
            .to_vec();
        let hh = self.household_row(grant, household_id).await?;
        let relation = validate_relation(&new.relation)?;
        let start = match &new.start_date {
            Some(d) => validate_date(d, "start_date")?,
            None => self.clock.today(),
        };
        let mut sealed = seal(
            &self.cipher,
            &new.name,
            &new.id_number,
            new.phone.as_deref(),
        )?;
        let allow_sensitive =
            sensitive.is_some_and(|g| g.allows(Action::SensitiveLabelRead, &hh.path));
        let (label_ids, visible) = self.label_ids(&new.labels, allow_sensitive).await?;
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let mut attempt = 0;
        let person_id = loop {
            attempt += 1;
            let matches = super::links::id_matches(&mut tx, sealed.id_index()).await?;
            let covered = |m: &super::links::IdMatch| {
                m.home
                    .as_deref()
                    .is_some_and(|h| own.iter().any(|p| h.starts_with(p.as_str())))
            };
            if let Some(m) = super::links::best(matches.iter().filter(|m| covered(m))) {
                if m.current {
                    return Err(AppError::conflict("registry.person.duplicate_id"));
                }
                if m.name != sealed.name {
                    return Err(AppError::conflict("registry.person.name_mismatch"));
                }
                break m.id.clone();
            }
            let id = new_id();
            let foreign = super::links::best(matches.iter());
            if foreign.is_some() {
                sealed.as_local_record(&id);
            }
            if insert_person(&mut tx, now, &id, &sealed).await? {
                if let Some(f) = foreign.filter(|f| f.name == sealed.name) {
                    self.request_link(&mut tx, actor, f, &id, &sealed.name, &hh.path)
                        .await?;
                }
                break id;
            }
            // Another record of this ID was written meanwhile: decide again, once.
            if attempt > 1 {
                return Err(AppError::conflict("conflict"));
            }
        };
        insert_residence(&mut tx, now, &hh.id, &person_id, relation, &start)
            .await
            .map_err(|e| {
                if e.code == "registry.person.already_resident" {
                    AppError::conflict("registry.person.duplicate_id")
                } else {
                    e
                }
            })?;
        if relation == "head" {
            sqlx::query("UPDATE households SET head_person_id = $1, updated_at = $2 WHERE id = $3")
                .bind(person_id.clone())
                .bind(now)
                .bind(hh.id.clone())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        set_labels(&mut tx, &person_id, &label_ids, &visible).await?;
        let after = serde_json::json!({
            "name": sealed.name, "id_number": sealed.id_masked, "phone": sealed.phone_masked,
            "relation": relation, "household_id": hh.id, "start_date": start, "labels": new.labels,
        });
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "person.add",
                entity: "person",
                entity_id: &person_id,
                path: Some(&hh.path),
                purpose: None,
                before: None,
                after: Some(after),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        let read = Grant::system(Action::PersonRead);
        self.person(&read, sensitive, &person_id).await
    }

    pub async fn update_person(
        &self,
        grant: &Grant,
        sensitive: Option<&Grant>,
        actor: &Actor,
        id: &str,
        patch: PersonPatch,
    ) -> AppResult<PersonSummary> {
        let scope = grant.scope(Action::PersonWrite)?;
        let read = Grant::system(Action::PersonRead);
        let before = self.person(&read, sensitive, id).await?;
        let (hh_id, path) = self
            .person_path(id)
            .await?
            .ok_or(AppError::not_found("registry.person.not_found"))?;
        if !scope.covers(&path) {
            return Err(AppError::not_found("registry.person.not_found"));
        }
        if before.version != patch.version {
            return Err(AppError::conflict("conflict"));
        }
        let name = patch.name.as_deref().map(validate_name).transpose()?;
        let relation = patch
            .relation
            .as_deref()
            .map(validate_relation)
            .transpose()?;
        let phone_change: Option<Option<String>> = match patch.phone.as_deref().map(str::trim) {
            None => None,
            Some("") => Some(None),
            Some(p) => Some(Some(validate_phone(p)?)),
        };
        let allow_sensitive =
            sensitive.is_some_and(|g| g.allows(Action::SensitiveLabelRead, &path));
        let labels = match &patch.labels {
            Some(codes) => Some(self.label_ids(codes, allow_sensitive).await?),
            None => None,
        };
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let mut q = Sql::new("UPDATE persons SET version = version + 1, updated_at = ");
        q.bind(self.now_ms());
        if let Some(n) = &name {
            q.push(", name = ").bind(n.clone());
        }
        if let Some(p) = &phone_change {
            q.push(", phone_enc = ")
                .bind(p.as_deref().map(|p| self.cipher.encrypt(p)));
            q.push(", phone_bidx = ")
                .bind(p.as_deref().map(|p| self.cipher.blind_index("phone", p)));
            q.push(", phone_masked = ")
                .bind(p.as_deref().map(phone::mask));
        }
        q.push(" WHERE id = ")
            .bind(id)
            .push(" AND version = ")
            .bind(patch.version);
        let res = q.query().execute(&mut *tx).await.map_err(db_err)?;
        if res.rows_affected() != 1 {
            return Err(AppError::conflict("conflict"));
        }
        if let Some(rel) = relation {
            sqlx::query(
                "UPDATE residences SET relation = $1 WHERE person_id = $2 AND end_date IS NULL",
            )
            .bind(rel)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if rel == "head" {
                sqlx::query("UPDATE households SET head_person_id = $1 WHERE id = $2")
                    .bind(id.to_string())
                    .bind(hh_id.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
        }
        if let Some((ids, visible)) = &labels {
            set_labels(&mut tx, id, ids, visible).await?;
        }
        let mut after = before.clone();
        if let Some(n) = name {
            after.name = n;
        }
        if let Some(p) = &phone_change {
            after.phone_masked = p.as_deref().map(phone::mask);
        }
        if let Some(r) = relation {
            after.relation = Some(r.to_string());
        }
        if let Some(codes) = &patch.labels {
            after.labels = codes
                .iter()
                .map(|c| LabelRef {
                    code: c.clone(),
                    name_zh: String::new(),
                    name_en: String::new(),
                })
                .collect();
        }
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "person.update",
                entity: "person",
                entity_id: id,
                path: Some(&path),
                purpose: None,
                before: Some(masked_json(&before)),
                after: Some(masked_json(&after)),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.person(&read, sensitive, id).await
    }

    /// Full ID / phone numbers, for a stated purpose, audited.
    pub async fn reveal_person(
        &self,
        grant: &Grant,
        actor: &Actor,
        id: &str,
        req: &RevealRequest,
    ) -> AppResult<Revealed> {
        let scope = grant.scope(Action::PersonReveal)?;
        let purpose = req.purpose.trim();
        if purpose.chars().count() < 2 || purpose.chars().count() > 200 {
            return Err(AppError::bad_request("validation.purpose_required"));
        }
        let want_id = req.fields.iter().any(|f| f == "id_number");
        let want_phone = req.fields.iter().any(|f| f == "phone");
        if !(want_id || want_phone) || req.fields.iter().any(|f| f != "id_number" && f != "phone") {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "fields"));
        }
        let (_, path) = self
            .person_path(id)
            .await?
            .ok_or(AppError::not_found("registry.person.not_found"))?;
        if !scope.covers(&path) {
            return Err(AppError::not_found("registry.person.not_found"));
        }
        let row = sqlx::query("SELECT id_enc, phone_enc FROM persons WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(&self.db.read)
            .await
            .map_err(db_err)?;
        let decrypt = |s: String| {
            self.cipher.decrypt(&s).map_err(|e| {
                tracing::error!(person = id, error = %e, "cannot decrypt a stored field");
                AppError::internal()
            })
        };
        let id_number = if want_id {
            Some(decrypt(str_(&row, "id_enc"))?)
        } else {
            None
        };
        let phone_number = match (want_phone, opt_str(&row, "phone_enc")) {
            (true, Some(enc)) => Some(decrypt(enc)?),
            _ => None,
        };
        // The reveal is only returned once its audit record is committed.
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let seq = self
            .audit(
                &mut tx,
                actor,
                Entry {
                    action: "person.reveal",
                    entity: "person",
                    entity_id: id,
                    path: Some(&path),
                    purpose: Some(purpose),
                    before: None,
                    after: Some(serde_json::json!({ "fields": req.fields })),
                },
            )
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Revealed {
            id_number,
            phone: phone_number,
            audit_seq: seq,
        })
    }

    /// End a person's current residence (history is kept, never deleted).
    pub async fn move_out(
        &self,
        grant: &Grant,
        actor: &Actor,
        person_id: &str,
        m: &MoveOut,
    ) -> AppResult<()> {
        let scope = grant.scope(Action::HouseholdWrite)?;
        let end = match &m.end_date {
            Some(d) => validate_date(d, "end_date")?,
            None => self.clock.today(),
        };
        if m.reason.trim().is_empty() {
            return Err(AppError::required("reason"));
        }
        let row = sqlx::query(
            "SELECT r.id, r.household_id, r.start_date, h.path FROM residences r JOIN households h ON h.id = r.household_id
             WHERE r.person_id = $1 AND r.end_date IS NULL",
        )
        .bind(person_id.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?
        .ok_or(AppError::not_found("registry.residence.not_found"))?;
        let path = str_(&row, "path");
        if !scope.covers(&path) {
            return Err(AppError::not_found("registry.residence.not_found"));
        }
        if end < str_(&row, "start_date") {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "end_date"));
        }
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let res = sqlx::query("UPDATE residences SET end_date = $1, end_reason = $2 WHERE id = $3 AND end_date IS NULL")
            .bind(end.clone())
            .bind(m.reason.trim().to_string())
            .bind(str_(&row, "id"))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if res.rows_affected() != 1 {
            return Err(AppError::conflict("conflict"));
        }
        sqlx::query("UPDATE households SET head_person_id = NULL, updated_at = $1 WHERE id = $2 AND head_person_id = $3")
            .bind(self.now_ms())
            .bind(str_(&row, "household_id"))
            .bind(person_id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "person.move_out",
                entity: "person",
                entity_id: person_id,
                path: Some(&path),
                purpose: None,
                before: None,
                after: Some(serde_json::json!({ "household_id": str_(&row, "household_id"), "end_date": end, "reason": m.reason.trim() })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)
    }
}
