//! Authorization probes of gates, vehicles and visitor passes. See `docs/security.md` ("The
//! authorization matrix").
//!
//! The fixtures: `{gate}` is a face terminal the property company registered at A's community;
//! `{blacklist}` a plate it blacklisted there; `{vehicle}` and `{pass}` are the resident's.

use linli_core::auth::Action;

use crate::manifest::Caller::{self, *};
use crate::manifest::Probe;

const RESIDENTS: &[Caller] = Caller::RESIDENTS;
const GATE_READERS: &[Action] = &[
    Action::AccessRead,
    Action::DeviceAdmin,
    Action::VisitorVerify,
];
const DEVICE_ADMIN: &[Action] = &[Action::DeviceAdmin];
const ACCESS_READ: &[Action] = &[Action::AccessRead];
/// Who sees the resident's passes: the household, and staff with access_read over it.
const PASS_READERS: &[Caller] = &[Resident, Staff, Grid, Property];

pub static PROBES: &[Probe] = &[
    Probe::get("/api/v1/access/gates")
        .actions(GATE_READERS)
        .allow(&[Staff, Property])
        .filtered(&[Grid, OtherGrid, StaffB, TokenB])
        .note("the gate is at the community, above the grid workers' grids"),
    Probe::post("/api/v1/access/gates")
        .json(r#"{"name": "矩阵东门", "place_id": "{community}", "kind": "face"}"#)
        .actions(DEVICE_ADMIN)
        .allow(&[Property]),
    Probe::get("/api/v1/access/gates/{gate}")
        .actions(GATE_READERS)
        .allow(&[Staff, Property]),
    Probe::patch("/api/v1/access/gates/{gate}")
        .json(r#"{"version": 1, "name": "矩阵东门改"}"#)
        .actions(DEVICE_ADMIN)
        .allow(&[Property]),
    Probe::get("/api/v1/access/records")
        .actions(ACCESS_READ)
        .allow(&[Staff, Property])
        .filtered(&[Grid, OtherGrid, StaffB, TokenB]),
    Probe::post("/api/v1/access/records")
        .json(r#"{"gate_id": "{gate}", "direction": "in", "temperature_x10": 365, "at": {now}}"#)
        .actions(&[Action::VisitorVerify])
        .allow(&[Property])
        .note("gate terminals post with a visitor_verify token"),
    Probe::get("/api/v1/access/stats/hourly")
        .actions(ACCESS_READ)
        .allow(&[Staff, Property])
        .filtered(&[Grid, OtherGrid, StaffB, TokenB]),
    Probe::get("/api/v1/access/alerts")
        .actions(ACCESS_READ)
        .allow(&[Staff, Property])
        .filtered(&[Grid, OtherGrid, StaffB, TokenB]),
    Probe::get("/api/v1/access/blacklist")
        .actions(&[Action::AccessRead, Action::DeviceAdmin])
        .allow(&[Staff, Property])
        .filtered(&[Grid, OtherGrid, StaffB, TokenB]),
    Probe::post("/api/v1/access/blacklist")
        .json(r#"{"plate": "{new_plate}", "place_id": "{community}", "reason": "矩阵冲卡"}"#)
        .actions(DEVICE_ADMIN)
        .allow(&[Property]),
    Probe::delete("/api/v1/access/blacklist/{blacklist}")
        .actions(DEVICE_ADMIN)
        .allow(&[Property]),
    Probe::get("/api/v1/access/vehicles")
        .allow(&[Resident])
        .filtered(&[OtherResident, ResidentB])
        .note("one's own household's"),
    Probe::get("/api/v1/access/vehicles?household_id={home}")
        .actions(&[Action::HouseholdRead])
        .allow(&[Staff, Grid, Property, Resident]),
    Probe::post("/api/v1/access/vehicles")
        .json(r#"{"plate": "{new_plate}"}"#)
        .allow(RESIDENTS),
    Probe::post("/api/v1/access/vehicles")
        .json(r#"{"household_id": "{home}", "plate": "{new_plate}"}"#)
        .actions(&[Action::HouseholdWrite])
        .allow(&[Resident, Staff, Grid])
        .note("staff register a car for a household of their area"),
    Probe::delete("/api/v1/access/vehicles/{vehicle}")
        .actions(&[Action::HouseholdWrite])
        .allow(&[Resident, Staff, Grid]),
    Probe::get("/api/v1/access/settings")
        .actions(GATE_READERS)
        .filtered(&[Staff, Grid, OtherGrid, StaffB, Property, TokenB])
        .note("one setting for the installation"),
    Probe::put("/api/v1/access/settings")
        .json(r#"{"fever_threshold_x10": 373}"#)
        .actions(DEVICE_ADMIN)
        .allow(&[Admin])
        .note("whole-tree device administrators only"),
    Probe::get("/api/v1/access/passes")
        .actions(ACCESS_READ)
        .allow(PASS_READERS)
        .filtered(&[OtherGrid, OtherResident, ResidentB, StaffB, TokenB])
        .note("a resident's household's; staff: those in their access_read area"),
    Probe::post("/api/v1/access/passes")
        .json(r#"{"visitor_name": "矩阵访客", "phone": "{new_phone}", "valid_until": {in_1d}}"#)
        .allow(RESIDENTS),
    Probe::get("/api/v1/access/passes/{pass}")
        .actions(ACCESS_READ)
        .allow(PASS_READERS),
    Probe::get("/api/v1/access/passes/{pass}/qr.svg")
        .actions(ACCESS_READ)
        .allow(&[Resident])
        .note("only the household that issued the pass gets its QR (docs/security.md, decisions)"),
    Probe::get("/api/v1/access/passes/{pass}/qr.png")
        .actions(ACCESS_READ)
        .allow(&[Resident])
        .note("the same code as qr.svg, as an image to save or send"),
    Probe::post("/api/v1/access/passes/{pass}/revoke")
        .actions(&[Action::HouseholdWrite, Action::DeviceAdmin])
        .allow(PASS_READERS)
        .note("its household, or staff with household_write or device_admin over it"),
    Probe::post("/api/v1/access/verify")
        .json(r#"{"gate_id": "{gate}", "token": "{pass_token}"}"#)
        .actions(&[Action::VisitorVerify])
        .allow(&[Property]),
    // ---- pages ----
    Probe::get("/me/passes")
        .allow(&[Resident, OtherResident])
        .filtered(&[ResidentB]),
    Probe::post("/me/passes")
        .form(&[
            ("visitor_name", "矩阵访客"),
            ("phone", "{new_phone}"),
            ("plate", ""),
            ("start", ""),
            ("hours", "24"),
        ])
        .allow(RESIDENTS),
    Probe::get("/me/passes/{pass}")
        .actions(ACCESS_READ)
        .allow(PASS_READERS),
    Probe::post("/me/passes/{pass}/revoke")
        .actions(&[Action::HouseholdWrite, Action::DeviceAdmin])
        .allow(PASS_READERS),
    Probe::post("/me/vehicles")
        .form(&[("plate", "{new_plate}")])
        .allow(RESIDENTS),
    Probe::post("/me/vehicles/{vehicle}/remove")
        .actions(&[Action::HouseholdWrite])
        .allow(&[Resident, Staff, Grid]),
    Probe::get("/staff/access")
        .actions(ACCESS_READ)
        .allow(&[Staff, Property])
        .filtered(&[Grid, OtherGrid, StaffB]),
    Probe::post("/staff/access/gates")
        .form(&[
            ("name", "矩阵东门"),
            ("place_id", "{community}"),
            ("kind", "face"),
            ("device_id", ""),
        ])
        .actions(DEVICE_ADMIN)
        .allow(&[Property]),
    Probe::post("/staff/access/gates/{gate}/toggle")
        .form(&[("version", "1")])
        .actions(DEVICE_ADMIN)
        .allow(&[Property]),
    Probe::post("/staff/access/blacklist")
        .form(&[
            ("plate", "{new_plate}"),
            ("place_id", "{community}"),
            ("reason", "矩阵冲卡"),
        ])
        .actions(DEVICE_ADMIN)
        .allow(&[Property]),
    Probe::post("/staff/access/blacklist/{blacklist}/remove")
        .actions(DEVICE_ADMIN)
        .allow(&[Property]),
];
