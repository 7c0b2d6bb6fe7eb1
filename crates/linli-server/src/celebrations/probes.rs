//! Authorization probes of 家有喜事. `{celebration}` is one the resident's household shared in
//! community A. See `docs/security.md` ("The authorization matrix").

use linli_core::celebrations::CELEBRATION_MODERATE;

use crate::manifest::Caller::*;
use crate::manifest::Probe;

pub static PROBES: &[Probe] = &[
    Probe::get("/api/v1/celebrations")
        .actions(&[CELEBRATION_MODERATE])
        .allow(&[Staff, Resident, OtherResident])
        .filtered(&[ResidentB, StaffB, TokenB])
        .note("residents: their community's; staff: the area they moderate"),
    Probe::post("/api/v1/celebrations")
        .json(r#"{"kind": "birth", "title": "新生之喜"}"#)
        .allow(&[Resident, OtherResident, ResidentB])
        .note("residents share for their own household, in their own community"),
    Probe::get("/api/v1/celebrations/{celebration}")
        .actions(&[CELEBRATION_MODERATE])
        .allow(&[Staff, Resident, OtherResident]),
    Probe::post("/api/v1/celebrations/{celebration}/congratulations")
        .allow(&[OtherResident])
        .refused_with(409)
        .note("neighbours of the community; the sharer's own household: 409"),
    Probe::post("/api/v1/celebrations/{celebration}/hide")
        .actions(&[CELEBRATION_MODERATE])
        .allow(&[Staff]),
    Probe::get("/me/celebrations")
        .allow(&[Resident, OtherResident, Staff])
        .filtered(&[ResidentB, StaffB]),
    Probe::post("/me/celebrations")
        .form(&[("kind", "birth"), ("title", "新生之喜"), ("message", "")])
        .allow(&[Resident, OtherResident, ResidentB]),
    Probe::post("/me/celebrations/{celebration}/congratulate")
        .allow(&[OtherResident])
        .refused_with(409),
    Probe::get("/staff/celebrations")
        .actions(&[CELEBRATION_MODERATE])
        .allow(&[Staff])
        .filtered(&[StaffB]),
    Probe::post("/staff/celebrations/{celebration}/hide")
        .actions(&[CELEBRATION_MODERATE])
        .allow(&[Staff]),
];
