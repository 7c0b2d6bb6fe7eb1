//! The IoT module's sections of the household record: devices at home and carried by members,
//! their alarms (since the household or member came), and the members' SOS care contacts and
//! daily check-ins.

use serde::Serialize;
use serde_json::Value;

use linli_core::auth::Action;
use linli_core::{AppResult, BoxFuture};

use crate::Store;
use crate::db::Sql;
use crate::registry::dossier::{RecordCtx, RecordSection};

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

/// Devices in the home, and devices a member carries (an SOS button).
pub static DEVICES: RecordSection = RecordSection {
    key: "devices",
    action: Action::DeviceRead,
    load: load_devices,
};

/// Alarms of the home and of its members: the active ones and the 20 most recent others.
pub static ALARMS: RecordSection = RecordSection {
    key: "alarms",
    action: Action::AlarmRead,
    load: load_alarms,
};

/// Per member with any: whom an SOS calls, in order, and the last daily check-in.
pub static CARE: RecordSection = RecordSection {
    key: "care",
    action: Action::PersonRead,
    load: load_care,
};

fn load_devices<'a>(store: &'a Store, ctx: &'a RecordCtx<'a>) -> BoxFuture<'a, AppResult<Value>> {
    Box::pin(async move {
        let mut q = Sql::new(
            "SELECT d.id, d.kind, d.name, d.person_id, l.seen_at AS last_seen_at FROM devices d LEFT JOIN device_latest l ON l.device_id = d.id WHERE d.disabled = 0 AND (",
        );
        q.scope("d.path", &[ctx.path.to_string()]);
        let members = ctx.member_ids();
        if !members.is_empty() {
            q.push(" OR d.person_id IN (").bind_list(&members).push(")");
        }
        q.push(") ORDER BY d.kind, d.name");
        let items: Vec<LinkedDevice> = store
            .db
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
            .collect();
        Ok(serde_json::to_value(items).unwrap_or_default())
    })
}

fn load_alarms<'a>(store: &'a Store, ctx: &'a RecordCtx<'a>) -> BoxFuture<'a, AppResult<Value>> {
    Box::pin(async move {
        let cols =
            "id, alarm_type, severity, active, acked, device_id, person_id, started_at, updated_at";
        let mut out: Vec<LinkedAlarm> = Vec::new();
        for (active, limit) in [(1i64, 200i64), (0, 20)] {
            let mut q = Sql::new(&format!("SELECT {cols} FROM alarms WHERE active = "));
            q.bind(active).push(" AND ");
            ctx.push_home(&mut q, "", "started_at");
            q.push(" ORDER BY updated_at DESC LIMIT ").bind(limit);
            out.extend(
                store
                    .db
                    .fetch_all_fast(&q)
                    .await?
                    .into_iter()
                    .map(|mut r| LinkedAlarm {
                        id: r.take_str("id").unwrap_or_default(),
                        alarm_type: r.take_str("alarm_type").unwrap_or_default(),
                        severity: r.take_str("severity").unwrap_or_default(),
                        active: r.flag("active"),
                        acknowledged: r.flag("acked"),
                        device_id: r.take_str("device_id"),
                        person_id: r.take_str("person_id"),
                        started_at: r.i64("started_at"),
                        updated_at: r.i64("updated_at"),
                    }),
            );
        }
        Ok(serde_json::to_value(out).unwrap_or_default())
    })
}

fn load_care<'a>(store: &'a Store, ctx: &'a RecordCtx<'a>) -> BoxFuture<'a, AppResult<Value>> {
    Box::pin(async move {
        let ids = ctx.member_ids();
        if ids.is_empty() {
            return Ok(Value::Array(Vec::new()));
        }
        let mut q = Sql::new(
            "SELECT c.person_id, c.contact_user_id, c.relation, u.display_name FROM care_contacts c JOIN users u ON u.id = c.contact_user_id WHERE c.person_id IN (",
        );
        q.bind_list(&ids);
        q.push(") ORDER BY c.person_id, c.ord");
        let contacts = store.db.fetch_all_fast(&q).await?;
        let mut q = Sql::new("SELECT person_id, last_at FROM checkins WHERE ");
        ctx.push_members(&mut q, "", "last_at");
        let checkins = store.db.fetch_all_fast(&q).await?;
        let items: Vec<LinkedCare> = ctx
            .members
            .iter()
            .map(|m| {
                let contacts: Vec<LinkedContact> = contacts
                    .iter()
                    .filter(|c| c.opt_str_ref("person_id") == Some(m.person_id.as_str()))
                    .map(|c| LinkedContact {
                        user_id: c.str("contact_user_id"),
                        display_name: c.str("display_name"),
                        relation: c.str("relation"),
                    })
                    .collect();
                let last = checkins
                    .iter()
                    .find(|c| c.opt_str_ref("person_id") == Some(m.person_id.as_str()))
                    .and_then(|c| c.opt_i64("last_at"));
                // Every member, also one without contacts: that is what a worker must see
                // (and can set from the page) before an SOS finds nobody to call first.
                LinkedCare {
                    person_id: m.person_id.clone(),
                    person_name: m.name.clone(),
                    contacts,
                    last_checkin_at: last,
                }
            })
            .collect();
        Ok(serde_json::to_value(items).unwrap_or_default())
    })
}
