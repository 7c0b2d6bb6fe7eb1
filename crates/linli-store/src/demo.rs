//! Seed the demo district (idempotent): places, organisations, ~3,000 households, ~8,000
//! persons, and one account per role, all with the same demo password.

use std::collections::HashMap;

use linli_core::auth::Role;
use linli_core::{AppResult, new_id, password};

use crate::Store;
use crate::accounts::users::{BindingSpec, insert_binding, insert_user};
use crate::audit::{Actor, Entry};
use crate::db::{Val, db_err, insert_many};
use crate::registry::persons::seal;

pub const DEMO_SEED: u64 = 20_261_124;

/// Insert a setting unless it is there: whether this call put it there (`ON CONFLICT DO
/// NOTHING`; on PostgreSQL a concurrent insert of the same key waits for the other
/// transaction and then does nothing). One-time work claims itself with it.
pub(crate) async fn claim_setting(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    key: &str,
    value: &str,
) -> AppResult<bool> {
    let r = sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
    )
    .bind(key.to_string())
    .bind(value.to_string())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(r.rows_affected() == 1)
}

/// One demo account: login, display name, role, and where it is bound.
#[derive(Debug, Clone)]
pub struct DemoAccount {
    pub login: &'static str,
    pub display_name: &'static str,
    pub role: Role,
    pub scope: String,
}

