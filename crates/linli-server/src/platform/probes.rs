//! Authorization probes of the platform: sign-in and sessions, API tokens, accounts, the audit
//! log, and the routes of no module (home, static files, the live stream, health, metrics, API
//! docs). See `docs/security.md` ("The authorization matrix").

use linli_core::auth::Action;

use crate::manifest::Caller::{self, *};
use crate::manifest::Probe;

const PEOPLE: &[Caller] = Caller::PEOPLE;
const EVERYONE: &[Caller] = Caller::EVERYONE;
/// Reading roles: role or user administrators.
const ROLES_READ: &[Action] = &[Action::RoleAdmin, Action::UserAdmin];

pub static PROBES: &[Probe] = &[
    // ---- API: sign-in, sessions, tokens ----
    Probe::post("/api/v1/auth/login")
        .json(r#"{"login": "{matrix_login}", "password": "linli-demo"}"#)
        .allow(EVERYONE)
        .note("public; signs in the matrix's own throwaway account"),
    Probe::post("/api/v1/auth/logout")
        .allow(EVERYONE)
        .note("public: ends the session it is sent with, if any"),
    Probe::get("/api/v1/auth/me")
        .allow(&[Resident, OtherResident])
        .filtered(&[Staff, Grid, OtherGrid, ResidentB, StaffB, Property, Merchant, Volunteer, TokenB, TokenNoAction])
        .note("one's own identity (a resident's names their household)"),
    Probe::post("/api/v1/auth/password")
        .json(r#"{"old_password": "linli-demo", "new_password": "linli-demo"}"#)
        .allow(PEOPLE)
        .note("one's own password; a token may not change its creator's"),
    Probe::post("/api/v1/auth/tokens")
        .json(r#"{"name": "矩阵令牌", "actions": ["person_read"], "place_id": "{grid}", "expires_in_days": 1}"#)
        .actions(&[Action::TokenCreate])
        .allow(&[Staff]),
    Probe::get("/api/v1/auth/tokens")
        .allow(&[Staff])
        .filtered(&[Grid, OtherGrid, Resident, OtherResident, ResidentB, StaffB, Property, Merchant, Volunteer])
        .note("one's own tokens (the fixture token is the committee's)"),
    Probe::delete("/api/v1/auth/tokens/{token}")
        .allow(&[Staff])
        .note("another user's token: 404"),
    // ---- API: accounts, audit ----
    Probe::get("/api/v1/users")
        .actions(&[Action::UserAdmin])
        .allow(&[Staff])
        .filtered(&[StaffB, TokenB]),
    Probe::post("/api/v1/users")
        .json(r#"{"login": "{new_code}", "display_name": "矩阵新用户", "password": "linli-demo", "bindings": [{"role": "volunteer", "place_id": "{grid}"}]}"#)
        .actions(&[Action::UserAdmin])
        .allow(&[Staff]),
    Probe::get("/api/v1/audit")
        .actions(&[Action::AuditRead])
        .allow(&[Staff])
        .filtered(&[StaffB, TokenB]),
    Probe::get("/api/v1/audit/verify")
        .actions(&[Action::AuditRead])
        .allow(&[Admin])
        .note("whole-tree auditors only"),
    // ---- pages: sign-in, password, preferences ----
    Probe::get("/login").filtered(EVERYONE),
    Probe::post("/login")
        .form(&[("login", "{matrix_login}"), ("password", "linli-demo"), ("next", "/")])
        .allow(EVERYONE),
    Probe::post("/logout").allow(PEOPLE).succeeds_with(303),
    Probe::get("/password").filtered(PEOPLE),
    Probe::post("/password")
        .form(&[("old_password", "linli-demo"), ("new_password", "linli-demo")])
        .allow(PEOPLE)
        .succeeds_with(303)
        .note("signs out: a redirect to the sign-in page"),
    Probe::post("/prefs")
        .form(&[("lang", "zh-CN"), ("big", "0"), ("back", "/")])
        .filtered(EVERYONE),
    // ---- pages: accounts, audit ----
    Probe::get("/admin/users")
        .actions(&[Action::UserAdmin])
        .allow(&[Staff])
        .filtered(&[StaffB]),
    Probe::post("/admin/users")
        .form(&[
            ("login", "{new_code}"),
            ("display_name", "矩阵新用户"),
            ("password", "linli-demo"),
            ("phone", ""),
            ("role", "volunteer"),
            ("place_id", "{grid}"),
        ])
        .actions(&[Action::UserAdmin])
        .allow(&[Staff])
        .refused_with(400)
        .note("a place outside the caller's area is not among the form's choices: 400"),
    // ---- stopping an account ----
    Probe::post("/api/v1/users/{user}/disable")
        .actions(&[Action::UserAdmin])
        .allow(&[Staff])
        .note("user admin over every binding of the account; nobody disables themselves"),
    Probe::post("/api/v1/users/{user}/enable")
        .actions(&[Action::UserAdmin])
        .allow(&[Staff]),
    Probe::post("/admin/users/{user}/disable")
        .actions(&[Action::UserAdmin])
        .allow(&[Staff]),
    Probe::post("/admin/users/{user}/enable")
        .actions(&[Action::UserAdmin])
        .allow(&[Staff]),
    // ---- roles as data ----
    Probe::get("/api/v1/roles")
        .actions(ROLES_READ)
        .allow(&[Staff])
        .filtered(&[StaffB, TokenB])
        .note("the catalogue is no secret; custom roles of the caller's own area"),
    Probe::post("/api/v1/roles")
        .json(r#"{"name": "矩阵新角色", "kind": "area", "place_id": "{community}", "actions": ["place_read"]}"#)
        .actions(&[Action::RoleAdmin])
        .allow(&[Staff])
        .note("a place outside the caller's area: 404"),
    Probe::get("/api/v1/roles/{role}")
        .actions(ROLES_READ)
        .allow(&[Staff]),
    Probe::patch("/api/v1/roles/{role}")
        .json(r#"{"version": 1, "name": "矩阵角色改"}"#)
        .actions(&[Action::RoleAdmin])
        .allow(&[Staff]),
    Probe::delete("/api/v1/roles/{role}")
        .actions(&[Action::RoleAdmin])
        .allow(&[Staff]),
    Probe::get("/admin/roles")
        .actions(ROLES_READ)
        .allow(&[Staff])
        .filtered(&[StaffB]),
    Probe::post("/admin/roles")
        .form(&[
            ("name", "矩阵新角色"),
            ("kind", "area"),
            ("place_id", "{community}"),
            ("actions", "place_read"),
        ])
        .actions(&[Action::RoleAdmin])
        .allow(&[Staff])
        .refused_with(400)
        .note("a place outside the caller's area re-renders the form (400)"),
    Probe::get("/admin/roles/{role}")
        .actions(ROLES_READ)
        .allow(&[Staff]),
    Probe::post("/admin/roles/{role}")
        .form(&[("name", "矩阵角色改"), ("version", "1"), ("actions", "place_read")])
        .actions(&[Action::RoleAdmin])
        .allow(&[Staff]),
    Probe::post("/admin/roles/{role}/delete")
        .actions(&[Action::RoleAdmin])
        .allow(&[Staff]),
    // ---- the workbench ----
    Probe::get("/staff")
        .filtered(PEOPLE)
        .note("each caller's own figures (residents are sent home)"),
    Probe::get("/admin/audit")
        .actions(&[Action::AuditRead])
        .allow(&[Staff])
        .filtered(&[StaffB]),
    // ---- routes of no module ----
    Probe::get("/").filtered(PEOPLE).note("a redirect to one's start page"),
    Probe::get("/static/linli.css").filtered(EVERYONE),
    Probe::get("/static/linli.js").filtered(EVERYONE),
    Probe::get("/static/report-form.js").filtered(EVERYONE),
    Probe::get("/static/icon.svg").filtered(EVERYONE),
    Probe::get("/static/icon-192.png").filtered(EVERYONE),
    Probe::get("/static/icon-512.png").filtered(EVERYONE),
    Probe::get("/manifest.webmanifest").filtered(EVERYONE),
    Probe::get("/sw.js").filtered(EVERYONE),
    Probe::get("/offline").filtered(EVERYONE),
    Probe::get("/events")
        .filtered(PEOPLE)
        .stream()
        .note("who hears which event: tests/it/reports_live.rs, safety_live.rs"),
    Probe::get("/healthz").filtered(EVERYONE),
    Probe::get("/readyz").filtered(EVERYONE),
    Probe::get("/metrics").filtered(EVERYONE),
    Probe::get("/api/docs").filtered(EVERYONE),
    Probe::get("/api/docs/").filtered(EVERYONE),
    Probe::get("/api/docs/swagger-ui.css").filtered(EVERYONE),
    Probe::get("/api/v1/openapi.json").filtered(EVERYONE),
];
