//! Household import from Excel/CSV (how community workers actually work).
//!
//! Parse and validate every row first (a dry run stops there and returns the preview), then
//! write all good households in one transaction. Persons are matched on the ID blind index, so
//! importing the same file twice changes nothing.

use std::collections::HashMap;

use serde::Serialize;

use linli_core::auth::{Action, Grant};
use linli_core::crypto::sha256_hex;
use linli_core::import_rows::{self, ImportHousehold, RowIssue};
use linli_core::sheet::{self, SheetError};
use linli_core::{AppError, AppResult, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, Val, db_err, insert_many, opt_str, str_};
use crate::registry::links::{IdMatch, best};
use crate::registry::persons::seal;

/// At most this many data rows per file.
pub const MAX_ROWS: usize = 500_000;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportIssue {
    /// Row number as Excel shows it (header = row 1).
    pub row: usize,
    pub column: Option<String>,
    pub code: String,
    /// Localized explanation.
    pub message: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub dry_run: bool,
    pub total_rows: usize,
    pub households_in_file: usize,
    /// Households written (or that would be written, in a dry run).
    pub households_created: usize,
    /// Households already present (matched by the head's ID number).
    pub households_existing: usize,
    pub persons_created: usize,
    pub persons_moved_in: usize,
    pub persons_unchanged: usize,
    pub rows_rejected: usize,
    pub issues: Vec<ImportIssue>,
}

struct RawIssue {
    row: usize,
    column: Option<String>,
    code: &'static str,
    value: Option<String>,
    args: Vec<(&'static str, String)>,
}

impl From<RowIssue> for RawIssue {
    fn from(i: RowIssue) -> Self {
        RawIssue {
            row: i.row,
            column: i.column,
            code: i.code,
            value: i.value,
            args: Vec::new(),
        }
    }
}

/// What to do with one household of the file.
struct Plan {
    household_id: String,
    new_household: bool,
    room_id: String,
    path: String,
    hh: ImportHousehold,
    /// (person index in hh.persons, existing person id if any)
    members: Vec<(usize, Option<String>)>,
    /// New members whose ID number another community's record holds (by member index): they
    /// get a record of their own, and that community is asked to confirm the link when the
    /// name matches too (`Some`, `registry/links.rs`).
    elsewhere: HashMap<usize, Option<IdMatch>>,
}

/// An existing record of an ID number in the file.
struct Existing {
    m: IdMatch,
    /// Its current household.
    household: Option<String>,
}

/// A spreadsheet refused by its reader (not a table, or beyond a limit), as a localized 400.
fn sheet_error(e: SheetError) -> AppError {
    e.args()
        .into_iter()
        .fold(AppError::bad_request(e.code()), |err, (k, v)| err.arg(k, v))
}

impl Store {
    pub async fn import_households(
        &self,
        grant: &Grant,
        sensitive: Option<&Grant>,
        actor: &Actor,
        bytes: &[u8],
        dry_run: bool,
        lang: linli_core::i18n::Lang,
    ) -> AppResult<ImportReport> {
        grant.scope(Action::RegistryImport)?;
        let started = std::time::Instant::now();
        let table = sheet::read_table(bytes, MAX_ROWS).map_err(sheet_error)?;
        let parsed = import_rows::parse_households(&table).map_err(|issues| {
            let first = issues.first().and_then(|i| i.column.clone()).unwrap_or_default();
            AppError::bad_request("import.missing_column")
                .arg("column", first)
                .details(serde_json::json!({ "missing": issues.iter().filter_map(|i| i.column.clone()).collect::<Vec<_>>() }))
        })?;
        let mut issues: Vec<RawIssue> = parsed.issues.into_iter().map(RawIssue::from).collect();
        tracing::info!(
            rows = parsed.total_rows,
            ms = started.elapsed().as_millis() as u64,
            "import: parsed and validated"
        );

        // Rooms in the caller's area, addressed by names as the spreadsheet writes them.
        let rooms = self.room_directory(grant).await?;
        let labels = self.labels().await?;
        let may_sensitive =
            |path: &str| sensitive.is_some_and(|g| g.allows(Action::SensitiveLabelRead, path));

        // Existing persons by blind index: (person id, current household id).
        // Each person's ID blind index, computed once (an HMAC each).
        let bidx_of: Vec<Vec<String>> = parsed
            .households
            .iter()
            .map(|h| {
                h.persons
                    .iter()
                    .map(|p| self.cipher.blind_index("id", &p.id_number))
                    .collect()
            })
            .collect();
        let all_ids: Vec<String> = bidx_of.iter().flatten().cloned().collect();
        // Only records of the importer's area are theirs to reuse (or to clash with); another
        // community's record of the same ID is never reused nor reported, exactly as in
        // `Store::add_person`: the row gets a record of its own.
        let area = grant.scope(Action::RegistryImport)?;
        let mut existing: HashMap<String, Existing> = HashMap::new();
        let mut elsewhere: HashMap<String, Option<IdMatch>> = HashMap::new();
        for (bidx, found) in self.persons_by_bidx(&all_ids).await? {
            let (mine, others): (Vec<Existing>, Vec<Existing>) = found
                .into_iter()
                .partition(|e| e.m.home.as_deref().is_some_and(|h| area.covers(h)));
            if let Some(m) = best(mine.iter().map(|e| &e.m)) {
                let id = m.id.clone();
                if let Some(e) = mine.into_iter().find(|e| e.m.id == id) {
                    existing.insert(bidx, e);
                }
            } else if !others.is_empty() {
                elsewhere.insert(bidx, best(others.iter().map(|e| &e.m)).cloned());
            }
        }
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "import: matched rooms and existing persons"
        );

