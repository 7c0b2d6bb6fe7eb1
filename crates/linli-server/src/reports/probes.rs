//! Authorization probes of reports: intake, the state machine, photos, statistics, the routing
//! catalogue and the working-day calendar, the resident's and the staff's pages, Open311. See
//! `docs/security.md` ("The authorization matrix").
//!
//! The fixtures: `{report}` is a repair the resident filed at home (submitted, not yet sent to
//! any unit); `{report_dispatched}` one dispatched to the property company; `{report_visit}` one
//! awaiting the return visit; `{report_quoted}` a paid repair grabbed by a technician with a
//! quote waiting for the resident; `{report_public}` one the committee made public (shown to
//! neighbours and on Open311, so not a secret of A).

use linli_core::auth::Action;

use crate::manifest::Caller::{self, *};
use crate::manifest::Probe;

const EVERYONE: &[Caller] = Caller::EVERYONE;
const SIGNED_IN: &[Caller] = Caller::SIGNED_IN;
/// Who sees `{report}`: the committee, the grid worker of its grid, its reporter.
const SEES: &[Caller] = &[Staff, Grid, Resident];
const READ: &[Action] = &[Action::ReportRead];
/// Reading lists: `report_read`, or `report_create` for what the caller's account filed (a
/// token: inside its area).
const LIST: &[Action] = &[Action::ReportRead, Action::ReportCreate];
const STATS: &[Action] = &[Action::ReportStats];
const CATALOGUE: &[Action] = &[Action::RoutingAdmin, Action::ReportDispatch];
/// Who may say "me too": staff of the area and the community's residents.
const ME_TOO: &[Caller] = &[Staff, Grid, Resident, OtherResident];

