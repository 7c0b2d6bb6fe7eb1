//! Access pages: the resident's visitor passes (访客通行证: list, register, the QR code to show,
//! revoke) and the staff page (alarms, entries per gate per hour as server-drawn SVG bars,
//! recent records, the plate blacklist).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use linli_core::auth::Action;
use linli_core::tz::Zone;
use linli_core::{AppError, ErrorKind};
use linli_store::access::blacklist::{BlacklistEntry, NewBlacklistEntry};
use linli_store::access::gates::{Gate, GatePatch, GateQuery, NewGate};
use linli_store::access::passes::{NewPass, Pass, PassQuery};
use linli_store::access::records::{AccessAlert, AccessRecord, RecordQuery, StatsQuery};
use linli_store::access::vehicles::{NewVehicle, Vehicle};
use linli_store::audit::Actor;

use crate::AppState;
use crate::manifest::Pages;
use crate::web::{
    FieldErrors, FormOnce, Once, Page, WebResult, WebUser, check_csrf, error_page, or_page, render,
};

pub fn pages() -> Pages {
    Pages::new()
        .get("/me/passes", my_passes)
        .post("/me/passes", create_pass)
        .get("/me/passes/{id}", my_pass)
        .post("/me/passes/{id}/revoke", revoke_pass)
        .post("/me/vehicles", add_vehicle)
        .post("/me/vehicles/{id}/remove", remove_vehicle)
        .get("/staff/access", staff_access)
        .post("/staff/access/gates", add_gate)
        .post("/staff/access/gates/{id}/toggle", toggle_gate)
        .post("/staff/access/blacklist", add_blacklist)
        .post("/staff/access/blacklist/{id}/remove", remove_blacklist)
}

/// Validity choices offered on the form, in hours.
const DURATIONS: [i64; 5] = [2, 8, 24, 72, 168];
const HOUR_MS: i64 = 3_600_000;

#[derive(Template)]
#[template(path = "access_passes.html")]
struct PassesTpl {
    page: Page,
    passes: Vec<Pass>,
    vehicles: Vec<Vehicle>,
    /// The plate typed into the vehicle form (kept when it is refused).
    vehicle_plate: String,
    once: String,
    errors: FieldErrors,
    durations: &'static [i64],
    form: PassForm,
    flash: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct PassForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    _once: String,
    #[serde(default)]
    visitor_name: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    plate: String,
    /// `YYYY-MM-DDTHH:MM` (local time, `time_zone`) or empty for now.
    #[serde(default)]
    start: String,
    #[serde(default)]
    hours: String,
    #[serde(default)]
    multi_use: Option<String>,
}

#[derive(Deserialize)]
struct Flash {
    done: Option<String>,
}

async fn my_passes(State(s): State<AppState>, user: WebUser, Query(f): Query<Flash>) -> WebResult {
    or_page(&user.page, resident(&user))?;
    let passes = or_page(
        &user.page,
        s.store.passes(&user.principal, &PassQuery::default()).await,
    )?;
    let vehicles = or_page(&user.page, s.store.vehicles(&user.principal, None).await)?;
    let flash = f.done.map(|d| {
        user.page.t(match d.as_str() {
            "revoked" => "web-pass-revoked",
            "vehicle" => "web-saved",
            _ => "web-pass-created",
        })
    });
    Ok(render(&PassesTpl {
        page: user.page,
        passes,
        vehicles,
        vehicle_plate: String::new(),
        once: FormOnce::new_token(),
        errors: FieldErrors::default(),
        durations: &DURATIONS,
        form: PassForm {
            hours: "8".into(),
            ..PassForm::default()
        },
        flash,
    }))
}

fn resident(user: &WebUser) -> Result<(), AppError> {
    if user.principal.own_households().is_empty() {
        return Err(AppError::new(
            ErrorKind::Forbidden,
            "registry.not_a_resident",
        ));
    }
    Ok(())
}

/// `2026-11-24T09:30` in the configured time zone → epoch ms.
fn parse_local(zone: Zone, s: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M")
        .ok()
        .map(|t| zone.utc_ms(t))
}

