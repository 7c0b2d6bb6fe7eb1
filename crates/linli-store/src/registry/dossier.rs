//! 一户一表, the rest of the record: what the other modules know about a household — its reports,
//! the devices in its home and those its members carry, their alarms, the household's vehicles
//! and visitor passes, its members' SOS care contacts and daily check-ins, and its members'
//! recent passages through the gates. One call gathers it for the household page, the API and a
//! resident's own export.
//!
//! Every section follows the rule of its own module: a section is `None` when the caller may not
//! read that kind of data over this household (staff: the module's capability over the
//! household's place; the household's own residents: everything about their household). Reports
//! go through the reports [`crate::reports::Viewer`], so a property company's staff see only the
//! reports their unit handles here too.

use serde::Serialize;

use linli_core::auth::{Action, Principal};
use linli_core::{AppError, AppResult};

use crate::Store;
use crate::db::Sql;
use crate::reports::queries::ReportQuery;

/// What the other modules hold about a household. `None`: not the caller's to read.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct HouseholdLinked {
    /// Reports filed by or for the household, newest first (at most 50).
    pub reports: Option<Vec<LinkedReport>>,
    /// Devices in the home, and devices a member carries (an SOS button).
    pub devices: Option<Vec<LinkedDevice>>,
    /// Alarms of the home and of its members: the active ones and the 20 most recent others.
    pub alarms: Option<Vec<LinkedAlarm>>,
    pub vehicles: Option<Vec<LinkedVehicle>>,
    /// Visitor passes the household issued, newest first (at most 20; no QR token here).
    pub visitor_passes: Option<Vec<LinkedPass>>,
    /// Per member with any: whom an SOS calls, in order, and the last daily check-in.
    pub care: Option<Vec<LinkedCare>>,
    /// The members' latest passages through the gates (at most 20).
    pub gate_passages: Option<Vec<LinkedPassage>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LinkedReport {
    pub id: String,
    pub kind: String,
    pub category: String,
    pub title: String,
    pub status: String,
    pub unit_name: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LinkedDevice {
    pub id: String,
    pub kind: String,
    pub name: String,
    /// The member who carries it, if it is personal.
    pub person_id: Option<String>,
    pub last_seen_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LinkedAlarm {
    pub id: String,
    pub alarm_type: String,
    pub severity: String,
    pub active: bool,
    pub acknowledged: bool,
    pub device_id: Option<String>,
    pub person_id: Option<String>,
    pub started_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LinkedVehicle {
    pub id: String,
    pub plate: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LinkedPass {
    pub id: String,
    pub visitor_name: String,
    pub phone_masked: String,
    pub plate: Option<String>,
    pub valid_from: i64,
    pub valid_until: i64,
    /// `pending`, `active`, `used`, `expired` or `revoked`.
    pub status: String,
    pub uses: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LinkedCare {
    pub person_id: String,
    pub person_name: String,
    /// In call order.
    pub contacts: Vec<LinkedContact>,
    pub last_checkin_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LinkedContact {
    pub user_id: String,
    pub display_name: String,
    pub relation: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LinkedPassage {
    pub at: i64,
    pub gate_name: String,
    /// `in` or `out`.
    pub direction: String,
    pub person_id: Option<String>,
    pub plate: Option<String>,
    pub fever: bool,
}

/// "At the home": the household's room (its path and below) or one of its members, as SQL on
/// the columns `{alias}path` and `{alias}person_id`.
fn push_home(q: &mut Sql, alias: &str, home_path: &str, members: &[String]) {
    q.push("(");
    q.scope(&format!("{alias}path"), &[home_path.to_string()]);
    if !members.is_empty() {
        q.push(" OR ").push(alias).push("person_id IN (");
        q.bind_list(members);
        q.push(")");
    }
    q.push(")");
}

impl Store {
    /// Everything the other modules hold about the household that the caller may read (see the
    /// module comment). Not found when the caller may not read the household at all.
    pub async fn household_linked(&self, p: &Principal, id: &str) -> AppResult<HouseholdLinked> {
        let not_found = || AppError::not_found("registry.household.not_found");
        let h = self
            .household_row_unscoped(id)
            .await?
            .ok_or_else(not_found)?;
        let own = p.own_households().contains(&h.id);
        let may = |action: Action| own || p.may(action, &h.path);
        if !may(Action::HouseholdRead) {
            return Err(not_found());
        }
        let members: Vec<(String, String)> = self
            .db
            .fetch_all_fast(
                &Sql::new(
                    "SELECT p.id, p.name FROM residences r JOIN persons p ON p.id = r.person_id WHERE r.household_id = $1 AND r.end_date IS NULL ORDER BY p.id",
                )
                .arg(&h.id),
            )
            .await?
            .into_iter()
            .map(|mut r| {
                (
                    r.take_str("id").unwrap_or_default(),
                    r.take_str("name").unwrap_or_default(),
                )
            })
            .collect();
        let member_ids: Vec<String> = members.iter().map(|(id, _)| id.clone()).collect();

        let viewer = self.report_viewer(p).await?;
        let reports = if own || viewer.grant.is_some() || !viewer.units.is_empty() {
            let page = self
                .reports(
                    &viewer,
                    &ReportQuery {
                        household_id: Some(h.id.clone()),
                        limit: Some(50),
                        ..Default::default()
                    },
                )
                .await?;
            Some(
                page.items
                    .into_iter()
                    .map(|r| LinkedReport {
                        id: r.id,
                        kind: r.kind,
                        category: r.category,
                        title: r.title,
                        status: r.status,
                        unit_name: r.unit_name,
                        created_at: r.created_at,
                    })
                    .collect(),
            )
        } else {
            None
        };

        let devices = if may(Action::DeviceRead) {
            let mut q = Sql::new(
                "SELECT d.id, d.kind, d.name, d.person_id, l.seen_at AS last_seen_at FROM devices d LEFT JOIN device_latest l ON l.device_id = d.id WHERE d.disabled = 0 AND ",
            );
            push_home(&mut q, "d.", &h.path, &member_ids);
            q.push(" ORDER BY d.kind, d.name");
            Some(
                self.db
                    .fetch_all_fast(&q)
                    .await?
                    .into_iter()
                    .map(|mut r| LinkedDevice {
                        id: r.take_str("id").unwrap_or_default(),
                        kind: r.take_str("kind").unwrap_or_default(),
                        name: r.take_str("name").unwrap_or_default(),
                        person_id: r.take_str("person_id"),
                        last_seen_at: r.opt_i64("last_seen_at"),
                    })
                    .collect(),
            )
        } else {
            None
        };

        let alarms = if may(Action::AlarmRead) {
            let cols = "id, alarm_type, severity, active, acked, device_id, person_id, started_at, updated_at";
            let mut out = Vec::new();
            for (active, limit) in [(1i64, 200i64), (0, 20)] {
                let mut q = Sql::new(&format!("SELECT {cols} FROM alarms WHERE active = "));
                q.bind(active).push(" AND ");
                push_home(&mut q, "", &h.path, &member_ids);
                q.push(" ORDER BY updated_at DESC LIMIT ").bind(limit);
                out.extend(self.db.fetch_all_fast(&q).await?.into_iter().map(|mut r| {
                    LinkedAlarm {
                        id: r.take_str("id").unwrap_or_default(),
                        alarm_type: r.take_str("alarm_type").unwrap_or_default(),
                        severity: r.take_str("severity").unwrap_or_default(),
                        active: r.flag("active"),
                        acknowledged: r.flag("acked"),
                        device_id: r.take_str("device_id"),
                        person_id: r.take_str("person_id"),
                        started_at: r.i64("started_at"),
                        updated_at: r.i64("updated_at"),
                    }
                }));
            }
            Some(out)
        } else {
            None
        };

        let vehicles = if may(Action::HouseholdRead) {
            Some(
                self.db
                    .fetch_all_fast(
                        &Sql::new(
                            "SELECT id, plate, created_at FROM vehicles WHERE household_id = $1 ORDER BY plate",
                        )
                        .arg(&h.id),
                    )
                    .await?
                    .into_iter()
                    .map(|mut r| LinkedVehicle {
                        id: r.take_str("id").unwrap_or_default(),
                        plate: r.take_str("plate").unwrap_or_default(),
                        created_at: r.i64("created_at"),
                    })
                    .collect(),
            )
        } else {
            None
        };

        let visitor_passes = if may(Action::AccessRead) {
            let now = self.now_ms();
            Some(
                self.db
                    .fetch_all_fast(
                        &Sql::new(
                            "SELECT id, visitor_name, phone_masked, plate, valid_from, valid_until, multi_use, uses, revoked_at, created_at FROM visitor_passes WHERE household_id = $1 ORDER BY created_at DESC, id DESC LIMIT 20",
                        )
                        .arg(&h.id),
                    )
                    .await?
                    .into_iter()
                    .map(|mut r| {
                        let (from, until) = (r.i64("valid_from"), r.i64("valid_until"));
                        let uses = r.i64("uses");
                        let status = crate::access::passes::status(
                            r.opt_i64("revoked_at").is_some(),
                            r.flag("multi_use"),
                            uses,
                            from,
                            until,
                            now,
                        );
                        LinkedPass {
                            id: r.take_str("id").unwrap_or_default(),
                            visitor_name: r.take_str("visitor_name").unwrap_or_default(),
                            phone_masked: r.take_str("phone_masked").unwrap_or_default(),
                            plate: r.take_str("plate"),
                            valid_from: from,
                            valid_until: until,
                            status: status.into(),
                            uses,
                            created_at: r.i64("created_at"),
                        }
                    })
                    .collect(),
            )
        } else {
            None
        };

        let care = if may(Action::PersonRead) && !member_ids.is_empty() {
            let mut q = Sql::new(
                "SELECT c.person_id, c.contact_user_id, c.relation, u.display_name FROM care_contacts c JOIN users u ON u.id = c.contact_user_id WHERE c.person_id IN (",
            );
            q.bind_list(&member_ids);
            q.push(") ORDER BY c.person_id, c.ord");
            let contacts = self.db.fetch_all_fast(&q).await?;
            let mut q = Sql::new("SELECT person_id, last_at FROM checkins WHERE person_id IN (");
            q.bind_list(&member_ids);
            q.push(")");
            let checkins = self.db.fetch_all_fast(&q).await?;
            Some(
                members
                    .iter()
                    .filter_map(|(pid, name)| {
                        let contacts: Vec<LinkedContact> = contacts
                            .iter()
                            .filter(|c| c.opt_str_ref("person_id") == Some(pid.as_str()))
                            .map(|c| LinkedContact {
                                user_id: c.str("contact_user_id"),
                                display_name: c.str("display_name"),
                                relation: c.str("relation"),
                            })
                            .collect();
                        let last = checkins
                            .iter()
                            .find(|c| c.opt_str_ref("person_id") == Some(pid.as_str()))
                            .and_then(|c| c.opt_i64("last_at"));
                        (!contacts.is_empty() || last.is_some()).then(|| LinkedCare {
                            person_id: pid.clone(),
                            person_name: name.clone(),
                            contacts,
                            last_checkin_at: last,
                        })
                    })
                    .collect(),
            )
        } else {
            None
        };

        let gate_passages = if may(Action::AccessRead) && !member_ids.is_empty() {
            let mut q = Sql::new(
                "SELECT a.at, g.name AS gate_name, a.direction, a.person_id, a.plate, a.fever FROM access_records a JOIN gates g ON g.id = a.gate_id WHERE a.person_id IN (",
            );
            q.bind_list(&member_ids);
            q.push(") ORDER BY a.at DESC LIMIT 20");
            Some(
                self.db
                    .fetch_all_fast(&q)
                    .await?
                    .into_iter()
                    .map(|mut r| LinkedPassage {
                        at: r.i64("at"),
                        gate_name: r.take_str("gate_name").unwrap_or_default(),
                        direction: r.take_str("direction").unwrap_or_default(),
                        person_id: r.take_str("person_id"),
                        plate: r.take_str("plate"),
                        fever: r.flag("fever"),
                    })
                    .collect(),
            )
        } else {
            None
        };

        Ok(HouseholdLinked {
            reports,
            devices,
            alarms,
            vehicles,
            visitor_passes,
            care,
            gate_passages,
        })
    }
}
