//! Authorization probes of IoT and safety: devices, telemetry, alarm rules, alarms, SOS and
//! check-ins, care contacts, the live safety page. See `docs/security.md` ("The authorization
//! matrix").
//!
//! The fixtures: `{device}` is a smoke detector the property company registered in the
//! resident's building; `{alarm}` the alarm its smoke reading raised.

use linli_core::auth::Action;

use crate::manifest::Caller::{self, *};
use crate::manifest::Probe;

const RESIDENTS: &[Caller] = Caller::RESIDENTS;
/// Everyone with safety rights over the fixtures' building.
const WATCHERS: &[Caller] = &[Staff, Grid, Property];
const ELSEWHERE: &[Caller] = &[OtherGrid, StaffB, TokenB];
const DEVICE_READ: &[Action] = &[Action::DeviceRead];
const DEVICE_ADMIN: &[Action] = &[Action::DeviceAdmin];
const ALARM_HANDLE: &[Action] = &[Action::AlarmHandle];

pub static PROBES: &[Probe] = &[
    Probe::get("/api/v1/iot/devices")
        .actions(DEVICE_READ)
        .allow(WATCHERS)
        .filtered(ELSEWHERE),
    Probe::post("/api/v1/iot/devices")
        .json(r#"{"kind": "smoke", "name": "矩阵烟感", "place_id": "{building}"}"#)
        .actions(DEVICE_ADMIN)
        .allow(&[Property]),
    Probe::get("/api/v1/iot/devices/{device}")
        .actions(DEVICE_READ)
        .allow(WATCHERS),
    Probe::post("/api/v1/iot/devices/{device}/token")
        .actions(DEVICE_ADMIN)
        .allow(&[Property]),
    Probe::get("/api/v1/iot/devices/{device}/telemetry")
        .actions(DEVICE_READ)
        .allow(WATCHERS),
    Probe::get("/api/v1/iot/rules")
        .actions(DEVICE_READ)
        .allow(WATCHERS)
        .filtered(ELSEWHERE)
        .note("the defaults and the overrides inside the caller's area"),
    Probe::post("/api/v1/iot/rules")
        .json(r#"{"device_kind": "smoke", "place_id": "{building}", "spec": {"alarm_type": "matrix", "severity": "MAJOR", "trigger": {"type": "threshold", "condition": {"key": "smoke", "op": "gt", "value": 5}}}}"#)
        .actions(DEVICE_ADMIN)
        .allow(&[Property]),
    Probe::post("/api/v1/iot/telemetry")
        .raw("application/json", r#"{"values": {"smoke": 0}}"#)
        .allow(&[Device])
        .note("a device token only"),
    Probe::post("/api/v1/iot/event")
        .raw("application/json", r#"{"ts": {now}, "type": "tamper"}"#)
        .allow(&[Device]),
    Probe::get("/api/v1/alarms")
        .actions(&[Action::AlarmRead])
        .allow(WATCHERS)
        .filtered(ELSEWHERE),
    Probe::get("/api/v1/alarms/{alarm}")
        .actions(&[Action::AlarmRead])
        .allow(WATCHERS),
    Probe::post("/api/v1/alarms/{alarm}/ack")
        .actions(ALARM_HANDLE)
        .allow(WATCHERS),
    Probe::post("/api/v1/alarms/{alarm}/clear")
        .actions(ALARM_HANDLE)
        .allow(WATCHERS),
    Probe::post("/api/v1/alarms/{alarm}/assign")
        .json(r#"{"user_id": "{user_grid}"}"#)
        .actions(ALARM_HANDLE)
        .allow(WATCHERS),
    Probe::post("/api/v1/alarms/{alarm}/comment")
        .json(r#"{"text": "矩阵已到场"}"#)
        .actions(ALARM_HANDLE)
        .allow(WATCHERS),
    Probe::post("/api/v1/me/sos")
        .allow(RESIDENTS)
        .note("one's own SOS"),
    Probe::post("/api/v1/me/checkin").allow(RESIDENTS),
    Probe::get("/api/v1/persons/{person}/care-contacts")
        .actions(&[Action::PersonRead])
        .allow(WATCHERS),
    Probe::put("/api/v1/persons/{person}/care-contacts")
        .json(r#"[{"user_id": "{user_grid}", "relation": "网格员"}]"#)
        .actions(&[Action::PersonWrite])
        .allow(&[Staff, Grid]),
    // ---- pages ----
    Probe::get("/staff/persons/{person}/care")
        .actions(&[Action::PersonRead])
        .allow(WATCHERS),
    Probe::post("/staff/persons/{person}/care")
        .form(&[("op", "add"), ("shown", ""), ("who", "matrix_neighbour"), ("relation", "邻居")])
        .actions(&[Action::PersonWrite])
        .allow(&[Staff, Grid]),
    Probe::get("/staff/safety")
        .actions(&[Action::AlarmRead])
        .allow(WATCHERS)
        .filtered(&[OtherGrid, StaffB]),
    Probe::post("/staff/safety/alarms/{alarm}/ack")
        .form(&[("community", "{community}")])
        .actions(ALARM_HANDLE)
        .allow(WATCHERS),
    Probe::post("/staff/safety/alarms/{alarm}/clear")
        .form(&[("community", "{community}")])
        .actions(ALARM_HANDLE)
        .allow(WATCHERS),
    Probe::get("/staff/alarms/{alarm}")
        .actions(&[Action::AlarmRead])
        .allow(WATCHERS)
        .note("the link of every alarm notice: the alarm, its household (members for those who read persons)"),
    Probe::post("/staff/alarms/{alarm}/ack")
        .actions(ALARM_HANDLE)
        .allow(WATCHERS),
    Probe::post("/staff/alarms/{alarm}/clear")
        .actions(ALARM_HANDLE)
        .allow(WATCHERS),
    Probe::get("/me/sos")
        .allow(&[Resident])
        .filtered(&[OtherResident, ResidentB])
        .note("the caller's own SOS only, found through their account"),
    Probe::post("/me/sos").allow(RESIDENTS),
    Probe::post("/me/checkin").allow(RESIDENTS),
];