impl Store {
    /// True when the demo data is already present.
    pub async fn demo_seeded(&self) -> AppResult<bool> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = 'demo_seeded'")
            .fetch_optional(&self.db.read)
            .await
            .map_err(db_err)?;
        Ok(row.is_some())
    }

    /// Seed the demo district unless it is there already; returns the demo accounts.
    pub async fn seed_demo(&self, demo_password: &str) -> AppResult<Vec<DemoAccount>> {
        self.ensure_default_labels().await?;
        let data = linli_core::demo::generate(DEMO_SEED);
        let mut accounts = Vec::new();
        if self.demo_seeded().await? {
            return Ok(demo_accounts_summary(&data));
        }
        let now = self.now_ms();
        let labels: HashMap<String, String> = self
            .labels()
            .await?
            .into_iter()
            .map(|l| (l.code, l.id))
            .collect();
        let mut ids: HashMap<String, (String, String)> = HashMap::new(); // key -> (id, path)
        let mut places = Vec::new();
        for (i, p) in data.places.iter().enumerate() {
            let id = new_id();
            let parent = p.parent_key.as_ref().and_then(|k| ids.get(k)).cloned();
            let path = format!(
                "{}{id}/",
                parent
                    .as_ref()
                    .map(|(_, path)| path.as_str())
                    .unwrap_or("/")
            );
            places.push(vec![
                Val::from(id.clone()),
                parent.map(|(pid, _)| pid).into(),
                p.kind.into(),
                p.name.clone().into(),
                p.code.clone().into(),
                path.clone().into(),
                p.area_x100.into(),
                p.room_use.map(str::to_string).into(),
                p.plan
                    .map(|pl| serde_json::to_string(&pl).unwrap_or_default())
                    .into(),
                (i as i64).into(),
                now.into(),
            ]);
            ids.insert(p.key.clone(), (id, path));
        }
        let mut orgs = Vec::new();
        let mut serves = Vec::new();
        let mut org_ids: HashMap<String, String> = HashMap::new();
        for o in &data.orgs {
            let id = new_id();
            let (place_id, path) = ids[&o.node_key].clone();
            orgs.push(vec![
                Val::from(id.clone()),
                o.kind.into(),
                o.name.clone().into(),
                place_id.into(),
                path.into(),
                serde_json::to_string(&o.categories)
                    .unwrap_or_default()
                    .into(),
                now.into(),
            ]);
            for s in &o.serves {
                serves.push(vec![Val::from(id.clone()), ids[s].0.clone().into()]);
            }
            org_ids.insert(o.key.clone(), id);
        }
        let mut households = Vec::new();
        let mut persons = Vec::new();
        let mut residences = Vec::new();
        let mut person_labels = Vec::new();
        let mut first_household_c1: Option<(String, String, Option<String>)> = None;
        for h in &data.households {
            let hid = new_id();
            let (room_id, path) = ids[&h.room_key].clone();
            let moved_in = h.moved_in.format("%Y-%m-%d").to_string();
            let mut head = None;
            for p in &h.persons {
                let s = seal(&self.cipher, &p.name, &p.id_number, p.phone.as_deref())?;
                let pid = new_id();
                if p.relation == "head" {
                    head = Some(pid.clone());
                    if first_household_c1.is_none()
                        && h.room_key.starts_with("c1/")
                        && p.phone.is_some()
                    {
                        first_household_c1 = Some((hid.clone(), pid.clone(), p.phone.clone()));
                    }
                }
                persons.push(s.into_row(pid.clone(), now));
                residences.push(vec![
                    Val::from(new_id()),
                    hid.clone().into(),
                    pid.clone().into(),
                    p.relation.into(),
                    moved_in.clone().into(),
                    now.into(),
                    path.clone().into(),
                ]);
                for l in &p.labels {
                    if let Some(lid) = labels.get(*l) {
                        person_labels.push(vec![Val::from(pid.clone()), lid.clone().into()]);
                    }
                }
            }
            households.push(vec![
                Val::from(hid),
                room_id.into(),
                path.into(),
                h.tenure.into(),
                head.into(),
                Some(moved_in).into(),
                Val::from(""),
                1i64.into(),
                now.into(),
                now.into(),
            ]);
        }
        let n_households = households.len();
        let n_persons = persons.len();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        // Claim the seeding inside the transaction that writes: of several instances seeding
        // at once, the one whose marker went in seeds; the others find the demo there.
        if !claim_setting(&mut tx, "demo_seeded", &now.to_string()).await? {
            tx.rollback().await.map_err(db_err)?;
            return Ok(demo_accounts_summary(&data));
        }
        insert_many(
            &mut tx,
            "places",
            &crate::registry::places::PLACE_COLUMNS,
            places,
        )
        .await?;
        insert_many(
            &mut tx,
            "orgs",
            &[
                "id",
                "kind",
                "name",
                "place_id",
                "path",
                "categories",
                "created_at",
            ],
            orgs,
        )
        .await?;
        insert_many(&mut tx, "org_serves", &["org_id", "place_id"], serves).await?;
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
        insert_many(
            &mut tx,
            "persons",
            &crate::registry::persons::PERSON_COLUMNS,
            persons,
        )
        .await?;
        insert_many(
            &mut tx,
            "residences",
            &crate::registry::persons::RESIDENCE_COLUMNS,
            residences,
        )
        .await?;
        insert_many(
            &mut tx,
            "person_labels",
            &["person_id", "label_id"],
            person_labels,
        )
        .await?;

        // One account per role. Hashing is slow on purpose, so do it once and reuse the hash.
        let hash = password::hash(demo_password);
        let place = |k: &str| Some(ids[k].0.clone());
        let first_grid = data
            .places
            .iter()
            .find(|p| p.kind == "grid" && p.key.starts_with("c1/"))
            .map(|p| p.key.clone())
            .unwrap_or_default();
        let c1_street = data
            .places
            .iter()
            .find(|p| p.key == "c1")
            .and_then(|p| p.parent_key.clone())
            .unwrap_or_default();
        let first_dept = data
            .orgs
            .iter()
            .find(|o| o.kind == "department" && o.node_key == c1_street)
            .map(|o| o.key.clone())
            .unwrap_or_default();
        let spec = |role,
                    place_id: Option<String>,
                    org_id: Option<String>,
                    household_id: Option<String>| BindingSpec {
            role,
            place_id,
            org_id,
            household_id,
        };
        let (res_hh, res_person, res_phone) = first_household_c1.clone().unwrap_or_default();
        let plan: Vec<(&str, &str, BindingSpec, Option<String>, Option<String>)> = vec![
            (
                "admin",
                "市级管理员",
                spec(Role::CityAdmin, place("city"), None, None),
                None,
                None,
            ),
            (
                "district",
                "区级管理员",
                spec(Role::DistrictAdmin, place("district"), None, None),
                None,
                None,
            ),
            (
                "street",
                "街道干部",
                spec(Role::StreetOfficer, place(&c1_street), None, None),
                None,
                None,
            ),
            (
                "dept",
                "部门干部",
                spec(
                    Role::DepartmentOfficer,
                    None,
                    org_ids.get(&first_dept).cloned(),
                    None,
                ),
                None,
                None,
            ),
            (
                "committee",
                "社区工作者",
                spec(Role::CommitteeStaff, place("c1"), None, None),
                None,
                None,
            ),
            (
                "committee3",
                "社区工作者（三社区）",
                spec(Role::CommitteeStaff, place("c3"), None, None),
                None,
                None,
            ),
            (
                "grid",
                "网格员",
                spec(Role::GridWorker, place(&first_grid), None, None),
                None,
                None,
            ),
            (
                "property",
                "物业人员",
                spec(
                    Role::PropertyStaff,
                    None,
                    org_ids.get("property1").cloned(),
                    None,
                ),
                None,
                None,
            ),
            // Two technicians of the same company, so grab (抢单) and round robin (轮派) have
            // someone to choose between.
            (
                "repair1",
                "维修师傅（一）",
                spec(
                    Role::PropertyStaff,
                    None,
                    org_ids.get("property1").cloned(),
                    None,
                ),
                None,
                None,
            ),
            (
                "repair2",
                "维修师傅（二）",
                spec(
                    Role::PropertyStaff,
                    None,
                    org_ids.get("property1").cloned(),
                    None,
                ),
                None,
                None,
            ),
            (
                "resident",
                "居民",
                spec(Role::Resident, None, None, Some(res_hh)),
                Some(res_person),
                res_phone,
            ),
            (
                "merchant",
                "商户",
                spec(Role::Merchant, place("c1"), None, None),
                None,
                None,
            ),
            (
                "volunteer",
                "志愿者",
                spec(Role::Volunteer, place("c1"), None, None),
                None,
                None,
            ),
        ];
        for (login, display, binding, person_id, phone) in plan {
            let phone_bidx = phone
                .as_deref()
                .map(|p| self.cipher.blind_index("phone", p));
            let uid = insert_user(
                &mut tx,
                self.now_ms(),
                login,
                display,
                &hash,
                phone_bidx,
                person_id,
            )
            .await?;
            insert_binding(&mut tx, self.now_ms(), &uid, &binding).await?;
        }
        self.audit(
            &mut tx,
            &Actor::system("demo"),
            Entry {
                action: "demo.seed",
                entity: "demo",
                entity_id: "district",
                path: None,
                purpose: None,
                before: None,
                after: Some(
                    serde_json::json!({ "households": n_households, "persons": n_persons }),
                ),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.forget_place_names();
        accounts.extend(demo_accounts_summary(&data));
        Ok(accounts)
    }
}

fn demo_accounts_summary(data: &linli_core::demo::DemoData) -> Vec<DemoAccount> {
    let name = |k: &str| {
        data.places
            .iter()
            .find(|p| p.key == k)
            .map(|p| p.name.clone())
            .unwrap_or_default()
    };
    let c1_street = data
        .places
        .iter()
        .find(|p| p.key == "c1")
        .and_then(|p| p.parent_key.clone())
        .unwrap_or_default();
    let grid = data
        .places
        .iter()
        .find(|p| p.kind == "grid" && p.key.starts_with("c1/"))
        .map(|p| p.key.clone())
        .unwrap_or_default();
    vec![
        DemoAccount {
            login: "admin",
            display_name: "市级管理员",
            role: Role::CityAdmin,
            scope: name("city"),
        },
        DemoAccount {
            login: "district",
            display_name: "区级管理员",
            role: Role::DistrictAdmin,
            scope: name("district"),
        },
        DemoAccount {
            login: "street",
            display_name: "街道干部",
            role: Role::StreetOfficer,
            scope: name(&c1_street),
        },
        DemoAccount {
            login: "dept",
            display_name: "部门干部",
            role: Role::DepartmentOfficer,
            scope: format!("{}城管科", name(&c1_street)),
        },
        DemoAccount {
            login: "committee",
            display_name: "社区工作者",
            role: Role::CommitteeStaff,
            scope: name("c1"),
        },
        DemoAccount {
            login: "committee3",
            display_name: "社区工作者（三社区）",
            role: Role::CommitteeStaff,
            scope: name("c3"),
        },
        DemoAccount {
            login: "grid",
            display_name: "网格员",
            role: Role::GridWorker,
            scope: format!("{} {}", name("c1"), name(&grid)),
        },
        DemoAccount {
            login: "property",
            display_name: "物业人员",
            role: Role::PropertyStaff,
            scope: "江城物业服务有限公司".into(),
        },
        DemoAccount {
            login: "repair1",
            display_name: "维修师傅（一）",
            role: Role::PropertyStaff,
            scope: "江城物业服务有限公司".into(),
        },
        DemoAccount {
            login: "repair2",
            display_name: "维修师傅（二）",
            role: Role::PropertyStaff,
            scope: "江城物业服务有限公司".into(),
        },
        DemoAccount {
            login: "resident",
            display_name: "居民",
            role: Role::Resident,
            scope: format!("{} 的一户", name("c1")),
        },
        DemoAccount {
            login: "merchant",
            display_name: "商户",
            role: Role::Merchant,
            scope: name("c1"),
        },
        DemoAccount {
            login: "volunteer",
            display_name: "志愿者",
            role: Role::Volunteer,
            scope: name("c1"),
        },
    ]
}