async fn create_pass(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<PassForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    or_page(&user.page, resident(&user))?;
    if let Once::Repeat(loc) = s.form_once.claim(&f._once).await {
        return Ok(Redirect::to(loc.as_deref().unwrap_or("/me/passes")).into_response());
    }
    let now = s.store.now_ms();
    let start = if f.start.trim().is_empty() {
        Ok(now)
    } else {
        parse_local(s.store.clock.zone(), &f.start)
            .ok_or_else(|| AppError::bad_request("validation.bad_value").arg("field", "start"))
    };
    let hours = f
        .hours
        .parse::<i64>()
        .ok()
        .filter(|h| DURATIONS.contains(h))
        .ok_or_else(|| AppError::bad_request("validation.bad_value").arg("field", "hours"));
    let result = match (start, hours) {
        (Ok(from), Ok(h)) => {
            let new = NewPass {
                household_id: None,
                visitor_name: f.visitor_name.clone(),
                phone: f.phone.clone(),
                plate: Some(f.plate.clone()),
                valid_from: Some(from),
                valid_until: from + h * HOUR_MS,
                multi_use: f.multi_use.is_some(),
            };
            s.store
                .create_pass(&user.principal, &Actor::from(&user.principal), new)
                .await
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match result {
        Ok(p) => {
            let loc = format!("/me/passes/{}", p.id);
            s.form_once.finish(&f._once, &loc).await;
            Ok(Redirect::to(&loc).into_response())
        }
        Err(e) if e.kind == ErrorKind::BadRequest => {
            s.form_once.release(&f._once).await;
            let field_default = match e.code {
                "access.plate.invalid" => "plate",
                "access.pass.bad_window" => "start",
                _ => "visitor_name",
            };
            let errors = FieldErrors::from_app(&user.page, &e, field_default);
            let passes = or_page(
                &user.page,
                s.store.passes(&user.principal, &PassQuery::default()).await,
            )?;
            let vehicles = or_page(&user.page, s.store.vehicles(&user.principal, None).await)?;
            let tpl = PassesTpl {
                page: user.page,
                passes,
                vehicles,
                vehicle_plate: String::new(),
                once: FormOnce::new_token(),
                errors,
                durations: &DURATIONS,
                form: f,
                flash: None,
            };
            Ok((StatusCode::BAD_REQUEST, render(&tpl)).into_response())
        }
        Err(e) => {
            s.form_once.release(&f._once).await;
            Err(error_page(&user.page, e))
        }
    }
}

#[derive(Template)]
#[template(path = "access_pass.html")]
struct PassTpl {
    page: Page,
    p: Pass,
}

async fn my_pass(State(s): State<AppState>, user: WebUser, Path(id): Path<String>) -> WebResult {
    let p = or_page(&user.page, s.store.pass(&user.principal, &id).await)?;
    Ok(render(&PassTpl { page: user.page, p }))
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    _csrf: String,
}

async fn revoke_pass(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    match s
        .store
        .revoke_pass(&user.principal, &Actor::from(&user.principal), &id)
        .await
    {
        // Revoking twice (a double tap) ends in the same place.
        Ok(_) => Ok(Redirect::to("/me/passes?done=revoked").into_response()),
        Err(e) if e.code == "access.pass.already_revoked" => {
            Ok(Redirect::to("/me/passes?done=revoked").into_response())
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}

#[derive(Deserialize)]
struct VehicleForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    plate: String,
}

async fn add_vehicle(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<VehicleForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    or_page(&user.page, resident(&user))?;
    let new = NewVehicle {
        household_id: None,
        plate: f.plate.clone(),
    };
    match s
        .store
        .add_vehicle(&user.principal, &Actor::from(&user.principal), new)
        .await
    {
        Ok(_) => Ok(Redirect::to("/me/passes?done=vehicle").into_response()),
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::Conflict) => {
            let mut errors = FieldErrors::default();
            errors.0.insert("vplate".into(), e.message(user.page.lang));
            let passes = or_page(
                &user.page,
                s.store.passes(&user.principal, &PassQuery::default()).await,
            )?;
            let vehicles = or_page(&user.page, s.store.vehicles(&user.principal, None).await)?;
            let tpl = PassesTpl {
                page: user.page,
                passes,
                vehicles,
                vehicle_plate: f.plate.clone(),
                once: FormOnce::new_token(),
                errors,
                durations: &DURATIONS,
                form: PassForm {
                    hours: "8".into(),
                    ..PassForm::default()
                },
                flash: None,
            };
            Ok((StatusCode::BAD_REQUEST, render(&tpl)).into_response())
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}

async fn remove_vehicle(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    or_page(
        &user.page,
        s.store
            .remove_vehicle(&user.principal, &Actor::from(&user.principal), &id)
            .await,
    )?;
    Ok(Redirect::to("/me/passes?done=vehicle").into_response())
}

/// One gate's bars for the last 24 hours.
struct Chart {
    gate: String,
    /// (x, y, height, count, hour label) per hour.
    bars: Vec<(i64, i64, i64, i64, String)>,
    total: i64,
}

const CHART_H: i64 = 100;

#[derive(Template)]
#[template(path = "access_staff.html")]
struct StaffTpl {
    page: Page,
    alerts: Vec<AccessAlert>,
    records: Vec<AccessRecord>,
    gates: Vec<Gate>,
    charts: Vec<Chart>,
    blacklist: Vec<BlacklistEntry>,
    can_admin: bool,
    /// Places where a blacklist entry may be added: (id, name).
    places: Vec<(String, String)>,
    errors: FieldErrors,
    flash: Option<String>,
}

impl StaffTpl {
    fn gate_name(&self, id: &str) -> String {
        self.gates
            .iter()
            .find(|g| g.id == id)
            .map(|g| g.name.clone())
            .unwrap_or_default()
    }
    fn alert_text(&self, a: &AccessAlert) -> String {
        let d = &a.details;
        let s = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let key = if a.kind == "fever" {
            "notice-access-fever"
        } else {
            "notice-access-blacklist"
        };
        let temp = d
            .get("temperature_x10")
            .and_then(|v| v.as_i64())
            .map(linli_core::access::format_x10)
            .unwrap_or_default();
        linli_core::i18n::t_args(
            self.page.lang,
            key,
            &[
                ("gate", s("gate")),
                ("plate", s("plate")),
                ("reason", s("reason")),
                ("temperature", temp),
            ],
        )
    }
    fn temp(&self, t: &Option<i64>) -> String {
        t.map(|t| format!("{} °C", linli_core::access::format_x10(t)))
            .unwrap_or_else(|| "—".into())
    }
}

async fn staff_access(
    State(s): State<AppState>,
    user: WebUser,
    Query(f): Query<Flash>,
) -> WebResult {
    let flash = f.done.map(|_| user.page.t("web-saved"));
    staff_page(&s, user, FieldErrors::default(), flash, StatusCode::OK).await
}

async fn staff_page(
    s: &AppState,
    user: WebUser,
    errors: FieldErrors,
    flash: Option<String>,
    status: StatusCode,
) -> WebResult {
    let page = &user.page;
    let g = or_page(
        page,
        user.principal
            .grant(Action::AccessRead)
            .map_err(AppError::from),
    )?;
    let now = s.store.now_ms();
    let zone = s.store.clock.zone();
    let to = (now / HOUR_MS + 1) * HOUR_MS;
    let from = to - 24 * HOUR_MS;
    let hours = or_page(
        page,
        s.store
            .access_hourly(
                &g,
                &StatsQuery {
                    place_id: None,
                    from: Some(from),
                    to: Some(to),
                },
            )
            .await,
    )?;
    let gates = or_page(page, s.store.gates(&g, &GateQuery::default()).await)?;
    let max = hours.iter().map(|h| h.entries).max().unwrap_or(0).max(1);
    let mut charts = Vec::new();
    for gate in &gates {
        let mut bars = Vec::with_capacity(24);
        let mut total = 0;
        for i in 0..24 {
            let start = from + i * HOUR_MS;
            let n = hours
                .iter()
                .find(|h| h.gate_id == gate.id && h.hour_start == start)
                .map(|h| h.entries)
                .unwrap_or(0);
            total += n;
            let height = n * CHART_H / max;
            let label = chrono::Timelike::hour(&zone.local(start)).to_string();
            bars.push((i * 20 + 2, CHART_H - height, height, n, label));
        }
        charts.push(Chart {
            gate: gate.name.clone(),
            bars,
            total,
        });
    }
    let alerts = or_page(page, s.store.access_alerts(&g, 20).await)?;
    let records = or_page(
        page,
        s.store
            .access_records(
                &g,
                &RecordQuery {
                    limit: Some(50),
                    ..RecordQuery::default()
                },
            )
            .await,
    )?;
    let blacklist = or_page(page, s.store.blacklist(&g).await)?;
    let admin = user.principal.grant(Action::DeviceAdmin).ok();
    let mut places = Vec::new();
    if let Some(a) = &admin {
        let pg = user.principal.grant(Action::PlaceRead).ok();
        if let Some(pg) = pg {
            let all = or_page(page, s.store.places(&pg, None, Some("community")).await)?;
            places = all
                .into_iter()
                .filter(|p| a.allows(Action::DeviceAdmin, &p.path))
                .map(|p| (p.id, p.name))
                .collect();
        }
    }
    let tpl = StaffTpl {
        page: user.page,
        alerts,
        records,
        gates,
        charts,
        blacklist,
        can_admin: admin.is_some(),
        places,
        errors,
        flash,
    };
    Ok((status, render(&tpl)).into_response())
}

#[derive(Deserialize)]
struct GateForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    place_id: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    device_id: String,
}

async fn add_gate(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<GateForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = or_page(
        &user.page,
        user.principal
            .grant(Action::DeviceAdmin)
            .map_err(AppError::from),
    )?;
    let new = NewGate {
        name: f.name,
        place_id: f.place_id,
        kind: f.kind,
        device_id: Some(f.device_id),
    };
    match s
        .store
        .create_gate(&g, &Actor::from(&user.principal), new)
        .await
    {
        Ok(_) => Ok(Redirect::to("/staff/access?done=1").into_response()),
        Err(e) if e.kind == ErrorKind::BadRequest => {
            let errors = FieldErrors(
                FieldErrors::from_app(&user.page, &e, "gate_name")
                    .0
                    .into_iter()
                    .map(|(k, v)| (format!("gate_{}", k.trim_start_matches("gate_")), v))
                    .collect(),
            );
            staff_page(&s, user, errors, None, StatusCode::BAD_REQUEST).await
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}

#[derive(Deserialize)]
struct ToggleForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    version: i64,
}

async fn toggle_gate(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<ToggleForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = or_page(
        &user.page,
        user.principal
            .grant(Action::DeviceAdmin)
            .map_err(AppError::from),
    )?;
    let gate = or_page(&user.page, s.store.gate(&g, &id).await)?;
    let patch = GatePatch {
        version: f.version,
        name: None,
        device_id: None,
        active: Some(!gate.active),
    };
    or_page(
        &user.page,
        s.store
            .update_gate(&g, &Actor::from(&user.principal), &id, patch)
            .await,
    )?;
    Ok(Redirect::to("/staff/access?done=1").into_response())
}

#[derive(Deserialize)]
struct BlacklistForm {
    #[serde(default)]
    _csrf: String,
    #[serde(default)]
    plate: String,
    #[serde(default)]
    place_id: String,
    #[serde(default)]
    reason: String,
}

async fn add_blacklist(
    State(s): State<AppState>,
    user: WebUser,
    axum::Form(f): axum::Form<BlacklistForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = or_page(
        &user.page,
        user.principal
            .grant(Action::DeviceAdmin)
            .map_err(AppError::from),
    )?;
    let new = NewBlacklistEntry {
        plate: f.plate,
        place_id: f.place_id,
        reason: f.reason,
    };
    match s
        .store
        .add_blacklist(&g, &Actor::from(&user.principal), new)
        .await
    {
        // A repeated post of the same plate finds it already listed: same end state.
        Ok(_) => Ok(Redirect::to("/staff/access?done=1").into_response()),
        Err(e) if matches!(e.kind, ErrorKind::BadRequest | ErrorKind::Conflict) => {
            let field = if e.code == "validation.required" || e.code == "validation.too_long" {
                "reason"
            } else {
                "plate"
            };
            let errors = FieldErrors::from_app(&user.page, &e, field);
            staff_page(&s, user, errors, None, StatusCode::BAD_REQUEST).await
        }
        Err(e) => Err(error_page(&user.page, e)),
    }
}

async fn remove_blacklist(
    State(s): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> WebResult {
    check_csrf(&user.page, &f._csrf)?;
    let g = or_page(
        &user.page,
        user.principal
            .grant(Action::DeviceAdmin)
            .map_err(AppError::from),
    )?;
    or_page(
        &user.page,
        s.store
            .remove_blacklist(&g, &Actor::from(&user.principal), &id)
            .await,
    )?;
    Ok(Redirect::to("/staff/access?done=1").into_response())
}

#[cfg(test)]
mod tests {
    use super::{Zone, parse_local};

    #[test]
    fn form_times_are_local_time() {
        // 2026-11-24 08:00 in Beijing is 00:00 UTC; in Tokyo 23:00 UTC the day before.
        let sh = Zone::SHANGHAI;
        assert_eq!(parse_local(sh, "2026-11-24T08:00"), Some(1_795_478_400_000));
        let tokyo = Zone::from_name("Asia/Tokyo").unwrap();
        assert_eq!(
            parse_local(tokyo, "2026-11-24T08:00"),
            Some(1_795_478_400_000 - 3_600_000)
        );
        assert_eq!(parse_local(sh, "2026-11-24"), None);
        assert_eq!(parse_local(sh, "tomorrow"), None);
    }
}
