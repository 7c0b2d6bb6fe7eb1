//! Gates, access records, vehicles and visitor passes (门禁与访客).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_core::AppError;
use linli_core::auth::{Action, Grant, Principal};
use linli_store::access::BuiltinAlarmSink;
use linli_store::access::blacklist::{BlacklistEntry, NewBlacklistEntry};
use linli_store::access::gates::{Gate, GatePatch, GateQuery, NewGate};
use linli_store::access::passes::{NewPass, Pass, PassQuery, Verification, VerifyRequest};
use linli_store::access::records::{
    AccessAlert, AccessRecord, GateHour, IngestResult, RecordQuery, RecordsIn, StatsQuery,
};
use linli_store::access::settings::AccessSettings;
use linli_store::access::vehicles::{NewVehicle, Vehicle, VehicleQuery};
use linli_store::audit::Actor;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody, current_lang};
use crate::extract::{ApiJson, ApiQuery, Auth};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_gates, create_gate))
        .routes(routes!(get_gate, update_gate))
        .routes(routes!(list_records, post_records))
        .routes(routes!(hourly_stats))
        .routes(routes!(list_alerts))
        .routes(routes!(list_blacklist, add_blacklist))
        .routes(routes!(remove_blacklist))
        .routes(routes!(list_vehicles, add_vehicle))
        .routes(routes!(remove_vehicle))
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(list_passes, create_pass))
        .routes(routes!(get_pass))
        .routes(routes!(pass_qr))
        .routes(routes!(pass_qr_png))
        .routes(routes!(revoke_pass))
        .routes(routes!(verify))
}

/// The first of `actions` the caller holds.
fn any_grant(p: &Principal, actions: &[Action]) -> Result<Grant, AppError> {
    actions
        .iter()
        .find_map(|a| p.grant(*a).ok())
        .ok_or_else(AppError::forbidden)
}

const GATE_READERS: [Action; 3] = [
    Action::AccessRead,
    Action::DeviceAdmin,
    Action::VisitorVerify,
];

/// Gates in the caller's area.
#[utoipa::path(get, path = "/api/v1/access/gates", tag = "access", params(GateQuery),
    responses((status = 200, body = Vec<Gate>), (status = 403, body = ErrorBody)))]
pub async fn list_gates(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<GateQuery>,
) -> ApiResult<Json<Vec<Gate>>> {
    let g = any_grant(&p, &GATE_READERS)?;
    Ok(Json(s.store.gates(&g, &q).await?))
}

/// Install a gate (face terminal or vehicle barrier) at a community or building entrance.
#[utoipa::path(post, path = "/api/v1/access/gates", tag = "access", request_body = NewGate,
    responses((status = 201, body = Gate), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_gate(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<NewGate>,
) -> ApiResult<(StatusCode, Json<Gate>)> {
    let g = p.grant(Action::DeviceAdmin)?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_gate(&g, &Actor::from(&p), new).await?),
    ))
}

/// One gate.
#[utoipa::path(get, path = "/api/v1/access/gates/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 200, body = Gate), (status = 404, body = ErrorBody)))]
pub async fn get_gate(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Gate>> {
    let g = any_grant(&p, &GATE_READERS)?;
    Ok(Json(s.store.gate(&g, &id).await?))
}

/// Rename a gate, link its IoT device, or switch it off (send the version you read).
#[utoipa::path(patch, path = "/api/v1/access/gates/{id}", tag = "access", params(("id" = String, Path)), request_body = GatePatch,
    responses((status = 200, body = Gate), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_gate(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<GatePatch>,
) -> ApiResult<Json<Gate>> {
    let g = p.grant(Action::DeviceAdmin)?;
    Ok(Json(
        s.store
            .update_gate(&g, &Actor::from(&p), &id, patch)
            .await?,
    ))
}

/// Access records at gates in the caller's area, newest first.
#[utoipa::path(get, path = "/api/v1/access/records", tag = "access", params(RecordQuery),
    responses((status = 200, body = Vec<AccessRecord>), (status = 403, body = ErrorBody)))]
pub async fn list_records(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<RecordQuery>,
) -> ApiResult<Json<Vec<AccessRecord>>> {
    let g = p.grant(Action::AccessRead)?;
    Ok(Json(s.store.access_records(&g, &q).await?))
}

