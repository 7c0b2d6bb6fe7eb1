//! Authorization probes of notifications: the inbox, notification channels and follows (a
//! person's own, never a token's), and outbound webhooks of an area. See `docs/security.md`
//! ("The authorization matrix").

use linli_core::auth::Action;

use crate::manifest::Caller::{self, *};
use crate::manifest::Probe;

const PEOPLE: &[Caller] = Caller::PEOPLE;
const WEBHOOK: &[Action] = &[Action::WebhookAdmin];
/// Those whose inbox holds notices about A's fixtures.
const TOLD: &[Caller] = &[Resident, Staff, Grid, Property];
/// Everyone else signed in as a person.
const NOT_TOLD: &[Caller] = &[
    OtherGrid,
    OtherResident,
    ResidentB,
    StaffB,
    Merchant,
    Volunteer,
];
/// Everyone signed in as a person but the committee.
const NOT_STAFF: &[Caller] = &[
    Grid,
    OtherGrid,
    Resident,
    OtherResident,
    ResidentB,
    StaffB,
    Property,
    Merchant,
    Volunteer,
];

pub static PROBES: &[Probe] = &[
    // ---- inbox, channels, follows: the signed-in person's own ----
    Probe::get("/api/v1/inbox")
        .allow(TOLD)
        .filtered(NOT_TOLD)
        .note("the committee, the grid worker and the property company are told about A's reports"),
    Probe::get("/api/v1/inbox/unread-count").filtered(PEOPLE),
    Probe::post("/api/v1/inbox/{notice}/read")
        .allow(&[Resident])
        .note("another user's notice: 404"),
    Probe::post("/api/v1/inbox/read-all").allow(PEOPLE),
    Probe::get("/api/v1/me/channels").filtered(PEOPLE),
    Probe::put("/api/v1/me/channels")
        .json(r#"{"email": "matrix@linli.test", "email_enabled": false, "muted": []}"#)
        .allow(PEOPLE),
    Probe::get("/api/v1/follows")
        .allow(&[Staff])
        .filtered(NOT_STAFF)
        .note("the fixture follow is the committee's"),
    Probe::post("/api/v1/follows")
        .json(r#"{"entity": "report", "entity_id": "{report}"}"#)
        .allow(&[Staff, Grid, Resident])
        .note("only what the caller may see"),
    Probe::delete("/api/v1/follows?entity=report&entity_id={followed}")
        .allow(&[Staff])
        .note("one's own follows"),
    // ---- webhooks of an area ----
    Probe::get("/api/v1/webhooks")
        .actions(WEBHOOK)
        .allow(&[Staff])
        .filtered(&[StaffB, TokenB]),
    Probe::post("/api/v1/webhooks")
        .json(r#"{"name": "矩阵钩子", "url": "https://hooks.example.com/linli", "place_id": "{community}", "kinds": []}"#)
        .actions(WEBHOOK)
        .allow(&[Staff]),
    Probe::get("/api/v1/webhooks/{webhook}")
        .actions(WEBHOOK)
        .allow(&[Staff]),
    Probe::patch("/api/v1/webhooks/{webhook}")
        .json(r#"{"name": "矩阵钩子改"}"#)
        .actions(WEBHOOK)
        .allow(&[Staff]),
    Probe::delete("/api/v1/webhooks/{webhook}")
        .actions(WEBHOOK)
        .allow(&[Staff]),
    Probe::post("/api/v1/webhooks/{webhook}/ping")
        .actions(WEBHOOK)
        .allow(&[Staff]),
    Probe::get("/api/v1/webhooks/{webhook}/deliveries")
        .actions(WEBHOOK)
        .allow(&[Staff]),
    Probe::post("/api/v1/webhooks/{webhook}/deliveries/{delivery}/retry")
        .actions(WEBHOOK)
        .allow(&[Staff])
        .note("a dead delivery"),
    // ---- pages ----
    Probe::get("/inbox").allow(TOLD).filtered(NOT_TOLD),
    Probe::post("/inbox/read-all").allow(PEOPLE),
    Probe::post("/inbox/settings")
        .form(&[("email", "matrix@linli.test"), ("muted", "")])
        .allow(PEOPLE),
    Probe::post("/inbox/{notice}/read").allow(&[Resident]),
    Probe::get("/admin/webhooks")
        .actions(WEBHOOK)
        .allow(&[Staff])
        .filtered(&[StaffB]),
    Probe::post("/admin/webhooks")
        .form(&[
            ("name", "矩阵钩子"),
            ("url", "https://hooks.example.com/linli"),
            ("place_id", "{community}"),
            ("kinds", ""),
        ])
        .actions(WEBHOOK)
        .allow(&[Staff])
        .refused_with(400)
        .note("a place outside the caller's area is not among the form's choices: 400"),
    Probe::get("/admin/webhooks/{webhook}")
        .actions(WEBHOOK)
        .allow(&[Staff]),
    Probe::post("/admin/webhooks/{webhook}/active")
        .form(&[("active", "0")])
        .actions(WEBHOOK)
        .allow(&[Staff]),
    Probe::post("/admin/webhooks/{webhook}/ping")
        .actions(WEBHOOK)
        .allow(&[Staff]),
    Probe::post("/admin/webhooks/{webhook}/delete")
        .actions(WEBHOOK)
        .allow(&[Staff]),
    Probe::post("/admin/webhooks/{webhook}/deliveries/{delivery}/retry")
        .actions(WEBHOOK)
        .allow(&[Staff]),
];
