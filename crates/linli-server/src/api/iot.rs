//! IoT and safety (物联感知): devices, telemetry (HTTP ingest and history), alarm rules, alarms
//! and their lifecycle, SOS 一键通 and daily check-in.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use linli_core::auth::Action;
use linli_core::{AppError, ErrorKind};
use linli_iot::Iot;
use linli_store::audit::Actor;
use linli_store::iot::alarms::{Alarm, AlarmQuery, AlarmView, AssignBody, CommentBody};
use linli_store::iot::devices::{Device, DeviceCreated, NewDevice};
use linli_store::iot::rules::{NewRule, Rule};
use linli_store::iot::sos::{CareContact, CheckinResult, SosResult};
use linli_store::iot::telemetry::{HistoryQuery, TelemetryPoint};

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Auth};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices, create_device))
        .routes(routes!(get_device))
        .routes(routes!(reset_token))
        .routes(routes!(device_telemetry))
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(ingest_telemetry))
        .routes(routes!(ingest_event))
        .routes(routes!(list_alarms))
        .routes(routes!(get_alarm))
        .routes(routes!(ack_alarm))
        .routes(routes!(clear_alarm))
        .routes(routes!(assign_alarm))
        .routes(routes!(comment_alarm))
        .routes(routes!(my_sos))
        .routes(routes!(my_checkin))
        .routes(routes!(get_care_contacts, set_care_contacts))
}

fn iot(s: &AppState) -> Result<&Iot, AppError> {
    s.iot
        .get()
        .ok_or(AppError::new(ErrorKind::Internal, "iot.disabled"))
}

/// A device with its online state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceItem {
    #[serde(flatten)]
    pub device: Device,
    /// Data seen within the offline threshold.
    pub online: bool,
}

fn item(s: &AppState, d: Device) -> DeviceItem {
    let threshold = s
        .iot
        .get()
        .map(|i| i.config().offline_after_ms)
        .unwrap_or(30 * 60_000);
    let now = s.store.now_ms();
    let online = d.last_seen.is_some_and(|t| now - t <= threshold);
    DeviceItem { device: d, online }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeviceListQuery {
    /// Only devices at or below this place.
    pub place_id: Option<String>,
    pub kind: Option<String>,
    pub limit: Option<i64>,
}

/// Devices in the caller's area, with their latest values and online state.
#[utoipa::path(get, path = "/api/v1/iot/devices", tag = "iot", params(DeviceListQuery),
    responses((status = 200, body = [DeviceItem]), (status = 403, body = ErrorBody)))]
pub async fn list_devices(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<DeviceListQuery>,
) -> ApiResult<Json<Vec<DeviceItem>>> {
    let g = p.grant(Action::DeviceRead)?;
    let under = match &q.place_id {
        Some(id) => Some(s.store.place(&g, id).await?.path),
        None => None,
    };
    let list = s
        .store
        .devices(
            &g,
            under.as_deref(),
            q.kind.as_deref(),
            q.limit.unwrap_or(1000),
        )
        .await?;
    Ok(Json(list.into_iter().map(|d| item(&s, d)).collect()))
}

/// Register a device; the answer carries its token (MQTT password), shown this once.
#[utoipa::path(post, path = "/api/v1/iot/devices", tag = "iot", request_body = NewDevice,
    responses((status = 201, body = DeviceCreated), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_device(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<NewDevice>,
) -> ApiResult<(StatusCode, Json<DeviceCreated>)> {
    let g = p.grant(Action::DeviceAdmin)?;
    let created = s.store.create_device(&g, &Actor::from(&p), new).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One device.
#[utoipa::path(get, path = "/api/v1/iot/devices/{id}", tag = "iot", params(("id" = String, Path)),
    responses((status = 200, body = DeviceItem), (status = 404, body = ErrorBody)))]