/// A gate terminal reports entries and exits: one record, or `{"records": [...]}` (≤ 500),
/// stored all-or-nothing. Fever readings and blacklisted plates raise alarms.
#[utoipa::path(post, path = "/api/v1/access/records", tag = "access", request_body = RecordsIn,
    responses((status = 201, body = IngestResult), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn post_records(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<RecordsIn>,
) -> ApiResult<(StatusCode, Json<IngestResult>)> {
    let g = p.grant(Action::VisitorVerify)?;
    let r = s
        .store
        .ingest_access_records(&g, &Actor::from(&p), &BuiltinAlarmSink, body.into_vec())
        .await?;
    metrics::counter!("linli_access_records_total").increment(r.stored as u64);
    for a in &r.alarms {
        metrics::counter!("linli_access_alarms_total", "kind" => a.clone()).increment(1);
    }
    Ok((StatusCode::CREATED, Json(r)))
}

/// Entries per gate per hour.
#[utoipa::path(get, path = "/api/v1/access/stats/hourly", tag = "access", params(StatsQuery),
    responses((status = 200, body = Vec<GateHour>), (status = 400, body = ErrorBody)))]
pub async fn hourly_stats(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<Json<Vec<GateHour>>> {
    let g = p.grant(Action::AccessRead)?;
    Ok(Json(s.store.access_hourly(&g, &q).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    pub limit: Option<i64>,
}

/// Fever and blacklist alarms in the caller's area, newest first.
#[utoipa::path(get, path = "/api/v1/access/alerts", tag = "access", params(AlertQuery),
    responses((status = 200, body = Vec<AccessAlert>), (status = 403, body = ErrorBody)))]
pub async fn list_alerts(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<AlertQuery>,
) -> ApiResult<Json<Vec<AccessAlert>>> {
    let g = p.grant(Action::AccessRead)?;
    Ok(Json(
        s.store.access_alerts(&g, q.limit.unwrap_or(100)).await?,
    ))
}

/// Blacklisted plates applying in the caller's area.
#[utoipa::path(get, path = "/api/v1/access/blacklist", tag = "access",
    responses((status = 200, body = Vec<BlacklistEntry>), (status = 403, body = ErrorBody)))]
pub async fn list_blacklist(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<Vec<BlacklistEntry>>> {
    let g = any_grant(&p, &[Action::AccessRead, Action::DeviceAdmin])?;
    Ok(Json(s.store.blacklist(&g).await?))
}

/// Blacklist a plate at a place (with a reason).
#[utoipa::path(post, path = "/api/v1/access/blacklist", tag = "access", request_body = NewBlacklistEntry,
    responses((status = 201, body = BlacklistEntry), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_blacklist(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<NewBlacklistEntry>,
) -> ApiResult<(StatusCode, Json<BlacklistEntry>)> {
    let g = p.grant(Action::DeviceAdmin)?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.add_blacklist(&g, &Actor::from(&p), new).await?),
    ))
}

/// Remove a blacklist entry.
#[utoipa::path(delete, path = "/api/v1/access/blacklist/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove_blacklist(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let g = p.grant(Action::DeviceAdmin)?;
    s.store.remove_blacklist(&g, &Actor::from(&p), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A household's registered vehicles (residents: their own).
#[utoipa::path(get, path = "/api/v1/access/vehicles", tag = "access", params(VehicleQuery),
    responses((status = 200, body = Vec<Vehicle>), (status = 404, body = ErrorBody)))]
pub async fn list_vehicles(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<VehicleQuery>,
) -> ApiResult<Json<Vec<Vehicle>>> {
    Ok(Json(s.store.vehicles(&p, q.household_id.as_deref()).await?))
}

/// Register a household's vehicle (the barrier then knows it as a resident's).
#[utoipa::path(post, path = "/api/v1/access/vehicles", tag = "access", request_body = NewVehicle,
    responses((status = 201, body = Vehicle), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_vehicle(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<NewVehicle>,
) -> ApiResult<(StatusCode, Json<Vehicle>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.store.add_vehicle(&p, &Actor::from(&p), new).await?),
    ))
}

/// Remove a registered vehicle.
#[utoipa::path(delete, path = "/api/v1/access/vehicles/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove_vehicle(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.store.remove_vehicle(&p, &Actor::from(&p), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The fever threshold.
#[utoipa::path(get, path = "/api/v1/access/settings", tag = "access",
    responses((status = 200, body = AccessSettings), (status = 403, body = ErrorBody)))]