        let mut plans: Vec<Plan> = Vec::new();
        let mut persons_created = 0;
        let mut persons_moved_in = 0;
        let mut persons_unchanged = 0;
        let mut households_existing = 0;
        let households_in_file = parsed.households.len();
        for (hh, bidx_of) in parsed.households.into_iter().zip(bidx_of) {
            let all_rows: Vec<usize> = hh.persons.iter().map(|p| p.row).collect();
            let reject_all = |issues: &mut Vec<RawIssue>, head_issue: RawIssue| {
                let head_row = head_issue.row;
                issues.push(head_issue);
                for r in all_rows.iter().filter(|r| **r != head_row) {
                    issues.push(RawIssue {
                        row: *r,
                        column: None,
                        code: "import.household_head_invalid",
                        value: None,
                        args: Vec::new(),
                    });
                }
            };
            let head = &hh.persons[0];
            let key = (
                hh.community.clone(),
                hh.building.clone(),
                hh.unit.clone(),
                hh.room.clone(),
            );
            let Some((room_id, path)) = rooms.get(&key).cloned() else {
                reject_all(
                    &mut issues,
                    RawIssue {
                        row: head.row,
                        column: Some("房号".into()),
                        code: "import.unknown_place",
                        value: Some(format!("{} {} {} {}", key.0, key.1, key.2, key.3)),
                        args: Vec::new(),
                    },
                );
                continue;
            };
            // Labels must exist, and sensitive ones need the right to see them.
            let mut bad_label: HashMap<usize, RawIssue> = HashMap::new();
            for (i, p) in hh.persons.iter().enumerate() {
                for name in &p.labels {
                    match labels
                        .iter()
                        .find(|l| &l.name_zh == name || &l.code == name)
                    {
                        Some(l) if l.sensitive && !may_sensitive(&path) => {
                            bad_label.entry(i).or_insert(RawIssue {
                                row: p.row,
                                column: Some("标签".into()),
                                code: "forbidden",
                                value: Some(name.clone()),
                                args: Vec::new(),
                            });
                        }
                        Some(_) => {}
                        None => {
                            bad_label.entry(i).or_insert(RawIssue {
                                row: p.row,
                                column: Some("标签".into()),
                                code: "import.unknown_label",
                                value: Some(name.clone()),
                                args: vec![("label", name.clone())],
                            });
                        }
                    }
                }
            }
            if let Some(issue) = bad_label.remove(&0) {
                reject_all(&mut issues, issue);
                continue;
            }
            let existing_household = existing.get(&bidx_of[0]).and_then(|e| e.household.clone());
            let household_id = existing_household.clone().unwrap_or_else(new_id);
            if existing_household.is_some() {
                households_existing += 1;
            }
            let mut members = Vec::new();
            let mut linked = HashMap::new();
            for (i, p) in hh.persons.iter().enumerate() {
                if let Some(issue) = bad_label.remove(&i) {
                    issues.push(issue);
                    continue;
                }
                match existing.get(&bidx_of[i]) {
                    Some(Existing {
                        household: Some(h), ..
                    }) if *h == household_id => persons_unchanged += 1,
                    Some(Existing {
                        household: Some(_), ..
                    }) => {
                        issues.push(RawIssue {
                            row: p.row,
                            column: Some("身份证号".into()),
                            code: "import.id_belongs_to_other",
                            value: None,
                            args: Vec::new(),
                        });
                        continue;
                    }
                    Some(Existing { m, household: None }) if m.name != p.name.trim() => {
                        // A former resident of the importer's own area, under another name.
                        issues.push(RawIssue {
                            row: p.row,
                            column: Some("姓名".into()),
                            code: "import.name_mismatch",
                            value: None,
                            args: Vec::new(),
                        });
                        continue;
                    }
                    Some(Existing { m, household: None }) => {
                        persons_moved_in += 1;
                        members.push((i, Some(m.id.clone())));
                    }
                    None => {
                        persons_created += 1;
                        if let Some(target) = elsewhere.get(&bidx_of[i]) {
                            let same_name =
                                target.as_ref().filter(|t| t.name == p.name.trim()).cloned();
                            linked.insert(members.len(), same_name);
                        }
                        members.push((i, None));
                    }
                }
            }
            plans.push(Plan {
                household_id,
                new_household: existing_household.is_none(),
                room_id,
                path,
                hh,
                members,
                elsewhere: linked,
            });
        }

