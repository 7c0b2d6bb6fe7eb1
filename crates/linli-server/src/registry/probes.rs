//! Authorization probes of the registry (一户一表): places, organisations, labels, households,
//! persons, import and export, residents' own data and corrections. See `docs/security.md`
//! ("The authorization matrix").

use linli_core::auth::Action;

use crate::manifest::Caller::{self, *};
use crate::manifest::Probe;

const RESIDENTS: &[Caller] = Caller::RESIDENTS;
/// Readers of A's registry: the committee, the grid worker of the fixtures' grid, and the
/// property company (which serves A).
const READERS: &[Caller] = &[Staff, Grid, Property];
/// Writers of A's registry.
const WRITERS: &[Caller] = &[Staff, Grid];
/// Callers whose area does not hold the fixtures: their lists answer, without A's rows.
const ELSEWHERE: &[Caller] = &[OtherGrid, StaffB, TokenB];

pub static PROBES: &[Probe] = &[
    // ---- places ----
    Probe::get("/api/v1/places?kind=room")
        .actions(&[Action::PlaceRead])
        .allow(&[Staff, Grid, Property, Merchant])
        .filtered(ELSEWHERE),
    Probe::post("/api/v1/places")
        .json(r#"{"parent_id": "{unit}", "kind": "room", "name": "矩阵{new_code}", "room_use": "residential"}"#)
        .actions(&[Action::PlaceWrite])
        .allow(&[Staff]),
    Probe::get("/api/v1/places/{room}")
        .actions(&[Action::PlaceRead])
        .allow(&[Staff, Grid, Property, Merchant]),
    Probe::patch("/api/v1/places/{room}")
        .json(r#"{"name": "矩阵{new_code}"}"#)
        .actions(&[Action::PlaceWrite])
        .allow(&[Staff]),
    Probe::get("/api/v1/places/{room}/geo")
        .actions(&[Action::PlaceRead])
        .allow(&[Staff, Grid, Property, Merchant]),
    Probe::put("/api/v1/places/{room}/geo")
        .json(r#"{"lat": 30.58, "lon": 114.273, "radius_m": 20}"#)
        .actions(&[Action::PlaceWrite])
        .allow(&[Staff]),
    // ---- organisations and labels ----
    Probe::get("/api/v1/orgs")
        .actions(&[Action::OrgRead])
        .allow(&[Staff, Grid, Property, Merchant])
        .filtered(ELSEWHERE),
    Probe::post("/api/v1/orgs")
        .json(r#"{"kind": "merchant", "name": "矩阵商户{new_code}", "place_id": "{grid}"}"#)
        .actions(&[Action::OrgWrite])
        .allow(&[Admin]),
    Probe::get("/api/v1/orgs/{org}")
        .actions(&[Action::OrgRead])
        .allow(&[Staff, Property, Merchant])
        .note("A's committee sits at the community, above the grid workers' grids"),
    Probe::get("/api/v1/labels")
        .filtered(Caller::SIGNED_IN)
        .note("configuration, the same for everyone"),
    Probe::post("/api/v1/labels")
        .json(r#"{"code": "m{new_code}", "name_zh": "矩阵标签{new_code}", "name_en": "matrix {new_code}"}"#)
        .actions(&[Action::LabelWrite])
        .allow(&[Admin, TokenB])
        .note("installation-wide configuration: the action decides, not the area (docs/security.md)"),
    // ---- households and persons ----
    Probe::get("/api/v1/households?limit=500")
        .actions(&[Action::HouseholdRead])
        .allow(READERS)
        .filtered(ELSEWHERE),
    Probe::get("/api/v1/households?place_id={unit}")
        .actions(&[Action::HouseholdRead])
        .allow(READERS)
        .filtered(ELSEWHERE)
        .note("the fixtures' unit: elsewhere the list is empty, whatever the paging"),
    Probe::post("/api/v1/households")
        .json(r#"{"room_id": "{room}", "tenure": "owner", "head": {"name": "{new_name}", "id_number": "{new_id_number}", "phone": "{new_phone}", "relation": "head"}}"#)
        .actions(&[Action::HouseholdWrite])
        .allow(WRITERS),
    Probe::post("/api/v1/households")
        .json(r#"{"room_id": "{room}", "tenure": "owner", "head": {"name": "{new_name}", "id_number": "{new_id_number}", "phone": "{new_phone}", "relation": "head"}}"#)
        .actions(&[Action::PersonWrite])
        .allow(WRITERS)
        .note("the second action the route needs: a token with household_write but not person_write is refused"),
    Probe::get("/api/v1/households/{household}")
        .actions(&[Action::HouseholdRead])
        .allow(READERS),
    Probe::get("/api/v1/households/{household}/linked")
        .actions(&[Action::HouseholdRead])
        .allow(&[Staff, Grid, Property, OtherResident])
        .note("its own residents too; each section by the caller's rights"),
    Probe::patch("/api/v1/households/{household}")
        .json(r#"{"version": 1, "note": "矩阵走访"}"#)
        .actions(&[Action::HouseholdWrite])
        .allow(WRITERS),
    Probe::post("/api/v1/households/{household}/members")
        .json(r#"{"name": "{new_name}", "id_number": "{new_id_number}", "relation": "child"}"#)
        .actions(&[Action::PersonWrite])
        .allow(WRITERS),
    Probe::get("/api/v1/persons?limit=500")
        .actions(&[Action::PersonRead])
        .allow(READERS)
        .filtered(ELSEWHERE),
    Probe::get("/api/v1/persons?name=矩阵")
        .actions(&[Action::PersonRead])
        .allow(READERS)
        .filtered(ELSEWHERE)
        .note("finds exactly the fixtures' persons"),
    Probe::get("/api/v1/persons?place_id={unit}")
        .actions(&[Action::PersonRead])
        .allow(READERS)
        .filtered(ELSEWHERE),
    Probe::get("/api/v1/persons/{person}")
        .actions(&[Action::PersonRead])
        .allow(READERS),
    Probe::patch("/api/v1/persons/{person}")
        .json(r#"{"version": 1, "name": "{new_name}"}"#)
        .actions(&[Action::PersonWrite])
        .allow(WRITERS),
    Probe::post("/api/v1/persons/{person}/reveal")
        .json(r#"{"purpose": "矩阵核实身份", "fields": ["id_number", "phone"]}"#)
        .actions(&[Action::PersonReveal])
        .allow(&[Staff, Grid])
        .note("property staff no longer reveal (docs/security.md, decisions)"),
    Probe::post("/api/v1/persons/{member}/move-out")
        .json(r#"{"reason": "矩阵搬走"}"#)
        .actions(&[Action::HouseholdWrite])
        .allow(WRITERS),
    // ---- a resident's own data ----
    Probe::get("/api/v1/me/household")
        .allow(&[Resident, OtherResident])
        .filtered(&[ResidentB]),
    Probe::get("/api/v1/me/export")
        .allow(&[Resident, OtherResident])
        .filtered(&[ResidentB]),
    Probe::post("/api/v1/me/corrections")
        .json(r#"{"field": "note", "new_value": "矩阵更正", "reason": "矩阵"}"#)
        .allow(RESIDENTS),
    Probe::get("/api/v1/corrections")
        .actions(&[Action::CorrectionReview])
        .allow(&[Staff])
        .filtered(&[StaffB, TokenB]),
    Probe::post("/api/v1/corrections/{correction}/decision")
        .json(r#"{"approve": false, "note": "矩阵驳回"}"#)
        .actions(&[Action::CorrectionReview])
        .allow(&[Staff]),
    // ---- import and export ----
    Probe::get("/api/v1/registry/import/template?format=csv")
        .actions(&[Action::RegistryImport])
        .allow(&[Staff])
        .filtered(&[StaffB, TokenB])
        .note("a blank sheet"),
    Probe::post("/api/v1/registry/import/households")
        .raw("text/csv", "{csv}")
        .actions(&[Action::RegistryImport])
        .allow(&[Staff])
        .filtered(&[StaffB, TokenB])
        .note("rows naming rooms outside the caller's area are unknown places: nothing imported"),
    Probe::get("/api/v1/registry/export/persons?format=csv")
        .actions(&[Action::RegistryExport])
        .allow(&[Staff])
        .filtered(&[StaffB, TokenB]),
    Probe::get("/api/v1/registry/export/households?format=csv")
        .actions(&[Action::RegistryExport])
        .allow(&[Staff])
        .filtered(&[StaffB, TokenB]),
    // ---- pages ----
    Probe::get("/registry")
        .actions(&[Action::PlaceRead])
        .allow(&[Staff, Grid, Property, Merchant])
        .filtered(&[OtherGrid, StaffB]),
    Probe::get("/registry?place={unit}")
        .actions(&[Action::PlaceRead])
        .allow(&[Staff, Grid, Property, Merchant]),
    Probe::get("/registry/households/{household}")
        .actions(&[Action::HouseholdRead])
        .allow(READERS),
    Probe::get("/registry/households/{household}/edit")
        .actions(&[Action::HouseholdWrite])
        .allow(WRITERS),
    Probe::post("/registry/households/{household}/edit")
        .form(&[("version", "1"), ("tenure", "owner"), ("moved_in", ""), ("note", "矩阵走访")])
        .actions(&[Action::HouseholdWrite])
        .allow(WRITERS),
    Probe::get("/registry/persons")
        .actions(&[Action::PersonRead])
        .allow(READERS)
        .filtered(&[OtherGrid, StaffB]),
    Probe::get("/registry/persons?name=矩阵")
        .actions(&[Action::PersonRead])
        .allow(READERS)
        .filtered(&[OtherGrid, StaffB]),
    Probe::get("/registry/persons/{person}")
        .actions(&[Action::PersonRead])
        .allow(READERS),
    Probe::post("/registry/persons/{person}")
        .form(&[("version", "1"), ("name", "{new_name}"), ("phone", ""), ("relation", "head")])
        .actions(&[Action::PersonWrite])
        .allow(WRITERS),
    Probe::post("/registry/persons/{person}/reveal")
        .form(&[("purpose", "矩阵核实身份")])
        .actions(&[Action::PersonReveal])
        .allow(&[Staff, Grid]),
    Probe::get("/registry/labels")
        .filtered(Caller::PEOPLE)
        .note("the label catalogue, the same for everyone"),
    Probe::post("/registry/labels")
        .form(&[("code", "m{new_code}"), ("name_zh", "矩阵标签{new_code}"), ("name_en", "matrix {new_code}")])
        .actions(&[Action::LabelWrite])
        .allow(&[Admin]),
    Probe::get("/registry/export")
        .actions(&[Action::RegistryExport])
        .allow(&[Staff])
        .filtered(&[StaffB]),
    Probe::post("/registry/export/revealed")
        .form(&[("kind", "other"), ("purpose", "矩阵核查"), ("confirm", "1")])
        .actions(&[Action::RegistryExport, Action::PersonReveal])
        .allow(&[Staff, StaffB])
        .note("full numbers only by POST with a purpose, audited; B exports its own people (what the export holds: the GET probe above)"),
    Probe::get("/registry/import")
        .actions(&[Action::RegistryImport])
        .allow(&[Staff])
        .filtered(&[StaffB]),
    Probe::post("/registry/import")
        .multipart(&[("file", "{csv}")])
        .actions(&[Action::RegistryImport])
        .allow(&[Staff])
        .filtered(&[StaffB])
        .note("the preview: rows outside the caller's area are unknown places"),
    Probe::post("/registry/import/commit")
        .form(&[("upload", "{upload}")])
        .actions(&[Action::RegistryImport])
        .allow(&[Staff])
        .note("an upload is its uploader's"),
    Probe::get("/me")
        .allow(&[Resident, OtherResident])
        .filtered(&[ResidentB]),
    Probe::get("/me/corrections/new")
        .allow(&[Resident, OtherResident])
        .filtered(&[ResidentB]),
    Probe::post("/me/corrections")
        .form(&[("field", "note"), ("person_id", ""), ("new_value", "矩阵更正"), ("reason", "矩阵")])
        .allow(RESIDENTS),
    Probe::get("/admin/corrections")
        .actions(&[Action::CorrectionReview])
        .allow(&[Staff])
        .filtered(&[StaffB]),
    Probe::post("/admin/corrections/{correction}")
        .form(&[("approve", "0"), ("note", "矩阵驳回")])
        .actions(&[Action::CorrectionReview])
        .allow(&[Staff]),
    // ---- identity links across communities ----
    Probe::get("/api/v1/person-links")
        .actions(&[Action::PersonWrite])
        .allow(&[Staff, Grid])
        .filtered(&[OtherGrid, StaffB, TokenB])
        .note("requests addressed to the caller's area (the earlier community confirms)"),
    Probe::post("/api/v1/person-links/{person_link}/confirm")
        .json(r#"{"note": "矩阵确认"}"#)
        .actions(&[Action::PersonWrite])
        .allow(&[Staff, Grid])
        .note("who may edit the earlier record"),
    Probe::post("/api/v1/person-links/{person_link}/decline")
        .json(r#"{"note": "矩阵不是同一人"}"#)
        .actions(&[Action::PersonWrite])
        .allow(&[Staff, Grid]),
    Probe::get("/registry/links")
        .actions(&[Action::PersonWrite])
        .allow(&[Staff, Grid])
        .filtered(&[OtherGrid, StaffB]),
    Probe::post("/registry/links/{person_link}")
        .form(&[("decision", "decline"), ("note", "矩阵不是同一人")])
        .actions(&[Action::PersonWrite])
        .allow(&[Staff, Grid]),
];