pub async fn get_settings(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<AccessSettings>> {
    any_grant(&p, &GATE_READERS)?;
    Ok(Json(s.store.access_settings().await?))
}

/// Change the fever threshold (device administrators of the whole platform).
#[utoipa::path(put, path = "/api/v1/access/settings", tag = "access", request_body = AccessSettings,
    responses((status = 200, body = AccessSettings), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_settings(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<AccessSettings>,
) -> ApiResult<Json<AccessSettings>> {
    let g = p.grant(Action::DeviceAdmin)?;
    Ok(Json(
        s.store
            .set_access_settings(&g, &Actor::from(&p), new)
            .await?,
    ))
}

/// Visitor passes: a resident's own; staff's in their area (`place_id`).
#[utoipa::path(get, path = "/api/v1/access/passes", tag = "access", params(PassQuery),
    responses((status = 200, body = Vec<Pass>), (status = 403, body = ErrorBody)))]
pub async fn list_passes(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<PassQuery>,
) -> ApiResult<Json<Vec<Pass>>> {
    Ok(Json(s.store.passes(&p, &q).await?))
}

/// Register a visitor and get a signed pass for the QR code.
#[utoipa::path(post, path = "/api/v1/access/passes", tag = "access", request_body = NewPass,
    responses((status = 201, body = Pass), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_pass(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<NewPass>,
) -> ApiResult<(StatusCode, Json<Pass>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_pass(&p, &Actor::from(&p), new).await?),
    ))
}

/// One pass with its verification attempts.
#[utoipa::path(get, path = "/api/v1/access/passes/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 200, body = Pass), (status = 404, body = ErrorBody)))]
pub async fn get_pass(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Pass>> {
    Ok(Json(s.store.pass(&p, &id).await?))
}

/// The pass's QR code as SVG (the pass's household only).
#[utoipa::path(get, path = "/api/v1/access/passes/{id}/qr.svg", tag = "access", params(("id" = String, Path)),
    responses((status = 200, content_type = "image/svg+xml", body = String), (status = 404, body = ErrorBody)))]
pub async fn pass_qr(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let token = household_pass_token(&s, &p, &id).await?;
    let svg = qr_svg(&token)?;
    let mut resp = svg.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The pass's QR code as a PNG image, to save to the phone's photos or send in a chat (the
/// pass's household only).
#[utoipa::path(get, path = "/api/v1/access/passes/{id}/qr.png", tag = "access", params(("id" = String, Path)),
    responses((status = 200, content_type = "image/png", body = Vec<u8>), (status = 404, body = ErrorBody)))]
pub async fn pass_qr_png(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let token = household_pass_token(&s, &p, &id).await?;
    let png = crate::access::qr_png::qr_png(&token).ok_or_else(|| {
        tracing::error!("QR encoding failed");
        AppError::internal()
    })?;
    let mut resp = png.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The pass's QR secret: only the household holds it; staff who may read the pass get no code
/// (not found, as for a pass they cannot see).
async fn household_pass_token(
    s: &AppState,
    p: &linli_core::auth::Principal,
    id: &str,
) -> Result<String, AppError> {
    s.store
        .pass(p, id)
        .await?
        .token
        .ok_or_else(|| AppError::not_found("access.pass.not_found"))
}

/// A QR code (error correction M) as an SVG document.
pub fn qr_svg(data: &str) -> Result<String, AppError> {
    let code =
        qrcode::QrCode::with_error_correction_level(data, qrcode::EcLevel::M).map_err(|e| {
            tracing::error!(error = %e, "QR encoding failed");
            AppError::internal()
        })?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build())
}

/// Revoke a pass (its household, or staff).
#[utoipa::path(post, path = "/api/v1/access/passes/{id}/revoke", tag = "access", params(("id" = String, Path)),
    responses((status = 200, body = Pass), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn revoke_pass(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Pass>> {
    Ok(Json(s.store.revoke_pass(&p, &Actor::from(&p), &id).await?))
}

/// A gate checks a scanned visitor QR code. Every decision is a 200 with `accepted` and the
/// `reason`; attempts are counted by reason (`linli_access_verify_total`).
#[utoipa::path(post, path = "/api/v1/access/verify", tag = "access", request_body = VerifyRequest,
    responses((status = 200, body = Verification), (status = 404, body = ErrorBody)))]
pub async fn verify(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> ApiResult<Json<Verification>> {
    let g = p.grant(Action::VisitorVerify)?;
    let mut v = s.store.verify_pass(&g, &Actor::from(&p), &req).await?;
    metrics::counter!("linli_access_verify_total", "result" => v.reason.clone()).increment(1);
    v.message = linli_core::i18n::t(current_lang(), &format!("access.verify.{}", v.reason));
    Ok(Json(v))
}
