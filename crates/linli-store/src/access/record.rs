//! The access module's sections of the household record: the household's vehicles and visitor
//! passes, and its members' latest passages through the gates (since they joined).

use serde::Serialize;
use serde_json::Value;

use linli_core::auth::Action;
use linli_core::{AppResult, BoxFuture};

use crate::Store;
use crate::db::Sql;
use crate::registry::dossier::{RecordCtx, RecordSection};

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
pub struct LinkedPassage {
    pub at: i64,
    pub gate_name: String,
    /// `in` or `out`.
    pub direction: String,
    pub person_id: Option<String>,
    pub plate: Option<String>,
    pub fever: bool,
}

pub static VEHICLES: RecordSection = RecordSection {
    key: "vehicles",
    action: Action::HouseholdRead,
    load: load_vehicles,
};

/// Visitor passes the household issued, newest first (at most 20; no QR token here).
pub static PASSES: RecordSection = RecordSection {
    key: "visitor_passes",
    action: Action::AccessRead,
    load: load_passes,
};

/// The members' latest passages through the gates (at most 20).
pub static PASSAGES: RecordSection = RecordSection {
    key: "gate_passages",
    action: Action::AccessRead,
    load: load_passages,
};

fn load_vehicles<'a>(store: &'a Store, ctx: &'a RecordCtx<'a>) -> BoxFuture<'a, AppResult<Value>> {
    Box::pin(async move {
        let items: Vec<LinkedVehicle> = store
            .db
            .fetch_all_fast(
                &Sql::new(
                    "SELECT id, plate, created_at FROM vehicles WHERE household_id = $1 ORDER BY plate",
                )
                .arg(ctx.household_id),
            )
            .await?
            .into_iter()
            .map(|mut r| LinkedVehicle {
                id: r.take_str("id").unwrap_or_default(),
                plate: r.take_str("plate").unwrap_or_default(),
                created_at: r.i64("created_at"),
            })
            .collect();
        Ok(serde_json::to_value(items).unwrap_or_default())
    })
}

fn load_passes<'a>(store: &'a Store, ctx: &'a RecordCtx<'a>) -> BoxFuture<'a, AppResult<Value>> {
    Box::pin(async move {
        let now = store.now_ms();
        let items: Vec<LinkedPass> = store
            .db
            .fetch_all_fast(
                &Sql::new(
                    "SELECT id, visitor_name, phone_masked, plate, valid_from, valid_until, multi_use, uses, revoked_at, created_at FROM visitor_passes WHERE household_id = $1 ORDER BY created_at DESC, id DESC LIMIT 20",
                )
                .arg(ctx.household_id),
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
            .collect();
        Ok(serde_json::to_value(items).unwrap_or_default())
    })
}

fn load_passages<'a>(store: &'a Store, ctx: &'a RecordCtx<'a>) -> BoxFuture<'a, AppResult<Value>> {
    Box::pin(async move {
        let mut q = Sql::new(
            "SELECT a.at, g.name AS gate_name, a.direction, a.person_id, a.plate, a.fever FROM access_records a JOIN gates g ON g.id = a.gate_id WHERE ",
        );
        ctx.push_members(&mut q, "a.", "at");
        q.push(" ORDER BY a.at DESC LIMIT 20");
        let items: Vec<LinkedPassage> = store
            .db
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
            .collect();
        Ok(serde_json::to_value(items).unwrap_or_default())
    })
}