pub static PROBES: &[Probe] = &[
    // ---- API: reports ----
    Probe::get("/api/v1/reports?status=submitted")
        .actions(LIST)
        .allow(SEES)
        .filtered(&[OtherGrid, OtherResident, ResidentB, StaffB, Property, Merchant, Volunteer, TokenB, TokenNoAction])
        .note("visibility in SQL: unit staff see what reaches their unit, residents their own"),
    Probe::get("/api/v1/reports")
        .actions(LIST)
        .allow(&[Staff, Grid, Resident, Property])
        .filtered(&[OtherGrid, OtherResident, ResidentB, StaffB, Merchant, Volunteer, TokenB, TokenNoAction]),
    Probe::post("/api/v1/reports")
        .json(r#"{"category": "repair_common", "title": "矩阵报事", "description": "矩阵：楼道灯不亮", "place_id": "{home_room}"}"#)
        .actions(&[Action::ReportCreate])
        .allow(&[Staff, Grid, Resident, OtherResident, Property])
        .refused_with(400)
        .note("residents in their own community, staff with report_create over the place; a place outside is no place (400 report.location_required)"),
    Probe::get("/api/v1/reports/duplicates?category=repair_common&place_id={home_room}")
        .actions(READ)
        .allow(&[Staff, Grid, Resident, OtherResident, Property])
        .note("the caller's own community or area: ids of open reports, titles of those the caller sees (docs/reports.md)"),
    Probe::get("/api/v1/reports/stats")
        .actions(STATS)
        .allow(&[Staff, Property])
        .filtered(&[StaffB, TokenB]),
    Probe::get("/api/v1/reports/stats/export?format=csv")
        .actions(STATS)
        .allow(&[Staff, Property])
        .filtered(&[StaffB, TokenB]),
    Probe::get("/api/v1/reports/grab-pool")
        .filtered(SIGNED_IN)
        .note("grab jobs of one's own units; the fixture quote is already taken"),
    Probe::get("/api/v1/reports/{report}")
        .actions(READ)
        .allow(SEES),
    Probe::get("/api/v1/reports/{report_dispatched}")
        .actions(READ)
        .allow(&[Staff, Grid, Resident, Property]),
    Probe::post("/api/v1/reports/{report}/actions")
        .json(r#"{"action": "accept", "public_note": "矩阵受理"}"#)
        .actions(&[Action::ReportDispatch])
        .allow(&[Staff]),
    Probe::post("/api/v1/reports/{report_dispatched}/actions")
        .json(r#"{"action": "sign"}"#)
        .actions(&[Action::ReportHandle])
        .allow(&[Property, Staff])
        .note("the unit it was dispatched to, or a dispatcher of the place on its behalf"),
    Probe::post("/api/v1/reports/{report_visit}/actions")
        .json(r#"{"action": "visit", "rating": 5, "solved": true}"#)
        .actions(&[Action::ReportDispatch])
        .allow(&[Staff, Resident])
        .note("the reporter rates; the committee records a return visit"),
    Probe::get("/api/v1/reports/{report_dispatched}/assignees")
        .actions(READ)
        .allow(&[Staff, Property])
        .note("those who may assign"),
    Probe::post("/api/v1/reports/{report_public}/me-too")
        .actions(READ)
        .allow(ME_TOO)
        .note("staff of the area and residents of the community (docs/reports.md)"),
    Probe::post("/api/v1/reports/{report}/me-too")
        .actions(READ)
        .allow(ME_TOO)
        .note("not only public ones: the duplicate preview offers every open report of the community"),
    Probe::post("/api/v1/reports/{report}/photos")
        .raw("image/png", "{png}")
        .actions(READ)
        .allow(SEES),
    Probe::get("/api/v1/reports/{report}/photos/{photo}")
        .actions(READ)
        .allow(SEES),
    Probe::get("/api/v1/report-categories").filtered(SIGNED_IN),
    // ---- API: catalogue and calendar ----
    Probe::get("/api/v1/routing-rules")
        .actions(CATALOGUE)
        .allow(&[Staff])
        .filtered(&[StaffB, TokenB]),
    Probe::post("/api/v1/routing-rules")
        .json(r#"{"category": "repair_common", "area_id": "{community}", "unit_id": "{property_org}", "deadline_unit": "hours", "sign_by": 2, "first_contact_by": 4, "resolve_by": 24, "notice_zh": "矩阵", "notice_en": "matrix"}"#)
        .actions(&[Action::RoutingAdmin])
        .allow(&[Admin]),
    Probe::get("/api/v1/work-calendar").filtered(SIGNED_IN),
    Probe::post("/api/v1/work-calendar")
        .json(r#"{"year": 2031, "source": "矩阵：2031年节假日安排", "holidays": ["2031-01-01"], "workdays": []}"#)
        .actions(&[Action::RoutingAdmin])
        .allow(&[Admin, TokenB])
        .note("installation-wide configuration: the action decides, not the area (docs/security.md)"),
    Probe::get("/api/v1/work-calendar/{year}").filtered(SIGNED_IN),
    // ---- pages: the resident's ----
    Probe::get("/me/reports")
        .allow(&[Resident])
        .filtered(&[OtherResident, ResidentB]),
    Probe::get("/me/reports/new")
        .allow(&[Resident, OtherResident])
        .filtered(&[ResidentB]),
    Probe::post("/me/reports/new")
        .multipart(&[
            ("category", "repair_common"),
            ("description", "矩阵：单元门坏了"),
            ("place_id", "{home_room}"),
        ])
        .allow(&[Resident, OtherResident])
        .refused_with(400)
        .note("residents file in their own community (another: a field error)"),
    Probe::get("/reports/{report}")
        .allow(SEES)
        .note("the link of every report notice: opens the staff's or the resident's page"),
    Probe::get("/me/reports/{report}")
        .allow(SEES)
        .note("staff who see it get the resident's view"),
    Probe::post("/me/reports/{report}/me-too").allow(ME_TOO),
    Probe::post("/me/reports/{report_visit}/rate")
        .form(&[
            ("rating", "5"),
            ("solved", "yes"),
            ("public_note", "矩阵满意"),
            ("version", "{report_visit_version}"),
        ])
        .actions(&[Action::ReportDispatch])
        .allow(&[Resident, Staff]),
    Probe::post("/me/reports/{report_quoted}/quote")
        .form(&[
            ("decision", "accept"),
            ("public_note", ""),
            ("amount_fen", "{report_quoted_amount}"),
            ("quoted_at", "{report_quoted_at}"),
        ])
        .actions(&[Action::ReportDispatch])
        .allow(&[Resident, Staff])
        .note("the reporter, or a dispatcher of the place on their behalf"),
    Probe::post("/reports/{report}/photos")
        .multipart(&[("back", "me"), ("photo", "{png}")])
        .allow(SEES)
        .note("from the resident's or the staff's detail page"),
    // ---- pages: the staff's ----
    Probe::get("/staff/reports")
        .actions(READ)
        .allow(&[Staff, Grid, Property])
        .filtered(&[OtherGrid, StaffB]),
    Probe::get("/staff/reports?status=submitted")
        .actions(READ)
        .allow(&[Staff, Grid])
        .filtered(&[OtherGrid, StaffB, Property]),
    Probe::get("/staff/reports/stats")
        .actions(STATS)
        .allow(&[Staff, Property])
        .filtered(&[StaffB]),
    Probe::get("/staff/reports/{report}")
        .actions(READ)
        .allow(&[Staff, Grid]),
    Probe::post("/staff/reports/{report}/act")
        .form(&[("action", "accept"), ("public_note", "矩阵受理")])
        .actions(&[Action::ReportDispatch])
        .allow(&[Staff]),
    Probe::get("/admin/routing")
        .actions(CATALOGUE)
        .allow(&[Staff])
        .filtered(&[StaffB]),
    Probe::post("/admin/routing")
        .form(&[
            ("rule_key", ""),
            ("category", "repair_common"),
            ("area_id", "{community}"),
            ("unit_id", "{property_org}"),
            ("deadline_unit", "hours"),
            ("sign_by", "2"),
            ("first_contact_by", "4"),
            ("resolve_by", "24"),
            ("notice_zh", "矩阵"),
            ("notice_en", "matrix"),
            ("dispatch_mode", "assign"),
            ("return_visit", "always"),
            ("visit_sample_percent", "100"),
        ])
        .actions(&[Action::RoutingAdmin])
        .allow(&[Admin]),
    Probe::get("/admin/routing/new")
        .actions(&[Action::RoutingAdmin])
        .allow(&[Admin]),
    Probe::get("/admin/routing/{rule_key}")
        .actions(&[Action::RoutingAdmin])
        .allow(&[Admin]),
    Probe::get("/admin/calendar")
        .actions(&[Action::ReportRead, Action::RoutingAdmin])
        .filtered(&[Staff, Grid, OtherGrid, StaffB, Property, Admin])
        .note("the calendar is the same for everyone who works reports"),
    Probe::post("/admin/calendar")
        .form(&[("year", "2032"), ("source", "矩阵：2032年节假日安排"), ("holidays", "01-01"), ("workdays", "")])
        .actions(&[Action::RoutingAdmin])
        .allow(&[Admin]),
    // ---- Open311: the key travels as a parameter; reading without one shows public reports ----
    Probe::get("/open311/v2/discovery.json").filtered(EVERYONE),
    Probe::get("/open311/v2/services.json").filtered(EVERYONE),
    Probe::get("/open311/v2/requests.json").filtered(EVERYONE),
    Probe::get("/open311/v2/requests.json?api_key={api_key}")
        .actions(LIST)
        .allow(&[TokenA])
        .filtered(EVERYONE)
        .note("a key adds its report_read area; an empty key is no key"),
    Probe::get("/open311/v2/servicerequestupdates.json").filtered(EVERYONE),
    Probe::post("/open311/v2/requests.json")
        .form(&[
            ("api_key", "{api_key}"),
            ("service_code", "repair_common"),
            ("address_id", "{home_room}"),
            ("description", "矩阵：路灯不亮"),
        ])
        .actions(&[Action::ReportCreate])
        .allow(&[TokenA])
        .refused_with(400)
        .note("a place outside the key's area is no place (400)"),
    Probe::options("/open311/v2/requests.json").filtered(EVERYONE),
    Probe::get("/open311/v2/services/repair_common.json").filtered(EVERYONE),
    Probe::options("/open311/v2/services/repair_common.json").filtered(EVERYONE),
    Probe::get("/open311/v2/requests/{report}.json?api_key={api_key}")
        .actions(READ)
        .allow(&[TokenA]),
    Probe::options("/open311/v2/requests/{report}.json").filtered(EVERYONE),
    Probe::get("/open311/v2/tokens/{open311_token}.json")
        .refused_with(404)
        .note("a private request's token answers exactly like an unknown one (the client has the id from its POST answer)"),
    Probe::options("/open311/v2/tokens/x.json").filtered(EVERYONE),
];