        issues.sort_by_key(|i| i.row);
        let rows_rejected = {
            let mut rows: Vec<usize> = issues.iter().map(|i| i.row).collect();
            rows.dedup();
            rows.len()
        };
        let households_created = plans.iter().filter(|p| p.new_household).count();
        let report = ImportReport {
            dry_run,
            total_rows: parsed.total_rows,
            households_in_file,
            households_created,
            households_existing,
            persons_created,
            persons_moved_in,
            persons_unchanged,
            rows_rejected,
            issues: issues
                .into_iter()
                .map(|i| ImportIssue {
                    message: linli_core::i18n::t_args(lang, i.code, &i.args),
                    row: i.row,
                    column: i.column,
                    code: i.code.to_string(),
                    value: i.value,
                })
                .collect(),
        };
        if dry_run || (households_created == 0 && persons_created == 0 && persons_moved_in == 0) {
            return Ok(report);
        }
        self.write_import(actor, grant, &plans, &labels, bytes, &report)
            .await?;
        Ok(report)
    }

    /// (community, building, unit, room) names → (room id, room path), inside the grant.
    pub(crate) async fn room_directory(
        &self,
        grant: &Grant,
    ) -> AppResult<HashMap<(String, String, String, String), (String, String)>> {
        let mut q = Sql::new(
            "SELECT id, parent_id, kind, name, path FROM places WHERE kind IN ('community', 'grid', 'building', 'unit', 'room') AND ",
        );
        q.scope("path", grant.scope(Action::RegistryImport)?.prefixes());
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        let by_id: HashMap<String, (Option<String>, String, String)> = rows
            .iter()
            .map(|r| {
                (
                    str_(r, "id"),
                    (opt_str(r, "parent_id"), str_(r, "kind"), str_(r, "name")),
                )
            })
            .collect();
        let mut out = HashMap::new();
        for r in rows.iter().filter(|r| str_(r, "kind") == "room") {
            let (mut unit, mut building, mut community) = (None, None, None);
            let mut cur = opt_str(r, "parent_id");
            while let Some(id) = cur {
                let Some((parent, kind, name)) = by_id.get(&id) else {
                    break;
                };
                match kind.as_str() {
                    "unit" => unit = Some(name.clone()),
                    "building" => building = Some(name.clone()),
                    "community" => community = Some(name.clone()),
                    _ => {}
                }
                cur = parent.clone();
            }
            if let (Some(c), Some(b), Some(u)) = (community, building, unit) {
                out.insert((c, b, u, str_(r, "name")), (str_(r, "id"), str_(r, "path")));
            }
        }
        Ok(out)
    }