pub async fn get_device(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceItem>> {
    let g = p.grant(Action::DeviceRead)?;
    let d = s.store.device(&g, &id).await?;
    Ok(Json(item(&s, d)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
/// A device token, shown once (named apart from the API tokens' `NewToken` request body).
pub struct DeviceTokenIssued {
    pub token: String,
}

/// Issue a new token for a device (the old one stops working).
#[utoipa::path(post, path = "/api/v1/iot/devices/{id}/token", tag = "iot", params(("id" = String, Path)),
    responses((status = 200, body = DeviceTokenIssued), (status = 404, body = ErrorBody)))]
pub async fn reset_token(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceTokenIssued>> {
    let g = p.grant(Action::DeviceAdmin)?;
    let token = s
        .store
        .reset_device_token(&g, &Actor::from(&p), &id)
        .await?;
    // The store told every instance (bus event `device.revoked`); here it is done before the
    // answer, so the old token's sessions are closed when the caller reads it.
    if let Some(i) = s.iot.get() {
        i.revoke_device(&id).await?;
    }
    Ok(Json(DeviceTokenIssued { token }))
}

/// A device's telemetry in a time range.
#[utoipa::path(get, path = "/api/v1/iot/devices/{id}/telemetry", tag = "iot", params(("id" = String, Path), HistoryQuery),
    responses((status = 200, body = [TelemetryPoint]), (status = 404, body = ErrorBody)))]
pub async fn device_telemetry(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<Vec<TelemetryPoint>>> {
    let g = p.grant(Action::DeviceRead)?;
    Ok(Json(s.store.telemetry(&g, &id, &q).await?))
}

/// Alarm rules: the defaults per device kind and the overrides in the caller's area.
#[utoipa::path(get, path = "/api/v1/iot/rules", tag = "iot",
    responses((status = 200, body = [Rule]), (status = 403, body = ErrorBody)))]