    /// Blind index → every record holding that ID number (in the unique column or, for later
    /// records of other communities, in `id_key`), with where it lives.
    async fn persons_by_bidx(&self, bidx: &[String]) -> AppResult<HashMap<String, Vec<Existing>>> {
        let mut out: HashMap<String, Vec<Existing>> = HashMap::new();
        let mut former: Vec<(String, usize)> = Vec::new();
        for chunk in bidx.chunks(500) {
            let mut q = Sql::new(
                "SELECT p.id, p.name, COALESCE(p.id_key, p.id_bidx) AS k, r.household_id, COALESCE(r.hpath, h.path) AS home \
                 FROM persons p LEFT JOIN residences r ON r.person_id = p.id AND r.end_date IS NULL \
                 LEFT JOIN households h ON h.id = r.household_id WHERE p.id_bidx IN (",
            );
            q.bind_list(chunk);
            q.push(") OR p.id_key IN (");
            q.bind_list(chunk);
            q.push(")");
            for mut r in self.db.fetch_all_fast(&q).await? {
                let k = r.take_str("k").unwrap_or_default();
                let household = r.take_str("household_id");
                let e = Existing {
                    m: IdMatch {
                        id: r.take_str("id").unwrap_or_default(),
                        name: r.take_str("name").unwrap_or_default(),
                        current: household.is_some(),
                        home: r.take_str("home"),
                    },
                    household,
                };
                let list = out.entry(k.clone()).or_default();
                if e.m.home.is_none() {
                    former.push((k, list.len()));
                }
                list.push(e);
            }
        }
        // Records without a current home: where they lived last (few; one lookup each).
        for (k, i) in former {
            if let Some(e) = out.get_mut(&k).and_then(|l| l.get_mut(i)) {
                e.m.home = self.person_path(&e.m.id).await?.map(|(_, p)| p);
            }
        }
        Ok(out)
    }

    async fn write_import(
        &self,
        actor: &Actor,
        grant: &Grant,
        plans: &[Plan],
        labels: &[crate::registry::labels::Label],
        bytes: &[u8],
        report: &ImportReport,
    ) -> AppResult<()> {
        let now = self.now_ms();
        let t0 = std::time::Instant::now();
        let today = self.clock.today();
        // Seal the new persons first and give them ids in blind-index order: the primary key and
        // the unique ID index then grow at their ends instead of splitting pages all over the
        // file (measured: twice as fast for 250,000 persons on SQLite).
        let todo: Vec<(usize, usize)> = plans
            .iter()
            .enumerate()
            .flat_map(|(pi, plan)| {
                plan.members
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, existing))| existing.is_none())
                    .map(move |(mi, _)| (pi, mi))
            })
            .collect();
        // Encryption and blind indexes are pure CPU: one share of the persons per core.
        let seal_one = |&(pi, mi): &(usize, usize)| {
            let p = &plans[pi].hh.persons[plans[pi].members[mi].0];
            seal(&self.cipher, &p.name, &p.id_number, p.phone.as_deref()).map(|s| (pi, mi, s))
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let mut sealed: Vec<(usize, usize, crate::registry::persons::SealedPerson)> = if threads > 1
            && todo.len() >= 10_000
        {
            let per = todo.len().div_ceil(threads);
            std::thread::scope(|sc| {
                let parts: Vec<_> = todo
                    .chunks(per)
                    .map(|part| {
                        sc.spawn(move || part.iter().map(seal_one).collect::<AppResult<Vec<_>>>())
                    })
                    .collect();
                let mut all = Vec::with_capacity(todo.len());
                for h in parts {
                    all.extend(h.join().map_err(|_| AppError::internal())??);
                }
                AppResult::Ok(all)
            })?
        } else {
            todo.iter().map(seal_one).collect::<AppResult<Vec<_>>>()?
        };
        sealed.sort_by(|a, b| a.2.id_bidx.cmp(&b.2.id_bidx));
        let mut new_ids: HashMap<(usize, usize), String> = HashMap::with_capacity(sealed.len());
        let mut persons = Vec::with_capacity(sealed.len());
        let mut person_labels = Vec::new();
        let mut links: Vec<(IdMatch, String, String, String)> = Vec::new();
        for (pi, mi, mut s) in sealed {
            let id = new_id();
            let p = &plans[pi].hh.persons[plans[pi].members[mi].0];
            if let Some(target) = plans[pi].elsewhere.get(&mi) {
                // Another community holds this ID: a record of this community's own.
                s.as_local_record(&id);
                if let Some(t) = target {
                    links.push((
                        t.clone(),
                        id.clone(),
                        s.name.clone(),
                        plans[pi].path.clone(),
                    ));
                }
            }
            let mut seen: Vec<&str> = Vec::new();
            for name in &p.labels {
                if let Some(l) = labels
                    .iter()
                    .find(|l| &l.name_zh == name || &l.code == name)
                    && !seen.contains(&l.id.as_str())
                {
                    seen.push(&l.id);
                    person_labels.push(vec![Val::from(id.clone()), Val::from(l.id.clone())]);
                }
            }
            persons.push(s.into_row(id.clone(), now));
            new_ids.insert((pi, mi), id);
        }
        let mut households = Vec::new();
        let mut residences = Vec::new();
        let mut head_updates = Vec::new();
        for (pi, plan) in plans.iter().enumerate() {
            let mut head_id = None;
            for (mi, (i, existing)) in plan.members.iter().enumerate() {
                let p = &plan.hh.persons[*i];
                let pid = match existing {
                    Some(id) => id.clone(),
                    None => new_ids[&(pi, mi)].clone(),
                };
                if p.relation == "head" {
                    head_id = Some(pid.clone());
                }
                let start = plan
                    .hh
                    .moved_in
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_else(|| today.clone());
                residences.push(vec![
                    Val::from(new_id()),
                    plan.household_id.clone().into(),
                    pid.into(),
                    p.relation.into(),
                    start.into(),
                    now.into(),
                    // A new household's path is known; an existing one's is copied after insert.
                    if plan.new_household {
                        Val::from(plan.path.clone())
                    } else {
                        Val::NullText
                    },
                ]);
            }
            if plan.new_household {
                households.push(vec![
                    Val::from(plan.household_id.clone()),
                    plan.room_id.clone().into(),
                    plan.path.clone().into(),
                    plan.hh.tenure.into(),
                    head_id.clone().into(),
                    plan.hh
                        .moved_in
                        .map(|d| d.format("%Y-%m-%d").to_string())
                        .into(),
                    Val::from(""),
                    1i64.into(),
                    now.into(),
                    now.into(),
                ]);
            } else if let Some(h) = head_id {
                head_updates.push((plan.household_id.clone(), h));
            }
        }
        // Residences in person order, so the one-current-residence index also grows at its end.
        residences.sort_by(|a, b| match (&a[2], &b[2]) {
            (Val::Text(x), Val::Text(y)) => x.cmp(y),
            _ => std::cmp::Ordering::Equal,
        });
        // Ids given in that order (they grow with time), so the primary key grows at its end too.
        for r in &mut residences {
            r[0] = Val::from(new_id());
        }
        tracing::info!(ms = t0.elapsed().as_millis() as u64, "import: rows sealed");
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        // A bulk load touches index pages all over the file: give SQLite a big page cache for
        // this transaction only (restored below), instead of re-reading pages from the OS.
        let bulk = self.backend() == crate::Backend::Sqlite && persons_count(plans) > 5_000;
        if bulk {
            sqlx::query("PRAGMA cache_size = -262144")
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        // When the file brings at least as many people as the registry holds, build the plain
        // (non-unique) indexes afterwards instead of growing them row by row: a person's phone
        // and name, a residence's household and address land all over those indexes, while
        // CREATE INDEX sorts once (measured: ~2× faster writes for 250,000 persons). Unique
        // indexes stay, so duplicates are still refused row by row. All inside the transaction:
        // a failure or a crash restores every index with the rows.
        let rebuild = if bulk {
            let existing = sqlx::query("SELECT COUNT(*) AS n FROM persons")
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
            let existing: i64 = sqlx::Row::try_get(&existing, "n").map_err(db_err)?;
            if persons_count(plans) as i64 >= existing {
                drop_plain_indexes(&mut tx, &["households", "persons", "residences"]).await?
            } else {
                Vec::new()
            }
        } else {
            Vec::new()
        };
        insert_many(
            &mut tx,
            "households",
            &[
                "id",
                "room_id",
                "path",
                "tenure",
                "head_person_id",
                "moved_in",
                "note",
                "version",
                "created_at",
                "updated_at",
            ],
            households,
        )
        .await?;
        tracing::info!(
            ms = t0.elapsed().as_millis() as u64,
            "import: households written"
        );
        insert_many(
            &mut tx,
            "persons",
            &crate::registry::persons::PERSON_COLUMNS,
            persons,
        )
        .await
        .map_err(|e| {
            if e.code == "conflict" {
                AppError::conflict("registry.person.duplicate_id")
            } else {
                e
            }
        })?;
        tracing::info!(
            ms = t0.elapsed().as_millis() as u64,
            "import: persons written"
        );
        insert_many(
            &mut tx,
            "residences",
            &crate::registry::persons::RESIDENCE_COLUMNS,
            residences,
        )
        .await
        .map_err(|e| {
            if e.code == "conflict" {
                AppError::conflict("registry.person.already_resident")
            } else {
                e
            }
        })?;
        for ddl in &rebuild {
            sqlx::query(sqlx::AssertSqlSafe(ddl.clone()))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        if !rebuild.is_empty() {
            tracing::info!(
                ms = t0.elapsed().as_millis() as u64,
                indexes = rebuild.len(),
                "import: indexes rebuilt"
            );
        }
        if plans.iter().any(|p| !p.new_household) {
            // Newcomers to households that already existed: copy the household's path.
            sqlx::query(
                "UPDATE residences SET hpath = (SELECT h.path FROM households h WHERE h.id = residences.household_id) \
                 WHERE end_date IS NULL AND hpath IS NULL",
            )
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        insert_many(
            &mut tx,
            "person_labels",
            &["person_id", "label_id"],
            person_labels,
        )
        .await?;
        for (hid, pid) in head_updates {
            sqlx::query("UPDATE households SET head_person_id = $1, updated_at = $2 WHERE id = $3")
                .bind(pid)
                .bind(now)
                .bind(hid)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        for (target, id, name, path) in &links {
            self.request_link(&mut tx, actor, target, id, name, path)
                .await?;
        }
        let scope = grant
            .scope(Action::RegistryImport)?
            .prefixes()
            .first()
            .cloned();
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "registry.import",
                entity: "import",
                entity_id: &sha256_hex(bytes),
                path: scope.as_deref(),
                purpose: None,
                before: None,
                after: Some(serde_json::json!({
                    "households_created": report.households_created,
                    "persons_created": report.persons_created,
                    "persons_moved_in": report.persons_moved_in,
                    "rows_rejected": report.rows_rejected,
                })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        // Many new rows: PostgreSQL's planner must know before the next search (db.rs).
        if persons_count(plans) > 500 {
            self.db
                .refresh_statistics(&[
                    "persons",
                    "residences",
                    "households",
                    "person_labels",
                    "places",
                ])
                .await
                .map_err(db_err)?;
        }
        if bulk {
            sqlx::query("PRAGMA cache_size = -16000")
                .execute(&self.db.write)
                .await
                .map_err(db_err)?;
            sqlx::query("PRAGMA shrink_memory")
                .execute(&self.db.write)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }
}

/// Drop the non-unique indexes of `tables` (SQLite) and return the statements that recreate
/// them, as the schema holds them.
async fn drop_plain_indexes(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tables: &[&str],
) -> AppResult<Vec<String>> {
    let mut q = Sql::new(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN (",
    );
    for (i, t) in tables.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.bind(t.to_string());
    }
    q.push(") ORDER BY name");
    let rows = q.query().fetch_all(&mut **tx).await.map_err(db_err)?;
    let mut recreate = Vec::new();
    for r in rows {
        let (name, sql) = (str_(&r, "name"), str_(&r, "sql"));
        if sql
            .trim_start()
            .to_ascii_uppercase()
            .starts_with("CREATE UNIQUE")
        {
            continue;
        }
        // Names come from the schema, not from input; quoted all the same.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP INDEX \"{}\"",
            name.replace('"', "\"\"")
        )))
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
        recreate.push(sql);
    }
    Ok(recreate)
}

fn persons_count(plans: &[Plan]) -> usize {
    plans.iter().map(|p| p.members.len()).sum()
}