pub async fn list_rules(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Vec<Rule>>> {
    let g = p.grant(Action::DeviceRead)?;
    Ok(Json(s.store.rules(&g).await?))
}

/// Add a rule: an override for a place (building …) or a device in the caller's area, or a
/// kind default (whole-tree administrators).
#[utoipa::path(post, path = "/api/v1/iot/rules", tag = "iot", request_body = NewRule,
    responses((status = 201, body = Rule), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_rule(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(new): ApiJson<NewRule>,
) -> ApiResult<(StatusCode, Json<Rule>)> {
    let g = p.grant(Action::DeviceAdmin)?;
    let rule = s.store.create_rule(&g, &Actor::from(&p), new).await?;
    if let Some(i) = s.iot.get() {
        i.reload_rules().await;
    }
    Ok((StatusCode::CREATED, Json(rule)))
}

fn device_token(h: &HeaderMap) -> Option<&str> {
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| h.get("x-device-token").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// HTTP ingest of telemetry `{"ts": <ms>, "values": {…}}` with the device token
/// (`Authorization: Bearer <token>` or `X-Device-Token`). Answered after commit.
#[utoipa::path(post, path = "/api/v1/iot/telemetry", tag = "iot", request_body = serde_json::Value,
    responses((status = 202), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn ingest_telemetry(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    iot(&s)?
        .ingest_http(device_token(&headers), "telemetry", &body)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// HTTP ingest of a device event `{"ts": <ms>, "type": "…", …}` (an SOS button sends
/// `{"type": "sos"}`). Answered after commit.
#[utoipa::path(post, path = "/api/v1/iot/event", tag = "iot", request_body = serde_json::Value,
    responses((status = 202), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn ingest_event(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    iot(&s)?
        .ingest_http(device_token(&headers), "event", &body)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Alarms in the caller's area (or under a place): active first, most severe first.
#[utoipa::path(get, path = "/api/v1/alarms", tag = "iot", params(AlarmQuery),
    responses((status = 200, body = [Alarm]), (status = 403, body = ErrorBody)))]
pub async fn list_alarms(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<AlarmQuery>,
) -> ApiResult<Json<Vec<Alarm>>> {
    let g = p.grant(Action::AlarmRead)?;
    Ok(Json(s.store.alarms(&g, &q).await?))
}

/// One alarm with its history (raised, notified, acknowledged …, each with time).
#[utoipa::path(get, path = "/api/v1/alarms/{id}", tag = "iot", params(("id" = String, Path)),
    responses((status = 200, body = AlarmView), (status = 404, body = ErrorBody)))]
pub async fn get_alarm(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<AlarmView>> {
    let g = p.grant(Action::AlarmRead)?;
    Ok(Json(s.store.alarm(&g, &id).await?))
}

/// Acknowledge: stops the escalation.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/ack", tag = "iot", params(("id" = String, Path)),
    responses((status = 200, body = AlarmView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn ack_alarm(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<AlarmView>> {
    let g = p.grant(Action::AlarmHandle)?;
    Ok(Json(s.store.ack_alarm(&g, &Actor::from(&p), &id).await?))
}

/// Clear: the cause is gone.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/clear", tag = "iot", params(("id" = String, Path)),
    responses((status = 200, body = AlarmView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn clear_alarm(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<AlarmView>> {
    let g = p.grant(Action::AlarmHandle)?;
    Ok(Json(s.store.clear_alarm(&g, &Actor::from(&p), &id).await?))
}

/// Assign to someone who may handle alarms there.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/assign", tag = "iot", params(("id" = String, Path)), request_body = AssignBody,
    responses((status = 200, body = AlarmView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn assign_alarm(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<AssignBody>,
) -> ApiResult<Json<AlarmView>> {
    let g = p.grant(Action::AlarmHandle)?;
    Ok(Json(
        s.store
            .assign_alarm(&g, &Actor::from(&p), &id, &b.user_id)
            .await?,
    ))
}

/// Comment on an alarm.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/comment", tag = "iot", params(("id" = String, Path)), request_body = CommentBody,
    responses((status = 200, body = AlarmView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn comment_alarm(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<CommentBody>,
) -> ApiResult<Json<AlarmView>> {
    let g = p.grant(Action::AlarmHandle)?;
    Ok(Json(
        s.store
            .comment_alarm(&g, &Actor::from(&p), &id, &b.text)
            .await?,
    ))
}

async fn own_person(s: &AppState, p: &linli_core::auth::Principal) -> Result<String, AppError> {
    if p.own_households().is_empty() {
        return Err(AppError::forbidden());
    }
    s.store
        .own_person_id(&p)
        .await?
        .ok_or(AppError::new(ErrorKind::Forbidden, "iot.sos.no_person"))
}

/// 一键呼叫: raise a CRITICAL SOS alarm for the caller and call their care chain (family →
/// grid worker → committee), repeating until someone acknowledges.
#[utoipa::path(post, path = "/api/v1/me/sos", tag = "me",
    responses((status = 201, body = SosResult), (status = 403, body = ErrorBody)))]
pub async fn my_sos(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<(StatusCode, Json<SosResult>)> {
    let person = own_person(&s, &p).await?;
    let cfg = s.iot.get().map(|i| i.config().safety).unwrap_or_default();
    let r = s.store.raise_sos(&person, None, "page", &cfg).await?;
    Ok((StatusCode::CREATED, Json(r)))
}

/// Daily check-in (独居老人 平安打卡); clears a missed-check-in alarm.
#[utoipa::path(post, path = "/api/v1/me/checkin", tag = "me",
    responses((status = 200, body = CheckinResult), (status = 403, body = ErrorBody)))]
pub async fn my_checkin(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<CheckinResult>> {
    let person = own_person(&s, &p).await?;
    Ok(Json(s.store.checkin(&person).await?))
}

/// A person's care contacts (SOS call order).
#[utoipa::path(get, path = "/api/v1/persons/{id}/care-contacts", tag = "iot", params(("id" = String, Path)),
    responses((status = 200, body = [CareContact]), (status = 404, body = ErrorBody)))]
pub async fn get_care_contacts(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<CareContact>>> {
    let g = p.grant(Action::PersonRead)?;
    Ok(Json(s.store.care_contacts(&g, &id).await?))
}

/// Replace a person's care contacts (the order is the call order).
#[utoipa::path(put, path = "/api/v1/persons/{id}/care-contacts", tag = "iot", params(("id" = String, Path)), request_body = [CareContact],
    responses((status = 200, body = [CareContact]), (status = 404, body = ErrorBody)))]
pub async fn set_care_contacts(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(contacts): ApiJson<Vec<CareContact>>,
) -> ApiResult<Json<Vec<CareContact>>> {
    let g = p.grant(Action::PersonWrite)?;
    Ok(Json(
        s.store
            .set_care_contacts(&g, &Actor::from(&p), &id, &contacts)
            .await?,
    ))
}
